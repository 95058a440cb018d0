import NeuralNet

/// Which class an attack pushes an image towards.
public enum TargetMode: Sendable, Equatable {
    /// Any wrong class.
    case untargeted
    /// One given class for every image.
    case fixed(Int)
    /// A random wrong class per image (seeded).
    case random
    /// The class the model finds least likely for the clean image.
    case leastLikely
    /// The `k`-th most likely class of the clean image other than its label (k ≥ 1), as
    /// AutoAttack's targeted APGD runs over the top classes.
    case ranked(Int)

    /// The target class of each image, or nil for untargeted attacks. Images whose label
    /// equals a fixed target get no target change: their attack cannot succeed.
    public func targets(for images: Tensor, labels: [Int], model: Model, seed: UInt64) -> [Int]? {
        let classes = model.classCount
        switch self {
        case .untargeted:
            return nil
        case .fixed(let target):
            return Array(repeating: target, count: labels.count)
        case .random:
            return labels.enumerated().map { index, label in
                var generator = SplitMix64(seed: seed, stream: 0x7A12, UInt64(index))
                let offset = 1 + Int(generator.next() % UInt64(classes - 1))
                return (label + offset) % classes
            }
        case .leastLikely:
            let logits = model.logits(images)
            return (0..<labels.count).map { row in
                var worst = 0
                for c in 1..<classes where logits.scalars[row * classes + c] < logits.scalars[row * classes + worst] { worst = c }
                return worst
            }
        case .ranked(let rank):
            let logits = model.logits(images)
            return labels.enumerated().map { row, label in
                let order = (0..<classes).filter { $0 != label }.sorted {
                    logits.scalars[row * classes + $0] > logits.scalars[row * classes + $1]
                }
                return order[min(max(rank, 1), order.count) - 1]
            }
        }
    }
}

/// When an image counts as adversarial (Foolbox calls this the criterion).
public enum Criterion: Sendable, Equatable {
    /// Untargeted: the prediction differs from the label. Targeted: the prediction is the target.
    case misclassification
    /// Untargeted: some wrong class has probability ≥ p. Targeted: the target has
    /// probability ≥ p. A high-confidence request Foolbox users have asked for for years.
    case confidence(Float)

    /// Whether one image's class probabilities meet the criterion.
    public func isMet(probabilities row: ArraySlice<Float>, label: Int, target: Int?) -> Bool {
        let first = row.startIndex
        let predicted = row.indices.max { row[$0] < row[$1] }.map { $0 - first } ?? 0
        switch self {
        case .misclassification:
            return target.map { predicted == $0 } ?? (predicted != label)
        case .confidence(let p):
            if let target { return row[first + target] >= p }
            return row.indices.contains { $0 - first != label && row[$0] >= p }
        }
    }

    /// The criterion for every row of a probabilities tensor [N, classes].
    public func isMet(probabilities: Tensor, labels: [Int], targets: [Int]?) -> [Bool] {
        let classes = probabilities.shape[1]
        return labels.indices.map { row in
            isMet(
                probabilities: probabilities.scalars[row * classes..<(row + 1) * classes], label: labels[row],
                target: targets?[row])
        }
    }
}

/// What an attack is asked to achieve.
public struct AttackGoal: Sendable, Equatable {
    public var mode: TargetMode
    public var criterion: Criterion

    /// Creates a goal; a confidence criterion must lie in (0, 1).
    public init(mode: TargetMode = .untargeted, criterion: Criterion = .misclassification) throws(AdversarialError) {
        if case .confidence(let p) = criterion, !(p.isFinite && p > 0 && p < 1) {
            throw AdversarialError("confidence must be between 0 and 1 (exclusive), got \(p)")
        }
        if case .fixed(let target) = mode, target < 0 {
            throw AdversarialError("target must be a class index, got \(target)")
        }
        if case .ranked(let rank) = mode, rank < 1 {
            throw AdversarialError("target rank must be at least 1, got \(rank)")
        }
        self.mode = mode
        self.criterion = criterion
    }

    /// Untargeted misclassification.
    public static let untargeted = try! AttackGoal()
}

/// What an attack produced, one row per input image.
public struct AttackResult: Sendable {
    /// The adversarial images [N, C, H, W], in [0, 1] (and within ε for fixed-budget attacks).
    /// Where the attack failed, the best attempt (or the clean image).
    public var adversarial: Tensor
    /// Whether each image meets the goal's criterion.
    public var success: [Bool]
    /// The target of each image (targeted goals) or nil.
    public var targets: [Int]?
    /// Iterations spent per image.
    public var iterations: [Int]
    /// Model evaluations per image (forward passes, with or without a backward pass).
    public var queries: [Int]
    /// The model's class probabilities for each returned image [N, classes], from the
    /// final check of success; no need to classify the adversarial images again.
    public var probabilities: Tensor
    /// Whether a ``StepObserver`` (or the cancellation of the task) stopped the attack;
    /// the images are then what it had at that step (see ``StepDecision/stop``).
    public var stopped: Bool

    /// The model's answer for each returned image.
    public var predictions: [Int] { argmax(rows: probabilities) }

    /// Creates a result.
    public init(
        adversarial: Tensor, success: [Bool], targets: [Int]?, iterations: [Int], queries: [Int],
        probabilities: Tensor, stopped: Bool = false
    ) {
        self.probabilities = probabilities
        self.stopped = stopped
        self.adversarial = adversarial
        self.success = success
        self.targets = targets
        self.iterations = iterations
        self.queries = queries
    }
}

/// An evasion attack: given a model, clean images in [0, 1] and their labels, it returns
/// adversarial images and a per-image success flag. One call shape for every attack
/// (Foolbox's design); inputs are never modified (they are values).
public protocol Attack: Sendable {
    /// A short name, e.g. `pgd`.
    var name: String { get }
    /// Runs the attack on a batch, reporting every step to `observer` (which may stop it);
    /// the attack also stops when the current task is cancelled.
    func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult
}

extension Attack {
    /// Runs the attack on a batch, to the end of its budget (unless the task is cancelled).
    public func run(model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64)
        throws(AdversarialError) -> AttackResult
    {
        try run(model: model, images: images, labels: labels, goal: goal, seed: seed, observer: nil)
    }
}

/// An attack with a fixed perturbation budget ε in its norm (FGSM, PGD, APGD, Square, …).
public protocol FixedEpsilonAttack: Attack {
    /// The budget.
    var epsilon: Float { get }
    /// The norm the budget is measured in.
    var norm: Norm { get }
}

/// An attack that searches for the smallest perturbation that succeeds
/// (Carlini–Wagner, DeepFool, JSMA).
public protocol MinimizationAttack: Attack {
    /// The norm being minimised.
    var norm: Norm { get }
}

/// The norms perturbations are measured in.
public enum Norm: String, Sendable, CaseIterable {
    case l0, l2, linf

    /// ‖a − b‖ for each item of two equally shaped batches.
    public func distances(_ a: Tensor, _ b: Tensor) -> [Float] {
        precondition(a.shape == b.shape, "shapes differ")
        let size = a.itemCount
        return (0..<a.batchSize).map { row in
            distance(a.scalars[row * size..<(row + 1) * size], b.scalars[row * size..<(row + 1) * size])
        }
    }

    /// ‖a − b‖ of two equally long vectors (one image each), summed in the order
    /// ``distances(_:_:)`` sums, so a bound checked on one holds for the other.
    func distance(_ a: ArraySlice<Float>, _ b: ArraySlice<Float>) -> Float {
        precondition(a.count == b.count, "lengths differ")
        var result: Float = 0
        for (x, y) in zip(a, b) {
            let d = abs(x - y)
            switch self {
            case .l0: result += d > 0 ? 1 : 0
            case .l2: result += d * d
            case .linf: result = max(result, d)
            }
        }
        return self == .l2 ? result.squareRoot() : result
    }
}

/// Checks shared by every attack's `run`: shapes, labels, finite pixels in [0, 1].
public func validateAttackInput(model: Model, images: Tensor, labels: [Int], goal: AttackGoal) throws(AdversarialError) {
    try validateAttackInput(
        inputShape: model.architecture.inputShape, classCount: model.classCount, images: images, labels: labels,
        goal: goal)
}

/// The same checks for a classifier known by its input shape and class count only (a
/// ``LabelOracle``).
func validateAttackInput(
    inputShape: [Int], classCount: Int, images: Tensor, labels: [Int], goal: AttackGoal
) throws(AdversarialError) {
    guard images.shape.count == 4, Array(images.shape.dropFirst()) == inputShape else {
        throw AdversarialError("images must be [N] + \(inputShape), got \(images.shape)")
    }
    guard images.batchSize == labels.count else {
        throw AdversarialError("\(images.batchSize) images but \(labels.count) labels")
    }
    for label in labels where !(0..<classCount).contains(label) {
        throw AdversarialError("label \(label) is not a class of this model (0–\(classCount - 1))")
    }
    if case .fixed(let target) = goal.mode, target >= classCount {
        throw AdversarialError("target \(target) is not a class of this model (0–\(classCount - 1))")
    }
    guard images.scalars.allSatisfy({ $0.isFinite && $0 >= 0 && $0 <= 1 }) else {
        throw AdversarialError("images must have finite pixels in [0, 1]")
    }
}
