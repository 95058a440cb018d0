/// Max pooling over square windows of NCHW batches (PyTorch's `nn.MaxPool2d`, no padding,
/// floor rounding of the output size).
///
/// When several pixels of a window share the maximum, the first in row-major order wins
/// and gets the whole gradient, as in PyTorch. MNIST's background is exactly 0, so ties
/// are everywhere, and attacks on real digits depend on this rule.
public struct MaxPool2D: Layer {
    /// The window's side.
    public let kernelSize: Int
    /// The step between windows (PyTorch's default: the kernel size).
    public let stride: Int

    /// Creates a max-pooling layer.
    public init(kernelSize: Int, stride: Int? = nil) {
        precondition(kernelSize >= 1 && (stride ?? 1) >= 1, "kernel size and stride must be positive")
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
    }

    /// The cache: the input's shape and, per output element, where its winner is: for 2×2
    /// windows with stride 2 a one-byte code (see ``maxPool2x2``), else the flat index of the
    /// winning pixel within its channel plane.
    public struct Cache {
        let inputShape: [Int]
        let argmax: [Int32]
        let codes: [UInt8]
    }

    /// Whether this is the 2×2, stride-2 pooling that ``maxPool2x2`` computes.
    var isTwoByTwo: Bool { kernelSize == 2 && stride == 2 }

    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Cache) {
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let P = (H - kernelSize) / stride + 1
        let Q = (W - kernelSize) / stride + 1
        let count = context.needsBackward ? N * C * P * Q : 0
        var argmax = [Int32]()
        var codes = [UInt8]()
        let output = Tensor(shape: [N, C, P, Q]) { y in
            input.scalars.withUnsafeBufferPointer { x in
                if isTwoByTwo {
                    codes = [UInt8](unsafeUninitializedCapacity: count) { code, initialized in
                        for plane in 0..<(N * C) {
                            maxPool2x2(
                                x.baseAddress! + plane * H * W, rowLength: W, y.baseAddress! + plane * P * Q, P: P, Q: Q,
                                codes: context.needsBackward ? code.baseAddress! + plane * P * Q : nil, relu: false)
                        }
                        initialized = count
                    }
                    return
                }
                argmax = [Int32](repeating: 0, count: count)
                argmax.withUnsafeMutableBufferPointer { index in
                    for plane in 0..<(N * C) {
                        maxPoolPlane(
                            x.baseAddress! + plane * H * W, y.baseAddress! + plane * P * Q,
                            context.needsBackward ? index.baseAddress! + plane * P * Q : nil, H: H, W: W, P: P, Q: Q)
                    }
                }
            }
        }
        return (output, Cache(inputShape: input.shape, argmax: argmax, codes: codes))
    }

    /// Pools one H×W plane into P×Q (any window and stride), recording each winner's flat
    /// index when `index` is given. Branch-free selects: on noisy images a branch per pixel
    /// would mispredict half the time.
    @inline(__always)
    private func maxPoolPlane(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ index: UnsafeMutablePointer<Int32>?,
        H: Int, W: Int, P: Int, Q: Int
    ) {
        let (k, stride) = (kernelSize, self.stride)
        for p in 0..<P {
            for q in 0..<Q {
                var best = p * stride * W + q * stride
                var bestValue = x[best]
                for r in 0..<k {
                    let rowStart = (p * stride + r) * W + q * stride
                    for s in 0..<k {
                        let value = x[rowStart + s]
                        let better = value > bestValue || value != value
                        bestValue = better ? value : bestValue
                        best = better ? rowStart + s : best
                    }
                }
                y[p * Q + q] = bestValue
                index?[p * Q + q] = Int32(best)
            }
        }
    }

    public func backward(
        _ outputGradient: Tensor, cache: Cache, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        guard needsInputGradient else { return (nil, []) }
        let s = cache.inputShape
        let (planes, H, W) = (s[0] * s[1], s[2], s[3])
        let outputPlane = outputGradient.itemCount / s[1]
        if !cache.codes.isEmpty {
            let dinput = Tensor(shape: s) { dx in
                outputGradient.scalars.withUnsafeBufferPointer { dy in
                    cache.codes.withUnsafeBufferPointer { codes in
                        for plane in 0..<planes {
                            maxUnpool2x2(
                                dy.baseAddress! + plane * outputPlane, codes: codes.baseAddress! + plane * outputPlane,
                                P: H / 2, Q: W / 2, into: dx.baseAddress! + plane * H * W, H: H, W: W)
                        }
                    }
                }
            }
            return (dinput, [])
        }
        var dinput = Tensor(shape: s)
        dinput.scalars.withUnsafeMutableBufferPointer { dx in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                cache.argmax.withUnsafeBufferPointer { index in
                    for plane in 0..<planes {
                        let dxp = dx.baseAddress! + plane * H * W
                        for o in (plane * outputPlane)..<((plane + 1) * outputPlane) {
                            dxp[Int(index[o])] += dy[o]
                        }
                    }
                }
            }
        }
        return (dinput, [])
    }
}

/// The code ``maxPool2x2`` records for a window whose gradient is dropped (ReLU'd away);
/// any code of 4 or more means the same.
let noWinner: UInt8 = 4

/// 2×2 max pooling with stride 2 of one plane whose rows are `rowLength` floats apart, into
/// y[P, Q]; with `relu`, the result is also rectified (max(x, 0), NaN kept), which equals
/// pooling the rectified plane.
///
/// When `codes` is given, each window's winner is recorded in one byte: 0, 1, 2, 3 for the
/// top-left, top-right, bottom-left and bottom-right pixel (the first maximum in row-major
/// order wins ties; among NaNs the last, as in PyTorch), or ``noWinner`` (or more) when
/// ReLU zeroed the result: its gradient is then 0 everywhere in the window, as it would be
/// through a separate ReLU, where only a positive maximum passes a gradient.
///
/// Four windows at a time: two rows of eight floats, split into their even and odd columns.
/// When Q is not a multiple of 4, the last four windows of a row are done again as one
/// overlapping vector (they write the same values twice), so there is no scalar tail.
/// Branch-free selects, since on noisy images branches would mispredict often.
func maxPool2x2(
    _ x: UnsafePointer<Float>, rowLength W: Int, _ y: UnsafeMutablePointer<Float>, P: Int, Q: Int,
    codes: UnsafeMutablePointer<UInt8>?, relu: Bool
) {
    guard Q >= 4 else {
        maxPool2x2Narrow(x, rowLength: W, y, P: P, Q: Q, codes: codes, relu: relu)
        return
    }
    for p in 0..<P {
        let top = x + 2 &* p &* W
        let bottom = top + W
        let out = y + p &* Q
        let code = codes.map { $0 + p &* Q }
        var q = 0
        while true {
            let row0 = UnsafeRawPointer(top + 2 &* q).loadUnaligned(as: SIMD8<Float>.self)
            let row1 = UnsafeRawPointer(bottom + 2 &* q).loadUnaligned(as: SIMD8<Float>.self)
            let (a, b, c, d) = (row0.evenHalf, row0.oddHalf, row1.evenHalf, row1.oddHalf)
            if relu {
                let (m, winner) = reluMax4(a, b, c, d)
                UnsafeMutableRawPointer(out + q).storeBytes(of: m, as: SIMD4<Float>.self)
                if let code {
                    UnsafeMutableRawPointer(code + q).storeBytes(of: SIMD4<UInt8>(truncatingIfNeeded: winner), as: SIMD4<UInt8>.self)
                }
            } else {
                let (m, winner) = max4(a, b, c, d)
                UnsafeMutableRawPointer(out + q).storeBytes(of: m, as: SIMD4<Float>.self)
                if let code {
                    UnsafeMutableRawPointer(code + q).storeBytes(of: SIMD4<UInt8>(truncatingIfNeeded: winner), as: SIMD4<UInt8>.self)
                }
            }
            if q &+ 4 == Q { break }
            q = min(q &+ 4, Q &- 4)
        }
    }
}

/// The maxima of four windows whose pixels are a, b (top row) and c, d (bottom row), and
/// their winners, with the exact rules: the first maximum in row-major order wins, a NaN
/// beats anything and the last NaN wins.
@inline(__always)
private func max4(
    _ a: SIMD4<Float>, _ b: SIMD4<Float>, _ c: SIMD4<Float>, _ d: SIMD4<Float>
) -> (SIMD4<Float>, SIMD4<Int32>) {
    let bWins = (b .> a) .| (b .!= b)
    let dWins = (d .> c) .| (d .!= d)
    let ab = a.replacing(with: b, where: bWins)
    let cd = c.replacing(with: d, where: dWins)
    let cdWins = (cd .> ab) .| (cd .!= cd)
    var winner = SIMD4<Int32>(repeating: 0).replacing(with: 1, where: bWins)
    winner.replace(with: SIMD4<Int32>(repeating: 2).replacing(with: 3, where: dWins), where: cdWins)
    return (ab.replacing(with: cd, where: cdWins), winner)
}

/// ``max4`` followed by ReLU, cheaper: only positive maxima need a winner, and a window
/// holding NaN has none (NaN is not positive), so the NaN rules reduce to "the result is
/// NaN". `x.replacing(with: y, where: y .> x)` compiles to one `maxps`; a NaN it may drop
/// is put back from an unordered compare. The winner is the first pixel equal to the
/// maximum (the row-major tie rule), found with compares and masks:
/// code = ¬eqA & (1 + ¬eqB & (1 + ¬eqC & 1)), then 4 or more when the result is not positive.
@inline(__always)
private func reluMax4(
    _ a: SIMD4<Float>, _ b: SIMD4<Float>, _ c: SIMD4<Float>, _ d: SIMD4<Float>
) -> (SIMD4<Float>, SIMD4<Int32>) {
    let ab = a.replacing(with: b, where: b .> a)
    let cd = c.replacing(with: d, where: d .> c)
    var m = ab.replacing(with: cd, where: cd .> ab)
    // all bits set (a NaN) where any of the four is NaN
    let hasNaN = (a .!= a) .| (b .!= b) .| (c .!= c) .| (d .!= d)
    m = unsafeBitCast(unsafeBitCast(m, to: SIMD4<Int32>.self) | unsafeBitCast(hasNaN, to: SIMD4<Int32>.self), to: SIMD4<Float>.self)
    let positive = m .> 0
    m.replace(with: 0, where: m .<= 0)  // NaN stays
    let one = SIMD4<Int32>(repeating: 1)
    let eqA = unsafeBitCast(a .== m, to: SIMD4<Int32>.self)
    let eqB = unsafeBitCast(b .== m, to: SIMD4<Int32>.self)
    let eqC = unsafeBitCast(c .== m, to: SIMD4<Int32>.self)
    var winner = ~eqA & (one &+ (~eqB & (one &+ (~eqC & one))))
    winner |= ~unsafeBitCast(positive, to: SIMD4<Int32>.self) & SIMD4<Int32>(repeating: Int32(noWinner))
    return (m, winner)
}

/// ``maxPool2x2`` for planes less than eight pixels wide, one window at a time.
private func maxPool2x2Narrow(
    _ x: UnsafePointer<Float>, rowLength W: Int, _ y: UnsafeMutablePointer<Float>, P: Int, Q: Int,
    codes: UnsafeMutablePointer<UInt8>?, relu: Bool
) {
    for p in 0..<P {
        for q in 0..<Q {
            let top = x + 2 * p * W + 2 * q
            let (a, b, c, d) = (top[0], top[1], top[W], top[W + 1])
            let bWins = b > a || b != b
            let dWins = d > c || d != d
            let ab = bWins ? b : a
            let cd = dWins ? d : c
            let cdWins = cd > ab || cd != cd
            let m = cdWins ? cd : ab
            y[p * Q + q] = relu && m <= 0 ? 0 : m
            codes?[p * Q + q] = relu && !(m > 0) ? noWinner : cdWins ? (dWins ? 3 : 2) : (bWins ? 1 : 0)
        }
    }
}

/// The backward pass of ``maxPool2x2``: writes the gradient of a whole H×W plane, dy[p, q]
/// at each window's winner and 0 elsewhere (also in the last row or column that an odd size
/// leaves outside every window). Overwrites dx, so it needs no zeroing first.
func maxUnpool2x2(
    _ dy: UnsafePointer<Float>, codes: UnsafePointer<UInt8>, P: Int, Q: Int, into dx: UnsafeMutablePointer<Float>,
    H: Int, W: Int
) {
    for p in 0..<P {
        let top = dx + 2 &* p &* W
        let bottom = top + W
        let g = dy + p &* Q
        let code = codes + p &* Q
        if Q < 4 {
            for q in 0..<Q {
                top[2 &* q] = code[q] == 0 ? g[q] : 0
                top[2 &* q &+ 1] = code[q] == 1 ? g[q] : 0
                bottom[2 &* q] = code[q] == 2 ? g[q] : 0
                bottom[2 &* q &+ 1] = code[q] == 3 ? g[q] : 0
            }
        } else {
            // four windows at a time, the last four overlapping when Q is not a multiple of 4
            var q = 0
            while true {
                let gradient = UnsafeRawPointer(g + q).loadUnaligned(as: SIMD4<Float>.self)
                let winner = SIMD4<Int32>(truncatingIfNeeded: UnsafeRawPointer(code + q).loadUnaligned(as: SIMD4<UInt8>.self))
                let zero = SIMD4<Float>()
                let a = zero.replacing(with: gradient, where: winner .== 0)
                let b = zero.replacing(with: gradient, where: winner .== 1)
                let c = zero.replacing(with: gradient, where: winner .== 2)
                let d = zero.replacing(with: gradient, where: winner .== 3)
                // interleave back into image columns: a0 b0 a1 b1 … and c0 d0 c1 d1 …
                let row0 = SIMD8<Float>(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3])
                let row1 = SIMD8<Float>(c[0], d[0], c[1], d[1], c[2], d[2], c[3], d[3])
                UnsafeMutableRawPointer(top + 2 &* q).storeBytes(of: row0, as: SIMD8<Float>.self)
                UnsafeMutableRawPointer(bottom + 2 &* q).storeBytes(of: row1, as: SIMD8<Float>.self)
                if q &+ 4 == Q { break }
                q = min(q &+ 4, Q &- 4)
            }
        }
        if W > 2 &* Q {
            (top + 2 &* Q).initialize(repeating: 0, count: W &- 2 &* Q)
            (bottom + 2 &* Q).initialize(repeating: 0, count: W &- 2 &* Q)
        }
    }
    (dx + 2 &* P &* W).initialize(repeating: 0, count: (H &- 2 &* P) &* W)
}
