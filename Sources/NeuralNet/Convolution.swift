/// A 2-D convolution over NCHW batches (PyTorch's `nn.Conv2d` with square kernels,
/// zero padding, no dilation or groups).
///
/// Computed one image at a time as im2col + GEMM: the column buffer of one image stays in
/// the L2 cache, and the GEMM writes straight into the NCHW output, with no transposes.
public struct Conv2D: Layer {
    /// `[outputChannels, inputChannels, kernelSize, kernelSize]`, PyTorch's layout.
    public var weight: Tensor
    /// `[outputChannels]`.
    public var bias: Tensor
    /// The step between neighbouring windows, in both directions.
    public let stride: Int
    /// Zeros added on every side of the input.
    public let padding: Int

    /// Creates a convolution with PyTorch's default initialisation: weights and biases
    /// uniform in ±1/√fan_in (Kaiming-uniform with a = √5).
    public init<G: RandomNumberGenerator>(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        generator: inout G
    ) {
        let fanIn = inputChannels * kernelSize * kernelSize
        self.init(
            weight: Tensor.uniform(
                shape: [outputChannels, inputChannels, kernelSize, kernelSize], fanIn: fanIn, generator: &generator),
            bias: Tensor.uniform(shape: [outputChannels], fanIn: fanIn, generator: &generator),
            stride: stride, padding: padding)
    }

    /// Creates a convolution from existing parameters.
    public init(weight: Tensor, bias: Tensor, stride: Int = 1, padding: Int = 0) {
        precondition(weight.shape.count == 4 && weight.shape[2] == weight.shape[3], "weight must be [O, I, k, k]")
        precondition(bias.shape == [weight.shape[0]], "bias must be [\(weight.shape[0])]")
        precondition(stride >= 1 && padding >= 0, "stride must be ≥ 1 and padding ≥ 0")
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
    }

    public var inputChannels: Int { weight.shape[1] }
    public var outputChannels: Int { weight.shape[0] }
    public var kernelSize: Int { weight.shape[2] }

    public var parameterNames: [String] { ["weight", "bias"] }
    public var parameters: [Tensor] {
        get { [weight, bias] }
        set {
            precondition(newValue.count == 2 && newValue[0].shape == weight.shape && newValue[1].shape == bias.shape)
            weight = newValue[0]
            bias = newValue[1]
        }
    }

    func geometry(_ inputShape: [Int]) -> ConvGeometry {
        ConvGeometry(
            C: inputShape[1], H: inputShape[2], W: inputShape[3], F: outputChannels, R: kernelSize,
            stride: stride, padding: padding)
    }

    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Tensor) {
        let g = geometry(input.shape)
        let N = input.batchSize
        let output = Tensor(shape: [N, g.F, g.P, g.Q]) { y in
            withScratch(count: g.columnCount) { col in
                input.scalars.withUnsafeBufferPointer { x in
                    weight.scalars.withUnsafeBufferPointer { w in
                        bias.scalars.withUnsafeBufferPointer { b in
                            for n in 0..<N {
                                let yn = y.baseAddress! + n * g.F * g.PQ
                                im2col(x.baseAddress! + n * g.CHW, col, g)
                                for f in 0..<g.F { (yn + f * g.PQ).initialize(repeating: b[f], count: g.PQ) }
                                sgemm(
                                    m: g.F, n: g.PQ, k: g.K, a: w.baseAddress!, lda: g.K, b: col, ldb: g.PQ,
                                    beta: 1, c: yn, ldc: g.PQ)
                            }
                        }
                    }
                }
            }
        }
        return (output, input)
    }

    public func backward(
        _ outputGradient: Tensor, cache input: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        let g = geometry(input.shape)
        let N = input.batchSize
        var dweight = Tensor(shape: needsParameterGradients ? weight.shape : [0])
        var dbias = Tensor(shape: needsParameterGradients ? bias.shape : [0])
        var dinput = Tensor(shape: needsInputGradient ? input.shape : [0])
        withScratch(count: g.columnCount) { col in
            input.scalars.withUnsafeBufferPointer { x in
                weight.scalars.withUnsafeBufferPointer { w in
                    outputGradient.scalars.withUnsafeBufferPointer { dy in
                        dweight.scalars.withUnsafeMutableBufferPointer { dw in
                            dbias.scalars.withUnsafeMutableBufferPointer { db in
                                dinput.scalars.withUnsafeMutableBufferPointer { dx in
                                    for n in 0..<N {
                                        let dyn = dy.baseAddress! + n * g.F * g.PQ
                                        if needsParameterGradients {
                                            im2col(x.baseAddress! + n * g.CHW, col, g)
                                            // dweight[F, K] += dy_n[F, PQ] · col[K, PQ]ᵀ
                                            sgemm(
                                                transposeB: true, m: g.F, n: g.K, k: g.PQ, a: dyn, lda: g.PQ, b: col,
                                                ldb: g.PQ, beta: 1, c: dw.baseAddress!, ldc: g.K)
                                            for f in 0..<g.F { db[f] += sum(dyn + f * g.PQ, count: g.PQ) }
                                        }
                                        if needsInputGradient {
                                            // dcol[K, PQ] = weight[F, K]ᵀ · dy_n[F, PQ]
                                            sgemm(
                                                transposeA: true, m: g.K, n: g.PQ, k: g.F, a: w.baseAddress!, lda: g.K,
                                                b: dyn, ldb: g.PQ, beta: 0, c: col, ldc: g.PQ)
                                            col2im(col, dx.baseAddress! + n * g.CHW, g)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (needsInputGradient ? dinput : nil, needsParameterGradients ? [dweight, dbias] : [])
    }
}

/// The sizes of one convolution, in the short letters kernels use:
/// input C×H×W, F filters of R×R, output P×Q, K = C·R·R rows of the column matrix.
struct ConvGeometry {
    let C, H, W, F, R, stride, padding: Int
    let P, Q: Int

    init(C: Int, H: Int, W: Int, F: Int, R: Int, stride: Int, padding: Int) {
        self.C = C
        self.H = H
        self.W = W
        self.F = F
        self.R = R
        self.stride = stride
        self.padding = padding
        P = (H + 2 * padding - R) / stride + 1
        Q = (W + 2 * padding - R) / stride + 1
    }

    var K: Int { C * R * R }
    /// The floats an im2col buffer needs: K·P·Q plus 16 of slack for the vector copies.
    var columnCount: Int { K * P * Q + 16 }
    var PQ: Int { P * Q }
    var CHW: Int { C * H * W }

    /// The output columns `q` whose input column `q·stride − padding + s` lies inside the
    /// image, for kernel column `s`.
    func validColumns(s: Int) -> Range<Int> {
        let offset = s - padding
        // smallest q with q·stride + offset ≥ 0, and smallest q with q·stride + offset ≥ W
        let low = offset >= 0 ? 0 : (-offset + stride - 1) / stride
        let high = W - offset <= 0 ? 0 : min(Q, (W - offset + stride - 1) / stride)
        return low..<max(low, high)
    }
}

/// Unfolds one image x[C, H, W] into col[K, P·Q]: row (c, r, s) holds, for every output
/// position, the input pixel under kernel tap (r, s) of channel c (0 in the padding).
///
/// `col` needs ``ConvGeometry/columnCount`` floats: rows are copied sixteen floats at a time,
/// each copy spilling past its row into places written later (or into 16 floats of slack).
func im2col(_ x: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let end = x + g.CHW
    for c in 0..<g.C {
        for r in 0..<g.R {
            for s in 0..<g.R {
                let row = col + ((c * g.R + r) * g.R + s) * g.PQ
                let valid = g.validColumns(s: s)
                for p in 0..<g.P {
                    let dst = row + p * g.Q
                    let h = p * g.stride - g.padding + r
                    if h < 0 || h >= g.H {
                        dst.initialize(repeating: 0, count: g.Q)
                        continue
                    }
                    let src = x + (c * g.H + h) * g.W + (s - g.padding)
                    // Rows are short (a few dozen floats): plain loops beat memcpy calls.
                    for q in 0..<valid.lowerBound { dst[q] = 0 }
                    if g.stride == 1 {
                        copyRow(src, dst, valid, sourceEnd: end)
                    } else {
                        for q in valid { dst[q] = src[q * g.stride] }
                    }
                    for q in valid.upperBound..<g.Q { dst[q] = 0 }
                }
            }
        }
    }
}

/// The adjoint of `im2col`: folds col[K, P·Q] back into dx[C, H, W], adding every tap's
/// contribution to the pixel it came from. Overwrites dx.
func col2im(_ col: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    dx.initialize(repeating: 0, count: g.CHW)
    for c in 0..<g.C {
        for r in 0..<g.R {
            for s in 0..<g.R {
                let row = col + ((c * g.R + r) * g.R + s) * g.PQ
                let valid = g.validColumns(s: s)
                for p in 0..<g.P {
                    let h = p * g.stride - g.padding + r
                    if h < 0 || h >= g.H { continue }
                    let src = row + p * g.Q
                    let dst = dx + (c * g.H + h) * g.W + (s - g.padding)
                    if g.stride == 1 {
                        accumulateRow(src, into: dst, valid)
                    } else {
                        for q in valid { dst[q * g.stride] += src[q] }
                    }
                }
            }
        }
    }
}

/// dst[i] = src[i] for i in `range`, sixteen at a time. im2col's rows are a few dozen
/// floats, too short for memcpy calls or for LLVM's vectorised loops (with their alias
/// checks) to pay, so each chunk is one unaligned 64-byte load and store. The store may
/// write up to 15 floats past the range (the caller writes those places afterwards or
/// leaves them as slack); loads never read at or past `sourceEnd`.
@inline(__always)
func copyRow(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ range: Range<Int>, sourceEnd: UnsafePointer<Float>) {
    var i = range.lowerBound
    while i < range.upperBound && src + i + 16 <= sourceEnd {
        UnsafeMutableRawPointer(dst + i).storeBytes(of: UnsafeRawPointer(src + i).loadUnaligned(as: SIMD16<Float>.self), as: SIMD16<Float>.self)
        i += 16
    }
    while i < range.upperBound {
        dst[i] = src[i]
        i += 1
    }
}

/// dst[i] += src[i] for i in `range`, eight at a time. (No wider masked tail: successive
/// kernel taps add into the same row shifted by one, and overlapping wide stores and loads
/// stall store-to-load forwarding.)
@inline(__always)
func accumulateRow(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, _ range: Range<Int>) {
    var i = range.lowerBound
    while i + 8 <= range.upperBound {
        let sum = UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD8<Float>.self) + UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: sum, as: SIMD8<Float>.self)
        i += 8
    }
    while i < range.upperBound {
        dst[i] += src[i]
        i += 1
    }
}

/// The sum of `count` floats, with sixteen running partial sums (a fixed order, so the
/// result is deterministic, and vectorised, which a plain float loop never is).
@inline(__always)
func sum(_ x: UnsafePointer<Float>, count: Int) -> Float {
    var partial = SIMD16<Float>()
    var i = 0
    while i + 16 <= count {
        partial += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD16<Float>.self)
        i += 16
    }
    var total = partial.sum()
    while i < count {
        total += x[i]
        i += 1
    }
    return total
}

/// Runs `body` with an uninitialised scratch buffer of `count` floats.
@inline(__always)
func withScratch<R>(count: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
    defer { buffer.deallocate() }
    return body(buffer)
}

extension Tensor {
    /// Uniform in ±1/√fanIn: PyTorch's default for conv and linear weights and biases.
    static func uniform<G: RandomNumberGenerator>(shape: [Int], fanIn: Int, generator: inout G) -> Tensor {
        let bound = 1 / Float(fanIn).squareRoot()
        let count = Tensor.elementCount(shape)
        var scalars = [Float]()
        scalars.reserveCapacity(count)
        for _ in 0..<count { scalars.append(Float.random(in: -bound..<bound, using: &generator)) }
        return Tensor(shape: shape, scalars: scalars)
    }
}
