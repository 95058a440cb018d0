import Foundation
import NeuralNet

/// The Jacobian-based saliency map attack (Papernot, McDaniel, Jha, Fredrikson, Celik &
/// Swami 2016, "The limitations of deep learning in adversarial settings"), L0: raise
/// few pixels to the maximum (θ = +1) until the model gives the target class.
///
/// Each iteration computes α = ∂z_t/∂x and β = ∂(Σ_{j≠t} z_j)/∂x, the gradients of the
/// target logit and of the other logits (the logit-based "JSMA-Z" variant that cleverhans
/// and ART implement), in one pass over the images stacked twice (two queries). It then
/// picks, as in the paper, the *pair* of pixels p ≠ q still in the search domain that
/// maximises (α_p + α_q)·|β_p + β_q| subject to α_p + α_q > 0 and β_p + β_q < 0, sets
/// both to 1 and removes them from the domain. An image fails when more than a fraction γ
/// of its pixels would change, or when no pair satisfies the conditions.
///
/// JSMA is targeted by design. For untargeted goals each image's target is its second
/// most likely class on the clean image, the nearest by logits. (ART draws a random
/// target; Foolbox 2 first runs a gradient attack and takes the class it lands in.) An
/// untargeted image succeeds as soon as it is misclassified, as any class.
public struct SaliencyMapAttack: MinimizationAttack {
    /// γ, the largest fraction of pixels the attack may change.
    public let gamma: Float
    public var name: String { "jsma" }
    public var norm: Norm { .l0 }

    /// - Parameter gamma: the largest fraction of pixels to change, in (0, 1] (default 0.1).
    public init(gamma: Float = 0.1) throws(AdversarialError) {
        try AttackCheck.fraction(gamma, "gamma (the fraction of pixels that may change)")
        self.gamma = gamma
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        var ledger = AttackLedger(model: model, images: images, labels: labels, goal: goal, seed: seed)
        var control = StepControl(observer)
        var items = ledger.unfinished
        guard !items.isEmpty else { return ledger.verified(model: model) }
        let classCount = model.classCount
        var targets: [Int] = items.map { item in
            if let target = ledger.targets?[item] { return target }
            let z = ledger.cleanLogits.scalars[item * classCount..<(item + 1) * classCount]
            let order = (0..<classCount).sorted { z[z.startIndex + $0] > z[z.startIndex + $1] }
            return order[0] == labels[item] ? order[1] : order[0]
        }
        var x = images.gathering(items)
        let size = x.itemCount
        // Pixels that may still be raised: those below the maximum.
        var domain: [[Bool]] = (0..<items.count).map { row in
            (0..<size).map { x.scalars[row * size + $0] < 1 }
        }
        // Each iteration changes at most two pixels.
        let maxIterations = Int(Float(size) * gamma) / 2

        for iteration in 0...maxIterations {
            let count = items.count
            let logits: Tensor
            var gradients = Tensor(shape: [0])  // rows 0..<count: α; rows count..<2·count: β
            if iteration < maxIterations {
                let targetsNow = targets
                let pass = model.gradients(
                    Tensor.concatenate([x, x]), needsInputGradient: true, needsParameterGradients: false
                ) { z, rows in
                    var gradient = Tensor(shape: z.shape)
                    for (local, global) in rows.enumerated() {
                        let target = targetsNow[global % count]
                        for c in 0..<classCount {
                            // Copy 0 backpropagates z_t, copy 1 the sum of the other logits.
                            let wanted = global < count ? c == target : c != target
                            if wanted { gradient.scalars[local * classCount + c] = 1 }
                        }
                    }
                    return ([Float](repeating: 0, count: rows.count), gradient)
                }
                logits = pass.logits.batch(0..<count)
                gradients = pass.inputGradient ?? Tensor(shape: [2 * count] + Array(x.shape.dropFirst()))
                ledger.addQueries(items, 2)  // one forward pass per copy
            } else {
                logits = model.logits(x)
                ledger.addQueries(items)
            }
            let (met, stop) = ledger.judge(
                logits: logits, items: items, images: x, step: iteration, of: maxIterations, attempt: 0,
                control: &control)
            // The best pair of each image still searching, found in parallel.
            let searching = items.indices.filter { !met[$0] && iteration < maxIterations && !stop }
            let domainNow = domain
            let pairs = Compute.map(searching.count) { index in
                gradients.scalars.withUnsafeBufferPointer { g in
                    let row = searching[index]
                    return bestPair(
                        alpha: g.baseAddress! + row * size, beta: g.baseAddress! + (count + row) * size,
                        domain: domainNow[row])
                }
            }
            var keep: [Int] = []
            var pairOf: [Int: (Int, Int)] = [:]
            for (index, row) in searching.enumerated() { pairOf[row] = pairs[index] }
            for (row, item) in items.enumerated() {
                if met[row] {
                    ledger.succeed(item, image: x, row: row)
                    ledger.iterations[item] += iteration
                } else if let pair = pairOf[row] {
                    x.scalars[row * size + pair.0] = 1
                    x.scalars[row * size + pair.1] = 1
                    domain[row][pair.0] = false
                    domain[row][pair.1] = false
                    keep.append(row)
                } else {
                    // Failed (out of budget, no admissible pair) or stopped: return the last attempt.
                    ledger.offer(item, image: x, row: row, score: 0)
                    ledger.iterations[item] += iteration
                }
            }
            if keep.isEmpty { break }
            items = keep.map { items[$0] }
            targets = keep.map { targets[$0] }
            domain = keep.map { domain[$0] }
            x = x.gathering(keep)
        }
        return ledger.verified(model: model, stopped: control.stopped)
    }

    /// The admissible pair (p, q) of the domain with the largest saliency, or nil. Ties go
    /// to the pair that comes first in row-major order.
    ///
    /// Exhaustive over pairs, but pruned: the score of any pair containing p is at most
    /// (α_p + max α)·(−β_p − min β), so pixels are visited by decreasing bound and the search
    /// stops once the bound cannot beat the best pair found. On MNIST a few pixels dominate
    /// the saliency and this skips nearly all of the ~200,000 pairs.
    private func bestPair(alpha: UnsafePointer<Float>, beta: UnsafePointer<Float>, domain: [Bool]) -> (
        Int, Int
    )? {
        let candidates = domain.indices.filter { domain[$0] }
        guard candidates.count >= 2 else { return nil }
        let a = candidates.map { alpha[$0] }
        let b = candidates.map { beta[$0] }
        let largestA = a.max()!
        let smallestB = b.min()!
        let bound = a.indices.map { max(0, a[$0] + largestA) * max(0, -b[$0] - smallestB) }
        let order = a.indices.sorted { bound[$0] > bound[$1] || (bound[$0] == bound[$1] && $0 < $1) }
        var best: (p: Int, q: Int)? = nil
        var bestScore: Float = 0
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                for p in order {
                    if bound[p] < bestScore || bound[p] == 0 { break }
                    for q in 0..<a.count where q != p {
                        let sumA = a[p] + a[q]
                        let sumB = b[p] + b[q]
                        guard sumA > 0, sumB < 0 else { continue }
                        let score = -sumA * sumB
                        let pair = (min(p, q), max(p, q))
                        if score > bestScore
                            || (score == bestScore && best.map { pair < ($0.p, $0.q) } ?? false)
                        {
                            bestScore = score
                            best = pair
                        }
                    }
                }
            }
        }
        return best.map { (candidates[$0.p], candidates[$0.q]) }
    }
}
