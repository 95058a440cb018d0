import ArgumentParser
import Experiments
import Foundation
import NeuralNet
import Visuals

/// `deceive report`.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one self-contained HTML report: the model, fooling, attacks, defence and certificates, with pictures.")

    @Option(help: "The standard model (.safetensors).")
    var model: String = "models/mnist-cnn.safetensors"

    @Option(help: "A robust (adversarially trained) model, for the defence section.")
    var robustModel: String?

    @Option(help: "A certified (IBP-trained) model, for the certification section.")
    var certifiedModel: String?

    @Option(help: "Where to write the report.")
    var output: String = "out/report.html"

    @Option(help: "Test digits per attack.")
    var count: Int = 300

    @OptionGroup var data: DataOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1, got \(count)") }
    }

    func run() throws {
        try runReportingErrors {
            let outputURL = URL(fileURLWithPath: output)
            try checkWritable(outputURL)
            let builder = try ReportBuilder(
                modelPath: model, robustModelPath: robustModel, certifiedModelPath: certifiedModel, count: count,
                store: data.store, pictures: nil, log: { printError($0) })
            try builder.build().save(to: outputURL)
            print("wrote \(output)")
        }
    }
}

/// `deceive demo`: the whole story in one command.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Fetch data, use the shipped models (or train), fool them, attack them, and write a report.")

    @Option(help: "Directory for report.html and the pictures.")
    var output: String = "out/demo"

    @Flag(help: "Train a standard model first (about a minute) instead of using the shipped one.")
    var train = false

    @Option(help: "Test digits per attack.")
    var count: Int = 200

    @OptionGroup var data: DataOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1, got \(count)") }
    }

    func run() throws {
        try runReportingErrors {
            let directory = URL(fileURLWithPath: output)
            try prepareOutputDirectory(directory)
            let clock = ContinuousClock()
            let began = clock.now
            var model = "models/mnist-cnn.safetensors"
            if train {
                model = directory.appendingPathComponent("mnist-cnn.safetensors").path
                let status = Deceive.run(["train", "--augment", "--output", model])
                if status != 0 { throw ExitCode(status) }
            }
            guard FileManager.default.fileExists(atPath: model) else {
                throw Failure("\(model): no such file; run from the project directory, or use --train")
            }
            func shipped(_ path: String) -> String? { FileManager.default.fileExists(atPath: path) ? path : nil }
            let builder = try ReportBuilder(
                modelPath: model, robustModelPath: shipped("models/mnist-cnn-robust.safetensors"),
                certifiedModelPath: shipped("models/mnist-cnn-certified.safetensors"), count: count,
                store: data.store, pictures: directory, log: { printError($0) })
            try builder.build().save(to: directory.appendingPathComponent("report.html"))
            print(String(format: "demo finished in %.0f s", (clock.now - began).seconds))
            print("report: \(directory.appendingPathComponent("report.html").path)")
        }
    }
}

extension HTMLReport {
    /// Writes the report atomically, failing with one line.
    func save(to url: URL) throws {
        do throws(FileWriteError) {
            try write(to: url)
        } catch {
            throw Failure(error.description)
        }
    }
}
