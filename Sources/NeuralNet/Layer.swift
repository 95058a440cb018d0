/// What a forward pass needs to know besides its input.
public struct ForwardContext: Sendable {
    /// Training mode (dropout active) or inference.
    public var training: Bool
    /// Seed for stochastic layers; masks are keyed per sample, not per thread.
    public var seed: UInt64
    /// The index, in the whole batch, of the first item of this input (this shard).
    public var firstItem: Int
    /// The position of the layer in its model, so that two dropout layers draw different masks.
    public var layerIndex: Int
    /// Whether a backward pass will follow; if not, layers may skip recording what it needs.
    public var needsBackward: Bool
    /// For a layer that normalises over the batch, in training mode: a gradient of the loss
    /// with respect to the batch statistics it computes (``BatchNorm``: `[d/dμ, d/dσ²]`), from a
    /// loss that uses them elsewhere (interval training's bounds), which its backward adds.
    public var statisticsGradient: [Tensor]? = nil

    /// Creates a context.
    public init(training: Bool = false, seed: UInt64 = 0, firstItem: Int = 0, layerIndex: Int = 0, needsBackward: Bool = true) {
        self.training = training
        self.seed = seed
        self.firstItem = firstItem
        self.layerIndex = layerIndex
        self.needsBackward = needsBackward
    }
}

/// One layer of a network: parameters only, and a forward/backward pair.
///
/// `forward` returns the output and a cache holding exactly what `backward` needs (the
/// llm.c pattern). A layer has no hidden mutable state, so a trained model is a value
/// that many attacks can run at once. `backward` computes the input gradient and, only
/// when asked, the parameter gradients: attacks need the first and never the second.
public protocol Layer: Sendable {
    /// What `forward` keeps for `backward`.
    associatedtype Cache

    /// PyTorch's names for this layer's parameters, in order (for example `["weight", "bias"]`).
    var parameterNames: [String] { get }

    /// The parameters, in the order of ``parameterNames``.
    var parameters: [Tensor] { get set }

    /// Calls `update` on each parameter tensor in place, with its index in ``parameters``.
    /// A layer that stores its tensors as properties updates them there, so that a
    /// uniquely held layer's tensors are not copied; the default goes through
    /// ``parameters``, which copies.
    mutating func updateParameters(_ update: (_ index: Int, _ parameter: inout Tensor) -> Void)

    /// PyTorch's names for this layer's buffers: state that training updates from the data
    /// rather than by gradient (``BatchNorm``'s running statistics). Empty for most layers.
    var bufferNames: [String] { get }

    /// The buffers, in the order of ``bufferNames``.
    var buffers: [Tensor] { get set }

    /// Whether a training-mode forward pass needs the whole batch at once (batch
    /// statistics), so that ``Model`` must not run it shard by shard.
    var normalizesOverBatch: Bool { get }

    /// After a training-mode forward pass that returned `cache`: the buffers that make an
    /// inference-mode pass normalise as that pass did (`batch`), and the buffers updated by
    /// it (`running`). Nil for a layer without buffers.
    func statistics(from cache: Cache) -> (batch: [Tensor], running: [Tensor])?

    /// Computes the output for a batch and what the backward pass will need.
    func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Cache)

    /// Given the gradient of the loss with respect to the output, returns the gradient
    /// with respect to the input (when `needsInputGradient`) and the parameter gradients
    /// in ``parameters`` order (when `needsParameterGradients`, else an empty array).
    func backward(
        _ outputGradient: Tensor, cache: Cache, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor])
}

extension Layer {
    public var parameterNames: [String] { [] }
    public var parameters: [Tensor] {
        get { [] }
        set { precondition(newValue.isEmpty, "\(Self.self) has no parameters") }
    }

    public var bufferNames: [String] { [] }
    public var buffers: [Tensor] {
        get { [] }
        set { precondition(newValue.isEmpty, "\(Self.self) has no buffers") }
    }
    public var normalizesOverBatch: Bool { false }
    public func statistics(from cache: Cache) -> (batch: [Tensor], running: [Tensor])? { nil }

    public mutating func updateParameters(_ update: (_ index: Int, _ parameter: inout Tensor) -> Void) {
        var parameters = self.parameters
        guard !parameters.isEmpty else { return }
        for index in parameters.indices { update(index, &parameters[index]) }
        self.parameters = parameters
    }

    func erasedForward(_ input: Tensor, context: ForwardContext) -> (Tensor, Any) {
        let (output, cache) = forward(input, context: context)
        return (output, cache)
    }

    func erasedStatistics(from cache: Any) -> (batch: [Tensor], running: [Tensor])? {
        // The model pairs each cache with the layer that made it, so the cast cannot fail.
        statistics(from: cache as! Cache)
    }

    func erasedBackward(
        _ outputGradient: Tensor, cache: Any, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (Tensor?, [Tensor]) {
        // The model pairs each cache with the layer that made it, so the cast cannot fail.
        backward(
            outputGradient, cache: cache as! Cache, needsInputGradient: needsInputGradient,
            needsParameterGradients: needsParameterGradients)
    }
}
