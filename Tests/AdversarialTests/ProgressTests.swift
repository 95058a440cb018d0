import NeuralNet
import Testing

@testable import Adversarial

/// Records every step an observer sees and stops at the `stopAt`-th report.
final class StepRecorder {
    var steps: [OptimizationStep] = []
    let stopAt: Int?

    init(stopAt: Int?) { self.stopAt = stopAt }

    func observe(_ step: OptimizationStep) -> StepDecision {
        steps.append(step)
        return steps.count == stopAt ? .stop : .proceed
    }
}

@Suite struct ProgressTests {
    /// A report is well formed: one image and one probability per item, probabilities in [0, 1].
    func checkWellFormed(_ steps: [OptimizationStep], shape: [Int]) {
        for step in steps {
            #expect(!step.items.isEmpty)
            #expect(step.images.shape == [step.items.count] + shape)
            #expect(step.probabilities.count == step.items.count)
            #expect(step.probabilities.allSatisfy { (0...1).contains($0) })
            #expect(step.step >= 1 && step.step <= step.steps)
        }
    }

    @Test(arguments: AttackMethod.allCases)
    func stoppingAnAttackGivesAConsistentPartialResult(method: AttackMethod) throws {
        // FGSM has one step; DeepFool fools most of this model's digits in two. A small ε
        // keeps the fixed-budget attacks running past the stop.
        let k = method == .fgsm || method == .deepfool ? 1 : 3
        let epsilon: Float? = method.isFixedBudget ? (method == .pgdL2 ? 1 : 0.1) : nil
        let attack = try method.make(quickParameters(method, epsilon: epsilon))
        let recorder = StepRecorder(stopAt: k)
        let (images, labels) = attackSet
        let result = try attack.run(
            model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 3,
            observer: recorder.observe)
        let stopped = result.stopped
        let iterations = result.iterations
        let success = result.success
        #expect(stopped)
        #expect(recorder.steps.count == k, "the attack went on after the stop")
        #expect(recorder.steps.map(\.step) == Array(1...k))
        checkWellFormed(recorder.steps, shape: [1, 28, 28])
        // It was stopped, not finished: images were still running, with budget left.
        let last = try #require(recorder.steps.last)
        // A decision-based attack holds an adversarial from its start and runs to shrink it.
        let running = method.isDecisionBased ? last.items : last.items.filter { !success[$0] }
        #expect(!running.isEmpty)
        if method != .fgsm { #expect(last.steps > k) }
        // Every image spent at most k steps; those still running at the stop exactly k.
        #expect(iterations.allSatisfy { $0 <= k })
        #expect(running.allSatisfy { iterations[$0] == k })
        // Success flags and probabilities are those of the returned images.
        #expect(result.probabilities.scalars == smallModel.probabilities(result.adversarial).scalars)
        let predictions = smallModel.predictions(result.adversarial)
        #expect(labels.indices.allSatisfy { success[$0] == (predictions[$0] != labels[$0]) })
        #expect(result.adversarial.scalars.allSatisfy { (0...1).contains($0) })
        if let epsilon {
            let distances = method.norm.distances(result.adversarial, images)
            #expect(distances.allSatisfy { $0 <= epsilon * (1 + 1e-6) })
        }
    }

    @Test func progressFollowsTheAttack() throws {
        let attack = try AttackMethod.pgd.make(quickParameters(.pgd))
        let recorder = StepRecorder(stopAt: nil)
        let (images, labels) = attackSet
        let result = try attack.run(
            model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 3,
            observer: recorder.observe)
        let stopped = result.stopped
        #expect(!stopped)
        // The same run as without an observer.
        let plain = try #require(untargetedRuns[.pgd])
        #expect(
            result.adversarial.scalars == plain.adversarial.scalars && result.iterations == plain.iterations)
        #expect(recorder.steps.map(\.step) == Array(1...recorder.steps.count))
        #expect(recorder.steps.count == result.iterations.max())
        checkWellFormed(recorder.steps, shape: [1, 28, 28])
        // Images leave the report when they are fooled, and the label's probability of
        // those that remain falls.
        let first = try #require(recorder.steps.first)
        let last = try #require(recorder.steps.last)
        #expect(last.items.count < first.items.count)
        let before = Dictionary(uniqueKeysWithValues: zip(first.items, first.probabilities))
        let falling = zip(last.items, last.probabilities).filter { item, p in p < before[item] ?? 0 }
        #expect(falling.count * 2 > last.items.count)
        // Each report's images are the ones the attack evaluated: within ε of the originals.
        let distances = Norm.linf.distances(last.images, images.gathering(last.items))
        #expect(distances.allSatisfy { $0 <= 0.3 })
    }

    @Test func stoppingInBatchesReturnsThePrefixBegun() throws {
        let attack = try AttackMethod.pgd.make(quickParameters(.pgd))
        let (images, labels) = attackSet
        var batches: [Int] = []
        var stopNext = false
        let result = try runInBatches(
            attack, model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 3,
            batchSize: 30,
            progress: { batches.append($0) },
            observer: { step in
                // Stop at the first step of the second batch.
                if step.items.contains(where: { $0 >= 30 }) { stopNext = true }
                #expect(step.items.allSatisfy { (0..<60).contains($0) })
                return stopNext ? .stop : .proceed
            })
        let stopped = result.stopped
        #expect(stopped)
        #expect(batches == [30, 60])
        #expect(result.success.count == 60 && result.adversarial.batchSize == 60)
        #expect(result.iterations[30..<60].allSatisfy { $0 <= 1 })
        // The first batch ran to its end: the same as an unstopped run of it.
        let whole = try runInBatches(
            attack, model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 3,
            batchSize: 30)
        let wholeStopped = whole.stopped
        #expect(!wholeStopped && whole.success.count == 100)
        #expect(Array(result.iterations[0..<30]) == Array(whole.iterations[0..<30]))
        #expect(result.adversarial.batch(0..<30).scalars == whole.adversarial.batch(0..<30).scalars)
    }

    @Test(arguments: [Fooling.Method.adam, .sign, .evolve])
    func stoppingFoolingKeepsTheBestImagesSoFar(method: Fooling.Method) throws {
        let targets = Array(0..<10)
        let starts = FoolingStart.noise.images(for: targets, shape: [1, 28, 28], seed: 5)
        // A confidence no target reaches in two steps, and restarts that must not run.
        let fooling = try Fooling(method: method, confidence: 0.9999, maxSteps: 300, restarts: 3, seed: 5)
        let k = 2
        let recorder = StepRecorder(stopAt: k)
        let result = try fooling.run(
            model: smallModel, starts: starts, targets: targets, observer: recorder.observe)
        let stopped = result.stopped
        #expect(stopped)
        #expect(recorder.steps.map(\.step) == [1, 2] && recorder.steps.allSatisfy { $0.attempt == 0 })
        checkWellFormed(recorder.steps, shape: [1, 28, 28])
        #expect(recorder.steps[0].items == targets)
        // The first report carries the start images and their target probabilities.
        #expect(recorder.steps[0].images.scalars == starts.scalars)
        let startProbabilities = smallModel.probabilities(starts)
        for (row, p) in recorder.steps[0].probabilities.enumerated() {
            #expect(abs(p - startProbabilities.scalars[row * 10 + row]) < 1e-5)
        }
        // Every target spent k steps and has k points on its trajectory, as the report said.
        #expect(result.steps == Array(repeating: k, count: 10))
        #expect(result.trajectories.allSatisfy { $0.count == k })
        for (row, target) in targets.enumerated() {
            let index = try #require(recorder.steps[1].items.firstIndex(of: target))
            #expect(result.trajectories[row].last == recorder.steps[1].probabilities[index])
        }
        // The images are what a PNG holds, and the probabilities are theirs.
        #expect(isEightBit(result.images))
        let again = smallModel.probabilities(result.images)
        for (row, target) in targets.enumerated() {
            #expect(abs(again.scalars[row * 10 + target] - result.targetProbabilities[row]) < 1e-5)
            #expect(result.succeeded[row] == (result.targetProbabilities[row] >= 0.9999))
        }
    }

    @Test func progressFollowsFoolingToTheEnd() throws {
        let targets = Array(0..<10)
        let starts = FoolingStart.noise.images(for: targets, shape: [1, 28, 28], seed: 5)
        let fooling = try Fooling(confidence: 0.99, maxSteps: 300, seed: 5)
        let recorder = StepRecorder(stopAt: nil)
        let result = try fooling.run(
            model: smallModel, starts: starts, targets: targets, observer: recorder.observe)
        let stopped = result.stopped
        let succeeded = result.succeeded
        #expect(!stopped && succeeded.allSatisfy { $0 })
        let plain = try fooling.run(model: smallModel, starts: starts, targets: targets)
        #expect(result.images.scalars == plain.images.scalars && result.steps == plain.steps)
        // One report per step; each target is reported until the step it was confirmed at.
        #expect(recorder.steps.count == result.steps.max())
        for (row, target) in targets.enumerated() {
            let seen = recorder.steps.filter { $0.items.contains(target) }.map(\.step)
            #expect(seen == Array(1...result.steps[row]))
            #expect(result.trajectories[row].count == result.steps[row])
        }
    }

    @Test func aCancelledTaskStopsFoolingAndAttacks() async throws {
        let targets = Array(0..<10)
        let starts = FoolingStart.noise.images(for: targets, shape: [1, 28, 28], seed: 5)
        let fooling = try Fooling(confidence: 0.9999, maxSteps: 300, seed: 5)
        let fooled = try await Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try fooling.run(model: smallModel, starts: starts, targets: targets)
        }.value
        let fooledStopped = fooled.stopped
        #expect(fooledStopped)
        #expect(fooled.steps == Array(repeating: 1, count: 10))
        let attack = try AttackMethod.pgd.make(quickParameters(.pgd))
        let (images, labels) = attackSet
        let attacked = try await Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try runInBatches(
                attack, model: smallModel, images: images, labels: labels, goal: .untargeted, seed: 3,
                batchSize: 50)
        }.value
        let attackedStopped = attacked.stopped
        #expect(attackedStopped)
        #expect(attacked.success.count == 50)
        #expect(attacked.iterations.allSatisfy { $0 <= 1 })
    }
}
