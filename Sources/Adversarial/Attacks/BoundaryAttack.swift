import Foundation
import NeuralNet

/// The Boundary attack (Brendel, Rauber & Bethge 2018, "Decision-based adversarial
/// attacks: reliable attacks against black-box machine learning models"), L2: a
/// decision-based attack that reads only the predicted label (see ``DecisionBasedAttack``).
///
/// From a starting point on the adversarial side it walks along the decision boundary
/// towards the original. Each step draws one proposal per image, as Foolbox 3 does:
/// a Gaussian direction made orthogonal to the direction towards the original, scaled to
/// `sphericalStep` times the current distance and projected back onto the sphere around
/// the original (the spherical candidate), then a step of `sourceStep` times the distance
/// towards the original; the proposal is kept if it is adversarial and closer.
///
/// Step sizes adapt to the boundary's local shape: every 10th step the spherical candidate
/// is also asked about; once 100 such answers are in, both steps grow by
/// `stepAdaptation` (1.5) if more than half were adversarial and shrink if fewer than
/// 20% were; once 30 answers about the proposals are in, the source step grows if more
/// than 25% were adversarial and shrinks below 10%. An image stops when its source step
/// falls below 10⁻⁷, its budget is spent, or after `maxSteps`.
public struct BoundaryAttack: DecisionBasedAttack {
    /// The most queries per image.
    public let maxQueries: Int
    /// The most steps per image, or nil to go on while the budget lasts.
    public let maxSteps: Int?
    /// The first orthogonal step, relative to the distance (Foolbox: 0.01).
    public let sphericalStep: Float
    /// The first step towards the original, relative to the distance (Foolbox: 0.01).
    public let sourceStep: Float
    /// The factor step sizes grow or shrink by (1.5).
    public let stepAdaptation: Float
    public var name: String { "boundary" }
    public var norm: Norm { .l2 }

    /// The source step below which an image has converged.
    static var convergence: Float { 1e-7 }
    /// How often the spherical candidate is asked about, in steps.
    static var statisticsEvery: Int { 10 }

    /// - Parameters:
    ///   - maxQueries: queries per image, at least 20 (default 10,000).
    ///   - maxSteps: at least 1, or nil (default) for as many as the budget allows.
    ///   - sphericalStep, sourceStep: the first step sizes, positive (default 0.01 each).
    ///   - stepAdaptation: above 1 (default 1.5).
    public init(
        maxQueries: Int = 10_000, maxSteps: Int? = nil, sphericalStep: Float = 0.01, sourceStep: Float = 0.01,
        stepAdaptation: Float = 1.5
    ) throws(AdversarialError) {
        try AttackCheck.atLeast(LabelOnlyBudget.minimum, maxQueries, "query budget")
        if let maxSteps { try AttackCheck.atLeast(1, maxSteps, "steps") }
        try AttackCheck.positive(sphericalStep, "spherical step")
        try AttackCheck.positive(sourceStep, "source step")
        guard stepAdaptation.isFinite, stepAdaptation > 1 else {
            throw AdversarialError("step adaptation must be a finite number above 1, got \(stepAdaptation)")
        }
        self.maxQueries = maxQueries
        self.maxSteps = maxSteps
        self.sphericalStep = sphericalStep
        self.sourceStep = sourceStep
        self.stepAdaptation = stepAdaptation
    }

    /// One image being attacked, with its step sizes and statistics.
    struct Track {
        /// Its current point is the closest adversarial found.
        var image: LabelOnlyImage
        var sphericalStep: Float
        var sourceStep: Float
        /// The last answers about spherical candidates (at most 100) and proposals (at most 30).
        var sphericalAnswers: [Bool] = []
        var proposalAnswers: [Bool] = []
        var generator: SplitMix64

        /// The fraction of adversarial answers, once `answers` holds `count` of them.
        static func rate(_ answers: [Bool], full count: Int) -> Float? {
            answers.count < count ? nil : Float(answers.filter { $0 }.count) / Float(count)
        }
    }

    public func run(
        oracle: some LabelOracle, images: Tensor, labels: [Int], targets: [Int]?, seed: UInt64,
        observer: StepObserver?
    ) throws(AdversarialError) -> LabelOnlyResult {
        var run = try LabelOnlyRun(
            oracle: oracle, images: images, labels: labels, targets: targets, budget: maxQueries, observer: observer)
        var tracks = run.startImages(seed: seed, norm: .l2).map { image in
            Track(
                image: image, sphericalStep: sphericalStep, sourceStep: sourceStep,
                generator: SplitMix64(seed: seed, stream: 0xB0, UInt64(image.item)))
        }
        // Every step costs at least one query on top of the clean check.
        let steps = min(maxSteps ?? .max, max(maxQueries - LabelOnlyBudget.reserve - 1, 1))

        for step in 1...steps {
            let checking = step % Self.statisticsEvery == 0
            for index in tracks.indices where !tracks[index].image.done {
                let track = tracks[index]
                if track.sourceStep < Self.convergence || run.spendable(track.image.item) < (checking ? 2 : 1) {
                    tracks[index].image.done = true
                }
            }
            let active = tracks.indices.filter { !tracks[$0].image.done }
            if active.isEmpty { break }
            let proposals = active.map { propose(&tracks[$0]) }
            let owners = active.map { tracks[$0].image.item }
            let adversarial = run.ask(proposals.map(\.candidate), owners: owners)
            let sphericalAdversarial = checking ? run.ask(proposals.map(\.spherical), owners: owners) : []
            for (k, index) in active.enumerated() {
                let distance = Norm.l2.distance(proposals[k].candidate[...], tracks[index].image.original[...])
                if adversarial[k] && distance < tracks[index].image.distance {
                    tracks[index].image.current = proposals[k].candidate
                    tracks[index].image.distance = distance
                }
                if checking { adapt(&tracks[index], spherical: sphericalAdversarial[k], proposal: adversarial[k]) }
            }
            if run.endStep(step, of: steps, active.map { tracks[$0].image }) { break }
        }
        return run.finish(tracks.map(\.image))
    }

    /// One proposal (Foolbox 3's `draw_proposals`): the spherical candidate, and the
    /// candidate after the step towards the original; both clipped to [0, 1].
    private func propose(_ track: inout Track) -> (candidate: [Float], spherical: [Float]) {
        let original = track.image.original
        let pixels = original.count
        // source = original − current, its norm, and its unit direction.
        let source = zip(original, track.image.current).map { $0 - $1 }
        let sourceNorm = max(source.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        var eta = track.generator.gaussians(pixels)
        // Orthogonal to the source direction, then scaled to sphericalStep · ‖source‖.
        let projection = zip(eta, source).reduce(0) { $0 + $1.0 * $1.1 } / sourceNorm
        for index in 0..<pixels { eta[index] -= projection * source[index] / sourceNorm }
        let etaNorm = max(eta.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        let scale = track.sphericalStep * sourceNorm / etaNorm
        // Back onto the sphere of radius ‖source‖ around the original (Pythagoras).
        let sphere = (track.sphericalStep * track.sphericalStep + 1).squareRoot()
        let spherical = (0..<pixels).map { index in
            min(max(original[index] + (scale * eta[index] - source[index]) / sphere, 0), 1)
        }
        // The step towards the original, corrected for the clipping's distance off the sphere.
        let towards = zip(original, spherical).map { $0 - $1 }
        let towardsNorm = max(towards.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        let length = max(track.sourceStep * sourceNorm + towardsNorm - sourceNorm, 0) / towardsNorm
        let candidate = zip(spherical, towards).map { min(max($0 + length * $1, 0), 1) }
        return (candidate, spherical)
    }

    /// The step-size adaptation after a step that also asked about the spherical candidate.
    private func adapt(_ track: inout Track, spherical: Bool, proposal: Bool) {
        track.sphericalAnswers = Array((track.sphericalAnswers + [spherical]).suffix(100))
        track.proposalAnswers = Array((track.proposalAnswers + [proposal]).suffix(30))
        if let rate = Track.rate(track.sphericalAnswers, full: 100), rate > 0.5 || rate < 0.2 {
            let factor = rate > 0.5 ? stepAdaptation : 1 / stepAdaptation
            track.sphericalStep *= factor
            track.sourceStep *= factor
            track.sphericalAnswers = []
        }
        if let rate = Track.rate(track.proposalAnswers, full: 30), rate > 0.25 || rate < 0.1 {
            track.sourceStep *= rate > 0.25 ? stepAdaptation : 1 / stepAdaptation
            track.proposalAnswers = []
        }
    }
}
