import Adversarial
import ArgumentParser
import Datasets
import Experiments
import Foundation
import NeuralNet

/// `deceive evaluate`.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Measure a model: test accuracy, or robust accuracy under an attack or the full ensemble.",
        discussion: """
            Plain: accuracy, per-class accuracy and the confusion matrix.
            --attack METHOD --eps 0,0.05,0.1: robust accuracy for each ε (the accuracy-vs-ε curve).
            --robust [--eps 0.3]: APGD-CE, targeted APGD-DLR, PGD with restarts and Square; an image counts \
            only if it survives all of them; gradient-masking checks are printed with the result.
            """)

    @OptionGroup var source: ModelOptions

    @Option(help: "Dataset: mnist or fashion-mnist (default: the checkpoint's).")
    var dataset: DatasetName?

    @Option(help: ArgumentHelp("Directory holding the dataset's IDX files.", valueName: "dir"))
    var dataDir: String?

    @Option(help: "Evaluate on the first N test images (default: all 10,000).")
    var count: Int?

    @Option(help: "Measure robust accuracy under this attack (with --eps, one value or a list).")
    var attack: AttackMethod?

    @Flag(help: "Robust accuracy under the full attack ensemble (AutoAttack-style) at --eps (default 0.3).")
    var robust = false

    @OptionGroup var attackOptions: AttackOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1, got \(count)") }
        if robust && attack != nil { throw ValidationError("give --attack or --robust, not both") }
        try attackOptions.validateShared()
        if let attack {
            for epsilon in try attackOptions.epsilons().map({ $0.map(Optional.some) }) ?? [nil] {
                _ = try attackOptions.settings(attack, epsilon: epsilon)
            }
        }
        if robust, let epsilons = try attackOptions.epsilons() {
            guard epsilons.count == 1, epsilons[0] > 0, epsilons[0] <= 1 else {
                throw ValidationError("--robust takes one --eps in (0, 1]")
            }
        }
    }

    func run() throws {
        try runReportingErrors {
            let checkpoint = try source.load()
            let name =
                dataset ?? checkpoint.metadata[Checkpoint.Key.dataset].flatMap(DatasetName.init(rawValue:)) ?? .mnist
            let store = DataStore(dataset: name, directory: dataDir.map { URL(fileURLWithPath: $0) })
            var test = try store.load(log: { printError($0) }).test
            if let count { test = test.prefix(count) }
            guard checkpoint.model.classCount == 10 else {
                throw Failure("\(source.model): the model scores \(checkpoint.model.classCount) classes, the dataset has 10")
            }
            if let attack {
                try curve(checkpoint.model, attack, images: test.allImages, labels: test.labels)
            } else if robust {
                try ensemble(checkpoint.model, images: test.allImages, labels: test.labels)
            } else {
                accuracy(checkpoint.model, test: test, name: name)
            }
        }
    }

    private func curve(_ network: Model, _ method: AttackMethod, images: Tensor, labels: [Int]) throws {
        var bar = ProgressBar()
        let points = try robustnessCurve(
            model: network, settings: attackOptions.settings(method, epsilon: nil),
            epsilons: attackOptions.epsilons(), images: images, labels: labels,
            progress: { epsilon, done in
                let label = "\(method.rawValue)" + (epsilon.map { " ε \($0)" } ?? "")
                bar.draw(label, done: done, of: labels.count, detail: "images")
                if done == labels.count { bar.clear() }
            })
        if json {
            print(jsonText(points))
            return
        }
        print("\(source.model) under \(method.rawValue) on \(labels.count) test images")
        print("     ε   robust accuracy   success rate   seconds")
        for point in points {
            print(
                (point.epsilon.map { String(format: "%6.3f", $0) } ?? "     –") + "   "
                    + percent(point.report.robustAccuracy).padding(toLength: 15, withPad: " ", startingAt: 0) + "   "
                    + percent(point.report.successRate).padding(toLength: 12, withPad: " ", startingAt: 0)
                    + String(format: "   %7.2f", point.report.seconds))
        }
    }

    private func ensemble(_ network: Model, images: Tensor, labels: [Int]) throws {
        let epsilon = try attackOptions.epsilons()?.first ?? 0.3
        let evaluation: RobustnessEvaluation
        do {
            evaluation = try RobustnessEvaluation(epsilon: epsilon, seed: attackOptions.seed)
        } catch {
            throw ValidationError(error.description)
        }
        let report = try evaluation.run(model: network, images: images, labels: labels, progress: { printError("evaluate: \($0)") })
        if json {
            print(jsonText(report))
            return
        }
        print("\(source.model): robust accuracy at ε = \(epsilon) (L∞) on \(report.images) test images")
        print("  clean accuracy            \(percent(report.cleanAccuracy))")
        for member in report.members {
            print("  \(member.name.padding(toLength: 24, withPad: " ", startingAt: 0))  \(percent(member.robustAccuracy))"
                + String(format: "   (%d images, %.1f s)", member.attacked, member.seconds))
        }
        print("  robust (all attacks)      \(percent(report.robustAccuracy))")
        for check in report.checks {
            if check.passed {
                print("  check passed: \(check.name): \(check.detail)")
            } else {
                let warning = "WARNING: gradient-masking check failed: \(check.name): \(check.detail)"
                print("  " + warning)
                printError("deceive: " + warning)
            }
        }
    }

    private func accuracy(_ network: Model, test: LabeledImages, name: DatasetName) {
        let report = AccuracyEvaluation(
            model: network, images: test.allImages, labels: test.labels, modelName: source.model,
            dataset: name.rawValue)
        if json {
            print(jsonText(report))
            return
        }
        let matrix = report.confusionMatrix
        print(
            "\(source.model) on \(test.count) \(name.rawValue) test images: "
                + "accuracy \(percent(report.accuracy)) (\(matrix.correct)/\(test.count))")
        print(String(format: "%.2f s, %.0f images/s", report.seconds, report.imagesPerSecond))
        print("\nper class:")
        for digit in 0..<10 {
            let label = name.classNames[digit].padding(toLength: 11, withPad: " ", startingAt: 0)
            print("  \(label) \(percent(report.perClassAccuracy[digit]))")
        }
        print("\nconfusion matrix (rows: true class, columns: predicted):")
        print("      " + (0..<10).map { String(format: "%6d", $0) }.joined())
        for truth in 0..<10 {
            let counts = matrix.counts[truth].map { String(format: "%6d", $0) }
            print(String(format: "%6d", truth) + counts.joined())
        }
    }
}
