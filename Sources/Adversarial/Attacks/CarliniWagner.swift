import Foundation
import NeuralNet

/// The Carlini–Wagner L2 attack (Carlini & Wagner 2017, "Towards evaluating the
/// robustness of neural networks"): the smallest L2 perturbation that makes the logit
/// margin reach κ, found by minimising
///   ‖x − x₀‖²₂ + c · max(z_y − max_{i≠y} z_i + κ, 0)          (untargeted)
///   ‖x − x₀‖²₂ + c · max(max_{i≠t} z_i − z_t + κ, 0)          (targeted)
/// with Adam (NeuralNet's ``Adam``, PyTorch's update) over w, where x = (tanh(w) + 1)/2
/// keeps every pixel in [0, 1], and a binary search over the constant c per image (×10
/// until an adversarial is found, then bisection). The returned image is the smallest
/// adversarial seen at any iteration.
///
/// Defaults follow Foolbox (`L2CarliniWagnerAttack`) where that keeps the runtime
/// reasonable: κ = 0, early abort when the loss has not fallen by 0.01% over a tenth of
/// the iterations; but 5 binary-search steps of 100 iterations from c = 0.01 instead of
/// 9 × 10,000 from 0.001, and an Adam learning rate of 0.1 instead of 0.01. MNIST pixels
/// sit at exactly 0 or 1, where tanh saturates: w starts at ±7.25, and Adam moves w by
/// about one learning rate per iteration, so at 0.01 a background pixel could not change
/// within 100 iterations. Pass `steps: 10_000, learningRate: 0.01` for the paper's run.
///
/// With a confidence criterion p, κ is raised to log((C − 1)·p/(1 − p)) for C classes,
/// a margin that guarantees probability ≥ p.
public struct CarliniWagnerL2: MinimizationAttack {
    /// Searches over the constant c.
    public let binarySearchSteps: Int
    /// Adam iterations per binary-search step.
    public let steps: Int
    /// Adam's learning rate on w.
    public let learningRate: Float
    /// The first c of every image.
    public let initialConstant: Float
    /// κ, the logit margin an adversarial must reach.
    public let confidence: Float
    /// Whether an image's search step stops when its loss stalls.
    public let abortEarly: Bool
    public var name: String { "cw" }
    public var norm: Norm { .l2 }

    /// - Parameters:
    ///   - binarySearchSteps: searches over c (default 5).
    ///   - steps: Adam iterations per search (default 100).
    ///   - learningRate: Adam's step on w (default 0.1, see above).
    ///   - initialConstant: the first c (default 0.01).
    ///   - confidence: κ ≥ 0 (default 0).
    ///   - abortEarly: stop an image's search step when its loss stalls (default true).
    public init(
        binarySearchSteps: Int = 5, steps: Int = 100, learningRate: Float = 0.1,
        initialConstant: Float = 0.01,
        confidence: Float = 0, abortEarly: Bool = true
    ) throws(AdversarialError) {
        try AttackCheck.atLeast(1, binarySearchSteps, "binary search steps")
        try AttackCheck.atLeast(1, steps, "steps")
        try AttackCheck.positive(learningRate, "learning rate")
        try AttackCheck.positive(initialConstant, "initial constant")
        try AttackCheck.nonNegative(confidence, "confidence (κ)")
        self.binarySearchSteps = binarySearchSteps
        self.steps = steps
        self.learningRate = learningRate
        self.initialConstant = initialConstant
        self.confidence = confidence
        self.abortEarly = abortEarly
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        var ledger = AttackLedger(model: model, images: images, labels: labels, goal: goal, seed: seed)
        var control = StepControl(observer)
        let all = ledger.unfinished
        guard !all.isEmpty else { return ledger.verified(model: model) }
        let kappa: Float
        if case .confidence(let p) = goal.criterion {
            kappa = max(confidence, logf(Float(model.classCount - 1) * p / (1 - p)))
        } else {
            kappa = confidence
        }
        let clean = images.gathering(all)
        let size = clean.itemCount
        // Foolbox's to_attack_space: the 0.999999 keeps atanh finite at 0 and 1.
        let startW = Tensor(
            shape: clean.shape, scalars: clean.scalars.map { atanhf((2 * $0 - 1) * 0.999999) })
        var constant = [Float](repeating: initialConstant, count: all.count)
        var lowerBound = [Float](repeating: 0, count: all.count)
        var upperBound = [Float](repeating: .infinity, count: all.count)
        var bestDistance = [Float](repeating: .infinity, count: all.count)
        let checkEvery = max((steps + 9) / 10, 1)
        let adam = Adam()

        search: for searchStep in 0..<binarySearchSteps {
            // Rows of this search step: `slots[r]` indexes the per-image arrays above.
            var slots = Array(all.indices)
            var w = startW
            var x0 = clean
            var moments = adam.makeState(for: w)
            var found = [Bool](repeating: false, count: all.count)
            var lossAtCheck = [Float](repeating: .infinity, count: all.count)
            for iteration in 0..<steps {
                let items = slots.map { all[$0] }
                let x = Tensor(shape: w.shape, scalars: w.scalars.map { (tanhf($0) + 1) / 2 })
                let rivals = items.map { ledger.lossClass($0) }
                let weights = slots.map { constant[$0] }
                let targeted = ledger.isTargeted
                let pass = model.gradients(x, needsInputGradient: true, needsParameterGradients: false) {
                    logits, rows in
                    hingeLoss(
                        logits: logits, classes: rivals[rows], weights: weights[rows], kappa: kappa,
                        targeted: targeted)
                }
                ledger.addQueries(items)
                ledger.addIterations(items)
                let (met, stop) = ledger.judge(
                    logits: pass.logits, items: items, images: x, step: iteration + 1, of: steps,
                    attempt: searchStep, control: &control)
                let hinges = hingeLoss(
                    logits: pass.logits, classes: rivals[...],
                    weights: Array(repeating: 1, count: items.count)[...],
                    kappa: kappa, targeted: targeted
                ).losses
                var gradient = pass.inputGradient ?? Tensor(shape: x.shape)
                var keep: [Int] = []
                x.scalars.withUnsafeBufferPointer { xs in
                    x0.scalars.withUnsafeBufferPointer { x0s in
                        w.scalars.withUnsafeBufferPointer { ws in
                            gradient.scalars.withUnsafeMutableBufferPointer { g in
                                for (row, slot) in slots.enumerated() {
                                    let distance = AttackMath.l2Distance(xs, x0s, row: row, size: size)
                                    // Adversarial means the criterion and CW's margin κ (hinge 0).
                                    if met[row], hinges[row] == 0, distance < bestDistance[slot] {
                                        bestDistance[slot] = distance
                                        found[slot] = true
                                        ledger.succeed(all[slot], image: x, row: row)
                                    }
                                    // d/dw of ‖x − x₀‖² + c·hinge, through x = (tanh w + 1)/2.
                                    for index in row * size..<(row + 1) * size {
                                        let t = tanhf(ws[index])
                                        g[index] = (g[index] + 2 * (xs[index] - x0s[index])) * (1 - t * t) / 2
                                    }
                                    let loss = distance * distance + pass.losses[row]
                                    if abortEarly, iteration % checkEvery == 0 {
                                        if !(loss <= 0.9999 * lossAtCheck[slot]) { continue }
                                        lossAtCheck[slot] = loss
                                    }
                                    keep.append(row)
                                }
                            }
                        }
                    }
                }
                // Stopped: the smallest adversarials so far are in the ledger already.
                if stop { break search }
                adam.update(
                    &w, gradient: gradient, state: &moments, step: iteration + 1, learningRate: learningRate)
                if keep.isEmpty { break }
                if keep.count < slots.count {
                    slots = keep.map { slots[$0] }
                    w = w.gathering(keep)
                    x0 = x0.gathering(keep)
                    moments = moments.map { $0.gathering(keep) }
                }
            }
            // Foolbox's search: shrink c towards the smallest that still succeeded.
            for slot in all.indices {
                if found[slot] {
                    upperBound[slot] = min(upperBound[slot], constant[slot])
                } else {
                    lowerBound[slot] = max(lowerBound[slot], constant[slot])
                }
                constant[slot] =
                    upperBound[slot].isFinite
                    ? (lowerBound[slot] + upperBound[slot]) / 2 : constant[slot] * 10
            }
        }
        return ledger.verified(model: model, stopped: control.stopped)
    }
}

/// CW's hinge c·max(margin + κ, 0) per row, and its gradient in the logits. The margin
/// is z_class − max_{i≠class} z_i untargeted (class = label) and max_{i≠class} z_i −
/// z_class targeted (class = target); both are ≤ −κ once the goal is reached by κ.
func hingeLoss(
    logits: Tensor, classes: ArraySlice<Int>, weights: ArraySlice<Float>, kappa: Float, targeted: Bool
) -> (losses: [Float], logitGradient: Tensor) {
    let count = logits.shape[1]
    var losses = [Float](repeating: 0, count: classes.count)
    var gradient = Tensor(shape: logits.shape)
    for (row, (target, weight)) in zip(classes, weights).enumerated() {
        let base = row * count
        let rival = logits.strongestRival(row: row, excluding: target)
        let sign: Float = targeted ? -1 : 1
        let margin = sign * (logits.scalars[base + target] - logits.scalars[base + rival]) + kappa
        guard margin > 0 else { continue }
        losses[row] = weight * margin
        gradient.scalars[base + target] = sign * weight
        gradient.scalars[base + rival] = -sign * weight
    }
    return (losses, gradient)
}
