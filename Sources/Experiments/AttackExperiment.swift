import Adversarial
import Foundation
import NeuralNet
import Visuals

/// An attack as a user asks for it (`deceive attack`, `deceive evaluate --attack`, the
/// report, the server): a method with its parameters, the goal and the seed.
public struct AttackSettings: Sendable, Equatable {
    public var method: AttackMethod
    /// ε, steps, step size, restarts; nil for the method's defaults.
    public var parameters: AttackParameters
    public var goal: AttackGoal
    public var seed: UInt64

    /// Creates settings.
    public init(
        method: AttackMethod, parameters: AttackParameters = AttackParameters(),
        goal: AttackGoal = .untargeted,
        seed: UInt64 = 1
    ) {
        self.method = method
        self.parameters = parameters
        self.goal = goal
        self.seed = seed
    }

    /// The attack, its parameters checked (an invalid one is an
    /// ``ExperimentError/Kind/invalidInput`` saying which parameter does not apply), and
    /// for a decision-based attack also the goal (labels alone cannot aim for a confidence).
    public func attack() throws(ExperimentError) -> any Attack {
        do throws(AdversarialError) {
            let attack = try method.make(parameters)
            try (attack as? any DecisionBasedAttack)?.check(goal)
            return attack
        } catch {
            throw .invalid(error.description)
        }
    }

    /// The same settings at another ε.
    public func with(epsilon: Float?) -> AttackSettings {
        var copy = self
        copy.parameters.epsilon = epsilon
        return copy
    }
}

extension TargetMode {
    /// Parses a target as a user writes it: a class (`0`…`classes − 1`), `random`, or
    /// `least-likely` (also `leastlikely`, `ll`).
    public init(parsing text: String, classes: Int = 10) throws(ExperimentError) {
        switch text {
        case "random": self = .random
        case "least-likely", "leastlikely", "ll": self = .leastLikely
        default:
            guard let digit = Int(text), (0..<classes).contains(digit) else {
                throw .invalid(
                    "the target must be a digit 0–\(classes - 1), random or least-likely, got '\(text)'")
            }
            self = .fixed(digit)
        }
    }
}

/// Parses ε values: one number ≥ 0 or a comma-separated list of them (`0,0.05,0.1`).
public func parseEpsilons(_ text: String) throws(ExperimentError) -> [Float] {
    let values = text.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
    guard !values.isEmpty, values.allSatisfy({ $0.map { $0.isFinite && $0 >= 0 } ?? false }) else {
        throw .invalid("ε must be a number ≥ 0 or a comma-separated list of them, got '\(text)'")
    }
    return values.compactMap { $0 }
}

/// An attack run on a set of labelled images, with everything its outputs need: the
/// originals and their clean predictions, the result, and the honest report.
public struct AttackRun: Sendable {
    /// The attack's name, e.g. `pgd`.
    public let attack: String
    /// The budget of a fixed-budget attack, nil for a minimisation attack.
    public let epsilon: Float?
    /// The clean images [N, C, H, W] and their labels.
    public let originals: Tensor
    public let labels: [Int]
    /// The model's answers for the clean images.
    public let cleanPredictions: [Int]
    /// The adversarial images, success flags, counts and final probabilities.
    public let result: AttackResult
    /// Accuracies, success rate, norms, cost.
    public let report: AttackReport

    /// Attacks `images` in batches of `batchSize`.
    ///
    /// - Parameters:
    ///   - cleanPredictions: the model's answers for `images`, when the caller has them
    ///     already (an ε curve computes them once); otherwise computed here.
    ///   - progress: images done, after each batch.
    ///   - observer: every optimisation step (rows of the whole set), which may stop the
    ///     attack; a stopped run covers the batches begun, a prefix of `images`.
    public static func run(
        _ attack: any Attack, model: Model, images: Tensor, labels: [Int], goal: AttackGoal = .untargeted,
        seed: UInt64 = 1, cleanPredictions: [Int]? = nil, batchSize: Int = 500,
        progress: ((Int) -> Void)? = nil,
        observer: StepObserver? = nil
    ) throws(ExperimentError) -> AttackRun {
        let clean = cleanPredictions ?? model.predictions(images, batchSize: 1000)
        let clock = ContinuousClock()
        let began = clock.now
        let result: AttackResult
        do throws(AdversarialError) {
            result = try runInBatches(
                attack, model: model, images: images, labels: labels, goal: goal, seed: seed,
                batchSize: batchSize,
                progress: progress, observer: observer)
        } catch {
            throw .invalid(error.description)
        }
        let seconds = (clock.now - began).seconds
        // A stopped run covers a prefix of the set.
        let count = result.success.count
        let originals = count == labels.count ? images : images.batch(0..<count)
        let attacked = Array(labels.prefix(count))
        let predictions = Array(clean.prefix(count))
        let report = AttackReport(
            attack: attack.name, originals: originals, labels: attacked, cleanPredictions: predictions,
            result: result, seconds: seconds)
        return AttackRun(
            attack: attack.name, epsilon: (attack as? any FixedEpsilonAttack)?.epsilon, originals: originals,
            labels: attacked, cleanPredictions: predictions, result: result, report: report)
    }

    /// Runs `settings` on the images.
    public static func run(
        _ settings: AttackSettings, model: Model, images: Tensor, labels: [Int],
        cleanPredictions: [Int]? = nil,
        progress: ((Int) -> Void)? = nil, observer: StepObserver? = nil
    ) throws(ExperimentError) -> AttackRun {
        try run(
            try settings.attack(), model: model, images: images, labels: labels, goal: settings.goal,
            seed: settings.seed, cleanPredictions: cleanPredictions, progress: progress, observer: observer)
    }

    /// The digits a gallery shows, at most `count` of them, in test-set order: first the
    /// correctly classified digits the attack fooled, then, when there are fewer than
    /// `count`, the correctly classified ones it failed on (marked in the picture). Digits
    /// the model already got wrong are not the attack's work and are left out.
    public func galleryItems(count: Int) -> [Int] {
        let correct = labels.indices.filter { cleanPredictions[$0] == labels[$0] }
        let fooled = correct.filter { result.success[$0] }
        let failed = correct.filter { !result.success[$0] }
        return Array((fooled + failed).prefix(max(0, count)))
    }

    /// The colour of a gallery's `failed` captions.
    public static let failureColour = Colour(red: 0xC0, green: 0x10, blue: 0x10)

    /// Up to `count` images (``galleryItems(count:)``) in three rows: the originals with the
    /// model's answer and its probability, the perturbations (amplified: red brighter, blue
    /// darker), and the adversarial images with the model's answer, in red with `failed`
    /// where the attack did not fool the model.
    public func gallery(model: Model, count: Int = 10, scale: Int = 4) -> RGBImage {
        let shown = galleryItems(count: count)
        let clean = shown.isEmpty ? Tensor(shape: [0, 10], scalars: []) : model.probabilities(originals.gathering(shown))
        func caption(_ p: [Float]) -> String {
            let best = p.indices.max { p[$0] < p[$1] } ?? 0
            return "\(best) " + String(format: "%.0f%%", 100 * p[best])
        }
        let rows = [
            ImageGrid.Row(
                title: "original",
                cells: shown.enumerated().map { column, item in
                    ImageGrid.Cell(GreyImage(originals.batch(item..<item + 1)), caption: caption(clean.row(column)))
                }),
            ImageGrid.Row(
                title: "perturbation",
                cells: shown.map {
                    ImageGrid.Cell(
                        RGBImage(
                            perturbation: result.adversarial.batch($0..<$0 + 1) - originals.batch($0..<$0 + 1)
                        ))
                }),
            ImageGrid.Row(
                title: "adversarial",
                cells: shown.map { item in
                    let text = caption(result.probabilities.row(item))
                    return result.success[item]
                        ? ImageGrid.Cell(GreyImage(result.adversarial.batch(item..<item + 1)), caption: text)
                        : ImageGrid.Cell(
                            GreyImage(result.adversarial.batch(item..<item + 1)), caption: "failed " + text,
                            captionColour: Self.failureColour)
                }),
        ]
        return ImageGrid(rows: rows, scale: scale).render()
    }

    /// Writes `adversarial.safetensors` (`original`, `adversarial`, `labels`,
    /// `predictions`, `success`, and any `extra` tensors; `command` in the metadata) and
    /// `gallery.png` (see ``gallery(model:count:scale:)``) into `directory`, each atomically.
    public func write(
        to directory: URL, model: Model, command: String, extra: [String: Tensor] = [:]
    ) throws(ExperimentError) {
        let tensors: [String: Tensor] = [
            "original": originals, "adversarial": result.adversarial,
            "labels": Tensor(shape: [labels.count], scalars: labels.map(Float.init)),
            "predictions": Tensor(shape: [labels.count], scalars: result.predictions.map(Float.init)),
            "success": Tensor(shape: [labels.count], scalars: result.success.map { $0 ? 1 : 0 }),
        ]
        let file = Safetensors(
            tensors: tensors.merging(extra) { own, _ in own }, metadata: ["command": command])
        try Experiments.write(file, to: directory.appendingPathComponent("adversarial.safetensors"))
        try Experiments.write(
            try gallery(model: model).png(), to: directory.appendingPathComponent("gallery.png"))
    }
}
