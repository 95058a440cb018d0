import ArgumentParser
import Experiments
import Foundation
import NeuralNet

/// `deceive predict`.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict", abstract: "Classify 28×28 grey PNG images (larger ones are scaled down).")

    @OptionGroup var source: ModelOptions

    @Argument(help: "PNG files.")
    var images: [String]

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if images.isEmpty { throw ValidationError("give at least one PNG file") }
    }

    struct Prediction: Encodable {
        let file: String
        let predicted: Int
        let confidence: Float
        let probabilities: [Float]
    }

    func run() throws {
        try runReportingErrors {
            let checkpoint = try source.load()
            guard checkpoint.model.architecture.inputShape == [1, 28, 28] else {
                throw Failure("\(source.model): predict needs a model of 1×28×28 grey images")
            }
            let inputs = Tensor.concatenate(try images.map(readImageForModel))
            let probabilities = checkpoint.model.probabilities(inputs)
            let classes = checkpoint.model.classCount
            let predictions = images.enumerated().map { row, file in
                let p = Array(probabilities.scalars[row * classes..<(row + 1) * classes])
                let best = p.indices.max { p[$0] < p[$1] } ?? 0
                return Prediction(file: file, predicted: best, confidence: p[best], probabilities: p)
            }
            if json {
                print(jsonText(predictions))
                return
            }
            for prediction in predictions {
                let top = prediction.probabilities.enumerated().sorted { $0.element > $1.element }.prefix(3)
                let others = top.dropFirst().map { "\($0.offset) " + String(format: "%.4f", $0.element) }.joined(separator: ", ")
                print("\(prediction.file): \(prediction.predicted) (" + String(format: "%.4f", prediction.confidence) + "; next \(others))")
            }
        }
    }
}
