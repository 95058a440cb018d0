import Foundation
import NeuralNet
import Testing

/// The `deceive` executable built next to the test bundle.
func deceiveExecutable() throws -> URL {
    var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    if directory.lastPathComponent == "MacOS" || directory.lastPathComponent == "Contents" {
        directory = directory.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    let executable = directory.appendingPathComponent("deceive")
    guard FileManager.default.isExecutableFile(atPath: executable.path) else {
        throw CocoaError(.fileNoSuchFile, userInfo: [NSFilePathErrorKey: executable.path])
    }
    return executable
}

/// Starts `deceive` single-threaded (so that runs are bit-identical).
func startDeceive(_ arguments: [String]) throws -> Process {
    let process = Process()
    process.executableURL = try deceiveExecutable()
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment["DECEIVE_THREADS"] = "1"
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    return process
}

func runDeceive(_ arguments: [String]) throws -> Int32 {
    let process = try startDeceive(arguments)
    process.waitUntilExit()
    return process.terminationStatus
}

/// A small run: 3 epochs of 2,000 images.
func trainArguments(output: URL) -> [String] {
    ["train", "--limit", "2000", "--epochs", "3", "--batch-size", "64", "--output", output.path]
}

func sameTensors(_ a: URL, _ b: URL) throws -> Bool {
    try Safetensors.read(from: a).tensors == Safetensors.read(from: b).tensors
}

@Suite(.serialized) struct ResumeTests {
    @Test func killedTrainingResumesToTheSameWeights() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let reference = directory.appendingPathComponent("reference.safetensors")
        #expect(try runDeceive(trainArguments(output: reference)) == 0)

        let output = directory.appendingPathComponent("killed.safetensors")
        let resume = directory.appendingPathComponent("killed.resume.safetensors")
        let process = try startDeceive(trainArguments(output: output))
        // Wait for the first epoch's checkpoint, then kill mid-way through the second epoch.
        let deadline = Date().addingTimeInterval(120)
        while !FileManager.default.fileExists(atPath: resume.path) && process.isRunning && Date() < deadline {
            usleep(20_000)
        }
        usleep(150_000)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        // Whatever moment the kill hit, the resume file is complete.
        let saved = try TrainingCheckpoint.load(from: resume)
        #expect(saved.position.epoch >= 1)
        #expect(!FileManager.default.fileExists(atPath: output.path))
        #expect(try runDeceive(["train", "--resume", resume.path, "--output", output.path]) == 0)
        #expect(try sameTensors(reference, output))
        #expect(!FileManager.default.fileExists(atPath: resume.path))
    }

    @Test func interruptedTrainingSavesMidEpochAndResumes() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let reference = directory.appendingPathComponent("reference.safetensors")
        #expect(try runDeceive(trainArguments(output: reference)) == 0)
        let output = directory.appendingPathComponent("stopped.safetensors")
        let resume = directory.appendingPathComponent("stopped.resume.safetensors")
        let process = try startDeceive(trainArguments(output: output))
        usleep(1_200_000)
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        if process.terminationStatus == 0 {
            // The run finished before the signal: nothing to resume; the result must still match.
            #expect(try sameTensors(reference, output))
            return
        }
        #expect(process.terminationStatus == 130)
        _ = try TrainingCheckpoint.load(from: resume)
        #expect(try runDeceive(["train", "--resume", resume.path, "--output", output.path]) == 0)
        #expect(try sameTensors(reference, output))
    }

    @Test func resumeRejectsOrdinaryCheckpoints() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = directory.appendingPathComponent("model.safetensors")
        #expect(try runDeceive(["train", "--limit", "200", "--epochs", "1", "--output", model.path]) == 0)
        #expect(try runDeceive(["train", "--resume", model.path, "--output", directory.appendingPathComponent("x.safetensors").path]) == 1)
    }
}
