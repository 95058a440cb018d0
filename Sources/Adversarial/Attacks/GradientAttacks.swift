import Foundation
import NeuralNet

// FGSM, BIM, PGD (L∞ and L2) and MI-FGSM: one engine, as in Foolbox, where FGSM is PGD
// with a single step of size ε and no random start, and the L∞ and L2 variants differ
// only in how a gradient becomes a step (sign or unit L2 vector), how a point is brought
// back into the ε-ball (clip or rescale) and how a random start is drawn.

/// The engine behind the gradient attacks of this file (Foolbox's `BaseGradientDescent`).
///
/// Each step runs one forward/backward pass for every image still being attacked. The
/// loss is the cross-entropy of the label (ascended) or, for targeted goals, of the target
/// (descended). The logits of the same pass tell which images already meet the criterion:
/// those stop there, keeping an adversarial image and leaving the rest of the batch less
/// work. Restarts attack only the images no attempt has made adversarial yet.
struct GradientDescentEngine: Sendable {
    var norm: Norm
    var epsilon: Float
    var steps: Int
    var stepSize: Float
    var randomStart: Bool
    var restarts: Int
    /// MI-FGSM's decay μ of the accumulated L1-normalised gradient; nil for none.
    var momentum: Float?

    func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        var ledger = AttackLedger(model: model, images: images, labels: labels, goal: goal, seed: seed)
        var control = StepControl(observer)
        let budget = norm == .linf ? PixelBox(around: images, epsilon: epsilon) : nil
        // The engine ascends sign·CE(class): +1 raises the label's cross-entropy
        // (untargeted), −1 lowers the target's (targeted).
        let sign: Float = ledger.isTargeted ? -1 : 1
        attempts: for restart in 0..<restarts {
            var items = ledger.unfinished
            if items.isEmpty { break }
            var clean = images.gathering(items)
            var box = budget?.gathering(items)
            var x = startingPoint(clean: clean, items: items, box: box, restart: restart, seed: seed)
            var velocity = Tensor(shape: x.shape)
            // Step `steps` only evaluates the last point.
            for step in 0...steps {
                let classes = items.map { ledger.lossClass($0) }
                var gradient = Tensor(shape: [0])
                let logits: Tensor
                let losses: [Float]
                if step < steps {
                    (gradient, logits, losses) = model.inputGradient(
                        x, targets: classes, objective: .crossEntropy, sign: sign)
                } else {
                    logits = model.logits(x)
                    losses =
                        Objective.crossEntropy.evaluate(logits: logits, targets: classes[...], sign: sign)
                        .losses
                }
                ledger.addQueries(items)
                let (met, stop) = ledger.judge(
                    logits: logits, items: items, images: x, step: step, of: steps, attempt: restart,
                    control: &control)
                var keep: [Int] = []
                for (row, item) in items.enumerated() {
                    if met[row] {
                        ledger.succeed(item, image: x, row: row)
                        ledger.iterations[item] += step
                    } else if step == steps || stop {
                        // Failed (or stopped): the returned image is the attempt with the highest loss.
                        ledger.offer(item, image: x, row: row, score: losses[row])
                        ledger.iterations[item] += step
                    } else {
                        keep.append(row)
                    }
                }
                if stop { break attempts }
                if keep.isEmpty { break }
                if keep.count < items.count {
                    items = keep.map { items[$0] }
                    x = x.gathering(keep)
                    clean = clean.gathering(keep)
                    box = box?.gathering(keep)
                    gradient = gradient.gathering(keep)
                    velocity = velocity.gathering(keep)
                }
                var direction = gradient
                if let momentum {
                    // g ← μ·g + ∇/‖∇‖₁ (Dong et al. 2018, eq. 6).
                    accumulate(&velocity, gradient, decay: momentum)
                    direction = velocity
                }
                take(step: direction, on: &x, clean: clean, box: box)
            }
        }
        return ledger.verified(model: model, stopped: control.stopped)
    }

    /// The first point of an attempt: the clean image, or with `randomStart` a uniform
    /// point of the L∞ ball (Madry et al.) or of the L2 ball (Foolbox), clipped to [0, 1].
    /// Each image draws from its own stream (seed, restart, row), independent of the
    /// other images and of how the engine shards the batch.
    private func startingPoint(clean: Tensor, items: [Int], box: PixelBox?, restart: Int, seed: UInt64)
        -> Tensor
    {
        var x = clean
        guard randomStart, epsilon > 0 else { return x }
        let stream = { (row: Int) in SplitMix64(seed: seed, stream: 0x96D, UInt64(restart), UInt64(items[row])) }
        switch norm {
        case .l2:
            let size = x.itemCount
            for row in items.indices {
                var generator = stream(row)
                let range = row * size..<(row + 1) * size
                // A Gaussian direction has a uniform angle; radius ε·u^(1/d) makes the
                // point uniform in the ball's volume.
                var direction = range.map { _ in generator.nextGaussian() }
                let length = max(direction.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
                let radius = epsilon * powf(generator.nextUnitFloat(), 1 / Float(size))
                for index in direction.indices { direction[index] *= radius / length }
                for (offset, index) in range.enumerated() { x.scalars[index] += direction[offset] }
            }
        case .linf, .l0:
            x.addUniformNoise(radius: epsilon, generator: stream)
        }
        if let box { box.project(&x) } else { projectL2(&x, around: clean, epsilon: epsilon) }
        return x
    }

    /// One ascent step along `direction`, then back into the ball and [0, 1].
    private func take(step direction: Tensor, on x: inout Tensor, clean: Tensor, box: PixelBox?) {
        let size = x.itemCount
        let alpha = stepSize
        if let box {
            box.step(&x, signOf: direction, size: alpha)
        } else {
            let norms = AttackMath.l2Norms(direction)
            x.scalars.withUnsafeMutableBufferPointer { x in
                direction.scalars.withUnsafeBufferPointer { g in
                    for (row, norm) in norms.enumerated() where norm > 0 {
                        let scale = alpha / norm
                        for index in row * size..<(row + 1) * size { x[index] += scale * g[index] }
                    }
                }
            }
            projectL2(&x, around: clean, epsilon: epsilon)
        }
    }

    private func accumulate(_ velocity: inout Tensor, _ gradient: Tensor, decay: Float) {
        let size = gradient.itemCount
        gradient.scalars.withUnsafeBufferPointer { g in
            velocity.scalars.withUnsafeMutableBufferPointer { v in
                for row in 0..<gradient.batchSize {
                    let range = row * size..<(row + 1) * size
                    var l1: Float = 0
                    for index in range { l1 += abs(g[index]) }
                    let scale = 1 / max(l1, 1e-12)
                    for index in range { v[index] = decay * v[index] + scale * g[index] }
                }
            }
        }
    }
}

/// The fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, "Explaining and
/// harnessing adversarial examples"): one step of size ε along the sign of the loss
/// gradient, x' = clip(x + ε·sign(∇ₓ L)). Foolbox's `FGSM`: PGD with one step and no
/// random start.
public struct FGSM: FixedEpsilonAttack {
    /// The L∞ budget, which is also the step.
    public let epsilon: Float
    public var name: String { "fgsm" }
    public var norm: Norm { .linf }

    /// - Parameter epsilon: the L∞ budget, in [0, 1].
    public init(epsilon: Float = 0.3) throws(AdversarialError) {
        try AttackCheck.epsilon(epsilon, norm: .linf)
        self.epsilon = epsilon
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try GradientDescentEngine(
            norm: .linf, epsilon: epsilon, steps: 1, stepSize: epsilon, randomStart: false, restarts: 1,
            momentum: nil
        ).run(model: model, images: images, labels: labels, goal: goal, seed: seed, observer: observer)
    }
}

/// The basic iterative method (Kurakin, Goodfellow & Bengio 2017, "Adversarial examples
/// in the physical world"), also called I-FGSM: FGSM steps of size α from the clean
/// image, clipped to the ε-ball after each step. PGD without the random start.
public struct BasicIterativeMethod: FixedEpsilonAttack {
    /// The L∞ budget.
    public let epsilon: Float
    /// Iterations.
    public let steps: Int
    /// α, the L∞ length of each step.
    public let stepSize: Float
    public var name: String { "bim" }
    public var norm: Norm { .linf }

    /// - Parameters:
    ///   - epsilon: the L∞ budget, in [0, 1].
    ///   - steps: iterations (default 10).
    ///   - stepSize: α; by default 1.25·ε/steps, so that the steps together travel 1.25·ε
    ///     as in Kurakin et al. (α = 1/255 for 1.25·255·ε iterations).
    public init(epsilon: Float = 0.3, steps: Int = 10, stepSize: Float? = nil) throws(AdversarialError) {
        try AttackCheck.epsilon(epsilon, norm: .linf)
        try AttackCheck.atLeast(1, steps, "steps")
        if let stepSize { try AttackCheck.positive(stepSize, "step size") }
        self.epsilon = epsilon
        self.steps = steps
        self.stepSize = stepSize ?? 1.25 * epsilon / Float(steps)
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try GradientDescentEngine(
            norm: .linf, epsilon: epsilon, steps: steps, stepSize: stepSize, randomStart: false, restarts: 1,
            momentum: nil
        ).run(model: model, images: images, labels: labels, goal: goal, seed: seed, observer: observer)
    }
}

/// Projected gradient descent (Madry, Makelov, Schmidt, Tsipras & Vladu 2018, "Towards
/// deep learning models resistant to adversarial attacks"): from a uniformly random
/// point of the ε-ball, steps along the sign of the gradient (L∞) or the unit gradient
/// (L2), each followed by projection onto the ball and [0, 1].
///
/// With several restarts, each later attempt starts from a new random point and attacks
/// only the images no earlier attempt fooled; the first success is kept.
public struct ProjectedGradientDescent: FixedEpsilonAttack {
    /// `.linf` or `.l2`.
    public let norm: Norm
    /// The budget in `norm`.
    public let epsilon: Float
    /// Iterations per attempt.
    public let steps: Int
    /// α, the length of each step in `norm`.
    public let stepSize: Float
    /// Attempts; later ones attack only images not yet fooled.
    public let restarts: Int
    /// Whether each attempt starts from a random point of the ball.
    public let randomStart: Bool
    public var name: String { norm == .l2 ? "pgd-l2" : "pgd" }

    /// - Parameters:
    ///   - norm: `.linf` or `.l2`.
    ///   - epsilon: the budget (L∞ at most 1).
    ///   - steps: iterations per attempt (default 40, Madry's MNIST setting).
    ///   - stepSize: α. By default, L∞: max(ε/30, 1.25·ε/steps), which is Madry's 0.01 at
    ///     ε = 0.3 for 40 or 100 steps while keeping few steps able to cross the ball;
    ///     L2: 2.5·ε/steps (the rule of Madry's `robustness` library; ε/16 at 40 steps).
    ///   - restarts: attempts (default 1).
    ///   - randomStart: start from a random point of the ball (default true).
    public init(
        norm: Norm = .linf, epsilon: Float = 0.3, steps: Int = 40, stepSize: Float? = nil, restarts: Int = 1,
        randomStart: Bool = true
    ) throws(AdversarialError) {
        guard norm == .linf || norm == .l2 else {
            throw AdversarialError("PGD supports the linf and l2 norms, got \(norm.rawValue)")
        }
        try AttackCheck.epsilon(epsilon, norm: norm)
        try AttackCheck.atLeast(1, steps, "steps")
        try AttackCheck.atLeast(1, restarts, "restarts")
        guard randomStart || restarts == 1 else {
            throw AdversarialError(
                "restarts without a random start repeat the same attempt; use 1 restart, got \(restarts)")
        }
        if let stepSize { try AttackCheck.positive(stepSize, "step size") }
        self.norm = norm
        self.epsilon = epsilon
        self.steps = steps
        self.restarts = restarts
        self.randomStart = randomStart
        let steps = Float(steps)
        self.stepSize =
            stepSize ?? (norm == .linf ? max(epsilon / 30, 1.25 * epsilon / steps) : 2.5 * epsilon / steps)
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try GradientDescentEngine(
            norm: norm, epsilon: epsilon, steps: steps, stepSize: stepSize, randomStart: randomStart,
            restarts: restarts,
            momentum: nil
        ).run(model: model, images: images, labels: labels, goal: goal, seed: seed, observer: observer)
    }
}

/// The momentum iterative FGSM (Dong, Liao, Pang, Su, Zhu, Hu & Li 2018, "Boosting
/// adversarial attacks with momentum"): BIM whose step follows the sign of an
/// accumulated gradient g ← μ·g + ∇/‖∇‖₁, which stabilises the direction (and helps
/// transfer to other models).
public struct MomentumIterativeFGSM: FixedEpsilonAttack {
    /// The L∞ budget.
    public let epsilon: Float
    /// Iterations T.
    public let steps: Int
    /// α, the L∞ length of each step.
    public let stepSize: Float
    /// μ, the decay of the accumulated gradient (1 in the paper).
    public let decay: Float
    public var name: String { "mifgsm" }
    public var norm: Norm { .linf }

    /// - Parameters:
    ///   - epsilon: the L∞ budget, in [0, 1].
    ///   - steps: iterations T (default 10).
    ///   - stepSize: α; by default ε/T, as in the paper.
    ///   - decay: μ (default 1).
    public init(epsilon: Float = 0.3, steps: Int = 10, stepSize: Float? = nil, decay: Float = 1)
        throws(AdversarialError)
    {
        try AttackCheck.epsilon(epsilon, norm: .linf)
        try AttackCheck.atLeast(1, steps, "steps")
        if let stepSize { try AttackCheck.positive(stepSize, "step size") }
        try AttackCheck.nonNegative(decay, "decay")
        self.epsilon = epsilon
        self.steps = steps
        self.stepSize = stepSize ?? epsilon / Float(steps)
        self.decay = decay
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try GradientDescentEngine(
            norm: .linf, epsilon: epsilon, steps: steps, stepSize: stepSize, randomStart: false, restarts: 1,
            momentum: decay
        ).run(model: model, images: images, labels: labels, goal: goal, seed: seed, observer: observer)
    }
}
