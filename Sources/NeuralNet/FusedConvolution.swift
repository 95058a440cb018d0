/// A `Conv2D → ReLU → MaxPool2D(2)` sequence run as one step, a few images at a time.
///
/// ``Model`` runs such a sequence through this instead of layer by layer. The results are
/// those of the three layers (same tie and NaN rules, same gradients), but:
/// - the convolution's output lives only in a small scratch buffer that stays in cache: it
///   is pooled (and rectified, since `max(relu(x)) = relu(max(x))`) as soon as it is made;
/// - backward needs only the layer input and one byte per pooled value (which pixel of the
///   window won, or none when ReLU zeroed it), not the full-size ReLU and conv outputs;
/// - when the convolution's output has an odd height or width, the pooling (which rounds
///   down) never reads its last row or column, and the gradient there is 0: those outputs
///   are not computed at all (for `seed`'s conv2, 10×10 of 11×11, 17% less GEMM work);
/// - ``imagesPerGEMM(_:batchSize:)`` images share one column matrix, so each GEMM is wider
///   (N = images·P·Q) and packs the weights fewer times.
struct ConvReLUPool {
    let conv: Conv2D

    /// What backward needs: the block's input and the pooling codes (see ``maxPool2x2``).
    struct Cache {
        let input: Tensor
        let codes: [UInt8]
    }

    /// Whether `layers[index...]` starts with a sequence this step can run.
    static func matches(_ layers: [any Layer], at index: Int) -> Bool {
        guard index + 2 < layers.count, layers[index] is Conv2D, layers[index + 1] is ReLU,
            let pool = layers[index + 2] as? MaxPool2D
        else { return false }
        return pool.isTwoByTwo
    }

    /// How many images share one GEMM: enough for a wide GEMM while the column matrix
    /// (K × images·P·Q floats) stays within about 600 KB, a good part of the L2 cache.
    /// Depends on the sizes only, so results do not depend on the thread count.
    static func imagesPerGEMM(_ g: ConvGeometry, batchSize: Int) -> Int {
        max(1, min(batchSize, 4, 150_000 / max(1, g.K * g.PQ)))
    }

    /// The convolution restricted to the outputs that the pooling reads.
    func geometry(_ inputShape: [Int]) -> ConvGeometry {
        let full = conv.geometry(inputShape)
        return full.cropped(P: full.P / 2 * 2, Q: full.Q / 2 * 2)
    }

    func forward(_ input: Tensor, needsBackward: Bool) -> (output: Tensor, cache: Cache) {
        let g = geometry(input.shape)
        let N = input.batchSize
        let group = Self.imagesPerGEMM(g, batchSize: N)
        let codeCount = needsBackward ? N * g.F * (g.PQ / 4) : 0
        var codes = [UInt8]()
        let output = Tensor(shape: [N, g.F, g.P / 2, g.Q / 2]) { out in
            codes = [UInt8](unsafeUninitializedCapacity: codeCount) { codes, initialized in
                withScratch(count: (g.K + g.F) * group * g.PQ) { scratch in
                    input.scalars.withUnsafeBufferPointer { x in
                        for first in stride(from: 0, to: N, by: group) {
                            forwardGroup(
                                x.baseAddress!, images: first..<min(first + group, N), g, scratch: scratch,
                                output: out.baseAddress!, codes: needsBackward ? codes.baseAddress! : nil)
                        }
                    }
                }
                initialized = codeCount
            }
        }
        return (output, Cache(input: input, codes: codes))
    }

    /// Forward of `images` (indices into the batch x): their column matrix, one GEMM, and
    /// the pooling of each output plane into `output` (and `codes`).
    private func forwardGroup(
        _ x: UnsafePointer<Float>, images: Range<Int>, _ g: ConvGeometry, scratch: UnsafeMutablePointer<Float>,
        output: UnsafeMutablePointer<Float>, codes: UnsafeMutablePointer<UInt8>?
    ) {
        let n = images.count * g.PQ
        let (col, y) = (scratch, scratch + g.K * n)
        let pooled = g.PQ / 4
        // col[K, n]: image j's columns at j·PQ
        for (j, image) in images.enumerated() {
            im2col(x + image * g.CHW, col + j * g.PQ, rowStride: n, g)
        }
        // y[F, n] = bias + weight[F, K] · col
        conv.bias.scalars.withUnsafeBufferPointer { b in
            for f in 0..<g.F { (y + f * n).initialize(repeating: b[f], count: n) }
        }
        conv.weight.scalars.withUnsafeBufferPointer { w in
            sgemm(m: g.F, n: n, k: g.K, a: w.baseAddress!, lda: g.K, b: col, ldb: n, beta: 1, c: y, ldc: n)
        }
        for (j, image) in images.enumerated() {
            for f in 0..<g.F {
                let plane = (image * g.F + f) * pooled
                maxPool2x2(
                    y + f * n + j * g.PQ, rowLength: g.Q, output + plane, P: g.P / 2, Q: g.Q / 2, codes: codes.map { $0 + plane },
                    relu: true)
            }
        }
    }

    func backward(
        _ outputGradient: Tensor, cache: Cache, needsInputGradient: Bool, needsParameterGradients: Bool
    ) -> (inputGradient: Tensor?, parameterGradients: [Tensor]) {
        let input = cache.input
        let g = geometry(input.shape)
        let N = input.batchSize
        let group = Self.imagesPerGEMM(g, batchSize: N)
        var gradients = Gradients(
            weight: Tensor(shape: needsParameterGradients ? conv.weight.shape : [0]),
            bias: Tensor(shape: needsParameterGradients ? conv.bias.shape : [0]),
            // col2im writes every element of each image's input gradient: no need to zero it
            input: Tensor(shape: needsInputGradient ? input.shape : [0], unsafeUninitialized: { _ in }))
        // scratch: the column matrix (and later its gradient), and dy, the conv output's gradient
        withColumnScratch(count: g.K * group * g.PQ) { col in
            withScratch(count: g.F * group * g.PQ) { dy in
                input.scalars.withUnsafeBufferPointer { x in
                    outputGradient.scalars.withUnsafeBufferPointer { dout in
                        cache.codes.withUnsafeBufferPointer { codes in
                            for first in stride(from: 0, to: N, by: group) {
                                backwardGroup(
                                    x.baseAddress!, images: first..<min(first + group, N), g, outputGradient: dout.baseAddress!,
                                    codes: codes.baseAddress!, col: col, dy: dy, into: &gradients,
                                    needsInputGradient: needsInputGradient, needsParameterGradients: needsParameterGradients)
                            }
                        }
                    }
                }
            }
        }
        return (
            needsInputGradient ? gradients.input : nil,
            needsParameterGradients ? [gradients.weight, gradients.bias] : []
        )
    }

    /// The gradients backward accumulates.
    private struct Gradients {
        var weight: Tensor
        var bias: Tensor
        var input: Tensor
    }

    /// Backward of `images`: dy through the pooling and ReLU, then the parameter gradients
    /// (added to `gradients`) and the images' input gradients.
    private func backwardGroup(
        _ x: UnsafePointer<Float>, images: Range<Int>, _ g: ConvGeometry, outputGradient: UnsafePointer<Float>,
        codes: UnsafePointer<UInt8>, col: UnsafeMutablePointer<Float>, dy: UnsafeMutablePointer<Float>,
        into gradients: inout Gradients, needsInputGradient: Bool, needsParameterGradients: Bool
    ) {
        let n = images.count * g.PQ
        let pooled = g.PQ / 4
        // dy[F, n]: the gradient at each window's winner, 0 elsewhere
        for (j, image) in images.enumerated() {
            for f in 0..<g.F {
                let plane = (image * g.F + f) * pooled
                maxUnpool2x2(
                    outputGradient + plane, codes: codes + plane, P: g.P / 2, Q: g.Q / 2, into: dy + f * n + j * g.PQ,
                    H: g.P, W: g.Q)
            }
        }
        if needsParameterGradients {
            for (j, image) in images.enumerated() {
                im2col(x + image * g.CHW, col + j * g.PQ, rowStride: n, g)
            }
            gradients.weight.scalars.withUnsafeMutableBufferPointer { dw in
                // dweight[F, K] += dy[F, n] · col[K, n]ᵀ
                sgemm(
                    transposeB: true, m: g.F, n: g.K, k: n, a: dy, lda: n, b: col, ldb: n, beta: 1, c: dw.baseAddress!,
                    ldc: g.K)
            }
            gradients.bias.scalars.withUnsafeMutableBufferPointer { db in
                for f in 0..<g.F { db[f] += sum(dy + f * n, count: n) }
            }
        }
        if needsInputGradient {
            conv.weight.scalars.withUnsafeBufferPointer { w in
                // dcol[K, n] = weight[F, K]ᵀ · dy[F, n]
                sgemm(
                    transposeA: true, m: g.K, n: n, k: g.F, a: w.baseAddress!, lda: g.K, b: dy, ldb: n, beta: 0, c: col,
                    ldc: n)
            }
            gradients.input.scalars.withUnsafeMutableBufferPointer { dx in
                for (j, image) in images.enumerated() {
                    col2im(col + j * g.PQ, rowStride: n, dx.baseAddress! + image * g.CHW, g)
                }
            }
        }
    }
}
