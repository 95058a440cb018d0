import NeuralNet

/// What an input-space optimisation minimises, computed from a batch's logits.
///
/// Every objective returns per-row losses and the gradient of their sum with respect to
/// the logits, in the shape ``NeuralNet/Model/gradients(_:training:needsInputGradient:needsParameterGradients:loss:)``
/// expects. Attacks and fooling differ only in which objective and which classes they pass.
public enum Objective: String, Sendable, CaseIterable {
    /// Cross-entropy of the class: minimising it raises the class's softmax probability.
    case crossEntropy = "ce"
    /// The logit margin `max_{j≠t} z_j − z_t` (Carlini & Wagner 2017): minimising it
    /// lifts the class's logit above the strongest rival.
    case margin

    /// Losses and logit gradients for rows of `logits` and their classes `targets`,
    /// for making each row's class *more* likely (`sign` = +1) or *less* likely (−1).
    public func evaluate(logits: Tensor, targets: ArraySlice<Int>, sign: Float = 1) -> (losses: [Float], logitGradient: Tensor) {
        switch self {
        case .crossEntropy:
            var (losses, gradient) = NeuralNet.crossEntropy(logits: logits, labels: targets, gradientScale: sign)
            if sign != 1 { losses = losses.map { $0 * sign } }
            return (losses, gradient)
        case .margin:
            let classes = logits.shape[1]
            var losses = [Float](repeating: 0, count: targets.count)
            var gradient = Tensor(shape: logits.shape)
            for (row, target) in targets.enumerated() {
                let base = row * classes
                let rival = logits.strongestRival(row: row, excluding: target)
                losses[row] = sign * (logits.scalars[base + rival] - logits.scalars[base + target])
                gradient.scalars[base + rival] = sign
                gradient.scalars[base + target] = -sign
            }
            return (losses, gradient)
        }
    }
}

extension Tensor {
    /// The highest-scoring class of row `row` of a [N, classes] tensor other than
    /// `excluded` (the first one on ties): the "max_{i≠y} z_i" of margin losses.
    func strongestRival(row: Int, excluding excluded: Int) -> Int {
        let classes = shape[1]
        let base = row * classes
        var rival = excluded == 0 ? 1 : 0
        for c in 0..<classes where c != excluded && scalars[base + c] > scalars[base + rival] { rival = c }
        return rival
    }
}

extension Model {
    /// The gradient of `objective` for `targets` with respect to the input, with the
    /// weights frozen (no parameter gradients are computed), plus the logits of `input`.
    public func inputGradient(
        _ input: Tensor, targets: [Int], objective: Objective, sign: Float = 1
    ) -> (gradient: Tensor, logits: Tensor, losses: [Float]) {
        let result = gradients(
            input, needsInputGradient: true, needsParameterGradients: false,
            loss: { logits, rows in objective.evaluate(logits: logits, targets: targets[rows], sign: sign) })
        return (result.inputGradient ?? Tensor(shape: input.shape), result.logits, result.losses)
    }
}

/// The box a perturbed image must stay in: pixels in [0, 1] and, optionally, within ε of
/// a reference image in L∞. Used by fooling, the attacks and adversarial training alike.
///
/// The ε bounds are rounded inwards, so that `abs(x − reference) ≤ ε` holds in Float
/// arithmetic for every pixel projected into the box (reference + ε can round up past
/// the true bound).
public struct PixelBox: Sendable {
    /// Per-element lower and upper bounds.
    public let lower: [Float], upper: [Float]
    /// Elements per item (image) of the reference.
    public let itemSize: Int

    /// The box [0,1] ∩ [reference − ε, reference + ε] (just [0,1] when ε is nil).
    public init(around reference: Tensor, epsilon: Float?) {
        itemSize = reference.itemCount
        guard let epsilon else {
            lower = [Float](repeating: 0, count: reference.count)
            upper = [Float](repeating: 1, count: reference.count)
            return
        }
        var lower = reference.scalars, upper = reference.scalars
        for (index, value) in reference.scalars.enumerated() {
            var low = max(0, value - epsilon)
            var high = min(1, value + epsilon)
            while value - low > epsilon { low = low.nextUp }
            while high - value > epsilon { high = high.nextDown }
            lower[index] = low
            upper[index] = high
        }
        self.lower = lower
        self.upper = upper
    }

    private init(lower: [Float], upper: [Float], itemSize: Int) {
        self.lower = lower
        self.upper = upper
        self.itemSize = itemSize
    }

    /// The bounds of some items (images), in the given order, like ``Tensor/gathering(_:)``.
    public func gathering(_ indices: [Int]) -> PixelBox {
        var lower: [Float] = [], upper: [Float] = []
        lower.reserveCapacity(indices.count * itemSize)
        upper.reserveCapacity(indices.count * itemSize)
        for index in indices {
            lower += self.lower[index * itemSize..<(index + 1) * itemSize]
            upper += self.upper[index * itemSize..<(index + 1) * itemSize]
        }
        return PixelBox(lower: lower, upper: upper, itemSize: itemSize)
    }

    /// Clips every element into the box.
    public func project(_ tensor: inout Tensor) {
        precondition(tensor.count == lower.count, "box and tensor sizes differ")
        lower.withUnsafeBufferPointer { low in
            upper.withUnsafeBufferPointer { high in
                tensor.scalars.withUnsafeMutableBufferPointer { x in
                    for index in 0..<x.count { x[index] = min(max(x[index], low[index]), high[index]) }
                }
            }
        }
    }

    /// One signed-gradient step, then back into the box: x ← project(x + α·sign(direction)).
    /// A negative α descends. The L∞ step of PGD, BIM, FGSM, adversarial training and
    /// the signed fooling search.
    public func step(_ x: inout Tensor, signOf direction: Tensor, size alpha: Float) {
        precondition(x.count == direction.count, "step and tensor sizes differ")
        x.scalars.withUnsafeMutableBufferPointer { x in
            direction.scalars.withUnsafeBufferPointer { g in
                for index in 0..<x.count {
                    x[index] += g[index] > 0 ? alpha : (g[index] < 0 ? -alpha : 0)
                }
            }
        }
        project(&x)
    }

    /// The nearest 8-bit image inside the box: each pixel rounded to a multiple of 1/255,
    /// then moved by one level where rounding left the box. What a PNG file will hold.
    ///
    /// When the box's bounds come from an 8-bit reference and ε, the result stays inside
    /// the box exactly, so an ε promise survives saving as PNG.
    public func quantize(_ tensor: Tensor) -> Tensor {
        var result = tensor
        for index in result.scalars.indices {
            let lowLevel = (lower[index] * 255 - 1e-3).rounded(.up)
            let highLevel = (upper[index] * 255 + 1e-3).rounded(.down)
            var level = min(max((tensor.scalars[index] * 255).rounded(), lowLevel), highLevel)
            // The tolerance above lets a level whose Float lies an ulp outside through
            // (ε = 51/255, say): move it one level inwards, so the box's promise holds.
            if level / 255 > upper[index] { level -= 1 }
            if level / 255 < lower[index] { level += 1 }
            result.scalars[index] = level / 255
        }
        return result
    }
}

/// Rounds pixels to the 8-bit levels a PNG holds (values clamped to [0, 1]).
public func quantizedToBytes(_ tensor: Tensor) -> Tensor {
    Tensor(shape: tensor.shape, scalars: tensor.scalars.map { (min(max($0, 0), 1) * 255).rounded() / 255 })
}

extension Tensor {
    /// Adds uniform noise in [−radius, radius] to every element; row (image) `r` draws
    /// from `generator(r)`, so an image's noise does not depend on the rest of the batch.
    mutating func addUniformNoise(radius: Float, generator: (Int) -> SplitMix64) {
        let size = itemCount
        for row in 0..<batchSize {
            var random = generator(row)
            for index in row * size..<(row + 1) * size {
                scalars[index] += radius * (2 * random.nextUnitFloat() - 1)
            }
        }
    }
}
