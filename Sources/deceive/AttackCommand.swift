import Adversarial
import ArgumentParser
import Datasets
import Experiments
import Foundation
import NeuralNet

/// Options shared by `deceive attack` and `deceive evaluate --attack`.
struct AttackOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Budget ε (fixed-budget attacks), in the attack's norm.", valueName: "eps"))
    var eps: String?

    @Option(help: "Iterations (square: the query budget; universal: passes over the training digits).")
    var steps: Int?

    @Option(help: "Step size.")
    var stepSize: Float?

    @Option(help: "Restarts (PGD, APGD; universal: attempts, the best kept).")
    var restarts: Int?

    @Option(help: "Queries per image, everything included (hopskipjump, boundary; default 10000).")
    var maxQueries: Int?

    @Flag(help: "Targeted attack; the target is given by --target.")
    var targeted = false

    @Option(help: "Target for --targeted: a digit, random, or least-likely.")
    var target: String?

    @Option(help: ArgumentHelp(
        "Success criterion: the target's (or any wrong class's) probability ≥ P, instead of misclassification.",
        valueName: "p"))
    var confidence: Float?

    @Option(help: "Seed for random starts, random targets and black-box samples.")
    var seed: UInt64 = 1

    /// The ε values of a comma-separated list (one value for `attack`).
    func epsilons() throws -> [Float]? {
        do throws(ExperimentError) {
            return try eps.map { text throws(ExperimentError) in try parseEpsilons(text) }
        } catch {
            throw ValidationError("--eps: \(error.description)")
        }
    }

    func goal() throws -> AttackGoal {
        var mode = TargetMode.untargeted
        if targeted {
            do throws(ExperimentError) {
                mode = try TargetMode(parsing: target ?? "random")
            } catch {
                throw ValidationError("--target: \(error.description)")
            }
        } else if target != nil {
            throw ValidationError("--target needs --targeted")
        }
        do {
            return try AttackGoal(mode: mode, criterion: confidence.map { .confidence($0) } ?? .misclassification)
        } catch {
            throw ValidationError("--confidence: \(error.description)")
        }
    }

    /// The attack the options describe, at `epsilon`, checked.
    func settings(_ method: AttackMethod, epsilon: Float?) throws -> AttackSettings {
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if let restarts, restarts < 1 { throw ValidationError("--restarts must be at least 1, got \(restarts)") }
        if let maxQueries, maxQueries < 1 {
            throw ValidationError("--max-queries must be at least 1, got \(maxQueries)")
        }
        if let stepSize, !(stepSize.isFinite && stepSize > 0) {
            throw ValidationError("--step-size must be a positive number, got \(stepSize)")
        }
        let settings = AttackSettings(
            method: method,
            parameters: AttackParameters(
                epsilon: epsilon, steps: steps, stepSize: stepSize, restarts: restarts, maxQueries: maxQueries),
            goal: try goal(), seed: seed)
        do throws(ExperimentError) {
            _ = try settings.attack()
        } catch {
            throw ValidationError("--method \(method.rawValue): \(error.description)")
        }
        return settings
    }

    func validateShared() throws {
        _ = try epsilons()
        _ = try goal()
    }
}

extension AttackMethod: ExpressibleByArgument {}
extension UniversalPerturbation.Update: ExpressibleByArgument {}

/// What `deceive attack --method` names: an attack of the registry, or a universal
/// perturbation (learned on training digits, so not a registry attack).
enum AttackChoice: ExpressibleByArgument, Equatable {
    case attack(AttackMethod)
    case universal(Norm)

    init?(argument: String) {
        switch argument {
        case "universal": self = .universal(.linf)
        case "universal-l2": self = .universal(.l2)
        default:
            guard let method = AttackMethod(rawValue: argument) else { return nil }
            self = .attack(method)
        }
    }

    static var allValueStrings: [String] { AttackMethod.allCases.map(\.rawValue) + ["universal", "universal-l2"] }

    var name: String {
        switch self {
        case .attack(let method): return method.rawValue
        case .universal(let norm): return norm == .linf ? "universal" : "universal-l2"
        }
    }
}

/// `deceive attack`.
struct AttackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attack", abstract: "Attack real test digits and measure the result honestly.",
        discussion: """
            Runs on the first --count test images, correct and incorrect ones, in batches. Reports clean and robust \
            accuracy, the success rate among originally correct images, the norms of successful perturbations, \
            iterations or queries, and time. hopskipjump, hopskipjump-linf and boundary read only the predicted \
            label, within --max-queries per image. universal and universal-l2 learn one perturbation on the first \
            --train-count training digits and add it to the test digits, reporting the fooling rate.
            """)

    @OptionGroup var source: ModelOptions

    @Option(help: "The attack.")
    var method: AttackChoice

    @OptionGroup var options: AttackOptions

    @Option(help: "How many test images to attack (the first N).")
    var count: Int = 1000

    @Option(help: "universal: learn on the first N training digits (default 10000).")
    var trainCount: Int?

    @Option(help: "universal: sgd (signed gradient ascent, default) or deepfool (the original algorithm).")
    var universalUpdate: UniversalPerturbation.Update?

    @OptionGroup var data: DataOptions

    @Option(help: "Directory for adversarial.safetensors and the PNG gallery.")
    var output: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        try options.validateShared()
        guard count >= 1 else { throw ValidationError("--count must be at least 1, got \(count)") }
        if let epsilons = try options.epsilons(), epsilons.count > 1 {
            throw ValidationError(
                "attack takes one --eps; for a curve use evaluate --attack \(method.name) --eps \(options.eps ?? "")")
        }
        switch method {
        case .attack(let attack):
            if trainCount != nil || universalUpdate != nil {
                throw ValidationError("--train-count and --universal-update are for --method universal and universal-l2")
            }
            _ = try options.settings(attack, epsilon: try options.epsilons()?.first)
        case .universal(let norm):
            _ = try universal(norm)
        }
    }

    /// The universal perturbation the options describe, checked.
    func universal(_ norm: Norm) throws -> UniversalPerturbation {
        let name = method.name
        if options.targeted || options.confidence != nil {
            throw ValidationError("--method \(name) is untargeted: it learns to change the predicted class")
        }
        if options.maxQueries != nil {
            throw ValidationError("--method \(name) takes no --max-queries: it learns from gradients")
        }
        if let trainCount, trainCount < 1 {
            throw ValidationError("--train-count must be at least 1, got \(trainCount)")
        }
        if let steps = options.steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        let epsilon = try options.epsilons()?.first
        do throws(AdversarialError) {
            return try UniversalPerturbation(
                norm: norm, epsilon: epsilon,
                epochs: options.steps ?? 5, stepSize: options.stepSize, restarts: options.restarts ?? 3,
                update: universalUpdate ?? .sgd)
        } catch {
            throw ValidationError("--method \(name): \(error.description)")
        }
    }

    func run() throws {
        try runReportingErrors {
            switch method {
            case .attack(let attack): try attackTestImages(attack)
            case .universal(let norm): try universalPerturbation(norm)
            }
        }
    }

    private func attackTestImages(_ method: AttackMethod) throws {
        let checkpoint = try source.load()
        let settings = try options.settings(method, epsilon: try options.epsilons()?.first)
        let test = try data.store.load(log: { printError($0) }).test.prefix(count)
        if let output { try prepareOutputDirectory(URL(fileURLWithPath: output)) }
        var bar = ProgressBar()
        let run = try AttackRun.run(
            settings, model: checkpoint.model, images: test.allImages, labels: test.labels,
            progress: { bar.draw(method.rawValue, done: $0, of: test.count, detail: "images") })
        bar.clear()
        try deliver(
            write: { try run.write(to: $0, model: checkpoint.model, command: commandLine) },
            json: { jsonText(run.report) }, files: ["adversarial.safetensors", "gallery.png"]
        ) {
            printAttackReport(run.report, epsilon: run.epsilon)
        }
    }

    /// Writes the outputs into --output when it is given, then prints the JSON or the text
    /// and the files written.
    private func deliver(
        write: (URL) throws -> Void, json text: () -> String, files: [String], print report: () -> Void
    ) throws {
        if let output { try write(URL(fileURLWithPath: output)) }
        if json {
            print(text())
            return
        }
        report()
        if let output {
            let paths = files.map { "\(output)/\($0)" }
            print("wrote " + paths.dropLast().joined(separator: ", ") + " and " + paths.last!)
        }
    }

    private func universalPerturbation(_ norm: Norm) throws {
        let checkpoint = try source.load()
        let universal = try universal(norm)
        let dataset = try data.store.load(log: { printError($0) })
        let training = dataset.train.prefix(trainCount ?? 10_000)
        let test = dataset.test.prefix(count)
        if let output { try prepareOutputDirectory(URL(fileURLWithPath: output)) }
        var bar = ProgressBar()
        let run = try UniversalRun.run(
            universal, model: checkpoint.model, training: (training.allImages, training.labels),
            images: test.allImages, labels: test.labels, seed: options.seed,
            observer: { step in
                bar.draw("learning", done: step.step, of: step.steps, detail: "steps")
                return .proceed
            })
        bar.clear()
        try deliver(
            write: { try run.write(to: $0, model: checkpoint.model, command: commandLine) },
            json: { jsonText(run.summary) }, files: ["adversarial.safetensors", "gallery.png", "perturbation.png"]
        ) {
            print(
                "\(method.name) perturbation (\(universal.update.rawValue)) learned on \(run.trainingImages) "
                    + String(format: "training images in %d steps, %.2f s", run.learning.steps, run.learningSeconds))
            print("  fooling rate on training images  \(percent(run.learning.trainingFoolingRate))")
            print("  fooling rate on test images      \(percent(run.foolingRate)) of correctly classified images")
            printAttackReport(run.attack.report, epsilon: run.attack.epsilon)
        }
    }
}

/// Prints an attack report as text.
func printAttackReport(_ report: AttackReport, epsilon: Float?) {
    let budget = epsilon.map { " at ε = \($0)" } ?? ""
    print("\(report.attack)\(budget) on \(report.images) test images")
    print("  clean accuracy   \(percent(report.cleanAccuracy))")
    print("  robust accuracy  \(percent(report.robustAccuracy))")
    print("  success rate     \(percent(report.successRate)) of correctly classified images"
        + " (plus \(report.successesOnMisclassified) of \(report.misclassified) already misclassified)")
    for (name, statistics) in [("L0", report.l0), ("L2", report.l2), ("L∞", report.linf)] {
        if let statistics {
            print("  \(name.padding(toLength: 3, withPad: " ", startingAt: 0)) of successes  mean " + String(format: "%.4f  median %.4f", statistics.mean, statistics.median))
        }
    }
    print(String(format: "  iterations %.1f, queries %.1f per image (mean)", report.meanIterations, report.meanQueries))
    print(String(format: "  %.2f s, %.0f images/s", report.seconds, report.imagesPerSecond))
}
