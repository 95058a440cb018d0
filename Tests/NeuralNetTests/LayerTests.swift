import Testing

@testable import NeuralNet

@Suite("Layers: forward by hand, backward by finite differences")
struct LayerTests {
    @Test("conv backward matches finite differences", arguments: [
        (kernel: 3, stride: 1, padding: 0), (kernel: 3, stride: 2, padding: 1), (kernel: 5, stride: 1, padding: 2),
        (kernel: 2, stride: 3, padding: 1),
    ])
    func convolutionGradients(kernel: Int, stride: Int, padding: Int) {
        var generator = SplitMix64(seed: 3)
        let layer = Conv2D(inputChannels: 3, outputChannels: 4, kernelSize: kernel, stride: stride, padding: padding, generator: &generator)
        checkLayerGradients(layer, input: randomTensor([2, 3, 7, 6], seed: 4))
    }

    @Test("conv forward by hand: a 2×2 kernel over a 3×3 image")
    func convolutionByHand() {
        let layer = Conv2D(
            weight: Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4]), bias: Tensor(shape: [1], scalars: [0.5]))
        let input = Tensor(shape: [1, 1, 3, 3], scalars: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let (output, _) = layer.forward(input, context: ForwardContext())
        // top-left window [1 2; 4 5]: 1 + 4 + 12 + 20 + 0.5
        #expect(output == Tensor(shape: [1, 1, 2, 2], scalars: [37.5, 47.5, 67.5, 77.5]))
    }

    @Test("conv with padding sees zeros outside the image")
    func convolutionPadding() {
        let layer = Conv2D(
            weight: Tensor(shape: [1, 1, 3, 3], repeating: 1), bias: Tensor(shape: [1]), stride: 1, padding: 1)
        let input = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        // every 3×3 window around a 2×2 image covers all four pixels
        #expect(layer.forward(input, context: ForwardContext()).output == Tensor(shape: [1, 1, 2, 2], repeating: 10))
    }

    @Test("max pooling backward matches finite differences on tie-free input")
    func maxPoolGradients() {
        checkLayerGradients(MaxPool2D(kernelSize: 2), input: randomTensor([2, 3, 7, 7], seed: 5), epsilon: 1e-3)
        checkLayerGradients(MaxPool2D(kernelSize: 3, stride: 2), input: randomTensor([1, 2, 9, 9], seed: 6), epsilon: 1e-3)
    }

    @Test("max pooling gives a tied window's gradient to its first maximum, row-major")
    func maxPoolTies() {
        let layer = MaxPool2D(kernelSize: 2)
        // windows: [0 0; 0 0] → index 0, [1 2; 2 1] → the 2 at row 0, [0 1; 1 1] → row 0 col 1, [3 3; 3 3] → first
        let input = Tensor(shape: [1, 1, 4, 4], scalars: [
            0, 0, 1, 2,
            0, 0, 2, 1,
            0, 1, 3, 3,
            1, 1, 3, 3,
        ])
        let (output, cache) = layer.forward(input, context: ForwardContext())
        #expect(output.scalars == [0, 2, 1, 3])
        let dinput = layer.backward(
            Tensor(shape: [1, 1, 2, 2], scalars: [10, 20, 30, 40]), cache: cache, needsInputGradient: true,
            needsParameterGradients: false
        ).inputGradient
        #expect(dinput?.scalars == [
            10, 0, 0, 20,
            0, 0, 0, 0,
            0, 30, 40, 0,
            0, 0, 0, 0,
        ])
    }

    @Test("dense backward matches finite differences")
    func denseGradients() {
        var generator = SplitMix64(seed: 8)
        checkLayerGradients(Dense(inputFeatures: 7, outputFeatures: 5, generator: &generator), input: randomTensor([4, 7], seed: 9))
    }

    @Test("dense forward by hand")
    func denseByHand() {
        let layer = Dense(weight: Tensor(shape: [2, 3], scalars: [1, 0, -1, 2, 1, 0]), bias: Tensor(shape: [2], scalars: [0.5, -1]))
        let output = layer.forward(Tensor(shape: [1, 3], scalars: [3, 4, 5]), context: ForwardContext()).output
        #expect(output.scalars == [-1.5, 9])  // [3 − 5 + 0.5, 6 + 4 − 1]
    }

    @Test("ReLU backward matches finite differences away from the kink, and is 0 at 0")
    func reluGradients() {
        var input = randomTensor([3, 2, 4, 4], seed: 10)
        input.scalars = input.scalars.map { abs($0) < 0.05 ? $0 + 0.1 : $0 }
        checkLayerGradients(ReLU(), input: input)
        let (_, cache) = ReLU().forward(Tensor(shape: [1, 3], scalars: [-1, 0, 2]), context: ForwardContext())
        let dinput = ReLU().backward(Tensor(shape: [1, 3], repeating: 1), cache: cache, needsInputGradient: true, needsParameterGradients: false)
        #expect(dinput.inputGradient?.scalars == [0, 0, 1])
    }

    @Test("flatten keeps NCHW order and its gradient reshapes back")
    func flatten() {
        let input = randomTensor([2, 3, 2, 2], seed: 11)
        let (output, _) = Flatten().forward(input, context: ForwardContext())
        #expect(output.shape == [2, 12])
        #expect(output.scalars == input.scalars)
        checkLayerGradients(Flatten(), input: input)
    }

    @Test("dropout: identity in inference, masked and rescaled in training, gradient through the same mask")
    func dropout() {
        let layer = Dropout(probability: 0.5)
        let input = randomTensor([4, 50], seed: 12)
        #expect(layer.forward(input, context: ForwardContext(training: false)).output == input)
        let context = ForwardContext(training: true, seed: 42)
        let output = layer.forward(input, context: context).output
        let kept = zip(output.scalars, input.scalars).filter { $0.0 != 0 }
        #expect(kept.allSatisfy { $0.0 == 2 * $0.1 })
        #expect(kept.count > 60 && kept.count < 140)
        checkLayerGradients(layer, input: input, context: context)
        // Masks are keyed by item index, not by where the batch was cut.
        let tail = layer.forward(input.batch(2..<4), context: ForwardContext(training: true, seed: 42, firstItem: 2)).output
        #expect(tail == output.batch(2..<4))
    }
}
