// Fuzz targets for every parser of files a user can hand us: IDX (raw and gzip),
// safetensors, PNG, and a checkpoint's architecture description.
//
// Built normally, this is a replayer: `deceive-fuzz TARGET FILE…` runs the target on each
// file (the regression corpus in Fuzz/). Built for libFuzzer (`make fuzz`, which passes
// -DFUZZING -sanitize=fuzzer,address -parse-as-library), libFuzzer drives
// `LLVMFuzzerTestOneInput` and `DECEIVE_FUZZ_TARGET` picks the target.

import Adversarial
import Datasets
import Foundation
import NeuralNet
import Visuals

/// The parsers under test: each must return or throw, never crash, for any bytes.
enum FuzzTarget: String, CaseIterable {
    case idx, safetensors, png, checkpoint

    func run(_ data: Data) {
        switch self {
        case .idx:
            _ = try? IDX.decode(data, source: "fuzz")
        case .safetensors:
            _ = try? Safetensors.parse(data, source: "fuzz")
        case .png:
            if let image = try? GreyImage(png: data, source: "fuzz") { _ = image.tensor() }
            _ = try? RGBImage(png: data, source: "fuzz")
        case .checkpoint:
            // A safetensors file whose metadata describes the architecture, then the
            // description alone as text.
            if let file = try? Safetensors.parse(data, source: "fuzz") {
                _ = try? Checkpoint.load(file, source: "fuzz")
            }
            if let text = String(data: data, encoding: .utf8) {
                _ = try? Architecture(parsing: text)
            }
        }
    }
}

#if FUZZING
private let selected: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["DECEIVE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        fatalError("set DECEIVE_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))")
    }
    return target
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    selected.run(Data(bytes: bytes, count: count))
    return 0
}

/// libFuzzer's entry point for programs that have their own `main`.
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

/// SwiftPM links an executable's `main` to `<module>_main`; hand control to libFuzzer there.
@_cdecl("deceive_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { bytes, size in fuzzOne(bytes, size) }
}
#else
@main
struct Replay {
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let first = arguments.first, let target = FuzzTarget(rawValue: first) else {
            FileHandle.standardError.write(Data("usage: deceive-fuzz idx|safetensors|png|checkpoint FILE…\n".utf8))
            exit(2)
        }
        var files: [URL] = []
        for path in arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { URL(fileURLWithPath: path).appendingPathComponent($0) }
            } else {
                files.append(URL(fileURLWithPath: path))
            }
        }
        for file in files {
            guard let data = try? Data(contentsOf: file) else { continue }
            target.run(data)
        }
        print("\(target.rawValue): \(files.count) inputs, no crash")
    }
}
#endif
