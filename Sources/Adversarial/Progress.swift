import NeuralNet

/// One step of an optimisation over a batch (fooling, an attack), as a ``StepObserver``
/// sees it: what the step evaluated, and how the model scored it.
///
/// Building one costs nothing beyond what the step computed anyway: `images` shares the
/// engine's buffer (copy-on-write), and the probabilities come from the softmax the step
/// needs for its own success check.
public struct OptimizationStep: Sendable {
    /// The step's number in the current attempt, from 1, counted as the result counts
    /// steps (``FoolingResult/steps``, ``AttackResult/iterations``): a run stopped at the
    /// report of step k has spent k steps of this attempt on every image still running.
    public var step: Int
    /// The attempt's step budget (fooling's `maxSteps`, an attack's iterations or queries).
    public var steps: Int
    /// The attempt, from 0: a restart (fooling, PGD, APGD) or CW's binary-search step.
    public var attempt: Int
    /// The rows of the batch this step evaluated, the ones still being optimised (for
    /// ``runInBatches(_:model:images:labels:goal:seed:batchSize:progress:observer:)``: rows
    /// of the whole set).
    public var items: [Int]
    /// Their images as evaluated at this step, [items.count, C, H, W] (not rounded to
    /// 8 bits).
    public var images: Tensor
    /// Per item, the model's probability of the class the run is about: the target's
    /// (fooling and targeted attacks, rising) or the label's (untargeted attacks, falling).
    /// Empty when a decision-based attack runs on a ``LabelOracle`` alone: it has none (run
    /// on a model, the caller's side fills them in for the observer).
    public var probabilities: [Float]

    /// Creates a step report.
    public init(step: Int, steps: Int, attempt: Int, items: [Int], images: Tensor, probabilities: [Float]) {
        self.step = step
        self.steps = steps
        self.attempt = attempt
        self.items = items
        self.images = images
        self.probabilities = probabilities
    }
}

/// What a ``StepObserver`` asks for after a step.
public enum StepDecision: Sendable, Equatable {
    /// Go on.
    case proceed
    /// End the run after this step. The run returns a consistent partial result, marked
    /// `stopped`: every image keeps what the run had when it stopped, as if its budget had
    /// run out there (iterations and queries count the steps taken), and success flags and
    /// probabilities come from the final check of the returned images.
    case stop
}

/// Called on the calling thread once per optimisation step of fooling or an attack, with
/// what the step evaluated; its answer can stop the run.
///
/// The runs also stop, the same way, when the Swift task they run in is cancelled
/// (`Task.isCancelled`), so a server handler that cancels its task when the client goes
/// away needs no observer for that.
public typealias StepObserver = (OptimizationStep) -> StepDecision

/// The per-run side of ``StepObserver``: asks the observer and the current task whether
/// to go on, and remembers a stop.
struct StepControl {
    let observer: StepObserver?
    /// Whether the run was told to stop.
    private(set) var stopped = false

    init(_ observer: StepObserver?) { self.observer = observer }

    /// Reports a step; true when the run must stop after it. The report is only built
    /// when there is an observer to read it.
    mutating func shouldStop(after step: @autoclosure () -> OptimizationStep) -> Bool {
        if stopped || Task.isCancelled {
            stopped = true
        } else if let observer, observer(step()) == .stop {
            stopped = true
        }
        return stopped
    }
}
