/// A network's layout as data: the layers in order and the input shape, enough to
/// rebuild a model from a checkpoint without flags.
///
/// Written as a short spec string, one token per layer:
/// `conv32k3 relu maxpool2 conv64k3 relu maxpool2 flatten dense128 relu dense10`.
/// Tokens: `conv<F>k<R>[s<stride>][p<padding>]`, `maxpool<k>[s<stride>]`, `relu`,
/// `flatten`, `dense<features>`, `dropout<probability>`, `batchnorm`.
public struct Architecture: Sendable, Equatable, CustomStringConvertible {
    /// One layer of the description.
    public enum LayerSpec: Sendable, Equatable {
        case conv(outputChannels: Int, kernelSize: Int, stride: Int, padding: Int)
        case maxPool(kernelSize: Int, stride: Int)
        case relu
        case flatten
        case dense(outputFeatures: Int)
        case dropout(probability: Float)
        case batchNorm
    }

    /// A short name (`seed`, `madry`) or nil for a user's own description.
    public var name: String?
    /// The layers, input to output.
    public var layers: [LayerSpec]
    /// The shape of one input item, `[channels, height, width]`.
    public var inputShape: [Int]

    /// Creates an architecture; call ``validate()`` to check that the shapes fit.
    public init(name: String? = nil, layers: [LayerSpec], inputShape: [Int] = [1, 28, 28]) {
        self.name = name
        self.layers = layers
        self.inputShape = inputShape
    }

    /// conv 32 3×3 + ReLU → maxpool 2 → conv 64 3×3 + ReLU → maxpool 2 → flatten 1600 →
    /// dense 128 + ReLU → dense 10: the case study's network and Deceive's default.
    public static let seed = try! Architecture(
        parsing: "conv32k3 relu maxpool2 conv64k3 relu maxpool2 flatten dense128 relu dense10", name: "seed")

    /// The model of the MNIST adversarial-robustness challenge (Madry et al. 2018):
    /// conv 32 5×5 (same padding) → pool → conv 64 5×5 (same padding) → pool → dense 1024 → 10.
    public static let madry = try! Architecture(
        parsing: "conv32k5p2 relu maxpool2 conv64k5p2 relu maxpool2 flatten dense1024 relu dense10", name: "madry")

    /// The architectures known by name.
    public static let named: [String: Architecture] = ["seed": seed, "madry": madry]

    /// An architecture by name (`seed`, `madry`) or from a spec string.
    public static func resolve(_ nameOrSpec: String) throws(ArchitectureError) -> Architecture {
        if let known = named[nameOrSpec.lowercased()] { return known }
        return try Architecture(parsing: nameOrSpec)
    }

    /// Parses a spec string and checks that its shapes fit `inputShape`.
    public init(parsing spec: String, name: String? = nil, inputShape: [Int] = [1, 28, 28]) throws(ArchitectureError) {
        let tokens = spec.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" }).map(String.init)
        guard !tokens.isEmpty else { throw ArchitectureError("empty architecture description") }
        var layers: [LayerSpec] = []
        for token in tokens {
            layers.append(try Architecture.parseLayer(token.lowercased()))
        }
        self.init(name: name, layers: layers, inputShape: inputShape)
        try validate()
    }

    private static func parseLayer(_ token: String) throws(ArchitectureError) -> LayerSpec {
        func fields(_ rest: Substring, _ keys: [Character]) throws(ArchitectureError) -> [Character: Substring] {
            // "32k3s1p2" → leading number under key " ", then key letters with numbers
            var result: [Character: Substring] = [:]
            var key: Character = " "
            var start = rest.startIndex
            for index in rest.indices where rest[index].isLetter {
                guard keys.contains(rest[index]), result[rest[index]] == nil, rest[index] != key else {
                    throw ArchitectureError("unknown or repeated option '\(rest[index])' in layer '\(token)'")
                }
                result[key] = rest[start..<index]
                key = rest[index]
                start = rest.index(after: index)
            }
            result[key] = rest[start...]
            return result
        }
        func integer(_ text: Substring?, _ what: String, minimum: Int) throws(ArchitectureError) -> Int {
            guard let text, let value = Int(text), value >= minimum, value <= 65_536 else {
                throw ArchitectureError("layer '\(token)' needs \(what) (an integer ≥ \(minimum))")
            }
            return value
        }
        switch token {
        case "relu": return .relu
        case "flatten": return .flatten
        case "batchnorm": return .batchNorm
        case _ where token.hasPrefix("conv"):
            let f = try fields(token.dropFirst(4), ["k", "s", "p"])
            return .conv(
                outputChannels: try integer(f[" "], "a channel count", minimum: 1),
                kernelSize: try integer(f["k"], "a kernel size k<R>", minimum: 1),
                stride: f["s"] == nil ? 1 : try integer(f["s"], "a stride", minimum: 1),
                padding: f["p"] == nil ? 0 : try integer(f["p"], "a padding", minimum: 0))
        case _ where token.hasPrefix("maxpool"):
            let f = try fields(token.dropFirst(7), ["s"])
            let kernel = try integer(f[" "], "a window size", minimum: 1)
            return .maxPool(kernelSize: kernel, stride: f["s"] == nil ? kernel : try integer(f["s"], "a stride", minimum: 1))
        case _ where token.hasPrefix("dense"):
            return .dense(outputFeatures: try integer(token.dropFirst(5), "a feature count", minimum: 1))
        case _ where token.hasPrefix("dropout"):
            guard let p = Float(token.dropFirst(7)), p >= 0, p < 1 else {
                throw ArchitectureError("layer '\(token)' needs a probability in [0, 1), like dropout0.5")
            }
            return .dropout(probability: p)
        default:
            throw ArchitectureError(
                "unknown layer '\(token)' (known: conv<F>k<R>[s<S>][p<P>], maxpool<k>[s<S>], relu, flatten, dense<N>, dropout<p>)")
        }
    }

    /// The canonical spec string.
    public var spec: String { layers.map(\.token).joined(separator: " ") }

    public var description: String { name ?? spec }

    /// The item shape after each layer; throws if a layer does not fit its input or the
    /// network does not end in a vector of class scores.
    @discardableResult
    public func validate() throws(ArchitectureError) -> [[Int]] {
        guard inputShape.count == 3, inputShape.allSatisfy({ $0 > 0 }) else {
            throw ArchitectureError("input shape must be [channels, height, width], got \(inputShape)")
        }
        var shape = inputShape
        var shapes: [[Int]] = []
        for (index, spec) in layers.enumerated() {
            let place = "layer \(index + 1) (\(spec.token))"
            do throws(ArchitectureError) {
                shape = try spec.facts(input: shape).output.get()
            } catch {
                throw ArchitectureError("\(place)\(error.description)")
            }
            // Hostile descriptions: refuse absurd sizes before any arithmetic can overflow.
            guard let elements = Architecture.checkedProduct(shape), elements <= Architecture.maximumActivation else {
                throw ArchitectureError("\(place): its output \(shape) is too large (at most 2^28 values per image)")
            }
            shapes.append(shape)
        }
        guard shape.count == 1, shape[0] >= 2 else {
            throw ArchitectureError("the last layer must output class scores (a vector), got \(shape)")
        }
        let parameters = parameterCount
        guard parameters <= 100_000_000 else {
            throw ArchitectureError("more than 100 million parameters (\(parameters == .max ? "overflowing" : String(parameters))): more than this tool supports")
        }
        return shapes
    }

    /// The largest number of values one layer may output per image.
    static let maximumActivation = 1 << 28

    /// The product of `values`, or nil if it overflows.
    static func checkedProduct(_ values: [Int]) -> Int? {
        var product = 1
        for value in values {
            let (result, overflow) = product.multipliedReportingOverflow(by: value)
            if overflow { return nil }
            product = result
        }
        return product
    }

    /// The number of trainable parameters (`Int.max` for descriptions too large to count,
    /// or whose layers do not fit their inputs).
    public var parameterCount: Int {
        var shape = inputShape
        var total = 0
        for spec in layers {
            let facts = spec.facts(input: shape)
            guard let layer = facts.parameters, let next = try? facts.output.get() else { return .max }
            let (sum, overflow) = total.addingReportingOverflow(layer)
            if overflow { return .max }
            total = sum
            shape = next
        }
        return total
    }

    /// The number of classes (the length of the output vector).
    public var classCount: Int { (try? validate().last?.first) ?? 0 }

    /// The PyTorch module name of each layer that has parameters (`conv1`, `conv2`, `fc1`, …),
    /// nil for the others: the module prefix and its count so far.
    public var layerNames: [String?] {
        var counts: [String: Int] = [:]
        return layers.map { spec in
            guard let module = spec.facts(input: []).module else { return nil }
            counts[module, default: 0] += 1
            return "\(module)\(counts[module] ?? 0)"
        }
    }

    /// The item shape entering each layer, then the output's. The architecture must have
    /// passed ``validate()``.
    public var shapes: [[Int]] { [inputShape] + ((try? validate()) ?? []) }

    /// Builds the layers with PyTorch's default initialisation. The architecture must
    /// have passed ``validate()``.
    func makeLayers<G: RandomNumberGenerator>(generator: inout G) -> [any Layer] {
        let shapes = self.shapes
        return layers.enumerated().map { index, spec in spec.makeLayer(input: shapes[index], generator: &generator) }
    }
}

extension Architecture.LayerSpec {
    /// What the architecture knows about one layer, given the shape of its input item.
    public struct Facts: Sendable {
        /// The layer's spec token, e.g. `conv32k3p1`.
        public var token: String
        /// The output item shape, or why the input does not fit (a message that follows
        /// the layer's name, starting with `: ` or ` `).
        public var output: Result<[Int], ArchitectureError>
        /// The trainable parameters; nil when the count overflows.
        public var parameters: Int?
        /// Forward work per item: 2 FLOPs per multiply-add (convolutions and dense layers).
        public var flops: Int
        /// The PyTorch module prefix of a layer with parameters (`conv`, `fc`), else nil.
        public var module: String?
    }

    /// The layer's spec token.
    public var token: String { facts(input: []).token }

    /// Everything about this layer at `input`, in one place: a new kind of layer adds its
    /// case here, to the parser, and to ``makeLayer(input:generator:)``.
    public func facts(input shape: [Int]) -> Facts {
        let image = shape.count == 3
        let notImage = Result<[Int], ArchitectureError>.failure(ArchitectureError(" needs an image, not a vector"))
        switch self {
        case let .conv(f, k, s, p):
            var output = notImage
            var flops = 0
            if image {
                if shape[1] + 2 * p >= k, shape[2] + 2 * p >= k {
                    let out = [f, (shape[1] + 2 * p - k) / s + 1, (shape[2] + 2 * p - k) / s + 1]
                    output = .success(out)
                    flops = Architecture.checkedProduct([2, f, shape[0], k, k, out[1], out[2]]) ?? .max
                } else {
                    output = .failure(ArchitectureError(": kernel \(k) is larger than its padded input \(shape)"))
                }
            }
            let weights = Architecture.checkedProduct([f, shape.first ?? 0, k, k]).map { $0.addingReportingOverflow(f) }
            return Facts(
                token: "conv\(f)k\(k)" + (s != 1 ? "s\(s)" : "") + (p != 0 ? "p\(p)" : ""), output: output,
                parameters: weights.flatMap { $0.overflow ? nil : $0.partialValue }, flops: flops, module: "conv")
        case let .maxPool(k, s):
            var output = notImage
            if image {
                output =
                    shape[1] >= k && shape[2] >= k
                    ? .success([shape[0], (shape[1] - k) / s + 1, (shape[2] - k) / s + 1])
                    : .failure(ArchitectureError(": window \(k) is larger than its input \(shape)"))
            }
            return Facts(
                token: "maxpool\(k)" + (s != k ? "s\(s)" : ""), output: output, parameters: 0, flops: 0, module: nil)
        case .dense(let n):
            return Facts(
                token: "dense\(n)",
                output: shape.count == 1 ? .success([n]) : .failure(ArchitectureError(" needs a vector: add 'flatten' before it")),
                parameters: Architecture.checkedProduct([n, (shape.first ?? 0) + 1]),
                flops: Architecture.checkedProduct([2, n, shape.first ?? 0]) ?? .max, module: "fc")
        case .flatten:
            let count = Architecture.checkedProduct(shape)
            return Facts(
                token: "flatten",
                output: count.map { .success([$0]) } ?? .failure(ArchitectureError(": its input \(shape) is too large")),
                parameters: 0, flops: 0, module: nil)
        case .relu:
            return Facts(token: "relu", output: .success(shape), parameters: 0, flops: 0, module: nil)
        case .dropout(let p):
            return Facts(token: "dropout\(p)", output: .success(shape), parameters: 0, flops: 0, module: nil)
        case .batchNorm:
            return Facts(
                token: "batchnorm",
                output: shape.count == 1 || image
                    ? .success(shape) : .failure(ArchitectureError(" needs an image or a vector")),
                parameters: 2 * (shape.first ?? 0), flops: 0, module: "bn")
        }
    }

    /// The layer, with PyTorch's default initialisation, for an input item of `shape`.
    func makeLayer<G: RandomNumberGenerator>(input shape: [Int], generator: inout G) -> any Layer {
        switch self {
        case let .conv(f, k, s, p):
            return Conv2D(
                inputChannels: shape[0], outputChannels: f, kernelSize: k, stride: s, padding: p, generator: &generator)
        case let .maxPool(k, s): return MaxPool2D(kernelSize: k, stride: s)
        case .relu: return ReLU()
        case .flatten: return Flatten()
        case let .dense(n): return Dense(inputFeatures: shape[0], outputFeatures: n, generator: &generator)
        case let .dropout(p): return Dropout(probability: p)
        case .batchNorm: return BatchNorm(features: shape[0])
        }
    }
}

/// An architecture description that cannot be built.
public struct ArchitectureError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line saying what is wrong.
    public let description: String
    /// Creates an error with its message.
    public init(_ description: String) { self.description = description }
}

extension Architecture {
    /// Multiply-add work of one item's forward pass, per layer, counted as 2 FLOPs per
    /// multiply-add of the convolutions and dense layers (the GEMM work; pooling and
    /// activations are not counted). The backward pass costs the same again for the input
    /// gradient and again for the parameter gradients.
    public var forwardFLOPs: [Int] {
        let shapes = self.shapes
        return layers.indices.map { $0 < shapes.count ? layers[$0].facts(input: shapes[$0]).flops : 0 }
    }

    /// FLOPs of one training step per item: forward, input gradients of every layer above
    /// the first trainable one, and parameter gradients.
    public var trainingFLOPs: Int {
        let forward = forwardFLOPs
        let first = forward.firstIndex { $0 > 0 } ?? 0
        return 3 * forward.reduce(0, +) - forward[first]
    }

    /// FLOPs of one input-gradient step per item (what an attack pays): forward and the
    /// input gradients of every layer, no parameter gradients.
    public var inputGradientFLOPs: Int { 2 * forwardFLOPs.reduce(0, +) }
}
