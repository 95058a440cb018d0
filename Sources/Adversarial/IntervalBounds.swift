import NeuralNet

/// Elementwise bounds on a batch of activations: `lower ≤ a ≤ upper` for every input in a box.
public struct IntervalBounds: Sendable, Equatable {
    /// The lower bounds, the activation's shape (`[N, …]`).
    public var lower: Tensor
    /// The upper bounds, the same shape.
    public var upper: Tensor

    /// Creates bounds; `lower` and `upper` have one shape.
    public init(lower: Tensor, upper: Tensor) {
        precondition(lower.shape == upper.shape, "bounds of shapes \(lower.shape) and \(upper.shape)")
        self.lower = lower
        self.upper = upper
    }

    /// The L∞ box of radius `epsilon` around `images`, intersected with the valid pixel
    /// range [0, 1], rounded outward (`x − ε` down, `x + ε` up) so that it holds every image
    /// of the real-valued box.
    public static func box(around images: Tensor, epsilon: Float) -> IntervalBounds {
        let lower = images.scalars.map { x in min(x, max(0, (x - epsilon).nextDown)) }
        let upper = images.scalars.map { x in max(x, min(1, (x + epsilon).nextUp)) }
        return IntervalBounds(
            lower: Tensor(shape: images.shape, scalars: lower),
            upper: Tensor(shape: images.shape, scalars: upper))
    }
}

/// Interval bound propagation (IBP, Gowal et al. 2018, "On the effectiveness of interval
/// bound propagation for training verifiably robust models") through a ``Model``.
///
/// Every layer the engine has is bounded: ``Conv2D`` (any stride and padding) and ``Dense``
/// in centre–radius form, `μ' = Wμ + b`, `r' = |W| r`; ``ReLU`` and ``MaxPool2D`` are
/// monotone and map the lower and the upper bound; ``Flatten`` reshapes; ``Dropout`` is the
/// identity at inference. The margin specification is folded into the last dense layer: for
/// label `y` its rows become `W_y − W_j` and its biases `b_y − b_j`, so the lower bound of each
/// margin `z_y − z_j` is computed directly instead of from separate logit bounds.
/// Each layer's rule is its ``BoundedLayer/intervalStep(_:)`` (BoundRules.swift).
///
/// ## Soundness under floating point
/// The bounds hold both for the real-valued network and for the Float32 engine (``Model``).
/// Each affine layer with dot products of length `k` (`C·R·R` for a convolution, the input
/// features for a dense layer) is computed with Float32 BLAS, whose sums in any order (and
/// with or without FMA) are within `γ(k+1) · (|W||x| + |b|)` of the exact value, where
/// `γ(n) = n·u / (1 − n·u)` and `u = 2⁻²⁴`. The engine's own forward pass makes an error of the
/// same size. So after each affine layer the radius is widened by
///
///     widen = 4 · (k + 2) · 2⁻²⁴ · (|W|(|μ| + r) + |b|) + k · 2⁻¹²⁶
///
/// where `|W|(|μ| + r)` is computed by a third pass and bounds `|W||x|` over the box; the
/// factor 4 covers this computation's error, the engine's error, and the error of computing
/// the widening itself; `k · 2⁻¹²⁶` covers underflow (and flush-to-zero) in the products. The
/// results are then rounded outward with `nextDown`/`nextUp`, as are the conversions between
/// lower–upper and centre–radius form (a radius or magnitude that is exactly 0 stays 0: see
/// `roundedUpUnlessZero`). The folded last layer is computed in Double from the
/// Float32 bounds (products of two Float32 values are exact in Double), and its margin lower
/// bound is lowered by `(k + 4) · 2⁻⁵² · S` for the Double sums plus `2 · (k + 2) · 2⁻²⁴ · S` for
/// the engine's Float32 logits, with `S = Σ (|W_y| + |W_j|) max(|l|, |u|) + |b_y| + |b_j|`, then
/// rounded down to Float32. The engine's argument is an induction over the layers: its
/// activation at every layer lies in that layer's widened box.
public enum IntervalBoundPropagation {
    /// Bounds on the output of `layers` (all of the model's unless given) for inputs in `input`.
    public static func bounds(_ model: Model, input: IntervalBounds, layerCount: Int? = nil) -> IntervalBounds
    {
        let layers = Array(model.layers.prefix(layerCount ?? model.layers.count))
        let shards = Compute.shards(count: input.lower.batchSize)
        let parts = Compute.map(shards.count) { index in
            var bounds = IntervalBounds(
                lower: input.lower.batch(shards[index]), upper: input.upper.batch(shards[index]))
            for layer in layers { bounds = propagate(bounds, through: layer) }
            return bounds
        }
        guard !parts.isEmpty else { return input }
        return IntervalBounds(
            lower: Tensor.concatenate(parts.map(\.lower)), upper: Tensor.concatenate(parts.map(\.upper)))
    }

    /// Lower bounds on the margins `z_y − z_j` of each image over the box of radius `epsilon`
    /// around it, `y` its label: `[N][classes]`, with `+∞` at `j = y`.
    ///
    /// - Precondition: the model's last layer with parameters is ``Dense``, followed only by
    ///   layers that are the identity at inference (dropout, flatten).
    public static func marginLowerBounds(
        _ model: Model, images: Tensor, labels: [Int], epsilon: Float
    ) -> [[Float]] {
        precondition(labels.count == images.batchSize, "one label per image")
        let (body, dense) = model.boundedLayers(for: "IBP")
        let box = IntervalBounds.box(around: images, epsilon: epsilon)
        let shards = Compute.shards(count: images.batchSize)
        let parts = Compute.map(shards.count) { index in
            var bounds = IntervalBounds(
                lower: box.lower.batch(shards[index]), upper: box.upper.batch(shards[index]))
            for layer in body { bounds = layer.intervalStep(bounds).bounds }
            return foldedMargins(dense, bounds, labels: Array(labels[shards[index]]))
        }
        return parts.flatMap { $0 }
    }

    /// Which images are certified robust at `epsilon`: the clean prediction is the label and
    /// every margin's lower bound is positive.
    public static func certify(
        _ model: Model, images: Tensor, labels: [Int], epsilon: Float, cleanPredictions: [Int]? = nil
    ) -> [Bool] {
        let clean = cleanPredictions ?? model.predictions(images, batchSize: 1000)
        return verified(
            clean: clean, labels: labels,
            margins: marginLowerBounds(model, images: images, labels: labels, epsilon: epsilon))
    }

    /// The certificate rule shared by every bound method: the clean prediction is the label
    /// and every margin's lower bound is positive.
    static func verified(clean: [Int], labels: [Int], margins: [[Float]]) -> [Bool] {
        labels.indices.map { n in clean[n] == labels[n] && margins[n].allSatisfy { $0 > 0 } }
    }

    // MARK: Layers

    static func propagate(_ bounds: IntervalBounds, through layer: any Layer) -> IntervalBounds {
        bounded(layer).intervalStep(bounds).bounds
    }

    /// An affine layer in centre–radius form, widened as the type's documentation says.
    static func affine(
        _ bounds: IntervalBounds, weight: Tensor, bias: Tensor, k: Int,
        apply: (_ weight: Tensor, _ bias: Tensor, _ input: Tensor) -> Tensor
    ) -> (bounds: IntervalBounds, magnitude: Tensor?) {
        let count = bounds.lower.count
        var center = [Float](repeating: 0, count: count)
        var radius = [Float](repeating: 0, count: count)
        var magnitude = [Float](repeating: 0, count: count)
        bounds.lower.scalars.withUnsafeBufferPointer { l in
            bounds.upper.scalars.withUnsafeBufferPointer { u in
                for i in 0..<count {
                    let m = l[i] + (u[i] - l[i]) / 2
                    // rounded up: the exact centre ± radius holds [l, u]
                    let r = max(u[i] - m, m - l[i]).roundedUpUnlessZero
                    center[i] = m
                    radius[i] = max(r, 0)
                    magnitude[i] = (abs(m) + radius[i]).roundedUpUnlessZero
                }
            }
        }
        let shape = bounds.lower.shape
        let absWeight = weight.mapScalars { abs($0) }
        let zero = Tensor(shape: bias.shape)
        let mu = apply(weight, bias, Tensor(shape: shape, scalars: center))
        let r = apply(absWeight, zero, Tensor(shape: shape, scalars: radius))
        let s = apply(absWeight, zero, Tensor(shape: shape, scalars: magnitude))
        let factor = 4 * Float(k + 2) * 0x1p-24
        let tiny = Float(k) * Float.leastNormalMagnitude
        let outputsPerChannel = mu.count / (mu.batchSize * bias.count)
        var lower = [Float](repeating: 0, count: mu.count)
        var upper = [Float](repeating: 0, count: mu.count)
        var size = [Float](repeating: 0, count: mu.count)
        mu.scalars.withUnsafeBufferPointer { mu in
            r.scalars.withUnsafeBufferPointer { r in
                s.scalars.withUnsafeBufferPointer { s in
                    bias.scalars.withUnsafeBufferPointer { b in
                        for i in 0..<mu.count {
                            let channel = (i / outputsPerChannel) % b.count
                            size[i] = (s[i] + abs(b[channel])).roundedUpUnlessZero
                            let widen = (factor * size[i] + tiny).nextUp
                            let total = (r[i] + widen).nextUp
                            lower[i] = (mu[i] - total).nextDown
                            upper[i] = (mu[i] + total).nextUp
                        }
                    }
                }
            }
        }
        return (
            IntervalBounds(
                lower: Tensor(shape: mu.shape, scalars: lower), upper: Tensor(shape: mu.shape, scalars: upper)),
            Tensor(shape: mu.shape, scalars: size)
        )
    }

    /// The margin lower bounds of the last dense layer with `W_y − W_j`, `b_y − b_j` folded in,
    /// in Double (see the type's documentation for the error terms).
    static func foldedMargins(_ dense: Dense, _ bounds: IntervalBounds, labels: [Int]) -> [[Float]] {
        let (I, O) = (dense.inputFeatures, dense.outputFeatures)
        let w = dense.weight.scalars
        let b = dense.bias.scalars
        let l = bounds.lower.scalars
        let u = bounds.upper.scalars
        precondition(bounds.lower.itemCount == I, "the last dense layer's input does not match the bounds")
        let doubleFactor = Double(I + 4) * 0x1p-52
        let floatFactor = 2 * Double(I + 2) * 0x1p-24
        let tiny = 2 * Double(I) * Double(Float.leastNormalMagnitude)
        return labels.enumerated().map { n, y in
            (0..<O).map { j -> Float in
                guard j != y else { return .infinity }
                var sum = Double(b[y]) - Double(b[j])
                var size = abs(Double(b[y])) + abs(Double(b[j]))
                for i in 0..<I {
                    let c = Double(w[y * I + i]) - Double(w[j * I + i])
                    let (lo, hi) = (Double(l[n * I + i]), Double(u[n * I + i]))
                    sum += c >= 0 ? c * lo : c * hi
                    size += (abs(Double(w[y * I + i])) + abs(Double(w[j * I + i]))) * max(abs(lo), abs(hi))
                }
                let bound = sum - (doubleFactor + floatFactor) * size - tiny
                guard bound.isFinite else { return -.infinity }
                return Float(bound).nextDown
            }
        }
    }
}

extension Tensor {
    func mapScalars(_ transform: (Float) -> Float) -> Tensor {
        Tensor(shape: shape, scalars: scalars.map(transform))
    }
}

extension Float {
    /// `nextUp`, except that 0 stays 0. Only for a result that is exact when it is 0: a
    /// difference of two floats (0 only when they are equal) or a sum of non-negative ones.
    /// Rounding 0 up gives a subnormal, and subnormals make every GEMM that reads them many
    /// times slower on Intel cores (measured: IBP on 10,000 digits took 107 s instead of 5 s,
    /// with every ReLU that is off for the whole box giving a subnormal radius).
    var roundedUpUnlessZero: Float { self == 0 ? 0 : nextUp }
}
