/// A loss on a shard of logits: given the logits of batch rows `rows` (a [n, classes]
/// tensor), returns each row's loss and the gradient to backpropagate, d(loss)/d(logits),
/// already scaled as the caller wants (for example 1/N for a batch mean).
public typealias LogitLoss = @Sendable (_ logits: Tensor, _ rows: Range<Int>) -> (losses: [Float], logitGradient: Tensor)

/// What a forward and backward pass over a batch returns.
public struct ModelGradients: Sendable {
    /// Each example's loss.
    public var losses: [Float]
    /// The logits, [N, classes].
    public var logits: Tensor
    /// d(loss)/d(input), the input's shape; nil unless asked for.
    public var inputGradient: Tensor?
    /// d(loss)/d(parameter) for every parameter in ``Model/parameters`` order, summed over
    /// the batch; empty unless asked for.
    public var parameterGradients: [Tensor]
    /// In training mode, for a model with buffers (``Model/buffers`` order): the buffers
    /// holding this batch's own statistics, with which an inference-mode pass normalises as
    /// this one did. Empty otherwise.
    public var batchBuffers: [Tensor] = []
    /// The buffers updated by this batch (running statistics), for the trainer to keep;
    /// empty when ``batchBuffers`` is.
    public var runningBuffers: [Tensor] = []
}

/// A sequential network built from an ``Architecture``: a value holding layers (that is,
/// parameters), safe to share between threads and concurrent attacks.
///
/// Every method takes a whole batch, cuts it into shards (see ``Compute``) and runs the
/// shards in parallel, so callers never loop over images.
public struct Model: Sendable {
    /// The layout this model was built from.
    public let architecture: Architecture
    /// The layers, input to output.
    public private(set) var layers: [any Layer]

    /// A freshly initialised model (PyTorch's default initialisation).
    public init<G: RandomNumberGenerator>(architecture: Architecture, generator: inout G) throws(ArchitectureError) {
        try architecture.validate()
        self.architecture = architecture
        self.layers = architecture.makeLayers(generator: &generator)
    }

    /// A model whose parameters and buffers come from `parameters`, keyed by PyTorch name
    /// (`conv1.weight`, …, `bn1.running_mean`). Every name must be present with the right
    /// shape, and no other name may be.
    public init(architecture: Architecture, parameters: [String: Tensor]) throws(ArchitectureError) {
        var generator = SplitMix64(seed: 0)
        try self.init(architecture: architecture, generator: &generator)
        let expected = Set(parameterNames + bufferNames)
        let unexpected = parameters.keys.filter { !expected.contains($0) }.sorted()
        guard unexpected.isEmpty else {
            throw ArchitectureError(
                "tensors \(unexpected.prefix(4).joined(separator: ", ")) are not parameters of architecture '\(architecture)'")
        }
        for kind in [TensorKind.parameter, .buffer] {
            var values: [Tensor] = []
            for (name, current) in zip(names(kind), tensors(kind)) {
                guard let value = parameters[name] else {
                    throw ArchitectureError("\(kind.rawValue) '\(name)' is missing for architecture '\(architecture)'")
                }
                // A scalar buffer (PyTorch's counter) may come as [1].
                guard value.shape == current.shape || (current.shape.isEmpty && value.count == 1) else {
                    throw ArchitectureError(
                        "\(kind.rawValue) '\(name)' has shape \(value.shape) but architecture '\(architecture)' needs \(current.shape)")
                }
                guard value.isFinite else { throw ArchitectureError("\(kind.rawValue) '\(name)' contains NaN or infinity") }
                guard !name.hasSuffix(".running_var") || value.scalars.allSatisfy({ $0 >= 0 }) else {
                    throw ArchitectureError("buffer '\(name)' holds a negative variance")
                }
                values.append(value.reshaped(current.shape))
            }
            setTensors(kind, values)
        }
    }

    /// The PyTorch names of all parameters, in order: `conv1.weight`, `conv1.bias`, ….
    public var parameterNames: [String] { names(.parameter) }

    /// All parameters, in ``parameterNames`` order.
    public var parameters: [Tensor] {
        get { tensors(.parameter) }
        set { setTensors(.parameter, newValue) }
    }

    /// Calls `update` on every parameter tensor, in ``parameters`` order, in place.
    ///
    /// Unlike `parameters[i] = f(parameters[i])`, this does not copy the tensors: the
    /// layer is taken out of the array while its tensors are updated, so they are uniquely
    /// referenced and copy-on-write does not trigger.
    mutating func updateParameters(_ update: (_ index: Int, _ parameter: inout Tensor) -> Void) {
        var first = 0
        for i in layers.indices {
            let count = layers[i].parameterNames.count
            guard count > 0 else { continue }
            var layer = layers[i]
            layers[i] = Flatten()  // the array lets go, so `layer` holds its tensors alone
            layer.updateParameters { index, parameter in update(first + index, &parameter) }
            layers[i] = layer
            first += count
        }
    }

    /// The PyTorch names of all buffers (`bn1.running_mean`, …), in order; empty for a
    /// model without batch normalisation.
    public var bufferNames: [String] { names(.buffer) }

    /// All buffers, in ``bufferNames`` order.
    public var buffers: [Tensor] {
        get { tensors(.buffer) }
        set { setTensors(.buffer, newValue) }
    }

    /// The two kinds of named tensors a layer holds.
    private enum TensorKind: String {
        case parameter, buffer

        func names(_ layer: any Layer) -> [String] { self == .parameter ? layer.parameterNames : layer.bufferNames }
        func tensors(_ layer: any Layer) -> [Tensor] { self == .parameter ? layer.parameters : layer.buffers }
        func set(_ layer: inout any Layer, _ values: [Tensor]) {
            if self == .parameter { layer.parameters = values } else { layer.buffers = values }
        }
    }

    private func names(_ kind: TensorKind) -> [String] {
        zip(architecture.layerNames, layers).flatMap { name, layer in kind.names(layer).map { "\(name ?? "layer").\($0)" } }
    }

    private func tensors(_ kind: TensorKind) -> [Tensor] { layers.flatMap { kind.tensors($0) } }

    private mutating func setTensors(_ kind: TensorKind, _ values: [Tensor]) {
        var offset = 0
        for index in layers.indices {
            let count = kind.names(layers[index]).count
            guard count > 0 else { continue }
            kind.set(&layers[index], Array(values[offset..<(offset + count)]))
            offset += count
        }
        precondition(offset == values.count, "expected \(offset) \(kind.rawValue) tensors, got \(values.count)")
    }

    /// The number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// The number of classes the model scores.
    public var classCount: Int { architecture.classCount }

    /// Logits [N, classes] for a batch [N, C, H, W] (inference mode).
    public func logits(_ input: Tensor) -> Tensor {
        checkInput(input)
        let shards = Compute.shards(count: input.batchSize)
        let steps = self.steps
        let parts = Compute.map(shards.count) { index in
            var x = input.batch(shards[index])
            for step in steps {
                let context = ForwardContext(
                    training: false, firstItem: shards[index].lowerBound, layerIndex: step.first, needsBackward: false)
                x = forward(step, x, context: context).output
            }
            return x
        }
        return parts.isEmpty ? Tensor(shape: [0, classCount]) : Tensor.concatenate(parts)
    }

    /// Class probabilities [N, classes] (softmax of the logits).
    public func probabilities(_ input: Tensor) -> Tensor { softmax(logits(input)) }

    /// The predicted class of each item.
    public func predictions(_ input: Tensor) -> [Int] { argmax(rows: logits(input)) }

    /// The predicted class of each item of a large set, `batchSize` items at a time
    /// (bounded memory).
    public func predictions(_ input: Tensor, batchSize: Int) -> [Int] {
        var predictions: [Int] = []
        predictions.reserveCapacity(input.batchSize)
        for start in stride(from: 0, to: input.batchSize, by: max(batchSize, 1)) {
            predictions += self.predictions(input.batch(start..<min(start + batchSize, input.batchSize)))
        }
        return predictions
    }

    /// The fraction of `images` classified as `labels`, 1,000 images at a time.
    public func accuracy(_ images: Tensor, labels: [Int]) -> Double {
        let predictions = predictions(images, batchSize: 1000)
        return Double(zip(predictions, labels).filter { $0 == $1 }.count) / Double(max(labels.count, 1))
    }

    /// A forward and backward pass of a batch under `loss`.
    ///
    /// - Parameters:
    ///   - training: training mode (dropout active, batch statistics) with this seed for
    ///     its masks, or nil for inference mode.
    ///   - needsInputGradient: compute d(loss)/d(input) (attacks).
    ///   - needsParameterGradients: compute parameter gradients (training); attacks pass
    ///     false and pay nothing for them.
    ///   - statisticsGradients: in training mode, by layer index, gradients of another loss
    ///     with respect to a batch-norm layer's batch statistics (see
    ///     ``ForwardContext/statisticsGradient``), added to this pass's backward.
    public func gradients(
        _ input: Tensor, training seed: UInt64? = nil, needsInputGradient: Bool, needsParameterGradients: Bool,
        statisticsGradients: [Int: [Tensor]] = [:], loss: LogitLoss
    ) -> ModelGradients {
        checkInput(input)
        precondition(input.batchSize > 0, "gradients of an empty batch")
        let shards = Compute.shards(count: input.batchSize)
        let steps = self.steps
        let stages = self.stages(steps, training: seed != nil)
        func context(_ step: Step, firstItem: Int) -> ForwardContext {
            ForwardContext(training: seed != nil, seed: seed ?? 0, firstItem: firstItem, layerIndex: step.first)
        }

        let firstTrainable = layers.firstIndex { !$0.parameterNames.isEmpty } ?? layers.count
        func wants(_ step: Step) -> (input: Bool, parameters: Bool) {
            (
                needsInputGradient || (needsParameterGradients && step.first > firstTrainable),
                needsParameterGradients && step.hasParameters(layers)
            )
        }
        /// One shard forward through a run of steps: its output and each step's cache.
        func forwardRun(_ range: Range<Int>, shard index: Int, _ input: Tensor) -> (Tensor, [Any]) {
            var a = input
            var runCaches: [Any] = []
            for s in range {
                let (output, cache) = forward(steps[s], a, context: context(steps[s], firstItem: shards[index].lowerBound))
                runCaches.append(cache)
                a = output
            }
            return (a, runCaches)
        }
        /// One shard backward through a run of steps: the gradient at the run's input and each
        /// step's parameter gradients (empty where none are wanted), in step order.
        func backwardRun(_ range: Range<Int>, _ outputGradient: Tensor, caches runCaches: [Any]) -> (Tensor, [[Tensor]]) {
            var gradient = outputGradient
            var grads = [[Tensor]](repeating: [], count: range.count)
            for (offset, s) in range.enumerated().reversed() {
                let (wantsInput, wantsParameters) = wants(steps[s])
                guard wantsInput || wantsParameters else { continue }
                let (inputGradient, parameters) = backward(
                    steps[s], gradient, cache: runCaches[offset], needsInputGradient: wantsInput,
                    needsParameterGradients: wantsParameters)
                grads[offset] = wantsParameters ? parameters : []
                if let inputGradient { gradient = inputGradient }
            }
            return (gradient, grads)
        }
        // Parameter gradients are summed in shard order, so the result does not depend on the
        // thread count.
        var parameterGradients = [[Tensor]](repeating: [], count: steps.count)
        func sumShards(_ range: Range<Int>, _ parts: [[[Tensor]]]) {
            for (offset, s) in range.enumerated() {
                var sum = parts[0][offset]
                for part in parts.dropFirst() {
                    for i in sum.indices { sum[i].add(part[offset][i]) }
                }
                parameterGradients[s] = sum
            }
        }

        let logits: [Tensor]
        let lossParts: [(losses: [Float], logitGradient: Tensor)]
        var g: [Tensor]
        var statistics = [(batch: [Tensor], running: [Tensor])?](repeating: nil, count: layers.count)
        if stages.count == 1, case .sharded(let range) = stages[0] {
            // Nothing needs the whole batch: each shard runs forward, loss and backward at once.
            let parts = Compute.map(shards.count) { index in
                let (output, runCaches) = forwardRun(range, shard: index, input.batch(shards[index]))
                let lossPart = loss(output, shards[index])
                let (gradient, grads) = backwardRun(range, lossPart.logitGradient, caches: runCaches)
                return (output, lossPart, gradient, grads)
            }
            logits = parts.map(\.0)
            lossParts = parts.map(\.1)
            g = parts.map(\.2)
            sumShards(range, parts.map(\.3))
        } else {
            // Forward, stage by stage. Per step: each shard's cache, or the one of a whole-batch step.
            var x = shards.map { input.batch($0) }
            var caches = [[Any]](repeating: [], count: steps.count)
            for stage in stages {
                switch stage {
                case .sharded(let range):
                    let parts = Compute.map(shards.count) { index in forwardRun(range, shard: index, x[index]) }
                    x = parts.map(\.0)
                    for (offset, s) in range.enumerated() { caches[s] = parts.map { $0.1[offset] } }
                case .whole(let s):
                    var whole = context(steps[s], firstItem: 0)
                    whole.statisticsGradient = statisticsGradients[steps[s].first]
                    let (output, cache) = forward(steps[s], Tensor.concatenate(x), context: whole)
                    caches[s] = [cache]
                    statistics[steps[s].first] = layers[steps[s].first].erasedStatistics(from: cache)
                    x = shards.map { output.batch($0) }
                }
            }
            logits = x
            lossParts = Compute.map(shards.count) { loss(x[$0], shards[$0]) }

            // Backward, stage by stage.
            g = lossParts.map(\.logitGradient)
            for stage in stages.reversed() {
                switch stage {
                case .sharded(let range):
                    let parts = Compute.map(shards.count) { index in
                        backwardRun(range, g[index], caches: range.map { caches[$0][index] })
                    }
                    g = parts.map(\.0)
                    sumShards(range, parts.map(\.1))
                case .whole(let s):
                    let (wantsInput, wantsParameters) = wants(steps[s])
                    guard wantsInput || wantsParameters else { continue }
                    let (inputGradient, parameters) = backward(
                        steps[s], Tensor.concatenate(g), cache: caches[s][0], needsInputGradient: wantsInput,
                        needsParameterGradients: wantsParameters)
                    parameterGradients[s] = wantsParameters ? parameters : []
                    if let inputGradient { g = shards.map { inputGradient.batch($0) } }
                }
            }
        }
        // In training mode every layer with buffers normalises over the batch, so it measured
        // its statistics; in inference mode none did.
        let measured = statistics.compactMap { $0 }
        return ModelGradients(
            losses: lossParts.flatMap(\.losses), logits: Tensor.concatenate(logits),
            inputGradient: needsInputGradient ? Tensor.concatenate(g) : nil,
            parameterGradients: parameterGradients.flatMap { $0 },
            batchBuffers: measured.flatMap(\.batch), runningBuffers: measured.flatMap(\.running))
    }

    /// A run of steps that goes shard by shard, or one step that must see the whole batch
    /// (a layer that normalises over it, in training mode); indices into ``steps``.
    private enum Stage {
        case sharded(Range<Int>)
        case whole(Int)
    }

    private func stages(_ steps: [Step], training: Bool) -> [Stage] {
        var stages: [Stage] = []
        var start = 0
        for (index, step) in steps.enumerated() where training && layers[step.first].normalizesOverBatch {
            if start < index { stages.append(.sharded(start..<index)) }
            stages.append(.whole(index))
            start = index + 1
        }
        if start < steps.count { stages.append(.sharded(start..<steps.count)) }
        return stages
    }

    /// One step of a pass through the layers: a single layer, or a `Conv2D → ReLU →
    /// MaxPool2D(2)` sequence fused into one (see ``ConvReLUPool``).
    enum Step {
        case layer(Int)
        case convReLUPool(Int)

        /// The index of the step's first layer.
        var first: Int {
            switch self {
            case .layer(let index), .convReLUPool(let index): index
            }
        }

        /// Whether any of the step's layers has parameters (only the first can).
        func hasParameters(_ layers: [any Layer]) -> Bool { !layers[first].parameterNames.isEmpty }
    }

    /// The steps that run this model's layers in order.
    var steps: [Step] {
        var steps: [Step] = []
        var index = 0
        while index < layers.count {
            if ConvReLUPool.matches(layers, at: index) {
                steps.append(.convReLUPool(index))
                index += 3
            } else {
                steps.append(.layer(index))
                index += 1
            }
        }
        return steps
    }

    private func forward(_ step: Step, _ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Any) {
        switch step {
        case .layer(let index):
            return layers[index].erasedForward(input, context: context)
        case .convReLUPool(let index):
            let block = ConvReLUPool(conv: layers[index] as! Conv2D)
            let (output, cache) = block.forward(input, needsBackward: context.needsBackward)
            return (output, cache)
        }
    }

    private func backward(
        _ step: Step, _ outputGradient: Tensor, cache: Any, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (Tensor?, [Tensor]) {
        switch step {
        case .layer(let index):
            return layers[index].erasedBackward(
                outputGradient, cache: cache, needsInputGradient: needsInputGradient,
                needsParameterGradients: needsParameterGradients)
        case .convReLUPool(let index):
            let block = ConvReLUPool(conv: layers[index] as! Conv2D)
            return block.backward(
                outputGradient, cache: cache as! ConvReLUPool.Cache, needsInputGradient: needsInputGradient,
                needsParameterGradients: needsParameterGradients)
        }
    }

    private func checkInput(_ input: Tensor) {
        precondition(
            input.shape.count == 4 && Array(input.shape.dropFirst()) == architecture.inputShape,
            "model expects [N] + \(architecture.inputShape) input, got \(input.shape)")
    }
}
