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

    /// The cache: the input's shape and, per output element, the flat index of the
    /// winning pixel within its channel plane.
    public struct Cache {
        let inputShape: [Int]
        let argmax: [Int32]
    }

    public func forward(_ input: Tensor, context: ForwardContext) -> (output: Tensor, cache: Cache) {
        let (N, C, H, W) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let P = (H - kernelSize) / stride + 1
        let Q = (W - kernelSize) / stride + 1
        var argmax = [Int32](repeating: 0, count: context.needsBackward ? N * C * P * Q : 0)
        let output = Tensor(shape: [N, C, P, Q]) { y in
            input.scalars.withUnsafeBufferPointer { x in
                argmax.withUnsafeMutableBufferPointer { index in
                    for plane in 0..<(N * C) {
                        maxPoolPlane(
                            x.baseAddress! + plane * H * W, y.baseAddress! + plane * P * Q,
                            context.needsBackward ? index.baseAddress! + plane * P * Q : nil, H: H, W: W, P: P, Q: Q)
                    }
                }
            }
        }
        return (output, Cache(inputShape: input.shape, argmax: argmax))
    }

    /// Pools one H×W plane into P×Q, recording each winner's flat index when `index` is given.
    /// Branch-free selects: on noisy images a branch per pixel would mispredict half the time.
    @inline(__always)
    private func maxPoolPlane(
        _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ index: UnsafeMutablePointer<Int32>?,
        H: Int, W: Int, P: Int, Q: Int
    ) {
        let (k, stride) = (kernelSize, self.stride)
        if k == 2 && stride == 2 {
            for p in 0..<P {
                let row0 = x + 2 * p * W
                let row1 = row0 + W
                var q = 0
                // four outputs at a time from eight columns of each row
                while q + 4 <= Q {
                    let top = UnsafeRawPointer(row0 + 2 * q).loadUnaligned(as: SIMD8<Float>.self)
                    let bottom = UnsafeRawPointer(row1 + 2 * q).loadUnaligned(as: SIMD8<Float>.self)
                    let (a, b, c, d) = (top.evenHalf, top.oddHalf, bottom.evenHalf, bottom.oddHalf)
                    // first maximum in row-major order wins ties; NaN propagates
                    let bWins = (b .> a) .| (b .!= b)
                    let dWins = (d .> c) .| (d .!= d)
                    let ab = a.replacing(with: b, where: bWins)
                    let cd = c.replacing(with: d, where: dWins)
                    let cdWins = (cd .> ab) .| (cd .!= cd)
                    UnsafeMutableRawPointer(y + p * Q + q).storeBytes(of: ab.replacing(with: cd, where: cdWins), as: SIMD4<Float>.self)
                    if let index {
                        let base = SIMD4<Int32>(0, 2, 4, 6) &+ Int32(2 * p * W + 2 * q)
                        let abIndex = base.replacing(with: base &+ 1, where: bWins)
                        let cdIndex = (base &+ Int32(W)).replacing(with: base &+ Int32(W + 1), where: dWins)
                        UnsafeMutableRawPointer(index + p * Q + q).storeBytes(
                            of: abIndex.replacing(with: cdIndex, where: cdWins), as: SIMD4<Int32>.self)
                    }
                    q += 4
                }
                while q < Q {
                    let (a, b, c, d) = (row0[2 * q], row0[2 * q + 1], row1[2 * q], row1[2 * q + 1])
                    let bWins = b > a || b != b
                    let dWins = d > c || d != d
                    let ab = bWins ? b : a
                    let cd = dWins ? d : c
                    let cdWins = cd > ab || cd != cd
                    y[p * Q + q] = cdWins ? cd : ab
                    if let index {
                        let base = Int32(2 * p * W + 2 * q)
                        let abIndex = bWins ? base + 1 : base
                        let cdIndex = dWins ? base + Int32(W) + 1 : base + Int32(W)
                        index[p * Q + q] = cdWins ? cdIndex : abIndex
                    }
                    q += 1
                }
            }
            return
        }
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
        let planeSize = s[2] * s[3]
        let outputPlane = outputGradient.itemCount / s[1]
        var dinput = Tensor(shape: s)
        dinput.scalars.withUnsafeMutableBufferPointer { dx in
            outputGradient.scalars.withUnsafeBufferPointer { dy in
                cache.argmax.withUnsafeBufferPointer { index in
                    for plane in 0..<(s[0] * s[1]) {
                        let dxp = dx.baseAddress! + plane * planeSize
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
