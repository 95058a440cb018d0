import Foundation

/// PNG files written by Python's standard library (`struct` and `zlib`), so that the reader is
/// checked against an encoder other than libpng.
enum PythonPNG {
    /// Whether `python3` can be run; the tests that need it are skipped otherwise.
    static let isAvailable: Bool = (try? run(script: "pass", input: Data())) != nil

    /// Builds a PNG from its header fields and the raw bytes of each row (filter type 0 is
    /// prepended by the script). `palette` and `transparency` become PLTE and tRNS chunks.
    static func make(
        width: Int, height: Int, bitDepth: Int, colourType: Int, rows: [[UInt8]], palette: [UInt8] = [],
        transparency: [UInt8] = []
    ) throws -> Data {
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        let spec: [String: Any] = [
            "width": width, "height": height, "depth": bitDepth, "type": colourType,
            "rows": rows.map(hex), "PLTE": hex(palette), "tRNS": hex(transparency),
        ]
        return try run(script: script, input: JSONSerialization.data(withJSONObject: spec))
    }

    private static let script = """
        import json, struct, sys, zlib
        spec = json.load(sys.stdin)
        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(
            ">IIBBBBB", spec["width"], spec["height"], spec["depth"], spec["type"], 0, 0, 0))
        for kind in ("PLTE", "tRNS"):
            if spec[kind]:
                png += chunk(kind.encode(), bytes.fromhex(spec[kind]))
        raw = b"".join(b"\\x00" + bytes.fromhex(row) for row in spec["rows"])
        png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
        sys.stdout.buffer.write(png)
        """

    private struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private static func run(script: String, input: Data) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script]
        let (stdin, stdout) = (Pipe(), Pipe())
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        stdin.fileHandleForWriting.write(input)
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failure(description: "python3 failed") }
        return output
    }
}

/// A fresh temporary directory, removed by the caller.
func temporaryDirectory() throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
        "deceive-visuals-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}

/// The bytes `0, 1, …, 255` as a 16 × 16 pattern, row by row.
let allByteValues = (0...255).map(UInt8.init)
