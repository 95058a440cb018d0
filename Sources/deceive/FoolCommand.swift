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
        if let maxSteps, maxSteps < 1 { throw ValidationError("--max-steps must be at least 1, got \(maxSteps)") }
        guard restarts >= 1 else { throw ValidationError("--restarts must be at least 1, got \(restarts)") }
        if let stepSize, !(stepSize.isFinite && stepSize > 0) {
            throw ValidationError("--step-size must be a positive number, got \(stepSize)")
        }
        if let regularize { _ = try parseRegularization(regularize) }
        if regularize != nil && method == .evolve {
            throw ValidationError("--regularize needs a gradient method (--method adam or sign)")
        }
    }

    /// Parses `l2`, `tv`, `l2,tv`, `l2=0.05,tv=0.3`.
    func parseRegularization(_ text: String) throws -> Fooling.Regularization {
        var result = Fooling.Regularization(l2: 0, totalVariation: 0)
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
            let weight: Float?
            if pieces.count == 2 { weight = Float(pieces[1]) } else { weight = nil }
            if pieces.count == 2, !(weight.map { $0.isFinite && $0 >= 0 } ?? false) {
                throw ValidationError("--regularize: weight '\(pieces[1])' must be a number ≥ 0")
            }
            switch pieces[0] {
            case "l2": result.l2 = weight ?? 0.01
            case "tv": result.totalVariation = weight ?? 0.1
            default: throw ValidationError("--regularize: unknown penalty '\(pieces[0])' (use l2, tv or l2,tv)")
            }
        }
        return result
    }

    func run() throws {
        try runReportingErrors { try fool() }
    }

    struct TargetSummary: Encodable {
        let target: Int
        let success: Bool
        let steps: Int
        let queries: Int
        let confidence: Float
        let confidenceAfterPNG: Float
        let predictedAfterPNG: Int
        let linfDistance: Float
        let l2Distance: Float
        let seconds: Double
        let image: String
        let start: String
    }

    struct Summary: Encodable {
        let model: String
        let method: String
        let loss: String
        let start: String
        let within: Float?
        let requestedConfidence: Float
        let output: String
        let seconds: Double
        let targets: [TargetSummary]
    }

    private func fool() throws {
        let checkpoint = try source.load()
        let network = checkpoint.model
        guard network.architecture.inputShape == [1, 28, 28] else {
            throw Failure("\(source.model): fooling needs a model of 1×28×28 grey images")
        }
        let targets = all ? Array(0..<10) : [target ?? 0]
        let startKind: FoolingStart
        switch start {
        case "noise": startKind = .noise
        case "zeros": startKind = .zeros
        case "gaussian": startKind = .gaussian
        default: startKind = .image(try readImageForModel(start))
        }
        let regularization = try regularize.map(parseRegularization)
        let fooling: Fooling
        do {
            fooling = try Fooling(
                method: method, objective: loss, confidence: confidence, epsilon: within,
                maxSteps: maxSteps ?? (regularization != nil ? 300 : (method == .evolve ? 400 : 1000)), restarts: restarts,
                stepSize: stepSize, regularization: regularization, seed: seed)
        } catch {
            throw ValidationError(error.description)
        }
        let outputURL = URL(fileURLWithPath: output)
        try prepareOutputDirectory(outputURL)
        let starts = startKind.images(for: targets, shape: [1, 28, 28], seed: seed)
        var bar = ProgressBar()
        let clock = ContinuousClock()
        let began = clock.now
        var latest = [Float](repeating: 0, count: targets.count)
        let result = try fooling.run(model: network, starts: starts, targets: targets) { step in
            for (item, p) in zip(step.items, step.probabilities) { latest[item] = p }
            let shown = latest.map { String(format: "%.2f", $0) }.joined(separator: " ")
            bar.draw("attempt \(step.attempt + 1) step", done: step.step, of: step.steps, detail: "p(target) \(shown)")
            return .proceed
        }
        bar.clear()
        let seconds = (clock.now - began).seconds

        // Write, read back, classify again: the honest confidence.
        var files: [(image: String, start: String)] = []
        for (row, digit) in targets.enumerated() {
            let image = outputURL.appendingPathComponent("\(digit).png")
            let startFile = outputURL.appendingPathComponent("start-\(digit).png")
            try writeGreyPNG(result.images.batch(row..<row + 1), to: image)
            try writeGreyPNG(result.starts.batch(row..<row + 1), to: startFile)
            files.append((image.path, startFile.path))
        }
        let reread = Tensor.concatenate(try files.map { try readImageForModel($0.image) })
        let rereadProbabilities = network.probabilities(reread)
        let classes = network.classCount
        var summaries: [TargetSummary] = []
        for (row, digit) in targets.enumerated() {
            let difference = (result.images.batch(row..<row + 1) - result.starts.batch(row..<row + 1)).scalars
            let after = Array(rereadProbabilities.scalars[row * classes..<(row + 1) * classes])
            summaries.append(
                TargetSummary(
                    target: digit, success: after[digit] >= confidence, steps: result.steps[row], queries: result.queries[row],
                    confidence: result.targetProbabilities[row], confidenceAfterPNG: after[digit],
                    predictedAfterPNG: after.indices.max { after[$0] < after[$1] } ?? 0,
                    linfDistance: difference.map(abs).max() ?? 0,
                    l2Distance: difference.reduce(0) { $0 + $1 * $1 }.squareRoot(), seconds: seconds / Double(targets.count),
                    image: files[row].image, start: files[row].start))
        }
        let labels = summaries.map { "\($0.target): " + String(format: "%.1f%%", 100 * $0.confidenceAfterPNG) }
        try writeGrid(
            rows: [result.starts, result.images], captions: [targets.map { "start \($0)" }, labels],
            to: outputURL.appendingPathComponent("grid.png"))
        let trajectories = Dictionary(uniqueKeysWithValues: zip(targets.map(String.init), result.trajectories))
        try writeText(jsonText(trajectories), to: outputURL.appendingPathComponent("trajectory.json"))
        let tensors = Safetensors(
            tensors: [
                "start": result.starts, "images": result.images,
                "targets": Tensor(shape: [targets.count], scalars: targets.map(Float.init)),
                "probabilities": rereadProbabilities,
            ],
            metadata: ["model": source.model, "command": commandLine])
        do {
            try tensors.write(to: outputURL.appendingPathComponent("fooling.safetensors"))
        } catch {
            throw Failure(error.description)
        }
        let summary = Summary(
            model: source.model, method: method.rawValue, loss: loss.rawValue, start: start, within: within,
            requestedConfidence: confidence, output: output, seconds: seconds, targets: summaries)
        try writeText(jsonText(summary), to: outputURL.appendingPathComponent("summary.json"))
        if json {
            print(jsonText(summary))
            return
        }
        let reached = summaries.filter(\.success).count
        print("fooled \(reached)/\(summaries.count) digits to ≥ \(confidence) (after the PNG round trip) in \(String(format: "%.2f s", seconds))")
        print("digit  confidence  after PNG  predicted  steps  queries    L∞      L2")
        for s in summaries {
            print(
                String(
                    format: "%5d  %10.4f  %9.4f  %9d  %5d  %7d  %.3f  %6.2f", s.target, s.confidence, s.confidenceAfterPNG,
                    s.predictedAfterPNG, s.steps, s.queries, s.linfDistance, s.l2Distance))
        }
        print("wrote \(output)/grid.png, the digit PNGs, trajectory.json, summary.json and fooling.safetensors")
        if reached < summaries.count {
            print("\(summaries.count - reached) digit(s) fell short: try more --max-steps, --restarts, or a larger --within")
        }
    }
}

extension Fooling.Method: ExpressibleByArgument {}
extension Objective: ExpressibleByArgument {}
