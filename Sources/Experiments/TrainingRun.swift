import Adversarial
import Datasets
import Foundation
import NeuralNet

/// What defines a training run (`deceive train`'s options). Saved in resumable checkpoints,
/// so that a resumed run continues the same run; the field names are that file's format.
public struct TrainingSettings: Codable, Sendable, Equatable {
    /// An architecture name (`seed`, `madry`) or spec string.
    public var architecture: String
    /// A ``DatasetName`` raw value.
    public var dataset: String
    public var epochs: Int
    public var batchSize: Int
    /// The base (for one-cycle: the peak) learning rate.
    public var learningRate: Float
    /// `adam` or `sgd`.
    public var optimizer: String
    public var momentum: Float
    public var weightDecay: Float
    /// A ``LearningRateSchedule`` as text: `constant`, `cosine`, `onecycle[:w]`, `step[:e[:f]]`.
    public var schedule: String
    /// Random shifts of up to 2 pixels.
    public var augment: Bool
    public var seed: UInt64
    /// Train on the first `limit` training images only.
    public var limit: Int?
    /// An ``AdversarialTraining/Method`` raw value (`none`, `fgsm-rs`, `pgd`, `trades`).
    public var adversarial: String
    public var eps: Float
    public var attackSteps: Int?
    public var attackStepSize: Float?
    /// Epochs over which ε grows linearly from 0.
    public var epsWarmup: Double
    /// TRADES' β.
    public var beta: Float
    /// Certified training: an ``IntervalTraining/Method`` raw value (`ibp`, `crown-ibp`), or nil.
    public var certified: String?
    /// Certified training: the ε of the verified loss (default: `eps`).
    public var trainEps: Float?
    /// Certified training: epochs of natural training before the ε ramp.
    public var rampStart: Double?
    /// Certified training: epochs over which ε grows from 0 and κ falls from 1.
    public var epsRamp: Double?
    /// Certified training: the final weight of the natural loss.
    public var kappa: Float?
    /// `pytorch` (the default) or `ibp` (Shi et al.'s, ``IntervalTraining/initialize(_:generator:)``).
    public var initialization: String?
    /// The command that started the run, for the checkpoint's metadata.
    public var command: String

    /// Creates settings; see the fields for what each means.
    public init(
        architecture: String, dataset: String, epochs: Int, batchSize: Int, learningRate: Float,
        optimizer: String,
        momentum: Float, weightDecay: Float, schedule: String, augment: Bool, seed: UInt64, limit: Int?,
        adversarial: String, eps: Float, attackSteps: Int?, attackStepSize: Float?, epsWarmup: Double,
        beta: Float, certified: String? = nil, trainEps: Float? = nil, rampStart: Double? = nil,
        epsRamp: Double? = nil, kappa: Float? = nil, initialization: String? = nil,
        command: String
    ) {
        self.architecture = architecture
        self.dataset = dataset
        self.epochs = epochs
        self.batchSize = batchSize
        self.learningRate = learningRate
        self.optimizer = optimizer
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.schedule = schedule
        self.augment = augment
        self.seed = seed
        self.limit = limit
        self.adversarial = adversarial
        self.eps = eps
        self.attackSteps = attackSteps
        self.attackStepSize = attackStepSize
        self.epsWarmup = epsWarmup
        self.beta = beta
        self.certified = certified
        self.trainEps = trainEps
        self.rampStart = rampStart
        self.epsRamp = epsRamp
        self.kappa = kappa
        self.initialization = initialization
        self.command = command
    }
}

/// What a training run reports while it runs.
public enum TrainingProgress: Sendable {
    /// The run is about to train: what it trains, on what, and how.
    case started(TrainingStart)
    /// A batch finished: epoch (from 1), batches done and total, running mean loss and accuracy.
    case batch(epoch: Int, done: Int, of: Int, loss: Double, accuracy: Double)
    /// An epoch finished (its resumable checkpoint is written).
    case epoch(EpochRecord)
}

/// The facts of a run about to train, for its first lines of output.
public struct TrainingStart: Sendable {
    public let architecture: Architecture
    public let parameters: Int
    public let trainingImages: Int
    public let dataset: DatasetName
    public let settings: TrainingSettings
    public let schedule: LearningRateSchedule
    public let threads: Int
    /// Where a resumed run continues, or nil for a fresh run.
    public let resumedAt: TrainingPosition?
    /// The adversarial training, or nil.
    public let defence: AdversarialTraining?
    /// The certified training, or nil.
    public let certified: IntervalTraining?
}

/// `deceive train --json`'s summary of a finished run.
public struct TrainingSummary: Sendable, Encodable {
    public let output: String
    public let architecture: String
    public let dataset: String
    public let parameters: Int
    public let trainingImages: Int
    public let testAccuracy: Double
    public let trainingSeconds: Double
    public let epochs: [EpochRecord]
}

/// How a training run ended.
public enum TrainingOutcome: Sendable {
    /// Trained to the end; the checkpoint is written and the resumable state deleted.
    case finished(TrainingSummary)
    /// Stopped by its progress handler after a batch; the resumable state is saved in
    /// `resumeFile`, from which `TrainingRun(resume:)` continues exactly.
    case interrupted(TrainingPosition, resumeFile: URL)
}

/// A training run as `deceive train` runs it: trains, measures test accuracy after every
/// epoch, keeps a resumable checkpoint next to the output (at the end of every epoch and
/// when stopped), and writes the final checkpoint with its metadata (command, accuracy,
/// history, seed, time).
public struct TrainingRun: Sendable {
    /// The settings the run uses (a resumed run's own).
    public let settings: TrainingSettings
    /// Where the checkpoint goes.
    public let output: URL
    /// Where the resumable state goes.
    public var resumeFile: URL { TrainingRun.resumeURL(for: output) }
    private let resumed: TrainingCheckpoint?

    /// A run of `settings` writing `output`; with `resume`, the run continues the one saved
    /// in that resumable checkpoint, whose settings override `settings`.
    public init(settings: TrainingSettings, output: URL, resume: URL? = nil) throws(ExperimentError) {
        var settings = settings
        var resumed: TrainingCheckpoint?
        if let resume {
            let saved: TrainingCheckpoint
            do throws(CheckpointError) {
                saved = try TrainingCheckpoint.load(from: resume)
            } catch {
                throw .failed(error)
            }
            guard
                let decoded = try? JSONDecoder().decode(TrainingSettings.self, from: Data(saved.options.utf8))
            else {
                throw .failed("\(resume.path): its training options cannot be read")
            }
            settings = decoded
            resumed = saved
        }
        self.settings = settings
        self.output = output
        self.resumed = resumed
    }

    /// Where the resumable state of a run writing `output` goes: `model.safetensors` →
    /// `model.resume.safetensors`.
    public static func resumeURL(for output: URL) -> URL {
        let base = output.pathExtension == "safetensors" ? output.deletingPathExtension() : output
        return base.appendingPathExtension("resume.safetensors")
    }

    private struct Stop: Error {}

    /// Trains. `dataDirectory` holds the dataset's files (nil: the default place),
    /// `onProgress` gets every batch and epoch (answering `.stop` ends the run after that
    /// batch with its resumable state saved), and `log` the dataset's messages.
    public func run(
        dataDirectory: URL?, onProgress: (TrainingProgress) -> StepDecision = { _ in .proceed },
        log: (String) -> Void = { _ in }
    ) throws(ExperimentError) -> TrainingOutcome {
        guard let rateSchedule = LearningRateSchedule(parsing: settings.schedule),
            let datasetName = DatasetName(rawValue: settings.dataset),
            let method = AdversarialTraining.Method(rawValue: settings.adversarial)
        else { throw .failed("invalid training options") }
        let architecture: Architecture
        do throws(ArchitectureError) {
            architecture = try Architecture.resolve(settings.architecture)
        } catch {
            throw .invalid("architecture '\(settings.architecture)': \(error.description)")
        }
        let dataset: Dataset
        do throws(DatasetError) {
            dataset = try DataStore(dataset: datasetName, directory: dataDirectory).load(log: log)
        } catch {
            throw .failed(error)
        }
        let train = settings.limit.map { dataset.train.prefix($0) } ?? dataset.train
        let rule: any Optimizer =
            settings.optimizer == "adam"
            ? Adam(weightDecay: settings.weightDecay)
            : SGD(momentum: settings.momentum, weightDecay: settings.weightDecay)
        var trainer: Trainer
        var position = TrainingPosition()
        do {
            if let resumed {
                trainer = try resumed.trainer(optimizer: rule)
                position = resumed.position
            } else {
                var generator = SplitMix64(seed: settings.seed)
                var model = try Model(architecture: architecture, generator: &generator)
                if settings.initialization == "ibp" { IntervalTraining.initialize(&model, generator: &generator) }
                trainer = Trainer(model: model, optimizer: rule)
            }
        } catch let error as CheckpointError {
            throw .failed(error)
        } catch {
            throw .invalid("architecture '\(settings.architecture)': \(error)")
        }
        let defence: AdversarialTraining?
        do throws(AdversarialError) {
            defence =
                method == .none
                ? nil
                : try AdversarialTraining(
                    method: method, epsilon: settings.eps, steps: settings.attackSteps,
                    stepSize: settings.attackStepSize, beta: settings.beta)
        } catch {
            throw .invalid("adversarial training \(method.rawValue): \(error.description)")
        }
        let certified = try settings.intervalTraining()
        if certified != nil && defence != nil {
            throw .invalid("adversarial and certified training cannot be combined")
        }
        let source = ShuffledBatches(
            train, batchSize: settings.batchSize, seed: settings.seed, maximumShift: settings.augment ? 2 : 0)
        let plan = TrainingPlan(
            epochs: settings.epochs, learningRate: settings.learningRate, schedule: rateSchedule,
            seed: settings.seed)
        _ = onProgress(
            .started(
                TrainingStart(
                    architecture: architecture, parameters: trainer.model.parameterCount,
                    trainingImages: train.count,
                    dataset: dataset.name, settings: settings, schedule: rateSchedule,
                    threads: Compute.threadCount,
                    resumedAt: resumed.map { _ in position }, defence: defence, certified: certified)))
        let prepare =
            certified?.preparation(stepsPerEpoch: source.batchesPerEpoch)
            ?? defence?.preparation(
                warmupSteps: Int(settings.epsWarmup * Double(source.batchesPerEpoch)),
                seed: settings.seed &+ 0xADE)
        let options: String
        do {
            options = String(decoding: try JSONEncoder().encode(settings), as: UTF8.self)
        } catch {
            throw .failed("the training options cannot be encoded: \(error)")
        }
        let metadata = [
            Checkpoint.Key.dataset: dataset.name.rawValue, Checkpoint.Key.seed: String(settings.seed),
        ]
        let resumeFile = self.resumeFile
        var writeFailure: FileWriteError?
        // Certified runs: IBP-verified accuracy at the target ε on the first 1,000 test digits.
        let probe = dataset.test.prefix(1000)
        let probeImages = probe.allImages
        let verify: ((Model) -> Double)? = certified == nil ? nil : { model in
            let verified = IntervalBoundPropagation.certify(
                model, images: probeImages, labels: probe.labels, epsilon: settings.eps)
            return Double(verified.filter { $0 }.count) / Double(max(verified.count, 1))
        }
        let onEvent: (TrainingEvent) throws -> Void = { event in
            switch event {
            case .batch(let epoch, let done, let total, let loss, let accuracy):
                let decision = onProgress(
                    .batch(epoch: epoch, done: done, of: total, loss: loss, accuracy: accuracy))
                if decision == .stop { throw Stop() }
            case .epoch(let record, let snapshot):
                do throws(FileWriteError) {
                    try TrainingCheckpoint(
                        trainer: snapshot.trainer, position: snapshot.position, options: options,
                        metadata: metadata
                    ).write(to: resumeFile)
                } catch {
                    writeFailure = error
                    throw Stop()
                }
                if onProgress(.epoch(record)) == .stop { throw Stop() }
            }
        }
        let testImages = dataset.test.allImages
        let testLabels = dataset.test.labels
        let evaluate: (Model) -> Double? = { model in model.accuracy(testImages, labels: testLabels) }
        let history: [EpochRecord]
        do {
            history = try trainer.fit(
                source, plan: plan, from: &position, prepare: prepare, evaluate: evaluate, verify: verify,
                onEvent: onEvent)
        } catch {
            if let writeFailure { throw .failed(writeFailure) }
            do throws(FileWriteError) {
                try TrainingCheckpoint(
                    trainer: trainer, position: position, options: options, metadata: metadata
                )
                .write(to: resumeFile)
            } catch {
                throw .failed(error)
            }
            return .interrupted(position, resumeFile: resumeFile)
        }
        let seconds = history.reduce(0) { $0 + $1.seconds }
        let testAccuracy = history.last?.testAccuracy ?? 0
        var final = metadata
        final[Checkpoint.Key.command] = settings.command
        final[Checkpoint.Key.testAccuracy] = String(testAccuracy)
        final[Checkpoint.Key.trainingSeconds] = String(format: "%.1f", seconds)
        if let encoded = try? JSONEncoder().encode(history) {
            final[Checkpoint.Key.history] = String(decoding: encoded, as: UTF8.self)
        }
        do throws(FileWriteError) {
            try Checkpoint(model: trainer.model, metadata: final).write(to: output)
        } catch {
            throw .failed(error)
        }
        try? FileManager.default.removeItem(at: resumeFile)
        return .finished(
            TrainingSummary(
                output: output.relativePath, architecture: architecture.spec, dataset: dataset.name.rawValue,
                parameters: trainer.model.parameterCount, trainingImages: train.count,
                testAccuracy: testAccuracy,
                trainingSeconds: seconds, epochs: history))
    }
}

extension TrainingSettings {
    /// The certified training these settings ask for, checked; nil when they ask for none.
    public func intervalTraining() throws(ExperimentError) -> IntervalTraining? {
        guard let certified else { return nil }
        guard let method = IntervalTraining.Method(rawValue: certified) else {
            throw .invalid("certified training '\(certified)' is not one of \(IntervalTraining.Method.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        do throws(AdversarialError) {
            return try IntervalTraining(
                method: method, epsilon: trainEps ?? eps, kappa: kappa ?? 0.5, rampStart: rampStart ?? 1,
                rampEpochs: epsRamp ?? 10)
        } catch {
            throw .invalid("certified training \(certified): \(error.description)")
        }
    }
}
