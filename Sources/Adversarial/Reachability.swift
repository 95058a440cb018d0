import Foundation
import NeuralNet

/// Can an image within ε of a start be made to reach a target with a given confidence at all?
/// An attack that succeeds answers yes; only a bound can answer no (`deceive fool --within EPS
/// --certify`).
///
/// Over the L∞ box of radius ε around the start (within [0, 1]),
///
///     p_t = 1 / (1 + Σ_{j≠t} exp(z_j − z_t)) ≤ 1 / (1 + Σ_{j≠t} exp(L_j))
///
/// where `L_j` is a sound lower bound of `z_j − z_t`: the linear-relaxation bound
/// (``LinearBoundPropagation``, never below the interval bound), widened for Float32. The softmax bound is computed in `Double` and raised by
/// 10⁻⁵, more than the Float32 engine's own rounding of its softmax, so a target whose bound
/// is below the confidence can reach it neither in the real network nor in the engine.
public enum TargetProbabilityBound {
    /// The engine's softmax rounding, covered with room to spare.
    static let softmaxSlack: Double = 1e-5

    /// For each start (`starts`, [N, C, H, W]) and its target, an upper bound on the target's
    /// probability over every image within `epsilon` (L∞) of the start; 1 when nothing is proved.
    public static func upperBounds(_ model: Model, starts: Tensor, targets: [Int], epsilon: Float) -> [Float] {
        precondition(targets.count == starts.batchSize, "one target per start")
        let classes = model.classCount
        // Row (n, j) asks for lower bounds of z_j − z_k for every k, with "label" j; the ones
        // needed are at k = targets[n].
        var rows: [Int] = []
        var labels: [Int] = []
        for n in targets.indices {
            for j in 0..<classes where j != targets[n] {
                rows.append(n)
                labels.append(j)
            }
        }
        guard !rows.isEmpty else { return targets.map { _ in 1 } }
        let images = starts.gathering(rows)
        let margins = LinearBoundPropagation.marginLowerBounds(model, images: images, labels: labels, epsilon: epsilon)
        var sums = [Double](repeating: 1, count: targets.count)
        for (row, n) in rows.enumerated() {
            let lower = margins[row][targets[n]]
            // A NaN bound proves nothing: it adds nothing to the denominator.
            if !lower.isNaN { sums[n] += exp(Double(lower)) }
        }
        return sums.map { Float(min(1, 1 / $0 + softmaxSlack)) }
    }
}
