import Testing

@testable import NeuralNet

@Suite("Model: architectures, sharded forward and backward")
struct ModelTests {
    @Test("seed and madry have PyTorch's names, shapes and parameter counts")
    func namesAndCounts() throws {
        var generator = SplitMix64(seed: 1)
        let seed = try Model(architecture: .seed, generator: &generator)
        #expect(seed.parameterNames == [
            "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
        ])
        #expect(seed.parameters.map(\.shape) == [[32, 1, 3, 3], [32], [64, 32, 3, 3], [64], [128, 1600], [128], [10, 128], [10]])
        #expect(seed.parameterCount == 225_034)
        #expect(Architecture.seed.parameterCount == 225_034)
        let madry = try Model(architecture: .madry, generator: &generator)
        #expect(madry.parameters[4].shape == [1024, 3136])
        #expect(madry.parameterCount == 3_274_634)
    }

    @Test("PyTorch default initialisation: weights within ±1/√fan_in")
    func initialisation() throws {
        var generator = SplitMix64(seed: 2)
        let model = try Model(architecture: .seed, generator: &generator)
        let fc1 = model.parameters[4].scalars
        let bound = 1 / Float(1600).squareRoot()
        #expect(fc1.allSatisfy { abs($0) <= bound })
        #expect(fc1.max()! > 0.9 * bound && fc1.min()! < -0.9 * bound)
    }

    @Test("architecture specs parse and print back canonically")
    func architectureRoundTrip() throws {
        let spec = "conv8k3s2p1 relu maxpool2s1 flatten dropout0.25 dense10"
        let architecture = try Architecture(parsing: spec)
        #expect(architecture.spec == spec)
        #expect(try Architecture(parsing: "CONV8K3S2P1, relu, maxpool2s1, flatten, dropout0.25, dense10") == architecture)
        #expect(Architecture.seed.spec == "conv32k3 relu maxpool2 conv64k3 relu maxpool2 flatten dense128 relu dense10")
        #expect(try architecture.validate() == [[8, 14, 14], [8, 14, 14], [8, 13, 13], [1352], [1352], [10]])
    }

    @Test("architecture errors say what is wrong")
    func architectureErrors() {
        #expect(throws: ArchitectureError("layer 3 (dense10) needs a vector: add 'flatten' before it")) {
            try Architecture(parsing: "conv8k3 relu dense10")
        }
        #expect(throws: ArchitectureError("layer 'conv8' needs a kernel size k<R> (an integer ≥ 1)")) {
            try Architecture(parsing: "conv8 flatten dense10")
        }
        #expect(throws: ArchitectureError("the last layer must output class scores (a vector), got [16, 26, 26]")) {
            try Architecture(parsing: "conv16k3")
        }
        #expect(throws: ArchitectureError.self) { try Architecture(parsing: "banana") }
        #expect(throws: ArchitectureError.self) { try Architecture(parsing: "flatten dropout1.5 dense10") }
        #expect(throws: ArchitectureError.self) { try Architecture(parsing: "") }
        #expect(throws: ArchitectureError.self) { try Architecture(parsing: "conv8k3k3 flatten dense10") }
        #expect((try? Architecture.resolve("SEED")) == .seed)
    }

    @Test("each layer's facts: token, output shape, parameters, FLOPs and PyTorch module, worked by hand for seed")
    func layerFacts() throws {
        let seed = Architecture.seed
        #expect(seed.shapes == [
            [1, 28, 28], [32, 26, 26], [32, 26, 26], [32, 13, 13], [64, 11, 11], [64, 11, 11], [64, 5, 5], [1600],
            [128], [128], [10],
        ])
        let facts = seed.layers.indices.map { seed.layers[$0].facts(input: seed.shapes[$0]) }
        #expect(facts.map(\.token) == seed.spec.split(separator: " ").map(String.init))
        #expect(try facts.map { try $0.output.get() } == Array(seed.shapes.dropFirst()))
        // conv1 32·1·3·3 + 32, conv2 64·32·3·3 + 64, fc1 128·1600 + 128, fc2 10·128 + 10
        #expect(facts.map(\.parameters) == [320, 0, 0, 18_496, 0, 0, 0, 204_928, 0, 1290])
        #expect(facts.compactMap(\.parameters).reduce(0, +) == seed.parameterCount)
        // 2 FLOPs per multiply-add: conv1 2·32·9·26·26, conv2 2·64·32·9·11·11, fc1 2·128·1600, fc2 2·10·128
        #expect(seed.forwardFLOPs == [389_376, 0, 0, 4_460_544, 0, 0, 0, 409_600, 0, 2560])
        #expect(facts.map(\.module) == ["conv", nil, nil, "conv", nil, nil, nil, "fc", nil, "fc"])
        #expect(seed.layerNames == ["conv1", nil, nil, "conv2", nil, nil, nil, "fc1", nil, "fc2"])
        // Strides and padding: (28 + 2·1 − 3)/2 + 1 = 14; a 3-window stride-2 pool of 14: (14 − 3)/2 + 1 = 6.
        let strided = try Architecture(parsing: "conv8k3s2p1 maxpool3s2 flatten dense10")
        #expect(strided.shapes == [[1, 28, 28], [8, 14, 14], [8, 6, 6], [288], [10]])
        #expect(Architecture.LayerSpec.maxPool(kernelSize: 3, stride: 2).token == "maxpool3s2")
        #expect(Architecture.LayerSpec.dropout(probability: 0.5).token == "dropout0.5")
        // What does not fit says so.
        #expect(throws: ArchitectureError("layer 1 (conv8k30): kernel 30 is larger than its padded input [1, 28, 28]")) {
            try Architecture(parsing: "conv8k30 flatten dense10")
        }
        #expect(throws: ArchitectureError("layer 2 (maxpool2) needs an image, not a vector")) {
            try Architecture(parsing: "flatten maxpool2 dense10")
        }
        #expect(throws: ArchitectureError("layer 1 (maxpool30): window 30 is larger than its input [1, 28, 28]")) {
            try Architecture(parsing: "maxpool30 flatten dense10")
        }
    }

    /// A small network with every layer kind, for whole-model checks.
    static let small = try! Architecture(parsing: "conv4k3 relu maxpool2 conv6k3p1 relu maxpool2 flatten dense12 relu dense10")

    @Test("model input and parameter gradients match finite differences across shards")
    func modelGradients() throws {
        var generator = SplitMix64(seed: 3)
        let model = try Model(architecture: Self.small, generator: &generator)
        let count = 40  // two shards
        let input = randomTensor([count, 1, 28, 28], seed: 4, scale: 0.5)
        let labels = (0..<count).map { $0 % 10 }
        let loss: LogitLoss = { logits, rows in crossEntropy(logits: logits, labels: labels[rows]) }
        func total(_ m: Model, _ x: Tensor) -> Double {
            crossEntropy(logits: m.logits(x), labels: labels).losses.reduce(0) { $0 + Double($1) }
        }
        let result = model.gradients(input, needsInputGradient: true, needsParameterGradients: true, loss: loss)
        let inputIndices = sampleIndices(input.count, count: 40)
        let numeric = numericalGradient(of: { total(model, $0) }, at: input, indices: inputIndices, epsilon: 1e-3)
        for (i, expected) in zip(inputIndices, numeric) {
            #expect(abs(Double(result.inputGradient!.scalars[i]) - expected) < 5e-3 * max(1, abs(expected)), "input \(i)")
        }
        // Each parameter tensor: the derivative along its own normalised gradient, which must
        // equal the gradient's norm. Element-wise checks (in LayerTests) are too noisy here: the
        // loss is a float32 sum over 40 images with thousands of ReLU and max-pool kinks.
        for p in model.parameters.indices {
            let gradient = result.parameterGradients[p]
            let norm = gradient.scalars.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
            let direction = Float(1 / norm) * gradient
            let epsilon: Float = 2e-4
            func shifted(_ sign: Float) -> Double {
                var copy = model
                copy.parameters[p].add(direction, scaledBy: sign * epsilon)
                return total(copy, input)
            }
            let numeric = (shifted(1) - shifted(-1)) / (2 * Double(epsilon))
            #expect(abs(norm - numeric) < 1e-2 * max(1, norm), "\(model.parameterNames[p]): ‖g‖ = \(norm), slope \(numeric)")
        }
        // Attacks ask for the input gradient only; it is the same and no parameter gradient is made.
        let inputOnly = model.gradients(input, needsInputGradient: true, needsParameterGradients: false, loss: loss)
        #expect(inputOnly.inputGradient == result.inputGradient)
        #expect(inputOnly.parameterGradients.isEmpty)
        #expect(inputOnly.logits == model.logits(input))
    }

    @Test("results are bit-identical with 1 and 2 threads")
    func threadIndependence() throws {
        var generator = SplitMix64(seed: 5)
        let model = try Model(architecture: .seed, generator: &generator)
        let input = randomTensor([70, 1, 28, 28], seed: 6, scale: 0.5)
        let labels = (0..<70).map { $0 % 10 }
        func run(threads: Int) -> ModelGradients {
            let saved = Compute.threadCount
            Compute.threadCount = threads
            defer { Compute.threadCount = saved }
            return model.gradients(
                input, needsInputGradient: true, needsParameterGradients: true,
                loss: { logits, rows in crossEntropy(logits: logits, labels: labels[rows]) })
        }
        let one = run(threads: 1)
        let two = run(threads: 2)
        #expect(one.parameterGradients == two.parameterGradients)
        #expect(one.inputGradient == two.inputGradient)
        #expect(one.logits == two.logits)
    }

    @Test("shards are balanced, cover the batch, and depend on its size only")
    func shards() {
        #expect(Compute.shards(count: 64) == [0..<32, 32..<64])
        #expect(Compute.shards(count: 100) == [0..<25, 25..<50, 50..<75, 75..<100])
        #expect(Compute.shards(count: 33) == [0..<17, 17..<33])
        #expect(Compute.shards(count: 5) == [0..<5])
        #expect(Compute.shards(count: 0).isEmpty)
    }
}

/// Counts live instances, to catch results that `Compute.map` fails to release.
final class LiveCounter: @unchecked Sendable {
    nonisolated(unsafe) static var live = 0
    init() { LiveCounter.live += 1 }
    deinit { LiveCounter.live -= 1 }
}

@Suite(.serialized) struct ComputeMapTests {
    @Test func releasesItsResults() {
        let before = LiveCounter.live
        do {
            let results = Compute.map(16) { _ in LiveCounter() }
            #expect(results.count == 16)
        }
        #expect(LiveCounter.live == before)
    }

    @Test func returnsResultsInIndexOrder() {
        #expect(Compute.map(100) { $0 * $0 } == (0..<100).map { $0 * $0 })
    }
}
