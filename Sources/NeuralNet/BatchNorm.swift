import Foundation

/// Batch normalisation (Ioffe and Szegedy 2015; PyTorch's `nn.BatchNorm2d` after a
/// convolution, `nn.BatchNorm1d` after a dense layer): per channel (or feature) `c`,
///
///     y = γ_c · (x − μ_c) / √(σ²_c + ε) + β_c
///
/// In training mode μ and σ² are the mean and the biased variance of the whole batch (over
/// the batch and, for images, every position), so a training-mode forward pass must see the
/// whole batch at once (``normalizesOverBatch``): ``Model`` runs it between the shards, not
/// inside them, so the statistics do not depend on how the batch was cut. In inference mode
/// they are the running statistics, a fixed per-channel affine map `y = s·x + t` with
/// `s = γ / √(running_var + ε)` and `t = β − running_mean · s`.
///
/// The running statistics are buffers, not parameters: PyTorch's `running_mean`,
/// `running_var` (updated with momentum 0.1 from the batch mean and the *unbiased* batch
/// variance) and `num_batches_tracked`. A training-mode forward pass returns them updated in
/// its cache (``statistics(from:)``); the trainer stores them after each step.
public struct BatchNorm: Layer {
    /// The number of channels (features) normalised.
    public let features: Int
    /// γ, [features].
    public var weight: Tensor
    /// β, [features].
    public var bias: Tensor
    /// The running mean, [features].
    public var runningMean: Tensor
    /// The running (unbiased) variance, [features].
    public var runningVariance: Tensor
    /// How many training batches have updated the running statistics (a scalar, shape `[]`).
    public var batchesTracked: Tensor
    /// PyTorch's default ε.
    public static let epsilon: Float = 1e-5
    /// PyTorch's default momentum: `running = (1 − m) running + m batch`.
    public static let momentum: Float = 0.1

    /// PyTorch's initialisation: γ = 1, β = 0, running mean 0, running variance 1.
    public init(features: Int) {
        self.features = features
        weight = Tensor(shape: [features], repeating: 1)
        bias = Tensor(shape: [features])
        runningMean = Tensor(shape: [features])
        runningVariance = Tensor(shape: [features], repeating: 1)
        batchesTracked = Tensor(shape: [], repeating: 0)
    }

    public var parameterNames: [String] { ["weight", "bias"] }

    public var parameters: [Tensor] {
        get { [weight, bias] }
        set {
            precondition(newValue.count == 2 && newValue[0].shape == weight.shape && newValue[1].shape == bias.shape)
            (weight, bias) = (newValue[0], newValue[1])
        }
    }

    public mutating func updateParameters(_ update: (_ index: Int, _ parameter: inout Tensor) -> Void) {
        update(0, &weight)
        update(1, &bias)
    }

    public var bufferNames: [String] { ["running_mean", "running_var", "num_batches_tracked"] }

    public var buffers: [Tensor] {
        get { [runningMean, runningVariance, batchesTracked] }
        set {
            precondition(
                newValue.count == 3 && newValue[0].shape == runningMean.shape
                    && newValue[1].shape == runningVariance.shape && newValue[2].count == 1)
            (runningMean, runningVariance, batchesTracked) = (newValue[0], newValue[1], newValue[2].reshaped([]))
        }
    }

    public var normalizesOverBatch: Bool { true }

    /// The inference map's per-channel scale `s` and shift `t`, in Float32 as the forward
    /// pass computes them.
    public var scaleAndShift: (scale: [Float], shift: [Float]) {
        let scale = (0..<features).map { c in weight.scalars[c] / (runningVariance.scalars[c] + BatchNorm.epsilon).squareRoot() }
        let shift = (0..<features).map { c in bias.scalars[c] - runningMean.scalars[c] * scale[c] }
        return (scale, shift)
    }

    /// What the backward pass needs, and in training mode the batch's statistics.
    public struct Cache {
        /// `(x − μ)/√(σ² + ε)`, the input's shape; empty when no backward pass follows.
        var normalized: Tensor
        /// `1/√(σ² + ε)` per channel.
        var inverseDeviation: [Float]
        /// Whether the batch's own statistics were used.
        var training: Bool
        /// The batch mean and biased variance per channel (training mode only).
        var mean: [Float]
        var variance: [Float]
        /// Values per channel, `N · positions`.
        var count: Int
        /// Another loss's `[d/dμ, d/dσ²]` per channel, added to the input gradient.
        var statisticsGradient: [Tensor]?
    }

    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Cache) {
        precondition(input.shape.count >= 2 && input.shape[1] == features, "batch norm of \(features) features got \(input.shape)")
        let (n, c) = (input.batchSize, features)
        let positions = input.itemCount / c
        let count = n * positions
        let record = context.training || context.needsBackward
        var normalized = Tensor(shape: record ? input.shape : [0])
        var output = Tensor(shape: input.shape)
        let gamma = weight.scalars, beta = bias.scalars
        let (scale, shift) = scaleAndShift
        let running = (mean: runningMean.scalars, variance: runningVariance.scalars)
        // Channel by channel, in parallel: (mean, biased variance, 1/√(σ² + ε)).
        let statistics = input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                normalized.scalars.withUnsafeMutableBufferPointer { h in
                    Compute.map(c) { ch -> (Float, Float, Float) in
                        var mean = running.mean[ch], variance = running.variance[ch]
                        if context.training {
                            // Two passes in Double: the mean, then the mean squared deviation.
                            var sum = 0.0
                            for item in 0..<n { sum += rowSum(x.baseAddress! + (item * c + ch) * positions, positions) }
                            mean = Float(sum / Double(max(count, 1)))
                            var squares = 0.0
                            for item in 0..<n {
                                squares += rowSquares(x.baseAddress! + (item * c + ch) * positions, positions, around: mean)
                            }
                            variance = Float(squares / Double(max(count, 1)))
                        }
                        let inverse = 1 / (variance + BatchNorm.epsilon).squareRoot()
                        let (g, b, s, t) = (gamma[ch], beta[ch], scale[ch], shift[ch])
                        for item in 0..<n {
                            let base = (item * c + ch) * positions
                            let (xi, yi) = (x.baseAddress! + base, y.baseAddress! + base)
                            if record {
                                let hi = h.baseAddress! + base
                                elementwise(positions, xi, hi) { ($0 - mean) * inverse } scalar: { ($0 - mean) * inverse }
                                if context.training {
                                    elementwise(positions, hi, yi) { $0 * g + b } scalar: { $0 * g + b }
                                    continue
                                }
                            }
                            elementwise(positions, xi, yi) { $0 * s + t } scalar: { $0 * s + t }
                        }
                        return (mean, variance, inverse)
                    }
                }
            }
        }
        return (
            output,
            Cache(
                normalized: normalized, inverseDeviation: statistics.map(\.2), training: context.training,
                mean: statistics.map(\.0), variance: statistics.map(\.1), count: count,
                statisticsGradient: context.training ? context.statisticsGradient : nil)
        )
    }

    public func backward(
        _ outputGradient: Tensor, cache: Cache, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        let shape = outputGradient.shape
        let (n, c) = (outputGradient.batchSize, features)
        let positions = outputGradient.itemCount / c
        // dβ = Σ dy, dγ = Σ dy · x̂ per channel; the training-mode input gradient needs both.
        let sums = needsParameterGradients || cache.training
        precondition(!sums || cache.normalized.shape == shape, "batch norm's backward needs a forward pass that recorded it")
        var inputGradient = Tensor(shape: needsInputGradient ? shape : [0])
        let gamma = weight.scalars
        let scale = scaleAndShift.scale
        let m = Float(max(cache.count, 1))
        let parameters = outputGradient.scalars.withUnsafeBufferPointer { dy in
            cache.normalized.scalars.withUnsafeBufferPointer { h in
                inputGradient.scalars.withUnsafeMutableBufferPointer { dx in
                    Compute.map(c) { ch -> (Float, Float) in
                        var (sb, sg) = (0.0, 0.0)
                        if sums {
                            for item in 0..<n {
                                let base = (item * c + ch) * positions
                                sb += rowSum(dy.baseAddress! + base, positions)
                                sg += rowDot(dy.baseAddress! + base, h.baseAddress! + base, positions)
                            }
                        }
                        guard needsInputGradient else { return (Float(sg), Float(sb)) }
                        for item in 0..<n {
                            let base = (item * c + ch) * positions
                            let (dyi, dxi) = (dy.baseAddress! + base, dx.baseAddress! + base)
                            if cache.training {
                                // dx = γ/(M √(σ²+ε)) · (M dy − Σ dy − x̂ Σ dy x̂): μ and σ² depend on x.
                                let k = gamma[ch] * cache.inverseDeviation[ch] / m
                                // With another loss's statistics gradient, + dμ/M + dσ² · 2(x − μ)/M,
                                // where x − μ = x̂ √(σ²+ε): dx = A dy − B − x̂ G.
                                let a = k * m
                                var (b, g) = (k * Float(sb), k * Float(sg))
                                if let extra = cache.statisticsGradient {
                                    b -= extra[0].scalars[ch] / m
                                    g -= 2 * extra[1].scalars[ch] / (cache.inverseDeviation[ch] * m)
                                }
                                elementwise(positions, dyi, h.baseAddress! + base, dxi) { d, x in
                                    a * d - b - x * g
                                } scalar: { d, x in a * d - b - x * g }
                            } else {
                                let s = scale[ch]
                                elementwise(positions, dyi, dxi) { $0 * s } scalar: { $0 * s }
                            }
                        }
                        return (Float(sg), Float(sb))
                    }
                }
            }
        }
        return (
            needsInputGradient ? inputGradient : nil,
            needsParameterGradients
                ? [Tensor(shape: [c], scalars: parameters.map(\.0)), Tensor(shape: [c], scalars: parameters.map(\.1))] : []
        )
    }

    /// After a training-mode forward pass: the buffers holding the batch's own statistics
    /// (mean, biased variance), with which an inference-mode pass normalises as the training
    /// pass did, and the running buffers updated by the batch.
    public func statistics(from cache: Cache) -> (batch: [Tensor], running: [Tensor])? {
        guard cache.training else { return nil }
        let m = BatchNorm.momentum
        let unbiased = Float(cache.count) / Float(max(cache.count - 1, 1))
        let mean = (0..<features).map { (1 - m) * runningMean.scalars[$0] + m * cache.mean[$0] }
        let variance = (0..<features).map { (1 - m) * runningVariance.scalars[$0] + m * cache.variance[$0] * unbiased }
        return (
            [Tensor(shape: [features], scalars: cache.mean), Tensor(shape: [features], scalars: cache.variance), batchesTracked],
            [
                Tensor(shape: [features], scalars: mean), Tensor(shape: [features], scalars: variance),
                Tensor(shape: [], scalars: [batchesTracked.scalars[0] + 1]),
            ]
        )
    }
}

// Row reductions for the per-channel statistics: 16 Float lanes per row (a row is one
// item's plane, at most a few thousand values), added up in Double across rows.

private func rowSum(_ x: UnsafePointer<Float>, _ count: Int) -> Double {
    rowReduce(count) { i in load(x + i) } scalar: { x[$0] }
}

private func rowSquares(_ x: UnsafePointer<Float>, _ count: Int, around mean: Float) -> Double {
    rowReduce(count) { i in
        let d = load(x + i) - SIMD16(repeating: mean)
        return d * d
    } scalar: { i in (x[i] - mean) * (x[i] - mean) }
}

private func rowDot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ count: Int) -> Double {
    rowReduce(count) { i in load(x + i) * load(y + i) } scalar: { x[$0] * y[$0] }
}

@inline(__always)
private func load(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
private func rowReduce(_ count: Int, _ lanes: (Int) -> SIMD16<Float>, scalar: (Int) -> Float) -> Double {
    var accumulator = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        accumulator += lanes(i)
        i += 16
    }
    var total = Double(accumulator.sum())
    while i < count {
        total += Double(scalar(i))
        i += 1
    }
    return total
}
