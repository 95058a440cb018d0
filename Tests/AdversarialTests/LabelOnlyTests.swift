import Datasets
import Foundation
import NeuralNet
import Synchronization
import Testing

@testable import Adversarial

/// Counts the images an oracle was asked about.
final class QueryCount: Sendable {
    private let count = Mutex(0)
    func add(_ n: Int) { count.withLock { $0 += n } }
    var total: Int { count.withLock { $0 } }
}

/// A model behind a wall: the attack gets its labels and nothing else, and every image
/// asked about is counted.
struct WalledModel: LabelOracle {
    private let model: Model
    let asked = QueryCount()
    init(_ model: Model) { self.model = model }
    var inputShape: [Int] { model.architecture.inputShape }
    var classCount: Int { model.classCount }
    func labels(_ images: Tensor) -> [Int] {
        asked.add(images.batchSize)
        return ModelLabels(model).labels(images)
    }
}

/// A classifier that is no model at all: class 1 when an image's pixels sum to more than
/// `threshold`, else 0 (`classes` says how many classes it claims). The nearest class-1
/// image to x is x + (threshold − Σx)/d in every pixel: at L2 distance (threshold − Σx)/√d
/// and L∞ distance (threshold − Σx)/d, as long as no pixel leaves [0, 1].
struct HalfSpace: LabelOracle {
    let threshold: Float
    var classes = 2
    var inputShape: [Int] { [1, 4, 4] }
    var classCount: Int { classes }
    func labels(_ images: Tensor) -> [Int] {
        (0..<images.batchSize).map { row in
            images.scalars[row * 16..<(row + 1) * 16].reduce(0, +) > threshold ? 1 : 0
        }
    }
}

@Suite struct LabelOnlyTests {
    static let decisionBased = AttackMethod.allCases.filter(\.isDecisionBased)

    /// Four 4×4 images with pixels in [0.2, 0.4]: class 0 for ``HalfSpace`` at threshold 8.
    let darkImages: Tensor = {
        var generator = SplitMix64(seed: 21)
        return Tensor(shape: [4, 1, 4, 4], scalars: (0..<64).map { _ in 0.2 + 0.2 * generator.nextUnitFloat() })
    }()

    /// The attacks work from labels alone: through a wall that passes nothing else they
    /// give exactly what they give on the model, and every image they asked about is counted.
    @Test(arguments: decisionBased)
    func labelsAreAllTheAttackSees(method: AttackMethod) throws {
        let attack = try #require(try method.make(quickParameters(method)) as? any DecisionBasedAttack)
        let images = attackSet.images.batch(0..<30)
        let labels = Array(attackSet.labels.prefix(30))
        let walled = WalledModel(smallModel)
        let blind = try attack.run(oracle: walled, images: images, labels: labels, targets: nil, seed: 4, observer: nil)
        let direct = try attack.run(model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 4)
        #expect(blind.adversarial == direct.adversarial)
        #expect(blind.success == direct.success && blind.queries == direct.queries)
        #expect(blind.iterations == direct.iterations)
        // Each image counted separately although they were asked in batches.
        #expect(walled.asked.total == blind.queries.reduce(0, +))
        #expect(blind.queries.allSatisfy { $0 <= attack.maxQueries })
        #expect(blind.success.allSatisfy { $0 })
    }

    /// Against a half-space the smallest perturbation is known: the attacks approach it
    /// from above and never beat it.
    @Test(arguments: [
        (AttackMethod.hopskipjump, Float(0.03)), (.hopskipjumpLinf, 0.1), (.boundary, 0.15),
    ])
    func reachesTheKnownMinimum(method: AttackMethod, tolerance: Float) throws {
        let attack = try #require(
            try method.make(AttackParameters(maxQueries: 3000)) as? any DecisionBasedAttack)
        let oracle = HalfSpace(threshold: 8)
        let result = try attack.run(
            oracle: oracle, images: darkImages, labels: [0, 0, 0, 0], targets: nil, seed: 2, observer: nil)
        #expect(result.success == [true, true, true, true])
        let distances = method.norm.distances(result.adversarial, darkImages)
        for row in 0..<4 {
            let gap = 8 - darkImages.scalars[row * 16..<(row + 1) * 16].reduce(0, +)
            let minimum = method.norm == .l2 ? gap / 4 : gap / 16
            #expect(distances[row] >= minimum * (1 - 1e-4), "\(method) row \(row): below the minimum")
            #expect(
                distances[row] <= minimum * (1 + tolerance),
                "\(method) row \(row): \(distances[row]), minimum \(minimum)")
        }
        #expect(result.queries.allSatisfy { $0 <= 3000 })
    }

    /// A target no image has and no noise reaches: the attack reports failure and returns
    /// the clean images, within its budget.
    @Test(arguments: decisionBased)
    func unreachableTargetFailsCleanly(method: AttackMethod) throws {
        let attack = try #require(try method.make(quickParameters(method)) as? any DecisionBasedAttack)
        let oracle = HalfSpace(threshold: 8, classes: 3)
        let result = try attack.run(
            oracle: oracle, images: darkImages, labels: [0, 0, 0, 0], targets: [2, 2, 2, 2], seed: 1, observer: nil)
        #expect(result.success == [false, false, false, false])
        #expect(result.adversarial == darkImages)
        #expect(result.queries.allSatisfy { $0 <= attack.maxQueries })
        // A target equal to the label is never attacked either.
        let same = try attack.run(
            oracle: oracle, images: darkImages, labels: [0, 0, 0, 0], targets: [0, 0, 0, 0], seed: 1, observer: nil)
        #expect(same.success == [false, false, false, false] && same.queries == [2, 2, 2, 2])
    }

    @Test func oracleInputIsChecked() throws {
        let attack = try HopSkipJump(maxQueries: 100)
        let oracle = HalfSpace(threshold: 8)
        #expect(throws: AdversarialError.self) {
            try attack.run(oracle: oracle, images: darkImages, labels: [0, 0, 0], targets: nil, seed: 1, observer: nil)
        }
        #expect(throws: AdversarialError.self) {
            try attack.run(
                oracle: oracle, images: darkImages, labels: [0, 0, 0, 0], targets: [1, 1, 1, 5], seed: 1,
                observer: nil)
        }
        #expect(throws: AdversarialError.self) {
            try attack.run(
                oracle: oracle, images: attackSet.images.batch(0..<1), labels: [0], targets: nil, seed: 1,
                observer: nil)
        }
    }

    @Test func budgetSchedulesAreTheFormulas() throws {
        let hsj = try HopSkipJump()
        // B_t = 100·√t, capped by what is left after the binary search's reserve.
        #expect(hsj.evaluations(iteration: 4, spendable: 10_000, pixels: 784) == 200)
        #expect(hsj.evaluations(iteration: 4, spendable: 100, pixels: 784) == 100 - hsj.searchReserve(pixels: 784))
        #expect(hsj.evaluations(iteration: 4, spendable: 20, pixels: 784) == nil)
        // θ = 1/(d·√d): 15 halvings reach it, plus 4 for the step size.
        #expect(hsj.searchReserve(pixels: 784) == 19)
        // About 28 iterations fit into 10,000 queries.
        #expect((26...30).contains(hsj.iterationBudget(pixels: 784)))
    }
}

@Suite struct UniversalTests {
    /// Training digits the small model was not trained on and the tests never score.
    static let training: (images: Tensor, labels: [Int]) = {
        let train = try! DataStore(dataset: .mnist).load().train
        return (train.images(4000..<6000), Array(train.labels[4000..<6000]))
    }()

    static func learned(_ norm: Norm, epsilon: Float) throws -> UniversalLearning {
        try UniversalPerturbation(norm: norm, epsilon: epsilon, epochs: 2, restarts: 1).learn(
            model: smallModel, images: training.images, labels: training.labels, seed: 1)
    }

    @Test(arguments: [(Norm.linf, Float(0.3)), (.l2, 4)])
    func onePerturbationWithinEpsilonFoolsUnseenDigits(norm: Norm, epsilon: Float) throws {
        let learning = try Self.learned(norm, epsilon: epsilon)
        let delta = learning.perturbation
        #expect(delta.shape == [1, 1, 28, 28])
        #expect(norm.distances(delta, Tensor(shape: delta.shape))[0] <= epsilon)
        let snapshot = attackSet.images
        let attack = try UniversalAttack(perturbation: delta, epsilon: epsilon, norm: norm)
        let result = try attack.run(
            model: smallModel, images: attackSet.images, labels: attackSet.labels, goal: .untargeted, seed: 1)
        #expect(attackSet.images == snapshot)
        // Every image, the misclassified ones too, is clip(x + δ), bounded exactly.
        let expected = perturbed(attackSet.images, by: delta)
        #expect(zip(result.adversarial.scalars, expected.scalars).allSatisfy { abs($0 - $1) <= 1e-6 })
        #expect(norm.distances(result.adversarial, attackSet.images).allSatisfy { $0 <= epsilon })
        let predictions = smallModel.predictions(result.adversarial)
        #expect(result.success == zip(predictions, attackSet.labels).map { $0 != $1 })
        #expect(result.probabilities == smallModel.probabilities(result.adversarial))
        let correct = attackSet.labels.indices.filter { cleanCorrect[$0] }
        let fooled = correct.filter { result.success[$0] }.count
        #expect(Double(fooled) >= 0.3 * Double(correct.count), "\(norm): fooled \(fooled)/\(correct.count)")
        #expect(learning.trainingFoolingRate > 0.3)
    }

    @Test func zeroBudgetLearnsNothing() throws {
        let learning = try Self.learned(.linf, epsilon: 0)
        #expect(learning.perturbation.scalars.allSatisfy { $0 == 0 })
        let result = try UniversalAttack(perturbation: learning.perturbation, epsilon: 0, norm: .linf).run(
            model: smallModel, images: attackSet.images, labels: attackSet.labels, goal: .untargeted, seed: 1)
        #expect(result.adversarial == attackSet.images)
    }

    @Test func stoppedLearningKeepsWhatItHad() throws {
        let recorder = StepRecorder(stopAt: 5)
        let learning = try UniversalPerturbation(epsilon: 0.3, epochs: 2, restarts: 2).learn(
            model: smallModel, images: Self.training.images, labels: Self.training.labels, seed: 1,
            observer: recorder.observe)
        #expect(learning.stopped && learning.steps == 5)
        #expect(recorder.steps.map(\.step) == [1, 2, 3, 4, 5])
        #expect(recorder.steps.allSatisfy { $0.items.allSatisfy { (0..<2000).contains($0) } })
        #expect(Norm.linf.distances(learning.perturbation, Tensor(shape: [1, 1, 28, 28]))[0] <= 0.3)
    }

    @Test func perturbationMustFitItsBudget() {
        let big = Tensor(shape: [1, 1, 28, 28], repeating: 0.5)
        #expect(throws: AdversarialError.self) { try UniversalAttack(perturbation: big, epsilon: 0.3, norm: .linf) }
        #expect(throws: AdversarialError.self) {
            try UniversalAttack(perturbation: Tensor(shape: [2, 1, 28, 28]), epsilon: 0.3, norm: .linf)
        }
    }
}
