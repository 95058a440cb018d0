import Foundation
import Testing

@testable import NeuralNet

/// Batch normalisation: a hand-worked batch, finite differences in both modes, statistics
/// over the whole batch rather than per shard, the running buffers and the checkpoint.
@Suite struct BatchNormTests {
    /// A layer with non-trivial parameters and running statistics.
    func layer(features: Int, seed: UInt64) -> BatchNorm {
        var layer = BatchNorm(features: features)
        layer.weight = randomTensor([features], seed: seed)
        layer.bias = randomTensor([features], seed: seed + 1)
        layer.runningMean = randomTensor([features], seed: seed + 2, scale: 0.5)
        layer.runningVariance = Tensor(shape: [features], scalars: (0..<features).map { 0.3 + Float($0) * 0.4 })
        return layer
    }

    @Test func handWorkedBatch() throws {
        // One channel, two items of two positions: mean 4, biased variance 5, unbiased 20/3.
        var norm = BatchNorm(features: 1)
        norm.weight = Tensor(shape: [1], scalars: [2])
        norm.bias = Tensor(shape: [1], scalars: [0.5])
        let x = Tensor(shape: [2, 1, 1, 2], scalars: [1, 3, 5, 7])
        let (y, cache) = norm.forward(x, context: ForwardContext(training: true))
        let deviation = Float(5 + BatchNorm.epsilon).squareRoot()
        let expected: [Float] = [-3, -1, 1, 3].map { 2 * $0 / deviation + 0.5 }
        for (a, b) in zip(y.scalars, expected) { #expect(abs(a - b) < 1e-6) }
        let statistics = try #require(norm.statistics(from: cache))
        #expect(statistics.batch[0].scalars == [4])
        #expect(statistics.batch[1].scalars == [5])
        #expect(abs(statistics.running[0].scalars[0] - 0.4) < 1e-7)  // 0.9·0 + 0.1·4
        #expect(abs(statistics.running[1].scalars[0] - (0.9 + 0.1 * 20 / 3)) < 1e-6)  // 0.9·1 + 0.1·20/3
        #expect(statistics.running[2].shape == [] && statistics.running[2].scalars == [1])
        // Inference with those running statistics is the fixed affine map.
        norm.buffers = statistics.running
        let z = norm.forward(x, context: ForwardContext()).output
        let (scale, shift) = norm.scaleAndShift
        for (a, v) in zip(z.scalars, x.scalars) { #expect(abs(a - (v * scale[0] + shift[0])) < 1e-6) }
        // Inference mode computes no statistics.
        #expect(norm.statistics(from: norm.forward(x, context: ForwardContext()).cache) == nil)
    }

    @Test func gradientsMatchFiniteDifferences() {
        let norm = layer(features: 3, seed: 21)
        // Training mode: μ and σ² depend on every input, and the backward says so.
        checkLayerGradients(norm, input: randomTensor([4, 3, 5, 5], seed: 3), context: ForwardContext(training: true))
        checkLayerGradients(norm, input: randomTensor([6, 3], seed: 4), context: ForwardContext(training: true))
        // Inference mode: the fixed affine map.
        checkLayerGradients(norm, input: randomTensor([2, 3, 4, 4], seed: 5))
    }

    /// A batch of 70 is three shards; its logits, loss gradients and statistics equal those of
    /// the same layers run on the whole batch at once, so the statistics are the batch's.
    @Test func statisticsCoverTheWholeBatch() throws {
        var generator = SplitMix64(seed: 3)
        let architecture = try Architecture(
            parsing: "conv4k3 batchnorm relu maxpool2 flatten dense8 batchnorm relu dense3", inputShape: [1, 8, 8])
        let model = try Model(architecture: architecture, generator: &generator)
        let input = randomTensor([70, 1, 8, 8], seed: 9)
        #expect(Compute.shards(count: 70).count == 3)
        let labels = (0..<70).map { $0 % 3 }
        let result = model.gradients(
            input, training: 1, needsInputGradient: true, needsParameterGradients: true,
            loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows], gradientScale: 1 / 70) })
        var x = input
        var caches: [Any] = []
        for layer in model.layers {
            let (output, cache) = layer.erasedForward(x, context: ForwardContext(training: true, seed: 1))
            caches.append(cache)
            x = output
        }
        for (a, b) in zip(result.logits.scalars, x.scalars) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b))) }
        let whole = model.layers.indices.compactMap { model.layers[$0].erasedStatistics(from: caches[$0]) }
        #expect(whole.count == 2)
        #expect(result.batchBuffers.count == 6 && result.runningBuffers.count == 6)
        for (a, b) in zip(result.runningBuffers, whole.flatMap(\.running)) {
            for (u, v) in zip(a.scalars, b.scalars) { #expect(abs(u - v) <= 1e-5 * max(1, abs(v))) }
        }
        // And the input gradient against finite differences of the whole-batch loss.
        func loss(_ images: Tensor) -> Double {
            let logits = model.gradients(
                images, training: 1, needsInputGradient: false, needsParameterGradients: false,
                loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows], gradientScale: 1) }
            ).losses
            return logits.reduce(0) { $0 + Double($1) } / 70
        }
        let gradient = try #require(result.inputGradient)
        let indices = sampleIndices(input.count, count: 12)
        for (i, numeric) in zip(indices, numericalGradient(of: loss, at: input, indices: indices)) {
            #expect(abs(Double(gradient.scalars[i]) - numeric) <= 2e-3 * max(1, abs(numeric)) + 2e-4)
        }
    }

    /// The trainer keeps the running statistics, which inference then uses; the checkpoint
    /// stores them under PyTorch's names and loads them back, also as PyTorch's I64 counter.
    @Test func trainingKeepsRunningStatisticsAndCheckpointsThem() throws {
        var generator = SplitMix64(seed: 4)
        let architecture = try Architecture(parsing: "flatten dense6 batchnorm relu dense2", inputShape: [1, 2, 2])
        var trainer = Trainer(model: try Model(architecture: architecture, generator: &generator), optimizer: SGD())
        let input = randomTensor([10, 1, 2, 2], seed: 2)
        let labels = (0..<10).map { $0 % 2 }
        for step in 0..<3 { _ = trainer.train(input, labels: labels, learningRate: 0.1, seed: UInt64(step)) }
        let model = trainer.model
        #expect(model.bufferNames == ["bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"])
        #expect(model.buffers[2].scalars == [3])
        #expect(model.buffers[0].scalars.contains { $0 != 0 })

        let url = FileManager.default.temporaryDirectory.appendingPathComponent("bn-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Checkpoint(model: model).write(to: url)
        let loaded = try Checkpoint.load(from: url).model
        #expect(loaded.buffers == model.buffers && loaded.parameters == model.parameters)
        #expect(loaded.logits(input) == model.logits(input))

        var tensors = try Safetensors.read(from: url).tensors
        tensors["bn1.num_batches_tracked"] = nil
        #expect(throws: ArchitectureError("buffer 'bn1.num_batches_tracked' is missing for architecture '\(architecture)'")) {
            try Model(architecture: architecture, parameters: tensors)
        }
        tensors["bn1.num_batches_tracked"] = Tensor(shape: [], scalars: [3])
        tensors["bn1.running_var"] = Tensor(shape: [6], scalars: [1, 1, -1, 1, 1, 1])
        #expect(throws: ArchitectureError("buffer 'bn1.running_var' holds a negative variance")) {
            try Model(architecture: architecture, parameters: tensors)
        }
    }

    @Test func architectureFacts() throws {
        let architecture = try Architecture(parsing: "conv4k3 batchnorm relu flatten dense5 batchnorm dense2", inputShape: [1, 6, 6])
        #expect(architecture.spec == "conv4k3 batchnorm relu flatten dense5 batchnorm dense2")
        #expect(architecture.layerNames == ["conv1", "bn1", nil, nil, "fc1", "bn2", "fc2"])
        #expect(architecture.parameterCount == 40 + 8 + 16 * 4 * 5 + 5 + 10 + 12)
        #expect(throws: ArchitectureError.self) { try Architecture(parsing: "flatten batchnormx dense2") }
    }
}
