import Foundation
import NeuralNet
import Testing

@testable import deceive

/// A fresh temporary directory.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("deceive-cli-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

@Suite(.serialized) struct CommandLineTests {
    @Test func trainThenEvaluate() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let output = directory.appendingPathComponent("small.safetensors").path
        let status = Deceive.run([
            "train", "--limit", "3000", "--epochs", "2", "--batch-size", "64", "--augment", "--output", output,
        ])
        #expect(status == 0)
        let checkpoint = try Checkpoint.load(from: URL(fileURLWithPath: output))
        #expect(checkpoint.model.architecture.spec == Architecture.seed.spec)
        #expect(checkpoint.history.count == 2)
        #expect(checkpoint.metadata["dataset"] == "mnist")
        #expect(checkpoint.metadata["command"]?.hasPrefix("deceive train") == true)
        // 3,000 images and 2 epochs already give well over 90% on the test set.
        let accuracy = try #require(checkpoint.testAccuracy)
        #expect(accuracy > 0.9)
        #expect(Deceive.run(["evaluate", "--model", output, "--count", "500"]) == 0)
        #expect(Deceive.run(["evaluate", "--model", output, "--arch", "madry"]) == 1)
    }

    @Test(arguments: [
        ["train", "--epochs", "0"],
        ["train", "--batch-size", "0"],
        ["train", "--learning-rate", "nan"],
        ["train", "--learning-rate", "-1"],
        ["train", "--schedule", "sometimes"],
        ["train", "--arch", "conv3x3"],
        ["train", "--arch", "flatten"],
        ["train", "--arch", "conv8k3 relu flatten dense7"],
        ["train", "--dataset", "cifar"],
        ["train", "--limit", "0"],
        ["train", "--certified", "crown"],
        ["train", "--certified", "ibp", "--kappa", "1.5"],
        ["train", "--certified", "ibp", "--train-eps", "nan"],
        ["train", "--certified", "ibp", "--eps-ramp=-1"],
        ["train", "--certified", "ibp", "--adversarial", "pgd"],
        ["train", "--init", "xavier"],
        ["evaluate"],
        ["evaluate", "--model", "x", "--count", "0"],
        ["evaluate", "--model", "x", "--arch", "conv3x3"],
        ["attack", "--model", "x", "--method", "pgd", "--arch", "dense10"],
        ["fool", "--model", "x", "--all", "--arch", "conv3x3"],
        ["predict", "--model", "x", "--arch", "dense10", "x.png"],
        ["bogus"],
    ])
    func usageErrorsExitWithStatus2(arguments: [String]) {
        // Should a train case become valid, its unwritable output fails it (status 1) before
        // any training: a case once trained on all of MNIST for 29 minutes before failing.
        let guarded = arguments.first == "train" ? arguments + ["--output", "/proc/forbidden/x.safetensors"] : arguments
        #expect(Deceive.run(guarded) == 2)
    }

    @Test func failuresExitWithStatus1() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let garbage = directory.appendingPathComponent("garbage.safetensors")
        try Data("not a safetensors file".utf8).write(to: garbage)
        #expect(Deceive.run(["evaluate", "--model", directory.appendingPathComponent("missing").path]) == 1)
        #expect(Deceive.run(["evaluate", "--model", garbage.path]) == 1)
        #expect(Deceive.run(["evaluate", "--model", directory.path]) == 1)
        #expect(Deceive.run(["train", "--limit", "10", "--output", "/proc/forbidden/x.safetensors"]) == 1)
    }
}

@Suite struct InfoCommandTests {
    /// Runs `deceive info --json` with `OPENBLAS_CORETYPE` set to `coreType` (or unset).
    func info(coreType: String?) throws -> [String: Any] {
        let process = Process()
        process.executableURL = try deceiveExecutable()
        process.arguments = ["info", "--json"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_CORETYPE"] = coreType
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test("info --json names the CPU, its ISA, the BLAS, the kernel it runs and the threads")
    func keys() throws {
        let object = try info(coreType: nil)
        for key in ["cpu", "isa", "blas", "kernel", "threads", "sgemm", "warning"] { #expect(object[key] != nil, "\(key)") }
        let isa = try #require(object["isa"] as? String)
        let kernel = try #require(object["kernel"] as? String)
        #expect(isa == CPU.current.isa.description)
        #if arch(x86_64)
        // Without OPENBLAS_CORETYPE the kernel is of the CPU's own ISA, never the SSE3 fallback.
        if CPU.current.isa >= .avx {
            #expect(BLASBackend.isa(ofKernel: kernel) == CPU.current.isa)
            #expect(object["warning"] is NSNull)
        }
        #endif
        let sgemm = try #require(object["sgemm"] as? [String: Any])
        #expect((sgemm["gflops"] as? Double ?? 0) > 0)
    }

    @Test("a user's OPENBLAS_CORETYPE is respected, with a warning when it is below the CPU")
    func userCoreType() throws {
        #if arch(x86_64)
        let object = try info(coreType: "Prescott")
        #expect(object["kernel"] as? String == "Prescott")
        if CPU.current.isa > .sse3 { #expect(object["warning"] is String) }
        #endif
    }
}
