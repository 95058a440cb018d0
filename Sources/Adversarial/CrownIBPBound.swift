import NeuralNet

/// CROWN-IBP's bound for certified training (Zhang et al. 2020, "Towards stable and efficient
/// training of verifiably robust neural networks"): lower bounds `m_j` on the margins
/// `z_y − z_j` over the box, by CROWN's linear relaxation propagated backward from the folded
/// last layer, with every intermediate layer's bounds from the IBP pass; differentiable with
/// respect to the parameters and to those IBP bounds.
///
/// Backward, as ``LinearBoundPropagation`` does: coefficients `Λ_k` on each layer's input, from
/// `Λ_L = W_y − W_j` down to `Λ_0` on the image, by each layer's ``BoundedLayer/crownRule(_:rowsPerImage:)``
/// (one row per image and class `j ≠ y`). Then forward: with `G_0 = x*`, the corner of the box
/// that `Λ_0`'s signs pick, and `G_{k+1}` = layer `k` applied to `G_k` (a relaxed layer on the
/// lines that `Λ_{k+1}`'s signs chose), `m = Λ_k·G_k + Σ_{i ≥ k} c_i` at every `k`, where `c_i` is
/// layer `i`'s constant (`Λ·b`, a relaxation's intercepts). So `m = Λ_L·G_L + b_y − b_j`.
///
/// The gradient: `Λ_{k+1}` depends only on the layers above `k`, and `G_k` only on those below
/// (the choices of lines are piecewise constant), so the gradient of `m` with respect to layer
/// `k`'s parameters is the layer's own parameter gradient at input `G_k` and output gradient
/// `Λ_{k+1}`: one forward and one backward of each layer on the coefficient rows, nothing
/// chained. A relaxation's lines also move with the IBP bounds of its input; that gradient
/// goes back through the IBP pass (``IntervalTraining``).
///
/// As in the interval pass of training, no rounding terms: training needs the gradient, and
/// the certificate comes from the sound pass.
struct CrownIBPBound {
    /// What the gradient needs of one layer.
    private enum Step {
        /// An affine layer: its forward's cache at `G_k`, and `Λ_{k+1}`.
        case affine(cache: Any, lambda: Tensor)
        case reshape
        /// A relaxed layer: the relaxation, `G_k` and `Λ_{k+1}`.
        case relaxed(any LinearRelaxation, values: Tensor, lambda: Tensor)
    }

    let labels: [Int]
    /// `−m_j`, upper bounds on `z_j − z_y` (the worst-case logits), `[n × classes]`, 0 at the label.
    let worstLogits: [Float]
    private let body: [any BoundedLayer]
    private let dense: Dense
    private let steps: [Step]
    /// `G_L`, the forward values at the last dense layer's input, `[rows, I]`.
    private let top: Tensor

    /// The bound for the images whose IBP bounds are `inputs`: on each layer of `body`'s input,
    /// then on `dense`'s.
    init(body: [any BoundedLayer], dense: Dense, inputs: [IntervalBounds], labels: [Int]) {
        precondition(inputs.count == body.count + 1, "one set of bounds per layer input")
        self.body = body
        self.dense = dense
        self.labels = labels
        let (I, classes) = (dense.inputFeatures, dense.outputFeatures)
        let perImage = classes - 1
        let rows = labels.count * perImage
        let w = dense.weight.scalars
        // Backward: Λ_L = W_y − W_j, then each layer's rule.
        var lambdas = [Tensor](repeating: Tensor(shape: [0]), count: body.count + 1)
        lambdas[body.count] = Tensor(shape: [rows] + Array(inputs[body.count].lower.shape.dropFirst())) { lam in
            for row in 0..<rows {
                let (y, j) = Self.classes(row, labels: labels, perImage: perImage)
                for i in 0..<I { lam[row * I + i] = w[y * I + i] - w[j * I + i] }
            }
        }
        var rules: [CrownRule] = []
        for k in body.indices.reversed() {
            let rule = body[k].crownRule(inputs[k], rowsPerImage: perImage)
            switch rule {
            case .affine(let transpose): lambdas[k] = transpose(lambdas[k + 1])
            case .reshape: lambdas[k] = lambdas[k + 1].reshaped([rows] + Array(inputs[k].lower.shape.dropFirst()))
            case .relaxed(let relaxation): lambdas[k] = relaxation.coefficients(lambdas[k + 1])
            }
            rules.append(rule)
        }
        rules.reverse()
        // Forward from the corner x* that Λ_0 picks.
        let box = inputs[0]
        let d = box.lower.itemCount
        let bottom = lambdas[0]
        var values = Tensor(shape: bottom.shape) { g in
            bottom.scalars.withUnsafeBufferPointer { lam in
                box.lower.scalars.withUnsafeBufferPointer { lo in
                    box.upper.scalars.withUnsafeBufferPointer { hi in
                        for row in 0..<rows {
                            let image = row / perImage
                            for i in 0..<d { g[row * d + i] = lam[row * d + i] >= 0 ? lo[image * d + i] : hi[image * d + i] }
                        }
                    }
                }
            }
        }
        var steps: [Step] = []
        let context = ForwardContext(training: false, needsBackward: true)
        for k in body.indices {
            let next = lambdas[k + 1]
            switch rules[k] {
            case .affine:
                let (output, cache) = forwardOpened(body[k], values, context)
                steps.append(.affine(cache: cache, lambda: next))
                values = output.reshaped(next.shape)
            case .reshape:
                steps.append(.reshape)
                values = values.reshaped(next.shape)
            case .relaxed(let relaxation):
                steps.append(.relaxed(relaxation, values: values, lambda: next))
                values = relaxation.apply(values, lambda: next)
            }
        }
        self.steps = steps
        top = values.reshaped([rows, I])
        var worst = [Float](repeating: 0, count: labels.count * classes)
        let b = dense.bias.scalars
        for row in 0..<rows {
            let (y, j) = Self.classes(row, labels: labels, perImage: perImage)
            var m = Double(b[y]) - Double(b[j])
            for i in 0..<I { m += Double(lambdas[body.count].scalars[row * I + i]) * Double(top.scalars[row * I + i]) }
            worst[row / perImage * classes + j] = Float(-m)
        }
        worstLogits = worst
    }

    /// Row `row`'s label and other class.
    private static func classes(_ row: Int, labels: [Int], perImage: Int) -> (label: Int, other: Int) {
        let y = labels[row / perImage]
        let k = row % perImage
        return (y, k < y ? k : k + 1)
    }

    /// Given the loss's gradient with respect to ``worstLogits``: the parameter gradients of
    /// each layer of the body (empty for a layer without parameters) and of the last dense
    /// layer, the gradient with respect to the IBP bounds on each relaxed layer's input (by
    /// layer index), and, for a layer that normalises with batch statistics, theirs.
    func gradients(_ logitGradient: [Float]) -> (
        parameters: [[Tensor]], weight: Tensor, bias: Tensor, bounds: [Int: IntervalBounds], statistics: [Int: [Tensor]]
    ) {
        let (I, classes) = (dense.inputFeatures, dense.outputFeatures)
        let perImage = classes - 1
        let rows = labels.count * perImage
        // ∂loss/∂m = −∂loss/∂z̃ per row.
        let weights = (0..<rows).map { row in -logitGradient[row / perImage * classes + Self.classes(row, labels: labels, perImage: perImage).other] }
        var parameters = [[Tensor]](repeating: [], count: body.count)
        var bounds: [Int: IntervalBounds] = [:]
        var statistics: [Int: [Tensor]] = [:]
        for (k, step) in steps.enumerated() {
            switch step {
            case let .affine(cache, lambda):
                var weighted = lambda
                let width = lambda.itemCount
                weighted.scalars.withUnsafeMutableBufferPointer { g in
                    for row in 0..<rows {
                        for i in 0..<width { g[row * width + i] *= weights[row] }
                    }
                }
                let (_, gradients) = backwardOpened(body[k], weighted, cache, false, true)
                parameters[k] = gradients
                statistics[k] = body[k].statisticsGradient(
                    centre: gradients, radius: gradients.map { Tensor(shape: $0.shape) })
            case .reshape:
                continue
            case let .relaxed(relaxation, values, lambda):
                bounds[k] = relaxation.boundsGradient(lambda: lambda, values: values, weights: weights)
            }
        }
        var dw = [Float](repeating: 0, count: classes * I)
        var db = [Float](repeating: 0, count: classes)
        for row in 0..<rows {
            let (y, j) = Self.classes(row, labels: labels, perImage: perImage)
            let g = weights[row]
            guard g != 0 else { continue }
            db[y] += g
            db[j] -= g
            for i in 0..<I {
                let v = g * top.scalars[row * I + i]
                dw[y * I + i] += v
                dw[j * I + i] -= v
            }
        }
        return (
            parameters, Tensor(shape: dense.weight.shape, scalars: dw), Tensor(shape: dense.bias.shape, scalars: db), bounds,
            statistics
        )
    }
}
