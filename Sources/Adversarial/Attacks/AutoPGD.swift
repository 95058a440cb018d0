import Foundation
import NeuralNet

/// Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
/// ensemble of diverse parameter-free attacks"), the core of AutoAttack, in L∞.
///
/// PGD without a step size to tune: the step starts at 2ε and is halved, with a restart
/// from the best point found, at checkpoints w_j = ⌈p_j·N_iter⌉ (p₀ = 0, p₁ = 0.22,
/// p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)) whenever, since the last checkpoint,
/// the loss increased in at most ρ = 0.75 of the steps, or the step was not halved at the
/// last checkpoint and the best loss has not improved. Steps use momentum α = 0.75:
///   z = P(x + η·sign(∇)),  x' = P(x + α(z − x) + (1 − α)(x − x_prev)).
/// The checkpoint arithmetic follows the authors' code (first check after ⌊0.22·N⌋
/// steps, later windows ⌊0.03·N⌋ shorter, never under ⌊0.06·N⌋; "at most" where the
/// paper says "fewer than").
///
/// Losses: cross-entropy (APGD-CE; targeted: minus the target's cross-entropy, as in
/// AutoAttack's APGD-T with CE) or the difference of logits ratio (APGD-DLR), scale
/// invariant in the logits:
///   untargeted DLR = −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 10⁻¹²)
///   targeted DLR   = −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 10⁻¹²)
/// with π the classes sorted by decreasing logit. Both are maximised.
///
/// Unlike AutoAttack, an image stops being attacked once it meets the criterion (the
/// paper's success is the same; AutoAttack keeps iterating but keeps the first
/// adversarial). Restarts attack only images no earlier attempt fooled.
public struct AutoPGD: FixedEpsilonAttack {
    /// The loss APGD maximises.
    public enum Loss: String, Sendable, CaseIterable {
        /// Cross-entropy (APGD-CE).
        case crossEntropy = "ce"
        /// The difference of logits ratio (APGD-DLR).
        case dlr
    }

    /// The loss maximised.
    public let loss: Loss
    /// The L∞ budget.
    public let epsilon: Float
    /// Iterations per attempt.
    public let steps: Int
    /// Attempts from new random points; later ones attack only images not yet fooled.
    public let restarts: Int
    public var name: String { "apgd-\(loss.rawValue)" }
    public var norm: Norm { .linf }

    /// ρ, the fraction of loss increases below which the step size is halved.
    static let rho: Float = 0.75
    /// α, the weight of the new step against the previous one.
    static let momentum: Float = 0.75

    /// - Parameters:
    ///   - loss: cross-entropy or DLR.
    ///   - epsilon: the L∞ budget, in [0, 1].
    ///   - steps: iterations per attempt (default 100, as in AutoAttack).
    ///   - restarts: attempts from new random points (default 1).
    public init(loss: Loss = .crossEntropy, epsilon: Float = 0.3, steps: Int = 100, restarts: Int = 1)
        throws(AdversarialError)
    {
        try AttackCheck.epsilon(epsilon, norm: .linf)
        try AttackCheck.atLeast(1, steps, "steps")
        try AttackCheck.atLeast(1, restarts, "restarts")
        self.loss = loss
        self.epsilon = epsilon
        self.steps = steps
        self.restarts = restarts
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        let needed = goal.mode == .untargeted ? 3 : 4
        if loss == .dlr, model.classCount < needed {
            throw AdversarialError(
                "the DLR loss needs at least \(needed) classes, the model has \(model.classCount)")
        }
        var ledger = AttackLedger(model: model, images: images, labels: labels, goal: goal, seed: seed)
        var control = StepControl(observer)
        let budget = PixelBox(around: images, epsilon: epsilon)
        let firstWindow = max(Int(0.22 * Float(steps)), 1)
        let shortestWindow = max(Int(0.06 * Float(steps)), 1)
        let windowDecrease = max(Int(0.03 * Float(steps)), 1)

        attempts: for restart in 0..<restarts {
            let items = ledger.unfinished
            if items.isEmpty { break }
            let start = startingPoint(
                clean: images.gathering(items), items: items, box: budget.gathering(items), restart: restart,
                seed: seed)
            let first = evaluate(model: model, start, items: items, ledger: ledger)
            ledger.addQueries(items)
            var rows = Rows(
                items: items, x: start, gradient: first.gradient, losses: first.losses,
                box: budget.gathering(items),
                stepSize: 2 * epsilon)
            rows.retire(met: ledger.meets(logits: first.logits, items: items), iterations: 0, ledger: &ledger)

            var window = firstWindow
            var sinceCheck = 0
            for iteration in 0..<steps where !rows.items.isEmpty {
                rows.step(weight: iteration == 0 ? 1 : Self.momentum)
                let (gradient, logits, losses) = evaluate(
                    model: model, rows.x, items: rows.items, ledger: ledger)
                ledger.addQueries(rows.items)
                rows.record(gradient: gradient, losses: losses)
                let (met, stop) = ledger.judge(
                    logits: logits, items: rows.items, images: rows.x, step: iteration + 1, of: steps,
                    attempt: restart, control: &control)
                // Before the checkpoint, which may move x back to the best point.
                rows.retire(met: met, iterations: iteration + 1, ledger: &ledger)
                if stop {
                    rows.giveUp(iterations: iteration + 1, ledger: &ledger)
                    break attempts
                }
                sinceCheck += 1
                if sinceCheck == window {
                    rows.checkpoint(window: window, rho: Self.rho)
                    sinceCheck = 0
                    window = max(window - windowDecrease, shortestWindow)
                }
            }
            rows.giveUp(iterations: steps, ledger: &ledger)
        }
        return ledger.verified(model: model, stopped: control.stopped)
    }

    /// A random point on the ball's surface, as AutoAttack draws it: x + ε·t/‖t‖∞ with t
    /// uniform in [−1, 1]^d, then clipped to [0, 1].
    private func startingPoint(clean: Tensor, items: [Int], box: PixelBox, restart: Int, seed: UInt64)
        -> Tensor
    {
        var x = clean
        let size = x.itemCount
        for (row, item) in items.enumerated() {
            var generator = SplitMix64(seed: seed, stream: 0xA96D, UInt64(restart), UInt64(item))
            let t = (0..<size).map { _ in 2 * generator.nextUnitFloat() - 1 }
            let scale = epsilon / max(t.map(abs).max() ?? 1, 1e-12)
            for index in 0..<size { x.scalars[row * size + index] += scale * t[index] }
        }
        box.project(&x)
        return x
    }

    /// The loss (to maximise), its input gradient and the logits, in one pass.
    private func evaluate(model: Model, _ x: Tensor, items: [Int], ledger: AttackLedger) -> (
        gradient: Tensor, logits: Tensor, losses: [Float]
    ) {
        let labels = items.map { ledger.labels[$0] }
        let targets = ledger.targets.map { all in items.map { all[$0] } }
        let loss = self.loss
        let result = model.gradients(x, needsInputGradient: true, needsParameterGradients: false) {
            logits, rows in
            let shardTargets = targets.map { Array($0[rows]) }
            switch loss {
            case .crossEntropy:
                if let shardTargets {
                    return Objective.crossEntropy.evaluate(
                        logits: logits, targets: shardTargets[...], sign: -1)
                }
                return Objective.crossEntropy.evaluate(logits: logits, targets: labels[rows], sign: 1)
            case .dlr:
                return differenceOfLogitsRatio(
                    logits: logits, labels: Array(labels[rows]), targets: shardTargets)
            }
        }
        return (result.inputGradient ?? Tensor(shape: x.shape), result.logits, result.losses)
    }

    /// The per-image state of one attempt, compacted as images succeed.
    private struct Rows {
        var items: [Int]
        var x: Tensor, previousX: Tensor, gradient: Tensor
        var bestX: Tensor, bestGradient: Tensor
        var bestLoss: [Float], lastLoss: [Float]
        /// η per image.
        var stepSize: [Float]
        /// Steps since the last checkpoint whose loss exceeded the previous step's.
        var increases: [Int]
        var reducedAtLastCheck: [Bool]
        var bestLossAtLastCheck: [Float]
        var box: PixelBox

        init(items: [Int], x: Tensor, gradient: Tensor, losses: [Float], box: PixelBox, stepSize: Float) {
            self.items = items
            self.x = x
            previousX = x
            self.gradient = gradient
            bestX = x
            bestGradient = gradient
            bestLoss = losses
            lastLoss = losses
            self.stepSize = Array(repeating: stepSize, count: items.count)
            increases = Array(repeating: 0, count: items.count)
            reducedAtLastCheck = Array(repeating: false, count: items.count)
            bestLossAtLastCheck = losses
            self.box = box
        }

        /// z = P(x + η·sign(g)); x ← P(x + α(z − x) + (1 − α)(x − x_prev)).
        mutating func step(weight alpha: Float) {
            var z = x
            let size = x.itemCount
            z.scalars.withUnsafeMutableBufferPointer { z in
                gradient.scalars.withUnsafeBufferPointer { g in
                    for row in 0..<items.count {
                        let eta = stepSize[row]
                        for index in row * size..<(row + 1) * size {
                            z[index] += g[index] > 0 ? eta : (g[index] < 0 ? -eta : 0)
                        }
                    }
                }
            }
            box.project(&z)
            var next = x
            next.scalars.withUnsafeMutableBufferPointer { next in
                x.scalars.withUnsafeBufferPointer { x in
                    z.scalars.withUnsafeBufferPointer { z in
                        previousX.scalars.withUnsafeBufferPointer { previous in
                            for index in 0..<next.count {
                                next[index] =
                                    x[index] + alpha * (z[index] - x[index]) + (1 - alpha)
                                    * (x[index] - previous[index])
                            }
                        }
                    }
                }
            }
            box.project(&next)
            previousX = x
            x = next
        }

        mutating func record(gradient: Tensor, losses: [Float]) {
            self.gradient = gradient
            for row in items.indices {
                if losses[row] > lastLoss[row] { increases[row] += 1 }
                lastLoss[row] = losses[row]
                if losses[row] > bestLoss[row] {
                    bestLoss[row] = losses[row]
                    AttackMath.copyRow(row, of: x, to: row, of: &bestX)
                    AttackMath.copyRow(row, of: gradient, to: row, of: &bestGradient)
                }
            }
        }

        /// At a checkpoint: halve η and go back to the best point where progress stalled.
        mutating func checkpoint(window: Int, rho: Float) {
            for row in items.indices {
                let oscillating = Float(increases[row]) <= rho * Float(window)
                let stalled = !reducedAtLastCheck[row] && bestLossAtLastCheck[row] >= bestLoss[row]
                let reduce = oscillating || stalled
                reducedAtLastCheck[row] = reduce
                bestLossAtLastCheck[row] = bestLoss[row]
                increases[row] = 0
                if reduce {
                    stepSize[row] /= 2
                    AttackMath.copyRow(row, of: bestX, to: row, of: &x)
                    AttackMath.copyRow(row, of: bestGradient, to: row, of: &gradient)
                }
            }
        }

        /// Failed (or stopped): hands the ledger each remaining image's point of highest loss.
        func giveUp(iterations: Int, ledger: inout AttackLedger) {
            for (row, item) in items.enumerated() {
                ledger.offer(item, image: bestX, row: row, score: bestLoss[row])
                ledger.iterations[item] += iterations
            }
        }

        /// Hands images that meet the criterion to the ledger and drops their rows.
        mutating func retire(met: [Bool], iterations: Int, ledger: inout AttackLedger) {
            var keep: [Int] = []
            for (row, item) in items.enumerated() {
                if met[row] {
                    ledger.succeed(item, image: x, row: row)
                    ledger.iterations[item] += iterations
                } else {
                    keep.append(row)
                }
            }
            guard keep.count < items.count else { return }
            items = keep.map { items[$0] }
            x = x.gathering(keep)
            previousX = previousX.gathering(keep)
            gradient = gradient.gathering(keep)
            bestX = bestX.gathering(keep)
            bestGradient = bestGradient.gathering(keep)
            bestLoss = keep.map { bestLoss[$0] }
            lastLoss = keep.map { lastLoss[$0] }
            stepSize = keep.map { stepSize[$0] }
            increases = keep.map { increases[$0] }
            reducedAtLastCheck = keep.map { reducedAtLastCheck[$0] }
            bestLossAtLastCheck = keep.map { bestLossAtLastCheck[$0] }
            box = box.gathering(keep)
        }
    }
}

/// The difference of logits ratio loss (Croce & Hein 2020) and its gradient with respect
/// to the logits, per row; to be maximised. Untargeted when `targets` is nil.
func differenceOfLogitsRatio(logits: Tensor, labels: [Int], targets: [Int]?) -> (
    losses: [Float], logitGradient: Tensor
) {
    let classes = logits.shape[1]
    var losses = [Float](repeating: 0, count: labels.count)
    var gradient = Tensor(shape: logits.shape)
    for (row, label) in labels.enumerated() {
        let base = row * classes
        let z = logits.scalars[base..<base + classes]
        let order = (0..<classes).sorted { z[base + $0] > z[base + $1] }
        let numerator: Float
        let denominator: Float
        let slope: [(index: Int, weight: Float)]  // ∂(denominator)/∂z
        if let targets {
            let target = targets[row]
            numerator = z[base + label] - z[base + target]
            denominator = z[base + order[0]] - (z[base + order[2]] + z[base + order[3]]) / 2 + 1e-12
            slope = [(order[0], 1), (order[2], -0.5), (order[3], -0.5)]
            gradient.scalars[base + target] += 1 / denominator
        } else {
            let rival = logits.strongestRival(row: row, excluding: label)
            numerator = z[base + label] - z[base + rival]
            denominator = z[base + order[0]] - z[base + order[2]] + 1e-12
            slope = [(order[0], 1), (order[2], -1)]
            gradient.scalars[base + rival] += 1 / denominator
        }
        // loss = −n/d: ∂/∂n = −1/d (n = z_y − …), ∂/∂d = n/d².
        losses[row] = -numerator / denominator
        gradient.scalars[base + label] -= 1 / denominator
        for (index, weight) in slope {
            gradient.scalars[base + index] += weight * numerator / (denominator * denominator)
        }
    }
    return (losses, gradient)
}
