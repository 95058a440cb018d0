import Foundation
import NeuralNet

/// An option or input an adversarial routine cannot accept.
public struct AdversarialError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line saying which option or input is wrong and why.
    public let description: String
    /// Creates an error with its message.
    public init(_ description: String) { self.description = description }
}

/// Where a fooling image starts.
public enum FoolingStart: Sendable, Equatable {
    /// Uniform noise: every pixel an independent random 8-bit level. Gibberish to a person.
    case noise
    /// An all-black image.
    case zeros
    /// Grey noise: 0.5 + 0.25·N(0,1) per pixel, clipped to [0,1] and rounded to 8 bits.
    case gaussian
    /// A given image [1, C, H, W] (for example a PNG the user supplied).
    case image(Tensor)

    /// Start images for `targets`, [N] + `shape`, rounded to 8-bit levels so that the start
    /// PNG holds exactly the start. Random starts depend on the seed and the target only,
    /// so `--target 5` and `--all` start digit 5 from the same noise.
    public func images(for targets: [Int], shape: [Int], seed: UInt64) -> Tensor {
        let size = Tensor.elementCount(shape)
        var scalars: [Float] = []
        scalars.reserveCapacity(targets.count * size)
        for target in targets {
            var generator = SplitMix64(seed: seed, stream: 0xF001, UInt64(target))
            switch self {
            case .noise:
                for _ in 0..<size { scalars.append(Float(generator.next() % 256) / 255) }
            case .zeros:
                scalars += [Float](repeating: 0, count: size)
            case .gaussian:
                for _ in 0..<size { scalars.append(((0.5 + 0.25 * generator.nextGaussian()).clamped01 * 255).rounded() / 255) }
            case .image(let image):
                scalars += image.scalars.map { ($0.clamped01 * 255).rounded() / 255 }
            }
        }
        return Tensor(shape: [targets.count] + shape, scalars: scalars)
    }
}

extension Float {
    var clamped01: Float { Swift.min(Swift.max(self, 0), 1) }
}

/// Fooling images (Szegedy et al. 2014; Nguyen, Yosinski & Clune 2015): with the model's
/// weights frozen, optimise an input that starts as gibberish until the model gives the
/// target class at least `confidence`.
///
/// - Gradient methods: `adam` (Adam on the pixels) and `sign` (signed-gradient steps
///   with a cosine-decayed step size, as in PGD). Pixels stay in [0,1] and, with
///   `epsilon`, within ε of the start in L∞ ("it still looks like the noise it started as").
/// - `evolve`: a black-box evolution strategy (NES with antithetic Gaussian samples,
///   Wierstra et al. 2014, as used by Ilyas et al. 2018) that reads only output
///   probabilities and counts its queries.
/// - With `regularization`, a class visualisation (Simonyan et al. 2014): L2 and total
///   variation penalties draw what the network takes for a prototypical digit; it runs
///   all `maxSteps` steps instead of stopping at the confidence.
///
/// Success is judged on the image as it will be saved: rounded to 8-bit levels (and kept
/// inside the ε-box while rounding), so the confidence survives the PNG round trip.
public struct Fooling: Sendable {
    /// How the image is optimised.
    public enum Method: String, Sendable, CaseIterable {
        case adam, sign, evolve
    }

    /// Penalties for class visualisation: `l2`·½‖x‖² (ink costs, as on MNIST's black background)
    /// + `totalVariation`·Σ(neighbour differences)² (strokes stay smooth).
    public struct Regularization: Sendable, Equatable {
        public var l2: Float
        public var totalVariation: Float
        /// Creates penalties; both weights must be ≥ 0.
        public init(l2: Float, totalVariation: Float) {
            self.l2 = l2
            self.totalVariation = totalVariation
        }
    }

    public let method: Method
    public let objective: Objective
    /// The target probability to reach, in (0, 1).
    public let confidence: Float
    /// The L∞ radius around the start, or nil for anywhere in [0,1].
    public let epsilon: Float?
    public let maxSteps: Int
    /// Attempts per target; a failed attempt restarts from a random point of the ε-box.
    public let restarts: Int
    /// Adam's learning rate, the initial sign step, or the evolution strategy's step.
    public let stepSize: Float
    public let regularization: Regularization?
    /// Evolution strategy: antithetic sample pairs per step, and their standard deviation.
    public let population: Int
    public let samplingScale: Float
    public let seed: UInt64

    /// Checks and stores the options; `stepSize` defaults by method and ε.
    public init(
        method: Method = .adam, objective: Objective = .crossEntropy, confidence: Float = 0.99, epsilon: Float? = nil,
        maxSteps: Int = 1000, restarts: Int = 1, stepSize: Float? = nil, regularization: Regularization? = nil,
        population: Int = 50, samplingScale: Float = 0.05, seed: UInt64 = 1
    ) throws(AdversarialError) {
        guard confidence.isFinite, confidence > 0, confidence < 1 else {
            throw AdversarialError("confidence must be between 0 and 1 (exclusive), got \(confidence)")
        }
        if let epsilon {
            guard epsilon.isFinite, epsilon >= 0, epsilon <= 1 else {
                throw AdversarialError("epsilon must be between 0 and 1, got \(epsilon)")
            }
        }
        guard maxSteps >= 1 else { throw AdversarialError("max steps must be at least 1, got \(maxSteps)") }
        guard restarts >= 1 else { throw AdversarialError("restarts must be at least 1, got \(restarts)") }
        if let stepSize {
            guard stepSize.isFinite, stepSize > 0 else {
                throw AdversarialError("step size must be a positive number, got \(stepSize)")
            }
        }
        if let regularization {
            guard regularization.l2.isFinite, regularization.l2 >= 0, regularization.totalVariation.isFinite,
                regularization.totalVariation >= 0
            else { throw AdversarialError("regularization weights must be ≥ 0") }
            guard method != .evolve else { throw AdversarialError("regularization needs a gradient method (adam or sign)") }
        }
        guard population >= 1 else { throw AdversarialError("population must be at least 1, got \(population)") }
        guard samplingScale.isFinite, samplingScale > 0 else { throw AdversarialError("sampling scale must be positive") }
        self.method = method
        self.objective = objective
        self.confidence = confidence
        self.epsilon = epsilon
        self.maxSteps = maxSteps
        self.restarts = restarts
        self.regularization = regularization
        self.population = population
        self.samplingScale = samplingScale
        self.seed = seed
        switch method {
        case .adam: self.stepSize = stepSize ?? (epsilon.map { max($0 / 10, 1e-3) } ?? 0.1)
        case .sign: self.stepSize = stepSize ?? (epsilon.map { max($0 / 4, 1 / 255) } ?? 0.05)
        case .evolve: self.stepSize = stepSize ?? 0.05
        }
    }

    /// Crafts one image per target, starting from `starts` [N, C, H, W]. `starts` is not modified.
    ///
    /// `observer` sees every step (the targets still being optimised, their images and
    /// target probabilities) and may stop the run; a cancelled task stops it too. A stopped
    /// run returns, for each unfinished target, its best 8-bit image so far.
    public func run(model: Model, starts: Tensor, targets: [Int], observer: StepObserver? = nil)
        throws(AdversarialError) -> FoolingResult
    {
        guard starts.shape.count == 4, Array(starts.shape.dropFirst()) == model.architecture.inputShape else {
            throw AdversarialError("start images must be [N] + \(model.architecture.inputShape), got \(starts.shape)")
        }
        guard starts.batchSize == targets.count, !targets.isEmpty else {
            throw AdversarialError("need one target per start image (\(starts.batchSize) images, \(targets.count) targets)")
        }
        for target in targets where !(0..<model.classCount).contains(target) {
            throw AdversarialError("target \(target) is not a class of this model (0–\(model.classCount - 1))")
        }
        guard starts.isFinite else { throw AdversarialError("start images contain NaN or infinite pixels") }
        var state = FoolingState(starts: starts, targets: targets, box: PixelBox(around: starts, epsilon: epsilon))
        var control = StepControl(observer)
        for restart in 0..<restarts {
            let active = state.unfinished
            if active.isEmpty || control.stopped { break }
            switch method {
            case .adam, .sign:
                gradientSearch(
                    model: model, state: &state, items: active, restart: restart, control: &control)
            case .evolve:
                evolve(model: model, state: &state, items: active, restart: restart, control: &control)
            }
        }
        return state.result(model: model, stopped: control.stopped)
    }

    /// The first point of an attempt: the start itself, later a random point of the box.
    private func initialPoint(_ state: FoolingState, items: [Int], restart: Int) -> Tensor {
        var x = state.starts.gathering(items)
        guard restart > 0 else { return x }
        let radius = epsilon ?? 0.1
        x.addUniformNoise(radius: radius) { SplitMix64(seed: seed, stream: 0xAE57, UInt64(restart), UInt64(items[$0])) }
        state.box.gathering(items).project(&x)
        return x
    }

    private func gradientSearch(
        model: Model, state: inout FoolingState, items: [Int], restart: Int, control: inout StepControl
    ) {
        var items = items
        var x = initialPoint(state, items: items, restart: restart)
        var box = state.box.gathering(items)
        let adam = Adam()
        var moments = adam.makeState(for: x)
        for step in 1...maxSteps {
            let targets = items.map { state.targets[$0] }
            var (gradient, logits, _) = model.inputGradient(x, targets: targets, objective: objective)
            state.queries(items, add: 1)
            let probabilities = softmax(logits)
            let current = targets.enumerated().map { probabilities.scalars[$0.offset * model.classCount + $0.element] }
            for (row, item) in items.enumerated() { state.trajectories[item].append(current[row]) }
            let stop = control.shouldStop(
                after: OptimizationStep(
                    step: step, steps: maxSteps, attempt: restart, items: items, images: x,
                    probabilities: current))
            if let regularization {
                addPenaltyGradient(&gradient, x, regularization)
            } else {
                // Items whose float image is confident enough: confirm on the 8-bit image.
                let candidates = current.indices.filter { current[$0] >= confidence }
                if !candidates.isEmpty {
                    let finished = state.confirm(candidates.map { items[$0] }, images: x.gathering(candidates), model: model, confidence: confidence, step: step)
                    if !finished.isEmpty {
                        let keep = items.indices.filter { !finished.contains(items[$0]) }
                        if keep.isEmpty { return }
                        items = keep.map { items[$0] }
                        x = x.gathering(keep)
                        gradient = gradient.gathering(keep)
                        moments = moments.map { $0.gathering(keep) }
                        box = box.gathering(keep)
                    }
                }
            }
            if stop {
                state.keepBest(items, images: x, model: model, step: step)
                return
            }
            switch method {
            case .adam:
                adam.update(&x, gradient: gradient, state: &moments, step: step, learningRate: stepSize)
                box.project(&x)
            case .sign, .evolve:
                box.step(&x, signOf: gradient, size: -signStep(step))
            }
        }
        state.keepBest(items, images: x, model: model, step: maxSteps)
    }

    /// The signed step at `step` (from 1) of the sign and evolve methods: cosine decay from
    /// the step size to a tenth of it over the run.
    private func signStep(_ step: Int) -> Float {
        let fraction = Float(step - 1) / Float(max(maxSteps - 1, 1))
        return LearningRateSchedule.cosineDecay(stepSize, stepSize / 10, fraction)
    }

    /// Adds the gradient of the class-visualisation penalties at `x`.
    private func addPenaltyGradient(_ gradient: inout Tensor, _ x: Tensor, _ weights: Regularization) {
        let height = x.shape[2], width = x.shape[3]
        let planes = x.count / (height * width)
        for plane in 0..<planes {
            let base = plane * height * width
            for row in 0..<height {
                for column in 0..<width {
                    let index = base + row * width + column
                    var g = weights.l2 * x.scalars[index]
                    // d/dx of Σ (x[i+1] − x[i])² over vertical and horizontal neighbours.
                    if row + 1 < height { g -= 2 * weights.totalVariation * (x.scalars[index + width] - x.scalars[index]) }
                    if row > 0 { g += 2 * weights.totalVariation * (x.scalars[index] - x.scalars[index - width]) }
                    if column + 1 < width { g -= 2 * weights.totalVariation * (x.scalars[index + 1] - x.scalars[index]) }
                    if column > 0 { g += 2 * weights.totalVariation * (x.scalars[index] - x.scalars[index - 1]) }
                    gradient.scalars[index] += g
                }
            }
        }
    }

    /// Black-box search: each step estimates the gradient of log p(target) from
    /// `population` antithetic pairs x ± σu (u ~ N(0, I)) and takes a signed step.
    /// Every image the model scores counts as one query.
    private func evolve(
        model: Model, state: inout FoolingState, items: [Int], restart: Int, control: inout StepControl
    ) {
        var items = items
        var x = initialPoint(state, items: items, restart: restart)
        var box = state.box.gathering(items)
        let size = x.itemCount
        let pairs = population
        for step in 1...maxSteps {
            // The current images, rounded as they would be saved, then the samples.
            let current = box.quantize(x)
            var samples: [Tensor] = [current]
            var directions: [[Float]] = []
            for (row, item) in items.enumerated() {
                var generator = SplitMix64(seed: seed, stream: 0xE5, UInt64(restart), UInt64(step), UInt64(item))
                var plus = [Float](), minus = [Float]()
                plus.reserveCapacity(pairs * size)
                minus.reserveCapacity(pairs * size)
                var direction = [Float](repeating: 0, count: pairs * size)
                for pair in 0..<pairs {
                    for index in 0..<size {
                        let u = generator.nextGaussian()
                        direction[pair * size + index] = u
                        let value = x.scalars[row * size + index]
                        plus.append((value + samplingScale * u).clamped01)
                        minus.append((value - samplingScale * u).clamped01)
                    }
                }
                directions.append(direction)
                samples.append(Tensor(shape: [pairs] + Array(x.shape.dropFirst()), scalars: plus))
                samples.append(Tensor(shape: [pairs] + Array(x.shape.dropFirst()), scalars: minus))
            }
            let probabilities = model.probabilities(Tensor.concatenate(samples))
            let classes = model.classCount
            state.queries(items, add: 1 + 2 * pairs)
            let targets = items.map { state.targets[$0] }
            let currentProbabilities = targets.enumerated().map { probabilities.scalars[$0.offset * classes + $0.element] }
            for (row, item) in items.enumerated() { state.trajectories[item].append(currentProbabilities[row]) }
            let stop = control.shouldStop(
                after: OptimizationStep(
                    step: step, steps: maxSteps, attempt: restart, items: items, images: current,
                    probabilities: currentProbabilities))
            let confident = currentProbabilities.indices.filter { currentProbabilities[$0] >= confidence }
            for row in confident {
                state.finish(items[row], image: current.batch(row..<row + 1), probabilities: probabilities.batch(row..<row + 1), step: step)
            }
            let keep = items.indices.filter { !confident.contains($0) }
            if keep.isEmpty { return }
            if stop {
                state.keepBest(keep.map { items[$0] }, images: x.gathering(keep), model: model, step: step)
                return
            }
            // Signed step along the estimated gradient of log p(target).
            let sampleBase = items.count
            for row in keep {
                let target = targets[row]
                var estimate = [Float](repeating: 0, count: size)
                for pair in 0..<pairs {
                    let plusRow = sampleBase + row * 2 * pairs + pair
                    let minusRow = plusRow + pairs
                    let difference = logf(max(probabilities.scalars[plusRow * classes + target], 1e-30))
                        - logf(max(probabilities.scalars[minusRow * classes + target], 1e-30))
                    for index in 0..<size { estimate[index] += difference * directions[row][pair * size + index] }
                }
                let alpha = signStep(step)
                for index in 0..<size {
                    let g = estimate[index]
                    x.scalars[row * size + index] += g > 0 ? alpha : (g < 0 ? -alpha : 0)
                }
            }
            if keep.count < items.count {
                items = keep.map { items[$0] }
                x = x.gathering(keep)
                box = box.gathering(keep)
            }
            box.project(&x)
        }
        state.keepBest(items, images: x, model: model, step: maxSteps)
    }
}

/// What fooling produced, one row per target.
public struct FoolingResult: Sendable {
    /// The start images [N, C, H, W] (8-bit levels).
    public var starts: Tensor
    /// The fooling images [N, C, H, W], rounded to 8-bit levels as a PNG holds them.
    public var images: Tensor
    /// The target class of each image.
    public var targets: [Int]
    /// The model's class probabilities for each (8-bit) image, [N, classes].
    public var probabilities: Tensor
    /// Whether each image reached the requested confidence.
    public var succeeded: [Bool]
    /// Optimisation steps taken per target (over all restarts).
    public var steps: [Int]
    /// Images the model scored per target (forward passes; for gradient methods each
    /// also had a backward pass).
    public var queries: [Int]
    /// The target probability after every step, per target.
    public var trajectories: [[Float]]
    /// Whether a ``StepObserver`` (or the cancellation of the task) stopped the run; the
    /// images are then the best each target had at that step (see ``StepDecision/stop``).
    public var stopped: Bool

    /// The probability of each image's target.
    public var targetProbabilities: [Float] {
        targets.enumerated().map { probabilities.scalars[$0.offset * probabilities.shape[1] + $0.element] }
    }
}

/// Book-keeping shared by the search methods.
struct FoolingState {
    let starts: Tensor
    let targets: [Int]
    let box: PixelBox
    var images: Tensor
    var probabilities: [Tensor?]
    var done: [Bool]
    var steps: [Int]
    var queryCounts: [Int]
    var trajectories: [[Float]]

    init(starts: Tensor, targets: [Int], box: PixelBox) {
        self.starts = starts
        self.targets = targets
        self.box = box
        images = box.quantize(starts)
        probabilities = Array(repeating: nil, count: targets.count)
        done = Array(repeating: false, count: targets.count)
        steps = Array(repeating: 0, count: targets.count)
        queryCounts = Array(repeating: 0, count: targets.count)
        trajectories = Array(repeating: [], count: targets.count)
    }

    var unfinished: [Int] { done.indices.filter { !done[$0] } }

    mutating func queries(_ items: [Int], add count: Int) {
        for item in items { queryCounts[item] += count }
    }

    mutating func setImage(_ item: Int, _ image: Tensor) {
        let size = images.itemCount
        images.scalars.replaceSubrange(item * size..<(item + 1) * size, with: image.scalars)
    }

    mutating func finish(_ item: Int, image: Tensor, probabilities: Tensor, step: Int) {
        setImage(item, image)
        self.probabilities[item] = probabilities
        done[item] = true
        steps[item] += step
    }

    /// Rounds candidates to 8 bits and finishes those still confident; returns them.
    mutating func confirm(_ items: [Int], images: Tensor, model: Model, confidence: Float, step: Int) -> Set<Int> {
        let rounded = box.gathering(items).quantize(images)
        let probabilities = model.probabilities(rounded)
        var finished: Set<Int> = []
        for (row, item) in items.enumerated() {
            queryCounts[item] += 1
            let p = probabilities.scalars[row * model.classCount + targets[item]]
            if p >= confidence {
                finish(item, image: rounded.batch(row..<row + 1), probabilities: probabilities.batch(row..<row + 1), step: step)
                finished.insert(item)
            }
        }
        return finished
    }

    /// At the end of an unsuccessful attempt: keep each item's image if it beats the best so far.
    mutating func keepBest(_ items: [Int], images: Tensor, model: Model, step: Int) {
        let rounded = box.gathering(items).quantize(images)
        let probabilities = model.probabilities(rounded)
        for (row, item) in items.enumerated() {
            queryCounts[item] += 1
            steps[item] += step
            let p = probabilities.scalars[row * model.classCount + targets[item]]
            let best = self.probabilities[item].map { $0.scalars[targets[item]] } ?? -1
            if p > best {
                setImage(item, rounded.batch(row..<row + 1))
                self.probabilities[item] = probabilities.batch(row..<row + 1)
            }
        }
    }

    func result(model: Model, stopped: Bool) -> FoolingResult {
        var rows: [Tensor] = []
        for item in targets.indices {
            rows.append(probabilities[item] ?? model.probabilities(images.batch(item..<item + 1)))
        }
        return FoolingResult(
            starts: starts, images: images, targets: targets, probabilities: Tensor.concatenate(rows), succeeded: done,
            steps: steps, queries: queryCounts, trajectories: trajectories, stopped: stopped)
    }
}
