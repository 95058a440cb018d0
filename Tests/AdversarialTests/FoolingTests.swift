import Datasets
import Foundation
import NeuralNet
import Testing

@testable import Adversarial

/// A seed-architecture model trained in the test on 4,000 MNIST images (about 95% accurate).
let smallModel: Model = {
    let mnist: Dataset
    do {
        mnist = try DataStore(dataset: .mnist).load()
    } catch {
        fatalError("MNIST is needed for these tests: \(error)")
    }
    var generator = SplitMix64(seed: 11)
    var trainer = Trainer(model: try! Model(architecture: .seed, generator: &generator), optimizer: Adam())
    let source = ShuffledBatches(mnist.train.prefix(4000), batchSize: 64, seed: 11)
    _ = try! trainer.fit(source, plan: TrainingPlan(epochs: 2, learningRate: 2e-3, schedule: .constant, seed: 11))
    return trainer.model
}()

let testImages: (images: Tensor, labels: [Int]) = {
    let test = try! DataStore(dataset: .mnist).load().test.prefix(200)
    return (test.allImages, test.labels)
}()

func maxDistance(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
}

func isEightBit(_ tensor: Tensor) -> Bool {
    tensor.scalars.allSatisfy { ($0 * 255).rounded() / 255 == $0 && (0...1).contains($0) }
}

@Suite struct FoolingTests {
    @Test func smallModelIsReal() {
        let predictions = smallModel.predictions(testImages.images)
        let accuracy = Double(zip(predictions, testImages.labels).filter { $0 == $1 }.count) / 200
        #expect(accuracy > 0.9)
    }

    @Test(arguments: [Fooling.Method.adam, .sign, .evolve])
    func reachesTheConfidenceOnEveryDigit(method: Fooling.Method) throws {
        let targets = Array(0..<10)
        let starts = FoolingStart.noise.images(for: targets, shape: [1, 28, 28], seed: 5)
        let copy = starts
        let fooling = try Fooling(method: method, confidence: 0.99, maxSteps: method == .evolve ? 400 : 300, seed: 5)
        let result = try fooling.run(model: smallModel, starts: starts, targets: targets)
        #expect(starts == copy)
        #expect(result.starts == starts)
        #expect(result.succeeded == Array(repeating: true, count: 10))
        #expect(isEightBit(result.images))
        // The reported probabilities are those of the 8-bit images, as a PNG holds them.
        let again = smallModel.probabilities(result.images)
        for (row, target) in targets.enumerated() {
            #expect(again.scalars[row * 10 + target] >= 0.99)
            #expect(abs(again.scalars[row * 10 + target] - result.targetProbabilities[row]) < 1e-5)
            #expect(result.queries[row] >= result.steps[row])
            #expect(result.trajectories[row].count >= 1)
        }
        if method == .evolve {
            // Black-box: every step scores 1 + 2·population images.
            #expect(result.queries.allSatisfy { $0 > 100 })
        }
    }

    @Test(arguments: [Fooling.Method.adam, .sign, .evolve])
    func neverLeavesTheEpsilonBox(method: Fooling.Method) throws {
        let targets = [1, 3, 7]
        let epsilon: Float = 0.1
        let starts = FoolingStart.noise.images(for: targets, shape: [1, 28, 28], seed: 9)
        let fooling = try Fooling(method: method, epsilon: epsilon, maxSteps: 60, restarts: 2, seed: 9)
        let result = try fooling.run(model: smallModel, starts: starts, targets: targets)
        #expect(maxDistance(result.images, starts) <= epsilon + 1e-6)
        #expect(isEightBit(result.images))
        // A box of ε = 0 allows nothing at all.
        let frozen = try Fooling(method: method, epsilon: 0, maxSteps: 5).run(model: smallModel, starts: starts, targets: targets)
        #expect(frozen.images == starts)
    }

    @Test func classVisualisationIsSmootherThanGibberish() throws {
        let starts = FoolingStart.zeros.images(for: [5], shape: [1, 28, 28], seed: 1)
        let plain = try Fooling(maxSteps: 150, stepSize: 0.05).run(model: smallModel, starts: starts, targets: [5])
        let drawn = try Fooling(maxSteps: 150, stepSize: 0.05, regularization: .init(l2: 0.05, totalVariation: 0.3))
            .run(model: smallModel, starts: starts, targets: [5])
        #expect(drawn.steps == [150])
        #expect(drawn.targetProbabilities[0] > 0.5)
        func totalVariation(_ x: Tensor) -> Float {
            var sum: Float = 0
            for r in 0..<28 {
                for c in 0..<27 { sum += abs(x.scalars[r * 28 + c + 1] - x.scalars[r * 28 + c]) }
            }
            return sum
        }
        let noisy = try Fooling(maxSteps: 150).run(
            model: smallModel, starts: FoolingStart.noise.images(for: [5], shape: [1, 28, 28], seed: 1), targets: [5])
        #expect(totalVariation(drawn.images) < totalVariation(noisy.images))
        _ = plain
    }

    @Test func startsAreReproducibleAndPerTarget() {
        let all = FoolingStart.noise.images(for: Array(0..<10), shape: [1, 28, 28], seed: 3)
        let five = FoolingStart.noise.images(for: [5], shape: [1, 28, 28], seed: 3)
        #expect(all.batch(5..<6).scalars == five.scalars)
        #expect(all.batch(4..<5).scalars != five.scalars)
        #expect(isEightBit(all) && isEightBit(FoolingStart.gaussian.images(for: [1], shape: [1, 28, 28], seed: 3)))
        #expect(FoolingStart.zeros.images(for: [2], shape: [1, 28, 28], seed: 3).scalars.allSatisfy { $0 == 0 })
    }

    @Test func badOptionsAreRejected() throws {
        #expect(throws: AdversarialError("confidence must be between 0 and 1 (exclusive), got 1.5")) {
            try Fooling(confidence: 1.5)
        }
        #expect(throws: AdversarialError("epsilon must be between 0 and 1, got -0.1")) { try Fooling(epsilon: -0.1) }
        #expect(throws: AdversarialError.self) { try Fooling(epsilon: .nan) }
        #expect(throws: AdversarialError.self) { try Fooling(maxSteps: 0) }
        #expect(throws: AdversarialError.self) { try Fooling(method: .evolve, regularization: .init(l2: 1, totalVariation: 0)) }
        let starts = FoolingStart.zeros.images(for: [0], shape: [1, 28, 28], seed: 1)
        #expect(throws: AdversarialError("target 11 is not a class of this model (0–9)")) {
            try Fooling().run(model: smallModel, starts: starts, targets: [11])
        }
        var poisoned = starts
        poisoned.scalars[3] = .nan
        #expect(throws: AdversarialError("start images contain NaN or infinite pixels")) {
            try Fooling().run(model: smallModel, starts: poisoned, targets: [1])
        }
    }
}

@Suite struct ObjectiveTests {
    @Test func marginGradientIsTheTwoLogitDifference() {
        let logits = Tensor(shape: [2, 4], scalars: [1, 3, 2, 0, 5, 1, 1, 4])
        let (losses, gradient) = Objective.margin.evaluate(logits: logits, targets: [0, 3], sign: 1)
        #expect(losses == [2, 1])  // 3 − 1, 5 − 4
        #expect(gradient.scalars == [-1, 1, 0, 0, 1, 0, 0, -1])
    }

    @Test func quantizingKeepsTheBox() {
        let reference = Tensor(shape: [1, 4], scalars: [0, 10.0 / 255, 128.0 / 255, 1])
        let box = PixelBox(around: reference, epsilon: 0.02)  // 5.1 levels: 5 levels allowed
        let pushed = Tensor(shape: [1, 4], scalars: [0.5, 0.9, 0, 0])
        let rounded = box.quantize(pushed)
        #expect(rounded.scalars.map { Int(($0 * 255).rounded()) } == [5, 15, 123, 250])
        #expect(maxDistance(rounded, reference) <= 0.02)
    }

    @Test func projectingKeepsEpsilonExactlyInFloat() {
        // Float(0.7) + Float(0.1) − Float(0.7) > Float(0.1): without moving the bounds
        // inwards, |x − reference| ≤ ε would fail as Float arithmetic computes it.
        let values: [Float] = (0..<256).map { Float($0) / 255 } + [0.1, 0.7, 0.35]
        let reference = Tensor(shape: [values.count, 1], scalars: values)
        for epsilon: Float in [0.1, 0.2, 0.3, 0.25, 1.0 / 3] {
            let box = PixelBox(around: reference, epsilon: epsilon)
            var far = Tensor(shape: reference.shape, scalars: values.map { $0 < 0.5 ? 2 : -1 })
            box.project(&far)
            var near = reference
            box.step(&near, signOf: Tensor(shape: reference.shape, scalars: values.map { $0 < 0.5 ? 1 : -1 }), size: 1)
            for x in [far, near] {
                #expect(maxDistance(x, reference) <= epsilon)
                #expect(x.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
                // Pushed as far as the box allows: ε away, or at the edge of [0, 1].
                for (value, moved) in zip(values, x.scalars) {
                    #expect(abs(moved - value) >= min(epsilon, value < 0.5 ? 1 - value : value) - 1e-6)
                }
            }
            // What a PNG holds stays inside too, for 8-bit references (0.2 is 51/255: the
            // 51st level lies an ulp outside for some), and at most one level short.
            let levels = Array(0..<256)
            let bytes = reference.gathering(levels)
            let saved = PixelBox(around: bytes, epsilon: epsilon).quantize(far.gathering(levels))
            #expect(maxDistance(saved, bytes) <= epsilon)
            for (value, moved) in zip(bytes.scalars, saved.scalars) {
                #expect(abs(moved - value) >= min(epsilon, value < 0.5 ? 1 - value : value) - 1.001 / 255)
            }
        }
    }

    @Test func gatheringTheBoxFollowsTheItems() {
        let reference = Tensor(shape: [3, 2], scalars: [0, 0.1, 0.5, 0.6, 0.9, 1])
        let gathered = PixelBox(around: reference, epsilon: 0.2).gathering([2, 0])
        let direct = PixelBox(around: reference.gathering([2, 0]), epsilon: 0.2)
        #expect(gathered.itemSize == 2)
        #expect(gathered.lower == direct.lower)
        #expect(gathered.upper == direct.upper)
        #expect(gathered.lower[2] == 0 && abs(gathered.upper[3] - 0.3) < 1e-6)
    }
}
