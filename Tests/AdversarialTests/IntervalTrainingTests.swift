import Foundation
import NeuralNet
import Testing

@testable import Adversarial

/// Certified (IBP) training: the backward of the verified loss against central finite
/// differences, its worst-case logits against the certifier's sound margins, the schedule and
/// the initialisation by hand.
@Suite struct IntervalTrainingTests {
    static let plainSpec = "conv4k3s2p1 relu conv6k3p1 relu maxpool2 flatten dropout0.3 dense12 relu dense5"
    /// Batch norm after a convolution and a dense layer: the verified loss's gradient then
    /// also flows through the clean batch's statistics into the layers below.
    static let normalizedSpec = "conv4k3s2p1 batchnorm relu conv6k3p1 relu maxpool2 flatten dense12 batchnorm relu dense5"

    /// A small random network with every layer the interval pass handles, and a few images.
    func smallCase(seed: UInt64, spec: String = plainSpec) throws -> (Model, Tensor, [Int]) {
        var generator = SplitMix64(seed: seed)
        let architecture = try Architecture(parsing: spec, inputShape: [1, 9, 9])
        var model = try Model(architecture: architecture, generator: &generator)
        randomizeNormalization(&model, generator: &generator)
        let images = Tensor(shape: [6, 1, 9, 9]) { x in
            for i in x.indices { x[i] = generator.nextUnitFloat() }
        }
        return (model, images, [0, 1, 2, 3, 4, 2])
    }

    /// The mean mixed loss at the given parameters.
    func meanLoss(
        _ model: Model, parameters: [Tensor], images: Tensor, labels: [Int], epsilon: Float, kappa: Float,
        crownWeight: Float = 0
    ) -> Double {
        var model = model
        model.parameters = parameters
        let losses = IntervalTraining.gradients(
            model, images: images, labels: labels, epsilon: epsilon, kappa: kappa, count: labels.count,
            crownWeight: crownWeight
        ).losses
        return losses.reduce(0) { $0 + Double($1) } / Double(losses.count)
    }

    /// With batch normalisation at fixed statistics (how the verified loss sees it), the
    /// verified loss's backward matches central differences for every parameter.
    @Test func normalizedVerifiedLossMatchesFiniteDifferences() throws {
        var generator = SplitMix64(seed: 12)
        let architecture = try Architecture(
            parsing: "conv4k3s2p1 batchnorm relu conv6k3p1 relu flatten dense12 batchnorm relu dense5", inputShape: [1, 9, 9])
        var model = try Model(architecture: architecture, generator: &generator)
        randomizeNormalization(&model, generator: &generator)
        let images = Tensor(shape: [4, 1, 9, 9]) { x in
            for i in x.indices { x[i] = generator.nextUnitFloat() }
        }
        let labels = [0, 1, 2, 3]
        func loss(_ parameters: [Tensor]) -> (Double, [Tensor]) {
            var copy = model
            copy.parameters = parameters
            let box = IntervalBounds.box(around: images, epsilon: 0.05)
            let result = IntervalTraining.verifiedLoss(copy, box, labels: labels, gradientScale: 1)
            return (result.losses.reduce(0) { $0 + Double($1) }, result.parameterGradients)
        }
        let parameters = model.parameters
        let analytic = loss(parameters).1
        #expect(analytic.count == parameters.count)
        for index in parameters.indices {
            let gaussian = parameters[index].mapScalars { _ in generator.nextGaussian() }
            let norm = gaussian.scalars.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let direction = gaussian.mapScalars { $0 / norm }
            let h: Float = 1e-3
            func shifted(_ sign: Float) -> [Tensor] {
                var p = parameters
                p[index] = Tensor(
                    shape: p[index].shape, scalars: zip(p[index].scalars, direction.scalars).map { $0 + sign * h * $1 })
                return p
            }
            let numeric = (loss(shifted(1)).0 - loss(shifted(-1)).0) / Double(2 * h)
            let predicted = zip(analytic[index].scalars, direction.scalars).reduce(0.0) { $0 + Double($1.0 * $1.1) }
            // The bounds are piecewise linear; their kinks (a ReLU's bound crossing 0) within ±h
            // give differences of a few percent that shrink with h (5.8%, 4%, 1% on conv2.weight
            // at h = 3e-3, 1e-3, 3e-4), while a wrong backward would not.
            #expect(
                abs(numeric - predicted) <= 0.05 * max(abs(numeric), abs(predicted)) + 1e-3,
                "\(model.parameterNames[index]): finite differences \(numeric), backward \(predicted)")
        }
    }

    /// Along a random direction over one parameter tensor at a time, and over all of them at
    /// once, the analytic directional derivative matches central differences: IBP alone, and
    /// with CROWN-IBP's bound mixed in (β, the last argument; through the parameters directly
    /// and through the ReLU and max-pool relaxations' IBP bounds).
    @Test(arguments: [
        (Float(0), Float(0.05), plainSpec, Float(0)), (0.3, 0.1, plainSpec, 0), (0, 0.2, plainSpec, 0),
        (0, 0.05, normalizedSpec, 0), (0.5, 0.1, normalizedSpec, 0),
        (0, 0.05, plainSpec, 1), (0.3, 0.1, plainSpec, 0.5), (0, 0.2, plainSpec, 1),
        (0, 0.05, normalizedSpec, 1), (0.5, 0.1, normalizedSpec, 0.5),
    ])
    func gradientsMatchFiniteDifferences(kappa: Float, epsilon: Float, spec: String, crownWeight: Float) throws {
        let (model, images, labels) = try smallCase(seed: 11, spec: spec)
        let parameters = model.parameters
        let analytic = IntervalTraining.gradients(
            model, images: images, labels: labels, epsilon: epsilon, kappa: kappa, count: labels.count,
            crownWeight: crownWeight
        ).parameterGradients
        #expect(analytic.count == parameters.count)
        var generator = SplitMix64(seed: 5)
        let selections = parameters.indices.map { [$0] } + [Array(parameters.indices)]
        for selection in selections {
            var direction = parameters.map { Tensor(shape: $0.shape) }
            var norm: Double = 0
            for index in selection {
                direction[index] = Tensor(shape: parameters[index].shape) { d in
                    for i in d.indices { d[i] = generator.nextGaussian() }
                }
                norm += direction[index].scalars.reduce(0) { $0 + Double($1 * $1) }
            }
            let scale = Float(1 / norm.squareRoot())
            var predicted: Double = 0
            for index in selection {
                for i in 0..<direction[index].count {
                    direction[index].scalars[i] *= scale
                    predicted += Double(analytic[index].scalars[i] * direction[index].scalars[i])
                }
            }
            // With batch norm the bounds' kinks (a bound crossing 0 at a ReLU, two crossing at a
            // max-pool window) are denser: on conv2.weight the differences give 3.59, 3.70 and
            // 3.85 at h = 3e-3, 5e-4 and 1e-4, against the backward's 3.85. CROWN's bound even
            // jumps where a relaxation switches lines (an unstable ReLU's lower slope where
            // u = −l, a max-pool window's input with the largest lower bound): at h = 3e-3
            // fc1.bias gave −0.48 against the backward's 0.070, at 1e-4 they agree.
            let h: Float = spec == Self.plainSpec && crownWeight == 0 ? 3e-3 : 1e-4
            func shifted(_ sign: Float) -> [Tensor] {
                parameters.indices.map { index in
                    Tensor(
                        shape: parameters[index].shape,
                        scalars: zip(parameters[index].scalars, direction[index].scalars).map { $0 + sign * h * $1 })
                }
            }
            let plus = meanLoss(
                model, parameters: shifted(1), images: images, labels: labels, epsilon: epsilon, kappa: kappa,
                crownWeight: crownWeight)
            let minus = meanLoss(
                model, parameters: shifted(-1), images: images, labels: labels, epsilon: epsilon, kappa: kappa,
                crownWeight: crownWeight)
            let numeric = (plus - minus) / Double(2 * h)
            // The Float32 loss's rounding over 2h sets the absolute floor (about 1e-2 at 1e-4,
            // where the biases below a batch-norm layer have gradient 0).
            let floor = spec == Self.plainSpec && crownWeight == 0 ? 1e-3 : 2e-2
            #expect(
                abs(numeric - predicted) <= 0.02 * max(abs(numeric), abs(predicted)) + floor,
                "parameters \(selection): finite differences \(numeric), backward \(predicted)")
        }
    }

    /// The worst-case logits are minus the certifier's margin lower bounds (which are widened
    /// outward for Float32, so never above them), and zero at the label.
    @Test func worstCaseLogitsAreTheCertifiersMargins() throws {
        let (model, images, labels) = try smallCase(seed: 3)
        for epsilon: Float in [0, 0.02, 0.1] {
            let logits = IntervalTraining.gradients(
                model, images: images, labels: labels, epsilon: epsilon, kappa: 0, count: labels.count
            ).logits
            let margins = IntervalBoundPropagation.marginLowerBounds(
                model, images: images, labels: labels, epsilon: epsilon)
            for n in labels.indices {
                for j in 0..<5 {
                    // After the clean rows.
                    let worst = logits.scalars[(labels.count + n) * 5 + j]
                    if j == labels[n] {
                        #expect(worst == 0)
                    } else {
                        #expect(margins[n][j] <= -worst + 1e-6)
                        #expect(abs(margins[n][j] + worst) <= 1e-3 * (1 + abs(worst)))
                    }
                }
            }
        }
    }

    /// CROWN-IBP's worst-case logits (β = 1) are the certifier's CROWN bound (same relaxations,
    /// without its Float32 error terms) wherever that bound is tighter than IBP's, never
    /// tighter than the certifier's sound margins by more than rounding, and every sampled point
    /// of the box and every corner the sign of a random direction picks stays within them.
    @Test(arguments: [IntervalTrainingTests.plainSpec, IntervalTrainingTests.normalizedSpec])
    func crownWorstCaseLogitsAreTheCertifiersCrownBound(spec: String) throws {
        var (model, images, labels) = try smallCase(seed: 7, spec: spec)
        // Training bounds the network normalised with the batch's statistics; so do the
        // certifier and the sampled points with these buffers.
        if !model.bufferNames.isEmpty {
            model.buffers = model.gradients(
                images, training: 0, needsInputGradient: false, needsParameterGradients: false,
                loss: { logits, _ in ([Float](repeating: 0, count: logits.batchSize), Tensor(shape: logits.shape)) }
            ).batchBuffers
        }
        var generator = SplitMix64(seed: 21)
        var tighter = 0
        for epsilon: Float in [0.02, 0.1, 0.3] {
            let crown = IntervalTraining.gradients(
                model, images: images, labels: labels, epsilon: epsilon, kappa: 0, count: labels.count, crownWeight: 1
            ).logits
            let ibp = IntervalTraining.gradients(
                model, images: images, labels: labels, epsilon: epsilon, kappa: 0, count: labels.count
            ).logits
            let certified = LinearBoundPropagation.marginLowerBounds(
                model, images: images, labels: labels, epsilon: epsilon)
            let box = IntervalBounds.box(around: images, epsilon: epsilon)
            for n in labels.indices {
                let offset = (labels.count + n) * 5
                let (m, i) = ((0..<5).map { -crown.scalars[offset + $0] }, (0..<5).map { -ibp.scalars[offset + $0] })
                #expect(m[labels[n]] == 0)
                for j in 0..<5 where j != labels[n] {
                    let tolerance = 1e-3 * (1 + abs(m[j]))
                    #expect(certified[n][j] <= max(m[j], i[j]) + tolerance, "image \(n), class \(j)")
                    if m[j] > i[j] + tolerance {
                        tighter += 1
                        #expect(abs(certified[n][j] - m[j]) <= tolerance, "image \(n), class \(j)")
                    }
                }
                for _ in 0..<200 {
                    let d = images.itemCount
                    let point = Tensor(shape: [1] + Array(images.shape.dropFirst())) { x in
                        for k in 0..<d {
                            let (lo, hi) = (box.lower.scalars[n * d + k], box.upper.scalars[n * d + k])
                            x[k] = generator.nextUnitFloat() < 0.5 ? lo + (hi - lo) * generator.nextUnitFloat() : (generator.nextUnitFloat() < 0.5 ? lo : hi)
                        }
                    }
                    let logits = model.logits(point).scalars
                    for j in 0..<5 where j != labels[n] {
                        #expect(logits[labels[n]] - logits[j] >= m[j] - 1e-4 * (1 + abs(m[j])))
                    }
                }
            }
        }
        #expect(tighter > 0, "CROWN is tighter than IBP somewhere")
    }

    /// With κ = 1 (the natural warm-up) the batch's gradients are plain cross-entropy's, in
    /// training mode.
    @Test func naturalWarmUpIsCrossEntropy() throws {
        let (model, images, labels) = try smallCase(seed: 4)
        let mixed = IntervalTraining.gradients(
            model, images: images, labels: labels, epsilon: 0.3, kappa: 1, count: labels.count)
        let natural = model.gradients(
            images, training: 0, needsInputGradient: false, needsParameterGradients: true,
            loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows], gradientScale: 1 / 6) })
        #expect(mixed.losses == natural.losses)
        #expect(zip(mixed.parameterGradients, natural.parameterGradients).allSatisfy { $0.scalars == $1.scalars })
    }

    @Test func scheduleRampsEpsilonUpAndKappaDown() throws {
        let training = try IntervalTraining(epsilon: 0.4, kappa: 0.5, rampStart: 1, rampEpochs: 4)
        let points: [(Double, Float, Float)] = [(0, 0, 1), (0.99, 0, 1), (1, 0, 1), (2, 0.1, 0.875), (3, 0.2, 0.75), (5, 0.4, 0.5), (9, 0.4, 0.5)]
        for (epoch, epsilon, kappa) in points {
            let (e, k) = training.schedule(epoch: epoch)
            #expect(abs(e - epsilon) < 1e-6 && abs(k - kappa) < 1e-6, "epoch \(epoch): ε \(e), κ \(k)")
        }
        #expect(points.allSatisfy { training.crownWeight(epoch: $0.0) == 0 }, "IBP has no CROWN weight")
        let crown = try IntervalTraining(method: .crownIBP, epsilon: 0.4, kappa: 0.5, rampStart: 1, rampEpochs: 4)
        for (epoch, beta) in [(0.0, Float(1)), (1, 1), (2, 0.75), (4, 0.25), (5, 0), (9, 0)] {
            #expect(abs(crown.crownWeight(epoch: epoch) - beta) < 1e-6, "epoch \(epoch)")
        }
        let immediate = try IntervalTraining(epsilon: 0.3, rampStart: 0, rampEpochs: 0).schedule(epoch: 0)
        #expect(immediate.epsilon == 0.3 && immediate.kappa == 0.5)
        for bad in [(Float(-0.1), Float(0.5)), (1.5, 0.5), (.nan, 0.5), (0.3, -1), (0.3, 2), (0.3, .nan)] {
            #expect(throws: AdversarialError.self) { try IntervalTraining(epsilon: bad.0, kappa: bad.1) }
        }
        #expect(throws: AdversarialError.self) { try IntervalTraining(epsilon: 0.3, rampEpochs: -1) }
    }

    /// Shi et al.'s initialisation: N(0, 2π/fan_in²) for every weight but the last layer's.
    @Test func shiInitialisation() throws {
        var generator = SplitMix64(seed: 9)
        let architecture = try Architecture(
            parsing: "conv32k3p1 relu conv64k4s2p1 relu flatten dense256 relu dense10", inputShape: [1, 28, 28])
        let original = try Model(architecture: architecture, generator: &generator)
        var model = original
        IntervalTraining.initialize(&model, generator: &generator)
        let names = model.parameterNames
        let fanIns: [String: Int] = ["conv1.weight": 9, "conv2.weight": 32 * 16, "fc1.weight": 64 * 14 * 14]
        for (index, name) in names.enumerated() {
            let values = model.parameters[index].scalars
            if let fanIn = fanIns[name] {
                let mean = values.reduce(0) { $0 + Double($1) } / Double(values.count)
                let std = (values.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count))
                    .squareRoot()
                let expected = (2 * Double.pi).squareRoot() / Double(fanIn)
                #expect(abs(std / expected - 1) < 0.1, "\(name): std \(std), expected \(expected)")
                #expect(abs(mean) < 0.1 * expected + 3 * expected / Double(values.count).squareRoot())
            } else {
                #expect(values == original.parameters[index].scalars, "\(name) keeps its initialisation")
            }
        }
    }
}
