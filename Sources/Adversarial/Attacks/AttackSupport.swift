import Foundation
import NeuralNet

// Book-keeping and small kernels shared by the attacks in this folder. Everything here is
// internal: the public surface is the attack structs and `AttackMethod`.

/// Per-image state every attack keeps: the goal's targets, the image returned so far,
/// success flags and the counts reported in ``AttackResult``.
///
/// Creating a ledger evaluates the clean images once (one query each): an image that
/// already meets the criterion is adversarial with a zero perturbation and is never
/// attacked, as in Foolbox and AutoAttack. Images whose fixed target equals their label
/// cannot succeed (see ``TargetMode/targets(for:labels:model:seed:)``) and are not attacked.
struct AttackLedger {
    let labels: [Int]
    /// Each image's target, or nil for untargeted goals.
    let targets: [Int]?
    let criterion: Criterion
    /// Images that are never attacked (target equals label).
    let hopeless: [Bool]
    /// The logits of the clean images, [N, classes].
    let cleanLogits: Tensor
    /// The image returned for each item: clean until the attack stores something better.
    var adversarial: Tensor
    var success: [Bool]
    var iterations: [Int]
    var queries: [Int]
    /// The objective of the image stored for a failed item, so a later restart only
    /// replaces it with a better attempt (higher is better).
    var storedScore: [Float]

    init(model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64) {
        let count = labels.count
        self.labels = labels
        criterion = goal.criterion
        let targets = goal.mode.targets(for: images, labels: labels, model: model, seed: seed)
        self.targets = targets
        hopeless = (0..<count).map { item in targets.map { $0[item] == labels[item] } ?? false }
        adversarial = images
        iterations = Array(repeating: 0, count: count)
        // Targets chosen from the clean logits (least likely, ranked) cost one query.
        let targetQueries: Int
        switch goal.mode {
        case .untargeted, .fixed, .random: targetQueries = 0
        default: targetQueries = 1
        }
        queries = Array(repeating: targetQueries, count: count)
        storedScore = Array(repeating: -.infinity, count: count)
        success = Array(repeating: false, count: count)
        cleanLogits = model.logits(images)
        guard count > 0 else { return }
        let met = meets(logits: cleanLogits, items: Array(0..<count))
        for item in 0..<count {
            queries[item] += 1
            success[item] = met[item] && !hopeless[item]
        }
    }

    var isTargeted: Bool { targets != nil }

    /// The items still to attack: not yet successful and not hopeless.
    var unfinished: [Int] { labels.indices.filter { !success[$0] && !hopeless[$0] } }

    /// The class an item's loss is about: its target, or its label when untargeted.
    func lossClass(_ item: Int) -> Int { targets?[item] ?? labels[item] }

    /// Whether each row of `logits` (row `r` belongs to `items[r]`) meets the criterion.
    func meets(logits: Tensor, items: [Int]) -> [Bool] {
        meets(probabilities: softmax(logits), items: items)
    }

    /// The same from probabilities already computed.
    func meets(probabilities: Tensor, items: [Int]) -> [Bool] {
        let classes = probabilities.shape[1]
        return items.enumerated().map { row, item in
            criterion.isMet(
                probabilities: probabilities.scalars[row * classes..<(row + 1) * classes],
                label: labels[item],
                target: targets?[item])
        }
    }

    /// Judges one evaluated step: which items (row `r` of `logits` and `images` belongs to
    /// `items[r]`) meet the criterion, and whether the run stops after this step. The step
    /// is reported to the run's observer with each item's probability of its loss class
    /// (``lossClass(_:)``); step 0, the starting point, is judged but not reported.
    func judge(
        logits: Tensor, items: [Int], images: Tensor, step: Int, of steps: Int, attempt: Int,
        control: inout StepControl
    ) -> (met: [Bool], stop: Bool) {
        let probabilities = softmax(logits)
        let met = meets(probabilities: probabilities, items: items)
        let classes = probabilities.shape[1]
        let stop =
            step > 0
            && control.shouldStop(
                after: OptimizationStep(
                    step: step, steps: steps, attempt: attempt, items: items, images: images,
                    probabilities: items.enumerated().map { row, item in
                        probabilities.scalars[row * classes + lossClass(item)]
                    }))
        return (met, stop)
    }

    /// Marks an item successful with row `row` of `images` as its adversarial.
    mutating func succeed(_ item: Int, image images: Tensor, row: Int) {
        AttackMath.copyRow(row, of: images, to: item, of: &adversarial)
        success[item] = true
    }

    /// Keeps row `row` of `images` as a failed item's best attempt if its score beats the
    /// attempt stored so far.
    mutating func offer(_ item: Int, image images: Tensor, row: Int, score: Float) {
        guard !success[item], score > storedScore[item] else { return }
        AttackMath.copyRow(row, of: images, to: item, of: &adversarial)
        storedScore[item] = score
    }

    mutating func addQueries(_ items: [Int], _ count: Int = 1) {
        for item in items { queries[item] += count }
    }

    mutating func addIterations(_ items: [Int], _ count: Int = 1) {
        for item in items { iterations[item] += count }
    }

    /// The result, with success flags from classifying all returned images in one batch,
    /// as a caller checking them would. Logits can differ in the last bits between batch
    /// sizes (the batch is cut into shards differently), which matters for images that sit
    /// right at the decision boundary, as minimisation attacks leave them. One query each.
    mutating func verified(model: Model, stopped: Bool = false) -> AttackResult {
        var probabilities = Tensor(shape: [0, model.classCount])
        if !labels.isEmpty {
            probabilities = model.probabilities(adversarial)
            let met = meets(probabilities: probabilities, items: Array(labels.indices))
            for item in labels.indices {
                success[item] = met[item] && !hopeless[item]
                queries[item] += 1
            }
        }
        return AttackResult(
            adversarial: adversarial, success: success, targets: targets, iterations: iterations,
            queries: queries, probabilities: probabilities, stopped: stopped)
    }
}

/// Row-wise kernels on [N, …] tensors. Kept in a namespace so they cannot clash with
/// helpers other files of the module define.
enum AttackMath {
    /// Copies item `row` of `source` over item `destinationRow` of `destination`.
    static func copyRow(_ row: Int, of source: Tensor, to destinationRow: Int, of destination: inout Tensor) {
        let size = source.itemCount
        precondition(destination.itemCount == size, "item sizes differ")
        source.scalars.withUnsafeBufferPointer { from in
            destination.scalars.withUnsafeMutableBufferPointer { to in
                (to.baseAddress! + destinationRow * size).update(
                    from: from.baseAddress! + row * size, count: size)
            }
        }
    }

    /// ‖row‖₂ of every item of `tensor`.
    static func l2Norms(_ tensor: Tensor) -> [Float] {
        let size = tensor.itemCount
        return tensor.scalars.withUnsafeBufferPointer { x in
            (0..<tensor.batchSize).map { row in
                var sum: Float = 0
                for index in row * size..<(row + 1) * size { sum += x[index] * x[index] }
                return sum.squareRoot()
            }
        }
    }

    /// ‖a − b‖₂ of one item, summed exactly as ``Norm/distances(_:_:)`` sums it, so that
    /// a bound checked here holds for the reported distance too.
    static func l2Distance(
        _ a: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, row: Int, size: Int
    ) -> Float {
        var result: Float = 0
        for index in row * size..<(row + 1) * size {
            let d = abs(a[index] - b[index])
            result += d * d
        }
        return result.squareRoot()
    }
}


/// Projects each item of `x` onto the L2 ball of radius ε around the same item of
/// `clean`, then into [0, 1] (clipping only shortens the perturbation, as the clean
/// pixels lie in [0, 1]). The bound is checked afterwards with the same Float sum
/// ``Norm/distances(_:_:)`` uses and the perturbation shrunk until it holds.
func projectL2(_ x: inout Tensor, around clean: Tensor, epsilon: Float) {
    let size = x.itemCount
    clean.scalars.withUnsafeBufferPointer { x0 in
        x.scalars.withUnsafeMutableBufferPointer { x in
            for row in 0..<(x.count / max(size, 1)) {
                let range = row * size..<(row + 1) * size
                let norm = AttackMath.l2Distance(UnsafeBufferPointer(x), x0, row: row, size: size)
                var scale: Float = norm > epsilon ? epsilon / norm : 1
                // Rounding can leave the distance an ulp above ε: shrink the perturbation a
                // little more each round; after a few rounds give up and take the clean item.
                for attempt in 1...8 {
                    for index in range {
                        x[index] = min(max(x0[index] + scale * (x[index] - x0[index]), 0), 1)
                    }
                    if AttackMath.l2Distance(UnsafeBufferPointer(x), x0, row: row, size: size) <= epsilon {
                        break
                    }
                    if attempt == 8 { for index in range { x[index] = x0[index] } }
                    scale = 1 - 1e-6 * Float(1 << attempt)
                }
            }
        }
    }
}

/// Shared checks for attack hyperparameters; messages name the option and the value.
enum AttackCheck {
    static func epsilon(_ value: Float, norm: Norm) throws(AdversarialError) {
        guard value.isFinite, value >= 0 else {
            throw AdversarialError("epsilon must be a finite number ≥ 0, got \(value)")
        }
        if norm == .linf, value > 1 {
            throw AdversarialError(
                "an L∞ epsilon above 1 allows any image; epsilon must be at most 1, got \(value)")
        }
    }

    static func atLeast(_ minimum: Int, _ value: Int, _ name: String) throws(AdversarialError) {
        guard value >= minimum else {
            throw AdversarialError("\(name) must be at least \(minimum), got \(value)")
        }
    }

    static func positive(_ value: Float, _ name: String) throws(AdversarialError) {
        guard value.isFinite, value > 0 else {
            throw AdversarialError("\(name) must be a positive finite number, got \(value)")
        }
    }

    static func nonNegative(_ value: Float, _ name: String) throws(AdversarialError) {
        guard value.isFinite, value >= 0 else {
            throw AdversarialError("\(name) must be a finite number ≥ 0, got \(value)")
        }
    }

    static func fraction(_ value: Float, _ name: String) throws(AdversarialError) {
        guard value.isFinite, value > 0, value <= 1 else {
            throw AdversarialError("\(name) must be in (0, 1], got \(value)")
        }
    }
}
