/// The rectifier, `max(x, 0)` element-wise. Its gradient at 0 is 0, as in PyTorch.
public struct ReLU: Layer {
    /// Creates a ReLU.
    public init() {}

    /// The cache is the output: where it is positive, the gradient passes.
    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Tensor) {
        let output = Tensor(shape: input.shape) { y in
            input.scalars.withUnsafeBufferPointer { x in
                // x ≤ 0 becomes 0; NaN stays NaN, as in PyTorch
                elementwise(x.count, x.baseAddress!, y.baseAddress!) { $0.replacing(with: 0, where: $0 .<= 0) } scalar: { $0 <= 0 ? 0 : $0 }
            }
        }
        return (output, output)
    }

    public func backward(
        _ outputGradient: Tensor, cache output: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        guard needsInputGradient else { return (nil, []) }
        let dinput = Tensor(shape: output.shape) { dx in
            output.scalars.withUnsafeBufferPointer { y in
                outputGradient.scalars.withUnsafeBufferPointer { dy in
                    elementwise(y.count, y.baseAddress!, dy.baseAddress!, dx.baseAddress!) { y, dy in
                        dy.replacing(with: 0, where: .!(y .> 0))
                    } scalar: { y, dy in y > 0 ? dy : 0 }
                }
            }
        }
        return (dinput, [])
    }
}

/// Flattens each item to a vector, in NCHW order (PyTorch's `torch.flatten(x, 1)`), so a
/// following dense layer's weights have PyTorch's layout.
public struct Flatten: Layer {
    /// Creates a flatten layer.
    public init() {}

    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: [Int]) {
        (input.reshaped([input.batchSize, input.itemCount]), input.shape)
    }

    public func backward(
        _ outputGradient: Tensor, cache inputShape: [Int], needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        (needsInputGradient ? outputGradient.reshaped(inputShape) : nil, [])
    }
}

/// Inverted dropout (PyTorch's `nn.Dropout`): in training, zeroes each element with
/// probability `probability` and scales the rest by 1/(1 − probability); in inference it
/// does nothing. Masks are keyed by the seed and the item's index in the batch, so they
/// do not depend on how the batch was split between threads.
public struct Dropout: Layer {
    /// The probability of zeroing an element.
    public let probability: Float

    /// Creates a dropout layer.
    public init(probability: Float) {
        precondition(probability >= 0 && probability < 1, "dropout probability must be in [0, 1)")
        self.probability = probability
    }

    /// The cache is the scaled mask (nil in inference).
    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Tensor?) {
        guard context.training, probability > 0 else { return (input, nil) }
        let item = input.itemCount
        let scale = 1 / (1 - probability)
        let mask = Tensor(shape: input.shape) { m in
            for n in 0..<input.batchSize {
                var generator = SplitMix64(
                    seed: context.seed, stream: UInt64(context.layerIndex), UInt64(context.firstItem + n))
                for i in 0..<item {
                    m[n * item + i] = generator.nextUnitFloat() < probability ? 0 : scale
                }
            }
        }
        return (Tensor.product(input, mask), mask)
    }

    public func backward(
        _ outputGradient: Tensor, cache mask: Tensor?, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        guard needsInputGradient else { return (nil, []) }
        guard let mask else { return (outputGradient, []) }
        return (Tensor.product(outputGradient, mask), [])
    }
}

/// Applies `vector` to 16 elements at a time and `scalar` to the rest: explicit SIMD,
/// because LLVM does not vectorise loops whose loads are conditional.
@inline(__always)
func elementwise(
    _ count: Int, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    vector: (SIMD16<Float>) -> SIMD16<Float>, scalar: (Float) -> Float
) {
    var i = 0
    while i + 16 <= count {
        UnsafeMutableRawPointer(out + i).storeBytes(of: vector(UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)), as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        out[i] = scalar(x[i])
        i += 1
    }
}

/// The two-input form of ``elementwise(_:_:_:vector:scalar:)``.
@inline(__always)
func elementwise(
    _ count: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
    vector: (SIMD16<Float>, SIMD16<Float>) -> SIMD16<Float>, scalar: (Float, Float) -> Float
) {
    var i = 0
    while i + 16 <= count {
        let a = UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        let b = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD16<Float>.self)
        UnsafeMutableRawPointer(out + i).storeBytes(of: vector(a, b), as: SIMD16<Float>.self)
        i += 16
    }
    while i < count {
        out[i] = scalar(x[i], y[i])
        i += 1
    }
}

extension Tensor {
    /// The element-wise product of two tensors of equal shape.
    static func product(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "shape mismatch \(a.shape) vs \(b.shape)")
        return Tensor(shape: a.shape) { out in
            a.scalars.withUnsafeBufferPointer { x in
                b.scalars.withUnsafeBufferPointer { y in
                    elementwise(x.count, x.baseAddress!, y.baseAddress!, out.baseAddress!, vector: *, scalar: *)
                }
            }
        }
    }
}
