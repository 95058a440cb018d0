import Datasets
import Foundation
import NeuralNet
import Testing

@testable import Adversarial

/// Interval bound propagation: the bounds are hand-checked on one layer, never left by
/// sampled, corner or attacked points, and the certificates are monotone in ε.
@Suite struct CertificationTests {
    /// `flatten dense2` on a 1×1×2 input with W = [[1, −2], [3, 4]], b = [0.5, −1].
    func oneLayer() throws -> Model {
        let architecture = Architecture(
            layers: [.flatten, .dense(outputFeatures: 2)], inputShape: [1, 1, 2])
        return try Model(
            architecture: architecture,
            parameters: [
                "fc1.weight": Tensor(shape: [2, 2], scalars: [1, -2, 3, 4]),
                "fc1.bias": Tensor(shape: [2], scalars: [0.5, -1]),
            ])
    }

    @Test func handWorkedOneLayer() throws {
        let model = try oneLayer()
        let x = Tensor(shape: [1, 1, 1, 2], scalars: [0.5, 0.5])
        // box [0.25, 0.75]²: z0 = x0 − 2x1 + 0.5 ∈ [−0.75, 0.75], z1 = 3x0 + 4x1 − 1 ∈ [0.75, 4.25]
        let bounds = IntervalBoundPropagation.bounds(model, input: .box(around: x, epsilon: 0.25))
        let exact: [(Float, Float)] = [(-0.75, 0.75), (0.75, 4.25)]
        for (i, (low, high)) in exact.enumerated() {
            #expect(bounds.lower.scalars[i] <= low && bounds.lower.scalars[i] > low - 1e-4)
            #expect(bounds.upper.scalars[i] >= high && bounds.upper.scalars[i] < high + 1e-4)
        }
        // folded margin z1 − z0 = 2x0 + 6x1 − 1.5 ≥ 0.5 (from separate logit bounds only 0.75 − 0.75 = 0)
        let margins = IntervalBoundPropagation.marginLowerBounds(model, images: x, labels: [1], epsilon: 0.25)
        #expect(margins[0][1] == .infinity)
        #expect(margins[0][0] <= 0.5 && margins[0][0] > 0.5 - 1e-4)
        #expect(IntervalBoundPropagation.certify(model, images: x, labels: [1], epsilon: 0.25) == [true])
        // at ε = 0.5 the box is [0, 1]² and the margin's minimum is −1.5
        #expect(IntervalBoundPropagation.certify(model, images: x, labels: [1], epsilon: 0.5) == [false])
    }

    @Test func sampledAndCornerPointsStayWithinTheBounds() throws {
        var generator = SplitMix64(seed: 7)
        let architecture = try Architecture(
            parsing: "conv6k3s2p1 relu maxpool2 conv8k3p1 relu flatten dropout0.5 dense16 relu dense10",
            inputShape: [1, 12, 12])
        let model = try Model(architecture: architecture, generator: &generator)
        let images = 3
        let centers = Tensor(shape: [images, 1, 12, 12]) { x in
            for i in x.indices { x[i] = Float.random(in: 0...1, using: &generator) }
        }
        let labels = model.predictions(centers)
        for epsilon: Float in [0, 0.01, 0.1, 0.3] {
            let box = IntervalBounds.box(around: centers, epsilon: epsilon)
            let logits = IntervalBoundPropagation.bounds(model, input: box)
            let margins = IntervalBoundPropagation.marginLowerBounds(
                model, images: centers, labels: labels, epsilon: epsilon)
            let samples = 1000
            for n in 0..<images {
                let points = samplePoints(in: box, item: n, count: samples, generator: &generator)
                let z = model.logits(points)
                for s in 0..<samples {
                    for j in 0..<10 {
                        let value = z.scalars[s * 10 + j]
                        #expect(
                            value >= logits.lower.scalars[n * 10 + j]
                                && value <= logits.upper.scalars[n * 10 + j])
                        let y = labels[n]
                        #expect(z.scalars[s * 10 + y] - value >= margins[n][j] || j == y)
                    }
                }
            }
        }
    }

    @Test func certificatesAreMonotoneAndExactAtZero() throws {
        let test = try DataStore(dataset: .mnist).load().test.prefix(300)
        let model = try Checkpoint.load(
            from: ShippedModelTests.models.appendingPathComponent("mnist-cnn-robust.safetensors")
        ).model
        let images = test.allImages
        let clean = model.predictions(images)
        var previous: [Bool]?
        var counts: [Int] = []
        for epsilon: Float in [0, 0.001, 0.003, 0.01, 0.02] {
            let verified = IntervalBoundPropagation.certify(
                model, images: images, labels: test.labels, epsilon: epsilon)
            if let previous {
                #expect(zip(verified, previous).allSatisfy { !$0 || $1 })
            } else {
                // ε = 0: exactly the correctly classified images, but for a clean margin within the
                // Float32 widening (none in these 300)
                #expect(verified == test.labels.indices.map { clean[$0] == test.labels[$0] })
            }
            previous = verified
            counts.append(verified.filter { $0 }.count)
        }
        #expect(counts[1] > 0)
    }

    /// A unit that is off over the whole box has the interval [0, 0], and a fixed pixel a
    /// point interval: their radius (and a zero magnitude) must stay an exact 0, not round up to
    /// a subnormal, which would be sound but slows every GEMM that reads it many times over on
    /// Intel cores (IBP on 10,000 digits took 107 s instead of 5 s).
    @Test func pointIntervalsGiveExactZeros() throws {
        let bounds = IntervalBounds(
            lower: Tensor(shape: [1, 4], scalars: [0, 0.5, -1, -0.25]),
            upper: Tensor(shape: [1, 4], scalars: [0, 0.5, 1, 0.75]))
        let dense = Dense(
            weight: Tensor(shape: [2, 4], scalars: [1, -2, 3, 0.5, -1, 1, 2, 4]), bias: Tensor(shape: [2], scalars: [0.5, -1]))
        var passes: [[Float]] = []
        let result = IntervalBoundPropagation.affine(bounds, weight: dense.weight, bias: dense.bias, k: 4) { w, b, x in
            passes.append(x.scalars)
            return Dense(weight: w, bias: b).forward(x, context: ForwardContext(needsBackward: false)).output
        }
        // centre, radius (rounded up unless 0), magnitude |centre| + radius (the same)
        #expect(passes.count == 3)
        #expect(passes[0] == [0, 0.5, 0, 0.25])
        #expect(passes[1][0] == 0 && passes[1][1] == 0 && passes[1][2] == Float(1).nextUp && passes[1][3] == Float(0.5).nextUp)
        #expect(passes[2][0] == 0 && passes[2][1] == Float(0.5).nextUp)
        #expect(!passes.joined().contains { $0.isSubnormal })
        // and the bounds still hold the exact ones: z0 = x0 − 2x1 + 3x2 + 0.5x3 + 0.5 ∈ [−3.625, 2.875]
        #expect(result.bounds.lower.scalars[0] <= -3.625 && result.bounds.upper.scalars[0] >= 2.875)
    }

    @Test func pgdResultsStayWithinTheBounds() throws {
        let test = try DataStore(dataset: .mnist).load().test.prefix(8)
        let model = try Checkpoint.load(
            from: ShippedModelTests.models.appendingPathComponent("mnist-cnn.safetensors")
        ).model
        let images = test.allImages
        for epsilon: Float in [0.01, 0.1] {
            let attack = try AttackMethod.pgd.make(AttackParameters(epsilon: epsilon))
            let result = try runInBatches(
                attack, model: model, images: images, labels: test.labels, goal: .untargeted, seed: 1)
            let box = IntervalBounds.box(around: images, epsilon: epsilon)
            let logits = IntervalBoundPropagation.bounds(model, input: box)
            let margins = IntervalBoundPropagation.marginLowerBounds(
                model, images: images, labels: test.labels, epsilon: epsilon)
            let z = model.logits(result.adversarial)
            for n in 0..<test.labels.count {
                let y = test.labels[n]
                for j in 0..<10 {
                    let value = z.scalars[n * 10 + j]
                    #expect(
                        value >= logits.lower.scalars[n * 10 + j] && value <= logits.upper.scalars[n * 10 + j]
                    )
                    #expect(j == y || z.scalars[n * 10 + y] - value >= margins[n][j])
                }
            }
        }
    }
}

/// `count` points of image `item`'s box: a third of them corners, the rest uniform.
func samplePoints(in box: IntervalBounds, item n: Int, count: Int, generator: inout SplitMix64) -> Tensor {
    let item = box.lower.itemCount
    return Tensor(shape: [count] + Array(box.lower.shape.dropFirst())) { x in
        for s in 0..<count {
            for i in 0..<item {
                let (l, u) = (box.lower.scalars[n * item + i], box.upper.scalars[n * item + i])
                x[s * item + i] =
                    s % 3 == 0
                    ? (Bool.random(using: &generator) ? l : u)
                    : Float.random(in: l...u, using: &generator)
            }
        }
    }
}
