/// A fully connected layer, `y = x · weightᵀ + bias` (PyTorch's `nn.Linear`).
public struct Dense: Layer {
    /// `[outputFeatures, inputFeatures]`, PyTorch's layout.
    public var weight: Tensor
    /// `[outputFeatures]`.
    public var bias: Tensor

    /// Creates a dense layer with PyTorch's default initialisation (uniform in ±1/√fan_in).
    public init<G: RandomNumberGenerator>(inputFeatures: Int, outputFeatures: Int, generator: inout G) {
        self.init(
            weight: Tensor.uniform(shape: [outputFeatures, inputFeatures], fanIn: inputFeatures, generator: &generator),
            bias: Tensor.uniform(shape: [outputFeatures], fanIn: inputFeatures, generator: &generator))
    }

    /// Creates a dense layer from existing parameters.
    public init(weight: Tensor, bias: Tensor) {
        precondition(weight.shape.count == 2 && bias.shape == [weight.shape[0]], "weight [O, I] and bias [O] expected")
        self.weight = weight
        self.bias = bias
    }

    public var inputFeatures: Int { weight.shape[1] }
    public var outputFeatures: Int { weight.shape[0] }

    public var parameterNames: [String] { ["weight", "bias"] }
    public var parameters: [Tensor] {
        get { [weight, bias] }
        set {
            precondition(newValue.count == 2 && newValue[0].shape == weight.shape && newValue[1].shape == bias.shape)
            weight = newValue[0]
            bias = newValue[1]
        }
    }

    /// Updates the weight (index 0) and the bias (1) where they are, without copying them.
    public mutating func updateParameters(_ update: (_ index: Int, _ parameter: inout Tensor) -> Void) {
        update(0, &weight)
        update(1, &bias)
    }

    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Tensor) {
        let (N, I, O) = (input.batchSize, inputFeatures, outputFeatures)
        let output = Tensor(shape: [N, O]) { y in
            withScratch(count: O * N) { yt in
                input.scalars.withUnsafeBufferPointer { x in
                    weight.scalars.withUnsafeBufferPointer { w in
                        // yᵀ[O, N] = w[O, I] · x[N, I]ᵀ: OpenBLAS runs this orientation of the
                        // product faster than x · wᵀ when N (a shard) is small
                        sgemm(
                            transposeB: true, m: O, n: N, k: I, a: w.baseAddress!, lda: I, b: x.baseAddress!, ldb: I,
                            beta: 0, c: yt, ldc: N)
                    }
                }
                bias.scalars.withUnsafeBufferPointer { b in
                    for n in 0..<N {
                        for o in 0..<O { y[n * O + o] = b[o] + yt[o * N + n] }
                    }
                }
            }
        }
        return (output, input)
    }

    public func backward(
        _ outputGradient: Tensor, cache input: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        let (N, I, O) = (input.batchSize, inputFeatures, outputFeatures)
        var gradients: [Tensor] = []
        var dinput: Tensor?
        outputGradient.scalars.withUnsafeBufferPointer { dy in
            if needsParameterGradients {
                let dweight = Tensor(shape: [O, I]) { dw in
                    input.scalars.withUnsafeBufferPointer { x in
                        // dweight[O, I] = dy[N, O]ᵀ · x[N, I]
                        sgemm(
                            transposeA: true, m: O, n: I, k: N, a: dy.baseAddress!, lda: O, b: x.baseAddress!,
                            ldb: I, beta: 0, c: dw.baseAddress!, ldc: I)
                    }
                }
                var dbias = Tensor(shape: [O])
                dbias.scalars.withUnsafeMutableBufferPointer { db in
                    for n in 0..<N {
                        for o in 0..<O { db[o] += dy[n * O + o] }
                    }
                }
                gradients = [dweight, dbias]
            }
            if needsInputGradient {
                dinput = Tensor(shape: input.shape) { dx in
                    weight.scalars.withUnsafeBufferPointer { w in
                        // dx[N, I] = dy[N, O] · w[O, I]
                        sgemm(
                            m: N, n: I, k: O, a: dy.baseAddress!, lda: O, b: w.baseAddress!, ldb: I, beta: 0,
                            c: dx.baseAddress!, ldc: I)
                    }
                }
            }
        }
        return (dinput, gradients)
    }
}
