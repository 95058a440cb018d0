import Adversarial
import Datasets
import Foundation
import NeuralNet
import Testing
import Visuals

@testable import Experiments

/// A fresh temporary directory.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
        "deceive-experiments-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Settings of a quick run on the first `limit` MNIST training images.
func quickSettings(limit: Int, epochs: Int) -> TrainingSettings {
    TrainingSettings(
        architecture: "seed", dataset: "mnist", epochs: epochs, batchSize: 64, learningRate: 3e-3,
        optimizer: "adam",
        momentum: 0.9, weightDecay: 0, schedule: "onecycle", augment: false, seed: 7, limit: limit,
        adversarial: "none", eps: 0.3, attackSteps: nil, attackStepSize: nil, epsWarmup: 0, beta: 6,
        command: "test")
}

/// A model trained by ``TrainingRun`` on 3,000 images (about 95% accurate), shared by these tests.
let trainedModel: Model = {
    let directory = try! temporaryDirectory()
    let output = directory.appendingPathComponent("model.safetensors")
    let outcome = try! TrainingRun(settings: quickSettings(limit: 3000, epochs: 2), output: output).run(
        dataDirectory: nil)
    guard case .finished = outcome else { fatalError("training did not finish") }
    return try! Checkpoint.load(from: output).model
}()

let testSet: LabeledImages = try! DataStore(dataset: .mnist).load().test.prefix(200)

@Suite struct ParsingTests {
    @Test func targets() throws {
        #expect(try TargetMode(parsing: "3") == .fixed(3))
        #expect(try TargetMode(parsing: "random") == .random)
        for text in ["least-likely", "leastlikely", "ll"] {
            #expect(try TargetMode(parsing: text) == .leastLikely)
        }
        for bad in ["10", "-1", "seven", ""] {
            #expect(throws: ExperimentError.self) { try TargetMode(parsing: bad) }
        }
    }

    @Test func epsilons() throws {
        #expect(try parseEpsilons("0.3") == [0.3])
        #expect(try parseEpsilons("0, 0.05,0.1") == [0, 0.05, 0.1])
        for bad in ["abc", "0.1,x", "-0.1", "nan", "inf", ""] {
            #expect(throws: ExperimentError.self) { try parseEpsilons(bad) }
        }
    }

    @Test func penalties() throws {
        #expect(try Fooling.Regularization(parsing: "l2") == .init(l2: 0.01, totalVariation: 0))
        #expect(try Fooling.Regularization(parsing: "l2,tv") == .init(l2: 0.01, totalVariation: 0.1))
        #expect(
            try Fooling.Regularization(parsing: "tv=0.3, l2=0.05") == .init(l2: 0.05, totalVariation: 0.3))
        for bad in ["blur", "l2=-1", "tv=x"] {
            #expect(throws: ExperimentError.self) { try Fooling.Regularization(parsing: bad) }
        }
    }

    @Test func attackSettingsRejectWhatDoesNotApply() throws {
        let cw = AttackSettings(method: .cw, parameters: AttackParameters(epsilon: 0.3))
        let error = try #require(throws: ExperimentError.self) { try cw.attack() }
        #expect(error.kind == .invalidInput && error.description.contains("epsilon"))
        #expect(try AttackSettings(method: .pgd).with(epsilon: 0.1).attack() is ProjectedGradientDescent)
    }
}

@Suite struct ConfusionMatrixTests {
    @Test func workedByHand() {
        // Two 1s, one read as 2; the 0 and the 2 right.
        let matrix = ConfusionMatrix(labels: [0, 1, 1, 2], predictions: [0, 1, 2, 2], classes: 3)
        #expect(matrix.counts == [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
        #expect(matrix.total == 4 && matrix.correct == 3 && matrix.accuracy == 0.75)
        #expect(matrix.perClassAccuracy == [1, 0.5, 1])
        #expect(jsonText(matrix) == jsonText([[1, 0, 0], [0, 1, 1], [0, 0, 1]]))
    }

    @Test func evaluationAgreesWithTheModel() {
        let evaluation = AccuracyEvaluation(
            model: trainedModel, images: testSet.allImages, labels: testSet.labels, modelName: "m",
            dataset: "mnist")
        #expect(evaluation.images == 200 && evaluation.confusionMatrix.total == 200)
        #expect(evaluation.accuracy == trainedModel.accuracy(testSet.allImages, labels: testSet.labels))
        #expect(evaluation.accuracy > 0.9)
        #expect(evaluation.predictions == trainedModel.predictions(testSet.allImages))
        let json = jsonText(evaluation)
        for key in [
            "model", "dataset", "images", "accuracy", "perClassAccuracy", "confusionMatrix", "seconds",
        ] {
            #expect(json.contains("\"\(key)\""))
        }
        #expect(!json.contains("predictions"))
    }
}

@Suite struct FoolingExperimentTests {
    @Test func theConfidenceIsTheOneAfterThePNGRoundTrip() throws {
        let experiment = try FoolingExperiment(
            targets: Array(0..<10), fooling: Fooling(confidence: 0.99, maxSteps: 300))
        let outcome = try experiment.run(model: trainedModel)
        #expect(outcome.targets.allSatisfy { $0.success })
        // The PNG bytes decode to the checked images, which are the optimised 8-bit images.
        for row in 0..<10 {
            #expect(try GreyImage(png: outcome.imagePNGs[row]).tensor().scalars == outcome.image(row).scalars)
            #expect(
                try GreyImage(png: outcome.startPNGs[row]).tensor().scalars
                    == outcome.result.starts.batch(row..<row + 1).scalars)
        }
        #expect(outcome.images.scalars == outcome.result.images.scalars)
        #expect(outcome.probabilities.scalars == trainedModel.probabilities(outcome.images).scalars)
        for (row, numbers) in outcome.targets.enumerated() {
            #expect(numbers.target == row)
            #expect(numbers.confidenceAfterPNG == outcome.probabilities.scalars[row * 10 + row])
            #expect(numbers.confidenceAfterPNG >= 0.99 && numbers.predictedAfterPNG == row)
            #expect(abs(numbers.confidence - numbers.confidenceAfterPNG) < 1e-5)
        }
    }

    @Test func writesWhatWasChecked() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let experiment = try FoolingExperiment(targets: [3, 8], fooling: Fooling(maxSteps: 300))
        let outcome = try experiment.run(model: trainedModel)
        let summary = try outcome.write(
            to: directory, model: "m.safetensors", start: "noise", command: "test")
        #expect(summary.targets.map(\.numbers.target) == [3, 8] && summary.model == "m.safetensors")
        for (row, digit) in [3, 8].enumerated() {
            #expect(
                try Data(contentsOf: directory.appendingPathComponent("\(digit).png"))
                    == outcome.imagePNGs[row])
            #expect(summary.targets[row].image == directory.appendingPathComponent("\(digit).png").path)
        }
        let tensors = try Safetensors.read(from: directory.appendingPathComponent("fooling.safetensors"))
        #expect(tensors.tensors["probabilities"]?.scalars == outcome.probabilities.scalars)
        #expect(tensors.tensors["targets"]?.scalars == [3, 8])
        for name in ["grid.png", "trajectory.json", "summary.json", "start-3.png"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path))
        }
    }

    @Test func aStoppedRunIsCheckedTheSameWay() throws {
        let experiment = try FoolingExperiment(
            targets: Array(0..<10), fooling: Fooling(confidence: 0.9999, maxSteps: 300))
        var seen = 0
        let outcome = try experiment.run(model: trainedModel) { _ in
            seen += 1
            return seen == 2 ? .stop : .proceed
        }
        #expect(outcome.stopped && seen == 2)
        #expect(outcome.result.steps == Array(repeating: 2, count: 10))
        #expect(outcome.probabilities.scalars == trainedModel.probabilities(outcome.images).scalars)
        #expect(outcome.targets.allSatisfy { $0.success == ($0.confidenceAfterPNG >= 0.9999) })
    }

    @Test func badInputsAreInvalid() throws {
        #expect(throws: ExperimentError.self) { try FoolingExperiment(targets: [], fooling: Fooling()) }
        let error = try #require(throws: ExperimentError.self) {
            try FoolingExperiment(targets: [12], fooling: Fooling()).run(model: trainedModel)
        }
        #expect(error.kind == .invalidInput)
    }
}

@Suite struct AttackRunTests {
    @Test func runsReportsAndWrites() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let settings = AttackSettings(method: .pgd, parameters: AttackParameters(epsilon: 0.2, steps: 10))
        let run = try AttackRun.run(
            settings, model: trainedModel, images: testSet.allImages, labels: testSet.labels)
        #expect(run.attack == "pgd" && run.epsilon == 0.2)
        #expect(run.cleanPredictions == trainedModel.predictions(testSet.allImages))
        #expect(run.report.images == 200 && run.report.robustAccuracy < run.report.cleanAccuracy)
        try run.write(to: directory, model: trainedModel, command: "test")
        let file = try Safetensors.read(from: directory.appendingPathComponent("adversarial.safetensors"))
        #expect(file.tensors["adversarial"]?.scalars == run.result.adversarial.scalars)
        #expect(file.tensors["predictions"]?.scalars == run.result.predictions.map(Float.init))
        let gallery = try RGBImage(contentsOfPNG: directory.appendingPathComponent("gallery.png"))
        #expect(gallery.width == run.gallery(model: trainedModel).width)
    }

    @Test func theGalleryShowsWhatTheAttackFooledBeforeWhatItFailedOn() throws {
        // A weak attack, so that it both fools and fails.
        let settings = AttackSettings(method: .fgsm, parameters: AttackParameters(epsilon: 0.08))
        let run = try AttackRun.run(settings, model: trainedModel, images: testSet.allImages, labels: testSet.labels)
        let correct = run.labels.indices.filter { run.cleanPredictions[$0] == run.labels[$0] }
        let fooled = correct.filter { run.result.success[$0] }
        try #require(!fooled.isEmpty && fooled.count < correct.count, "FGSM at 0.08 should fool some digits, not all")
        #expect(run.galleryItems(count: fooled.count) == fooled)
        #expect(run.galleryItems(count: 3) == Array(fooled.prefix(3)))
        let all = run.galleryItems(count: run.labels.count)
        #expect(all == fooled + correct.filter { !run.result.success[$0] })
        #expect(run.galleryItems(count: 0).isEmpty)
        // One column per shown digit; a failure's caption is drawn in the failure colour.
        func failureInk(_ picture: RGBImage) -> Int {
            var count = 0
            for y in 0..<picture.height {
                for x in 0..<picture.width where picture[x, y] == AttackRun.failureColour { count += 1 }
            }
            return count
        }
        let onlyFooled = run.gallery(model: trainedModel, count: fooled.count, scale: 1)
        let withFailure = run.gallery(model: trainedModel, count: fooled.count + 1, scale: 1)
        #expect(failureInk(onlyFooled) == 0 && failureInk(withFailure) > 0)
        #expect(onlyFooled.width < withFailure.width)
    }

    @Test func aStoppedRunReportsThePrefixItAttacked() throws {
        let settings = AttackSettings(method: .pgd, parameters: AttackParameters(epsilon: 0.1, steps: 20))
        let images = testSet.allImages
        // Batches of 80: stop at the third step of the first.
        var steps = 0
        let run = try AttackRun.run(
            try settings.attack(), model: trainedModel, images: images, labels: testSet.labels, batchSize: 80,
            observer: { _ in
                steps += 1
                return steps == 3 ? .stop : .proceed
            })
        #expect(run.result.stopped)
        #expect(run.labels.count == 80 && run.report.images == 80 && run.originals.batchSize == 80)
        #expect(run.result.iterations.allSatisfy { $0 <= 3 })
    }

    @Test func theCurveStartsAtCleanAccuracyAndFalls() throws {
        let points = try robustnessCurve(
            model: trainedModel,
            settings: AttackSettings(method: .pgd, parameters: AttackParameters(steps: 10)),
            epsilons: [0, 0.1, 0.3], images: testSet.allImages, labels: testSet.labels)
        #expect(points.map(\.epsilon) == [0, 0.1, 0.3])
        let accuracy = trainedModel.accuracy(testSet.allImages, labels: testSet.labels)
        #expect(points[0].report.robustAccuracy == accuracy)
        #expect(points[1].report.robustAccuracy < accuracy)
        #expect(points[2].report.robustAccuracy <= points[1].report.robustAccuracy)
    }
}

@Suite struct UniversalRunTests {
    /// The first 2,000 MNIST training digits: the perturbation's only teacher.
    static let training: LabeledImages = try! DataStore(dataset: .mnist).load().train.prefix(2000)

    @Test func thePerturbationIsLearnedWithoutTheScoredImages() throws {
        let universal = try UniversalPerturbation(epsilon: 0.3, epochs: 1, restarts: 1)
        let training = (Self.training.allImages, Self.training.labels)
        let first = testSet.prefix(100), second = try DataStore(dataset: .mnist).load().test.prefix(300)
        let a = try UniversalRun.run(
            universal, model: trainedModel, training: training, images: first.allImages, labels: first.labels)
        let b = try UniversalRun.run(
            universal, model: trainedModel, training: training, images: second.allImages, labels: second.labels)
        // Whichever digits are scored, the perturbation is the same bits: they play no part
        // in it, and it is what learning on the training digits alone gives.
        let alone = try universal.learn(
            model: trainedModel, images: training.0, labels: training.1, seed: 1)
        #expect(a.learning.perturbation == b.learning.perturbation)
        #expect(a.learning.perturbation == alone.perturbation)
        #expect(a.trainingImages == 2000 && a.attack.labels.count == 100 && b.attack.labels.count == 300)
        // The fooling rate is the report's success rate: correctly classified digits whose
        // prediction changed.
        let changed = a.attack.labels.indices.filter {
            a.attack.cleanPredictions[$0] == a.attack.labels[$0]
                && a.attack.result.predictions[$0] != a.attack.cleanPredictions[$0]
        }
        let correct = a.attack.labels.indices.filter { a.attack.cleanPredictions[$0] == a.attack.labels[$0] }
        #expect(a.foolingRate == Double(changed.count) / Double(correct.count))
    }

    @Test func writesThePerturbationBesideTheAdversarials() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let run = try UniversalRun.run(
            try UniversalPerturbation(epsilon: 0.2, epochs: 1, restarts: 1), model: trainedModel,
            training: (Self.training.allImages, Self.training.labels), images: testSet.allImages,
            labels: testSet.labels)
        try run.write(to: directory, model: trainedModel, command: "test")
        let file = try Safetensors.read(from: directory.appendingPathComponent("adversarial.safetensors"))
        let perturbation = try #require(file.tensors["perturbation"])
        #expect(perturbation.shape == [1, 1, 28, 28] && perturbation == run.learning.perturbation)
        let picture = try RGBImage(contentsOfPNG: directory.appendingPathComponent("perturbation.png"))
        #expect(picture.width == 28 * 8 && picture.height == 28 * 8)
        #expect(run.summary.foolingRate == run.foolingRate && run.summary.norm == "linf")
    }
}

@Suite struct TrainingRunTests {
    @Test func aStoppedRunResumesToTheSameWeights() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let settings = quickSettings(limit: 320, epochs: 2)  // 5 batches an epoch
        let reference = directory.appendingPathComponent("reference.safetensors")
        var events: [String] = []
        let outcome = try TrainingRun(settings: settings, output: reference).run(dataDirectory: nil) {
            progress in
            switch progress {
            case .started(let start): events.append("started \(start.trainingImages) \(start.parameters)")
            case .batch(let epoch, let done, _, _, _): events.append("batch \(epoch).\(done)")
            case .epoch(let record): events.append("epoch \(record.epoch)")
            }
            return .proceed
        }
        guard case .finished(let summary) = outcome else {
            Issue.record("not finished")
            return
        }
        #expect(summary.epochs.count == 2 && summary.trainingImages == 320)
        #expect(events.first == "started 320 \(try Model(architecture: .seed, seed: 7).parameterCount)")
        #expect(events.filter { $0.hasPrefix("batch") }.count == 10)
        #expect(events.filter { $0.hasPrefix("epoch") } == ["epoch 1", "epoch 2"])

        // Stop after the 7th batch (the second of epoch 2), then resume.
        let output = directory.appendingPathComponent("stopped.safetensors")
        var batches = 0
        let stopped = try TrainingRun(settings: settings, output: output).run(dataDirectory: nil) {
            progress in
            if case .batch = progress { batches += 1 }
            return batches == 7 ? .stop : .proceed
        }
        guard case .interrupted(let position, let resumeFile) = stopped else {
            Issue.record("not stopped")
            return
        }
        #expect(position.epoch == 1 && position.batch == 2)
        #expect(resumeFile == TrainingRun.resumeURL(for: output))
        #expect(!FileManager.default.fileExists(atPath: output.path))
        let resumed = try TrainingRun(
            settings: quickSettings(limit: 1, epochs: 9), output: output, resume: resumeFile)
        #expect(resumed.settings == settings)
        guard case .finished = try resumed.run(dataDirectory: nil) else {
            Issue.record("resume did not finish")
            return
        }
        #expect(try Safetensors.read(from: output).tensors == Safetensors.read(from: reference).tensors)
        #expect(!FileManager.default.fileExists(atPath: resumeFile.path))
    }
}

extension Model {
    /// A fresh model, for its parameter count.
    init(architecture: Architecture, seed: UInt64) throws {
        var generator = SplitMix64(seed: seed)
        try self.init(architecture: architecture, generator: &generator)
    }
}

@Suite struct ReportMedianTests {
    /// Three 1×1×2 "images" at L2 distances 5, 1 and 2 from zero.
    let originals = Tensor(shape: [3, 1, 1, 2], scalars: [0, 0, 0, 0, 0, 0])
    let adversarial = Tensor(shape: [3, 1, 1, 2], scalars: [3, 4, 1, 0, 0, 2])

    @Test func aFailureCountsAsInfinitelyFar() {
        let median = ReportBuilder.medianL2
        #expect(median(adversarial, [true, true, true], originals, [0, 1, 2]) == 2)
        // 1, 2, ∞
        #expect(median(adversarial, [false, true, true], originals, [0, 1, 2]) == 2)
        // 1, ∞, ∞
        #expect(median(adversarial, [false, true, false], originals, [0, 1, 2]) == .infinity)
        // Even counts average the middle two: (1 + 5) / 2; with a failure (5 + ∞) / 2.
        #expect(median(adversarial, [true, true, true], originals, [0, 1]) == 3)
        #expect(median(adversarial, [true, false, true], originals, [0, 1]) == .infinity)
        // Only `items` count.
        #expect(median(adversarial, [false, true, true], originals, [1, 2]) == 1.5)
        #expect(median(adversarial, [true, true, true], originals, []) == .infinity)
    }
}
