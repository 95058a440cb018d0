import Foundation
import NeuralNet

/// Adversarial training, the defence: every training batch is replaced (or joined) by
/// adversarial versions crafted against the current weights, so the model learns to
/// classify the worst case in the ε-ball rather than the clean image only.
///
/// - `fgsmRS`: one signed step of size α from a uniform random start in the ball (Wong,
///   Rice & Kolter 2020, "Fast is better than free"; α = 1.25ε by default).
/// - `pgd`: projected gradient ascent of the cross-entropy with a random start (Madry et
///   al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks").
/// - `trades`: cross-entropy on clean images plus β·KL(f(x) ‖ f(x′)), where x′ maximises
///   that KL in the ball (Zhang et al. 2019, "Theoretically Principled Trade-off between
///   Robustness and Accuracy").
///
/// The inner attacks here run all their steps (no early stop on success): training wants
/// the highest loss in the ball, not just any misclassified point.
public struct AdversarialTraining: Sendable {
    /// The training method.
    public enum Method: String, Sendable, CaseIterable {
        case none
        case fgsmRS = "fgsm-rs"
        case pgd
        case trades
    }

    public let method: Method
    /// The L∞ radius at full strength.
    public let epsilon: Float
    /// Inner attack steps (1 for fgsm-rs).
    public let steps: Int
    /// Inner attack step size.
    public let stepSize: Float
    /// TRADES' weight of the robustness term.
    public let beta: Float

    /// Checks and stores the options. Defaults: fgsm-rs α = 1.25ε; pgd 7 steps of 2.5ε/7;
    /// trades 10 steps of ε/4, β = 6.
    public init(method: Method, epsilon: Float = 0.3, steps: Int? = nil, stepSize: Float? = nil, beta: Float = 6)
        throws(AdversarialError)
    {
        guard epsilon.isFinite, epsilon >= 0, epsilon <= 1 else {
            throw AdversarialError("epsilon must be between 0 and 1, got \(epsilon)")
        }
        let defaultSteps = method == .fgsmRS ? 1 : (method == .trades ? 10 : 7)
        let steps = steps ?? defaultSteps
        guard steps >= 1 else { throw AdversarialError("attack steps must be at least 1, got \(steps)") }
        if method == .fgsmRS && steps != 1 { throw AdversarialError("fgsm-rs takes exactly one attack step") }
        if let stepSize, !(stepSize.isFinite && stepSize > 0) {
            throw AdversarialError("attack step size must be a positive number, got \(stepSize)")
        }
        guard beta.isFinite, beta >= 0 else { throw AdversarialError("beta must be ≥ 0, got \(beta)") }
        self.method = method
        self.epsilon = epsilon
        self.steps = steps
        switch method {
        case .none: self.stepSize = stepSize ?? 0
        case .fgsmRS: self.stepSize = stepSize ?? 1.25 * epsilon
        case .pgd: self.stepSize = stepSize ?? 2.5 * epsilon / Float(steps)
        case .trades: self.stepSize = stepSize ?? epsilon / 4
        }
        self.beta = beta
    }

    /// The training batch for clean `images` at the current weights, with the ε of this
    /// step (ramped up during warm-up by the caller). `seed` keys the random starts.
    public func batch(model: Model, images: Tensor, labels: [Int], epsilon: Float, seed: UInt64) -> TrainingBatch {
        let count = labels.count
        let scale = 1 / Float(count)
        let crossEntropyLoss: LogitLoss = { logits, rows in
            crossEntropy(logits: logits, labels: labels[rows], gradientScale: scale)
        }
        let box = PixelBox(around: images, epsilon: epsilon)
        switch method {
        case .none:
            return TrainingBatch(input: images, labels: labels)
        case .fgsmRS, .pgd:
            let cleanCorrect = zip(model.predictions(images), labels).filter { $0 == $1 }.count
            var x = randomStart(images, radius: epsilon, seed: seed, box: box)
            let alpha = stepSize * (self.epsilon > 0 ? epsilon / self.epsilon : 0)
            for _ in 0..<steps {
                let gradient = model.inputGradient(x, targets: labels, objective: .crossEntropy, sign: 1).gradient
                box.step(&x, signOf: gradient, size: alpha)
            }
            return TrainingBatch(input: x, labels: labels, scoredRows: 0..<count, clean: .counted(cleanCorrect), loss: crossEntropyLoss)
        case .trades:
            let classes = model.classCount
            let clean = softmax(model.logits(images))
            // x′ starts next to x (TRADES uses 0.001·N(0, 1)) and climbs KL(p ‖ q).
            var x = images
            for row in 0..<count {
                var generator = SplitMix64(seed: seed, stream: 0x7BAD, UInt64(row))
                for index in row * x.itemCount..<(row + 1) * x.itemCount {
                    x.scalars[index] += 0.001 * generator.nextGaussian()
                }
            }
            box.project(&x)
            let alpha = stepSize * (self.epsilon > 0 ? epsilon / self.epsilon : 0)
            for _ in 0..<steps {
                let gradient = model.gradients(
                    x, needsInputGradient: true, needsParameterGradients: false,
                    loss: { logits, rows in klGradient(logits: logits, reference: clean, rows: rows, scale: 1) }
                ).inputGradient!
                box.step(&x, signOf: gradient, size: alpha)
            }
            let adversarial = softmax(model.logits(x))
            let beta = self.beta
            // One pass over [x; x′]: clean rows carry CE + β·KL through p, adversarial
            // rows β·KL through q; p and q are fixed here, and the weights do not change
            // before the pass, so they equal what the pass computes.
            let loss: LogitLoss = { logits, rows in
                var losses = [Float](repeating: 0, count: rows.count)
                var gradient = Tensor(shape: logits.shape)
                for (offset, row) in rows.enumerated() {
                    let item = row % count
                    let base = offset * classes
                    if row < count {
                        let (ce, ceGradient) = crossEntropy(
                            logits: logits.batch(offset..<offset + 1), labels: [labels[item]], gradientScale: scale)
                        var kl: Float = 0
                        for c in 0..<classes {
                            let p = clean.scalars[item * classes + c], q = adversarial.scalars[item * classes + c]
                            if p > 0 { kl += p * (logf(p) - logf(max(q, 1e-30))) }
                        }
                        losses[offset] = ce[0] + beta * kl / Float(count)
                        for c in 0..<classes {
                            let p = clean.scalars[item * classes + c], q = adversarial.scalars[item * classes + c]
                            let klTerm = p > 0 ? p * ((logf(p) - logf(max(q, 1e-30))) - kl) : 0
                            gradient.scalars[base + c] = ceGradient.scalars[c] + beta * scale * klTerm
                        }
                    } else {
                        for c in 0..<classes {
                            let p = clean.scalars[item * classes + c], q = adversarial.scalars[item * classes + c]
                            gradient.scalars[base + c] = beta * scale * (q - p)
                        }
                    }
                }
                return (losses, gradient)
            }
            return TrainingBatch(
                input: Tensor.concatenate([images, x]), labels: labels, scoredRows: count..<2 * count,
                clean: .rows(0..<count), loss: loss)
        }
    }

    /// Each step's batch for ``NeuralNet/Trainer/fit(_:plan:startEpoch:prepare:evaluate:onEvent:)``:
    /// ε grows linearly from 0 to ``epsilon`` over the first `warmupSteps` steps (large ε
    /// from the first step can stall training), and each step's random starts get their own seed.
    public func preparation(warmupSteps: Int, seed: UInt64) -> BatchPreparation {
        { model, images, labels, step, _ in
            let ramp = warmupSteps > 0 ? min(1, Float(step + 1) / Float(warmupSteps)) : 1
            return batch(model: model, images: images, labels: labels, epsilon: epsilon * ramp, seed: seed &+ UInt64(step) &* 0x2545_F491)
        }
    }

    /// A uniform random point of the box around each image.
    private func randomStart(_ images: Tensor, radius: Float, seed: UInt64, box: PixelBox) -> Tensor {
        var x = images
        x.addUniformNoise(radius: radius) { SplitMix64(seed: seed, stream: 0xAD7, UInt64($0)) }
        box.project(&x)
        return x
    }
}

/// Gradient of KL(p ‖ softmax(z)) with respect to z for the given rows: softmax(z) − p.
func klGradient(logits: Tensor, reference: Tensor, rows: Range<Int>, scale: Float) -> (losses: [Float], logitGradient: Tensor) {
    let classes = logits.shape[1]
    let q = softmax(logits)
    var gradient = q
    var losses = [Float](repeating: 0, count: rows.count)
    for (offset, row) in rows.enumerated() {
        for c in 0..<classes {
            let p = reference.scalars[row * classes + c]
            let qc = q.scalars[offset * classes + c]
            gradient.scalars[offset * classes + c] = scale * (qc - p)
            if p > 0 { losses[offset] += p * (logf(p) - logf(max(qc, 1e-30))) }
        }
    }
    return (losses, gradient)
}
