import ArgumentParser
import Datasets
import Foundation
import NeuralNet

/// `deceive evaluate`.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate", abstract: "Measure a model's test accuracy, per class, with the confusion matrix.")

    @Option(help: "The checkpoint (.safetensors).")
    var model: String

    @Option(help: "Architecture, for files without one in their metadata (seed, madry or a spec).")
    var arch: ArchitectureOption?

    @Option(help: "Dataset: mnist or fashion-mnist (default: the checkpoint's).")
    var dataset: DatasetName?

    @Option(help: ArgumentHelp("Directory holding the dataset's IDX files.", valueName: "dir"))
    var dataDir: String?

    @Option(help: "Evaluate on the first N test images only.")
    var limit: Int?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
    }

    struct Report: Encodable {
        let model: String
        let dataset: String
        let images: Int
        let accuracy: Double
        let perClassAccuracy: [Double]
        /// Rows: true class; columns: predicted class.
        let confusionMatrix: [[Int]]
        let seconds: Double
        let imagesPerSecond: Double
    }

    func run() throws {
        try runReportingErrors {
            let checkpoint = try loadCheckpoint(model, architecture: arch)
            let name =
                dataset ?? checkpoint.metadata[Checkpoint.Key.dataset].flatMap(DatasetName.init(rawValue:)) ?? .mnist
            let store = DataStore(dataset: name, directory: dataDir.map { URL(fileURLWithPath: $0) })
            var test = try store.load(log: { printError($0) }).test
            if let limit { test = test.prefix(limit) }
            guard checkpoint.model.classCount == 10 else {
                throw Failure("\(model): the model scores \(checkpoint.model.classCount) classes, the dataset has 10")
            }
            let images = test.allImages
            let clock = ContinuousClock()
            let start = clock.now
            let predictions = predict(checkpoint.model, images)
            let seconds = (clock.now - start).seconds
            var matrix = [[Int]](repeating: [Int](repeating: 0, count: 10), count: 10)
            for (truth, guess) in zip(test.labels, predictions) { matrix[truth][guess] += 1 }
            let correct = (0..<10).reduce(0) { $0 + matrix[$1][$1] }
            let perClass = (0..<10).map { Double(matrix[$0][$0]) / Double(max(matrix[$0].reduce(0, +), 1)) }
            let report = Report(
                model: model, dataset: name.rawValue, images: test.count, accuracy: Double(correct) / Double(test.count),
                perClassAccuracy: perClass, confusionMatrix: matrix, seconds: seconds,
                imagesPerSecond: Double(test.count) / max(seconds, 1e-9))
            if json {
                print(jsonText(report))
                return
            }
            print("\(model) on \(test.count) \(name.rawValue) test images: accuracy \(percent(report.accuracy)) (\(correct)/\(test.count))")
            print(String(format: "%.2f s, %.0f images/s", seconds, report.imagesPerSecond))
            print("\nper class:")
            for digit in 0..<10 {
                print("  \(name.classNames[digit].padding(toLength: 11, withPad: " ", startingAt: 0)) \(percent(perClass[digit]))")
            }
            print("\nconfusion matrix (rows: true class, columns: predicted):")
            print("      " + (0..<10).map { String(format: "%6d", $0) }.joined())
            for truth in 0..<10 {
                print(String(format: "%6d", truth) + matrix[truth].map { String(format: "%6d", $0) }.joined())
            }
        }
    }
}
