import Adversarial
import Datasets
import Foundation
import NeuralNet
import Testing

@testable import Experiments

/// `deceive train --certified ibp` end to end on a subset: the run records the verified accuracy
/// of each epoch, and a short certified run proves far more test digits robust than the same
/// run trained naturally.
@Suite struct CertifiedTrainingTests {
    func settings(certified: Bool) -> TrainingSettings {
        var settings = quickSettings(limit: 6000, epochs: 4)
        settings.architecture = "conv16k4s2p1 relu conv32k4s2p1 relu flatten dense100 relu dense10"
        settings.schedule = "constant"
        settings.learningRate = 1e-3
        settings.eps = 0.1
        if certified {
            settings.certified = "ibp"
            settings.trainEps = 0.15
            settings.rampStart = 1
            settings.epsRamp = 2
            settings.kappa = 0.5
        }
        return settings
    }

    @Test func certifiedRunProvesMoreDigitsRobust() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let test = try DataStore(dataset: .mnist).load().test.prefix(500)
        var verified: [Bool: Double] = [:]
        var clean: [Bool: Double] = [:]
        for certified in [false, true] {
            let output = directory.appendingPathComponent("\(certified).safetensors")
            let outcome = try TrainingRun(settings: settings(certified: certified), output: output).run(dataDirectory: nil)
            guard case .finished(let summary) = outcome else {
                Issue.record("training did not finish")
                return
            }
            #expect(summary.epochs.allSatisfy { ($0.verifiedAccuracy != nil) == certified })
            let model = try Checkpoint.load(from: output).model
            let flags = IntervalBoundPropagation.certify(model, images: test.allImages, labels: test.labels, epsilon: 0.1)
            verified[certified] = Double(flags.filter { $0 }.count) / Double(flags.count)
            clean[certified] = model.accuracy(test.allImages, labels: test.labels)
        }
        // measured: natural 0% verified (94.2% clean), certified 60.6% verified (88.6% clean)
        #expect(verified[false]! < 0.1, "natural run: \(verified[false]!) verified at ε 0.1")
        #expect(verified[true]! > 0.4, "certified run: \(verified[true]!) verified at ε 0.1")
        #expect(clean[true]! > 0.8, "certified run: \(clean[true]!) clean")
    }

    @Test func certifiedOptionsAreChecked() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = directory.appendingPathComponent("model.safetensors")
        var bad = settings(certified: true)
        bad.certified = "crown"
        #expect(throws: ExperimentError.self) { try TrainingRun(settings: bad, output: output).run(dataDirectory: nil) }
        bad = settings(certified: true)
        bad.kappa = 1.5
        #expect(throws: ExperimentError.self) { try TrainingRun(settings: bad, output: output).run(dataDirectory: nil) }
        bad = settings(certified: true)
        bad.adversarial = "pgd"
        #expect(throws: ExperimentError.self) { try TrainingRun(settings: bad, output: output).run(dataDirectory: nil) }
        #expect(!FileManager.default.fileExists(atPath: output.path))
    }
}
