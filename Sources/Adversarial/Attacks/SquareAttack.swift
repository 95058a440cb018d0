import Foundation
import NeuralNet

/// The Square attack (Andriushchenko, Croce, Flammarion & Hein 2020, "Square attack: a
/// query-efficient black-box adversarial attack via random search"), L∞. Score-based:
/// it reads only the model's logits, never a gradient.
///
/// It starts from vertical stripes (each column of each channel shifted by ±ε), then
/// repeatedly proposes to overwrite one random square window of the perturbation with a
/// single ±ε per channel, and keeps the proposal if the margin loss falls:
///   untargeted: z_y − max_{i≠y} z_i;  targeted: max_{i≠t} z_i − z_t.
/// The window covers a fraction p of the image, p_init at first and halved on the
/// paper's schedule (at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000
/// iterations, rescaled to the query budget). For MNIST the paper uses p_init = 0.8.
///
/// `queries` is the search budget per image (the paper's n_queries: the stripes and every
/// proposal). The reported query counts also include the clean check and the final check
/// of the returned image, so they reach at most `queries + 2`. An image stops once it
/// meets the criterion.
public struct SquareAttack: FixedEpsilonAttack {
    /// The L∞ budget.
    public let epsilon: Float
    /// The search budget per image.
    public let queries: Int
    /// p_init, the fraction of the image the first windows cover.
    public let initialFraction: Float
    public var name: String { "square" }
    public var norm: Norm { .linf }

    /// - Parameters:
    ///   - epsilon: the L∞ budget, in [0, 1].
    ///   - queries: model evaluations per image (default 5,000).
    ///   - initialFraction: p_init in (0, 1] (default 0.8, the paper's MNIST value).
    public init(epsilon: Float = 0.3, queries: Int = 5000, initialFraction: Float = 0.8)
        throws(AdversarialError)
    {
        try AttackCheck.epsilon(epsilon, norm: .linf)
        try AttackCheck.atLeast(1, queries, "query budget")
        try AttackCheck.fraction(initialFraction, "initial fraction (p_init)")
        self.epsilon = epsilon
        self.queries = queries
        self.initialFraction = initialFraction
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        var ledger = AttackLedger(model: model, images: images, labels: labels, goal: goal, seed: seed)
        var control = StepControl(observer)
        var items = ledger.unfinished
        guard !items.isEmpty else { return ledger.verified(model: model) }
        let shape = Array(images.shape.dropFirst())
        let (channels, height, width) = (shape[0], shape[1], shape[2])
        let size = channels * height * width
        var clean = images.gathering(items)
        var box = PixelBox(around: images, epsilon: epsilon).gathering(items)
        // One generator per image, carried from step to step, so that an image's draws do not
        // depend on which other images are still being attacked.
        var generators = items.map { SplitMix64(seed: seed, stream: 0x5A, UInt64($0)) }

        // Vertical stripes: one ±ε per column and channel.
        var best = clean
        for row in items.indices {
            for channel in 0..<channels {
                for column in 0..<width {
                    let shift: Float = generators[row].next() & 1 == 0 ? -epsilon : epsilon
                    for line in 0..<height {
                        best.scalars[row * size + (channel * height + line) * width + column] += shift
                    }
                }
            }
        }
        box.project(&best)
        var logits = model.logits(best)
        ledger.addQueries(items)
        var loss = margins(logits: logits, items: items, ledger: ledger)

        for iteration in 0..<queries {
            // Iteration 0 judges the stripes; later ones judge the proposal they accepted.
            let (met, stop) = ledger.judge(
                logits: logits, items: items, images: best, step: iteration, of: queries, attempt: 0,
                control: &control)
            var keep: [Int] = []
            for (row, item) in items.enumerated() {
                if met[row] {
                    ledger.succeed(item, image: best, row: row)
                    ledger.iterations[item] += iteration
                } else if iteration == queries - 1 || stop {
                    ledger.offer(item, image: best, row: row, score: -loss[row])
                    ledger.iterations[item] += iteration
                } else {
                    keep.append(row)
                }
            }
            if keep.isEmpty || stop { break }
            if keep.count < items.count {
                items = keep.map { items[$0] }
                clean = clean.gathering(keep)
                box = box.gathering(keep)
                best = best.gathering(keep)
                loss = keep.map { loss[$0] }
                generators = keep.map { generators[$0] }
                logits = logits.gathering(keep)
            }

            let fraction = windowFraction(iteration: iteration)
            let side = min(max(Int((fraction * Float(height * width)).squareRoot().rounded()), 1), height - 1)
            var proposal = best
            for row in items.indices {
                let top = Int(generators[row].next() % UInt64(height - side + 1))
                let left = Int(generators[row].next() % UInt64(width - side + 1))
                // Redraw the window's signs while they would leave the image unchanged (as
                // the authors' code does); after a few tries take the proposal anyway.
                for _ in 0..<10 {
                    var changed = false
                    for channel in 0..<channels {
                        let shift: Float = generators[row].next() & 1 == 0 ? -epsilon : epsilon
                        for line in top..<top + side {
                            for column in left..<left + side {
                                let index = row * size + (channel * height + line) * width + column
                                let value = min(
                                    max(clean.scalars[index] + shift, box.lower[index]),
                                    box.upper[index])
                                if abs(value - best.scalars[index]) >= 1e-7 { changed = true }
                                proposal.scalars[index] = value
                            }
                        }
                    }
                    if changed { break }
                }
            }
            let proposalLogits = model.logits(proposal)
            ledger.addQueries(items)
            let proposalLoss = margins(logits: proposalLogits, items: items, ledger: ledger)
            for row in items.indices where proposalLoss[row] < loss[row] {
                loss[row] = proposalLoss[row]
                AttackMath.copyRow(row, of: proposal, to: row, of: &best)
                AttackMath.copyRow(row, of: proposalLogits, to: row, of: &logits)
            }
        }
        return ledger.verified(model: model, stopped: control.stopped)
    }

    /// p at an iteration: the paper's schedule for 10,000 iterations, rescaled to the budget.
    func windowFraction(iteration: Int) -> Float {
        let scaled = Int(Float(iteration) / Float(queries) * 10_000)
        let thresholds = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
        let halvings = thresholds.filter { scaled > $0 }.count
        return initialFraction / Float(1 << halvings)
    }

    private func margins(logits: Tensor, items: [Int], ledger: AttackLedger) -> [Float] {
        let classes = logits.shape[1]
        return items.enumerated().map { row, item in
            let base = row * classes
            let focus = ledger.lossClass(item)
            let rival = logits.strongestRival(row: row, excluding: focus)
            let margin = logits.scalars[base + focus] - logits.scalars[base + rival]
            return ledger.isTargeted ? -margin : margin
        }
    }
}
