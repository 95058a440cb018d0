import Foundation

/// A training run saved between batches: the model (under its PyTorch names), the
/// optimizer's state (`optimizer.<parameter>.<state>`, e.g. `optimizer.conv1.weight.exp_avg`),
/// the update count and the ``TrainingPosition``, plus the options of the run as opaque
/// text, so that `deceive train --resume` continues exactly where the run stopped.
public struct TrainingCheckpoint: Sendable {
    /// The model and its metadata.
    public var checkpoint: Checkpoint
    /// Per-parameter optimizer state, in ``Model/parameters`` order.
    public var optimizerState: [[Tensor]]
    /// The names of each parameter's state tensors (``Optimizer/stateNames``).
    public var stateNames: [String]
    /// Updates made so far.
    public var step: Int
    /// Where the run is.
    public var position: TrainingPosition
    /// The run's options, as the caller encoded them.
    public var options: String

    /// Metadata keys of a training checkpoint.
    public enum Key {
        public static let step = "resume_step"
        public static let position = "resume_position"
        public static let options = "resume_options"
        public static let stateNames = "resume_state_names"
    }

    /// Captures a trainer.
    public init(trainer: Trainer, position: TrainingPosition, options: String, metadata: [String: String] = [:]) {
        checkpoint = Checkpoint(model: trainer.model, metadata: metadata)
        optimizerState = trainer.optimizerState
        stateNames = trainer.optimizer.stateNames
        step = trainer.step
        self.position = position
        self.options = options
    }

    /// Writes the checkpoint atomically: a kill at any moment leaves the previous file or this one.
    public func write(to url: URL) throws(FileWriteError) {
        var file = checkpoint.safetensors
        let names = checkpoint.model.parameterNames
        for (index, states) in optimizerState.enumerated() {
            for (stateIndex, state) in states.enumerated() where stateIndex < stateNames.count {
                file.tensors["optimizer.\(names[index]).\(stateNames[stateIndex])"] = state
            }
        }
        file.metadata[Key.step] = String(step)
        file.metadata[Key.position] = String(decoding: (try? JSONEncoder().encode(position)) ?? Data(), as: UTF8.self)
        file.metadata[Key.options] = options
        file.metadata[Key.stateNames] = stateNames.joined(separator: ",")
        try file.write(to: url)
    }

    /// Loads a training checkpoint written by ``write(to:)``.
    public static func load(from url: URL) throws(CheckpointError) -> TrainingCheckpoint {
        let file: Safetensors
        do {
            file = try Safetensors.read(from: url)
        } catch {
            throw CheckpointError(error.description)
        }
        guard let stepText = file.metadata[Key.step], let step = Int(stepText), step >= 0,
            let positionText = file.metadata[Key.position],
            let position = try? JSONDecoder().decode(TrainingPosition.self, from: Data(positionText.utf8)),
            let options = file.metadata[Key.options], let namesText = file.metadata[Key.stateNames]
        else {
            throw CheckpointError("\(url.path): not a resumable training checkpoint (its resume metadata is missing or invalid)")
        }
        let stateNames = namesText.isEmpty ? [] : namesText.split(separator: ",").map(String.init)
        var modelFile = file
        modelFile.tensors = file.tensors.filter { !$0.key.hasPrefix("optimizer.") }
        let checkpoint = try Checkpoint.load(modelFile, source: url.path)
        var optimizerState: [[Tensor]] = []
        for (name, parameter) in zip(checkpoint.model.parameterNames, checkpoint.model.parameters) {
            var states: [Tensor] = []
            for stateName in stateNames {
                guard let state = file.tensors["optimizer.\(name).\(stateName)"], state.shape == parameter.shape,
                    state.isFinite
                else {
                    throw CheckpointError("\(url.path): optimizer state optimizer.\(name).\(stateName) is missing or malformed")
                }
                states.append(state)
            }
            optimizerState.append(states)
        }
        var result = TrainingCheckpoint(
            trainer: Trainer(model: checkpoint.model, optimizer: SGD(momentum: 0)), position: position, options: options,
            metadata: checkpoint.metadata)
        result.optimizerState = optimizerState
        result.stateNames = stateNames
        result.step = step
        return result
    }

    /// A trainer that continues this run with `optimizer` (which must have the saved state's kind).
    public func trainer(optimizer: any Optimizer) throws(CheckpointError) -> Trainer {
        guard optimizer.stateNames == stateNames else {
            throw CheckpointError("the checkpoint's optimizer state (\(stateNames)) does not fit \(optimizer.stateNames)")
        }
        var trainer = Trainer(model: checkpoint.model, optimizer: optimizer)
        trainer.optimizerState = optimizerState
        trainer.step = step
        return trainer
    }
}
