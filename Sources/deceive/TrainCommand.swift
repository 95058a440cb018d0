import Adversarial
import ArgumentParser
import Datasets
import Foundation
import NeuralNet

/// `deceive train`.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a network and save it as a safetensors checkpoint.")

    @Option(help: "Architecture: seed, madry, or a spec such as 'conv32k3 relu maxpool2 flatten dense10'.")
    var arch: ArchitectureOption = ArchitectureOption(argument: "seed")!

    @OptionGroup var data: DataOptions

    @Option(help: "Passes over the training set.")
    var epochs: Int = 6

    @Option(help: "Images per batch.")
    var batchSize: Int = 128

    @Option(help: "Learning rate (the peak rate for onecycle).")
    var learningRate: Float = 3e-3

    @Option(help: "Optimizer: adam or sgd.")
    var optimizer: OptimizerName = .adam

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "L2 weight decay.")
    var weightDecay: Float = 0

    @Option(help: "Learning-rate schedule: constant, cosine, onecycle[:warmup] or step[:epochs[:factor]].")
    var schedule: String = "onecycle"

    @Flag(help: "Shift each training image by up to 2 pixels in each direction.")
    var augment = false

    @Option(help: "Seed for initialisation, shuffling, augmentation and dropout.")
    var seed: UInt64 = 1

    @Option(help: "Train on the first N training images only (quick runs and tests).")
    var limit: Int?

    @Option(help: "Where to write the checkpoint.")
    var output: String = "out/model.safetensors"

    @Option(help: "Adversarial training: none, fgsm-rs (FGSM with random start), pgd or trades.")
    var adversarial: AdversarialTraining.Method = .none

    @Option(help: "Adversarial training: the L∞ radius ε.")
    var eps: Float = 0.3

    @Option(help: "Adversarial training: inner attack steps (default: pgd 7, trades 10, fgsm-rs 1).")
    var attackSteps: Int?

    @Option(help: "Adversarial training: inner attack step size (default: pgd 2.5ε/steps, trades ε/4, fgsm-rs 1.25ε).")
    var attackStepSize: Float?

    @Option(help: "Adversarial training: epochs over which ε grows linearly from 0.")
    var epsWarmup: Double = 0

    @Option(help: "TRADES: weight β of the robustness term.")
    var beta: Float = 6

    @Flag(help: "Print a JSON summary on standard output (per-epoch lines go to standard error).")
    var json = false

    enum OptimizerName: String, ExpressibleByArgument, CaseIterable { case adam, sgd }

    func validate() throws {
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, got \(batchSize)") }
        guard learningRate.isFinite, learningRate > 0 else {
            throw ValidationError("--learning-rate must be a positive number, got \(learningRate)")
        }
        guard momentum.isFinite, (0..<1).contains(momentum) else { throw ValidationError("--momentum must be in [0, 1)") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw ValidationError("--weight-decay must be ≥ 0") }
        guard LearningRateSchedule(parsing: schedule) != nil else {
            throw ValidationError("--schedule '\(schedule)' is not constant, cosine, onecycle[:warmup] or step[:epochs[:factor]]")
        }
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1, got \(limit)") }
        guard !output.isEmpty else { throw ValidationError("--output must name a file") }
        guard epsWarmup.isFinite, epsWarmup >= 0 else { throw ValidationError("--eps-warmup must be ≥ 0 epochs") }
        _ = try adversarialTraining()
    }

    /// The adversarial-training options, checked.
    func adversarialTraining() throws -> AdversarialTraining? {
        guard adversarial != .none else { return nil }
        do {
            return try AdversarialTraining(
                method: adversarial, epsilon: eps, steps: attackSteps, stepSize: attackStepSize, beta: beta)
        } catch {
            throw ValidationError("--adversarial \(adversarial.rawValue): \(error.description)")
        }
    }

    struct Summary: Encodable {
        let output: String
        let architecture: String
        let dataset: String
        let parameters: Int
        let trainingImages: Int
        let testAccuracy: Double
        let trainingSeconds: Double
        let epochs: [EpochRecord]
    }

    func run() throws {
        try runReportingErrors { try train() }
    }

    private func train() throws {
        do {
            let architecture = arch.architecture
            guard let rateSchedule = LearningRateSchedule(parsing: schedule) else { return }
            let outputURL = URL(fileURLWithPath: output)
            try checkWritable(outputURL)
            let dataset = try data.store.load(log: { printError($0) })
            let train = limit.map { dataset.train.prefix($0) } ?? dataset.train
            var generator = SplitMix64(seed: seed)
            let model = try Model(architecture: architecture, generator: &generator)
            let rule: any Optimizer =
                optimizer == .adam
                ? Adam(weightDecay: weightDecay) : SGD(momentum: momentum, weightDecay: weightDecay)
            var trainer = Trainer(model: model, optimizer: rule)
            let source = ShuffledBatches(train, batchSize: batchSize, seed: seed, maximumShift: augment ? 2 : 0)
            let plan = TrainingPlan(epochs: epochs, learningRate: learningRate, schedule: rateSchedule, seed: seed)
            let testImages = dataset.test.allImages
            let quiet = json
            func say(_ line: String) { if quiet { printError(line) } else { print(line) } }
            let augmentation = augment ? ", augmented" : ""
            say("training \(architecture) (\(model.parameterCount) parameters) on \(train.count) \(dataset.name.rawValue) images")
            say("\(optimizer.rawValue), lr \(learningRate), \(rateSchedule), batch \(batchSize)\(augmentation), \(Compute.threadCount) threads")
            var bar = ProgressBar()
            let started = ContinuousClock.now
            let onEvent: (TrainingEvent) -> Void = { event in
                switch event {
                case let .batch(epoch, done, total, loss, accuracy):
                    let detail = String(format: "loss %.4f  train ", loss) + percent(accuracy)
                    bar.draw("epoch \(epoch)/\(epochs)", done: done, of: total, detail: detail)
                case let .epoch(record):
                    bar.clear()
                    say(describe(record, of: epochs))
                }
            }
            let evaluate: (Model) -> Double? = { model in
                accuracy(of: model, images: testImages, labels: dataset.test.labels)
            }
            let defence = try adversarialTraining()
            if let defence {
                say("adversarial training: \(defence.method.rawValue), ε \(defence.epsilon), \(defence.steps) steps of \(defence.stepSize)"
                    + (defence.method == .trades ? ", β \(defence.beta)" : "") + (epsWarmup > 0 ? ", ε warm-up over \(epsWarmup) epochs" : ""))
            }
            let prepare = defence?.preparation(
                warmupSteps: Int(epsWarmup * Double(source.batchesPerEpoch)), seed: seed &+ 0xADE)
            let history = trainer.fit(source, plan: plan, prepare: prepare, evaluate: evaluate, onEvent: onEvent)
            let seconds = (ContinuousClock.now - started).seconds
            let testAccuracy = history.last?.testAccuracy ?? 0
            var metadata: [String: String] = [
                Checkpoint.Key.dataset: dataset.name.rawValue,
                Checkpoint.Key.command: commandLine,
                Checkpoint.Key.testAccuracy: String(testAccuracy),
                Checkpoint.Key.seed: String(seed),
                Checkpoint.Key.trainingSeconds: String(format: "%.1f", seconds),
            ]
            if let encoded = try? JSONEncoder().encode(history) {
                metadata[Checkpoint.Key.history] = String(decoding: encoded, as: UTF8.self)
            }
            try Checkpoint(model: trainer.model, metadata: metadata).write(to: outputURL)
            say("test accuracy \(percent(testAccuracy)) after " + String(format: "%.1f s", seconds) + "; wrote \(output)")
            if json {
                print(
                    jsonText(
                        Summary(
                            output: output, architecture: architecture.spec, dataset: dataset.name.rawValue,
                            parameters: model.parameterCount, trainingImages: train.count, testAccuracy: testAccuracy,
                            trainingSeconds: seconds, epochs: history)))
            }
        }
    }
}

/// One line per epoch: loss, accuracies, time and throughput.
func describe(_ record: EpochRecord, of epochs: Int) -> String {
    "epoch \(record.epoch)/\(epochs)  " + String(format: "loss %.4f", record.loss) + "  train "
        + percent(record.trainAccuracy) + (record.adversarialAccuracy.map { "  adversarial " + percent($0) } ?? "") + "  test " + (record.testAccuracy.map(percent) ?? "–")
        + String(format: "  %.1f s  %.0f samples/s", record.seconds, record.samplesPerSecond)
}

/// Fails early, before hours of training, when the output cannot be written.
func checkWritable(_ url: URL) throws {
    let directory = url.deletingLastPathComponent()
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw ValidationError("--output \(url.path) is a directory; name a file")
    }
    do {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    } catch {
        throw Failure("\(directory.path): cannot create the output directory")
    }
    guard FileManager.default.isWritableFile(atPath: directory.path) else {
        throw Failure("\(directory.path): the output directory is not writable")
    }
}

/// The fraction of `images` that `model` classifies as `labels`, in batches of 1,000.
func accuracy(of model: Model, images: Tensor, labels: [Int]) -> Double {
    let predictions = predict(model, images)
    return Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(max(labels.count, 1))
}

/// Predictions for a large set, in batches of 1,000 (bounded memory).
func predict(_ model: Model, _ images: Tensor) -> [Int] {
    var predictions: [Int] = []
    predictions.reserveCapacity(images.batchSize)
    for start in stride(from: 0, to: images.batchSize, by: 1000) {
        predictions += model.predictions(images.batch(start..<min(start + 1000, images.batchSize)))
    }
    return predictions
}

extension AdversarialTraining.Method: ExpressibleByArgument {}
