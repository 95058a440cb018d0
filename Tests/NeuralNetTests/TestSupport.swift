import Foundation
import Testing

@testable import NeuralNet

/// Checks that two tensors have the same shape and agree element-wise within
/// `atol + rtol·|expected|`; reports the worst element.
func assertClose(
    _ actual: Tensor?, _ expected: Tensor, rtol: Float = 1e-4, atol: Float = 1e-5, _ what: String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let actual else {
        Issue.record("\(what): no tensor", sourceLocation: sourceLocation)
        return
    }
    guard actual.shape == expected.shape else {
        Issue.record("\(what): shape \(actual.shape) ≠ \(expected.shape)", sourceLocation: sourceLocation)
        return
    }
    var worst = (index: -1, excess: Float(0))
    for i in 0..<actual.count {
        let excess = abs(actual.scalars[i] - expected.scalars[i]) - (atol + rtol * abs(expected.scalars[i]))
        if excess > worst.excess || actual.scalars[i].isNaN { worst = (i, excess.isNaN ? .infinity : excess) }
    }
    if worst.index >= 0 {
        Issue.record(
            "\(what): element \(worst.index) is \(actual.scalars[worst.index]), expected \(expected.scalars[worst.index])",
            sourceLocation: sourceLocation)
    }
}

/// How far two correct Float32 evaluations of the same sums may differ when they add in
/// different orders (another GEMM kernel, another blocking): each is within
/// γₙ·Σ|terms| of the exact sum, γₙ = n·u / (1 − n·u) with u = 2⁻²⁴ (Higham, *Accuracy
/// and Stability of Numerical Algorithms*, §3.1), so they are within twice that of each
/// other. `terms` is the length of the sums, `magnitude` the sum of |terms|.
func sumTolerance(terms: Int, magnitude: Float) -> Float {
    let nu = Double(terms) * 0x1p-24
    return Float(2 * nu / (1 - nu)) * magnitude
}

/// A tensor of normal noise.
func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var generator = SplitMix64(seed: seed)
    return Tensor(shape: shape, scalars: (0..<Tensor.elementCount(shape)).map { _ in scale * generator.nextGaussian() })
}

/// Central finite differences of `f` at the given indices of `x`, computed in Double.
func numericalGradient(
    of f: (Tensor) -> Double, at x: Tensor, indices: [Int], epsilon: Float = 1e-2
) -> [Double] {
    indices.map { i in
        var plus = x
        plus.scalars[i] += epsilon
        var minus = x
        minus.scalars[i] -= epsilon
        return (f(plus) - f(minus)) / (Double(plus.scalars[i]) - Double(minus.scalars[i]))
    }
}

/// Every index for small tensors, else `count` spread-out samples.
func sampleIndices(_ total: Int, count: Int = 60, seed: UInt64 = 7) -> [Int] {
    if total <= count { return Array(0..<total) }
    var generator = SplitMix64(seed: seed)
    return (0..<count).map { _ in Int(generator.next() % UInt64(total)) }
}

/// Σ output·weights in Double: a scalar whose gradient with respect to the output is `weights`.
func weightedSum(_ output: Tensor, _ weights: Tensor) -> Double {
    zip(output.scalars, weights.scalars).reduce(0) { $0 + Double($1.0) * Double($1.1) }
}

/// Checks a layer's input and parameter gradients against finite differences.
func checkLayerGradients<L: Layer>(
    _ layer: L, input: Tensor, context: ForwardContext = ForwardContext(), epsilon: Float = 1e-2,
    tolerance: Double = 2e-3, sourceLocation: SourceLocation = #_sourceLocation
) {
    let (output, cache) = layer.forward(input, context: context)
    let weights = randomTensor(output.shape, seed: 99)
    let (dinput, dparameters) = layer.backward(weights, cache: cache, needsInputGradient: true, needsParameterGradients: true)
    func check(_ analytic: Tensor?, _ numeric: [Double], _ indices: [Int], _ what: String) {
        guard let analytic else {
            Issue.record("\(what): no gradient", sourceLocation: sourceLocation)
            return
        }
        for (i, expected) in zip(indices, numeric) {
            let got = Double(analytic.scalars[i])
            if abs(got - expected) > tolerance * max(1, abs(expected)) {
                Issue.record("\(what)[\(i)] = \(got), finite differences give \(expected)", sourceLocation: sourceLocation)
                return
            }
        }
    }
    let inputIndices = sampleIndices(input.count)
    let numericInput = numericalGradient(
        of: { weightedSum(layer.forward($0, context: context).output, weights) }, at: input, indices: inputIndices,
        epsilon: epsilon)
    check(dinput, numericInput, inputIndices, "input gradient")
    #expect(dparameters.count == layer.parameters.count, sourceLocation: sourceLocation)
    for (p, parameter) in layer.parameters.enumerated() {
        let indices = sampleIndices(parameter.count)
        let numeric = numericalGradient(
            of: { value in
                var copy = layer
                var parameters = copy.parameters
                parameters[p] = value
                copy.parameters = parameters
                return weightedSum(copy.forward(input, context: context).output, weights)
            }, at: parameter, indices: indices, epsilon: epsilon)
        check(dparameters[p], numeric, indices, "gradient of \(layer.parameterNames[p])")
    }
    // The input gradient alone must not depend on asking for parameter gradients.
    let alone = layer.backward(weights, cache: cache, needsInputGradient: true, needsParameterGradients: false)
    #expect(alone.inputGradient == dinput, sourceLocation: sourceLocation)
    #expect(alone.parameterGradients.isEmpty, sourceLocation: sourceLocation)
}
