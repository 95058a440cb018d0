import Foundation
import NeuralNet

/// Universal adversarial perturbations (Moosavi-Dezfooli, Fawzi, Fawzi & Frossard 2017,
/// "Universal adversarial perturbations"): one perturbation δ, ‖δ‖ ≤ ε, that changes the
/// model's answer on most images of a distribution. It is learned here on training
/// images only (``learn(model:images:labels:seed:observer:)`` sees nothing else) and then
/// added unchanged, by ``UniversalAttack``, to images it never saw.
///
/// The default update is stochastic gradient ascent on δ in the manner of Shafahi, Najibi,
/// Xu, Dickerson, Davis & Goldstein 2020 ("Universal adversarial training"): for each
/// mini-batch, g = Σ p_y·∇_δ CE(clip(x + δ, 0, 1), y), the cross-entropy's gradient
/// weighted by the label's probability (that is, −∇ Σ p_y: the gradient of the expected
/// number of images still classified correctly, so images already fooled stop pulling,
/// the role Shafahi et al.'s clipped loss plays); pixels pushed outside [0, 1] pass no
/// gradient. Then δ ← δ + α·sign(g) (L∞) or δ + α·g/‖g‖₂ (L2), projected back onto the
/// ε-ball, α decaying from `stepSize` to 0 on a half cosine. The best of `restarts`
/// attempts (different shuffles) by training fooling rate is kept. On the shipped MNIST
/// model this fools about half the test digits at ε = 0.25 in seconds.
///
/// `.deepfool` is the original algorithm: image by image in a shuffled order, for each
/// training image whose predicted class δ does not change yet, the minimal L2 perturbation
/// DeepFool finds from clip(x + δ, 0, 1) (at most 10 steps) is added to δ, which is then
/// projected onto the ε-ball; it stops once 80% of the training images are fooled (the
/// paper's ξ = 0.2). On MNIST its per-image perturbations largely cancel: it fools few
/// digits (see the README), and one attempt takes minutes.
public struct UniversalPerturbation: Sendable {
    /// How δ is updated.
    public enum Update: String, Sendable, CaseIterable {
        /// Signed gradient ascent on the probability-weighted cross-entropy.
        case sgd
        /// Moosavi-Dezfooli et al.'s DeepFool-based algorithm.
        case deepfool
    }

    /// `.linf` or `.l2`.
    public let norm: Norm
    /// The budget of δ.
    public let epsilon: Float
    /// Passes over the training images per attempt.
    public let epochs: Int
    /// Images per gradient step (`.sgd`).
    public let batchSize: Int
    /// The first step α (`.sgd`).
    public let stepSize: Float
    /// Attempts; the one with the highest training fooling rate is kept.
    public let restarts: Int
    public let update: Update

    /// ε when none is given: 0.3 in L∞ (the MNIST convention), 3 in L2.
    public static func defaultEpsilon(_ norm: Norm) -> Float { norm == .l2 ? 3 : 0.3 }

    /// - Parameters:
    ///   - norm: `.linf` (default) or `.l2`.
    ///   - epsilon: the budget, ≥ 0 (at most 1 in L∞); default ``defaultEpsilon(_:)``.
    ///   - epochs: passes over the training images, at least 1 (default 5).
    ///   - batchSize: at least 1 (default 20).
    ///   - stepSize: the first step, positive; default 0.6·ε.
    ///   - restarts: at least 1 (default 3).
    ///   - update: `.sgd` (default) or `.deepfool`.
    public init(
        norm: Norm = .linf, epsilon: Float? = nil, epochs: Int = 5, batchSize: Int = 20, stepSize: Float? = nil,
        restarts: Int = 3, update: Update = .sgd
    ) throws(AdversarialError) {
        guard norm == .linf || norm == .l2 else {
            throw AdversarialError("universal perturbations support the linf and l2 norms, got \(norm.rawValue)")
        }
        let epsilon = epsilon ?? Self.defaultEpsilon(norm)
        try AttackCheck.epsilon(epsilon, norm: norm)
        try AttackCheck.atLeast(1, epochs, "epochs")
        try AttackCheck.atLeast(1, batchSize, "batch size")
        try AttackCheck.atLeast(1, restarts, "restarts")
        if let stepSize { try AttackCheck.positive(stepSize, "step size") }
        self.norm = norm
        self.epsilon = epsilon
        self.epochs = epochs
        self.batchSize = batchSize
        self.stepSize = stepSize ?? 0.6 * epsilon
        self.restarts = restarts
        self.update = update
    }

    /// Learns δ on `images` (training images) and their labels. Every step is reported to
    /// `observer` (the mini-batch, or the one image, with the label's probability), which
    /// may stop the learning, as may the cancellation of the task; the attempt stopped
    /// competes with those finished.
    public func learn(
        model: Model, images: Tensor, labels: [Int], seed: UInt64, observer: StepObserver? = nil
    ) throws(AdversarialError) -> UniversalLearning {
        try validateAttackInput(model: model, images: images, labels: labels, goal: .untargeted)
        guard !labels.isEmpty else { throw AdversarialError("a universal perturbation needs training images") }
        let clean = model.predictions(images, batchSize: 1000)
        let zero = Tensor(shape: [1] + Array(images.shape.dropFirst()))
        var best = UniversalLearning(
            perturbation: zero, steps: 0, trainingFoolingRate: 0, queries: labels.count, stopped: false)
        guard epsilon > 0 else { return best }
        var control = StepControl(observer)
        var steps = 0, queries = labels.count
        for attempt in 0..<restarts {
            var learning = UniversalLearning(
                perturbation: zero, steps: 0, trainingFoolingRate: 0, queries: 0, stopped: false)
            let stopped: Bool
            switch update {
            case .sgd:
                stopped = ascend(
                    &learning, attempt: attempt, model: model, images: images, labels: labels, seed: seed,
                    control: &control)
            case .deepfool:
                stopped = try deepFool(
                    &learning, attempt: attempt, model: model, images: images, clean: clean, seed: seed,
                    control: &control)
            }
            learning.trainingFoolingRate = foolingRate(
                learning.perturbation, model: model, images: images, labels: labels, clean: clean)
            steps += learning.steps
            queries += learning.queries + labels.count
            if attempt == 0 || learning.trainingFoolingRate > best.trainingFoolingRate { best = learning }
            if stopped { break }
        }
        best.steps = steps
        best.queries = queries
        best.stopped = control.stopped
        return best
    }

    /// The order of the training images in one pass, shuffled with its own stream.
    private func order(count: Int, seed: UInt64, epoch: Int, attempt: Int = 0) -> [Int] {
        var generator = SplitMix64(seed: seed, stream: 0x0AE, UInt64(epoch), UInt64(attempt))
        return Array(0..<count).shuffled(using: &generator)
    }

    /// One attempt of the gradient update from δ = 0, its passes shuffled with `attempt`'s
    /// own streams; true when the observer (or the task) stopped it.
    private func ascend(
        _ learning: inout UniversalLearning, attempt: Int, model: Model, images: Tensor, labels: [Int],
        seed: UInt64, control: inout StepControl
    ) -> Bool {
        let count = labels.count
        let size = images.itemCount
        let total = epochs * ((count + batchSize - 1) / batchSize)
        var delta = Tensor(shape: learning.perturbation.shape)
        defer { learning.perturbation = delta }
        var step = 0
        for epoch in 0..<epochs {
            let order = order(count: count, seed: seed, epoch: epoch, attempt: attempt)
            for start in stride(from: 0, to: count, by: batchSize) {
                let batch = Array(order[start..<min(start + batchSize, count)])
                var x = images.gathering(batch)
                // Which pixels clip(x + δ) passes: those not pushed outside [0, 1].
                var passes = [Bool](repeating: true, count: x.count)
                for index in 0..<x.count {
                    let value = x.scalars[index] + delta.scalars[index % size]
                    passes[index] = value >= 0 && value <= 1
                    x.scalars[index] = min(max(value, 0), 1)
                }
                let (gradient, logits, losses) = model.inputGradient(
                    x, targets: batch.map { labels[$0] }, objective: .crossEntropy)
                learning.queries += batch.count
                // −∇ Σ p_label = Σ p_label · ∇ cross-entropy: each image weighted by its label's
                // probability, so images already fooled stop pulling.
                var g = [Float](repeating: 0, count: size)
                for index in 0..<x.count where passes[index] {
                    g[index % size] += expf(-losses[index / size]) * gradient.scalars[index]
                }
                let alpha = LearningRateSchedule.cosineDecay(stepSize, 0, Float(step) / Float(total))
                if norm == .linf {
                    for index in 0..<size {
                        let change: Float = g[index] > 0 ? alpha : (g[index] < 0 ? -alpha : 0)
                        delta.scalars[index] = min(max(delta.scalars[index] + change, -epsilon), epsilon)
                    }
                } else {
                    let length = g.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    if length > 0 { delta.add(Tensor(shape: delta.shape, scalars: g), scaledBy: alpha / length) }
                    delta = projectedL2(delta)
                }
                step += 1
                learning.steps += 1
                let stop = control.shouldStop(
                    after: OptimizationStep(
                        step: step, steps: total, attempt: attempt, items: batch, images: x,
                        probabilities: labelProbabilities(logits, labels: batch.map { labels[$0] })))
                if stop { return true }
            }
        }
        return false
    }

    /// One attempt of the original algorithm; true when stopped.
    private func deepFool(
        _ learning: inout UniversalLearning, attempt: Int, model: Model, images: Tensor, clean: [Int],
        seed: UInt64, control: inout StepControl
    ) throws(AdversarialError) -> Bool {
        let count = clean.count
        let deepFool = try DeepFool(norm: .l2, steps: 10)
        var delta = Tensor(shape: learning.perturbation.shape)
        defer { learning.perturbation = delta }
        var step = 0
        for epoch in 0..<epochs {
            for item in order(count: count, seed: seed, epoch: epoch, attempt: attempt) {
                let x = perturbed(images.batch(item..<item + 1), by: delta)
                let probabilities = model.probabilities(x)
                learning.queries += 1
                if argmax(rows: probabilities)[0] == clean[item] {
                    let result = try deepFool.run(
                        model: model, images: x, labels: [clean[item]], goal: .untargeted, seed: seed)
                    learning.queries += result.queries[0]
                    if result.success[0] {
                        delta.add(result.adversarial - x)
                        delta = norm == .linf ? delta.clamped(to: -epsilon...epsilon) : projectedL2(delta)
                    }
                }
                step += 1
                learning.steps += 1
                let stop = control.shouldStop(
                    after: OptimizationStep(
                        step: step, steps: epochs * count, attempt: attempt, items: [item], images: x,
                        probabilities: [probabilities.scalars[clean[item]]]))
                if stop { return true }
            }
            let fooled = zip(model.predictions(perturbed(images, by: delta), batchSize: 1000), clean)
                .filter { $0 != $1 }.count
            learning.queries += count
            if 5 * fooled >= 4 * count { return false }
        }
        return false
    }

    /// δ scaled onto the L2 ball of radius ε, if it lies outside, with the bound checked in
    /// the same Float sum the reported distances use.
    private func projectedL2(_ delta: Tensor) -> Tensor {
        let zero = Tensor(shape: delta.shape)
        var scaled = delta
        let length = Norm.l2.distances(delta, zero)[0]
        guard length > epsilon else { return delta }
        var factor = epsilon / length
        while true {
            scaled = factor * delta
            if Norm.l2.distances(scaled, zero)[0] <= epsilon { return scaled }
            factor = factor.nextDown
        }
    }

    /// The fraction of the correctly classified images (`clean` are the model's answers)
    /// whose predicted class δ changes.
    private func foolingRate(_ delta: Tensor, model: Model, images: Tensor, labels: [Int], clean: [Int]) -> Double {
        let attacked = model.predictions(perturbed(images, by: delta), batchSize: 1000)
        let correct = labels.indices.filter { clean[$0] == labels[$0] }
        return Double(correct.filter { attacked[$0] != clean[$0] }.count) / Double(max(correct.count, 1))
    }

    private func labelProbabilities(_ logits: Tensor, labels: [Int]) -> [Float] {
        let probabilities = softmax(logits)
        let classes = probabilities.shape[1]
        return labels.enumerated().map { row, label in probabilities.scalars[row * classes + label] }
    }
}

/// clip(x + δ, 0, 1) for every image of `images` and one perturbation δ [1, C, H, W].
func perturbed(_ images: Tensor, by delta: Tensor) -> Tensor {
    let size = delta.count
    precondition(images.itemCount == size, "the perturbation's shape differs from the images'")
    var x = images
    for index in 0..<x.count { x.scalars[index] = min(max(x.scalars[index] + delta.scalars[index % size], 0), 1) }
    return x
}

/// What learning a universal perturbation produced.
public struct UniversalLearning: Sendable {
    /// δ [1, C, H, W], within ε in the perturbation's norm.
    public var perturbation: Tensor
    /// Updates made (mini-batches, or images for the DeepFool update).
    public var steps: Int
    /// The fraction of correctly classified training images whose predicted class δ changes.
    public var trainingFoolingRate: Double
    /// Images the model evaluated while learning (forward passes, with or without a backward pass).
    public var queries: Int
    /// Whether an observer (or the cancellation of the task) stopped the learning.
    public var stopped: Bool
}

/// A fixed perturbation added to every image: how a learned universal perturbation is
/// scored on images it was not learned on. Each returned image is clip(x + δ, 0, 1), every
/// image included (also those the model already got wrong), rounded inwards where Float
/// rounding would put it an ulp outside the ε-ball, so the bound holds exactly.
public struct UniversalAttack: FixedEpsilonAttack {
    /// δ [1, C, H, W].
    public let perturbation: Tensor
    public let epsilon: Float
    public let norm: Norm
    public var name: String { norm == .linf ? "universal" : "universal-l2" }

    /// Checks that δ is one image within ε in `norm` (L∞ or L2).
    public init(perturbation: Tensor, epsilon: Float, norm: Norm) throws(AdversarialError) {
        guard norm == .linf || norm == .l2 else {
            throw AdversarialError("universal perturbations support the linf and l2 norms, got \(norm.rawValue)")
        }
        try AttackCheck.epsilon(epsilon, norm: norm)
        guard perturbation.shape.count == 4, perturbation.batchSize == 1,
            norm.distances(perturbation, Tensor(shape: perturbation.shape))[0] <= epsilon
        else {
            throw AdversarialError("the perturbation must be one image [1, C, H, W] within ε = \(epsilon)")
        }
        self.perturbation = perturbation
        self.epsilon = epsilon
        self.norm = norm
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        guard Array(images.shape.dropFirst()) == Array(perturbation.shape.dropFirst()) else {
            throw AdversarialError("images \(images.shape) do not fit the perturbation \(perturbation.shape)")
        }
        var adversarial = perturbed(images, by: perturbation)
        if norm == .linf {
            PixelBox(around: images, epsilon: epsilon).project(&adversarial)
        } else {
            projectL2(&adversarial, around: images, epsilon: epsilon)
        }
        let targets = goal.mode.targets(for: images, labels: labels, model: model, seed: seed)
        let probabilities = model.probabilities(adversarial)
        var control = StepControl(observer)
        let stopped =
            !labels.isEmpty
            && control.shouldStop(
                after: OptimizationStep(
                    step: 1, steps: 1, attempt: 0, items: Array(labels.indices), images: adversarial,
                    probabilities: labels.indices.map {
                        probabilities.scalars[$0 * model.classCount + (targets?[$0] ?? labels[$0])]
                    }))
        let hopeless = labels.indices.map { item in targets.map { $0[item] == labels[item] } ?? false }
        let success = zip(goal.criterion.isMet(probabilities: probabilities, labels: labels, targets: targets), hopeless)
            .map { $0 && !$1 }
        return AttackResult(
            adversarial: adversarial, success: success, targets: targets,
            iterations: Array(repeating: 0, count: labels.count), queries: Array(repeating: 1, count: labels.count),
            probabilities: probabilities, stopped: stopped)
    }
}
