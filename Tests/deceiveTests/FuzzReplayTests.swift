import Foundation
import Testing

@testable import deceive_fuzz

/// The fuzz corpus and every crash the fuzzers ever found (Fuzz/regressions/<target>/)
/// replayed through the parsers: each input must be accepted or rejected, never crash.
@Suite struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    @Test(arguments: FuzzTarget.allCases)
    func corpusAndRegressionsReplay(target: FuzzTarget) throws {
        var count = 0
        for folder in ["corpus", "regressions"] {
            let directory = FuzzReplayTests.root.appendingPathComponent(folder).appendingPathComponent(target.rawValue)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
            for name in names.sorted() where !name.hasPrefix(".") {
                target.run(try Data(contentsOf: directory.appendingPathComponent(name)))
                count += 1
            }
        }
        #expect(count >= 2, "no corpus for \(target.rawValue)")
    }

    @Test func hostileInputsAreRejectedNotAllocated() {
        // Headers that claim gigabytes or overflowing shapes: rejected before allocating.
        var huge = Data([0, 0, 0, 0x40, 0, 0, 0, 0])  // a 1 GiB safetensors header
        huge.append(Data(repeating: 0x20, count: 64))
        FuzzTarget.safetensors.run(huge)
        FuzzTarget.idx.run(Data([0, 0, 8, 4, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]))
        FuzzTarget.checkpoint.run(Data("conv99999999k99999999 dense99999999999".utf8))
    }
}
