import Datasets
import Foundation
import NeuralNet
import Testing

@testable import Adversarial

/// CROWN: a hand-worked case where it proves what IBP cannot, never looser than IBP, and
/// never left by sampled, corner or attacked points.
@Suite struct LinearBoundTests {
    /// `flatten dense2 relu dense2` on one pixel: h = (relu(x − ½), relu(½ − x)),
    /// z0 = h0 + h1 = |x − ½|, z1 = 0.6.
    func absoluteValue() throws -> Model {
        let architecture = Architecture(
            layers: [.flatten, .dense(outputFeatures: 2), .relu, .dense(outputFeatures: 2)], inputShape: [1, 1, 1])
        return try Model(
            architecture: architecture,
            parameters: [
                "fc1.weight": Tensor(shape: [2, 1], scalars: [1, -1]),
                "fc1.bias": Tensor(shape: [2], scalars: [-0.5, 0.5]),
                "fc2.weight": Tensor(shape: [2, 2], scalars: [1, 1, 0, 0]),
                "fc2.bias": Tensor(shape: [2], scalars: [0, 0.6]),
            ])
    }

    @Test func handWorkedReLU() throws {
        let model = try absoluteValue()
        let x = Tensor(shape: [1, 1, 1, 1], scalars: [0.5])
        // Over x ∈ [0, 1] the margin z1 − z0 = 0.6 − |x − ½| is at least 0.1. IBP bounds each
        // h by [0, ½] and gets 0.6 − 1 = −0.4; CROWN's upper lines h0 ≤ x/2, h1 ≤ (1 − x)/2
        // sum to ½ and give exactly 0.1.
        let ibp = IntervalBoundPropagation.marginLowerBounds(model, images: x, labels: [1], epsilon: 0.5)
        let crown = LinearBoundPropagation.marginLowerBounds(model, images: x, labels: [1], epsilon: 0.5)
        #expect(ibp[0][0] <= -0.4 && ibp[0][0] > -0.4 - 1e-4)
        #expect(crown[0][0] <= 0.1 && crown[0][0] > 0.1 - 1e-4)
        #expect(crown[0][1] == .infinity)
        #expect(IntervalBoundPropagation.certify(model, images: x, labels: [1], epsilon: 0.5) == [false])
        #expect(LinearBoundPropagation.certify(model, images: x, labels: [1], epsilon: 0.5) == [true])
    }

    @Test(arguments: [
        "conv6k3s2p1 relu maxpool2 conv8k3p1 relu flatten dropout0.5 dense16 relu dense10",
        "conv4k3 relu conv6k4s2p1 relu flatten dense12 relu dense12 relu dense10",
        "conv4k3 batchnorm relu conv6k4s2p1 batchnorm relu flatten dense12 batchnorm relu dense10",
    ])
    func sampledAndCornerPointsStayWithinTheBounds(spec: String) throws {
        var generator = SplitMix64(seed: 11)
        let architecture = try Architecture(parsing: spec, inputShape: [1, 12, 12])
        var model = try Model(architecture: architecture, generator: &generator)
        randomizeNormalization(&model, generator: &generator)
        let images = 3
        let centers = Tensor(shape: [images, 1, 12, 12]) { x in
            for i in x.indices { x[i] = Float.random(in: 0...1, using: &generator) }
        }
        let labels = model.predictions(centers)
        for epsilon: Float in [0, 0.01, 0.05, 0.3] {
            let box = IntervalBounds.box(around: centers, epsilon: epsilon)
            let ibp = IntervalBoundPropagation.marginLowerBounds(
                model, images: centers, labels: labels, epsilon: epsilon)
            let crown = LinearBoundPropagation.marginLowerBounds(
                model, images: centers, labels: labels, epsilon: epsilon)
            let samples = 600
            for n in 0..<images {
                #expect(zip(crown[n], ibp[n]).allSatisfy { $0 >= $1 }, "CROWN looser than IBP")
                let points = samplePoints(in: box, item: n, count: samples, generator: &generator)
                let z = model.logits(points)
                let y = labels[n]
                for s in 0..<samples {
                    for j in 0..<10 where j != y {
                        #expect(z.scalars[s * 10 + y] - z.scalars[s * 10 + j] >= crown[n][j])
                    }
                }
            }
        }
    }

    /// On the shipped standard model: PGD's points (which minimise the margin) stay above
    /// CROWN's bounds, certificates shrink with ε, and CROWN proves more than IBP.
    @Test func shippedModelPGDAndMonotone() throws {
        let test = try DataStore(dataset: .mnist).load().test.prefix(64)
        let model = try Checkpoint.load(
            from: ShippedModelTests.models.appendingPathComponent("mnist-cnn.safetensors")
        ).model
        let images = test.allImages
        var previous: [Bool]?
        var gained = 0
        for epsilon: Float in [0.003, 0.005, 0.01, 0.03] {
            let attack = try AttackMethod.pgd.make(AttackParameters(epsilon: epsilon))
            let result = try runInBatches(
                attack, model: model, images: images, labels: test.labels, goal: .untargeted, seed: 1)
            let crown = LinearBoundPropagation.marginLowerBounds(
                model, images: images, labels: test.labels, epsilon: epsilon)
            let z = model.logits(result.adversarial)
            for n in 0..<test.labels.count {
                let y = test.labels[n]
                for j in 0..<10 where j != y {
                    #expect(z.scalars[n * 10 + y] - z.scalars[n * 10 + j] >= crown[n][j])
                }
            }
            let verified = LinearBoundPropagation.certify(model, images: images, labels: test.labels, epsilon: epsilon)
            let interval = IntervalBoundPropagation.certify(model, images: images, labels: test.labels, epsilon: epsilon)
            #expect(zip(verified, interval).allSatisfy { $0 || !$1 })
            // no certified image is broken by PGD
            #expect(test.labels.indices.allSatisfy { !verified[$0] || !result.success[$0] })
            if let previous { #expect(zip(verified, previous).allSatisfy { !$0 || $1 }) }
            previous = verified
            gained += verified.filter { $0 }.count - interval.filter { $0 }.count
        }
        #expect(gained > 0)
    }
}

/// Gives every batch-norm layer of `model` random γ (of both signs), β and running statistics,
/// so that bound tests do not see the identity map of a fresh layer.
func randomizeNormalization(_ model: inout Model, generator: inout SplitMix64) {
    var parameters = model.parameters
    for (index, name) in model.parameterNames.enumerated() where name.hasPrefix("bn") {
        parameters[index] = parameters[index].mapScalars { _ in generator.nextGaussian() }
    }
    model.parameters = parameters
    model.buffers = zip(model.bufferNames, model.buffers).map { name, buffer in
        if name.hasSuffix("running_mean") { return buffer.mapScalars { _ in 0.3 * generator.nextGaussian() } }
        if name.hasSuffix("running_var") { return buffer.mapScalars { _ in Float.random(in: 0.05...2, using: &generator) } }
        return buffer
    }
}
