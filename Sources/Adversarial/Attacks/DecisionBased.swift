import Foundation
import NeuralNet

// MARK: The oracle

/// What a decision-based attack may ask of a classifier: the class it predicts for each
/// image, and nothing more (no probabilities, no logits, no gradients).
///
/// The decision-based attacks (``HopSkipJump``, ``BoundaryAttack``) do their work through
/// one of these, so reading anything but labels is impossible by construction.
/// ``ModelLabels`` adapts a ``NeuralNet/Model``.
public protocol LabelOracle: Sendable {
    /// The shape of one input, e.g. `[1, 28, 28]`.
    var inputShape: [Int] { get }
    /// The number of classes the answers range over.
    var classCount: Int { get }
    /// The predicted class of each image of a batch `[N] + inputShape`: N queries.
    func labels(_ images: Tensor) -> [Int]
}

/// A model seen through its predicted labels only.
///
/// The label is the first largest softmax probability: the class ``AttackResult/predictions``
/// and ``Criterion/misclassification`` read, so that an attack's verdict and its caller's
/// agree on every image they both classify in the same batch.
public struct ModelLabels: LabelOracle {
    private let model: Model

    /// The labels of `model`.
    public init(_ model: Model) { self.model = model }

    public var inputShape: [Int] { model.architecture.inputShape }
    public var classCount: Int { model.classCount }
    public func labels(_ images: Tensor) -> [Int] { argmax(rows: model.probabilities(images)) }
}

// MARK: Decision-based attacks

/// What a decision-based attack returns, from labels alone.
public struct LabelOnlyResult: Sendable {
    /// The returned images [N, C, H, W] in [0, 1]: the adversarial found, or the clean image.
    public var adversarial: Tensor
    /// Whether the oracle gave each returned image the wanted label in the final check.
    public var success: [Bool]
    /// Iterations of the attack per image.
    public var iterations: [Int]
    /// Oracle queries per image, the clean check and the final check included.
    public var queries: [Int]
    /// Whether an observer (or the cancellation of the task) stopped the attack.
    public var stopped: Bool
}

/// A minimisation attack that sees only the predicted label, never a probability or a
/// gradient (Brendel et al. 2018 call them decision-based): ``HopSkipJump`` and
/// ``BoundaryAttack``.
///
/// Each starts from a point that already has the wanted label (see
/// ``LabelOnlyRun/startingPoints(for:seed:)``), blends it towards the original by binary
/// search, and then shrinks the perturbation while staying on the adversarial side.
/// Everything it learns about the model comes through ``LabelOracle/labels(_:)``, and
/// every image of every query is counted against `maxQueries`, the clean check and the
/// final check included. The observer's steps carry no probabilities
/// (``OptimizationStep/probabilities`` is empty): the attack has none. Through
/// ``Attack/run(model:images:labels:goal:seed:observer:)`` the model's probabilities are
/// added for the observer and the result by the caller's side, never shown to the attack.
///
/// Targets: a digit or random (least-likely and ranked targets need the model's scores);
/// the criterion must be misclassification (a confidence is not a label).
public protocol DecisionBasedAttack: MinimizationAttack {
    /// The most oracle queries per image, everything included.
    var maxQueries: Int { get }

    /// Runs the attack on labels alone: `targets` holds each image's target class, or is
    /// nil for an untargeted attack.
    func run(
        oracle: some LabelOracle, images: Tensor, labels: [Int], targets: [Int]?, seed: UInt64,
        observer: StepObserver?
    ) throws(AdversarialError) -> LabelOnlyResult
}

extension DecisionBasedAttack {
    /// Throws unless labels alone can pursue `goal`: misclassification, untargeted or a
    /// digit or random target.
    public func check(_ goal: AttackGoal) throws(AdversarialError) {
        guard goal.criterion == .misclassification else {
            throw AdversarialError(
                "\(name) reads only the predicted label and cannot aim for a confidence; use square or cw")
        }
        switch goal.mode {
        case .leastLikely, .ranked:
            throw AdversarialError(
                "\(name) reads only labels, and least-likely or ranked targets need the model's scores; "
                    + "give a digit or random")
        case .untargeted, .fixed, .random:
            break
        }
    }

    public func run(
        model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64, observer: StepObserver?
    ) throws(AdversarialError) -> AttackResult {
        try validateAttackInput(model: model, images: images, labels: labels, goal: goal)
        try check(goal)
        let targets = goal.mode.targets(for: images, labels: labels, model: model, seed: seed)
        let classes = model.classCount
        // The observer sees the model's probability of each item's class, as for every
        // attack: computed here, for the observer only, and never shown to the attack.
        let scored: StepObserver? = observer.map { observer in
            { step in
                var step = step
                let probabilities = model.probabilities(step.images)
                step.probabilities = step.items.enumerated().map { row, item in
                    probabilities.scalars[row * classes + (targets?[item] ?? labels[item])]
                }
                return observer(step)
            }
        }
        let outcome = try run(
            oracle: ModelLabels(model), images: images, labels: labels, targets: targets, seed: seed,
            observer: scored)
        // The images of the attack's final check, in the same batch: the same answers.
        return AttackResult(
            adversarial: outcome.adversarial, success: outcome.success, targets: targets,
            iterations: outcome.iterations, queries: outcome.queries,
            probabilities: model.probabilities(outcome.adversarial), stopped: outcome.stopped)
    }
}

// MARK: What the decision-based attacks share

/// The query budget's fixed parts, shared by the decision-based attacks.
enum LabelOnlyBudget {
    /// Rounds of the final check that move an image which lost its label back towards its
    /// start; each costs every image of the batch one query.
    static let repairRounds = 3
    /// The queries every image keeps for the final check and its repairs.
    static let reserve = 1 + repairRounds
    /// The smallest budget the attacks accept: the clean check, a noise draw, the blend
    /// search and the final check, with room to spare.
    static let minimum = 20
}

/// One image a decision-based attack is shrinking the perturbation of.
struct LabelOnlyImage {
    let item: Int
    let original: [Float]
    /// Where it started: adversarial, far from the boundary (the final check's fallback).
    let start: [Float]
    /// The current point: adversarial when last asked.
    var current: [Float]
    /// ‖current − original‖ in the attack's norm.
    var distance: Float
    /// Whether the attack is done with it (its budget spent, or converged).
    var done = false
}

/// One run of a decision-based attack on a batch: the oracle, the per-image query
/// counts and budget, and the steps every such attack takes (the clean check, starting
/// points, binary searches towards the original, the final check).
struct LabelOnlyRun<Oracle: LabelOracle> {
    let oracle: Oracle
    let images: Tensor
    let labels: [Int]
    let targets: [Int]?
    /// Pixels per image.
    let size: Int
    /// The most queries per image.
    let budget: Int
    /// Queries per image so far.
    private(set) var queries: [Int]
    /// The oracle's answers for the clean images (the clean check, one query each).
    let cleanAnswers: [Int]
    /// Iterations per image so far.
    var iterations: [Int]
    /// The observer, and whether it (or the task) stopped the run.
    private(set) var control: StepControl

    /// Checks the input and asks the oracle about the clean images.
    init(
        oracle: Oracle, images: Tensor, labels: [Int], targets: [Int]?, budget: Int, observer: StepObserver?
    ) throws(AdversarialError) {
        try validateAttackInput(
            inputShape: oracle.inputShape, classCount: oracle.classCount, images: images, labels: labels,
            goal: .untargeted)
        if let targets {
            guard targets.count == labels.count else {
                throw AdversarialError("\(labels.count) labels but \(targets.count) targets")
            }
            for target in targets where !(0..<oracle.classCount).contains(target) {
                throw AdversarialError(
                    "target \(target) is not a class of this model (0–\(oracle.classCount - 1))")
            }
        }
        self.oracle = oracle
        self.images = images
        self.labels = labels
        self.targets = targets
        self.budget = budget
        size = images.itemCount
        queries = Array(repeating: labels.isEmpty ? 0 : 1, count: labels.count)
        iterations = Array(repeating: 0, count: labels.count)
        control = StepControl(observer)
        cleanAnswers = labels.isEmpty ? [] : oracle.labels(images)
    }

    /// Whether an item can never succeed: its fixed target is its label.
    func isHopeless(_ item: Int) -> Bool { targets.map { $0[item] == labels[item] } ?? false }

    /// Whether an answer is what the attack wants for `item`: its target, or any class but its label.
    func isAdversarial(_ answer: Int, item: Int) -> Bool {
        targets.map { answer == $0[item] } ?? (answer != labels[item])
    }

    /// The items to attack: neither adversarial already (they are returned unchanged) nor hopeless.
    var unfinished: [Int] {
        labels.indices.filter { !isAdversarial(cleanAnswers[$0], item: $0) && !isHopeless($0) }
    }

    /// The queries `item` may still spend before the final check.
    func spendable(_ item: Int) -> Int { budget - LabelOnlyBudget.reserve - queries[item] }

    /// The clean image of an item.
    func original(_ item: Int) -> [Float] { Array(images.scalars[item * size..<(item + 1) * size]) }

    /// Asks the oracle whether each row of `batch` is adversarial for the item it belongs
    /// to (`owners[r]` for row r): one query for each row's item.
    mutating func ask(_ batch: Tensor, owners: [Int]) -> [Bool] {
        precondition(batch.batchSize == owners.count, "one owner per row")
        guard !owners.isEmpty else { return [] }
        for owner in owners { queries[owner] += 1 }
        return zip(oracle.labels(batch), owners).map { isAdversarial($0, item: $1) }
    }

    /// The same for rows given one by one.
    mutating func ask(_ rows: [[Float]], owners: [Int]) -> [Bool] {
        guard !rows.isEmpty else { return [] }
        let shape = [rows.count] + Array(images.shape.dropFirst())
        return ask(Tensor(shape: shape, scalars: Array(rows.joined())), owners: owners)
    }

    /// A starting point for each of `items`, or nil where none was found: a point the
    /// oracle gave the wanted label, blended towards the original by binary search on the
    /// blend factor (to 0.001, as Chen et al.'s initialisation).
    ///
    /// Targeted: the first image of the batch the clean check labelled as the target (the
    /// paper starts from an image of the target class), else uniform noise tried until it
    /// is classified as the target. Untargeted: uniform noise tried until misclassified,
    /// else the first image of the batch the clean check gave another class. At most 50
    /// noise draws per image, each one query.
    mutating func startingPoints(for items: [Int], seed: UInt64, noiseTries: Int = 50) -> [[Float]?] {
        var starts = [[Float]?](repeating: nil, count: items.count)
        if let targets {
            for (row, item) in items.enumerated() {
                if let donor = cleanAnswers.firstIndex(of: targets[item]) { starts[row] = original(donor) }
            }
        }
        var generators = items.map { SplitMix64(seed: seed, stream: 0x57A7, UInt64($0)) }
        var searching = items.indices.filter { starts[$0] == nil }
        for _ in 0..<noiseTries {
            searching = searching.filter { spendable(items[$0]) > 0 }
            if searching.isEmpty { break }
            let noise = searching.map { row in (0..<size).map { _ in generators[row].nextUnitFloat() } }
            let adversarial = ask(noise, owners: searching.map { items[$0] })
            for (k, row) in searching.enumerated() where adversarial[k] { starts[row] = noise[k] }
            searching = searching.filter { starts[$0] == nil }
        }
        if targets == nil {
            for row in searching {
                let label = labels[items[row]]
                if let donor = cleanAnswers.firstIndex(where: { $0 != label }) { starts[row] = original(donor) }
            }
        }
        let found = items.indices.filter { starts[$0] != nil }
        let originals = found.map { original(items[$0]) }
        let points = found.map { starts[$0]! }
        let blended = bisect(
            items: found.map { items[$0] }, high: found.map { _ in 1 }, tolerance: found.map { _ in 0.001 }
        ) { index, alpha in blend(originals[index], points[index], alpha) }
        for (index, row) in found.enumerated() { starts[row] = blended[index] }
        return starts
    }

    /// The images to attack (``unfinished``) that have a starting point
    /// (``startingPoints(for:seed:noiseTries:)``), with their distances in `norm`.
    mutating func startImages(seed: UInt64, norm: Norm) -> [LabelOnlyImage] {
        let items = unfinished
        return zip(items, startingPoints(for: items, seed: seed)).compactMap { item, start in
            start.map { start in
                let original = original(item)
                return LabelOnlyImage(
                    item: item, original: original, start: start, current: start,
                    distance: norm.distance(start[...], original[...]))
            }
        }
    }

    /// Ends step `step` of `images` (those still running): counts it as their iteration and
    /// reports it with their current points; true when the run must stop.
    mutating func endStep(_ step: Int, of steps: Int, _ images: [LabelOnlyImage]) -> Bool {
        for image in images { iterations[image.item] = step }
        let shape = [images.count] + Array(self.images.shape.dropFirst())
        return control.shouldStop(
            after: OptimizationStep(
                step: step, steps: steps, attempt: 0, items: images.map(\.item),
                images: Tensor(shape: shape, scalars: Array(images.map(\.current).joined())), probabilities: []))
    }

    /// Binary search on each path `point(index, α)` from the original (α = 0, not
    /// adversarial) to a point known adversarial (α = `high[index]`), until the bracket is
    /// within `tolerance[index]`, its budget is spent, or the midpoint no longer moves.
    /// Returns the point at each final upper end: adversarial when last asked.
    mutating func bisect(
        items: [Int], high: [Float], tolerance: [Float], point: (Int, Float) -> [Float]
    ) -> [[Float]] {
        var high = high
        var low = [Float](repeating: 0, count: items.count)
        var searching = Array(items.indices)
        while true {
            searching = searching.filter { index in
                let mid = (low[index] + high[index]) / 2
                return high[index] - low[index] > tolerance[index] && mid != high[index] && mid != low[index]
                    && spendable(items[index]) > 0
            }
            if searching.isEmpty { break }
            let mids = searching.map { (low[$0] + high[$0]) / 2 }
            let adversarial = ask(
                searching.enumerated().map { k, index in point(index, mids[k]) },
                owners: searching.map { items[$0] })
            for (k, index) in searching.enumerated() {
                if adversarial[k] { high[index] = mids[k] } else { low[index] = mids[k] }
            }
        }
        return items.indices.map { point($0, high[$0]) }
    }

    /// The final check of the batch with `attacked` at their current points: every image in
    /// one query, as the caller will classify them (the same batch, so the same answers). These attacks end right at the decision
    /// boundary, where a logit can move in its last bits between batch sizes; an image that
    /// lost its label so is moved a little towards its start point (1%, then 10%, then all
    /// the way) and the batch checked again, at most ``LabelOnlyBudget/repairRounds`` times.
    mutating func finish(_ attacked: [LabelOnlyImage]) -> LabelOnlyResult {
        var adversarial = images
        for image in attacked {
            adversarial.scalars.replaceSubrange(image.item * size..<(image.item + 1) * size, with: image.current)
        }
        let starts = Dictionary(uniqueKeysWithValues: attacked.map { ($0.item, $0.start) })
        var success = [Bool](repeating: false, count: labels.count)
        let everyone = Array(labels.indices)
        for round in 0...LabelOnlyBudget.repairRounds where !labels.isEmpty {
            success = zip(ask(adversarial, owners: everyone), everyone).map { $0 && !isHopeless($1) }
            let lost = starts.keys.filter { !success[$0] }.sorted()
            if lost.isEmpty || round == LabelOnlyBudget.repairRounds { break }
            let fraction: Float = [0.01, 0.1, 1][round]
            for item in lost {
                let current = Array(adversarial.scalars[item * size..<(item + 1) * size])
                let moved = blend(current, starts[item]!, fraction)
                adversarial.scalars.replaceSubrange(item * size..<(item + 1) * size, with: moved)
            }
        }
        return LabelOnlyResult(
            adversarial: adversarial, success: success, iterations: iterations, queries: queries,
            stopped: control.stopped)
    }
}

/// (1 − α)·a + α·b, element-wise: the point a fraction α of the way from a to b.
func blend(_ a: [Float], _ b: [Float], _ alpha: Float) -> [Float] {
    zip(a, b).map { (1 - alpha) * $0 + alpha * $1 }
}

extension SplitMix64 {
    /// `count` standard normal samples, both of each Box–Muller pair used (a decision-based
    /// attack draws hundreds of millions of them).
    mutating func gaussians(_ count: Int) -> [Float] {
        var values = [Float](repeating: 0, count: count)
        for index in stride(from: 0, to: count, by: 2) {
            let (first, second) = nextGaussianPair()
            values[index] = first
            if index + 1 < count { values[index + 1] = second }
        }
        return values
    }
}
