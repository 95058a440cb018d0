import Foundation
import Testing

@testable import NeuralNet

@Suite("Losses")
struct LossTests {
    @Test("cross-entropy by hand: equal logits give ln 2 and gradient ±½")
    func crossEntropyByHand() {
        let (losses, gradient) = crossEntropy(logits: Tensor(shape: [1, 2], scalars: [0, 0]), labels: [0])
        #expect(abs(losses[0] - logf(2)) < 1e-6)
        #expect(gradient.scalars == [-0.5, 0.5])
    }

    @Test("cross-entropy is stable for large logits and its gradient matches finite differences")
    func crossEntropyGradient() {
        let logits = Tensor(shape: [3, 10], scalars: randomTensor([3, 10], seed: 1, scale: 30).scalars)
        let labels = [3, 0, 9]
        let (losses, gradient) = crossEntropy(logits: logits, labels: labels)
        #expect(losses.allSatisfy { $0.isFinite && $0 >= 0 })
        let indices = Array(0..<30)
        let numeric = numericalGradient(
            of: { crossEntropy(logits: $0, labels: labels).losses.reduce(0) { $0 + Double($1) } }, at: logits,
            indices: indices, epsilon: 1e-2)
        for (i, expected) in zip(indices, numeric) {
            #expect(abs(Double(gradient.scalars[i]) - expected) < 2e-3, "logit \(i)")
        }
    }

    @Test("softmax rows sum to one")
    func softmaxSums() {
        let probabilities = softmax(randomTensor([4, 10], seed: 2, scale: 50))
        for n in 0..<4 {
            #expect(abs(probabilities.scalars[(n * 10)..<(n * 10 + 10)].reduce(0, +) - 1) < 1e-5)
        }
    }
}
