import ArgumentParser
import Datasets
import Experiments
import Foundation
import NeuralNet

extension CertificationMethod: ExpressibleByArgument {}

/// `deceive certify`.
struct CertifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certify",
        abstract: "Prove robustness: verified accuracy at each ε by interval bounds (ibp) or linear relaxation (crown).",
        discussion: """
            An image counts as verified only when it is classified correctly and the bounds prove that no \
            image in its L∞ box of radius ε (within [0, 1]) changes the class, for the real-valued network \
            and for Deceive's Float32 engine. Beside it, PGD accuracy (40 steps from a random start): an \
            attack's upper bound on robust accuracy, where the proof gives the lower bound; the gap between \
            them is what nobody knows. A verified image broken by PGD would be an unsound certificate and \
            fails the command.
            """)

    @OptionGroup var source: ModelOptions

    @Option(help: ArgumentHelp("Budget ε in [0, 1], one value or a comma-separated list.", valueName: "eps"))
    var eps: String = "0.3"

    @Option(help: "Bound method: ibp (interval bounds) or crown (linear relaxation, tighter, slower).")
    var method: CertificationMethod = .ibp

    @Option(help: "Certify the first N test images (default: all 10,000).")
    var count: Int?

    @Option(help: "Dataset: mnist or fashion-mnist (default: the checkpoint's).")
    var dataset: DatasetName?

    @Option(help: ArgumentHelp("Directory holding the dataset's IDX files.", valueName: "dir"))
    var dataDir: String?

    @Flag(help: "Skip the PGD accuracy beside each verified accuracy (PGD-40 takes far longer than the bounds).")
    var noPgd = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func epsilons() throws -> [Float] {
        do throws(ExperimentError) {
            let values = try parseEpsilons(eps)
            for value in values { try Certification.validate(epsilon: value) }
            return values
        } catch {
            throw ValidationError("--eps: \(error.description)")
        }
    }

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
        _ = try epsilons()
    }

    func run() throws {
        try runReportingErrors {
            let checkpoint = try source.load()
            let name =
                dataset ?? checkpoint.metadata[Checkpoint.Key.dataset].flatMap(DatasetName.init(rawValue:))
                ?? .mnist
            let store = DataStore(dataset: name, directory: dataDir.map { URL(fileURLWithPath: $0) })
            var test = try store.load(log: { printError($0) }).test
            if let count { test = test.prefix(count) }
            let results = try Certification.run(
                checkpoint.model, images: test.allImages, labels: test.labels, epsilons: try epsilons(),
                method: method, pgd: !noPgd)
            if json {
                print(results.count == 1 ? jsonText(results[0]) : jsonText(results))
                return
            }
            let clean = percent(results[0].cleanAccuracy)
            print("\(source.model): clean accuracy \(clean) on \(test.labels.count) images")
            for result in results {
                let time = String(format: "%.1f s", result.seconds)
                let verified = percent(result.verifiedAccuracy)
                let pgd =
                    result.pgdAccuracy.map {
                        ", PGD accuracy \(percent($0)) (" + String(format: "%.1f s", result.pgdSeconds ?? 0) + ")"
                    } ?? ""
                print("ε = \(result.epsilon): verified accuracy \(verified) (\(result.method.rawValue), \(time))\(pgd)")
            }
        }
    }
}
