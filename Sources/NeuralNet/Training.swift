import Foundation

/// One epoch of training, as printed and as stored in checkpoint metadata.
public struct EpochRecord: Codable, Sendable, Equatable {
    /// 1-based epoch number.
    public var epoch: Int
    /// Mean training loss over the epoch.
    public var loss: Double
    /// Fraction of training samples classified correctly during the epoch.
    public var trainAccuracy: Double
    /// Adversarial training: the fraction of the epoch's adversarial images classified
    /// correctly (nil for standard training).
    public var adversarialAccuracy: Double?
    /// Test accuracy after the epoch, when measured.
    public var testAccuracy: Double?
    /// Certified training: the fraction of the first 1,000 test images verified by IBP at
    /// the target ε after the epoch.
    public var verifiedAccuracy: Double?
    /// Wall time of the epoch's training steps.
    public var seconds: Double
    /// Training throughput.
    public var samplesPerSecond: Double
    /// The learning rate of the epoch's last step.
    public var learningRate: Double

    /// Creates a record.
    public init(
        epoch: Int, loss: Double, trainAccuracy: Double, adversarialAccuracy: Double? = nil, testAccuracy: Double?,
        seconds: Double, samplesPerSecond: Double, learningRate: Double
    ) {
        self.epoch = epoch
        self.loss = loss
        self.trainAccuracy = trainAccuracy
        self.adversarialAccuracy = adversarialAccuracy
        self.testAccuracy = testAccuracy
        self.seconds = seconds
        self.samplesPerSecond = samplesPerSecond
        self.learningRate = learningRate
    }
}

/// A model being trained: the model, its optimizer and the optimizer's state.
public struct Trainer: Sendable {
    /// The model, updated in place by every step.
    public var model: Model
    /// The update rule.
    public let optimizer: any Optimizer
    /// Per-parameter optimizer state, in ``Model/parameters`` order.
    public var optimizerState: [[Tensor]]
    /// The number of updates made so far.
    public var step: Int

    /// Starts training `model` with `optimizer`.
    public init(model: Model, optimizer: any Optimizer) {
        self.model = model
        self.optimizer = optimizer
        self.optimizerState = model.parameters.map { optimizer.makeState(for: $0) }
        self.step = 0
    }

    /// One update on a batch: softmax cross-entropy averaged over the batch.
    ///
    /// - Parameter seed: keys the dropout masks of this step.
    /// - Returns: the batch's mean loss and how many items it classified correctly
    ///   (before the update).
    public mutating func train(_ input: Tensor, labels: [Int], learningRate: Float, seed: UInt64) -> (loss: Double, correct: Int) {
        let step = train(TrainingBatch(input: input, labels: labels), learningRate: learningRate, seed: seed)
        return (step.loss, step.scoredCorrect)
    }

    /// One update on a prepared batch (for example adversarial images and their loss).
    ///
    /// - Returns: the summed loss divided by the number of labels, and how many of the
    ///   batch's scored rows and of its clean images were classified correctly before the
    ///   update.
    public mutating func train(_ batch: TrainingBatch, learningRate: Float, seed: UInt64)
        -> (loss: Double, scoredCorrect: Int, cleanCorrect: Int)
    {
        let result = batch.gradients(model, seed)
        step += 1
        // Updated in place (no copies of the parameters); the state is moved out meanwhile.
        var state = optimizerState
        optimizerState = []
        let (optimizer, step) = (self.optimizer, self.step)
        model.updateParameters { index, parameter in
            optimizer.update(
                &parameter, gradient: result.parameterGradients[index], state: &state[index], step: step,
                learningRate: learningRate)
        }
        optimizerState = state
        if !result.runningBuffers.isEmpty { model.buffers = result.runningBuffers }
        let predictions = argmax(rows: result.logits)
        func correct(_ rows: Range<Int>) -> Int { zip(rows, batch.labels).filter { predictions[$0] == $1 }.count }
        let scored = correct(batch.scoredRows)
        let clean: Int
        switch batch.clean {
        case .scoredRows: clean = scored
        case .rows(let rows): clean = correct(rows)
        case .counted(let count): clean = count
        }
        return (result.losses.reduce(0) { $0 + Double($1) } / Double(batch.labels.count), scored, clean)
    }
}

/// What one training step trains on: the parameter gradients of its loss at the current
/// weights, the labels of its clean images, and which rows of the gradients' logits count
/// for the reported accuracy.
public struct TrainingBatch: Sendable {
    /// The step's forward and backward pass: given the model and the step's dropout seed,
    /// the per-row losses, the scored logits and the parameter gradients (of the loss
    /// averaged over the batch).
    public var gradients: @Sendable (_ model: Model, _ seed: UInt64) -> ModelGradients
    /// The labels of the clean images.
    public var labels: [Int]
    /// The rows of the logits scored for accuracy, in the order of `labels`.
    public var scoredRows: Range<Int>
    /// Where the step's clean accuracy comes from.
    public var clean: CleanScore

    /// Where a step finds how many clean images the model got right before it.
    public enum CleanScore: Sendable, Equatable {
        /// The scored rows are the clean images (plain training).
        case scoredRows
        /// These rows of the gradients' logits are the clean images, in the order of
        /// `labels` (TRADES' pass over clean and adversarial images, certified training's
        /// natural pass).
        case rows(Range<Int>)
        /// Counted before the step, when the logits hold no clean rows (PGD training).
        case counted(Int)
    }

    /// Whether the scored rows are something other than the clean images (adversarial or
    /// worst-case logits), so that they count as the epoch's adversarial accuracy.
    public var scoresAdversarialRows: Bool { clean != .scoredRows }

    /// A plain batch: mean cross-entropy over clean images.
    public init(input: Tensor, labels: [Int]) {
        let scale = 1 / Float(labels.count)
        self.init(
            input: input, labels: labels, scoredRows: 0..<labels.count, clean: .scoredRows,
            loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows], gradientScale: scale) })
    }

    /// A batch of `input` with its own loss over the logits.
    public init(input: Tensor, labels: [Int], scoredRows: Range<Int>, clean: CleanScore, loss: @escaping LogitLoss) {
        self.init(labels: labels, scoredRows: scoredRows, clean: clean) { model, seed in
            model.gradients(input, training: seed, needsInputGradient: false, needsParameterGradients: true, loss: loss)
        }
    }

    /// A batch whose gradients come from their own pass (certified training's bounds).
    public init(
        labels: [Int], scoredRows: Range<Int>, clean: CleanScore,
        gradients: @escaping @Sendable (_ model: Model, _ seed: UInt64) -> ModelGradients
    ) {
        self.gradients = gradients
        self.labels = labels
        self.scoredRows = scoredRows
        self.clean = clean
    }
}

/// Turns a clean batch into what a step trains on, given the model at the current weights
/// and the 0-based global step and the total number of steps (for warm-ups).
public typealias BatchPreparation = (_ model: Model, _ input: Tensor, _ labels: [Int], _ step: Int, _ totalSteps: Int) -> TrainingBatch

/// What a training run does: epochs, learning rate and its schedule, seed.
public struct TrainingPlan: Sendable {
    public var epochs: Int
    public var learningRate: Float
    public var schedule: LearningRateSchedule
    public var seed: UInt64

    /// Creates a plan.
    public init(epochs: Int, learningRate: Float, schedule: LearningRateSchedule, seed: UInt64) {
        self.epochs = epochs
        self.learningRate = learningRate
        self.schedule = schedule
        self.seed = seed
    }
}

/// Progress of a training run, for display.
public enum TrainingEvent: Sendable {
    /// A batch finished: epoch (1-based), batches done and total, running mean loss and accuracy.
    case batch(epoch: Int, done: Int, of: Int, loss: Double, accuracy: Double)
    /// An epoch finished; the snapshot is the run right after it.
    case epoch(EpochRecord, snapshot: TrainingSnapshot)
}

/// Where a training run is: enough, with the trainer, to resume it exactly.
public struct TrainingPosition: Codable, Sendable, Equatable {
    /// The 0-based epoch in progress.
    public var epoch = 0
    /// The next batch of that epoch.
    public var batch = 0
    /// Running sums of the epoch in progress.
    public var lossSum = 0.0, correct = 0, adversarialCorrect = 0, seen = 0, seconds = 0.0
    /// The finished epochs.
    public var records: [EpochRecord] = []

    /// The start of a run.
    public init() {}
}

/// A copy of a run at the end of an epoch, for writing a resumable checkpoint.
public struct TrainingSnapshot: Sendable {
    public let trainer: Trainer
    public let position: TrainingPosition
}

extension Trainer {
    /// Trains over `source` until `plan.epochs` epochs are done, continuing from `position`
    /// (a fresh ``TrainingPosition`` starts at the beginning), which it keeps up to date:
    /// when `onEvent` throws to stop the run, `self` and `position` hold the state after the
    /// last finished batch, and the run resumes exactly from there.
    ///
    /// Batches, shuffles, dropout masks and random starts are keyed by epoch and step, so a
    /// resumed run computes the same numbers as an uninterrupted one.
    ///
    /// - Parameters:
    ///   - prepare: builds each step's batch from the clean one (adversarial training);
    ///     nil trains on the clean batch with cross-entropy.
    ///   - evaluate: measures test accuracy after each epoch (or returns nil).
    ///   - verify: measures verified accuracy after each epoch (certified training), or nil.
    ///   - onEvent: called after every batch and epoch; it may throw to stop the run.
    /// - Returns: the records of all finished epochs.
    @discardableResult
    public mutating func fit(
        _ source: any BatchSource, plan: TrainingPlan, from position: inout TrainingPosition,
        prepare: BatchPreparation? = nil, evaluate: (Model) -> Double? = { _ in nil },
        verify: ((Model) -> Double)? = nil, onEvent: (TrainingEvent) throws -> Void = { _ in }
    ) rethrows -> [EpochRecord] {
        let perEpoch = source.batchesPerEpoch
        let totalSteps = perEpoch * plan.epochs
        let clock = ContinuousClock()
        var rate: Float = plan.learningRate
        while position.epoch < plan.epochs {
            let epoch = position.epoch
            while position.batch < perEpoch {
                let index = position.batch
                let (input, labels) = source.batch(epoch: epoch, index: index)
                let globalStep = epoch * perEpoch + index
                rate = plan.schedule.learningRate(
                    base: plan.learningRate, step: globalStep, stepsPerEpoch: perEpoch, totalSteps: totalSteps)
                let start = clock.now
                let batch = prepare?(model, input, labels, globalStep, totalSteps) ?? TrainingBatch(input: input, labels: labels)
                let (loss, scored, clean) = train(
                    batch, learningRate: rate, seed: plan.seed &+ UInt64(globalStep) &* 0x9E37_79B9)
                position.seconds += (clock.now - start).seconds
                position.lossSum += loss * Double(labels.count)
                position.correct += clean
                if batch.scoresAdversarialRows { position.adversarialCorrect += scored }
                position.seen += labels.count
                position.batch += 1
                let seen = Double(position.seen)
                try onEvent(.batch(epoch: epoch + 1, done: index + 1, of: perEpoch, loss: position.lossSum / seen,
                                   accuracy: Double(position.correct) / seen))
            }
            let seen = Double(max(position.seen, 1))
            var record = EpochRecord(
                epoch: epoch + 1, loss: position.lossSum / seen, trainAccuracy: Double(position.correct) / seen,
                adversarialAccuracy: prepare == nil ? nil : Double(position.adversarialCorrect) / seen,
                testAccuracy: evaluate(model), seconds: position.seconds,
                samplesPerSecond: Double(position.seen) / max(position.seconds, 1e-9), learningRate: Double(rate))
            record.verifiedAccuracy = verify?(model)
            var next = TrainingPosition()
            next.epoch = epoch + 1
            next.records = position.records + [record]
            position = next
            try onEvent(.epoch(record, snapshot: TrainingSnapshot(trainer: self, position: position)))
        }
        return position.records
    }

    /// Trains `plan.epochs` epochs from the start; see ``fit(_:plan:from:prepare:evaluate:verify:onEvent:)``.
    @discardableResult
    public mutating func fit(
        _ source: any BatchSource, plan: TrainingPlan, prepare: BatchPreparation? = nil,
        evaluate: (Model) -> Double? = { _ in nil }, onEvent: (TrainingEvent) throws -> Void = { _ in }
    ) rethrows -> [EpochRecord] {
        var position = TrainingPosition()
        return try fit(source, plan: plan, from: &position, prepare: prepare, evaluate: evaluate, onEvent: onEvent)
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    public var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
