import NeuralNet

/// A layer's rule in each bound pass, in one place.
///
/// IBP (``IntervalBoundPropagation``), CROWN (``LinearBoundPropagation``) and interval
/// training (``IntervalTraining``) see a layer only through this protocol. A new layer
/// conforms once, in this file, and no pass changes. A new pass adds one requirement, with
/// one rule per layer beside that layer's others.
protocol BoundedLayer: Layer {
    /// IBP: bounds on the output for inputs in `bounds`. An affine layer also returns
    /// `|W| max(|l|, |u|) + |b|` per output, rounded up. That value bounds the Float32
    /// rounding error of its dot products, and CROWN's error terms use it too.
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?)

    /// CROWN, backward: the coefficients on the layer's input, given the coefficients `Λ`
    /// on its output (`[rows, …]`, one row per image and class). The layer's constant,
    /// relaxation intercepts and error terms go into `terms`. `input` holds the IBP bounds
    /// on the layer's input. `magnitude` is what ``intervalStep(_:)`` returned.
    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor

    /// Interval training: an affine layer runs in centre–radius form. This is the same
    /// layer with `|W|` and no bias, and `W` itself (for the sign in the weight gradient).
    /// Nil for a monotone layer, which maps the lower and the upper bound separately.
    var centreRadius: (absolute: any Layer, weight: Tensor)? { get }

    /// Interval training, for a layer whose inference map uses batch statistics: the verified
    /// loss's gradient with respect to them, from the parameter gradients of the centre pass
    /// and of the ``centreRadius`` pass. Nil for every other layer.
    func statisticsGradient(centre: [Tensor], radius: [Tensor]) -> [Tensor]?

    /// CROWN-IBP training (``CrownIBPBound``): how the verified loss's linear bound passes this
    /// layer, with `input` the IBP bounds on its input and `rowsPerImage` coefficient rows per
    /// image.
    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule
}

extension BoundedLayer {
    func statisticsGradient(centre: [Tensor], radius: [Tensor]) -> [Tensor]? { nil }
}

/// How CROWN-IBP training (``CrownIBPBound``) passes a layer.
enum CrownRule {
    /// An affine layer: `transpose` carries coefficients on its output to its input
    /// (`Λ ↦ ΛW`); the layer's own forward and backward do the rest.
    case affine(transpose: (Tensor) -> Tensor)
    /// A layer that only reshapes (flatten; dropout, the identity at inference).
    case reshape
    /// A non-affine layer, through its linear relaxation on the IBP bounds of its input.
    case relaxed(any LinearRelaxation)
}

/// A non-affine layer's linear relaxation on fixed input bounds, for CROWN-IBP training: a
/// line below and a line above the layer at each output, chosen by the sign of the
/// coefficient `λ` there (below for `λ ≥ 0`, above for `λ < 0`), so that `λ·f(x)` is at least
/// `λ·` the chosen line for every `x` in the bounds. Coefficients and values have
/// `rowsPerImage` rows per image. No rounding terms: training needs the gradient, and the
/// certificate comes from the sound pass.
protocol LinearRelaxation {
    /// The coefficients on the layer's input, given coefficients `lambda` on its output.
    func coefficients(_ lambda: Tensor) -> Tensor
    /// The relaxed layer applied to `values` (one row per row of `lambda`, on the layer's
    /// input): each output on the line that `lambda`'s sign chose there.
    func apply(_ values: Tensor, lambda: Tensor) -> Tensor
    /// The gradient, with respect to the input bounds (summed over each image's rows), of
    /// `Σ_rows weights[row] · λ_row · apply(values)_row`: the lines move with the bounds.
    func boundsGradient(lambda: Tensor, values: Tensor, weights: [Float]) -> IntervalBounds
}

/// The constant and error terms that a CROWN backward pass collects, one per row (an
/// image and class pair).
struct LinearTerms {
    /// Classes per image: row `r` belongs to image `r / classes`.
    let classes: Int
    /// Every layer's `Λ·b` and relaxation intercepts.
    var constant: [Double]
    /// Error terms, subtracted at the end.
    var slack: [Double]
    /// Absolute sums of the Double sums, for their own rounding.
    var size: [Double]

    /// Adds one layer's terms for `row`.
    mutating func add(row: Int, constant c: Double, size a: Double, slack e: Double) {
        constant[row] += c
        size[row] += a
        slack[row] += e
    }
}

extension Model {
    /// The model as the bound passes see it: every layer before the last dense one, each
    /// with its bound rules, and that dense layer, into which the margin specification is
    /// folded.
    ///
    /// - Precondition: the last layer with parameters is ``Dense``, and only layers that are
    ///   the identity at inference (dropout, flatten) follow it.
    func boundedLayers(for pass: String) -> (body: [any BoundedLayer], last: Dense) {
        guard let last = layers.lastIndex(where: { $0 is Dense }), let dense = layers[last] as? Dense,
            layers[(last + 1)...].allSatisfy({ $0 is Dropout || $0 is Flatten })
        else { preconditionFailure("\(pass) needs a model whose last layer with parameters is dense") }
        return (layers[..<last].map { bounded($0) }, dense)
    }
}

/// A layer's bound rules.
func bounded(_ layer: any Layer) -> any BoundedLayer {
    guard let rules = layer as? any BoundedLayer else { preconditionFailure("no bound rules for layer \(type(of: layer))") }
    return rules
}

private let inference = ForwardContext(training: false, needsBackward: false)

// MARK: Affine layers

extension Conv2D: BoundedLayer {
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?) {
        IntervalBoundPropagation.affine(bounds, weight: weight, bias: bias, k: inputChannels * kernelSize * kernelSize) {
            weight, bias, x in
            Conv2D(weight: weight, bias: bias, stride: stride, padding: padding).forward(x, context: inference).output
        }
    }

    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor {
        LinearBoundPropagation.affineTerms(
            lambda, bias: bias, magnitude: magnitude, k: inputChannels * kernelSize * kernelSize,
            kPrime: outputChannels * kernelSize * kernelSize, terms: &terms)
        return transposed(lambda, input: input)
    }

    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule {
        .affine { transposed($0, input: input) }
    }

    /// `ΛW`, the input gradient; a convolution's backward reads only the input's shape.
    private func transposed(_ lambda: Tensor, input: IntervalBounds) -> Tensor {
        inputGradient(of: self, lambda, cache: Tensor(shape: [lambda.batchSize] + Array(input.lower.shape.dropFirst())))
    }

    var centreRadius: (absolute: any Layer, weight: Tensor)? {
        (Conv2D(weight: weight.mapScalars { abs($0) }, bias: Tensor(shape: bias.shape), stride: stride, padding: padding), weight)
    }
}

extension Dense: BoundedLayer {
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?) {
        let flat = IntervalBounds(
            lower: bounds.lower.reshaped([bounds.lower.batchSize, bounds.lower.itemCount]),
            upper: bounds.upper.reshaped([bounds.upper.batchSize, bounds.upper.itemCount]))
        return IntervalBoundPropagation.affine(flat, weight: weight, bias: bias, k: inputFeatures) { weight, bias, x in
            Dense(weight: weight, bias: bias).forward(x, context: inference).output
        }
    }

    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor {
        LinearBoundPropagation.affineTerms(
            lambda.reshaped([lambda.batchSize, outputFeatures]), bias: bias, magnitude: magnitude, k: inputFeatures,
            kPrime: outputFeatures, terms: &terms)
        return transposed(lambda, input: input)
    }

    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule {
        .affine { transposed($0, input: input) }
    }

    /// `ΛW`, the input gradient, in the input's shape.
    private func transposed(_ lambda: Tensor, input: IntervalBounds) -> Tensor {
        let rows = lambda.batchSize
        return inputGradient(of: self, lambda.reshaped([rows, outputFeatures]), cache: Tensor(shape: [rows, inputFeatures]))
            .reshaped([rows] + Array(input.lower.shape.dropFirst()))
    }

    var centreRadius: (absolute: any Layer, weight: Tensor)? {
        (Dense(weight: weight.mapScalars { abs($0) }, bias: Tensor(shape: bias.shape)), weight)
    }
}

/// At inference a per-channel affine map. The engine computes `y = s·x + t` in Float32 from
/// `s = γ/√(running_var + ε)` and `t = β − running_mean·s` (``BatchNorm/scaleAndShift``). The
/// real-valued network's `s*` and `t*` differ from them by at most `4u|s|` and
/// `3u(|β| + |s·running_mean|)`, `u = 2⁻²⁴`, and the engine's two roundings add
/// `2u(|s x| + |t|)`. So with the magnitude `m = |s|(max(|l|, |u|) + |running_mean|) + |β|`, which
/// bounds all of these sizes, the bounds are computed in Double and widened by `16u·m`,
/// twice what the errors need.
extension BatchNorm: BoundedLayer {
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?) {
        let (scale, shift) = scaleAndShift
        let positions = bounds.lower.itemCount / features
        let count = bounds.lower.count
        var lower = [Float](repeating: 0, count: count)
        var upper = [Float](repeating: 0, count: count)
        var magnitude = [Float](repeating: 0, count: count)
        bounds.lower.scalars.withUnsafeBufferPointer { lo in
            bounds.upper.scalars.withUnsafeBufferPointer { hi in
                for i in 0..<count {
                    let c = (i / positions) % features
                    let (s, t) = (Double(scale[c]), Double(shift[c]))
                    let (l, u) = (Double(lo[i]), Double(hi[i]))
                    let m = abs(s) * (max(abs(l), abs(u)) + abs(Double(runningMean.scalars[c]))) + abs(Double(bias.scalars[c]))
                    let widen = 16 * 0x1p-24 * m + Double(Float.leastNormalMagnitude)
                    let (a, b) = s >= 0 ? (s * l, s * u) : (s * u, s * l)
                    lower[i] = Float(a + t - widen).nextDown
                    upper[i] = Float(b + t + widen).nextUp
                    // m = 0 is exact (a sum of non-negative terms): no subnormal (see roundedUpUnlessZero)
                    magnitude[i] = m == 0 ? 0 : Float(m).nextUp
                }
            }
        }
        let shape = bounds.lower.shape
        return (
            IntervalBounds(lower: Tensor(shape: shape, scalars: lower), upper: Tensor(shape: shape, scalars: upper)),
            Tensor(shape: shape, scalars: magnitude)
        )
    }

    /// `Λ·(s x + t) = (Λ s)·x + Λ·t`; the error terms are those of an affine layer with
    /// `k = k' = 1`, `4·4u·|Λ|·m`, which holds the `16u·m` above.
    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor {
        let shift = Tensor(shape: [features], scalars: scaleAndShift.shift)
        LinearBoundPropagation.affineTerms(lambda, bias: shift, magnitude: magnitude, k: 1, kPrime: 1, terms: &terms)
        return inputGradient(of: self, lambda, cache: gradientCache(lambda))
    }

    /// With the statistics fixed, an affine map. Its parameter gradients at the coefficient
    /// rows are a centre pass's with zero radius, so ``statisticsGradient(centre:radius:)``
    /// turns them into the statistics' gradient.
    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule {
        .affine { inputGradient(of: self, $0, cache: gradientCache($0)) }
    }

    /// `|f|(r) = |s| r`: the same statistics with `|γ|`, no β and no mean.
    var centreRadius: (absolute: any Layer, weight: Tensor)? {
        var absolute = self
        absolute.weight = weight.mapScalars { abs($0) }
        absolute.bias = Tensor(shape: bias.shape)
        absolute.runningMean = Tensor(shape: runningMean.shape)
        return (absolute, weight)
    }

    /// With `c' = γ(c − μ)·i + β` and `r' = |γ| r·i`, `i = (σ² + ε)^(−1/2)`: `d/dμ = −γ i Σ g_c'`
    /// (`Σ g_c'` is the centre pass's dβ) and `d/dσ² = −½ i² (γ Σ g_c' x̂_c + |γ| Σ g_r' x̂_r)`, the
    /// two sums being the passes' dγ.
    func statisticsGradient(centre: [Tensor], radius: [Tensor]) -> [Tensor]? {
        let (scale, _) = scaleAndShift
        var mean = [Float](repeating: 0, count: features)
        var variance = [Float](repeating: 0, count: features)
        for c in 0..<features {
            let inverse = 1 / (runningVariance.scalars[c] + BatchNorm.epsilon).squareRoot()
            let gamma = weight.scalars[c]
            mean[c] = -scale[c] * centre[1].scalars[c]
            variance[c] = -0.5 * inverse * inverse * (gamma * centre[0].scalars[c] + abs(gamma) * radius[0].scalars[c])
        }
        return [Tensor(shape: [features], scalars: mean), Tensor(shape: [features], scalars: variance)]
    }

    /// An inference-mode cache for an input-gradient-only backward (which reads nothing from it).
    private func gradientCache(_ lambda: Tensor) -> BatchNorm.Cache {
        forward(Tensor(shape: [0] + Array(lambda.shape.dropFirst())), context: inference).cache
    }
}

/// `Λ W`: an affine layer's input gradient for output gradient `lambda`.
private func inputGradient<L: Layer>(of layer: L, _ lambda: Tensor, cache: L.Cache) -> Tensor {
    guard let gradient = layer.backward(lambda, cache: cache, needsInputGradient: true, needsParameterGradients: false)
        .inputGradient
    else { preconditionFailure("\(L.self) returned no input gradient") }
    return gradient
}

// MARK: Monotone layers

extension ReLU: BoundedLayer {
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?) {
        (IntervalBounds(lower: bounds.lower.mapScalars { max($0, 0) }, upper: bounds.upper.mapScalars { max($0, 0) }), nil)
    }

    /// Inactive (`u ≤ 0`) → 0, active (`l ≥ 0`) → identity; unstable: below by `α z` with
    /// `α = 1` when `u > −l`, else 0, above by `u (z − l) / (u − l)`. A positive coefficient
    /// takes the lower line, a negative one the upper.
    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor {
        let rows = lambda.batchSize
        let width = lambda.itemCount
        let classes = terms.classes
        var out = lambda
        out.scalars.withUnsafeMutableBufferPointer { lam in
            input.lower.scalars.withUnsafeBufferPointer { lo in
                input.upper.scalars.withUnsafeBufferPointer { hi in
                    for row in 0..<rows {
                        let image = row / classes
                        var c = 0.0
                        var e = 0.0
                        var a = 0.0
                        for i in 0..<width {
                            let v = lam[row * width + i]
                            guard v != 0 else { continue }
                            let (l, u) = (lo[image * width + i], hi[image * width + i])
                            if u <= 0 {
                                lam[row * width + i] = 0
                            } else if l >= 0 {
                                continue
                            } else if v > 0 {
                                // below by α z: α = 1 when u > −l, else 0
                                lam[row * width + i] = u > -l ? v : 0
                            } else {
                                // above by slope · (z − l), the slope rounded up
                                let slope = (u / (u - l).nextDown).nextUp
                                let scaled = v * slope
                                lam[row * width + i] = scaled
                                let intercept = Double(v) * Double(slope) * Double(l)
                                c -= intercept
                                a += abs(intercept)
                                e += abs(Double(scaled)) * Double(max(-l, u)) * 0x1p-23
                            }
                        }
                        terms.add(row: row, constant: c, size: a, slack: e)
                    }
                }
            }
        }
        return out
    }

    var centreRadius: (absolute: any Layer, weight: Tensor)? { nil }

    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule {
        .relaxed(ReLURelaxation(input, rowsPerImage: rowsPerImage))
    }
}

extension MaxPool2D: BoundedLayer {
    /// `max` is monotone in every argument: the bounds of a window's max are the maxes of
    /// its bounds.
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?) {
        (eachBound(self, bounds), nil)
    }

    /// DeepPoly's relaxation: below by `x_j`, the input with the largest lower bound; above
    /// by `x_j` too when `l_j` is at least every other input's upper bound (then the max is
    /// `x_j`), else by the constant `max_i u_i`. So a coefficient goes to each window's
    /// input with the largest lower bound, or, negative on a window whose maximum is not
    /// settled, into the constant as `Λ · max u`.
    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor {
        let rows = lambda.batchSize
        let classes = terms.classes
        let (C, H, W) = (input.lower.shape[1], input.lower.shape[2], input.lower.shape[3])
        let (P, Q) = (lambda.shape[2], lambda.shape[3])
        let (K, S) = (kernelSize, stride)
        var out = Tensor(shape: [rows, C, H, W])
        out.scalars.withUnsafeMutableBufferPointer { dx in
            lambda.scalars.withUnsafeBufferPointer { lam in
                input.lower.scalars.withUnsafeBufferPointer { lo in
                    input.upper.scalars.withUnsafeBufferPointer { hi in
                        for row in 0..<rows {
                            let image = row / classes
                            var c = 0.0
                            var a = 0.0
                            var e = 0.0
                            for ch in 0..<C {
                                let plane = (image * C + ch) * H * W
                                let outPlane = (row * C + ch) * H * W
                                for p in 0..<P {
                                    for q in 0..<Q {
                                        let v = lam[((row * C + ch) * P + p) * Q + q]
                                        guard v != 0 else { continue }
                                        var best = -1
                                        var bestLower = -Float.infinity
                                        var maxUpper = -Float.infinity
                                        for a in 0..<K {
                                            for b in 0..<K {
                                                let i = (p * S + a) * W + q * S + b
                                                if best < 0 || lo[plane + i] > bestLower {
                                                    best = i
                                                    bestLower = lo[plane + i]
                                                }
                                                maxUpper = max(maxUpper, hi[plane + i])
                                            }
                                        }
                                        var settled = true
                                        for a in 0..<K {
                                            for b in 0..<K {
                                                let i = (p * S + a) * W + q * S + b
                                                if i != best && hi[plane + i] > bestLower { settled = false }
                                            }
                                        }
                                        if v > 0 || settled {
                                            dx[outPlane + best] += v
                                            if S < K {
                                                // overlapping windows sum their coefficients
                                                let m = max(abs(lo[plane + best]), abs(hi[plane + best]))
                                                e += Double(K * K) * 0x1p-23 * abs(Double(v)) * Double(m)
                                            }
                                        } else {
                                            c += Double(v) * Double(maxUpper)
                                            a += abs(Double(v) * Double(maxUpper))
                                        }
                                    }
                                }
                            }
                            terms.add(row: row, constant: c, size: a, slack: e)
                        }
                    }
                }
            }
        }
        return out
    }

    var centreRadius: (absolute: any Layer, weight: Tensor)? { nil }

    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule {
        .relaxed(MaxPoolRelaxation(self, input, rowsPerImage: rowsPerImage))
    }
}

/// A monotone layer's bounds: the layer applied to the lower and to the upper bound.
private func eachBound<L: Layer>(_ layer: L, _ bounds: IntervalBounds) -> IntervalBounds {
    IntervalBounds(
        lower: layer.forward(bounds.lower, context: inference).output,
        upper: layer.forward(bounds.upper, context: inference).output)
}

// MARK: Reshaping and identity layers

extension Flatten: BoundedLayer {
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?) {
        (eachBound(self, bounds), nil)
    }

    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor {
        lambda.reshaped([lambda.batchSize] + Array(input.lower.shape.dropFirst()))
    }

    var centreRadius: (absolute: any Layer, weight: Tensor)? { nil }

    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule { .reshape }
}

/// The identity at inference, which is where bounds are computed.
extension Dropout: BoundedLayer {
    func intervalStep(_ bounds: IntervalBounds) -> (bounds: IntervalBounds, magnitude: Tensor?) { (bounds, nil) }

    func linearStep(_ lambda: Tensor, input: IntervalBounds, magnitude: Tensor?, terms: inout LinearTerms) -> Tensor {
        lambda.reshaped([lambda.batchSize] + Array(input.lower.shape.dropFirst()))
    }

    var centreRadius: (absolute: any Layer, weight: Tensor)? { nil }

    func crownRule(_ input: IntervalBounds, rowsPerImage: Int) -> CrownRule { .reshape }
}

// MARK: Relaxations for CROWN-IBP training

/// CROWN's ReLU relaxation, the lines of ``ReLU/linearStep(_:input:magnitude:terms:)`` without
/// its rounding terms: inactive 0, active the identity; unstable (`l < 0 < u`) below by `α z`
/// (`α = 1` when `u > −l`, else 0) and above by `s (z − l)` with `s = u / (u − l)`.
struct ReLURelaxation: LinearRelaxation {
    let input: IntervalBounds
    let rowsPerImage: Int
    /// Per input element: the slope of the line below, and the slope and intercept of the line above.
    let lowerSlope: [Float], upperSlope: [Float], upperIntercept: [Float]

    init(_ input: IntervalBounds, rowsPerImage: Int) {
        self.input = input
        self.rowsPerImage = rowsPerImage
        let count = input.lower.count
        var (a, s, t) = ([Float](repeating: 0, count: count), [Float](repeating: 0, count: count), [Float](repeating: 0, count: count))
        for i in 0..<count {
            let (l, u) = (input.lower.scalars[i], input.upper.scalars[i])
            if u <= 0 { continue }
            if l >= 0 {
                (a[i], s[i]) = (1, 1)
                continue
            }
            a[i] = u > -l ? 1 : 0
            s[i] = u / (u - l)
            t[i] = -s[i] * l
        }
        (lowerSlope, upperSlope, upperIntercept) = (a, s, t)
    }

    func coefficients(_ lambda: Tensor) -> Tensor {
        let width = input.lower.itemCount
        var out = lambda
        out.scalars.withUnsafeMutableBufferPointer { lam in
            lowerSlope.withUnsafeBufferPointer { a in
                upperSlope.withUnsafeBufferPointer { s in
                    for row in 0..<lambda.batchSize {
                        let base = row / rowsPerImage * width
                        for i in 0..<width {
                            let v = lam[row * width + i]
                            lam[row * width + i] = v * (v >= 0 ? a[base + i] : s[base + i])
                        }
                    }
                }
            }
        }
        return out
    }

    func apply(_ values: Tensor, lambda: Tensor) -> Tensor {
        let width = input.lower.itemCount
        var out = values
        out.scalars.withUnsafeMutableBufferPointer { g in
            lambda.scalars.withUnsafeBufferPointer { lam in
                lowerSlope.withUnsafeBufferPointer { a in
                    upperSlope.withUnsafeBufferPointer { s in
                        upperIntercept.withUnsafeBufferPointer { t in
                            for row in 0..<lambda.batchSize {
                                let base = row / rowsPerImage * width
                                for i in 0..<width {
                                    let (k, j) = (base + i, row * width + i)
                                    g[j] = lam[j] >= 0 ? a[k] * g[j] : s[k] * g[j] + t[k]
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Only the line above moves: `w λ s (g − l)` with `∂s/∂l = u/(u − l)²`, `∂s/∂u = −l/(u − l)²`.
    func boundsGradient(lambda: Tensor, values: Tensor, weights: [Float]) -> IntervalBounds {
        let width = input.lower.itemCount
        var gl = [Float](repeating: 0, count: input.lower.count)
        var gu = [Float](repeating: 0, count: input.lower.count)
        let (lo, hi) = (input.lower.scalars, input.upper.scalars)
        for row in 0..<lambda.batchSize where weights[row] != 0 {
            let base = row / rowsPerImage * width
            for i in 0..<width {
                let (k, j) = (base + i, row * width + i)
                let v = lambda.scalars[j]
                let (l, u) = (lo[k], hi[k])
                guard v < 0, l < 0, u > 0 else { continue }
                let d = u - l
                let c = weights[row] * v
                let x = values.scalars[j] - l
                gl[k] += c * (x * u / (d * d) - upperSlope[k])
                gu[k] -= c * x * l / (d * d)
            }
        }
        let shape = input.lower.shape
        return IntervalBounds(lower: Tensor(shape: shape, scalars: gl), upper: Tensor(shape: shape, scalars: gu))
    }
}

/// DeepPoly's max-pool relaxation, as in ``MaxPool2D/linearStep(_:input:magnitude:terms:)``:
/// below by the window's input with the largest lower bound; above by that input too when the
/// window's maximum is settled (its lower bound at least every other input's upper bound),
/// else by the constant largest upper bound.
struct MaxPoolRelaxation: LinearRelaxation {
    let input: IntervalBounds
    let rowsPerImage: Int
    /// `[C, P, Q]`.
    let outputShape: [Int]
    /// Per image and output (flat, image-major): the input (flat within the image) with the
    /// largest lower bound, the input with the largest upper bound and that bound, and
    /// whether the maximum is settled.
    let best: [Int], top: [Int], maxUpper: [Float], settled: [Bool]

    init(_ pool: MaxPool2D, _ input: IntervalBounds, rowsPerImage: Int) {
        self.input = input
        self.rowsPerImage = rowsPerImage
        let (N, C, H, W) = (input.lower.shape[0], input.lower.shape[1], input.lower.shape[2], input.lower.shape[3])
        let (K, S) = (pool.kernelSize, pool.stride)
        let (P, Q) = ((H - K) / S + 1, (W - K) / S + 1)
        outputShape = [C, P, Q]
        let (lo, hi) = (input.lower.scalars, input.upper.scalars)
        var (best, top, maxUpper, settled) = ([Int](), [Int](), [Float](), [Bool]())
        for image in 0..<N {
            for ch in 0..<C {
                for p in 0..<P {
                    for q in 0..<Q {
                        var window: [Int] = []
                        for a in 0..<K {
                            for b in 0..<K { window.append((ch * H + p * S + a) * W + q * S + b) }
                        }
                        let offset = image * C * H * W
                        var (b, t) = (window[0], window[0])
                        for i in window {
                            if lo[offset + i] > lo[offset + b] { b = i }
                            if hi[offset + i] > hi[offset + t] { t = i }
                        }
                        best.append(b)
                        top.append(t)
                        maxUpper.append(hi[offset + t])
                        settled.append(window.allSatisfy { $0 == b || hi[offset + $0] <= lo[offset + b] })
                    }
                }
            }
        }
        (self.best, self.top, self.maxUpper, self.settled) = (best, top, maxUpper, settled)
    }

    /// Whether output `k` (of its image) takes the input `best[k]` for coefficient `v`.
    private func takesInput(_ v: Float, _ k: Int) -> Bool { v >= 0 || settled[k] }

    func coefficients(_ lambda: Tensor) -> Tensor {
        let (outputs, inputs) = (lambda.itemCount, input.lower.itemCount)
        var out = Tensor(shape: [lambda.batchSize] + Array(input.lower.shape.dropFirst()))
        out.scalars.withUnsafeMutableBufferPointer { dx in
            for row in 0..<lambda.batchSize {
                let image = row / rowsPerImage
                for o in 0..<outputs {
                    let v = lambda.scalars[row * outputs + o]
                    let k = image * outputs + o
                    if takesInput(v, k) { dx[row * inputs + best[k]] += v }
                }
            }
        }
        return out
    }

    func apply(_ values: Tensor, lambda: Tensor) -> Tensor {
        let (outputs, inputs) = (lambda.itemCount, input.lower.itemCount)
        return Tensor(shape: [lambda.batchSize] + outputShape) { y in
            for row in 0..<lambda.batchSize {
                let image = row / rowsPerImage
                for o in 0..<outputs {
                    let k = image * outputs + o
                    y[row * outputs + o] =
                        takesInput(lambda.scalars[row * outputs + o], k) ? values.scalars[row * inputs + best[k]] : maxUpper[k]
                }
            }
        }
    }

    /// Only the constant line moves, with the largest upper bound.
    func boundsGradient(lambda: Tensor, values: Tensor, weights: [Float]) -> IntervalBounds {
        let (outputs, inputs) = (lambda.itemCount, input.lower.itemCount)
        var gu = [Float](repeating: 0, count: input.lower.count)
        for row in 0..<lambda.batchSize {
            let image = row / rowsPerImage
            for o in 0..<outputs {
                let v = lambda.scalars[row * outputs + o]
                let k = image * outputs + o
                if !takesInput(v, k) { gu[image * inputs + top[k]] += weights[row] * v }
            }
        }
        let shape = input.lower.shape
        return IntervalBounds(lower: Tensor(shape: shape), upper: Tensor(shape: shape, scalars: gu))
    }
}
