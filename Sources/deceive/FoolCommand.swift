import Adversarial
import ArgumentParser
import Experiments
import Foundation
import NeuralNet
import Visuals

/// `deceive fool`.
struct FoolCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fool",
        abstract: "Turn gibberish into an image the model calls a chosen digit with high confidence.",
        discussion: """
            With the model's weights frozen, the image itself is optimised until the model gives the target \
            at least --confidence. The result is saved as PNG, read back and classified again: the confidence \
            reported is the one a user gets from the file.
            """)

    @OptionGroup var source: ModelOptions

    @Option(help: "The digit to fool the model into seeing (0–9).")
    var target: Int?

    @Flag(help: "Craft all ten digits, as one batch.")
    var all = false

    @Option(help: "The probability of the target to reach, in (0, 1).")
    var confidence: Float = 0.99

    @Option(help: "Start image: noise, zeros, gaussian, or a PNG file.")
    var start: String = "noise"

    @Option(help: ArgumentHelp("Keep every pixel within EPS (L∞) of the start.", valueName: "eps"))
    var within: Float?

    @Option(help: "Optimiser: adam, sign (signed gradient), or evolve (black-box, probabilities only).")
    var method: Fooling.Method = .adam

    @Option(help: "Loss: ce (cross-entropy) or margin (logit margin).")
    var loss: Objective = .crossEntropy

    @Option(help: "Step budget per attempt.")
    var maxSteps: Int?

    @Option(help: "Attempts per digit; later attempts start at a random point within --within.")
    var restarts: Int = 1

    @Option(help: "Step size (Adam's learning rate, the sign step, or the evolution step); defaults by method.")
    var stepSize: Float?

    @Option(help: ArgumentHelp(
        "Class visualisation instead of gibberish: penalties 'l2', 'tv' or 'l2,tv', with optional weights (default 'l2=0.01,tv=0.1').",
        valueName: "penalties"))
    var regularize: String?

    @Option(help: "Seed for the start noise, restarts and black-box samples.")
    var seed: UInt64 = 1

    @Option(help: "Directory for the PNGs, grid, trajectory and tensors.")
    var output: String = "out/fool"

    @Flag(help: "With --within: prove which digits no image in the ε-box can reach (reached, proved unreachable or unknown).")
    var certify = false

    @Flag(help: "Print a JSON summary instead of text.")
    var json = false

    func validate() throws {
        if all && target != nil { throw ValidationError("give --target or --all, not both") }
        if !all && target == nil { throw ValidationError("say which digit to fool the model into: --target D, or --all") }
        if let target, !(0...9).contains(target) { throw ValidationError("--target must be a digit 0–9, got \(target)") }
        guard confidence.isFinite, confidence > 0, confidence < 1 else {
            throw ValidationError("--confidence must be between 0 and 1 (exclusive), got \(confidence)")
        }
        if let within, !(within.isFinite && within >= 0 && within <= 1) {
            throw ValidationError("--within must be between 0 and 1, got \(within)")
        }
        if certify && within == nil {
            throw ValidationError("--certify proves what the ε-box around the start can reach: give --within EPS")
        }
        if let maxSteps, maxSteps < 1 { throw ValidationError("--max-steps must be at least 1, got \(maxSteps)") }
        guard restarts >= 1 else { throw ValidationError("--restarts must be at least 1, got \(restarts)") }
        if let stepSize, !(stepSize.isFinite && stepSize > 0) {
            throw ValidationError("--step-size must be a positive number, got \(stepSize)")
        }
        _ = try regularization()
        if regularize != nil && method == .evolve {
            throw ValidationError("--regularize needs a gradient method (--method adam or sign)")
        }
    }

    /// `--regularize`, parsed.
    func regularization() throws -> Fooling.Regularization? {
        do throws(ExperimentError) {
            return try regularize.map { text throws(ExperimentError) in
                try Fooling.Regularization(parsing: text)
            }
        } catch {
            throw ValidationError("--regularize: \(error.description)")
        }
    }

    /// The optimisation the options describe.
    func fooling() throws -> Fooling {
        let regularization = try regularization()
        do throws(AdversarialError) {
            return try Fooling(
                method: method, objective: loss, confidence: confidence, epsilon: within,
                maxSteps: maxSteps
                    ?? FoolingExperiment.defaultMaxSteps(method: method, regularization: regularization),
                restarts: restarts, stepSize: stepSize, regularization: regularization, seed: seed)
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        try runReportingErrors { try fool() }
    }

    private func fool() throws {
        let checkpoint = try source.load()
        let startKind: FoolingStart
        switch start {
        case "noise": startKind = .noise
        case "zeros": startKind = .zeros
        case "gaussian": startKind = .gaussian
        default: startKind = .image(try readImageForModel(start))
        }
        let experiment = try FoolingExperiment(
            targets: all ? Array(0..<10) : [target ?? 0], start: startKind, fooling: fooling())
        let outputURL = URL(fileURLWithPath: output)
        try prepareOutputDirectory(outputURL)
        var bar = ProgressBar()
        var latest = [Float](repeating: 0, count: experiment.targets.count)
        let observer: StepObserver = { step in
            for (item, p) in zip(step.items, step.probabilities) { latest[item] = p }
            let shown = latest.map { String(format: "%.2f", $0) }.joined(separator: " ")
            let label = "attempt \(step.attempt + 1) step"
            bar.draw(label, done: step.step, of: step.steps, detail: "p(target) \(shown)")
            return .proceed
        }
        let outcome: FoolingOutcome
        do {
            outcome = try experiment.run(model: checkpoint.model, observer: observer, certify: certify)
        } catch {
            // The model or the start image does not fit: the work failed, as for predict.
            throw Failure("\(source.model): \(error.description)")
        }
        bar.clear()
        let summary = try outcome.write(
            to: outputURL, model: source.model, start: start, command: commandLine)
        if json {
            print(jsonText(summary))
            return
        }
        let targets = outcome.targets
        let reached = targets.filter(\.success).count
        print(
            "fooled \(reached)/\(targets.count) digits to ≥ \(confidence) (after the PNG round trip) in "
                + String(format: "%.2f s", outcome.seconds))
        print("digit  confidence  after PNG  predicted  steps  queries    L∞      L2" + (certify ? "  certificate" : ""))
        for s in targets {
            let certificate = s.certificate.map { status in
                "  " + status.rawValue + (s.probabilityBound.map { String(format: " (p ≤ %.4f)", $0) } ?? "")
            }
            print(
                String(
                    format: "%5d  %10.4f  %9.4f  %9d  %5d  %7d  %.3f  %6.2f", s.target, s.confidence, s.confidenceAfterPNG,
                    s.predictedAfterPNG, s.steps, s.queries, s.linfDistance, s.l2Distance) + (certificate ?? ""))
        }
        if certify {
            print(
                "certificate: \(reached) reached, \(outcome.count(.provedUnreachable)) proved unreachable (no image "
                    + "within \(within ?? 0) of the start reaches \(confidence)), \(outcome.count(.unknown)) unknown")
        }
        print("wrote \(output)/grid.png, the digit PNGs, trajectory.json, summary.json and fooling.safetensors")
        if reached < targets.count && !targets.allSatisfy({ $0.success || $0.certificate == .provedUnreachable }) {
            print(
                "\(targets.count - reached) digit(s) fell short: "
                    + "try more --max-steps, --restarts, or a larger --within")
        }
    }
}

extension Fooling.Method: ExpressibleByArgument {}
extension Objective: ExpressibleByArgument {}
