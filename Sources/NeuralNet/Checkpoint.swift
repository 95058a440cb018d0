import Foundation

/// A model and what is known about it, stored as a safetensors file whose tensors carry
/// PyTorch's names and layouts (`conv1.weight` [out, in, kh, kw], `fc1.weight` [out, in])
/// and whose `__metadata__` carries the architecture and how the model was made.
///
/// A file written here loads in `safetensors.torch.load_file` into an `nn.Module` with the
/// same attribute names; a plain PyTorch file loads here when the architecture is named.
public struct Checkpoint: Sendable {
    /// The model.
    public var model: Model
    /// Free-form facts (`dataset`, `command`, `test_accuracy`, `history`, …), all strings.
    public var metadata: [String: String]

    /// Metadata keys with a fixed meaning.
    public enum Key {
        public static let format = "format"
        public static let architecture = "architecture"
        public static let architectureName = "architecture_name"
        public static let inputShape = "input_shape"
        public static let dataset = "dataset"
        public static let command = "command"
        public static let testAccuracy = "test_accuracy"
        public static let history = "history"
        public static let seed = "seed"
        public static let trainingSeconds = "training_seconds"
    }

    /// The format tag written into every checkpoint.
    public static let formatTag = "deceive-checkpoint-1"

    /// Creates a checkpoint.
    public init(model: Model, metadata: [String: String] = [:]) {
        self.model = model
        self.metadata = metadata
    }

    /// The file's contents: the parameters and buffers, plus the architecture in the metadata.
    public var safetensors: Safetensors {
        var metadata = self.metadata
        metadata[Key.format] = Checkpoint.formatTag
        metadata[Key.architecture] = model.architecture.spec
        metadata[Key.architectureName] = model.architecture.name
        metadata[Key.inputShape] = model.architecture.inputShape.map(String.init).joined(separator: ",")
        return Safetensors(
            tensors: Dictionary(
                uniqueKeysWithValues: zip(model.parameterNames + model.bufferNames, model.parameters + model.buffers)),
            metadata: metadata)
    }

    /// Writes the checkpoint atomically.
    public func write(to url: URL) throws(FileWriteError) {
        try safetensors.write(to: url)
    }

    /// Loads a checkpoint. The architecture comes from the file's metadata; `architecture`,
    /// when given, must agree with it, and is required for files without one (for
    /// example a state dict saved by PyTorch), unless exactly one known architecture fits.
    public static func load(from url: URL, architecture: Architecture? = nil) throws(CheckpointError) -> Checkpoint {
        let file: Safetensors
        do {
            file = try Safetensors.read(from: url)
        } catch {
            throw CheckpointError(error.description)
        }
        return try load(file, source: url.path, architecture: architecture)
    }

    /// Builds a checkpoint from parsed safetensors contents; `source` names it in errors.
    public static func load(_ file: Safetensors, source: String, architecture: Architecture? = nil) throws(CheckpointError) -> Checkpoint {
        var resolved: Architecture
        if let spec = file.metadata[Key.architecture] {
            let inputShape = file.metadata[Key.inputShape].map { $0.split(separator: ",").compactMap { Int($0) } } ?? [1, 28, 28]
            do {
                resolved = try Architecture(parsing: spec, name: file.metadata[Key.architectureName], inputShape: inputShape)
            } catch {
                throw CheckpointError("\(source): its metadata describes an invalid architecture: \(error.description)")
            }
            if let architecture, architecture.spec != resolved.spec || architecture.inputShape != resolved.inputShape {
                throw CheckpointError(
                    "\(source) holds architecture '\(resolved)' but '\(architecture)' was asked for; drop --arch or pick the right file")
            }
        } else if let architecture {
            resolved = architecture
        } else {
            let fitting = Architecture.named.values.filter { candidate in
                (try? Model(architecture: candidate, parameters: file.tensors)) != nil
            }
            guard fitting.count == 1, let only = fitting.first else {
                throw CheckpointError("\(source) has no architecture in its metadata; name it with --arch seed, madry or a spec")
            }
            resolved = only
        }
        do {
            let model = try Model(architecture: resolved, parameters: file.tensors)
            return Checkpoint(model: model, metadata: file.metadata)
        } catch {
            throw CheckpointError("\(source): \(error.description)")
        }
    }

    /// The recorded test accuracy, if any.
    public var testAccuracy: Double? { metadata[Key.testAccuracy].flatMap(Double.init) }

    /// The per-epoch training record, if any.
    public var history: [EpochRecord] {
        guard let text = metadata[Key.history], let data = text.data(using: .utf8) else { return [] }
        return (try? JSONDecoder().decode([EpochRecord].self, from: data)) ?? []
    }
}

/// A checkpoint that cannot be loaded.
public struct CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line naming the file and what is wrong.
    public let description: String
    /// Creates an error with its message.
    public init(_ description: String) { self.description = description }
}
