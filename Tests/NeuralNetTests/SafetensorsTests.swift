import Foundation
import Testing

@testable import NeuralNet

@Suite("safetensors and checkpoints")
struct SafetensorsTests {
    func temporaryURL(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("deceive-tests-\(UUID().uuidString)").appendingPathComponent(name)
    }

    /// A file with a hand-written header and `data` as its data section.
    func file(header: String, data: [UInt8] = [], length: UInt64? = nil) -> Data {
        var bytes = Data()
        var size = (length ?? UInt64(header.utf8.count)).littleEndian
        withUnsafeBytes(of: &size) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: Array(header.utf8))
        bytes.append(contentsOf: data)
        return bytes
    }

    @Test("round trip through a file keeps tensors and metadata exactly")
    func roundTrip() throws {
        let original = Safetensors(
            tensors: ["a": randomTensor([2, 3], seed: 1), "b.weight": randomTensor([4], seed: 2), "empty": Tensor(shape: [0, 3])],
            metadata: ["note": "hello \"world\"", "n": "3"])
        let url = temporaryURL("round.safetensors")
        try original.write(to: url)
        #expect(try Safetensors.read(from: url) == original)
        let bytes = try Data(contentsOf: url)
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(headerLength % 8 == 0)
        // no temporary file is left behind
        #expect(try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path) == ["round.safetensors"])
    }

    @Test("reads the reference layout by hand: F32, F16, BF16, F64 and I64 little-endian")
    func handWritten() throws {
        let header = #"{"f":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"h":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"#
            + #""b":{"dtype":"BF16","shape":[1],"data_offsets":[12,14]},"d":{"dtype":"F64","shape":[],"data_offsets":[14,22]},"#
            + #""i":{"dtype":"I64","shape":[],"data_offsets":[22,30]}}"#
        var data: [UInt8] = [0, 0, 0x80, 0x3F, 0, 0, 0, 0xC0]  // 1.0, -2.0
        data += [0x00, 0x3C, 0x00, 0xB8]  // half 1.0, -0.5
        data += [0x40, 0x40]  // bfloat16 3.0
        data += [0, 0, 0, 0, 0, 0, 0x12, 0x40]  // double 4.5
        data += [0x2C, 0x01, 0, 0, 0, 0, 0, 0]  // int64 300 (PyTorch's num_batches_tracked)
        let parsed = try Safetensors.parse(file(header: header, data: data))
        #expect(parsed.tensors["f"] == Tensor(shape: [2], scalars: [1, -2]))
        #expect(parsed.tensors["h"] == Tensor(shape: [2], scalars: [1, -0.5]))
        #expect(parsed.tensors["b"] == Tensor(shape: [1], scalars: [3]))
        #expect(parsed.tensors["d"] == Tensor(shape: [], scalars: [4.5]))
        #expect(parsed.tensors["i"] == Tensor(shape: [], scalars: [300]))
    }

    @Test("corrupt files give one clear error each", arguments: [
        ("short", "is too short to be a safetensors file (3 bytes)"),
        ("huge header", "claims a 18446744073709551615-byte header, more than the 100 MB limit: not a safetensors file or corrupt"),
        ("length past end", "claims a 200-byte header but has only 2 bytes after the length field"),
        ("bad json", "has a header that is not valid JSON"),
        ("not json", "has no JSON header: not a safetensors file"),
        ("wrong dtype", "tensor 'x' has dtype U8; Deceive reads F32, F16, BF16, F64 and I64"),
        ("shape mismatch", "tensor 'x' has shape [3] (12 bytes as F32) but 8 bytes of data"),
        ("offsets past end", "tensor 'x' has data_offsets [0, 800] outside the 8-byte data section"),
        ("overflowing shape", "tensor 'x' has shape [4294967296, 4294967296, 16] that needs more bytes than the file holds"),
        ("gap", "has a gap in its data section before tensor 'x'"),
        ("overlap", "tensor 'y' overlaps another tensor's data"),
        ("trailing data", "has 4 bytes of data after its last tensor (duplicate name or corrupt header?)"),
        ("metadata not strings", "has metadata 'n' that is not a string"),
    ])
    func corrupt(name: String, message: String) {
        let eight: [UInt8] = Array(repeating: 0, count: 8)
        let bytes: Data
        switch name {
        case "short": bytes = Data([1, 2, 3])
        case "huge header": bytes = Data(Array(repeating: 0xFF, count: 8) + Array("{}".utf8))
        case "length past end": bytes = file(header: "{}", length: 200)
        case "bad json": bytes = file(header: #"{"x": [1, 2"#)
        case "not json": bytes = file(header: "PK\u{03}\u{04}")
        case "wrong dtype": bytes = file(header: #"{"x":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#, data: eight)
        case "shape mismatch": bytes = file(header: #"{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: eight)
        case "offsets past end": bytes = file(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#, data: eight)
        case "overflowing shape":
            bytes = file(header: #"{"x":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#, data: eight)
        case "gap": bytes = file(header: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: eight)
        case "overlap":
            bytes = file(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: eight)
        case "trailing data": bytes = file(header: #"{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: eight)
        case "metadata not strings": bytes = file(header: #"{"__metadata__":{"n":3}}"#)
        default: fatalError("unknown case \(name)")
        }
        #expect(throws: SafetensorsError("model.safetensors", message)) {
            try Safetensors.parse(bytes, source: "model.safetensors")
        }
    }

    @Test("a missing file names the file")
    func missingFile() {
        #expect(throws: SafetensorsError("/nonexistent/m.safetensors", "no such file")) {
            try Safetensors.read(from: URL(fileURLWithPath: "/nonexistent/m.safetensors"))
        }
    }

    @Test("checkpoints round trip with their architecture; plain state dicts need --arch or a unique fit")
    func checkpoints() throws {
        var generator = SplitMix64(seed: 1)
        let model = try Model(architecture: .seed, generator: &generator)
        let url = temporaryURL("seed.safetensors")
        try Checkpoint(model: model, metadata: [Checkpoint.Key.dataset: "mnist"]).write(to: url)
        let loaded = try Checkpoint.load(from: url)
        #expect(loaded.model.parameters == model.parameters)
        #expect(loaded.model.architecture == .seed)
        #expect(loaded.metadata[Checkpoint.Key.dataset] == "mnist")

        #expect(throws: CheckpointError(
            "\(url.path) holds architecture 'seed' but 'madry' was asked for; drop --arch or pick the right file"))
        {
            try Checkpoint.load(from: url, architecture: .madry)
        }

        // A PyTorch-style state dict without metadata.
        let plain = Safetensors(tensors: Dictionary(uniqueKeysWithValues: zip(model.parameterNames, model.parameters)))
        let fromPlain = try Checkpoint.load(plain, source: "plain", architecture: .seed)
        #expect(fromPlain.model.parameters == model.parameters)
        #expect(try Checkpoint.load(plain, source: "plain").model.architecture == .seed)

        var missing = plain
        missing.tensors["fc2.bias"] = nil
        #expect(throws: CheckpointError("plain: parameter 'fc2.bias' is missing for architecture 'seed'")) {
            try Checkpoint.load(missing, source: "plain", architecture: .seed)
        }
        var wrongShape = plain
        wrongShape.tensors["fc2.bias"] = Tensor(shape: [11])
        #expect(throws: CheckpointError("plain: parameter 'fc2.bias' has shape [11] but architecture 'seed' needs [10]")) {
            try Checkpoint.load(wrongShape, source: "plain", architecture: .seed)
        }
        var poisoned = plain
        poisoned.tensors["fc2.bias"] = Tensor(shape: [10], repeating: .nan)
        #expect(throws: CheckpointError("plain: parameter 'fc2.bias' contains NaN or infinity")) {
            try Checkpoint.load(poisoned, source: "plain", architecture: .seed)
        }
        #expect(throws: CheckpointError("other has no architecture in its metadata; name it with --arch seed, madry or a spec")) {
            try Checkpoint.load(Safetensors(tensors: ["x": Tensor(shape: [1])]), source: "other")
        }
    }

    @Test("an unwritable destination is a clear error and leaves nothing behind")
    func unwritable() {
        #expect(throws: FileWriteError.self) {
            try AtomicFile.write(Data([1]), to: URL(fileURLWithPath: "/proc/deceive-test/x.bin"))
        }
    }
}
