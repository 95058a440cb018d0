import NeuralNet

/// The attacks offered by name (the command line's `--method`).
public enum AttackMethod: String, CaseIterable, Sendable {
    case fgsm, bim, pgd
    case pgdL2 = "pgd-l2"
    case mifgsm
    case apgdCE = "apgd-ce"
    case apgdDLR = "apgd-dlr"
    case cw, deepfool, jsma, square
    case hopskipjump
    case hopskipjumpLinf = "hopskipjump-linf"
    case boundary
}

/// The hyperparameters a user can set from the command line; nil means the attack's
/// default. What each means per attack is listed on ``AttackMethod/make(_:)``.
public struct AttackParameters: Sendable, Equatable {
    /// The budget of a fixed-budget attack.
    public var epsilon: Float?
    /// Iterations (for square: the query budget).
    public var steps: Int?
    /// Queries per image, everything included (the decision-based attacks).
    public var maxQueries: Int?
    /// The step length (for cw: Adam's learning rate).
    public var stepSize: Float?
    /// Attempts from new random starts.
    public var restarts: Int?

    /// Creates parameters; leave any nil for the attack's default.
    public init(
        epsilon: Float? = nil, steps: Int? = nil, stepSize: Float? = nil, restarts: Int? = nil,
        maxQueries: Int? = nil
    ) {
        self.epsilon = epsilon
        self.steps = steps
        self.maxQueries = maxQueries
        self.stepSize = stepSize
        self.restarts = restarts
    }
}

extension AttackMethod {
    /// Builds the attack with these parameters, defaults where nil.
    ///
    /// | method | epsilon | steps | step size | restarts |
    /// |---|---|---|---|---|
    /// | fgsm | 0.3 | — | — | — |
    /// | bim | 0.3 | 10 | 1.25·ε/steps | — |
    /// | pgd | 0.3 | 40 | max(ε/30, 1.25·ε/steps): 0.01 | 1 |
    /// | pgd-l2 | 2.0 | 40 | 2.5·ε/steps: 0.125 | 1 |
    /// | mifgsm | 0.3 | 10 | ε/steps | — |
    /// | apgd-ce, apgd-dlr | 0.3 | 100 | — (starts at 2ε, adapts) | 1 |
    /// | cw | — | 100 Adam iterations per binary-search step | Adam learning rate 0.1 | — |
    /// | deepfool | — | at most 50 | — | — |
    /// | jsma | — | — | — | — |
    /// | square | 0.3 | the query budget, 5000 | — | — |
    /// | hopskipjump, hopskipjump-linf | — | at most, default: while the budget lasts | — (geometric search) | — |
    /// | boundary | — | at most, default: while the budget lasts | first spherical and source step, 0.01 | — |
    ///
    /// The query budget (`maxQueries`, default 10,000 per image, everything included)
    /// applies to the decision-based attacks only.
    ///
    /// A parameter marked "—" does not apply and is an error when given rather than
    /// silently ignored: in particular the minimisation attacks (cw, deepfool, jsma,
    /// hopskipjump, boundary) search for the smallest perturbation themselves and take no
    /// epsilon.
    public func make(_ parameters: AttackParameters) throws(AdversarialError) -> any Attack {
        let p = parameters
        if p.maxQueries != nil && !isDecisionBased {
            throw AdversarialError(
                "\(rawValue) takes no query budget: only hopskipjump and boundary count queries against one"
                    + (self == .square ? " (square's budget is its steps)" : ""))
        }
        switch self {
        case .fgsm:
            try reject(
                p, steps: "FGSM takes exactly one step of size ε; use bim for several",
                stepSize: "FGSM's step is ε",
                restarts: "FGSM is deterministic")
            return try FGSM(epsilon: p.epsilon ?? 0.3)
        case .bim:
            try reject(p, restarts: "BIM starts from the clean image, so a restart would repeat it; use pgd")
            return try BasicIterativeMethod(
                epsilon: p.epsilon ?? 0.3, steps: p.steps ?? 10, stepSize: p.stepSize)
        case .pgd, .pgdL2:
            return try ProjectedGradientDescent(
                norm: norm, epsilon: p.epsilon ?? defaultEpsilon!, steps: p.steps ?? 40, stepSize: p.stepSize,
                restarts: p.restarts ?? 1)
        case .mifgsm:
            try reject(p, restarts: "MI-FGSM starts from the clean image, so a restart would repeat it")
            return try MomentumIterativeFGSM(
                epsilon: p.epsilon ?? 0.3, steps: p.steps ?? 10, stepSize: p.stepSize)
        case .apgdCE, .apgdDLR:
            try reject(p, stepSize: "APGD chooses its own step size (2ε, halved when progress stalls)")
            return try AutoPGD(
                loss: self == .apgdCE ? .crossEntropy : .dlr, epsilon: p.epsilon ?? 0.3,
                steps: p.steps ?? 100,
                restarts: p.restarts ?? 1)
        case .cw:
            try reject(
                p, epsilon: minimisation, restarts: "cw searches over its constant c instead of restarting")
            return try CarliniWagnerL2(steps: p.steps ?? 100, learningRate: p.stepSize ?? 0.1)
        case .deepfool:
            try reject(
                p, epsilon: minimisation, stepSize: "DeepFool computes each step from the linearised model",
                restarts: "DeepFool is deterministic")
            return try DeepFool(steps: p.steps ?? 50)
        case .jsma:
            try reject(
                p, epsilon: minimisation,
                steps: "JSMA's length is set by the fraction of pixels it may change",
                stepSize: "JSMA sets each chosen pixel to 1", restarts: "JSMA is deterministic")
            return try SaliencyMapAttack()
        case .square:
            try reject(
                p, stepSize: "Square draws ±ε windows and has no step size",
                restarts: "Square spends its query budget (steps) in one run")
            return try SquareAttack(epsilon: p.epsilon ?? 0.3, queries: p.steps ?? 5000)
        case .hopskipjump, .hopskipjumpLinf:
            try reject(
                p, epsilon: minimisation, stepSize: "HopSkipJump finds each step by a geometric search",
                restarts: "HopSkipJump spends its query budget in one run")
            return try HopSkipJump(norm: norm, maxQueries: p.maxQueries ?? 10_000, maxIterations: p.steps)
        case .boundary:
            try reject(p, epsilon: minimisation, restarts: "the Boundary attack spends its query budget in one run")
            return try BoundaryAttack(
                maxQueries: p.maxQueries ?? 10_000, maxSteps: p.steps, sphericalStep: p.stepSize ?? 0.01,
                sourceStep: p.stepSize ?? 0.01)
        }
    }

    /// Whether the attack reads only the predicted label (a ``DecisionBasedAttack``).
    public var isDecisionBased: Bool {
        switch self {
        case .hopskipjump, .hopskipjumpLinf, .boundary: return true
        default: return false
        }
    }

    /// Whether the attack works within a fixed budget ε (otherwise it minimises the perturbation).
    public var isFixedBudget: Bool {
        switch self {
        case .cw, .deepfool, .jsma, .hopskipjump, .hopskipjumpLinf, .boundary: return false
        default: return true
        }
    }

    /// The norm of the budget, or the norm a minimisation attack minimises.
    public var norm: Norm {
        switch self {
        case .pgdL2, .cw, .deepfool, .hopskipjump, .boundary: return .l2
        case .jsma: return .l0
        default: return .linf
        }
    }

    /// ε when none is given: 0.3 in L∞ (the MNIST convention since Madry et al.), 2.0 for
    /// pgd-l2; nil for minimisation attacks.
    public var defaultEpsilon: Float? {
        switch self {
        case .cw, .deepfool, .jsma, .hopskipjump, .hopskipjumpLinf, .boundary: return nil
        case .pgdL2: return 2.0
        default: return 0.3
        }
    }

    private var minimisation: String {
        "it is a minimisation attack that finds the smallest perturbation itself"
    }

    /// Throws for a parameter that was given but does not apply, with the reason.
    private func reject(
        _ parameters: AttackParameters, epsilon: String? = nil, steps: String? = nil, stepSize: String? = nil,
        restarts: String? = nil
    ) throws(AdversarialError) {
        let given: [(String, Bool, String?)] = [
            ("epsilon", parameters.epsilon != nil, epsilon), ("steps", parameters.steps != nil, steps),
            ("step size", parameters.stepSize != nil, stepSize),
            ("restarts", parameters.restarts != nil, restarts),
        ]
        for (name, isGiven, reason) in given where isGiven {
            if let reason { throw AdversarialError("\(rawValue) takes no \(name): \(reason)") }
        }
    }
}
