import Adversarial
import Foundation
import NeuralNet

/// Counts of (true class, predicted class) pairs: rows are the true class, columns the
/// model's answer, so the diagonal holds the right answers.
public struct ConfusionMatrix: Sendable, Equatable, Encodable {
    /// `counts[truth][prediction]`, `classes` × `classes`.
    public let counts: [[Int]]

    /// Tallies `predictions` against `labels`; both hold classes in `0..<classes`.
    public init(labels: [Int], predictions: [Int], classes: Int) {
        var counts = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (truth, guess) in zip(labels, predictions) { counts[truth][guess] += 1 }
        self.counts = counts
    }

    /// The number of pairs tallied.
    public var total: Int { counts.reduce(0) { $0 + $1.reduce(0, +) } }
    /// The number of right answers (the diagonal).
    public var correct: Int { counts.indices.reduce(0) { $0 + counts[$1][$1] } }
    /// The fraction of right answers.
    public var accuracy: Double { Double(correct) / Double(max(total, 1)) }
    /// The fraction of right answers among each class's images.
    public var perClassAccuracy: [Double] {
        counts.indices.map { Double(counts[$0][$0]) / Double(max(counts[$0].reduce(0, +), 1)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(counts)
    }
}

/// A model's plain accuracy on a labelled set (`deceive evaluate`, the report's model
/// section): overall, per class, the confusion matrix, and the speed.
public struct AccuracyEvaluation: Sendable, Encodable {
    /// What was evaluated, for the record.
    public let model: String
    public let dataset: String
    public let images: Int
    public let accuracy: Double
    public let perClassAccuracy: [Double]
    /// Rows: true class; columns: predicted class.
    public let confusionMatrix: ConfusionMatrix
    public let seconds: Double
    public let imagesPerSecond: Double
    /// The model's answer for each image.
    public let predictions: [Int]

    private enum CodingKeys: String, CodingKey {
        case model, dataset, images, accuracy, perClassAccuracy, confusionMatrix, seconds, imagesPerSecond
    }

    /// Classifies `images` 1,000 at a time and tallies the answers against `labels`.
    /// `model` and `dataset` name what was evaluated.
    public init(model: Model, images: Tensor, labels: [Int], modelName: String, dataset: String) {
        let clock = ContinuousClock()
        let start = clock.now
        predictions = model.predictions(images, batchSize: 1000)
        seconds = (clock.now - start).seconds
        confusionMatrix = ConfusionMatrix(labels: labels, predictions: predictions, classes: model.classCount)
        self.model = modelName
        self.dataset = dataset
        self.images = labels.count
        accuracy = confusionMatrix.accuracy
        perClassAccuracy = confusionMatrix.perClassAccuracy
        imagesPerSecond = Double(labels.count) / max(seconds, 1e-9)
    }
}

/// One point of an accuracy-against-ε curve.
public struct RobustnessPoint: Sendable, Encodable {
    /// The budget (the attack's own for minimisation attacks: nil).
    public let epsilon: Float?
    public let report: AttackReport
}

/// Robust accuracy under one attack for each ε (`deceive evaluate --attack`, the report's
/// defence section): every ε attacks the same images, whose clean predictions are computed
/// once. `epsilons` nil runs the attack once with its default (or no) budget.
///
/// `progress` gets the ε being run and the images done after each batch.
public func robustnessCurve(
    model: Model, settings: AttackSettings, epsilons: [Float]?, images: Tensor, labels: [Int],
    progress: ((Float?, Int) -> Void)? = nil
) throws(ExperimentError) -> [RobustnessPoint] {
    let clean = model.predictions(images, batchSize: 1000)
    var points: [RobustnessPoint] = []
    for epsilon in epsilons.map({ $0.map(Optional.some) }) ?? [nil] {
        let run = try AttackRun.run(
            settings.with(epsilon: epsilon), model: model, images: images, labels: labels,
            cleanPredictions: clean,
            progress: progress.map { progress in { progress(epsilon, $0) } })
        points.append(RobustnessPoint(epsilon: epsilon ?? run.epsilon, report: run.report))
    }
    return points
}
