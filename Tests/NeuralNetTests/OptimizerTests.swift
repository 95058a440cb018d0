import Foundation
import Testing

@testable import NeuralNet

@Suite("Optimizers and learning-rate schedules")
struct OptimizerTests {
    @Test("SGD with momentum, worked by hand")
    func sgdByHand() {
        let sgd = SGD(momentum: 0.9, weightDecay: 0.1)
        var p = Tensor(shape: [1], scalars: [1])
        var state = sgd.makeState(for: p)
        // step 1: d = 0.5 + 0.1·1 = 0.6, buf = 0.6, p = 1 − 0.1·0.6 = 0.94
        sgd.update(&p, gradient: Tensor(shape: [1], scalars: [0.5]), state: &state, step: 1, learningRate: 0.1)
        #expect(abs(p.scalars[0] - 0.94) < 1e-6)
        // step 2: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134, p = 0.94 − 0.1134
        sgd.update(&p, gradient: Tensor(shape: [1], scalars: [0.5]), state: &state, step: 2, learningRate: 0.1)
        #expect(abs(p.scalars[0] - (0.94 - 0.1134)) < 1e-6)
    }

    @Test("Adam's first step moves each weight by the learning rate against its gradient's sign")
    func adamFirstStep() {
        let adam = Adam()
        var p = Tensor(shape: [3], scalars: [1, 2, 3])
        var state = adam.makeState(for: p)
        adam.update(&p, gradient: Tensor(shape: [3], scalars: [0.5, -2, 1e-3]), state: &state, step: 1, learningRate: 0.01)
        #expect(abs(p.scalars[0] - 0.99) < 1e-6)
        #expect(abs(p.scalars[1] - 2.01) < 1e-6)
        #expect(abs(p.scalars[2] - 2.99) < 1e-4)
        #expect(abs(state[0].scalars[0] - 0.05) < 1e-7)
    }

    @Test("Adam matches PyTorch's formula over several steps")
    func adamSteps() {
        let adam = Adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8)
        var p = Tensor(shape: [1], scalars: [0])
        var state = adam.makeState(for: p)
        var (m, v, x) = (0.0, 0.0, 0.0)
        for step in 1...5 {
            let g = Double(step) * 0.3 - 1
            adam.update(&p, gradient: Tensor(shape: [1], scalars: [Float(g)]), state: &state, step: step, learningRate: 0.1)
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            x -= 0.1 / (1 - pow(0.9, Double(step))) * m / ((v / (1 - pow(0.999, Double(step)))).squareRoot() + 1e-8)
        }
        #expect(abs(Double(p.scalars[0]) - x) < 1e-5)
    }

    @Test("a moment whose gradient stays 0 decays to exactly 0, not to a stalled subnormal")
    func momentsFlushToZero() {
        // Without the flush, m = 0.9ᵏ·10⁻⁴ enters the subnormals near step 800 and stalls at
        // a few ulps of 2⁻¹⁴⁹ (0.9 · 4·2⁻¹⁴⁹ rounds back to 4·2⁻¹⁴⁹); each later update of
        // that weight is a slow subnormal multiply.
        for optimizer in [Adam() as any Optimizer, SGD(momentum: 0.9)] {
            var p = Tensor(shape: [2], scalars: [1, 1])
            var state = optimizer.makeState(for: p)
            optimizer.update(&p, gradient: Tensor(shape: [2], scalars: [1e-3, 1e-3]), state: &state, step: 1, learningRate: 1e-3)
            for step in 2...1_200 {
                optimizer.update(&p, gradient: Tensor(shape: [2], scalars: [0, 1e-3]), state: &state, step: step, learningRate: 1e-3)
            }
            #expect(state[0].scalars[0] == 0)
            #expect(state[0].scalars[1] > 1e-5)
            #expect(state.allSatisfy { $0.scalars.allSatisfy { $0 == 0 || $0.isNormal } })
        }
    }

    @Test("one-cycle follows PyTorch's OneCycleLR: base/25 → base at 30% → base/25e4")
    func oneCycle() {
        let schedule = LearningRateSchedule.oneCycle(warmupFraction: 0.3)
        // PyTorch's phase boundary is at step 0.3·100 − 1 = 29
        let rate = { (step: Int) in schedule.learningRate(base: 1, step: step, stepsPerEpoch: 10, totalSteps: 100) }
        #expect(abs(rate(0) - 0.04) < 1e-6)
        #expect(abs(rate(29) - 1) < 1e-6)
        #expect(abs(rate(99) - 0.04 / 10_000) < 1e-7)
        #expect(rate(15) > 0.04 && rate(15) < 1)
    }

    @Test("step and cosine schedules; parsing of schedule names")
    func schedules() {
        let step = LearningRateSchedule.step(everyEpochs: 2, factor: 0.1)
        #expect(step.learningRate(base: 1, step: 19, stepsPerEpoch: 10, totalSteps: 60) == 1)
        #expect(abs(step.learningRate(base: 1, step: 20, stepsPerEpoch: 10, totalSteps: 60) - 0.1) < 1e-7)
        #expect(abs(LearningRateSchedule.cosine.learningRate(base: 2, step: 50, stepsPerEpoch: 10, totalSteps: 100) - 1) < 1e-6)
        #expect(LearningRateSchedule(parsing: "onecycle") == .oneCycle(warmupFraction: 0.3))
        #expect(LearningRateSchedule(parsing: "step:3:0.2") == .step(everyEpochs: 3, factor: 0.2))
        #expect(LearningRateSchedule(parsing: "step:0") == nil)
        #expect(LearningRateSchedule(parsing: "warp") == nil)
    }
}
