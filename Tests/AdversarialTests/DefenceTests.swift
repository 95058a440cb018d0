import Datasets
import NeuralNet
import Testing

@testable import Adversarial

/// Accuracy of `model` on the test images under PGD at `epsilon`.
func robustAccuracy(_ model: Model, epsilon: Float, count: Int = 200) throws -> Double {
    let images = testImages.images.batch(0..<count)
    let labels = Array(testImages.labels[0..<count])
    let pgd = try AttackMethod.pgd.make(AttackParameters(epsilon: epsilon, steps: 20, stepSize: epsilon / 8))
    let result = try pgd.run(model: model, images: images, labels: labels, goal: .untargeted, seed: 3)
    let predictions = model.predictions(result.adversarial)
    return Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(count)
}

@Suite(.serialized) struct DefenceTests {
    /// Trains the seed architecture on 3,000 images, with or without adversarial training.
    func train(_ method: AdversarialTraining.Method) throws -> Model {
        let mnist = try DataStore(dataset: .mnist).load()
        var generator = SplitMix64(seed: 21)
        var trainer = Trainer(model: try Model(architecture: .seed, generator: &generator), optimizer: Adam())
        let source = ShuffledBatches(mnist.train.prefix(3000), batchSize: 64, seed: 21)
        let defence = try AdversarialTraining(method: method, epsilon: 0.1)
        let prepare = method == .none ? nil : defence.preparation(warmupSteps: 20, seed: 21)
        let history = try trainer.fit(
            source, plan: TrainingPlan(epochs: 3, learningRate: 2e-3, schedule: .constant, seed: 21), prepare: prepare)
        #expect(history.count == 3)
        #expect((history.last?.adversarialAccuracy != nil) == (method != .none))
        return trainer.model
    }

    @Test func adversarialTrainingRaisesRobustAccuracy() throws {
        let standard = try robustAccuracy(try train(.none), epsilon: 0.1)
        for method in [AdversarialTraining.Method.pgd, .trades] {
            let defended = try robustAccuracy(try train(method), epsilon: 0.1)
            #expect(defended > standard + 0.1, "\(method.rawValue): \(defended) vs standard \(standard)")
        }
    }

    @Test func ensembleIsNeverAboveAnyMember() throws {
        let evaluation = try RobustnessEvaluation(
            epsilon: 0.08, apgdSteps: 20, targetClasses: 2, pgdSteps: 20, pgdRestarts: 2, squareQueries: 300, seed: 5)
        let report = try evaluation.run(
            model: smallModel, images: testImages.images.batch(0..<60), labels: Array(testImages.labels[0..<60]))
        #expect(report.members.count == 5)
        for member in report.members {
            #expect(report.robustAccuracy <= member.robustAccuracy + 1e-12, "\(member.name)")
        }
        #expect(report.robustAccuracy <= report.cleanAccuracy)
        #expect(report.checks.count == 3)
        // A standard model is not masking gradients: huge ε breaks everything.
        #expect(report.checks.first?.passed == true)
    }

    @Test func badOptionsAreRejected() {
        #expect(throws: AdversarialError.self) { try AdversarialTraining(method: .pgd, epsilon: -1) }
        #expect(throws: AdversarialError.self) { try AdversarialTraining(method: .fgsmRS, steps: 3) }
        #expect(throws: AdversarialError.self) { try AdversarialTraining(method: .trades, beta: .nan) }
        #expect(throws: AdversarialError.self) { try RobustnessEvaluation(epsilon: 0) }
        #expect(throws: AdversarialError.self) { try RobustnessEvaluation(targetClasses: 10) }
    }
}
