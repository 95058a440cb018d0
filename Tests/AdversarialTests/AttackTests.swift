import Foundation
import NeuralNet
import Testing

@testable import Adversarial

@Suite struct AttackTests {
    /// Every attack through the same checks, as Foolbox tests its attacks.
    @Test(arguments: AttackMethod.allCases)
    func untargetedAttackFoolsTheModel(method: AttackMethod) throws {
        let snapshot = Tensor(shape: attackSet.images.shape, scalars: Array(attackSet.images.scalars))
        let result = try #require(untargetedRuns[method])
        let attack = try method.make(quickParameters(method))
        let (images, labels) = attackSet
        // The input is never modified (ART's check).
        #expect(attackSet.images == snapshot)

        #expect(result.adversarial.shape == images.shape)
        #expect(result.success.count == 100 && result.iterations.count == 100 && result.queries.count == 100)
        #expect(result.targets == nil)
        #expect(result.adversarial.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
        if let fixed = attack as? any FixedEpsilonAttack {
            // Exactly within ε: the bound holds after Float rounding, no tolerance needed.
            let distances = fixed.norm.distances(result.adversarial, images)
            #expect(distances.max()! <= fixed.epsilon, "\(method): largest distance \(distances.max()!)")
        }
        // The flags are what re-classifying the returned images says.
        let predictions = smallModel.predictions(result.adversarial)
        #expect(result.success == zip(predictions, labels).map { $0 != $1 })
        // The result's probabilities are the model's on the returned images.
        #expect(result.probabilities == smallModel.probabilities(result.adversarial))
        #expect(result.predictions == predictions)
        // Images the model already gets wrong are adversarial as they are.
        for item in labels.indices where !cleanCorrect[item] {
            #expect(result.success[item] && result.iterations[item] == 0)
            #expect(result.adversarial.batch(item..<item + 1) == images.batch(item..<item + 1))
        }
        // Every iteration asks the model at least once.
        #expect(zip(result.iterations, result.queries).allSatisfy { $0 < $1 })

        let correct = labels.indices.filter { cleanCorrect[$0] }
        let fooled = correct.filter { result.success[$0] }
        if let decision = attack as? any DecisionBasedAttack {
            // Within the budget, everything counted; and an adversarial start for every digit.
            #expect(result.queries.allSatisfy { $0 <= decision.maxQueries }, "\(method): \(result.queries.max()!)")
            #expect(fooled.count == correct.count, "\(method): fooled \(fooled.count)/\(correct.count)")
        }
        if method.isFixedBudget {
            let robustAccuracy = Double(zip(predictions, labels).filter { $0 == $1 }.count) / 100
            #expect(robustAccuracy < 0.3, "\(method): robust accuracy \(robustAccuracy)")
        } else {
            #expect(
                Double(fooled.count) >= 0.9 * Double(correct.count),
                "\(method): fooled \(fooled.count)/\(correct.count)")
            // A minimisation attack changes an image only as far as it must.
            let distances = method.norm.distances(result.adversarial, images)
            #expect(fooled.allSatisfy { distances[$0] > 0 })
        }
    }

    @Test func batchesConcatenateInOrder() throws {
        let attack = try AttackMethod.pgd.make(quickParameters(.pgd))
        let images = attackSet.images.batch(0..<7), labels = Array(attackSet.labels.prefix(7))
        let batched = try runInBatches(attack, model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 5, batchSize: 3)
        #expect(batched.adversarial.shape == images.shape && batched.probabilities.shape == [7, 10])
        // Each batch's rows are the model's probabilities for that batch (a GEMM's rounding
        // may depend on the batch size, so they are compared batch by batch).
        for range in [0..<3, 3..<6, 6..<7] {
            #expect(batched.probabilities.batch(range) == smallModel.probabilities(batched.adversarial.batch(range)))
        }
        #expect(batched.success.count == 7 && batched.queries.count == 7)
        let none = try runInBatches(attack, model: smallModel, images: images.batch(0..<0), labels: [], goal: .untargeted, seed: 5)
        #expect(none.success.isEmpty && none.probabilities.shape == [0, 10])
    }

    static let targetedMethods = AttackMethod.allCases.filter { $0 != .deepfool }

    /// Targeted goals: success means the prediction is the target.
    @Test(arguments: targetedMethods, [TargetMode.fixed(3), .random, .leastLikely])
    func targetedAttackReachesTheTarget(method: AttackMethod, mode: TargetMode) throws {
        let count = 40
        let images = attackSet.images.batch(0..<count)
        let labels = Array(attackSet.labels.prefix(count))
        let goal = try AttackGoal(mode: mode)
        if method.isDecisionBased && mode == .leastLikely {
            // The least likely class needs the model's scores, which these attacks never see.
            #expect(throws: AdversarialError.self) {
                try targetedAttack(method).run(model: smallModel, images: images, labels: labels, goal: goal, seed: 5)
            }
            return
        }
        let result = try targetedAttack(method).run(
            model: smallModel, images: images, labels: labels, goal: goal, seed: 5)
        let targets = try #require(result.targets)
        #expect(targets == mode.targets(for: images, labels: labels, model: smallModel, seed: 5))
        let predictions = smallModel.predictions(result.adversarial)
        // An image whose fixed target is its label cannot succeed.
        #expect(
            result.success
                == labels.indices.map { predictions[$0] == targets[$0] && labels[$0] != targets[$0] })
        #expect(result.adversarial.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
        let attackable = labels.indices.filter { labels[$0] != targets[$0] }
        let reached = attackable.filter { result.success[$0] }.count
        // One FGSM step rarely lands on a chosen class; every other attack should, though
        // the least likely class of this small model is far away even at ε = 0.3 (PGD-100
        // and APGD reach it for under 60% of images).
        if method.isDecisionBased {
            // They start from a digit of the target class and never leave its region.
            #expect(reached == attackable.count, "\(method) \(mode): \(reached)/\(attackable.count)")
        } else if method != .fgsm {
            let required = mode == .leastLikely ? 0.05 : 0.5
            #expect(
                Double(reached) >= required * Double(attackable.count),
                "\(method) \(mode): \(reached)/\(attackable.count)")
        }
    }

    @Test func deepFoolRejectsWhatItCannotDo() throws {
        let (images, labels) = (attackSet.images.batch(0..<2), Array(attackSet.labels.prefix(2)))
        #expect(throws: AdversarialError.self) {
            try DeepFool().run(
                model: smallModel, images: images, labels: labels, goal: AttackGoal(mode: .random), seed: 1)
        }
        #expect(throws: AdversarialError.self) {
            try DeepFool().run(
                model: smallModel, images: images, labels: labels,
                goal: AttackGoal(criterion: .confidence(0.9)), seed: 1)
        }
    }

    /// With a confidence criterion, successes carry a wrong class at that probability.
    @Test(arguments: [AttackMethod.pgd, .apgdCE, .cw, .jsma, .square])
    func confidenceCriterionIsHonoured(method: AttackMethod) throws {
        let images = attackSet.images.batch(0..<30)
        let labels = Array(attackSet.labels.prefix(30))
        let goal = try AttackGoal(criterion: .confidence(0.9))
        let result = try method.make(quickParameters(method)).run(
            model: smallModel, images: images, labels: labels, goal: goal, seed: 2)
        let probabilities = smallModel.probabilities(result.adversarial)
        for row in labels.indices {
            let strongestWrong = (0..<10).filter { $0 != labels[row] }.map {
                probabilities.scalars[row * 10 + $0]
            }.max()!
            #expect(result.success[row] == (strongestWrong >= 0.9))
        }
        // PGD-20 reaches 0.9 on about half; the others on most.
        #expect(
            result.success.filter { $0 }.count >= 10, "\(method): \(result.success.filter { $0 }.count)/30")
    }

    // MARK: Sanity checks of Carlini et al. 2019, "On evaluating adversarial robustness"

    @Test(arguments: AttackMethod.allCases.filter { $0.isFixedBudget })
    func zeroBudgetChangesNothing(method: AttackMethod) throws {
        let result = try method.make(quickParameters(method, epsilon: 0)).run(
            model: smallModel, images: attackSet.images, labels: attackSet.labels, goal: .untargeted, seed: 3)
        #expect(result.adversarial == attackSet.images)
        #expect(result.success == cleanCorrect.map { !$0 })
    }

    @Test func pgdSuccessGrowsWithEpsilonAndBeatsFGSM() throws {
        let (images, labels) = attackSet
        func successes(_ method: AttackMethod, _ epsilon: Float) throws -> Int {
            try method.make(quickParameters(method, epsilon: epsilon))
                .run(model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 3)
                .success.filter { $0 }.count
        }
        let epsilons: [Float] = [0, 0.05, 0.1, 0.2, 0.3]
        let pgd = try epsilons.map { try successes(.pgd, $0) }
        #expect(zip(pgd, pgd.dropFirst()).allSatisfy { $0 <= $1 }, "PGD successes \(pgd)")
        #expect(pgd.last! > pgd.first!)
        for (index, epsilon) in epsilons.enumerated().dropFirst() {
            let fgsm = try successes(.fgsm, epsilon)
            #expect(pgd[index] >= fgsm, "ε \(epsilon): PGD \(pgd[index]) < FGSM \(fgsm)")
        }
    }

    @Test func carliniWagnerFindsSmallerPerturbationsThanDeepFool() throws {
        let cw = try #require(untargetedRuns[.cw])
        let deepFool = try #require(untargetedRuns[.deepfool])
        let both = attackSet.labels.indices.filter {
            cleanCorrect[$0] && cw.success[$0] && deepFool.success[$0]
        }
        #expect(both.count >= 50)
        let cwMean = attackMean(Norm.l2.distances(cw.adversarial, attackSet.images), at: both)
        let deepFoolMean = attackMean(Norm.l2.distances(deepFool.adversarial, attackSet.images), at: both)
        #expect(cwMean < deepFoolMean, "mean L2: CW \(cwMean), DeepFool \(deepFoolMean)")
    }

    @Test func jsmaChangesFewPixels() throws {
        let result = try #require(untargetedRuns[.jsma])
        let changed = Norm.l0.distances(result.adversarial, attackSet.images)
        // γ = 0.1 of 784 pixels, in pairs.
        #expect(changed.allSatisfy { $0 <= 78 })
    }

    @Test func squareCountsItsQueries() throws {
        let result = try #require(untargetedRuns[.square])
        // The budget (500 here) plus the clean check and the final check.
        #expect(result.queries.allSatisfy { $0 <= 502 })
        #expect(result.queries.contains { $0 > 3 })
    }

    @Test func sameSeedSameResultOtherSeedOtherStart() throws {
        let images = attackSet.images.batch(0..<20)
        let labels = Array(attackSet.labels.prefix(20))
        let pgd = try ProjectedGradientDescent(epsilon: 0.1, steps: 5)
        let first = try pgd.run(model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 8)
        let again = try pgd.run(model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 8)
        let other = try pgd.run(model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 9)
        #expect(first.adversarial == again.adversarial && first.success == again.success)
        #expect(first.adversarial != other.adversarial)
    }

    // MARK: Losses

    /// The DLR loss's logit gradient against central differences, untargeted and targeted.
    @Test func dlrGradientMatchesFiniteDifferences() {
        var generator = SplitMix64(seed: 4)
        let logits = Tensor(shape: [3, 10], scalars: (0..<30).map { _ in 4 * generator.nextGaussian() })
        let labels = [2, 7, 0]
        for targets in [nil, [5, 1, 9]] as [[Int]?] {
            let (_, gradient) = differenceOfLogitsRatio(logits: logits, labels: labels, targets: targets)
            for index in 0..<30 {
                let h: Float = 1e-3
                var plus = logits
                var minus = logits
                plus.scalars[index] += h
                minus.scalars[index] -= h
                let row = index / 10
                let difference =
                    (differenceOfLogitsRatio(logits: plus, labels: labels, targets: targets).losses[row]
                        - differenceOfLogitsRatio(logits: minus, labels: labels, targets: targets).losses[row])
                    / (2 * h)
                #expect(
                    abs(difference - gradient.scalars[index]) < 2e-3,
                    "index \(index), targets \(String(describing: targets))")
            }
        }
    }

    @Test func hingeIsZeroOnceTheMarginIsReached() {
        let logits = Tensor(shape: [2, 3], scalars: [3, 1, 0, 0, 5, 1])
        // Untargeted: row 0's class 0 still leads its rival 1 by 2, so the loss is 2 + κ.
        let (losses, gradient) = hingeLoss(
            logits: logits, classes: [0, 2], weights: [1, 2], kappa: 1, targeted: false)
        // Row 1's class 2 already trails its rival 1 by 4 > κ: no loss, no gradient.
        #expect(losses == [3, 0])
        #expect(gradient.scalars == [1, -1, 0, 0, 0, 0])
    }

    // MARK: Options

    @Test func badHyperparametersAreRejected() {
        #expect(throws: AdversarialError("steps must be at least 1, got 0")) {
            try ProjectedGradientDescent(steps: 0)
        }
        #expect(throws: AdversarialError("epsilon must be a finite number ≥ 0, got -0.1")) {
            try FGSM(epsilon: -0.1)
        }
        #expect(throws: AdversarialError("epsilon must be a finite number ≥ 0, got nan")) {
            try AutoPGD(epsilon: .nan)
        }
        #expect(throws: AdversarialError("step size must be a positive finite number, got nan")) {
            try BasicIterativeMethod(stepSize: .nan)
        }
        #expect(throws: AdversarialError("restarts must be at least 1, got 0")) { try AutoPGD(restarts: 0) }
        #expect(throws: AdversarialError.self) { try FGSM(epsilon: 1.5) }
        #expect(throws: AdversarialError.self) { try ProjectedGradientDescent(norm: .l0) }
        #expect(throws: AdversarialError.self) {
            try ProjectedGradientDescent(restarts: 3, randomStart: false)
        }
        #expect(throws: AdversarialError.self) { try MomentumIterativeFGSM(decay: -1) }
        #expect(throws: AdversarialError.self) { try CarliniWagnerL2(learningRate: 0) }
        #expect(throws: AdversarialError.self) { try CarliniWagnerL2(binarySearchSteps: 0) }
        #expect(throws: AdversarialError.self) { try DeepFool(candidates: 1) }
        #expect(throws: AdversarialError.self) { try DeepFool(norm: .l0) }
        #expect(throws: AdversarialError.self) { try SaliencyMapAttack(gamma: 0) }
        #expect(throws: AdversarialError.self) { try SaliencyMapAttack(gamma: .infinity) }
        #expect(throws: AdversarialError.self) { try SquareAttack(queries: 0) }
        #expect(throws: AdversarialError.self) { try SquareAttack(initialFraction: 1.5) }
        #expect(throws: AdversarialError("query budget must be at least 20, got 19")) {
            try HopSkipJump(maxQueries: 19)
        }
        #expect(throws: AdversarialError.self) { try HopSkipJump(norm: .l0) }
        #expect(throws: AdversarialError.self) { try HopSkipJump(maxIterations: 0) }
        #expect(throws: AdversarialError.self) { try HopSkipJump(initialEvaluations: 100, maxEvaluations: 50) }
        #expect(throws: AdversarialError.self) { try BoundaryAttack(maxQueries: 0) }
        #expect(throws: AdversarialError.self) { try BoundaryAttack(sphericalStep: 0) }
        #expect(throws: AdversarialError.self) { try BoundaryAttack(stepAdaptation: 1) }
        #expect(throws: AdversarialError.self) { try UniversalPerturbation(epsilon: 1.5) }
        #expect(throws: AdversarialError.self) { try UniversalPerturbation(norm: .l0, epsilon: 1) }
        #expect(throws: AdversarialError.self) { try UniversalPerturbation(epsilon: 0.3, restarts: 0) }
        #expect(
            throws: AdversarialError(
                "pgd takes no query budget: only hopskipjump and boundary count queries against one")
        ) {
            try AttackMethod.pgd.make(AttackParameters(maxQueries: 100))
        }
        #expect(throws: AdversarialError.self) {
            try AttackMethod.hopskipjump.make(AttackParameters(stepSize: 0.1))
        }
        // Labels alone cannot aim for a confidence.
        let (images, labels) = (attackSet.images.batch(0..<2), Array(attackSet.labels.prefix(2)))
        #expect(throws: AdversarialError.self) {
            try HopSkipJump(maxQueries: 100).run(
                model: smallModel, images: images, labels: labels,
                goal: AttackGoal(criterion: .confidence(0.9)), seed: 1)
        }
    }

    @Test(arguments: AttackMethod.allCases)
    func registryBuildsTheAttackAndChecksItsParameters(method: AttackMethod) throws {
        #expect(AttackMethod(rawValue: method.rawValue) == method)
        let attack = try method.make(AttackParameters())
        #expect(attack.name == method.rawValue)
        #expect((attack is any FixedEpsilonAttack) == method.isFixedBudget)
        if let fixed = attack as? any FixedEpsilonAttack {
            #expect(fixed.epsilon == method.defaultEpsilon)
            #expect(fixed.norm == method.norm)
        } else {
            #expect((attack as? any MinimizationAttack)?.norm == method.norm)
            #expect(method.defaultEpsilon == nil)
            #expect(throws: AdversarialError.self) { try method.make(AttackParameters(epsilon: 0.3)) }
        }
        // Zero steps: out of range, or (fgsm, jsma) a parameter the attack does not take.
        #expect(throws: AdversarialError.self) { try method.make(AttackParameters(steps: 0)) }
        #expect(throws: AdversarialError.self) { try method.make(AttackParameters(epsilon: -1)) }
    }

    @Test func registryDefaultsAreThePublishedOnes() throws {
        let pgd = try #require(AttackMethod.pgd.make(AttackParameters()) as? ProjectedGradientDescent)
        #expect((pgd.epsilon, pgd.steps, pgd.restarts, pgd.randomStart) == (0.3, 40, 1, true))
        #expect(abs(pgd.stepSize - 0.01) < 1e-7)
        let pgdL2 = try #require(AttackMethod.pgdL2.make(AttackParameters()) as? ProjectedGradientDescent)
        #expect((pgdL2.norm, pgdL2.epsilon, pgdL2.steps, pgdL2.stepSize) == (.l2, 2, 40, 0.125))
        let bim = try #require(AttackMethod.bim.make(AttackParameters()) as? BasicIterativeMethod)
        #expect(bim.steps == 10 && abs(bim.stepSize - 0.0375) < 1e-7)
        let mifgsm = try #require(AttackMethod.mifgsm.make(AttackParameters()) as? MomentumIterativeFGSM)
        #expect(mifgsm.steps == 10 && abs(mifgsm.stepSize - 0.03) < 1e-7 && mifgsm.decay == 1)
        let apgd = try #require(AttackMethod.apgdDLR.make(AttackParameters()) as? AutoPGD)
        #expect((apgd.loss, apgd.steps, apgd.restarts) == (.dlr, 100, 1))
        let square = try #require(AttackMethod.square.make(AttackParameters()) as? SquareAttack)
        #expect((square.queries, square.initialFraction) == (5000, 0.8))
        let hsj = try #require(AttackMethod.hopskipjumpLinf.make(AttackParameters()) as? HopSkipJump)
        #expect((hsj.norm, hsj.maxQueries, hsj.initialEvaluations, hsj.maxEvaluations) == (.linf, 10_000, 100, 10_000))
        #expect(hsj.maxIterations == nil && hsj.gamma == 1)
        let boundary = try #require(AttackMethod.boundary.make(AttackParameters()) as? BoundaryAttack)
        #expect((boundary.maxQueries, boundary.sphericalStep, boundary.sourceStep) == (10_000, 0.01, 0.01))
        #expect(boundary.stepAdaptation == 1.5 && boundary.maxSteps == nil)
        #expect(
            throws: AdversarialError(
                "fgsm takes no steps: FGSM takes exactly one step of size ε; use bim for several")
        ) {
            try AttackMethod.fgsm.make(AttackParameters(steps: 10))
        }
        #expect(throws: AdversarialError.self) {
            try AttackMethod.apgdCE.make(AttackParameters(stepSize: 0.1))
        }
    }

    @Test func squareScheduleHalvesTheWindow() throws {
        let square = try SquareAttack(queries: 10_000)
        #expect(square.windowFraction(iteration: 0) == 0.8)
        #expect(square.windowFraction(iteration: 11) == 0.4)
        #expect(square.windowFraction(iteration: 8001) == 0.8 / 512)
        // Rescaled to the budget: 1,000 queries reach the first halving after 1 iteration.
        #expect(try SquareAttack(queries: 1000).windowFraction(iteration: 2) == 0.4)
    }
}
