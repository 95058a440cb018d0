import NeuralNet

/// A strong, standard robustness evaluation in the spirit of AutoAttack (Croce & Hein
/// 2020): several diverse attacks, each image counted robust only if it survives all of
/// them, plus checks for gradient masking from Carlini et al. 2019, "On Evaluating
/// Adversarial Robustness".
///
/// Members, each run on every correctly classified image: APGD-CE; APGD-DLR targeted at
/// the `targetClasses` most likely wrong classes (AutoAttack's APGD-T); PGD with
/// `pgdSteps` steps and `pgdRestarts` restarts. Square (black-box) then runs on the images
/// that survived all gradient attacks, as in AutoAttack; its reported accuracy is the
/// ensemble's after it.
public struct RobustnessEvaluation: Sendable {
    public let epsilon: Float
    public let apgdSteps: Int
    public let targetClasses: Int
    public let pgdSteps: Int
    public let pgdRestarts: Int
    public let squareQueries: Int
    public let seed: UInt64

    /// Checks the options.
    public init(
        epsilon: Float = 0.3, apgdSteps: Int = 100, targetClasses: Int = 3, pgdSteps: Int = 100, pgdRestarts: Int = 3,
        squareQueries: Int = 5000, seed: UInt64 = 1
    ) throws(AdversarialError) {
        guard epsilon.isFinite, epsilon > 0, epsilon <= 1 else {
            throw AdversarialError("epsilon must be in (0, 1], got \(epsilon)")
        }
        guard apgdSteps >= 1, pgdSteps >= 1, pgdRestarts >= 1, squareQueries >= 1 else {
            throw AdversarialError("steps, restarts and queries must be at least 1")
        }
        guard (1...9).contains(targetClasses) else {
            throw AdversarialError("target classes must be between 1 and 9, got \(targetClasses)")
        }
        self.epsilon = epsilon
        self.apgdSteps = apgdSteps
        self.targetClasses = targetClasses
        self.pgdSteps = pgdSteps
        self.pgdRestarts = pgdRestarts
        self.squareQueries = squareQueries
        self.seed = seed
    }

    /// One member's outcome.
    public struct Member: Sendable, Encodable {
        public let name: String
        /// Robust accuracy under this member alone, over all evaluated images.
        public let robustAccuracy: Double
        /// Images run through this member.
        public let attacked: Int
        public let seconds: Double
    }

    /// A gradient-masking check.
    public struct Check: Sendable, Encodable {
        public let name: String
        public let passed: Bool
        public let detail: String
    }

    /// The evaluation's outcome.
    public struct Report: Sendable, Encodable {
        public let epsilon: Float
        public let images: Int
        public let cleanAccuracy: Double
        /// Correct under every member: the number to quote.
        public let robustAccuracy: Double
        public let members: [Member]
        public let checks: [Check]
        public let seconds: Double
        /// Per image: whether it is robust (correct under every member).
        public let robust: [Bool]
    }

    /// Evaluates `model` on `images` with `labels`. `progress` gets a description of each
    /// stage as it starts.
    public func run(model: Model, images: Tensor, labels: [Int], progress: (String) -> Void = { _ in }) throws(AdversarialError)
        -> Report
    {
        let clock = ContinuousClock()
        let began = clock.now
        let count = labels.count
        let clean = model.predictions(images)
        let correct = labels.indices.filter { clean[$0] == labels[$0] }
        let correctSet = Set(correct)
        var robust = labels.indices.map { clean[$0] == labels[$0] }
        var members: [Member] = []

        /// Runs an attack on some images; marks those it breaks; returns its robust accuracy.
        /// `cumulative`: the member ran on survivors only, so its number is the ensemble's so far.
        func member(_ name: String, _ attack: any Attack, goal: AttackGoal, on items: [Int], cumulative: Bool = false)
            throws(AdversarialError) -> Double
        {
            progress("\(name) on \(items.count) images")
            let start = clock.now
            var survived = correct.count
            if !items.isEmpty {
                let result = try runInBatches(
                    attack, model: model, images: images.gathering(items), labels: items.map { labels[$0] }, goal: goal,
                    seed: seed)
                // Success counts as misclassification of the returned image.
                let predictions = result.predictions
                for (row, item) in items.enumerated() where predictions[row] != labels[item] {
                    robust[item] = false
                    if correctSet.contains(item) { survived -= 1 }
                }
            }
            let remaining = cumulative ? robust.filter { $0 }.count : survived
            let accuracy = Double(remaining) / Double(max(count, 1))
            members.append(Member(name: name, robustAccuracy: accuracy, attacked: items.count, seconds: (clock.now - start).seconds))
            return accuracy
        }

        let apgdCE = try EnsembleAttacks.make(.apgdCE, epsilon: epsilon, steps: apgdSteps, restarts: 1)
        _ = try member("apgd-ce", apgdCE, goal: .untargeted, on: correct)
        let apgdDLR = try EnsembleAttacks.make(.apgdDLR, epsilon: epsilon, steps: apgdSteps, restarts: 1)
        for rank in 1...targetClasses {
            _ = try member("apgd-dlr-t\(rank)", apgdDLR, goal: try AttackGoal(mode: .ranked(rank)), on: correct)
        }
        let pgd = try EnsembleAttacks.make(.pgd, epsilon: epsilon, steps: pgdSteps, restarts: pgdRestarts, stepSize: epsilon / 40)
        let pgdAccuracy = try member("pgd-\(pgdSteps)x\(pgdRestarts)", pgd, goal: .untargeted, on: correct)
        let whiteBoxSurvivors = labels.indices.filter { robust[$0] }
        let square = try EnsembleAttacks.make(.square, epsilon: epsilon, steps: squareQueries, restarts: nil)
        let beforeSquare = whiteBoxSurvivors.count
        _ = try member("square (on survivors)", square, goal: .untargeted, on: whiteBoxSurvivors, cumulative: true)
        let squareOnly = beforeSquare - labels.indices.filter { robust[$0] }.count

        // Gradient-masking checks (Carlini et al. 2019, section 5).
        var checks: [Check] = []
        let sample = Array(correct.prefix(200))
        if !sample.isEmpty {
            progress("check: PGD at ε = 0.8 on \(sample.count) images")
            let huge = try EnsembleAttacks.make(.pgd, epsilon: 0.8, steps: 100, restarts: 1, stepSize: 0.02)
            let result = try runInBatches(
                huge, model: model, images: images.gathering(sample), labels: sample.map { labels[$0] }, goal: .untargeted,
                seed: seed)
            let predictions = result.predictions
            let left = zip(predictions, sample).filter { $0 == labels[$1] }.count
            let fraction = Double(left) / Double(sample.count)
            checks.append(
                Check(
                    name: "accuracy reaches ~0 at large ε", passed: fraction < 0.02,
                    detail: "PGD-100 at ε = 0.8 leaves \(left)/\(sample.count) images correct"))
        }
        let squareFraction = Double(squareOnly) / Double(max(count, 1))
        checks.append(
            Check(
                name: "black-box does not beat white-box", passed: squareFraction < 0.01,
                detail: "square broke \(squareOnly) images that every gradient attack missed (\(String(format: "%.2f", 100 * squareFraction))% of all)"))
        let apgdBest = members.filter { $0.name.hasPrefix("apgd") }.map(\.robustAccuracy).min() ?? 1
        let single = members.first { $0.name == "apgd-ce" }?.robustAccuracy ?? 1
        let ensembleGradient = Double(whiteBoxSurvivors.count) / Double(max(count, 1))
        checks.append(
            Check(
                name: "more attacks and restarts do not help much", passed: single - ensembleGradient < 0.03,
                detail: String(
                    format: "APGD-CE alone %.2f%%, best APGD %.2f%%, PGD with restarts %.2f%%, all gradient attacks %.2f%%",
                    100 * single, 100 * apgdBest, 100 * pgdAccuracy, 100 * ensembleGradient)))
        return Report(
            epsilon: epsilon, images: count, cleanAccuracy: Double(correct.count) / Double(max(count, 1)),
            robustAccuracy: Double(robust.filter { $0 }.count) / Double(max(count, 1)), members: members, checks: checks,
            seconds: (clock.now - began).seconds, robust: robust)
    }
}

/// Builds the ensemble's attacks through the same registry the command line uses.
enum EnsembleAttacks {
    static func make(_ method: AttackMethod, epsilon: Float, steps: Int, restarts: Int?, stepSize: Float? = nil)
        throws(AdversarialError) -> any Attack
    {
        try method.make(AttackParameters(epsilon: epsilon, steps: steps, stepSize: stepSize, restarts: restarts))
    }
}
