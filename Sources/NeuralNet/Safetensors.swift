import Foundation

/// A safetensors file (Hugging Face's format, what `safetensors.torch` reads and writes):
/// an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape
/// and byte range, then the raw little-endian data.
///
/// Deceive writes Float32; it reads F32, F16, BF16, F64 and I64 and converts to Float32.
/// Every size in a file is checked before anything large is allocated.
public struct Safetensors: Sendable, Equatable {
    /// The tensors by name.
    public var tensors: [String: Tensor]
    /// The free-form `__metadata__` strings.
    public var metadata: [String: String]

    /// The largest header accepted (the safetensors specification's own limit).
    public static let maximumHeaderSize = 100_000_000

    /// Creates a file's contents.
    public init(tensors: [String: Tensor] = [:], metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }

    /// Reads and checks a file.
    public static func read(from url: URL) throws(SafetensorsError) -> Safetensors {
        switch InputFile.read(url) {
        case let .success(data): return try parse(data, source: url.path)
        case let .failure(error): throw SafetensorsError(error.description)
        }
    }

    /// Parses a file's bytes; `source` names it in errors.
    public static func parse(_ data: Data, source: String = "safetensors data") throws(SafetensorsError) -> Safetensors {
        func fail(_ message: String) -> SafetensorsError { SafetensorsError(source, message) }
        guard data.count >= 8 else { throw fail("is too short to be a safetensors file (\(data.count) bytes)") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(maximumHeaderSize) else {
            throw fail("claims a \(headerLength)-byte header, more than the 100 MB limit: not a safetensors file or corrupt")
        }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail("claims a \(headerLength)-byte header but has only \(data.count - 8) bytes after the length field")
        }
        let headerStart = data.startIndex + 8
        let header = data[headerStart..<(headerStart + Int(headerLength))]
        guard header.first == UInt8(ascii: "{") else { throw fail("has no JSON header: not a safetensors file") }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: header)
        } catch {
            throw fail("has a header that is not valid JSON")
        }
        guard let object = json as? [String: Any] else { throw fail("has a header that is not a JSON object") }

        var metadata: [String: String] = [:]
        if let raw = object["__metadata__"] {
            guard let strings = raw as? [String: Any] else { throw fail("has a __metadata__ that is not an object") }
            for (key, value) in strings {
                guard let text = value as? String else { throw fail("has metadata '\(key)' that is not a string") }
                metadata[key] = text
            }
        }

        struct Entry {
            let name: String
            let dtype: DType
            let shape: [Int]
            let begin: Int
            let end: Int
        }
        let dataStart = headerStart + Int(headerLength)
        let dataSize = data.endIndex - dataStart
        var entries: [Entry] = []
        for (name, value) in object where name != "__metadata__" {
            guard let info = value as? [String: Any] else { throw fail("tensor '\(name)' has no description object") }
            guard let dtypeName = info["dtype"] as? String else { throw fail("tensor '\(name)' has no dtype") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw fail("tensor '\(name)' has dtype \(dtypeName); Deceive reads F32, F16, BF16, F64 and I64")
            }
            guard let shapeValues = info["shape"] as? [Any], shapeValues.count <= 8 else {
                throw fail("tensor '\(name)' has no valid shape")
            }
            var shape: [Int] = []
            var elements = 1
            for dimension in shapeValues {
                guard let number = dimension as? NSNumber, let size = Int(exactly: number.doubleValue), size >= 0 else {
                    throw fail("tensor '\(name)' has a shape entry that is not a non-negative integer")
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: size)
                guard !overflow, product <= dataSize else {
                    throw fail("tensor '\(name)' has shape \(shapeValues) that needs more bytes than the file holds")
                }
                shape.append(size)
                elements = product
            }
            guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
                let begin = (offsets[0] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) }),
                let end = (offsets[1] as? NSNumber).flatMap({ Int(exactly: $0.doubleValue) })
            else { throw fail("tensor '\(name)' has no valid data_offsets") }
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw fail("tensor '\(name)' has data_offsets [\(begin), \(end)] outside the \(dataSize)-byte data section")
            }
            guard end - begin == elements * dtype.size else {
                throw fail(
                    "tensor '\(name)' has shape \(shape) (\(elements * dtype.size) bytes as \(dtype.rawValue)) but \(end - begin) bytes of data")
            }
            entries.append(Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end))
        }
        // The data section must be covered exactly once, with no gaps or overlaps.
        var position = 0
        for entry in entries.sorted(by: { ($0.begin, $0.end) < ($1.begin, $1.end) }) {
            guard entry.begin == position else {
                throw fail(
                    entry.begin < position
                        ? "tensor '\(entry.name)' overlaps another tensor's data"
                        : "has a gap in its data section before tensor '\(entry.name)'")
            }
            position = entry.end
        }
        guard position == dataSize else {
            throw fail("has \(dataSize - position) bytes of data after its last tensor (duplicate name or corrupt header?)")
        }

        var tensors: [String: Tensor] = [:]
        for entry in entries {
            let bytes = data[(dataStart + entry.begin)..<(dataStart + entry.end)]
            tensors[entry.name] = Tensor(shape: entry.shape, scalars: entry.dtype.decode(bytes))
        }
        return Safetensors(tensors: tensors, metadata: metadata)
    }

    /// The file's bytes: tensors in name order, each stored as F32, the header padded with
    /// spaces to a multiple of 8 bytes (as the reference writer does).
    public func serialized() -> Data {
        let names = tensors.keys.sorted()
        var header: [String: Any] = [:]
        var offset = 0
        for name in names {
            let tensor = tensors[name]!
            header[name] = ["dtype": "F32", "shape": tensor.shape, "data_offsets": [offset, offset + 4 * tensor.count]] as [String: Any]
            offset += 4 * tensor.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        // JSONSerialization cannot fail on strings, numbers, arrays and dictionaries.
        var json = (try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])) ?? Data("{}".utf8)
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var data = Data(capacity: 8 + json.count + offset)
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
        data.append(json)
        for name in names {
            tensors[name]!.scalars.withUnsafeBufferPointer { buffer in
                #if _endian(big)
                for value in buffer { withUnsafeBytes(of: value.bitPattern.littleEndian) { data.append(contentsOf: $0) } }
                #else
                data.append(UnsafeBufferPointer(start: UnsafeRawPointer(buffer.baseAddress)?.assumingMemoryBound(to: UInt8.self), count: buffer.count * 4))
                #endif
            }
        }
        return data
    }

    /// Writes the file atomically (a temporary file, then a rename).
    public func write(to url: URL) throws(FileWriteError) {
        try AtomicFile.write(serialized(), to: url)
    }

    /// Element types read from files.
    enum DType: String {
        case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64"

        var size: Int {
            switch self {
            case .f32: return 4
            case .f16, .bf16: return 2
            case .f64, .i64: return 8
            }
        }

        func decode(_ bytes: Data) -> [Float] {
            let count = bytes.count / size
            return [Float](unsafeUninitializedCapacity: count) { out, initialized in
                bytes.withUnsafeBytes { raw in
                    for i in 0..<count {
                        switch self {
                        case .f32:
                            out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                        case .f64:
                            out[i] = Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
                        case .i64:
                            // PyTorch's integer buffers (BatchNorm's num_batches_tracked)
                            out[i] = Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
                        case .bf16:
                            let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                            out[i] = Float(bitPattern: UInt32(bits) << 16)
                        case .f16:
                            let bits = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                            out[i] = halfToFloat(bits)
                        }
                    }
                }
                initialized = count
            }
        }
    }
}

/// IEEE 754 binary16 to Float, including subnormals, infinities and NaN.
func halfToFloat(_ bits: UInt16) -> Float {
    let sign: Float = bits & 0x8000 != 0 ? -1 : 1
    let exponent = Int((bits >> 10) & 0x1F)
    let fraction = Float(bits & 0x3FF)
    switch exponent {
    case 0: return sign * fraction * powf(2, -24)
    case 31: return fraction == 0 ? sign * .infinity : .nan
    default: return sign * (1 + fraction / 1024) * powf(2, Float(exponent - 15))
    }
}

/// A safetensors file that cannot be read.
public struct SafetensorsError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line naming the file and what is wrong with it.
    public let description: String
    init(_ source: String, _ problem: String) { description = "\(source): \(problem)" }
    init(_ description: String) { self.description = description }
}
