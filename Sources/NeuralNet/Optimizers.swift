import Foundation

/// Updates one parameter from its gradient. The optimizer is a pure function of the
/// parameter, its gradient and its state; the state is tensors, so a checkpoint can hold it.
public protocol Optimizer: Sendable {
    /// The names of the per-parameter state tensors (PyTorch's names, e.g. `exp_avg`).
    var stateNames: [String] { get }

    /// Applies one update to `parameter`. `step` counts updates from 1.
    func update(_ parameter: inout Tensor, gradient: Tensor, state: inout [Tensor], step: Int, learningRate: Float)
}

extension Optimizer {
    /// Zero state for a parameter.
    public func makeState(for parameter: Tensor) -> [Tensor] {
        stateNames.map { _ in Tensor(shape: parameter.shape) }
    }
}

extension Float {
    /// The value, or 0 if it is subnormal.
    ///
    /// The optimizers' moving averages store it: a weight whose gradient stays 0 (a dead ReLU
    /// unit's) has a moment that decays by β each step, reaches the subnormal range after
    /// some 800 Adam steps and then stalls there (0.9 · 4·2⁻¹⁴⁹ rounds back to 4·2⁻¹⁴⁹).
    /// Arithmetic on subnormals takes a slow microcode path on Intel CPUs: in a 44-epoch
    /// certified run 70% of the dense layers' `exp_avg` was subnormal, and Adam's update took
    /// 28% of the training time. Flushing the first moment changes Adam's step by less than
    /// 10·lr·2⁻¹²⁶/ε ≈ 1.2·10⁻²⁹·lr (10 bounds the bias correction); flushing the second
    /// changes √v by under 10⁻¹⁹, beside ε = 10⁻⁸. No Float weight of normal size can show it.
    var flushedToZero: Float { abs(self) < .leastNormalMagnitude ? 0 : self }
}

/// Stochastic gradient descent with momentum and L2 weight decay, as PyTorch's `optim.SGD`
/// (no dampening): `buf = momentum·buf + (g + wd·p)`, `p −= lr·buf` (or Nesterov's variant).
public struct SGD: Optimizer {
    public let momentum: Float
    public let weightDecay: Float
    public let nesterov: Bool

    /// Creates the optimizer.
    public init(momentum: Float = 0.9, weightDecay: Float = 0, nesterov: Bool = false) {
        precondition(momentum >= 0 && momentum < 1 && weightDecay >= 0, "momentum in [0, 1) and weight decay ≥ 0")
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    public var stateNames: [String] { momentum > 0 ? ["momentum_buffer"] : [] }

    public func update(_ parameter: inout Tensor, gradient: Tensor, state: inout [Tensor], step: Int, learningRate: Float) {
        let (m, wd, nesterov) = (momentum, weightDecay, self.nesterov)
        parameter.scalars.withUnsafeMutableBufferPointer { p in
            gradient.scalars.withUnsafeBufferPointer { g in
                if state.isEmpty {
                    for i in 0..<p.count { p[i] -= learningRate * (g[i] + wd * p[i]) }
                    return
                }
                state[0].scalars.withUnsafeMutableBufferPointer { buffer in
                    for i in 0..<p.count {
                        let d = g[i] + wd * p[i]
                        buffer[i] = (m * buffer[i] + d).flushedToZero
                        p[i] -= learningRate * (nesterov ? d + m * buffer[i] : buffer[i])
                    }
                }
            }
        }
    }
}

/// Adam (Kingma & Ba 2015), as PyTorch's `optim.Adam`; `weightDecay` adds `wd·p` to the
/// gradient (L2), or is applied decoupled (AdamW, Loshchilov & Hutter 2019) when `decoupled`.
///
/// The one Adam of the project: training uses it on parameters, fooling on pixels and
/// Carlini–Wagner on its tanh-space variables.
public struct Adam: Optimizer {
    public let beta1: Float
    public let beta2: Float
    public let epsilon: Float
    public let weightDecay: Float
    public let decoupled: Bool

    /// Creates the optimizer.
    public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0, decoupled: Bool = false) {
        precondition(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1 && epsilon > 0 && weightDecay >= 0)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupled = decoupled
    }

    public var stateNames: [String] { ["exp_avg", "exp_avg_sq"] }

    public func update(_ parameter: inout Tensor, gradient: Tensor, state: inout [Tensor], step: Int, learningRate: Float) {
        let (b1, b2, eps, wd, decoupled) = (beta1, beta2, epsilon, weightDecay, self.decoupled)
        let stepSize = learningRate / (1 - powf(b1, Float(step)))
        let correction2 = (1 - powf(b2, Float(step))).squareRoot()
        let l2 = decoupled ? 0 : wd
        let shrink = decoupled ? 1 - learningRate * wd : 1
        // Take the moments out of `state` so that both can be mutated without copies.
        var (mean, variance) = (Tensor(shape: [0]), Tensor(shape: [0]))
        swap(&mean, &state[0])
        swap(&variance, &state[1])
        defer {
            swap(&mean, &state[0])
            swap(&variance, &state[1])
        }
        parameter.scalars.withUnsafeMutableBufferPointer { p in
            gradient.scalars.withUnsafeBufferPointer { g in
                mean.scalars.withUnsafeMutableBufferPointer { m in
                    variance.scalars.withUnsafeMutableBufferPointer { v in
                        let (p, g, m, v) = (p.baseAddress!, g.baseAddress!, m.baseAddress!, v.baseAddress!)
                        // Element by element, so the chunks (run on all threads: the update is
                        // otherwise the serial part of a training step) change no result.
                        elementwise(count: gradient.count) { range in
                            for i in range {
                                let d = g[i] + l2 * p[i]
                                m[i] = (b1 * m[i] + (1 - b1) * d).flushedToZero
                                v[i] = (b2 * v[i] + (1 - b2) * d * d).flushedToZero
                                p[i] = p[i] * shrink - stepSize * m[i] / (v[i].squareRoot() / correction2 + eps)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How the learning rate changes over a run.
public enum LearningRateSchedule: Sendable, Equatable, CustomStringConvertible {
    /// The base rate throughout.
    case constant
    /// The rate times `factor` after every `everyEpochs` epochs.
    case step(everyEpochs: Int, factor: Float)
    /// Cosine decay from the base rate to 0 over the run (Loshchilov & Hutter 2017, no restarts).
    case cosine
    /// PyTorch's `OneCycleLR` (Smith 2018): cosine warm-up from base/25 to base over the
    /// first `warmupFraction` of the steps, then cosine decay to base/(25·10⁴).
    case oneCycle(warmupFraction: Float)

    /// The rate at 0-based `step` of `totalSteps`, with `stepsPerEpoch` steps an epoch.
    public func learningRate(base: Float, step: Int, stepsPerEpoch: Int, totalSteps: Int) -> Float {
        switch self {
        case .constant:
            return base
        case let .step(every, factor):
            return base * powf(factor, Float(step / max(1, stepsPerEpoch * every)))
        case .cosine:
            return Self.cosineDecay(base, 0, Float(step) / Float(max(1, totalSteps)))
        case let .oneCycle(warmup):
            let initial = base / 25
            let final = initial / 10_000
            let peak = Float(totalSteps) * warmup - 1
            if Float(step) <= peak {
                return Self.cosineDecay(initial, base, Float(step) / max(peak, 1))
            }
            return Self.cosineDecay(base, final, (Float(step) - peak) / max(Float(totalSteps - 1) - peak, 1))
        }
    }

    /// The half cosine from `start` (at `fraction` 0) to `end` (at 1), `fraction` clamped
    /// to [0, 1]: the curve of the cosine and one-cycle schedules, and of any other step
    /// size that decays this way (fooling's signed steps).
    public static func cosineDecay(_ start: Float, _ end: Float, _ fraction: Float) -> Float {
        end + (start - end) / 2 * (1 + cosf(Float.pi * min(max(fraction, 0), 1)))
    }

    public var description: String {
        switch self {
        case .constant: return "constant"
        case let .step(every, factor): return "step:\(every):\(factor)"
        case .cosine: return "cosine"
        case let .oneCycle(warmup): return warmup == 0.3 ? "onecycle" : "onecycle:\(warmup)"
        }
    }

    /// Parses `constant`, `cosine`, `onecycle[:warmupFraction]` or `step[:everyEpochs[:factor]]`.
    public init?(parsing text: String) {
        let parts = text.lowercased().split(separator: ":").map(String.init)
        switch parts.first {
        case "constant" where parts.count == 1: self = .constant
        case "cosine" where parts.count == 1: self = .cosine
        case "onecycle", "one-cycle":
            guard parts.count <= 2 else { return nil }
            let warmup = parts.count == 2 ? Float(parts[1]) : 0.3
            guard let warmup, warmup > 0, warmup < 1 else { return nil }
            self = .oneCycle(warmupFraction: warmup)
        case "step":
            guard parts.count <= 3 else { return nil }
            let every = parts.count >= 2 ? Int(parts[1]) : 1
            let factor = parts.count == 3 ? Float(parts[2]) : 0.5
            guard let every, every >= 1, let factor, factor > 0, factor <= 1 else { return nil }
            self = .step(everyEpochs: every, factor: factor)
        default: return nil
        }
    }
}
