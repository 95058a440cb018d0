import Adversarial
import Experiments
import Foundation
import NeuralNet

/// The server's limits: what one request may ask for and how much work runs at once.
/// Every one is documented in the README's `deceive serve` section.
public struct ServerLimits: Sendable {
    /// Largest request body in bytes; a larger one is a 413.
    public var maxBodyBytes: Int
    /// Largest `maxSteps` a fooling request may ask for; a larger one is a 400.
    public var maxSteps: Int
    /// Optimisations running at once (fooling and attacks).
    public var concurrentJobs: Int
    /// Optimisations waiting beyond those; one more is a 503 with `Retry-After`.
    public var queueLength: Int
    /// Wall time one optimisation may take; when it is up, the run stops and answers
    /// with what it has (`reached` false unless it got there).
    public var timeLimit: Duration
    /// Most `step` events a stream sends per second.
    public var eventsPerSecond: Double

    /// The defaults: 64 KiB bodies, 5,000 steps, one job per core and four per core
    /// waiting, 20 s per job, 30 events a second.
    public init(
        maxBodyBytes: Int = 64 * 1024, maxSteps: Int = 5000,
        concurrentJobs: Int = ProcessInfo.processInfo.activeProcessorCount,
        queueLength: Int = 4 * ProcessInfo.processInfo.activeProcessorCount,
        timeLimit: Duration = .seconds(20), eventsPerSecond: Double = 30
    ) {
        self.maxBodyBytes = maxBodyBytes
        self.maxSteps = maxSteps
        self.concurrentJobs = concurrentJobs
        self.queueLength = queueLength
        self.timeLimit = timeLimit
        self.eventsPerSecond = eventsPerSecond
    }
}

/// The API's work, apart from HTTP: requests checked field by field into settings, and
/// the optimisations run with the same library calls as the command line
/// (``FoolingExperiment``, ``AttackRun``).
struct API: Sendable {
    /// The loaded models by name, in the order `/api/health` lists them.
    let models: [(name: String, model: Model)]
    let limits: ServerLimits

    /// The pixels of one image: 28×28.
    static let pixels = 28 * 28

    var modelNames: [String] { models.map(\.name) }

    /// Reads the `model` field: one of the loaded models' names (the first when absent).
    func model(in request: JSONObject) throws(APIError) -> Model {
        let name = try request.choice("model", of: modelNames)
        return models.first { $0.name == name }?.model ?? models[0].model
    }

    // MARK: predict

    struct Verdict: Encodable, Sendable {
        let prediction: Int
        let probabilities: [Float]
    }

    struct PredictResponse: Encodable, Sendable {
        let models: [String: Verdict]
    }

    func predict(_ request: JSONObject) throws(APIError) -> PredictResponse {
        try request.allowOnly(["image"])
        guard let image = try request.image("image", count: Self.pixels) else {
            throw APIError("'image' is required: 784 numbers in [0, 1], row-major 28×28")
        }
        return predict(image)
    }

    /// Every loaded model's answer for one image.
    func predict(_ image: [Float]) -> PredictResponse {
        let input = Tensor(shape: [1, 1, 28, 28], scalars: image)
        var verdicts: [String: Verdict] = [:]
        for (name, model) in models {
            let p = model.probabilities(input)
            verdicts[name] = Verdict(prediction: argmax(rows: p)[0], probabilities: p.scalars)
        }
        return PredictResponse(models: verdicts)
    }

    // MARK: fool

    /// A checked fooling request.
    struct FoolRequest: Sendable {
        let model: Model
        let target: Int
        let start: FoolingStart
        let fooling: Fooling
    }

    struct FoolResponse: Encodable, Sendable {
        let image: [Float]
        let start: [Float]
        let probabilities: [Float]
        let steps: Int
        let queries: Int
        let confidence: Float
        let reached: Bool
        /// Whether the run was stopped (time limit, shutdown) before it reached the
        /// confidence or used its steps.
        let stopped: Bool
        let seconds: Double
    }

    /// One `step` event of a stream.
    struct StepEvent: Encodable, Sendable {
        let step: Int
        let probability: Float
        let image: [Float]
    }

    func foolRequest(_ request: JSONObject) throws(APIError) -> FoolRequest {
        try request.allowOnly(["target", "confidence", "start", "within", "model", "seed", "maxSteps", "method"])
        let model = try model(in: request)
        guard let target = try request.integer("target", in: 0...(model.classCount - 1)) else {
            throw APIError("'target' is required: the digit to fool the model into seeing, 0–9")
        }
        let confidence = try request.number("confidence", in: 0...1) ?? 0.99
        guard confidence > 0, confidence < 1 else {
            throw APIError("'confidence' must be between 0 and 1 (exclusive), got \(confidence)")
        }
        let within = try request.number("within", in: 0...1)
        let methodName = try request.choice("method", of: Fooling.Method.allCases.map(\.rawValue)) ?? "adam"
        let method = Fooling.Method(rawValue: methodName) ?? .adam
        let maxSteps =
            try request.integer("maxSteps", in: 1...limits.maxSteps)
            ?? FoolingExperiment.defaultMaxSteps(method: method, regularization: nil)
        let seed = try request.integer("seed", in: 0...Int(Int32.max)) ?? 1
        let start: FoolingStart
        switch request["start"] {
        case .none: start = .noise
        case .string(let kind)?:
            switch kind {
            case "noise": start = .noise
            case "zeros": start = .zeros
            case "gaussian": start = .gaussian
            default: throw APIError("'start' must be \"noise\", \"zeros\", \"gaussian\" or 784 numbers in [0, 1], got '\(kind)'")
            }
        case let value?:
            let pixels = try JSONObject.image(value, name: "start", count: Self.pixels)
            start = .image(Tensor(shape: [1, 1, 28, 28], scalars: pixels.map(eightBit)))
        }
        do throws(AdversarialError) {
            let fooling = try Fooling(
                method: method, confidence: Float(confidence), epsilon: within.map(Float.init),
                maxSteps: maxSteps, seed: UInt64(seed))
            return FoolRequest(model: model, target: target, start: start, fooling: fooling)
        } catch {
            throw APIError(error.description)
        }
    }

    /// Runs a fooling request as `deceive fool` does (the same experiment, the PNG round
    /// trip included); `onStep` sees every step the observer lets through.
    func fool(
        _ request: FoolRequest, control: JobControl, onStep: (@Sendable (StepEvent) -> Void)? = nil
    ) throws(APIError) -> FoolResponse {
        let experiment: FoolingExperiment
        do throws(ExperimentError) {
            experiment = try FoolingExperiment(targets: [request.target], start: request.start, fooling: request.fooling)
        } catch {
            throw APIError(error.description)
        }
        let interval = 1 / max(limits.eventsPerSecond, 1)
        let clock = ContinuousClock()
        var lastEvent: ContinuousClock.Instant?
        let observer: StepObserver = { step in
            if control.shouldStop { return .stop }
            if let onStep, let probability = step.probabilities.first,
                lastEvent.map({ (clock.now - $0).seconds >= interval }) ?? true
            {
                lastEvent = clock.now
                onStep(StepEvent(step: step.step, probability: probability, image: step.images.scalars.map(eightBit)))
            }
            return .proceed
        }
        let outcome: FoolingOutcome
        do throws(ExperimentError) {
            outcome = try experiment.run(model: request.model, observer: observer)
        } catch {
            throw APIError(error.description)
        }
        let numbers = outcome.targets[0]
        return FoolResponse(
            image: outcome.images.scalars, start: outcome.result.starts.scalars.map(eightBit),
            probabilities: outcome.probabilities.scalars, steps: numbers.steps, queries: numbers.queries,
            confidence: numbers.confidenceAfterPNG, reached: numbers.success, stopped: outcome.stopped,
            seconds: outcome.seconds)
    }

    // MARK: attack

    /// The attacks the page offers.
    static let attackMethods: [AttackMethod] = [.fgsm, .pgd, .deepfool, .cw]

    struct AttackRequest: Sendable {
        let model: Model
        let image: [Float]
        let label: Int
        let settings: AttackSettings
    }

    struct AttackResponse: Encodable, Sendable {
        let adversarial: [Float]
        let prediction: Int
        let probabilities: [Float]
        let success: Bool
        let linf: Float
        let l2: Float
        let stopped: Bool
        let seconds: Double
    }

    func attackRequest(_ request: JSONObject) throws(APIError) -> AttackRequest {
        try request.allowOnly(["image", "label", "method", "eps", "model"])
        let model = try model(in: request)
        guard let image = try request.image("image", count: Self.pixels) else {
            throw APIError("'image' is required: 784 numbers in [0, 1], row-major 28×28")
        }
        let methodName = try request.choice("method", of: Self.attackMethods.map(\.rawValue)) ?? "fgsm"
        let method = AttackMethod(rawValue: methodName) ?? .fgsm
        let eps = try request.number("eps", in: 0...1)
        let label =
            try request.integer("label", in: 0...(model.classCount - 1))
            ?? model.predictions(Tensor(shape: [1, 1, 28, 28], scalars: image))[0]
        let settings = AttackSettings(method: method, parameters: AttackParameters(epsilon: eps.map(Float.init)))
        do throws(ExperimentError) {
            _ = try settings.attack()
        } catch {
            throw APIError(error.description)
        }
        return AttackRequest(model: model, image: image, label: label, settings: settings)
    }

    /// Runs an attack request as `deceive attack` does.
    func attack(_ request: AttackRequest, control: JobControl) throws(APIError) -> AttackResponse {
        let original = Tensor(shape: [1, 1, 28, 28], scalars: request.image)
        let run: AttackRun
        do throws(ExperimentError) {
            run = try AttackRun.run(
                request.settings, model: request.model, images: original, labels: [request.label],
                observer: { _ in control.shouldStop ? .stop : .proceed })
        } catch {
            throw APIError(error.description)
        }
        guard !run.result.success.isEmpty else {
            // Stopped before the first step: nothing was attacked.
            throw APIError("the attack was stopped before it began", status: 503)
        }
        let adversarial = run.result.adversarial.scalars
        var linf: Float = 0
        var squares: Float = 0
        for (a, b) in zip(adversarial, request.image) {
            linf = max(linf, abs(a - b))
            squares += (a - b) * (a - b)
        }
        return AttackResponse(
            adversarial: adversarial, prediction: run.result.predictions[0],
            probabilities: run.result.probabilities.scalars, success: run.result.success[0], linf: linf,
            l2: squares.squareRoot(), stopped: run.result.stopped, seconds: run.report.seconds)
    }
}

/// The nearest 8-bit level: what a PNG of the image holds.
func eightBit(_ x: Float) -> Float { (min(max(x, 0), 1) * 255).rounded() / 255 }
