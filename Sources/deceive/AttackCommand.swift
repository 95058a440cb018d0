import Adversarial
import ArgumentParser
import Experiments
import Datasets
import Foundation
import NeuralNet
import Visuals

/// Options shared by `deceive attack` and `deceive evaluate --attack`.
struct AttackOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Budget ε (fixed-budget attacks), in the attack's norm.", valueName: "eps"))
    var eps: String?

    @Option(help: "Iterations (for square: the query budget).")
    var steps: Int?

    @Option(help: "Step size.")
    var stepSize: Float?

    @Option(help: "Restarts (PGD, APGD).")
    var restarts: Int?

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
        guard let eps else { return nil }
        let values = eps.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ $0.map { $0.isFinite && $0 >= 0 } ?? false }) else {
            throw ValidationError("--eps must be a number ≥ 0 or a comma-separated list of them, got '\(eps)'")
        }
        return values.compactMap { $0 }
    }

    func goal() throws -> AttackGoal {
        var mode = TargetMode.untargeted
        if targeted {
            switch target ?? "random" {
            case "random": mode = .random
            case "least-likely", "leastlikely", "ll": mode = .leastLikely
            case let text:
                guard let digit = Int(text), (0...9).contains(digit) else {
                    throw ValidationError("--target must be a digit 0–9, random or least-likely, got '\(text)'")
                }
                mode = .fixed(digit)
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

    func attack(_ method: AttackMethod, epsilon: Float?) throws -> any Attack {
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if let restarts, restarts < 1 { throw ValidationError("--restarts must be at least 1, got \(restarts)") }
        if let stepSize, !(stepSize.isFinite && stepSize > 0) {
            throw ValidationError("--step-size must be a positive number, got \(stepSize)")
        }
        do {
            return try method.make(AttackParameters(epsilon: epsilon, steps: steps, stepSize: stepSize, restarts: restarts))
        } catch {
            throw ValidationError("--method \(method.rawValue): \(error.description)")
        }
    }

    func validateShared() throws {
        _ = try epsilons()
        _ = try goal()
    }
}

extension AttackMethod: ExpressibleByArgument {}

/// `deceive attack`.
struct AttackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attack", abstract: "Attack real test digits and measure the result honestly.",
        discussion: """
            Runs on the first --count test images, correct and incorrect ones, in batches. Reports clean and robust \
            accuracy, the success rate among originally correct images, the norms of successful perturbations, \
            iterations or queries, and time.
            """)

    @OptionGroup var source: ModelOptions

    @Option(help: "fgsm, bim, pgd, pgd-l2, mifgsm, apgd-ce, apgd-dlr, cw, deepfool, jsma or square.")
    var method: AttackMethod

    @OptionGroup var options: AttackOptions

    @Option(help: "How many test images to attack (the first N).")
    var count: Int = 1000

    @OptionGroup var data: DataOptions

    @Option(help: "Directory for adversarial.safetensors and the PNG gallery.")
    var output: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        try options.validateShared()
        guard count >= 1 else { throw ValidationError("--count must be at least 1, got \(count)") }
        if let epsilons = try options.epsilons(), epsilons.count > 1 {
            throw ValidationError("attack takes one --eps; for a curve use evaluate --attack \(method.rawValue) --eps \(options.eps ?? "")")
        }
        _ = try options.attack(method, epsilon: try options.epsilons()?.first)
    }

    func run() throws {
        try runReportingErrors { try attackTestImages() }
    }

    private func attackTestImages() throws {
        let checkpoint = try source.load()
        let network = checkpoint.model
        let attack = try options.attack(method, epsilon: try options.epsilons()?.first)
        let goal = try options.goal()
        let test = try data.store.load(log: { printError($0) }).test.prefix(count)
        if let output { try prepareOutputDirectory(URL(fileURLWithPath: output)) }
        let images = test.allImages
        let cleanPredictions = network.predictions(images, batchSize: 1000)
        var bar = ProgressBar()
        let clock = ContinuousClock()
        let began = clock.now
        let result = try runInBatches(
            attack, model: network, images: images, labels: test.labels, goal: goal, seed: options.seed,
            progress: { bar.draw(method.rawValue, done: $0, of: test.count, detail: "images") })
        let seconds = (clock.now - began).seconds
        bar.clear()
        let report = AttackReport(
            attack: method.rawValue, originals: images, labels: test.labels, cleanPredictions: cleanPredictions,
            result: result, seconds: seconds)
        if let output {
            try writeAttackOutput(
                URL(fileURLWithPath: output), originals: images, labels: test.labels, result: result,
                cleanProbabilities: network.probabilities(images))
        }
        if json {
            print(jsonText(report))
            return
        }
        printAttackReport(report, epsilon: (attack as? any FixedEpsilonAttack)?.epsilon)
        if let output { print("wrote \(output)/adversarial.safetensors and \(output)/gallery.png") }
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

/// `adversarial.safetensors` and a gallery of the first 10 images: originals, amplified
/// perturbations, adversarials, each with its label and confidence.
func writeAttackOutput(
    _ directory: URL, originals: Tensor, labels: [Int], result: AttackResult, cleanProbabilities: Tensor
) throws {
    let probabilities = result.probabilities
    let predictions = result.predictions
    let file = Safetensors(
        tensors: [
            "original": originals, "adversarial": result.adversarial,
            "labels": Tensor(shape: [labels.count], scalars: labels.map(Float.init)),
            "predictions": Tensor(shape: [labels.count], scalars: predictions.map(Float.init)),
            "success": Tensor(shape: [labels.count], scalars: result.success.map { $0 ? 1 : 0 }),
        ],
        metadata: ["command": commandLine])
    do {
        try file.write(to: directory.appendingPathComponent("adversarial.safetensors"))
    } catch {
        throw Failure(error.description)
    }
    let shown = Array(0..<min(10, labels.count))
    let classes = probabilities.shape[1]
    let cleanPredictions = argmax(rows: cleanProbabilities)
    let originalCells = shown.map { row in
        ImageGrid.Cell(
            GreyImage(originals.batch(row..<row + 1)),
            caption: "\(cleanPredictions[row]) " + String(format: "%.0f%%", 100 * cleanProbabilities.scalars[row * classes + cleanPredictions[row]]))
    }
    let perturbationCells = shown.map { row in
        ImageGrid.Cell(RGBImage(perturbation: result.adversarial.batch(row..<row + 1) - originals.batch(row..<row + 1)))
    }
    let adversarialCells = shown.map { row in
        ImageGrid.Cell(
            GreyImage(result.adversarial.batch(row..<row + 1)),
            caption: "\(predictions[row]) " + String(format: "%.0f%%", 100 * probabilities.scalars[row * classes + predictions[row]]))
    }
    let grid = ImageGrid(rows: [
        ImageGrid.Row(title: "original", cells: originalCells),
        ImageGrid.Row(title: "perturbation", cells: perturbationCells),
        ImageGrid.Row(title: "adversarial", cells: adversarialCells),
    ])
    do {
        try grid.render().writePNG(to: directory.appendingPathComponent("gallery.png"))
    } catch {
        throw Failure(error.description)
    }
}
