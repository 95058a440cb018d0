import Foundation
import Testing

@testable import Datasets

/// Builds an IDX file: magic, big-endian dimensions, payload.
func idxFile(type: UInt8 = 0x08, dimensions: [Int], payload: [UInt8]) -> Data {
    var bytes: [UInt8] = [0, 0, type, UInt8(dimensions.count)]
    for size in dimensions { bytes += [24, 16, 8, 0].map { UInt8((size >> $0) & 0xFF) } }
    return Data(bytes + payload)
}

/// Compresses with the system's gzip, as the mirrors' `.gz` files are made.
func gzip(_ data: Data) throws -> Data {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deceive-gz-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let file = directory.appendingPathComponent("file")
    try data.write(to: file)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["gzip", "-n", file.path]
    try process.run()
    process.waitUntilExit()
    return try Data(contentsOf: directory.appendingPathComponent("file.gz"))
}

func decodeError(_ data: Data) -> String? {
    do {
        _ = try IDX.decode(data, source: "x.idx")
        return nil
    } catch {
        return error.description
    }
}

@Suite struct IDXTests {
    @Test func decodesHandMadeFile() throws {
        let data = idxFile(dimensions: [2, 2, 3], payload: Array(0..<12))
        let (dimensions, bytes) = try IDX.decode(data, source: "x")
        #expect(dimensions == [2, 2, 3])
        #expect(bytes == Array(0..<12))
    }

    @Test func decodesGzipToTheSameBytes() throws {
        let data = idxFile(dimensions: [3, 4], payload: (0..<12).map { UInt8($0 * 20) })
        let zipped = try gzip(data)
        #expect(IDX.isGzip(zipped))
        let plain = try IDX.decode(data, source: "x")
        let inflated = try IDX.decode(zipped, source: "x.gz")
        #expect(plain.dimensions == inflated.dimensions && plain.bytes == inflated.bytes)
    }

    @Test func rejectsMalformedFiles() throws {
        let good = idxFile(dimensions: [2, 3], payload: Array(0..<6))
        let cases: [(Data, String)] = [
            (Data([0, 0]), "truncated IDX file"),
            (Data([0x50, 0x4B, 3, 4, 0, 0, 0, 0]), "not an IDX file"),
            (idxFile(type: 0x0D, dimensions: [1], payload: [0, 0, 0, 0]), "data type 0x0d"),
            (Data([0, 0, 8, 0]), "0 dimensions"),
            (Data([0, 0, 8, 3, 0, 0, 0, 1]), "truncated IDX header"),
            (good.dropLast(), "truncated IDX file (dimensions 2×3 need 6 bytes of data, found 5)"),
            (good + Data([1]), "1 bytes after"),
            (idxFile(dimensions: [0x7FFF_FFFF, 0x7FFF_FFFF, 0x7FFF_FFFF], payload: []), "too large"),
        ]
        for (data, expected) in cases {
            let message = try #require(decodeError(data))
            #expect(message.hasPrefix("x.idx: "), "\(message)")
            #expect(message.contains(expected), "\(message) should contain \(expected)")
        }
    }

    @Test func rejectsCorruptAndTruncatedGzip() throws {
        let zipped = try gzip(idxFile(dimensions: [100], payload: (0..<100).map { UInt8($0) }))
        let truncated = try #require(decodeError(zipped.prefix(zipped.count / 2)))
        #expect(truncated.contains("truncated gzip data"))
        var corrupt = [UInt8](zipped)
        for index in 12..<min(corrupt.count - 8, 30) { corrupt[index] ^= 0xA5 }
        let corrupted = try #require(decodeError(Data(corrupt)))
        #expect(corrupted.contains("gzip"), "\(corrupted)")
    }

    @Test func rejectsGzipBombs() throws {
        let huge = Data(count: IDX.maximumSize + 1)
        let message = try #require(decodeError(try gzip(huge)))
        #expect(message.contains("inflates to more than"))
    }

    @Test func imageAndLabelCountsMustAgree() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deceive-idx-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let images = directory.appendingPathComponent("images")
        let labels = directory.appendingPathComponent("labels")
        try idxFile(dimensions: [3, 2, 2], payload: Array(repeating: 7, count: 12)).write(to: images)
        try idxFile(dimensions: [2], payload: [1, 2]).write(to: labels)
        #expect(throws: DatasetError("\(images.path) holds 3 images but \(labels.path) holds 2 labels")) {
            try LabeledImages(images: images, labels: labels)
        }
        try idxFile(dimensions: [3], payload: [1, 2, 12]).write(to: labels)
        #expect(throws: DatasetError("\(labels.path): label 12 at index 2 is not a class 0–9")) {
            try LabeledImages(images: images, labels: labels)
        }
        try idxFile(dimensions: [3], payload: [1, 2, 3]).write(to: labels)
        let set = try LabeledImages(images: images, labels: labels)
        #expect(set.count == 3 && set.labels == [1, 2, 3])
        #expect(set.images([2]).scalars == Array(repeating: Float(7) / 255, count: 4))
        let missing = directory.appendingPathComponent("nothing")
        #expect(throws: DatasetError("\(missing.path): no such file")) {
            try LabeledImages(images: missing, labels: labels)
        }
    }
}
