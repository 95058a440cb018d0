import Testing

@testable import NeuralNet

/// Checks the hand-vectorised kernels (2×2 pooling, the fused conv → ReLU → pool step,
/// the stride-1 im2col/col2im paths) against plain references.
@Suite("Kernels: vectorised paths against plain references")
struct KernelTests {
    /// 2×2, stride-2 max pooling done the obvious way: the first maximum in row-major
    /// order wins, a NaN beats anything (the last NaN wins); returns values and, per input
    /// pixel, the gradient of Σ output·weights.
    static func referencePool(_ x: Tensor, weights: Tensor) -> (output: [Float], gradient: [Float]) {
        let (N, C, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (P, Q) = (H / 2, W / 2)
        var output = [Float](repeating: 0, count: N * C * P * Q)
        var gradient = [Float](repeating: 0, count: x.count)
        for plane in 0..<(N * C) {
            for p in 0..<P {
                for q in 0..<Q {
                    var best = plane * H * W + 2 * p * W + 2 * q
                    for (r, s) in [(0, 1), (1, 0), (1, 1)] {
                        let i = plane * H * W + (2 * p + r) * W + 2 * q + s
                        if x.scalars[i] > x.scalars[best] || x.scalars[i].isNaN { best = i }
                    }
                    let o = (plane * P + p) * Q + q
                    output[o] = x.scalars[best]
                    gradient[best] += weights.scalars[o]
                }
            }
        }
        return (output, gradient)
    }

    /// Values with many ties (small integers), some negative, and a few NaNs.
    static func tiedInput(_ shape: [Int], seed: UInt64, nans: Bool) -> Tensor {
        var generator = SplitMix64(seed: seed)
        return Tensor(shape: shape, scalars: (0..<Tensor.elementCount(shape)).map { _ in
            let roll = generator.next() % 100
            if nans && roll < 3 { return .nan }
            return Float(Int(roll % 5) - 1)
        })
    }

    /// Equal element by element, NaN equal to NaN.
    static func same(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }
    }

    @Test("2×2 max pooling: ties, NaN, odd and narrow planes", arguments: [
        (2, 2), (3, 5), (4, 7), (5, 8), (7, 9), (8, 16), (13, 13), (11, 11), (26, 26), (6, 26), (9, 30),
    ])
    func pooling(height: Int, width: Int) {
        for nans in [false, true] {
            let input = Self.tiedInput([2, 3, height, width], seed: UInt64(height * 100 + width), nans: nans)
            let layer = MaxPool2D(kernelSize: 2)
            let (output, cache) = layer.forward(input, context: ForwardContext())
            let weights = randomTensor(output.shape, seed: 3)
            let expected = Self.referencePool(input, weights: weights)
            #expect(Self.same(output.scalars, expected.output), "\(height)×\(width) forward")
            let inference = layer.forward(input, context: ForwardContext(needsBackward: false)).output
            #expect(Self.same(inference.scalars, expected.output), "\(height)×\(width) inference")
            let dinput = layer.backward(weights, cache: cache, needsInputGradient: true, needsParameterGradients: false)
            #expect(dinput.inputGradient?.scalars == expected.gradient, "\(height)×\(width) backward")
        }
    }

    /// Runs conv → ReLU → pool layer by layer and as the fused step; both must agree.
    func compareFused(_ conv: Conv2D, input: Tensor, sourceLocation: SourceLocation = #_sourceLocation) {
        let context = ForwardContext()
        let (convOut, convCache) = conv.forward(input, context: context)
        let (reluOut, reluCache) = ReLU().forward(convOut, context: context)
        let (poolOut, poolCache) = MaxPool2D(kernelSize: 2).forward(reluOut, context: context)
        let block = ConvReLUPool(conv: conv)
        let (fusedOut, fusedCache) = block.forward(input, needsBackward: true)
        assertClose(fusedOut, poolOut, rtol: 1e-5, atol: 1e-6, "forward", sourceLocation: sourceLocation)
        #expect(block.forward(input, needsBackward: false).output == fusedOut, sourceLocation: sourceLocation)

        let weights = randomTensor(poolOut.shape, seed: 21)
        let dpool = MaxPool2D(kernelSize: 2).backward(weights, cache: poolCache, needsInputGradient: true, needsParameterGradients: false)
        let drelu = ReLU().backward(dpool.inputGradient!, cache: reluCache, needsInputGradient: true, needsParameterGradients: false)
        let dconv = conv.backward(drelu.inputGradient!, cache: convCache, needsInputGradient: true, needsParameterGradients: true)
        let fused = block.backward(weights, cache: fusedCache, needsInputGradient: true, needsParameterGradients: true)
        assertClose(fused.inputGradient, dconv.inputGradient!, rtol: 1e-4, atol: 1e-5, "input gradient", sourceLocation: sourceLocation)
        #expect(fused.parameterGradients.count == 2, sourceLocation: sourceLocation)
        for (got, expected) in zip(fused.parameterGradients, dconv.parameterGradients) {
            assertClose(got, expected, rtol: 1e-4, atol: 1e-4, "parameter gradient", sourceLocation: sourceLocation)
        }
        let inputOnly = block.backward(weights, cache: fusedCache, needsInputGradient: true, needsParameterGradients: false)
        #expect(inputOnly.inputGradient == fused.inputGradient && inputOnly.parameterGradients.isEmpty, sourceLocation: sourceLocation)
        let parametersOnly = block.backward(weights, cache: fusedCache, needsInputGradient: false, needsParameterGradients: true)
        #expect(parametersOnly.inputGradient == nil && parametersOnly.parameterGradients == fused.parameterGradients, sourceLocation: sourceLocation)
    }

    @Test("fused conv → ReLU → 2×2 pool equals the three layers", arguments: [
        // (images, channels, size, filters, kernel, stride, padding)
        (5, 1, 28, 4, 3, 1, 0), (3, 3, 13, 5, 3, 1, 0), (6, 2, 14, 3, 5, 1, 2), (2, 2, 9, 3, 3, 2, 1), (1, 4, 6, 2, 3, 1, 0),
        (2, 3, 11, 4, 3, 1, 1), (2, 2, 20, 3, 4, 1, 0),
    ])
    func fusedStep(images: Int, channels: Int, size: Int, filters: Int, kernel: Int, stride: Int, padding: Int) {
        var generator = SplitMix64(seed: 17)
        let conv = Conv2D(
            inputChannels: channels, outputChannels: filters, kernelSize: kernel, stride: stride, padding: padding,
            generator: &generator)
        compareFused(conv, input: randomTensor([images, channels, size, size], seed: 18))
    }

    @Test("fused step follows the layers' tie rule exactly (integer data: many ties, exact sums)")
    func fusedTies() {
        var generator = SplitMix64(seed: 24)
        func integers(_ shape: [Int], _ values: ClosedRange<Int>) -> Tensor {
            Tensor(shape: shape, scalars: (0..<Tensor.elementCount(shape)).map { _ in
                Float(values.lowerBound + Int(generator.next() % UInt64(values.count)))
            })
        }
        for (channels, size) in [(1, 28), (3, 13)] {
            let conv = Conv2D(weight: integers([4, channels, 3, 3], -1...1), bias: integers([4], -1...1))
            let input = integers([5, channels, size, size], 0...2)
            let context = ForwardContext()
            let (convOut, convCache) = conv.forward(input, context: context)
            let (reluOut, reluCache) = ReLU().forward(convOut, context: context)
            let (poolOut, poolCache) = MaxPool2D(kernelSize: 2).forward(reluOut, context: context)
            let block = ConvReLUPool(conv: conv)
            let (fusedOut, fusedCache) = block.forward(input, needsBackward: true)
            #expect(fusedOut == poolOut)
            let weights = integers(poolOut.shape, 1...3)
            let dpool = MaxPool2D(kernelSize: 2).backward(weights, cache: poolCache, needsInputGradient: true, needsParameterGradients: false)
            let drelu = ReLU().backward(dpool.inputGradient!, cache: reluCache, needsInputGradient: true, needsParameterGradients: false)
            let dconv = conv.backward(drelu.inputGradient!, cache: convCache, needsInputGradient: true, needsParameterGradients: true)
            let fused = block.backward(weights, cache: fusedCache, needsInputGradient: true, needsParameterGradients: true)
            #expect(fused.inputGradient == dconv.inputGradient)
            #expect(fused.parameterGradients == dconv.parameterGradients)
        }
    }

    @Test("fused step propagates NaN like the layers do")
    func fusedNaN() {
        var generator = SplitMix64(seed: 19)
        let conv = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 3, generator: &generator)
        var input = randomTensor([2, 2, 12, 12], seed: 20)
        input.scalars[30] = .nan
        input.scalars[200] = .nan
        let context = ForwardContext(needsBackward: false)
        var x = input
        for layer in [conv, ReLU(), MaxPool2D(kernelSize: 2)] as [any Layer] { x = layer.erasedForward(x, context: context).0 }
        let fused = ConvReLUPool(conv: conv).forward(input, needsBackward: false).output
        #expect(fused.scalars.contains { $0.isNaN })
        #expect(fused.scalars.map(\.isNaN) == x.scalars.map(\.isNaN))
        // The two paths make different GEMM calls, so the sums may round differently: the
        // same layers on |input| with |weights| give Σ|terms| of each pooled output (ReLU and
        // max pooling move a difference by no more than the largest in the window).
        func absolute(_ t: Tensor) -> Tensor { Tensor(shape: t.shape, scalars: t.scalars.map(abs)) }
        let magnitudes = Conv2D(weight: absolute(conv.weight), bias: absolute(conv.bias))
        var bound = absolute(input)
        for layer in [magnitudes, MaxPool2D(kernelSize: 2)] as [any Layer] { bound = layer.erasedForward(bound, context: context).0 }
        let terms = 2 * 3 * 3 + 1
        for i in fused.scalars.indices where !fused.scalars[i].isNaN {
            #expect(abs(fused.scalars[i] - x.scalars[i]) <= sumTolerance(terms: terms, magnitude: bound.scalars[i]), "element \(i)")
        }
    }

    @Test("models fuse conv → ReLU → pool and nothing else")
    func steps() throws {
        var generator = SplitMix64(seed: 1)
        let model = try Model(architecture: .seed, generator: &generator)
        #expect(model.steps.map(\.first) == [0, 3, 6, 7, 8, 9])
        let other = try Model(architecture: Architecture(parsing: "conv4k3 maxpool2 conv4k3 relu maxpool3 flatten dense10"), generator: &generator)
        #expect(other.steps.count == other.layers.count)
    }

    /// Every entry of the plain column matrix that holds a pixel: its row (c·R + r)·R + s, its
    /// column p·Q + q, and the pixel's index in x[C, H, W] (taps in the padding hold 0 and are
    /// skipped).
    static func forEachTap(_ g: ConvGeometry, _ body: (_ row: Int, _ column: Int, _ pixel: Int) -> Void) {
        for c in 0..<g.C {
            for r in 0..<g.R {
                for s in 0..<g.R {
                    for p in 0..<g.P {
                        for q in 0..<g.Q {
                            let h = p * g.stride - g.padding + r
                            let w = q * g.stride - g.padding + s
                            guard (0..<g.H).contains(h), (0..<g.W).contains(w) else { continue }
                            body((c * g.R + r) * g.R + s, p * g.Q + q, (c * g.H + h) * g.W + w)
                        }
                    }
                }
            }
        }
    }

    /// im2col done the obvious way.
    static func referenceColumns(_ x: [Float], _ g: ConvGeometry) -> [Float] {
        var col = [Float](repeating: 0, count: g.columnCount)
        forEachTap(g) { row, column, pixel in col[row * g.PQ + column] = x[pixel] }
        return col
    }

    @Test("im2col and col2im against the plain definition: strides, padding, crops, shared column matrices", arguments: [
        // (channels, height, width, kernel, stride, padding)
        (1, 28, 28, 3, 1, 1), (16, 28, 28, 4, 2, 1), (16, 14, 14, 3, 1, 1), (32, 14, 14, 4, 2, 1), (3, 7, 6, 2, 3, 1),
        (2, 5, 21, 3, 1, 0), (2, 9, 9, 3, 2, 0), (2, 6, 5, 5, 1, 2), (1, 4, 4, 3, 1, 3), (2, 11, 11, 3, 1, 1),
    ])
    func columns(channels: Int, height: Int, width: Int, kernel: Int, stride: Int, padding: Int) {
        let full = ConvGeometry(C: channels, H: height, W: width, F: 1, R: kernel, stride: stride, padding: padding)
        for g in [full, full.cropped(P: full.P / 2 * 2, Q: full.Q / 2 * 2)] where g.PQ > 0 {
            let x = randomTensor([2, channels, height, width], seed: 31).scalars
            let expected = (0..<2).map { Self.referenceColumns(Array(x[($0 * g.CHW)...]), g) }
            // Two images side by side in one column matrix, as the fused step lays them out.
            var col = [Float](repeating: .nan, count: 2 * g.columnCount)
            x.withUnsafeBufferPointer { x in
                col.withUnsafeMutableBufferPointer { col in
                    for image in 0..<2 {
                        im2col(x.baseAddress! + image * g.CHW, col.baseAddress! + image * g.PQ, rowStride: 2 * g.PQ, g)
                    }
                }
            }
            for image in 0..<2 {
                var got: [Float] = []
                for k in 0..<g.K {
                    let start: Int = (k * 2 + image) * g.PQ
                    got += col[start..<(start + g.PQ)]
                }
                #expect(got == expected[image], "im2col \(g)")
            }
            // col2im is im2col's adjoint: each pixel gets the sum of the entries it was copied to.
            let weights = randomTensor([2 * g.columnCount], seed: 32).scalars
            var dx = [Float](repeating: .nan, count: 2 * g.CHW)
            withColumnScratch(count: weights.count) { scratch in
                scratch.update(from: weights, count: weights.count)
                dx.withUnsafeMutableBufferPointer { dx in
                    for image in 0..<2 {
                        col2im(scratch + image * g.PQ, rowStride: 2 * g.PQ, dx.baseAddress! + image * g.CHW, g)
                    }
                }
            }
            for image in 0..<2 {
                var reference = [Double](repeating: 0, count: g.CHW)
                Self.forEachTap(g) { row, column, pixel in
                    reference[pixel] += Double(weights[(row * 2 + image) * g.PQ + column])
                }
                for i in 0..<g.CHW {
                    #expect(abs(Double(dx[image * g.CHW + i]) - reference[i]) <= 1e-5 * max(1, abs(reference[i])), "col2im \(g) pixel \(i)")
                }
            }
        }
    }

    @Test("stride-1 convolution gradients on rows wider than 16 floats")
    func wideConvolution() {
        var generator = SplitMix64(seed: 22)
        let layer = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 3, generator: &generator)
        checkLayerGradients(layer, input: randomTensor([2, 2, 5, 21], seed: 23))
    }
}

@Suite("Trainer: in-place parameter updates")
struct TrainerTests {
    @Test("updateParameters visits every tensor once in order, in place, and leaves copies alone")
    func updatesInPlace() throws {
        var generator = SplitMix64(seed: 32)
        var model = try Model(architecture: ModelTests.small, generator: &generator)
        // Fresh storage: holding the model's own tensors would rightly make the update copy them.
        let original = model.parameters.map { $0.mapScalarsForTest { $0 } }
        func addresses(_ model: Model) -> [UnsafeRawPointer?] {
            model.layers.flatMap { layer -> [UnsafeRawPointer?] in
                switch layer {
                case let conv as Conv2D: [conv.weight, conv.bias].map { $0.scalars.withUnsafeBytes { $0.baseAddress } }
                case let dense as Dense: [dense.weight, dense.bias].map { $0.scalars.withUnsafeBytes { $0.baseAddress } }
                default: []
                }
            }
        }
        let before = addresses(model)
        var visited: [Int] = []
        model.updateParameters { index, parameter in
            visited.append(index)
            parameter.scalars.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] += 1 } }
        }
        #expect(visited == Array(original.indices))
        #expect(addresses(model) == before)  // no tensor was copied
        #expect(model.parameters == original.map { $0.mapScalarsForTest { $0 + 1 } })
        // A copy shares the tensors until one of them changes; then the copy keeps its values.
        let copy = model
        model.updateParameters { _, parameter in
            parameter.scalars.withUnsafeMutableBufferPointer { for i in $0.indices { $0[i] = 0 } }
        }
        #expect(copy.parameters == original.map { $0.mapScalarsForTest { $0 + 1 } })
        #expect(model.parameters.allSatisfy { $0.scalars.allSatisfy { $0 == 0 } })
    }

    @Test("a training step equals gradients plus the optimizer on each parameter, and copies of the model keep their values")
    func trainStep() throws {
        var generator = SplitMix64(seed: 30)
        let model = try Model(architecture: ModelTests.small, generator: &generator)
        let input = randomTensor([6, 1, 28, 28], seed: 31, scale: 0.5)
        let labels = [1, 2, 3, 4, 5, 6]
        for optimizer in [Adam(), SGD(momentum: 0.9)] as [any Optimizer] {
            var trainer = Trainer(model: model, optimizer: optimizer)
            let before = trainer.model
            _ = trainer.train(input, labels: labels, learningRate: 0.01, seed: 7)
            #expect(before.parameters == model.parameters)

            // the same step by hand
            let gradients = model.gradients(
                input, training: 7, needsInputGradient: false, needsParameterGradients: true,
                loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows], gradientScale: 1 / 6) })
            var expected = model.parameters
            for index in expected.indices {
                var state = optimizer.makeState(for: expected[index])
                optimizer.update(
                    &expected[index], gradient: gradients.parameterGradients[index], state: &state, step: 1, learningRate: 0.01)
            }
            #expect(trainer.model.parameters == expected)
            #expect(trainer.optimizerState.count == expected.count)
        }
    }
}

extension Tensor {
    fileprivate func mapScalarsForTest(_ transform: (Float) -> Float) -> Tensor {
        Tensor(shape: shape, scalars: scalars.map(transform))
    }
}
