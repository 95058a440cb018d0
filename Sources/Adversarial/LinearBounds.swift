import NeuralNet

/// Linear-relaxation bounds (CROWN, Zhang et al. 2018, "Efficient Neural Network Robustness
/// Certification with General Activation Functions", in the CROWN-IBP form of Zhang et al.
/// 2020): the margins `z_y − z_j` bounded from below by a linear function of the input,
/// propagated backward from the folded last layer, with every intermediate layer's bounds
/// from ``IntervalBoundPropagation``.
///
/// Per layer, backward, for coefficients `Λ` on the layer's output, each layer's
/// ``BoundedLayer/linearStep(_:input:magnitude:terms:)`` (BoundRules.swift): affine layers
/// carry `Λ` back by their own input-gradient pass, `Λ·(Wa + b) = (ΛW)·a + Λ·b`; ReLU takes
/// CROWN's adaptive linear bounds; max pooling DeepPoly's sound relaxation; flatten and
/// dropout (the identity at inference) reshape.
/// At the input, `Λ·x` over the box is concretised exactly (in Double).
///
/// The bound returned is never looser than IBP's: each margin's bound is the larger of the
/// two, both sound.
///
/// ## Soundness under floating point
/// The coefficients are computed in Float32, and the engine's affine layers make rounding
/// errors too; both are covered by lowering the bound. At an affine layer with dot products
/// of length `k` and a backward (`ΛW`) reduction of length `k'` (the outputs: `O` for a dense
/// layer, `F·R²` for a convolution), the engine's error `e` with `|e| ≤ γ(k+1) s` and the
/// coefficient error `|fl(ΛW) − ΛW|·|a| ≤ γ(k'+1) |Λ| s`, where `s = |W| max(|l|,|u|) + |b|`
/// from the IBP pass, add up to at most `4 (k + k' + 2) 2⁻²⁴ |Λ|·s`. A rounded ReLU slope
/// (the upper line's slope is rounded up, which keeps it above the ReLU on `[l, u]`) and the
/// products `Λ·slope` add `2⁻²³ |Λ'|·max(|l|,|u|)`. The folded last layer adds the rounding
/// of `W_y − W_j` and the engine's Float32 logits, `4 (I + 2) 2⁻²⁴ S` as for IBP. Constants
/// and the final concretisation are summed in Double, with `2⁻³⁰` of their absolute sums
/// subtracted on top. The result is rounded down to Float32.
public enum LinearBoundPropagation {
    /// Lower bounds on the margins `z_y − z_j` over the box of radius `epsilon` around each
    /// image, `y` its label: `[N][classes]`, `+∞` at `j = y`. Never below IBP's.
    ///
    /// - Precondition: the model's last layer with parameters is ``Dense``, followed only by
    ///   layers that are the identity at inference (dropout, flatten).
    public static func marginLowerBounds(
        _ model: Model, images: Tensor, labels: [Int], epsilon: Float
    ) -> [[Float]] {
        precondition(labels.count == images.batchSize, "one label per image")
        let box = IntervalBounds.box(around: images, epsilon: epsilon)
        let shards = Compute.shards(count: images.batchSize, maximumSize: 8)
        let parts = Compute.map(shards.count) { index in
            let range = shards[index]
            let shard = IntervalBounds(lower: box.lower.batch(range), upper: box.upper.batch(range))
            return shardBounds(model, shard, labels: Array(labels[range]))
        }
        return parts.flatMap { $0 }
    }

    /// Which images are certified robust at `epsilon` (clean prediction correct, every
    /// margin's lower bound positive).
    public static func certify(
        _ model: Model, images: Tensor, labels: [Int], epsilon: Float, cleanPredictions: [Int]? = nil
    ) -> [Bool] {
        let clean = cleanPredictions ?? model.predictions(images, batchSize: 1000)
        return IntervalBoundPropagation.verified(
            clean: clean, labels: labels,
            margins: marginLowerBounds(model, images: images, labels: labels, epsilon: epsilon))
    }

    /// What the backward pass needs of one layer from the forward (IBP) pass.
    private struct Record {
        /// The bounds on the layer's input.
        let input: IntervalBounds
        /// `|W| max(|l|,|u|) + |b|` per output, for an affine layer.
        let magnitude: Tensor?
    }

    /// CROWN for one shard of images, each margin's bound the larger of CROWN's and IBP's
    /// (both from the same forward pass); rows are (image, class) pairs.
    private static func shardBounds(_ model: Model, _ box: IntervalBounds, labels: [Int]) -> [[Float]] {
        let (body, dense) = model.boundedLayers(for: "CROWN")
        // Forward: every layer's input bounds (IBP).
        var records: [Record] = []
        var bounds = box
        for layer in body {
            let (next, magnitude) = layer.intervalStep(bounds)
            records.append(Record(input: bounds, magnitude: magnitude))
            bounds = next
        }
        let n = labels.count
        let (I, classes) = (dense.inputFeatures, dense.outputFeatures)
        let rows = n * classes
        let u = Double(0x1p-24)
        // The folded last layer: Λ[n·classes + j] = W_y − W_j on the flattened input.
        let w = dense.weight.scalars
        let b = dense.bias.scalars
        var lambda = Tensor(shape: [rows, I])
        let zeros = [Double](repeating: 0, count: rows)
        var terms = LinearTerms(classes: classes, constant: zeros, slack: zeros, size: zeros)
        let flatLast = bounds.lower.reshaped([n, I])
        let flatLastUpper = bounds.upper.reshaped([n, I])
        lambda.scalars.withUnsafeMutableBufferPointer { lam in
            for image in 0..<n {
                let y = labels[image]
                for j in 0..<classes where j != y {
                    let row = image * classes + j
                    terms.constant[row] = Double(b[y]) - Double(b[j])
                    terms.size[row] = abs(Double(b[y])) + abs(Double(b[j]))
                    var s = abs(Double(b[y])) + abs(Double(b[j]))
                    for i in 0..<I {
                        lam[row * I + i] = w[y * I + i] - w[j * I + i]
                        let m = max(abs(Double(flatLast.scalars[image * I + i])), abs(Double(flatLastUpper.scalars[image * I + i])))
                        s += (abs(Double(w[y * I + i])) + abs(Double(w[j * I + i]))) * m
                    }
                    terms.slack[row] += 4 * Double(I + 2) * u * s
                }
            }
        }
        lambda = lambda.reshaped([rows] + Array(bounds.lower.shape.dropFirst()))
        // Backward through the layers before the last dense one.
        for (layer, record) in zip(body, records).reversed() {
            lambda = layer.linearStep(lambda, input: record.input, magnitude: record.magnitude, terms: &terms)
        }
        // Concretise Λ·x over the input box.
        let d = box.lower.itemCount
        func crownBound(_ image: Int, _ j: Int) -> Float {
            let row = image * classes + j
            var sum = terms.constant[row]
            var absolute = terms.size[row]
            lambda.scalars.withUnsafeBufferPointer { lam in
                box.lower.scalars.withUnsafeBufferPointer { lo in
                    box.upper.scalars.withUnsafeBufferPointer { hi in
                        for i in 0..<d {
                            let c = Double(lam[row * d + i])
                            let x = c >= 0 ? Double(lo[image * d + i]) : Double(hi[image * d + i])
                            sum += c * x
                            absolute += abs(c * x)
                        }
                    }
                }
            }
            let bound = sum - terms.slack[row] - 0x1p-30 * absolute - 1e-30
            guard bound.isFinite else { return -.infinity }
            return Float(bound).nextDown
        }
        let ibp = IntervalBoundPropagation.foldedMargins(dense, bounds, labels: labels)
        return (0..<n).map { image in
            (0..<classes).map { j -> Float in
                guard j != labels[image] else { return .infinity }
                return max(crownBound(image, j), ibp[image][j])
            }
        }
    }

    /// An affine layer's constant `Λ·b` and its error term `4 (k + k' + 2) 2⁻²⁴ |Λ|·s`, with
    /// `s` the `magnitude` of the layer's IBP step.
    static func affineTerms(
        _ lambda: Tensor, bias: Tensor, magnitude: Tensor?, k: Int, kPrime: Int, terms: inout LinearTerms
    ) {
        guard let magnitude else { preconditionFailure("an affine layer's IBP step returns its magnitude") }
        let classes = terms.classes
        let rows = lambda.batchSize
        let width = lambda.itemCount
        let perChannel = width / bias.count
        let factor = 4 * Double(k + kPrime + 2) * 0x1p-24
        let tiny = Double(k + kPrime) * Double(Float.leastNormalMagnitude)
        lambda.scalars.withUnsafeBufferPointer { lam in
            magnitude.scalars.withUnsafeBufferPointer { s in
                bias.scalars.withUnsafeBufferPointer { b in
                    for row in 0..<rows {
                        let image = row / classes
                        var c = 0.0
                        var e = 0.0
                        var a = 0.0
                        var nonzero = 0.0
                        for i in 0..<width {
                            let v = Double(lam[row * width + i])
                            let bi = Double(b[i / perChannel])
                            c += v * bi
                            a += abs(v * bi)
                            e += abs(v) * Double(s[image * width + i])
                            nonzero += v != 0 ? 1 : 0
                        }
                        terms.add(row: row, constant: c, size: a, slack: factor * e + tiny * nonzero)
                    }
                }
            }
        }
    }
}
