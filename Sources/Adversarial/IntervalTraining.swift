import Foundation
import NeuralNet

/// Certified training with interval bounds (IBP, Gowal et al. 2018, "On the effectiveness of
/// interval bound propagation for training verifiably robust models"): each step minimises
///
///     κ · CE(f(x), y) + (1 − κ) · CE(z̃(x, ε), y)
///
/// where `z̃_j` is the interval upper bound of the margin `z_j − z_y` over the L∞ box of radius
/// ε around `x` (within [0, 1]) and `z̃_y = 0`: the worst-case logits. Driving `z̃_j` below zero
/// for every `j ≠ y` is exactly what ``IntervalBoundPropagation/certify(_:images:labels:epsilon:cleanPredictions:)``
/// then proves.
///
/// What makes it work, from the papers: a short natural warm-up, then ε ramped up linearly
/// while κ falls from 1 to its final value (Gowal et al.: over 10k of 60k steps, κ 1 → 0.5);
/// a training ε a little above the ε to be certified (0.4 for 0.3); the initialisation of
/// Shi et al. 2021 (``IntervalTraining/initialize(_:generator:)``); architectures with
/// strided convolutions.
///
/// With `crown-ibp` (Zhang et al. 2020) the worst-case logits are `β z̃_CROWN + (1 − β) z̃_IBP`,
/// the first from ``CrownIBPBound`` (CROWN's tighter linear bound, on the IBP pass's
/// intermediate bounds), with `β` falling from 1 to 0 over the ramp, as in the paper: the
/// tighter bound where the network is still far from verifiable, IBP's at full ε. It costs
/// about a forward and a backward pass per class while `β > 0`.
///
/// The bounds here are the plain interval bounds, without the outward widening that makes
/// the certifier's bounds sound under Float32 (the difference is around 10⁻⁵ of a logit):
/// training only needs their gradient, and the certificate is computed afterwards by the
/// sound pass.
public struct IntervalTraining: Sendable {
    /// The bound method of the verified loss.
    public enum Method: String, Sendable, CaseIterable {
        /// Interval bounds only (Gowal et al. 2018).
        case ibp
        /// CROWN-IBP (Zhang et al. 2020), mixed with IBP's bound by a weight that ramps 1 → 0.
        case crownIBP = "crown-ibp"
    }

    public let method: Method
    /// The ε of the verified loss at full strength (the training ε).
    public let epsilon: Float
    /// The final weight κ of the natural cross-entropy (1 − κ goes to the verified loss).
    public let kappa: Float
    /// Epochs of natural training (κ = 1, ε = 0) before the ramp.
    public let rampStart: Double
    /// Epochs over which ε grows linearly from 0 to ``epsilon`` and κ falls from 1 to ``kappa``.
    public let rampEpochs: Double

    /// Checks and stores the options.
    public init(method: Method = .ibp, epsilon: Float, kappa: Float = 0.5, rampStart: Double = 1, rampEpochs: Double = 10)
        throws(AdversarialError)
    {
        guard epsilon.isFinite, epsilon >= 0, epsilon <= 1 else {
            throw AdversarialError("epsilon must be between 0 and 1, got \(epsilon)")
        }
        guard kappa.isFinite, kappa >= 0, kappa <= 1 else {
            throw AdversarialError("kappa must be between 0 and 1, got \(kappa)")
        }
        guard rampStart.isFinite, rampStart >= 0 else { throw AdversarialError("the ramp start must be ≥ 0 epochs") }
        guard rampEpochs.isFinite, rampEpochs >= 0 else { throw AdversarialError("the ε ramp must be ≥ 0 epochs") }
        self.method = method
        self.epsilon = epsilon
        self.kappa = kappa
        self.rampStart = rampStart
        self.rampEpochs = rampEpochs
    }

    /// The ε and κ of a step: natural training until `rampStart`, then both ramp linearly.
    public func schedule(epoch: Double) -> (epsilon: Float, kappa: Float) {
        let progress = self.progress(epoch: epoch)
        return (epsilon * progress, 1 - (1 - kappa) * progress)
    }

    /// The weight `β` of CROWN-IBP's bound in the worst-case logits at `epoch`: 1 → 0 over the
    /// ramp for `crown-ibp`, always 0 for `ibp`.
    public func crownWeight(epoch: Double) -> Float {
        method == .crownIBP ? 1 - progress(epoch: epoch) : 0
    }

    /// How far along the ramp `epoch` is, from 0 to 1.
    private func progress(epoch: Double) -> Float {
        if epoch < rampStart { return 0 }
        if rampEpochs == 0 { return 1 }
        return Float(min(1, (epoch - rampStart) / rampEpochs))
    }

    /// Each step's batch for ``NeuralNet/Trainer/fit(_:plan:from:prepare:evaluate:verify:onEvent:)``,
    /// with ε and κ from ``schedule(epoch:)`` and β from ``crownWeight(epoch:)``.
    public func preparation(stepsPerEpoch: Int) -> BatchPreparation {
        { model, images, labels, step, _ in
            let epoch = Double(step) / Double(max(stepsPerEpoch, 1))
            let (epsilon, kappa) = schedule(epoch: epoch)
            return batch(
                model: model, images: images, labels: labels, epsilon: epsilon, kappa: kappa,
                crownWeight: crownWeight(epoch: epoch))
        }
    }

    /// The training batch at the current weights: its gradients are those of the mixed loss,
    /// its scored logits the worst-case logits (so the scored accuracy is the fraction verified
    /// by the training bounds; the clean logits while κ = 1, when no bounds are computed),
    /// and its clean accuracy that of the natural pass.
    public func batch(model: Model, images: Tensor, labels: [Int], epsilon: Float, kappa: Float, crownWeight: Float = 0)
        -> TrainingBatch
    {
        let count = labels.count
        return TrainingBatch(
            labels: labels, scoredRows: kappa < 1 ? count..<2 * count : 0..<count, clean: .rows(0..<count),
            gradients: { model, seed in
                IntervalTraining.gradients(
                    model, images: images, labels: labels, epsilon: epsilon, kappa: kappa, count: count,
                    crownWeight: crownWeight, seed: seed)
            })
    }

    /// The mixed loss's per-image values, the logits (the clean ones, then, when κ < 1, the
    /// worst-case ones) and the parameter gradients (of the loss averaged over `count` images).
    /// `crownWeight` is CROWN-IBP's `β` (0: IBP alone).
    ///
    /// The natural pass runs in training mode (`seed` keys dropout). Batch normalisation
    /// normalises the bounds with the statistics of the clean batch, as auto_LiRPA does for
    /// Shi et al. 2021, and the gradient goes through them too: without that, the layers below
    /// a batch-norm layer see a verified loss that shrinking their weights would reduce, which
    /// the normalisation undoes (measured: such a run collapses to chance within 4 epochs).
    static func gradients(
        _ model: Model, images: Tensor, labels: [Int], epsilon: Float, kappa: Float, count: Int, crownWeight: Float = 0,
        seed: UInt64 = 0
    ) -> ModelGradients {
        let scale = 1 / Float(count)
        func naturalPass(statisticsGradients: [Int: [Tensor]] = [:]) -> ModelGradients {
            model.gradients(
                images, training: seed, needsInputGradient: false, needsParameterGradients: true,
                statisticsGradients: statisticsGradients,
                loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows], gradientScale: kappa * scale) })
        }
        guard kappa < 1 else { return naturalPass() }
        // With batch normalisation the bounds are normalised with the clean batch's statistics,
        // and the verified loss's gradient reaches the layers below through them: a forward
        // pass measures them, the bound pass runs with them, and the natural pass's backward
        // adds that pass's gradient with respect to them.
        var bounded = model
        if !model.bufferNames.isEmpty {
            bounded.buffers = model.gradients(
                images, training: seed, needsInputGradient: false, needsParameterGradients: false,
                loss: { logits, _ in ([Float](repeating: 0, count: logits.batchSize), Tensor(shape: logits.shape)) }
            ).batchBuffers
        }
        let box = IntervalBounds.box(around: images, epsilon: epsilon)
        let shards = Compute.shards(count: images.batchSize)
        let parts = Compute.map(shards.count) { index in
            verifiedLoss(
                bounded, IntervalBounds(lower: box.lower.batch(shards[index]), upper: box.upper.batch(shards[index])),
                labels: Array(labels[shards[index]]), gradientScale: (1 - kappa) * scale, crownWeight: crownWeight)
        }
        // Summed in shard order, so the result does not depend on the thread count.
        var statistics = parts[0].statisticsGradients
        for part in parts.dropFirst() {
            for (layer, gradients) in part.statisticsGradients {
                for index in gradients.indices { statistics[layer]?[index].add(gradients[index]) }
            }
        }
        let natural = naturalPass(statisticsGradients: statistics)
        var result = natural
        result.logits = Tensor.concatenate([natural.logits] + parts.map(\.logits))
        let verified = parts.flatMap(\.losses)
        result.losses = zip(natural.losses, verified).map { kappa * $0 + (1 - kappa) * $1 }
        // Summed in shard order, so the result does not depend on the thread count.
        for part in parts {
            for index in result.parameterGradients.indices {
                result.parameterGradients[index].add(part.parameterGradients[index])
            }
        }
        return result
    }

    /// One shard's verified loss: forward through the bounds, the folded last layer, and back.
    ///
    /// Affine layers run in centre–radius form, `c' = f(c)` and `r' = |f|(r)` (the layer with
    /// `|W|` and no bias), so their backward is the layer's own, twice: with `g_c' = g_l' + g_u'`
    /// and `g_r' = g_u' − g_l'`, `g_l = (g_c − g_r)/2`, `g_u = (g_c + g_r)/2`, and the weight
    /// gradient `dW_f + sign(W) ⊙ dW_|f|`. The other layers (``BoundedLayer/centreRadius`` nil) map
    /// the lower and the upper bound separately, so their backward is their own on each.
    ///
    /// With `crownWeight` β > 0 the worst-case logits mix in CROWN-IBP's (``CrownIBPBound``), on
    /// this pass's intermediate bounds; its gradient reaches the parameters directly and
    /// through those bounds, whose gradient joins this pass's backward.
    static func verifiedLoss(
        _ model: Model, _ input: IntervalBounds, labels: [Int], gradientScale: Float, crownWeight: Float = 0
    ) -> (losses: [Float], logits: Tensor, parameterGradients: [Tensor], statisticsGradients: [Int: [Tensor]]) {
        let (body, dense) = model.boundedLayers(for: "interval training")
        let context = ForwardContext(training: false, needsBackward: true)
        var bounds = input
        var inputs: [IntervalBounds] = []
        var tape: [BoundStep] = []
        for layer in body {
            inputs.append(bounds)
            let (next, step) = BoundStep.forward(layer, bounds, context: context)
            tape.append(step)
            bounds = next
        }
        inputs.append(bounds)
        let crown = crownWeight > 0 ? CrownIBPBound(body: body, dense: dense, inputs: inputs, labels: labels) : nil
        let folded = foldedLoss(
            dense, bounds, labels: labels, gradientScale: gradientScale,
            crown: crown.map { ($0.worstLogits, crownWeight) })
        let crownGradients = crown.map { $0.gradients(folded.crownGradient) }
        var gradient = folded.boundsGradient
        var gradients = crownGradients?.parameters ?? [[Tensor]](repeating: [], count: body.count)
        var statistics = crownGradients?.statistics ?? [:]
        let firstTrainable = body.firstIndex { !$0.parameterNames.isEmpty } ?? body.count
        for (index, step) in tape.enumerated().reversed() {
            if let extra = crownGradients?.bounds[index + 1] {
                gradient.lower.add(extra.lower)
                gradient.upper.add(extra.upper)
            }
            let (inputGradient, parameters, layerStatistics) = step.backward(
                body[index], gradient, needsInputGradient: index > firstTrainable)
            gradients[index] = sum(gradients[index], parameters)
            if let layerStatistics { statistics[index] = sum(statistics[index] ?? [], layerStatistics) }
            guard let inputGradient else { break }
            gradient = inputGradient
        }
        var weightGradient = folded.weightGradient
        var biasGradient = folded.biasGradient
        if let crownGradients {
            weightGradient.add(crownGradients.weight)
            biasGradient.add(crownGradients.bias)
        }
        return (folded.losses, folded.logits, gradients.flatMap { $0 } + [weightGradient, biasGradient], statistics)
    }

    /// Two lists of gradients added element by element; an empty list is zero.
    private static func sum(_ a: [Tensor], _ b: [Tensor]) -> [Tensor] {
        guard !a.isEmpty else { return b }
        guard !b.isEmpty else { return a }
        return zip(a, b).map { $0 + $1 }
    }

    /// The cross-entropy of the worst-case logits with the margin folded into the last dense
    /// layer: `z̃_j = A_j c + |A_j| r + b_j − b_y` with `A_j = W_j − W_y`, `z̃_y = 0`; its loss is
    /// `log Σ_j exp z̃_j`, whose gradient is `p = softmax(z̃)` at `j ≠ y`.
    ///
    /// With `crown` (CROWN-IBP's worst-case logits and their weight β) the loss is that of
    /// `β z̃_CROWN + (1 − β) z̃`; `crownGradient` is its gradient with respect to `z̃_CROWN`
    /// (empty without).
    static func foldedLoss(
        _ dense: Dense, _ bounds: IntervalBounds, labels: [Int], gradientScale: Float,
        crown: (logits: [Float], weight: Float)? = nil
    ) -> (
        losses: [Float], logits: Tensor, boundsGradient: IntervalBounds, weightGradient: Tensor, biasGradient: Tensor,
        crownGradient: [Float]
    ) {
        let (I, O) = (dense.inputFeatures, dense.outputFeatures)
        let n = labels.count
        let w = dense.weight.scalars, b = dense.bias.scalars
        let l = bounds.lower.scalars, u = bounds.upper.scalars
        precondition(bounds.lower.itemCount == I, "the last dense layer's input does not match the bounds")
        var losses = [Float](repeating: 0, count: n)
        var logits = [Float](repeating: 0, count: n * O)
        var gl = [Float](repeating: 0, count: n * I)
        var gu = [Float](repeating: 0, count: n * I)
        var gw = [Float](repeating: 0, count: O * I)
        var gb = [Float](repeating: 0, count: O)
        var c = [Float](repeating: 0, count: I), r = [Float](repeating: 0, count: I)
        var gc = [Float](repeating: 0, count: I), gr = [Float](repeating: 0, count: I)
        var crownGradient = [Float](repeating: 0, count: crown == nil ? 0 : n * O)
        for s in 0..<n {
            let y = labels[s]
            for i in 0..<I {
                c[i] = (l[s * I + i] + u[s * I + i]) / 2
                r[i] = (u[s * I + i] - l[s * I + i]) / 2
            }
            var z = [Float](repeating: 0, count: O)
            for j in 0..<O where j != y {
                var sum = b[j] - b[y]
                for i in 0..<I {
                    let a = w[j * I + i] - w[y * I + i]
                    sum += a * c[i] + abs(a) * r[i]
                }
                z[j] = sum
            }
            if let crown {
                for j in 0..<O { z[j] = crown.weight * crown.logits[s * O + j] + (1 - crown.weight) * z[j] }
            }
            let top = z.max() ?? 0
            let exps = z.map { expf($0 - top) }
            let total = exps.reduce(0, +)
            losses[s] = top + logf(total)
            for j in 0..<O { logits[s * O + j] = z[j] }
            for i in 0..<I { (gc[i], gr[i]) = (0, 0) }
            for j in 0..<O where j != y {
                let mixed = gradientScale * exps[j] / total
                if let crown { crownGradient[s * O + j] = crown.weight * mixed }
                let p = (1 - (crown?.weight ?? 0)) * mixed
                gb[j] += p
                gb[y] -= p
                for i in 0..<I {
                    let a = w[j * I + i] - w[y * I + i]
                    let sign: Float = a > 0 ? 1 : (a < 0 ? -1 : 0)
                    gc[i] += p * a
                    gr[i] += p * abs(a)
                    let dw = p * (c[i] + sign * r[i])
                    gw[j * I + i] += dw
                    gw[y * I + i] -= dw
                }
            }
            for i in 0..<I {
                gl[s * I + i] = (gc[i] - gr[i]) / 2
                gu[s * I + i] = (gc[i] + gr[i]) / 2
            }
        }
        let shape = bounds.lower.shape
        return (
            losses, Tensor(shape: [n, O], scalars: logits),
            IntervalBounds(lower: Tensor(shape: shape, scalars: gl), upper: Tensor(shape: shape, scalars: gu)),
            Tensor(shape: dense.weight.shape, scalars: gw), Tensor(shape: dense.bias.shape, scalars: gb), crownGradient
        )
    }
}

/// One layer of the interval forward pass and what its backward needs.
enum BoundStep {
    /// An affine layer: the caches of `f(c)` and of `|f|(r)`, and the layer with `|W|`.
    case affine(center: Any, radius: Any, absolute: any Layer, weight: Tensor)
    /// A monotone layer: the caches of the lower and of the upper bound.
    case monotone(lower: Any, upper: Any)

    static func forward(_ layer: any BoundedLayer, _ bounds: IntervalBounds, context: ForwardContext)
        -> (IntervalBounds, BoundStep)
    {
        if let (absolute, weight) = layer.centreRadius {
            let center = 0.5 * (bounds.lower + bounds.upper)
            let radius = 0.5 * (bounds.upper - bounds.lower)
            let (c, centerCache) = forwardOpened(layer, center, context)
            let (r, radiusCache) = forwardOpened(absolute, radius, context)
            return (
                IntervalBounds(lower: c - r, upper: c + r),
                .affine(center: centerCache, radius: radiusCache, absolute: absolute, weight: weight)
            )
        }
        let (l, lowerCache) = forwardOpened(layer, bounds.lower, context)
        let (u, upperCache) = forwardOpened(layer, bounds.upper, context)
        return (IntervalBounds(lower: l, upper: u), .monotone(lower: lowerCache, upper: upperCache))
    }

    /// The gradient with respect to the input bounds (when asked), the layer's parameter
    /// gradients and, for a layer that normalises with batch statistics, theirs.
    func backward(_ layer: any BoundedLayer, _ gradient: IntervalBounds, needsInputGradient: Bool)
        -> (IntervalBounds?, [Tensor], statistics: [Tensor]?)
    {
        let wantsParameters = !layer.parameterNames.isEmpty
        switch self {
        case let .affine(centerCache, radiusCache, absolute, weight):
            let (gc, centerGrads) = backwardOpened(
                layer, gradient.lower + gradient.upper, centerCache, needsInputGradient, wantsParameters)
            let (gr, radiusGrads) = backwardOpened(
                absolute, gradient.upper - gradient.lower, radiusCache, needsInputGradient, wantsParameters)
            var weightGradient = centerGrads[0]
            weightGradient.scalars.withUnsafeMutableBufferPointer { g in
                for i in 0..<g.count {
                    let w = weight.scalars[i]
                    g[i] += (w > 0 ? 1 : (w < 0 ? -1 : 0)) * radiusGrads[0].scalars[i]
                }
            }
            let parameters = [weightGradient, centerGrads[1]]
            let statistics = layer.statisticsGradient(centre: centerGrads, radius: radiusGrads)
            guard needsInputGradient, let gc, let gr else { return (nil, parameters, statistics) }
            return (IntervalBounds(lower: 0.5 * (gc - gr), upper: 0.5 * (gc + gr)), parameters, statistics)
        case let .monotone(lowerCache, upperCache):
            let (gl, _) = backwardOpened(layer, gradient.lower, lowerCache, needsInputGradient, false)
            let (gu, _) = backwardOpened(layer, gradient.upper, upperCache, needsInputGradient, false)
            guard needsInputGradient, let gl, let gu else { return (nil, [], nil) }
            return (IntervalBounds(lower: gl, upper: gu), [], nil)
        }
    }
}

func forwardOpened<L: Layer>(_ layer: L, _ input: Tensor, _ context: ForwardContext) -> (Tensor, Any) {
    let (output, cache) = layer.forward(input, context: context)
    return (output, cache)
}

func backwardOpened<L: Layer>(
    _ layer: L, _ gradient: Tensor, _ cache: Any, _ needsInputGradient: Bool, _ needsParameterGradients: Bool
) -> (Tensor?, [Tensor]) {
    // Each cache is paired with the layer that made it, so the cast cannot fail.
    layer.backward(
        gradient, cache: cache as! L.Cache, needsInputGradient: needsInputGradient,
        needsParameterGradients: needsParameterGradients)
}

extension IntervalTraining {
    /// The initialisation of Shi et al. 2021 ("Fast certified robust training with short
    /// warmup"): every weight but the last layer's drawn from N(0, 2π / fan_in²), so that the
    /// interval radius keeps its size from layer to layer at initialisation; biases and the
    /// last layer keep their initialisation.
    public static func initialize(_ model: inout Model, generator: inout SplitMix64) {
        var parameters = model.parameters
        let names = model.parameterNames
        let weights = names.indices.filter { names[$0].hasSuffix(".weight") && parameters[$0].shape.count >= 2 }
        for index in weights.dropLast() {
            let shape = parameters[index].shape
            let fanIn = shape.dropFirst().reduce(1, *)
            let std = Float((2 * Double.pi).squareRoot() / Double(fanIn))
            var values = [Float](repeating: 0, count: parameters[index].count)
            for i in values.indices { values[i] = std * generator.nextGaussian() }
            parameters[index] = Tensor(shape: shape, scalars: values)
        }
        model.parameters = parameters
    }
}
