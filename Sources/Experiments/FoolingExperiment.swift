import Adversarial
import Foundation
import NeuralNet
import Visuals

/// Fooling as `deceive fool`, the report and the server run it: ``Fooling`` crafts one
/// image per target, each image is encoded as the 8-bit PNG a user gets, decoded again and
/// classified again. The confidence reported is the one after that round trip.
///
/// A value: many requests can run their own experiments on one frozen model at once.
///
/// ```swift
/// let fooling = try Fooling(confidence: 0.99)
/// let outcome = try FoolingExperiment(targets: [5], fooling: fooling).run(model: model)
/// outcome.targets[0].confidenceAfterPNG  // ≥ 0.99 when outcome.targets[0].success
/// ```
public struct FoolingExperiment: Sendable {
    /// The targets, one image each, crafted as one batch.
    public let targets: [Int]
    /// Where the images start.
    public let start: FoolingStart
    /// The optimisation (method, confidence, ε, budget, seed).
    public let fooling: Fooling

    /// Checks the targets (at least one, none negative); the model's classes are checked
    /// when it runs.
    public init(targets: [Int], start: FoolingStart = .noise, fooling: Fooling) throws(ExperimentError) {
        guard !targets.isEmpty else { throw .invalid("give at least one target") }
        if let bad = targets.first(where: { $0 < 0 }) { throw .invalid("target \(bad) is not a class") }
        self.targets = targets
        self.start = start
        self.fooling = fooling
    }

    /// The step budget when none is given: 300 for a class visualisation, 400 for the
    /// black-box evolution, 1,000 for the gradient methods.
    public static func defaultMaxSteps(method: Fooling.Method, regularization: Fooling.Regularization?) -> Int
    {
        regularization != nil ? 300 : (method == .evolve ? 400 : 1000)
    }

    /// Crafts the images, then checks them the way a user would: PNG bytes, decoded,
    /// classified again. `observer` sees every optimisation step and may stop the run (so
    /// may the cancellation of the task); a stopped run is checked the same way.
    ///
    /// With `certify` (which needs an ε), each target also gets an upper bound on its
    /// probability over the whole ε-box around its start, which tells a target that cannot be
    /// reached from one the search missed; a reached target whose bound is below the
    /// confidence would be an unsound bound, and fails the run.
    public func run(model: Model, observer: StepObserver? = nil, certify: Bool = false) throws(ExperimentError)
        -> FoolingOutcome
    {
        let shape = model.architecture.inputShape
        if certify && fooling.epsilon == nil {
            throw .invalid("certifying what fooling can reach needs an ε-box: give --within EPS")
        }
        guard shape.count == 3, shape[0] == 1 else {
            throw .invalid("fooling needs a model of grey images (1×H×W); this one takes \(shape)")
        }
        let starts = start.images(for: targets, shape: shape, seed: fooling.seed)
        let clock = ContinuousClock()
        let began = clock.now
        let result: FoolingResult
        do throws(AdversarialError) {
            result = try fooling.run(model: model, starts: starts, targets: targets, observer: observer)
        } catch {
            throw .invalid(error.description)
        }
        let seconds = (clock.now - began).seconds
        // Encode, decode, classify again: the honest confidence.
        var imagePNGs: [Data] = []
        var startPNGs: [Data] = []
        var decoded: [Tensor] = []
        for row in targets.indices {
            let png = try GreyImage(result.images.batch(row..<row + 1)).png()
            imagePNGs.append(png)
            startPNGs.append(try GreyImage(result.starts.batch(row..<row + 1)).png())
            do throws(PNGError) {
                decoded.append(try GreyImage(png: png).tensor())
            } catch {
                throw .failed(error)
            }
        }
        let images = Tensor.concatenate(decoded)
        var outcome = FoolingOutcome(
            result: result, fooling: fooling, imagePNGs: imagePNGs, startPNGs: startPNGs, images: images,
            probabilities: model.probabilities(images), seconds: seconds)
        if certify, let epsilon = fooling.epsilon {
            let bounds = TargetProbabilityBound.upperBounds(
                model, starts: result.starts, targets: result.targets, epsilon: epsilon)
            outcome.probabilityBounds = bounds
            let confidences = outcome.confidencesAfterPNG
            if let row = bounds.indices.first(where: { confidences[$0] > bounds[$0] }) {
                throw .failed(
                    "unsound bound: target \(result.targets[row]) reached \(confidences[row]) above its proved bound \(bounds[row])")
            }
        }
        return outcome
    }
}

extension Fooling.Regularization {
    /// Parses class-visualisation penalties: `l2`, `tv`, `l2,tv` or with weights,
    /// `l2=0.05,tv=0.3` (defaults 0.01 and 0.1).
    public init(parsing text: String) throws(ExperimentError) {
        self.init(l2: 0, totalVariation: 0)
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "=", maxSplits: 1).map {
                $0.trimmingCharacters(in: .whitespaces).lowercased()
            }
            let weight = pieces.count == 2 ? Float(pieces[1]) : nil
            if pieces.count == 2, !(weight.map { $0.isFinite && $0 >= 0 } ?? false) {
                throw .invalid("weight '\(pieces[1])' must be a number ≥ 0")
            }
            switch pieces.first {
            case "l2": l2 = weight ?? 0.01
            case "tv": totalVariation = weight ?? 0.1
            default: throw .invalid("unknown penalty '\(pieces.first ?? "")' (use l2, tv or l2,tv)")
            }
        }
    }
}

/// What `fool --certify` says of a target: written in the JSON as `reached`,
/// `proved unreachable` or `unknown`.
public enum Certificate: String, Sendable, Encodable, CaseIterable {
    /// The search reached the confidence.
    case reached
    /// The target's probability bound over the whole ε-box is below the confidence.
    case provedUnreachable = "proved unreachable"
    /// Neither.
    case unknown
}

/// What a ``FoolingExperiment`` produced, checked after the PNG round trip.
public struct FoolingOutcome: Sendable {
    /// One target's numbers, as `deceive fool` prints them and `summary.json` holds them.
    public struct Target: Sendable, Encodable {
        public let target: Int
        /// Whether the image read back from its PNG reaches the requested confidence.
        public let success: Bool
        public let steps: Int
        public let queries: Int
        /// The target's probability before the round trip (8-bit image, as optimised).
        public let confidence: Float
        /// The target's probability of the image read back from the PNG.
        public let confidenceAfterPNG: Float
        /// The model's answer for the image read back.
        public let predictedAfterPNG: Int
        /// ‖image − start‖∞ and ‖image − start‖₂.
        public let linfDistance: Float
        public let l2Distance: Float
        /// The run's time divided among its targets.
        public let seconds: Double
        /// With `certify`: reached, proved unreachable, or unknown.
        public let certificate: Certificate?
        /// With `certify`: an upper bound on the target's probability over the whole ε-box
        /// around the start (``Adversarial/TargetProbabilityBound``).
        public let probabilityBound: Float?
    }

    /// The optimisation's result (8-bit images, starts, steps, trajectories).
    public let result: FoolingResult
    /// The optimisation that ran (its method, objective, confidence, ε).
    public let fooling: Fooling
    /// Each image's PNG bytes, and each start's.
    public let imagePNGs: [Data], startPNGs: [Data]
    /// The images decoded from their PNGs, [N, 1, H, W]: what a file holds.
    public let images: Tensor
    /// The model's probabilities for `images`, [N, classes].
    public let probabilities: Tensor
    /// The optimisation's wall time.
    public let seconds: Double
    /// With `certify`: each target's probability bound over the ε-box around its start.
    public var probabilityBounds: [Float]? = nil

    /// With `certify`: how many targets got `certificate`.
    public func count(_ certificate: Certificate) -> Int { targets.filter { $0.certificate == certificate }.count }

    /// Whether a step observer or the task's cancellation stopped the run.
    public var stopped: Bool { result.stopped }

    /// Each target's numbers, in the order of the targets.
    public var targets: [Target] {
        result.targets.enumerated().map { row, digit in
            let difference = (result.images.batch(row..<row + 1) - result.starts.batch(row..<row + 1)).scalars
            let after = probabilities.row(row)
            let success = after[digit] >= fooling.confidence
            let bound = probabilityBounds?[row]
            return Target(
                target: digit, success: success, steps: result.steps[row],
                queries: result.queries[row], confidence: result.targetProbabilities[row],
                confidenceAfterPNG: after[digit],
                predictedAfterPNG: after.indices.max { after[$0] < after[$1] } ?? 0,
                linfDistance: difference.map(abs).max() ?? 0,
                l2Distance: difference.reduce(0) { $0 + $1 * $1 }.squareRoot(),
                seconds: seconds / Double(result.targets.count),
                certificate: bound.map { success ? .reached : ($0 < fooling.confidence ? .provedUnreachable : .unknown) },
                probabilityBound: bound)
        }
    }

    /// The target's probability after the round trip, per target.
    public var confidencesAfterPNG: [Float] {
        result.targets.enumerated().map {
            probabilities.scalars[$0.offset * probabilities.shape[1] + $0.element]
        }
    }

    /// The images read back, one [1, 1, H, W] tensor per target.
    public func image(_ row: Int) -> Tensor { images.batch(row..<row + 1) }

    /// Writes `<digit>.png` and `start-<digit>.png` (the bytes that were checked),
    /// `grid.png`, `trajectory.json`, `fooling.safetensors` (`start`, `images`, `targets`,
    /// `probabilities` after the round trip) and `summary.json` into `directory`, each file
    /// atomically. `model`, `start` and `command` describe the run in the summary and the
    /// tensors' metadata. Returns the summary.
    @discardableResult
    public func write(to directory: URL, model: String, start: String, command: String)
        throws(ExperimentError) -> FoolingSummary
    {
        var targetSummaries: [FoolingSummary.Target] = []
        for (row, numbers) in targets.enumerated() {
            let image = directory.appendingPathComponent("\(numbers.target).png")
            let startFile = directory.appendingPathComponent("start-\(numbers.target).png")
            try Experiments.write(imagePNGs[row], to: image)
            try Experiments.write(startPNGs[row], to: startFile)
            targetSummaries.append(
                FoolingSummary.Target(numbers: numbers, image: image.path, start: startFile.path))
        }
        let labels = targets.map { "\($0.target): " + String(format: "%.1f%%", 100 * $0.confidenceAfterPNG) }
        let grid = ImageGrid(
            rows: [result.starts, result.images], captions: [result.targets.map { "start \($0)" }, labels])
        try Experiments.write(try grid.render().png(), to: directory.appendingPathComponent("grid.png"))
        let trajectories = Dictionary(
            uniqueKeysWithValues: zip(result.targets.map(String.init), result.trajectories))
        try writeText(jsonText(trajectories), to: directory.appendingPathComponent("trajectory.json"))
        let tensors = Safetensors(
            tensors: [
                "start": result.starts, "images": result.images,
                "targets": Tensor(shape: [result.targets.count], scalars: result.targets.map(Float.init)),
                "probabilities": probabilities,
            ],
            metadata: ["model": model, "command": command])
        try Experiments.write(tensors, to: directory.appendingPathComponent("fooling.safetensors"))
        let summary = FoolingSummary(
            model: model, method: fooling.method.rawValue, loss: fooling.objective.rawValue, start: start,
            within: fooling.epsilon, requestedConfidence: fooling.confidence, output: directory.relativePath,
            seconds: seconds, targets: targetSummaries)
        try writeText(jsonText(summary), to: directory.appendingPathComponent("summary.json"))
        return summary
    }
}

/// `summary.json` of a fooling run, and what `deceive fool --json` prints.
public struct FoolingSummary: Sendable, Encodable {
    /// One target's numbers and its files; encoded as one object, the numbers' keys and
    /// `image` and `start`.
    public struct Target: Sendable, Encodable {
        /// What the target reached.
        public let numbers: FoolingOutcome.Target
        /// The paths of the image and its start.
        public let image: String
        public let start: String

        private enum CodingKeys: String, CodingKey { case image, start }

        public func encode(to encoder: any Encoder) throws {
            try numbers.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(image, forKey: .image)
            try container.encode(start, forKey: .start)
        }
    }

    public let model: String
    public let method: String
    public let loss: String
    public let start: String
    public let within: Float?
    public let requestedConfidence: Float
    public let output: String
    public let seconds: Double
    public let targets: [Target]
}
