import Foundation
import NeuralNet

/// HopSkipJumpAttack (Chen, Jordan & Wainwright 2020, "HopSkipJumpAttack: a
/// query-efficient decision-based attack"), L2 or L∞: a decision-based attack that reads
/// only the predicted label (see ``DecisionBasedAttack``).
///
/// From a starting point on the adversarial side, moved onto the decision boundary by
/// binary search, each iteration t = 1, 2, … (as the authors' code and Foolbox):
/// 1. estimates the direction of the boundary's normal from the signs of B_t =
///    min(100·√t, 10,000) probes x + δ·u (u uniform on the unit sphere for L2, a
///    normalised uniform cube sample for L∞; clipped to [0, 1]): the mean of φ(probe)·u,
///    φ = ±1 for adversarial or not, with the mean of φ subtracted as a baseline;
///    δ = 0.1 at t = 1, then √d·θ·dist (L2) or d·θ·dist (L∞), with θ = γ/d^{3/2} (L2) or
///    γ/d² (L∞), γ = 1 and d the number of pixels;
/// 2. steps along the estimate (its sign for L∞) by ξ = dist/√t, halving ξ until the
///    point is adversarial (the geometric step-size search);
/// 3. returns to the boundary by binary search between the original and that point, to a
///    precision of θ (L2: on the blend factor; L∞: on the box's radius, θ·dist at most).
///
/// All probes of all images still running are evaluated together, in batches of at most
/// 2,048 images; each counts one query for its image. An image stops when its budget
/// (`maxQueries`, the clean check and the final check included) no longer covers an
/// iteration with at least 10 probes, or after `maxIterations`.
public struct HopSkipJump: DecisionBasedAttack {
    /// `.l2` or `.linf`.
    public let norm: Norm
    /// The most queries per image.
    public let maxQueries: Int
    /// The most iterations per image, or nil to go on while the budget lasts.
    public let maxIterations: Int?
    /// B at the first iteration (the paper's 100); B_t = that · √t.
    public let initialEvaluations: Int
    /// The cap on B_t (the paper's 10,000).
    public let maxEvaluations: Int
    /// γ, which sets θ and so δ and the binary search's precision (the paper's 1).
    public let gamma: Float
    public var name: String { norm == .l2 ? "hopskipjump" : "hopskipjump-linf" }

    /// - Parameters:
    ///   - norm: `.l2` (default) or `.linf`.
    ///   - maxQueries: queries per image, at least 20 (default 10,000).
    ///   - maxIterations: at least 1, or nil (default) for as many as the budget allows.
    ///   - initialEvaluations, maxEvaluations: B's schedule (defaults 100 and 10,000).
    ///   - gamma: default 1.
    public init(
        norm: Norm = .l2, maxQueries: Int = 10_000, maxIterations: Int? = nil, initialEvaluations: Int = 100,
        maxEvaluations: Int = 10_000, gamma: Float = 1
    ) throws(AdversarialError) {
        guard norm == .l2 || norm == .linf else {
            throw AdversarialError("HopSkipJump supports the l2 and linf norms, got \(norm.rawValue)")
        }
        try AttackCheck.atLeast(LabelOnlyBudget.minimum, maxQueries, "query budget")
        if let maxIterations { try AttackCheck.atLeast(1, maxIterations, "steps") }
        try AttackCheck.atLeast(1, initialEvaluations, "initial gradient evaluations")
        try AttackCheck.atLeast(initialEvaluations, maxEvaluations, "maximum gradient evaluations")
        try AttackCheck.positive(gamma, "gamma")
        self.norm = norm
        self.maxQueries = maxQueries
        self.maxIterations = maxIterations
        self.initialEvaluations = initialEvaluations
        self.maxEvaluations = maxEvaluations
        self.gamma = gamma
    }

    /// The fewest probes an iteration is worth.
    static var minimumEvaluations: Int { 10 }

    /// θ: the binary search's precision, and δ's scale.
    func theta(pixels: Int) -> Float {
        let d = Float(pixels)
        return norm == .l2 ? gamma / (d * d.squareRoot()) : gamma / (d * d)
    }

    /// Queries a binary search back to the boundary takes at most, and a few for the step size.
    func searchReserve(pixels: Int) -> Int { Int(log2(1 / theta(pixels: pixels)).rounded(.up)) + 4 }

    /// B for iteration t (from 1) of an image that may still spend `spendable` queries, or
    /// nil when that does not cover an iteration.
    func evaluations(iteration: Int, spendable: Int, pixels: Int) -> Int? {
        let wanted = min(Int(Float(initialEvaluations) * Float(iteration).squareRoot()), maxEvaluations)
        let count = min(wanted, spendable - searchReserve(pixels: pixels))
        return count >= Self.minimumEvaluations ? count : nil
    }

    /// The most iterations the budget allows any image: each costs at least its B and one
    /// step-size query on top of the clean check.
    func iterationBudget(pixels: Int) -> Int {
        var spent = 1
        var iterations = 0
        let spendable = maxQueries - LabelOnlyBudget.reserve
        while iterations < (maxIterations ?? .max),
            let count = evaluations(iteration: iterations + 1, spendable: spendable - spent, pixels: pixels)
        {
            spent += count + 1
            iterations += 1
        }
        return max(iterations, 1)
    }

    public func run(
        oracle: some LabelOracle, images: Tensor, labels: [Int], targets: [Int]?, seed: UInt64,
        observer: StepObserver?
    ) throws(AdversarialError) -> LabelOnlyResult {
        var run = try LabelOnlyRun(
            oracle: oracle, images: images, labels: labels, targets: targets, budget: maxQueries, observer: observer)
        let pixels = run.size
        var tracks = run.startImages(seed: seed, norm: norm)
        backToBoundary(&tracks, indices: Array(tracks.indices), run: &run)
        let steps = iterationBudget(pixels: pixels)

        for iteration in 1...steps {
            var probes: [Int: Int] = [:]
            for index in tracks.indices where !tracks[index].done {
                let count = evaluations(
                    iteration: iteration, spendable: run.spendable(tracks[index].item), pixels: pixels)
                if let count { probes[index] = count } else { tracks[index].done = true }
            }
            let active = probes.keys.sorted()
            if active.isEmpty { break }
            let deltas = active.map { index in
                iteration == 1
                    ? Float(0.1)
                    : (norm == .l2 ? Float(pixels).squareRoot() : Float(pixels)) * theta(pixels: pixels)
                        * tracks[index].distance
            }
            let directions = estimateDirections(
                tracks, active: active, probes: active.map { probes[$0]! }, deltas: deltas,
                iteration: iteration, seed: seed, run: &run)
            let moved = stepAlong(
                directions, tracks: &tracks, active: active, iteration: iteration, run: &run)
            backToBoundary(&tracks, indices: moved, run: &run)
            if run.endStep(iteration, of: steps, active.map { tracks[$0] }) { break }
        }
        return run.finish(tracks)
    }

    /// Step 1: the estimated boundary normal (unit L2 norm) at each active image's current
    /// point, from `probes[k]` sign queries at radius `deltas[k]`.
    private func estimateDirections(
        _ tracks: [LabelOnlyImage], active: [Int], probes: [Int], deltas: [Float], iteration: Int, seed: UInt64,
        run: inout LabelOnlyRun<some LabelOracle>
    ) -> [[Float]] {
        let pixels = run.size
        // Per image: Σ φ·rv, Σ rv and Σ φ, where rv = (probe − x)/δ is the clipped direction.
        var weighted = active.map { _ in [Float](repeating: 0, count: pixels) }
        var plain = weighted
        var signs = [Float](repeating: 0, count: active.count)
        // Every probe as (k, j): the j-th probe of active image k, cut into batches.
        let all = probes.enumerated().flatMap { k, count in (0..<count).map { (k, $0) } }
        let batchSize = 2048
        for start in stride(from: 0, to: all.count, by: batchSize) {
            let batch = Array(all[start..<min(start + batchSize, all.count)])
            let shape = [batch.count] + Array(run.images.shape.dropFirst())
            // Each probe draws from its own stream: the same numbers however the batches are cut.
            let rows = Compute.map(batch.count) { row -> [Float] in
                let (k, j) = batch[row]
                let track = tracks[active[k]]
                var generator = SplitMix64(
                    seed: seed, stream: 0x4A5, UInt64(track.item), UInt64(iteration), UInt64(j))
                var u =
                    norm == .l2
                    ? generator.gaussians(pixels) : (0..<pixels).map { _ in 2 * generator.nextUnitFloat() - 1 }
                let length = u.reduce(0) { $0 + $1 * $1 }.squareRoot() + 1e-12
                for index in 0..<pixels {
                    u[index] = min(max(track.current[index] + deltas[k] * u[index] / length, 0), 1)
                }
                return u
            }
            let adversarial = run.ask(
                Tensor(shape: shape, scalars: Array(rows.joined())), owners: batch.map { tracks[active[$0.0]].item })
            for (row, (k, _)) in batch.enumerated() {
                let phi: Float = adversarial[row] ? 1 : -1
                let current = tracks[active[k]].current
                signs[k] += phi
                for index in 0..<pixels {
                    let rv = (rows[row][index] - current[index]) / deltas[k]
                    weighted[k][index] += phi * rv
                    plain[k][index] += rv
                }
            }
        }
        return active.indices.map { k in
            let count = Float(probes[k])
            let mean = signs[k] / count
            // All probes alike: the mean direction, signed; else with the mean sign as baseline.
            var direction =
                abs(mean) == 1
                ? plain[k].map { mean * $0 / count }
                : zip(weighted[k], plain[k]).map { ($0 - mean * $1) / count }
            let length = direction.reduce(0) { $0 + $1 * $1 }.squareRoot() + 1e-12
            direction = direction.map { $0 / length }
            return norm == .l2 ? direction : direction.map { $0 > 0 ? 1 : ($0 < 0 ? -1 : 0) }
        }
    }

    /// Step 2: the geometric step-size search. Returns the indices of the tracks that moved.
    private func stepAlong(
        _ directions: [[Float]], tracks: inout [LabelOnlyImage], active: [Int], iteration: Int,
        run: inout LabelOnlyRun<some LabelOracle>
    ) -> [Int] {
        var stepSizes = active.map { tracks[$0].distance / Float(iteration).squareRoot() }
        var searching = Array(active.indices)
        var moved: [Int] = []
        for _ in 0..<25 {
            searching = searching.filter { run.spendable(tracks[active[$0]].item) > 0 }
            if searching.isEmpty { break }
            let candidates = searching.map { k in
                zip(tracks[active[k]].current, directions[k]).map { min(max($0 + stepSizes[k] * $1, 0), 1) }
            }
            let adversarial = run.ask(candidates, owners: searching.map { tracks[active[$0]].item })
            var next: [Int] = []
            for (row, k) in searching.enumerated() {
                if adversarial[row] {
                    tracks[active[k]].current = candidates[row]
                    moved.append(active[k])
                } else {
                    stepSizes[k] /= 2
                    next.append(k)
                }
            }
            searching = next
        }
        return moved.sorted()
    }

    /// Step 3: binary search from each track's current point back to the boundary.
    private func backToBoundary(
        _ tracks: inout [LabelOnlyImage], indices: [Int], run: inout LabelOnlyRun<some LabelOracle>
    ) {
        let theta = theta(pixels: run.size)
        let originals = indices.map { tracks[$0].original }
        let points = indices.map { tracks[$0].current }
        let found: [[Float]]
        if norm == .l2 {
            found = run.bisect(
                items: indices.map { tracks[$0].item }, high: indices.map { _ in 1 },
                tolerance: indices.map { _ in theta }
            ) { k, alpha in blend(originals[k], points[k], alpha) }
        } else {
            let radii = indices.indices.map { Norm.linf.distance(points[$0][...], originals[$0][...]) }
            found = run.bisect(
                items: indices.map { tracks[$0].item }, high: radii,
                tolerance: radii.map { min($0 * theta, theta) }
            ) { k, radius in
                zip(points[k], originals[k]).map { min(max($0, $1 - radius), $1 + radius) }
            }
        }
        for (k, index) in indices.enumerated() {
            tracks[index].current = found[k]
            tracks[index].distance = norm.distance(found[k][...], tracks[index].original[...])
        }
    }
}
