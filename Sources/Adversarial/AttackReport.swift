import NeuralNet

/// The numbers that describe an attack run honestly: how accurate the model was before and
/// after, how often the attack succeeded on images the model got right, how large the
/// successful perturbations were, and what it cost.
public struct AttackReport: Sendable, Encodable {
    /// Norm statistics of the successful perturbations.
    public struct NormStatistics: Sendable, Encodable {
        public let mean: Float
        public let median: Float
    }

    public let attack: String
    public let images: Int
    /// Fraction of clean images classified correctly.
    public let cleanAccuracy: Double
    /// Fraction of images classified correctly after the attack (an image counts as
    /// correct if the attack failed on it; clean mistakes count as wrong).
    public let robustAccuracy: Double
    /// Fraction of originally correct images on which the attack met its criterion.
    public let successRate: Double
    /// Successes among the images the model already got wrong (reported, not hidden).
    public let successesOnMisclassified: Int
    public let misclassified: Int
    public let l0: NormStatistics?
    public let l2: NormStatistics?
    public let linf: NormStatistics?
    public let meanIterations: Double
    public let meanQueries: Double
    public let seconds: Double
    public let imagesPerSecond: Double

    /// Builds the report from clean images, their labels and predictions, and the
    /// attack's result (which carries the adversarial predictions).
    public init(
        attack: String, originals: Tensor, labels: [Int], cleanPredictions: [Int], result: AttackResult, seconds: Double
    ) {
        let count = labels.count
        let adversarialPredictions = result.predictions
        self.attack = attack
        images = count
        let correct = labels.indices.filter { cleanPredictions[$0] == labels[$0] }
        cleanAccuracy = Double(correct.count) / Double(max(count, 1))
        robustAccuracy = Double(labels.indices.filter { cleanPredictions[$0] == labels[$0] && adversarialPredictions[$0] == labels[$0] }.count) / Double(max(count, 1))
        let succeeded = correct.filter { result.success[$0] }
        successRate = Double(succeeded.count) / Double(max(correct.count, 1))
        misclassified = count - correct.count
        successesOnMisclassified = labels.indices.filter { cleanPredictions[$0] != labels[$0] && result.success[$0] }.count
        func statistics(_ norm: Norm) -> NormStatistics? {
            guard !succeeded.isEmpty else { return nil }
            let distances = norm.distances(result.adversarial.gathering(succeeded), originals.gathering(succeeded))
            return NormStatistics(mean: distances.reduce(0, +) / Float(distances.count), median: median(distances))
        }
        l0 = statistics(.l0)
        l2 = statistics(.l2)
        linf = statistics(.linf)
        meanIterations = Double(result.iterations.reduce(0, +)) / Double(max(count, 1))
        meanQueries = Double(result.queries.reduce(0, +)) / Double(max(count, 1))
        self.seconds = seconds
        imagesPerSecond = Double(count) / max(seconds, 1e-9)
    }
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
/// Infinite values sort last, so a median of distances in which failures count as infinitely
/// far is infinite once half of them failed.
public func median(_ values: [Float]) -> Float {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// Runs an attack over a large set in batches (bounded memory), concatenating the results.
///
/// `progress` gets the number of images done after each batch; `observer` every step of
/// every batch, with ``OptimizationStep/items`` counted in the whole set. When it stops
/// the attack (or the task is cancelled), no further batch starts and the result, marked
/// `stopped`, covers the images of the batches begun: a prefix of the set.
public func runInBatches(
    _ attack: any Attack, model: Model, images: Tensor, labels: [Int], goal: AttackGoal, seed: UInt64,
    batchSize: Int = 500, progress: ((Int) -> Void)? = nil, observer: StepObserver? = nil
) throws(AdversarialError) -> AttackResult {
    guard !labels.isEmpty else {
        return AttackResult(
            adversarial: images, success: [], targets: nil, iterations: [], queries: [],
            probabilities: Tensor(shape: [0, model.classCount]))
    }
    var parts: [AttackResult] = []
    for start in stride(from: 0, to: labels.count, by: batchSize) {
        if Task.isCancelled && !parts.isEmpty { break }
        let range = start..<min(start + batchSize, labels.count)
        let shifted: StepObserver? = observer.map { observer in
            { step in
                var step = step
                step.items = step.items.map { $0 + start }
                return observer(step)
            }
        }
        // Attacks key their random streams by the image's row in the batch; offsetting the
        // seed by the batch's start gives every image of the set its own stream.
        let part = try attack.run(
            model: model, images: images.batch(range), labels: Array(labels[range]), goal: goal,
            seed: seed &+ UInt64(start), observer: shifted)
        parts.append(part)
        progress?(range.upperBound)
        if part.stopped { break }
    }
    let targets: [Int]? = parts.first?.targets == nil ? nil : parts.flatMap { $0.targets ?? [] }
    return AttackResult(
        adversarial: Tensor.concatenate(parts.map(\.adversarial)), success: parts.flatMap(\.success), targets: targets,
        iterations: parts.flatMap(\.iterations), queries: parts.flatMap(\.queries),
        probabilities: Tensor.concatenate(parts.map(\.probabilities)),
        stopped: parts.count < (labels.count + batchSize - 1) / batchSize || parts.last?.stopped == true)
}
