import Adversarial
import ArgumentParser
import Datasets
import Experiments
import Foundation
import NeuralNet
import Synchronization

/// `deceive train`.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train", abstract: "Train a network and save it as a safetensors checkpoint.")

    @Option(help: "Architecture: seed, madry, or a spec such as 'conv32k3 relu maxpool2 flatten dense10' (layers: conv<F>k<R>[s<S>][p<P>], maxpool<K>[s<S>], relu, flatten, dense<N>, dropout<P>, batchnorm).")
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

    @Option(help: "Adversarial or certified training: the L∞ radius ε (certified runs report IBP-verified accuracy at it).")
    var eps: Float = 0.3

    @Option(help: "Adversarial training: inner attack steps (default: pgd 7, trades 10, fgsm-rs 1).")
    var attackSteps: Int?

    @Option(help: "Adversarial training: inner attack step size (default: pgd 2.5ε/steps, trades ε/4, fgsm-rs 1.25ε).")
    var attackStepSize: Float?

    @Option(help: "Adversarial training: epochs over which ε grows linearly from 0.")
    var epsWarmup: Double = 0

    @Option(help: "TRADES: weight β of the robustness term.")
    var beta: Float = 6

    @Option(
        help: """
            Certified training: ibp (interval bound propagation, Gowal et al. 2018) or crown-ibp \
            (Zhang et al. 2020: CROWN's tighter bound mixed in, its weight falling from 1 to 0 over the ramp).
            """)
    var certified: IntervalTraining.Method?

    @Option(help: "Certified training: the ε of the verified loss (default: --eps; the papers train at 0.4 for 0.3).")
    var trainEps: Float?

    @Option(help: "Certified training: epochs of natural training before the ε ramp.")
    var rampStart: Double = 1

    @Option(help: ArgumentHelp(
        "Certified training: epochs over which ε grows linearly from 0 and κ falls from 1.", valueName: "epochs"))
    var epsRamp: Double = 10

    @Option(help: "Certified training: the final weight κ of the natural loss (1 − κ goes to the verified loss).")
    var kappa: Float = 0.5

    @Option(name: .customLong("init"), help: "Initialisation: pytorch (default) or ibp (Shi et al. 2021, made for networks with BatchNorm).")
    var initialization: InitializationName?

    @Option(help: ArgumentHelp(
        "Continue an interrupted run from its resumable checkpoint (written next to --output as NAME.resume.safetensors at the end of every epoch and on SIGINT/SIGTERM); its options override the others.",
        valueName: "file"))
    var resume: String?

    @Flag(help: "Print a JSON summary on standard output (per-epoch lines go to standard error).")
    var json = false

    enum OptimizerName: String, ExpressibleByArgument, CaseIterable { case adam, sgd }
    enum InitializationName: String, ExpressibleByArgument, CaseIterable { case pytorch, ibp }

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
        let architecture = try arch.resolved()
        // Both datasets have 10 classes; a description that ends elsewhere would train a
        // model that can never be right.
        guard architecture.classCount == 10 else {
            throw ValidationError(
                "--arch '\(arch.text)': it outputs \(architecture.classCount) scores, but the dataset has 10 classes: end with dense10")
        }
        guard epsWarmup.isFinite, epsWarmup >= 0 else { throw ValidationError("--eps-warmup must be ≥ 0 epochs") }
        _ = try adversarialTraining()
        if certified != nil && adversarial != .none {
            throw ValidationError("--certified and --adversarial cannot be combined: choose one")
        }
        do {
            _ = try settings.intervalTraining()
        } catch {
            throw ValidationError(error.description)
        }
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

    /// What defines the run, as saved in resumable checkpoints.
    var settings: TrainingSettings {
        /// The certified-training options count only with --certified.
        func ifCertified<T>(_ value: T) -> T? { certified == nil ? nil : value }
        return TrainingSettings(
            architecture: arch.text, dataset: data.dataset.rawValue, epochs: epochs, batchSize: batchSize,
            learningRate: learningRate, optimizer: optimizer.rawValue, momentum: momentum, weightDecay: weightDecay,
            schedule: schedule, augment: augment, seed: seed, limit: limit, adversarial: adversarial.rawValue, eps: eps,
            attackSteps: attackSteps, attackStepSize: attackStepSize, epsWarmup: epsWarmup, beta: beta,
            certified: certified?.rawValue, trainEps: ifCertified(trainEps ?? eps),
            rampStart: ifCertified(rampStart), epsRamp: ifCertified(epsRamp), kappa: ifCertified(kappa),
            initialization: initialization == .ibp ? "ibp" : nil,
            command: commandLine)
    }

    func run() throws {
        try runReportingErrors { try train() }
    }

    private func train() throws {
        let outputURL = URL(fileURLWithPath: output)
        try checkWritable(outputURL)
        let run = try TrainingRun(
            settings: settings, output: outputURL, resume: resume.map { URL(fileURLWithPath: $0) })
        let quiet = json
        func say(_ line: String) {
            if quiet { printError(line) } else { print(line) }
            // Show each line at once, also when standard output is a file or a pipe.
            fflush(nil)
        }
        let backend = try BLASBackend.load()
        InterruptSignal.install()
        var bar = ProgressBar()
        let epochs = run.settings.epochs
        let onProgress: (TrainingProgress) -> StepDecision = { progress in
            switch progress {
            case .started(let start):
                say(describe(start))
                say("engine: \(backend.summary)")
                if let warning = backend.warning { printError("deceive: WARNING: \(warning)") }
                if let position = start.resumedAt {
                    say("resuming \(resume ?? "") at epoch \(position.epoch + 1), batch \(position.batch)")
                }
                if let defence = start.defence {
                    say(describe(defence, warmup: start.settings.epsWarmup))
                }
                if let certified = start.certified {
                    say(describe(certified, target: start.settings.eps, initialization: start.settings.initialization))
                }
            case let .batch(epoch, done, total, loss, accuracy):
                let detail = String(format: "loss %.4f  train ", loss) + percent(accuracy)
                bar.draw("epoch \(epoch)/\(epochs)", done: done, of: total, detail: detail)
            case .epoch(let record):
                bar.clear()
                say(describe(record, of: epochs))
            }
            return InterruptSignal.received ? .stop : .proceed
        }
        let outcome = try run.run(
            dataDirectory: data.dataDir.map { URL(fileURLWithPath: $0) }, onProgress: onProgress,
            log: { printError($0) })
        switch outcome {
        case let .interrupted(position, resumeFile):
            bar.clear()
            printError(
                "deceive: interrupted at epoch \(position.epoch + 1), batch \(position.batch); "
                    + "continue with: deceive train --resume \(resumeFile.path) --output \(output)")
            throw ExitCode(130)
        case .finished(let summary):
            say(
                "test accuracy \(percent(summary.testAccuracy)) after "
                    + String(format: "%.1f s", summary.trainingSeconds) + " of training; wrote \(output)")
            if json { print(jsonText(summary)) }
        }
    }
}

/// The first lines of a run: what it trains, on what, and how.
func describe(_ start: TrainingStart) -> String {
    let settings = start.settings
    return "training \(start.architecture) (\(start.parameters) parameters) on \(start.trainingImages) "
        + "\(start.dataset.rawValue) images\n"
        + "\(settings.optimizer), lr \(settings.learningRate), \(start.schedule), batch \(settings.batchSize)"
        + (settings.augment ? ", augmented" : "") + ", \(start.threads) threads"
}

/// The adversarial-training line of a run.
func describe(_ defence: AdversarialTraining, warmup: Double) -> String {
    "adversarial training: \(defence.method.rawValue), ε \(defence.epsilon), "
        + "\(defence.steps) steps of \(defence.stepSize)"
        + (defence.method == .trades ? ", β \(defence.beta)" : "")
        + (warmup > 0 ? ", ε warm-up over \(warmup) epochs" : "")
}

/// The certified-training line of a run.
func describe(_ training: IntervalTraining, target: Float, initialization: String?) -> String {
    "certified training: \(training.method.rawValue), training ε \(training.epsilon), κ 1 → \(training.kappa), "
        + "natural for \(training.rampStart) epochs, then ramped over \(training.rampEpochs) epochs"
        + (training.method == .crownIBP ? " (CROWN-IBP's weight β 1 → 0), " : ", ")
        + "\(initialization ?? "pytorch") initialisation; verified accuracy at ε \(target) on the first 1,000 test digits"
}

/// SIGINT and SIGTERM ask a training run to stop after its current batch and save a
/// resumable checkpoint; a second signal kills as usual.
enum InterruptSignal {
    private static let flag = Atomic<Bool>(false)
    nonisolated(unsafe) private static var sources: [DispatchSourceSignal] = []

    static var received: Bool { flag.load(ordering: .relaxed) }

    static func install() {
        guard sources.isEmpty else { return }
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                if flag.exchange(true, ordering: .relaxed) {
                    // Second signal: stop now.
                    signal(number, SIG_DFL)
                    raise(number)
                }
            }
            source.resume()
            sources.append(source)
        }
    }
}

/// One line per epoch: loss, accuracies, time and throughput.
func describe(_ record: EpochRecord, of epochs: Int) -> String {
    "epoch \(record.epoch)/\(epochs)  " + String(format: "loss %.4f", record.loss) + "  train "
        + percent(record.trainAccuracy)
        + (record.adversarialAccuracy.map { (record.verifiedAccuracy == nil ? "  adversarial " : "  verified-train ") + percent($0) } ?? "")
        + "  test " + (record.testAccuracy.map(percent) ?? "–")
        + (record.verifiedAccuracy.map { "  verified " + percent($0) } ?? "")
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

extension AdversarialTraining.Method: ExpressibleByArgument {}

extension IntervalTraining.Method: ExpressibleByArgument {}
