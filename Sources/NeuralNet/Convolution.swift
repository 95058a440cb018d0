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

    /// Updates the weight (index 0) and the bias (1) where they are, without copying them.
    public mutating func updateParameters(_ update: (_ index: Int, _ parameter: inout Tensor) -> Void) {
        update(0, &weight)
        update(1, &bias)
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
                                im2col(x.baseAddress! + n * g.CHW, col, rowStride: g.PQ, g)
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
        // col2im writes every element of each image's input gradient: no need to zero it first
        var dinput = Tensor(shape: needsInputGradient ? input.shape : [0], unsafeUninitialized: { _ in })
        withColumnScratch(count: g.columnCount) { col in
            input.scalars.withUnsafeBufferPointer { x in
                weight.scalars.withUnsafeBufferPointer { w in
                    outputGradient.scalars.withUnsafeBufferPointer { dy in
                        dweight.scalars.withUnsafeMutableBufferPointer { dw in
                            dbias.scalars.withUnsafeMutableBufferPointer { db in
                                dinput.scalars.withUnsafeMutableBufferPointer { dx in
                                    for n in 0..<N {
                                        let dyn = dy.baseAddress! + n * g.F * g.PQ
                                        if needsParameterGradients {
                                            im2col(x.baseAddress! + n * g.CHW, col, rowStride: g.PQ, g)
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
                                            col2im(col, rowStride: g.PQ, dx.baseAddress! + n * g.CHW, g)
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
        self.init(
            C: C, H: H, W: W, F: F, R: R, stride: stride, padding: padding, P: (H + 2 * padding - R) / stride + 1,
            Q: (W + 2 * padding - R) / stride + 1)
    }

    private init(C: Int, H: Int, W: Int, F: Int, R: Int, stride: Int, padding: Int, P: Int, Q: Int) {
        self.C = C
        self.H = H
        self.W = W
        self.F = F
        self.R = R
        self.stride = stride
        self.padding = padding
        self.P = P
        self.Q = Q
    }

    /// The same convolution computing only the first P×Q outputs of each plane (the kernels
    /// then treat the others as absent: im2col leaves them out, col2im takes no gradient
    /// from them).
    func cropped(P: Int, Q: Int) -> ConvGeometry {
        precondition(P <= self.P && Q <= self.Q)
        return ConvGeometry(C: C, H: H, W: W, F: F, R: R, stride: stride, padding: padding, P: P, Q: Q)
    }

    /// The same convolution over the input with its zero border made explicit: padding 0,
    /// H and W grown by 2·padding, the same outputs.
    var padded: ConvGeometry {
        ConvGeometry(C: C, H: H + 2 * padding, W: W + 2 * padding, F: F, R: R, stride: stride, padding: 0, P: P, Q: Q)
    }

    var K: Int { C * R * R }
    /// The floats an im2col buffer of one image needs.
    var columnCount: Int { K * P * Q }
    var PQ: Int { P * Q }
    var CHW: Int { C * H * W }

}

/// Unfolds one image x[C, H, W] into the column matrix: row (c, r, s) holds, for every
/// output position p·Q + q, the input pixel under kernel tap (r, s) of channel c (0 in the
/// padding). Row k starts at `col + k·rowStride`, so several images can share one column
/// matrix [K, images·P·Q] (rowStride = images·P·Q) and one GEMM; writes exactly P·Q floats
/// per row.
///
/// With padding or a stride, the image is first copied into a zero-bordered plane (with a
/// few floats of slack after it, which the strided copies may read), so that the unfolding
/// itself never tests for borders: the copy is C·(H + 2·padding)·(W + 2·padding) floats, a
/// small fraction of the K·P·Q it unfolds, and per-pixel border tests cost more than it.
func im2col(_ x: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, rowStride: Int, _ g: ConvGeometry) {
    guard g.padding > 0 || g.stride > 1 else {
        im2colUnpadded(x, col, rowStride: rowStride, g)
        return
    }
    let padded = g.padded
    withScratch(count: padded.CHW + planeSlack) { plane in
        pad(x, into: plane, g)
        (plane + padded.CHW).initialize(repeating: 0, count: planeSlack)
        im2colUnpadded(plane, col, rowStride: rowStride, padded)
    }
}

/// Floats of slack after a zero-bordered plane: the stride-2 copies read (and the stride-2
/// adds rewrite) up to one float past the last pixel they use.
private let planeSlack = 16

/// The adjoint of `im2col`: folds the column matrix (row k at `col + k·rowStride`) back
/// into dx[C, H, W], adding every tap's contribution to the pixel it came from. Overwrites dx.
/// With padding or a stride, it folds into a zero-bordered plane and copies out the inside.
func col2im(_ col: UnsafePointer<Float>, rowStride: Int, _ dx: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    guard g.padding > 0 || g.stride > 1 else {
        col2imUnpadded(col, rowStride: rowStride, dx, g)
        return
    }
    let padded = g.padded
    withScratch(count: padded.CHW + planeSlack) { plane in
        col2imUnpadded(col, rowStride: rowStride, plane, padded)
        let (H, W, p, Wp) = (g.H, g.W, g.padding, padded.W)
        for c in 0..<g.C {
            for h in 0..<H {
                copyFloats(plane + (c * padded.H + h + p) * Wp + p, dx + (c * H + h) * W, count: W)
            }
        }
    }
}

/// Copies x[C, H, W] into the middle of a zeroed [C, H + 2·padding, W + 2·padding].
private func pad(_ x: UnsafePointer<Float>, into plane: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let (H, W, p) = (g.H, g.W, g.padding)
    let Wp = W + 2 * p
    let Hp = H + 2 * p
    for c in 0..<g.C {
        let out = plane + c * Hp * Wp
        out.initialize(repeating: 0, count: p * Wp)
        for h in 0..<H {
            let row = out + (h + p) * Wp
            // a border is a float or two: a loop, not a memset call
            for i in 0..<p { row[i] = 0 }
            copyFloats(x + (c * H + h) * W, row + p, count: W)
            for i in (p + W)..<Wp { row[i] = 0 }
        }
        (out + (H + p) * Wp).initialize(repeating: 0, count: p * Wp)
    }
}

/// `im2col` without padding: row (c, r, s) takes, for output row p, the Q pixels of input
/// row p·stride + r starting at column s, every stride-th. The R taps (r, 0..<R) read the
/// same input row, so they are made together. Pointers advance by addition: this loop runs
/// K·P times per image and its bookkeeping, not the copying, is what it costs.
private func im2colUnpadded(_ x: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, rowStride: Int, _ g: ConvGeometry) {
    let (R, P, Q, W, stride) = (g.R, g.P, g.Q, g.W, g.stride)
    var row = col  // column-matrix row (c, r, 0)
    var plane = x
    for _ in 0..<g.C {
        for r in 0..<R {
            var src = plane + r &* W
            var dst = row
            for _ in 0..<P {
                var tap = dst
                for s in 0..<R {
                    switch stride {
                    case 1: copyFloats(src + s, tap, count: Q)
                    case 2: copyEvenFloats(src + s, tap, count: Q)
                    default: for q in 0..<Q { tap[q] = src[s &+ q &* stride] }
                    }
                    tap += rowStride
                }
                src += stride &* W
                dst += Q
            }
            row += R &* rowStride
        }
        plane += g.H &* W
    }
}

/// `col2im` without padding: adds each tap's P×Q block back where `im2colUnpadded` took it
/// from. Overwrites dx.
private func col2imUnpadded(_ col: UnsafePointer<Float>, rowStride: Int, _ dx: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    if g.stride == 1 && g.W <= 16 {
        col2imNarrow(col, rowStride: rowStride, dx, g)
        return
    }
    dx.initialize(repeating: 0, count: g.CHW)
    let (R, P, Q, W, stride) = (g.R, g.P, g.Q, g.W, g.stride)
    var row = col
    var plane = dx
    for _ in 0..<g.C {
        for r in 0..<R {
            for s in 0..<R {
                var src = row
                var dst = plane + (r &* W &+ s)
                for _ in 0..<P {
                    switch stride {
                    case 1: accumulateFloats(src, into: dst, count: Q)
                    case 2: accumulateEvenFloats(src, into: dst, count: Q)
                    default: for q in 0..<Q { dst[q &* stride] += src[q] }
                    }
                    src += Q
                    dst += stride &* W
                }
                row += rowStride
            }
        }
        plane += g.H &* W
    }
}

/// `col2im` for stride 1, no padding and rows of at most 16 floats (conv2 of `seed`, and
/// the zero-bordered planes of padded convolutions on 14×14 inputs): each row of dx is summed in registers (four SIMD4s) from every (r, s) tap that reaches it,
/// and stored once. Tap s contributes block row p = h − r shifted right by s: unaligned
/// loads starting s floats before the block row, ANDed with a mask of the lanes s..<s+Q.
/// Those loads touch up to 16 floats before and after the column matrix, so `col` must
/// come from ``withColumnScratch`` (the masked-off values are never used).
private func col2imNarrow(_ col: UnsafePointer<Float>, rowStride: Int, _ dx: UnsafeMutablePointer<Float>, _ g: ConvGeometry) {
    let (R, P, Q, H, W) = (g.R, g.P, g.Q, g.H, g.W)
    // masks[4s + j]: all ones in the lanes 4j + i (i < 4) with s ≤ 4j + i < s + Q
    var masks = [SIMD4<UInt32>](repeating: .zero, count: 4 * R)
    for s in 0..<R {
        for lane in s..<(s + Q) { masks[4 * s + lane / 4][lane % 4] = .max }
    }
    masks.withUnsafeBufferPointer { masks in
        var plane = dx
        var channel = col
        for _ in 0..<g.C {
            for h in 0..<H {
                var (f0, f1, f2, f3) = (SIMD4<Float>(), SIMD4<Float>(), SIMD4<Float>(), SIMD4<Float>())
                for r in max(0, h &- P &+ 1)..<min(R, h &+ 1) {
                    // tap (r, s) reads block row p = h − r of column-matrix row (c, r, s), from s floats before it
                    var src = UnsafeRawPointer(channel + (r &* R &* rowStride &+ (h &- r) &* Q))
                    var m = masks.baseAddress!
                    for _ in 0..<R {
                        f0 += masked(src.loadUnaligned(as: SIMD4<Float>.self), m[0])
                        f1 += masked(src.loadUnaligned(fromByteOffset: 16, as: SIMD4<Float>.self), m[1])
                        f2 += masked(src.loadUnaligned(fromByteOffset: 32, as: SIMD4<Float>.self), m[2])
                        f3 += masked(src.loadUnaligned(fromByteOffset: 48, as: SIMD4<Float>.self), m[3])
                        src += (rowStride &- 1) &* 4
                        m += 4
                    }
                }
                let out = UnsafeMutableRawPointer(plane + h &* W)
                if h &* W &+ 16 <= H &* W {
                    // full 16-float stores: what spills past the row is overwritten by the next rows
                    out.storeBytes(of: f0, as: SIMD4<Float>.self)
                    out.storeBytes(of: f1, toByteOffset: 16, as: SIMD4<Float>.self)
                    out.storeBytes(of: f2, toByteOffset: 32, as: SIMD4<Float>.self)
                    out.storeBytes(of: f3, toByteOffset: 48, as: SIMD4<Float>.self)
                } else {
                    let row = plane + h &* W
                    for w in 0..<W { row[w] = w < 4 ? f0[w] : w < 8 ? f1[w - 4] : w < 12 ? f2[w - 8] : f3[w - 12] }
                }
            }
            plane += H &* W
            channel += R &* R &* rowStride
        }
    }
}

/// `value` with the lanes where `mask` is zero set to +0 (whatever they held, NaN too).
@inline(__always)
private func masked(_ value: SIMD4<Float>, _ mask: SIMD4<UInt32>) -> SIMD4<Float> {
    unsafeBitCast(unsafeBitCast(value, to: SIMD4<UInt32>.self) & mask, to: SIMD4<Float>.self)
}

/// Runs `body` with an uninitialised column buffer of `count` floats that has 16 zeroed
/// floats of slack before and after it, which ``col2im`` may read (see `col2imNarrow`).
func withColumnScratch<T>(count: Int, _ body: (UnsafeMutablePointer<Float>) -> T) -> T {
    withScratch(count: count + 32) { buffer in
        buffer.initialize(repeating: 0, count: 16)
        (buffer + 16 + count).initialize(repeating: 0, count: 16)
        return body(buffer + 16)
    }
}

/// dst[i] = src[i] for i in 0..<count, four at a time. The rows im2col copies are a few
/// dozen floats, too short for memcpy calls to pay. The last chunk ends exactly at `count`
/// and may overlap the one before it (writing the same values twice), so nothing outside
/// the row is read or written and no scalar tail is needed.
@inline(__always)
func copyFloats(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    @inline(__always) func copy4(_ offset: Int) {
        UnsafeMutableRawPointer(dst + offset).storeBytes(
            of: UnsafeRawPointer(src + offset).loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
    }
    switch count {
    case 0..<4:
        for i in 0..<count { dst[i] = src[i] }
    case 4...8:
        copy4(0)
        copy4(count &- 4)
    case 9...12:
        copy4(0)
        copy4(4)
        copy4(count &- 4)
    default:
        chunksOfFour(count, copy4)
    }
}

/// Calls `body` with the offsets of chunks of four floats that cover 0..<count (count ≥ 4):
/// every fourth, then one that ends exactly at `count` and may overlap the one before.
@inline(__always)
private func chunksOfFour(_ count: Int, _ body: (Int) -> Void) {
    var i = 0
    while i &+ 4 < count {
        body(i)
        i &+= 4
    }
    body(count &- 4)
}

/// dst[i] = src[2i] for i in 0..<count, four at a time (the even lanes of eight), with the
/// last chunk ending exactly at `count` as in ``copyFloats``. Reads src up to src[2·count − 1],
/// one float past the last it uses.
@inline(__always)
func copyEvenFloats(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    guard count >= 4 else {
        for i in 0..<count { dst[i] = src[2 &* i] }
        return
    }
    @inline(__always) func copy4(_ offset: Int) {
        let pairs = UnsafeRawPointer(src + 2 &* offset).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + offset).storeBytes(of: pairs.evenHalf, as: SIMD4<Float>.self)
    }
    chunksOfFour(count, copy4)
}

/// dst[2i] += src[i] for i in 0..<count, four at a time, then one by one. Rewrites (with the
/// value it read) dst up to dst[2·count − 1], one float past the last it adds to.
@inline(__always)
func accumulateEvenFloats(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i &+ 4 <= count {
        let values = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD4<Float>.self)
        let target = UnsafeMutableRawPointer(dst + 2 &* i)
        var pairs = target.loadUnaligned(as: SIMD8<Float>.self)
        pairs.evenHalf += values
        target.storeBytes(of: pairs, as: SIMD8<Float>.self)
        i &+= 4
    }
    while i < count {
        dst[2 &* i] += src[i]
        i &+= 1
    }
}

/// dst[i] += src[i] for i in 0..<count, four at a time.
@inline(__always)
func accumulateFloats(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int) {
    var i = 0
    while i &+ 4 <= count {
        let sum = UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD4<Float>.self) + UnsafeRawPointer(src + i).loadUnaligned(as: SIMD4<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: sum, as: SIMD4<Float>.self)
        i &+= 4
    }
    while i < count {
        dst[i] += src[i]
        i &+= 1
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
