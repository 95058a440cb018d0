import CZlib
import Foundation
import NeuralNet

/// An IDX file (the format of MNIST and Fashion-MNIST) that cannot be read.
public struct DatasetError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line naming the file (or dataset) and what is wrong.
    public let description: String
    /// Creates an error with its message.
    public init(_ description: String) { self.description = description }
}

/// The IDX format of LeCun's MNIST files: a 4-byte magic number (two zero bytes, a type
/// code, the number of dimensions), one big-endian UInt32 per dimension, then the data.
///
/// Only unsigned-byte data (type 0x08) is read, which is what MNIST and Fashion-MNIST use.
/// Gzip-compressed files (the `.gz` files of the mirrors and of Debian's packages) are
/// recognised by their magic bytes and inflated with the system's zlib.
public enum IDX {
    /// The largest decoded file accepted: MNIST's biggest file is 47 MB.
    public static let maximumSize = 256 << 20

    /// Decodes an IDX file held in memory; `source` names it in errors.
    public static func decode(_ data: Data, source: String) throws(DatasetError) -> (dimensions: [Int], bytes: [UInt8]) {
        let raw = isGzip(data) ? try gunzip(data, source: source) : data
        let bytes = [UInt8](raw)
        guard bytes.count >= 4 else {
            throw DatasetError("\(source): truncated IDX file (\(bytes.count) bytes, shorter than its 4-byte header)")
        }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw DatasetError(
                "\(source): not an IDX file (magic number starts 0x\(hex(bytes[0]))\(hex(bytes[1])), expected 0x0000)")
        }
        guard bytes[2] == 0x08 else {
            throw DatasetError("\(source): IDX data type 0x\(hex(bytes[2])) is not supported (only unsigned bytes, 0x08)")
        }
        let rank = Int(bytes[3])
        guard (1...4).contains(rank) else {
            throw DatasetError("\(source): IDX file claims \(rank) dimensions (expected 1 to 4)")
        }
        let headerSize = 4 + 4 * rank
        guard bytes.count >= headerSize else {
            throw DatasetError("\(source): truncated IDX header (\(bytes.count) bytes, need \(headerSize))")
        }
        var dimensions: [Int] = []
        var elementCount = 1
        for axis in 0..<rank {
            let offset = 4 + 4 * axis
            let size = bytes[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            dimensions.append(size)
            let (product, overflow) = elementCount.multipliedReportingOverflow(by: size)
            guard !overflow, product <= maximumSize else {
                throw DatasetError("\(source): IDX dimensions \(dimensions) are too large")
            }
            elementCount = product
        }
        let payload = bytes.count - headerSize
        guard payload == elementCount else {
            let shape = dimensions.map(String.init).joined(separator: "×")
            throw DatasetError(
                payload < elementCount
                    ? "\(source): truncated IDX file (dimensions \(shape) need \(elementCount) bytes of data, found \(payload))"
                    : "\(source): IDX file has \(payload - elementCount) bytes after the \(elementCount) its dimensions \(shape) describe")
        }
        return (dimensions, Array(bytes[headerSize...]))
    }

    /// Reads and decodes an IDX file (raw or gzip).
    public static func read(from url: URL) throws(DatasetError) -> (dimensions: [Int], bytes: [UInt8]) {
        try decode(readFile(url), source: url.path)
    }

    /// Whether `data` starts with the gzip magic bytes.
    static func isGzip(_ data: Data) -> Bool {
        data.count >= 2 && data[data.startIndex] == 0x1F && data[data.startIndex + 1] == 0x8B
    }

    /// Inflates gzip data with zlib, refusing output larger than ``maximumSize``.
    static func gunzip(_ data: Data, source: String) throws(DatasetError) -> Data {
        var stream = z_stream()
        // 15 window bits, +16: expect a gzip wrapper.
        guard inflateInit2_(&stream, 15 + 16, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DatasetError("\(source): zlib could not be initialised")
        }
        defer { inflateEnd(&stream) }
        var output = Data()
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var status: Int32 = Z_OK
        var input = [UInt8](data)
        input.withUnsafeMutableBufferPointer { inputBuffer in
            stream.next_in = inputBuffer.baseAddress
            stream.avail_in = uInt(inputBuffer.count)
            chunk.withUnsafeMutableBufferPointer { chunkBuffer in
                repeat {
                    stream.next_out = chunkBuffer.baseAddress
                    stream.avail_out = uInt(chunkBuffer.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    let produced = chunkBuffer.count - Int(stream.avail_out)
                    output.append(chunkBuffer.baseAddress!, count: produced)
                } while status == Z_OK && output.count <= maximumSize
                    && (stream.avail_in > 0 || stream.avail_out == 0)
            }
        }
        if output.count > maximumSize {
            throw DatasetError("\(source): gzip data inflates to more than \(maximumSize >> 20) MB; refusing it")
        }
        guard status == Z_STREAM_END else {
            let reason = status == Z_DATA_ERROR ? "corrupt gzip data" : "truncated gzip data"
            throw DatasetError("\(source): \(reason)")
        }
        return output
    }

    private static func hex(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }
}

/// Reads a whole file, with one clear error line when it cannot.
func readFile(_ url: URL) throws(DatasetError) -> Data {
    switch InputFile.read(url) {
    case let .success(data): return data
    case let .failure(error): throw DatasetError(error.description)
    }
}
