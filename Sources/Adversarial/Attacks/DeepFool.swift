import Foundation
import NeuralNet

/// DeepFool (Moosavi-Dezfooli, Fawzi & Frossard 2016, "DeepFool: a simple and accurate
/// method to fool deep neural networks"): linearise the classifier around the current
/// point, step to the nearest linearised decision boundary among the candidate classes,
/// and repeat until the label changes. The final image is x₀ + (1 + overshoot)·Σ rᵢ,
/// clipped to [0, 1].
///
/// For each candidate k with f_k = z_k − z_label and w_k = ∇ₓ f_k, the distance to the
/// boundary is |f_k|/‖w_k‖₂ (L2) or |f_k|/‖w_k‖₁ (L∞, the dual norm), and the step is
/// |f_k|/‖w_k‖₂² · w_k or |f_k|/‖w_k‖₁ · sign(w_k). As in Foolbox, the candidates are the
/// `candidates` classes the clean image scores highest (its label first), and each
/// distance gets 10⁻⁴ added: clipping to [0, 1] eats part of every step on MNIST, and
/// without it the iterates approach the boundary geometrically without ever crossing it.
///
/// Each step computes the gradients of all candidate differences in one batched pass:
/// the active images are repeated once per rival class, each copy backpropagating its
/// own logit difference. The reported queries count every copy's forward pass.
///
/// DeepFool is untargeted and stops at the boundary: targeted goals and confidence
/// criteria are rejected with an error.
public struct DeepFool: MinimizationAttack {
    /// `.l2` or `.linf`.
    public let norm: Norm
    /// The maximum number of linearisation steps.
    public let steps: Int
    /// The number of classes considered, the label included.
    public let candidates: Int
    /// How far past the linearised boundary to go, as a fraction of the total step.
    public let overshoot: Float
    public var name: String { norm == .l2 ? "deepfool" : "deepfool-linf" }

    /// - Parameters:
    ///   - norm: `.l2` (default) or `.linf`.
    ///   - steps: at most this many steps (default 50).
    ///   - candidates: classes considered, the label included (default 10).
    ///   - overshoot: default 0.02.
    public init(norm: Norm = .l2, steps: Int = 50, candidates: Int = 10, overshoot: Float = 0.02)
        throws(AdversarialError)
    {
        guard norm == .l2 || norm == .linf else {
            throw AdversarialError("DeepFool supports the l2 and linf norms, got \(norm.rawValue)")
        }
        try AttackCheck.atLeast(1, steps, "steps")
        try AttackCheck.atLeast(2, candidates, "candidates")
        try AttackCheck.nonNegative(overshoot, "overshoot")
        self.norm = norm
        self.steps = steps
        self.candidates = candidates
        self.overshoot = overshoot
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        guard goal.mode == .untargeted else {
            throw AdversarialError(
                "DeepFool is untargeted only; use cw, jsma or a gradient attack for a target")
        }
        guard goal.criterion == .misclassification else {
            throw AdversarialError(
                "DeepFool stops at the decision boundary and cannot reach a confidence; use cw or pgd")
        }
        var ledger = AttackLedger(model: model, images: images, labels: labels, goal: goal, seed: seed)
        var control = StepControl(observer)
        var items = ledger.unfinished
        guard !items.isEmpty else { return ledger.verified(model: model) }
        let classCount = model.classCount
        let rivalCount = min(candidates, classCount) - 1
        // Each image's rivals: the highest-scoring other classes of the clean image.
        let cleanLogits = ledger.cleanLogits.gathering(items)
        var rivals: [[Int]] = items.indices.map { row in
            let z = cleanLogits.scalars[row * classCount..<(row + 1) * classCount]
            let others = (0..<classCount).filter { $0 != labels[items[row]] }
            return Array(others.sorted { z[z.startIndex + $0] > z[z.startIndex + $1] }.prefix(rivalCount))
        }
        var clean = images.gathering(items)
        var x = clean
        var total = Tensor(shape: x.shape)  // Σ rᵢ
        let size = x.itemCount

        for step in 0...steps {
            let count = items.count
            let logits: Tensor
            // [rivalCount · count, …]: copy j holds ∇(z_{rival j} − z_label); and those differences.
            var gradients = Tensor(shape: [0])
            var differences: [Float] = []
            if step < steps {
                let stacked = Tensor.concatenate(Array(repeating: x, count: rivalCount))
                let itemLabels = items.map { labels[$0] }
                let rivalsNow = rivals
                let pass = model.gradients(stacked, needsInputGradient: true, needsParameterGradients: false)
                { z, rows in
                    var gradient = Tensor(shape: z.shape)
                    var losses = [Float](repeating: 0, count: rows.count)
                    for (local, global) in rows.enumerated() {
                        let copy = global / count
                        let row = global % count
                        let rival = rivalsNow[row][copy]
                        let label = itemLabels[row]
                        losses[local] =
                            z.scalars[local * classCount + rival] - z.scalars[local * classCount + label]
                        gradient.scalars[local * classCount + rival] = 1
                        gradient.scalars[local * classCount + label] = -1
                    }
                    return (losses, gradient)
                }
                logits = pass.logits.batch(0..<count)
                gradients = pass.inputGradient ?? Tensor(shape: stacked.shape)
                differences = pass.losses
                ledger.addQueries(items, rivalCount)  // one forward pass per copy
            } else {
                logits = model.logits(x)
                ledger.addQueries(items)
            }
            let (met, stop) = ledger.judge(
                logits: logits, items: items, images: x, step: step, of: steps, attempt: 0, control: &control)
            var keep: [Int] = []
            for (row, item) in items.enumerated() {
                if met[row] {
                    ledger.succeed(item, image: x, row: row)
                    ledger.iterations[item] += step
                } else if step == steps || stop {
                    ledger.iterations[item] += step  // failed (or stopped): the clean image is returned
                } else {
                    keep.append(row)
                }
            }
            if keep.isEmpty || stop { break }
            // The step of each remaining image towards its nearest linearised boundary.
            gradients.scalars.withUnsafeBufferPointer { g in
                total.scalars.withUnsafeMutableBufferPointer { total in
                    for row in keep {
                        var best = 0
                        var bestDistance = Float.infinity
                        var bestNorm: Float = 1
                        for copy in 0..<rivalCount {
                            let base = (copy * count + row) * size
                            var length: Float = 0
                            for index in base..<base + size {
                                length += norm == .l2 ? g[index] * g[index] : abs(g[index])
                            }
                            if norm == .l2 { length = length.squareRoot() }
                            let distance = abs(differences[copy * count + row]) / (length + 1e-8)
                            if distance < bestDistance {
                                (best, bestDistance, bestNorm) = (copy, distance, length)
                            }
                        }
                        // Foolbox's 10⁻⁴: where clipping eats part of every step, the
                        // plain step approaches the boundary geometrically without crossing.
                        bestDistance += 1e-4
                        let base = (best * count + row) * size
                        for index in 0..<size {
                            let w = g[base + index]
                            total[row * size + index] +=
                                norm == .l2
                                ? bestDistance / (bestNorm + 1e-8) * w
                                : bestDistance * (w > 0 ? 1 : (w < 0 ? -1 : 0))
                        }
                    }
                }
            }
            items = keep.map { items[$0] }
            rivals = keep.map { rivals[$0] }
            clean = clean.gathering(keep)
            total = total.gathering(keep)
            x = clean
            x.add(total, scaledBy: 1 + overshoot)
            x = x.clamped(to: 0...1)
        }
        return ledger.verified(model: model, stopped: control.stopped)
    }
}
