import Foundation
import NeuralNet
import Testing
import Visuals

@testable import deceive

/// A small model trained once through the command line, shared by these tests.
let cliModel: String = {
    let directory = try! temporaryDirectory()
    let path = directory.appendingPathComponent("cli.safetensors").path
    let status = Deceive.run(["train", "--limit", "3000", "--epochs", "2", "--output", path])
    precondition(status == 0, "training the test model failed")
    return path
}()

@Suite(.serialized) struct FoolCommandTests {
    /// The certified model cannot be fooled within 0.1 of the noise: every digit is proved
    /// unreachable (measured: bounds 0.004–0.99 below the 0.99 asked), and no reached digit ever
    /// exceeds its bound; --certify without --within is a usage error.
    @Test func certifyProvesDigitsUnreachable() throws {
        let output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let certified = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models/mnist-cnn-certified.safetensors").path
        #expect(Deceive.run(["fool", "--model", certified, "--target", "3", "--certify", "--output", output.path]) == 2)
        #expect(
            Deceive.run([
                "fool", "--model", certified, "--all", "--within", "0.1", "--certify", "--max-steps", "200",
                "--output", output.path,
            ]) == 0)
        let summary = try JSONSerialization.jsonObject(
            with: Data(contentsOf: output.appendingPathComponent("summary.json"))) as! [String: Any]
        let targets = summary["targets"] as! [[String: Any]]
        #expect(targets.count == 10)
        for target in targets {
            let bound = try #require(target["probabilityBound"] as? Double)
            let reached = try #require(target["confidenceAfterPNG"] as? Double)
            #expect(reached <= bound)
            #expect(target["certificate"] as? String == "proved unreachable")
        }
    }

    @Test func foolsOneDigitAndTheFilesAgree() throws {
        let output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        #expect(Deceive.run(["fool", "--model", cliModel, "--target", "5", "--output", output.path, "--json"]) == 0)
        for name in ["5.png", "start-5.png", "grid.png", "trajectory.json", "summary.json", "fooling.safetensors"] {
            #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent(name).path), "\(name) missing")
        }
        let tensors = try Safetensors.read(from: output.appendingPathComponent("fooling.safetensors"))
        let images = try #require(tensors.tensors["images"])
        let starts = try #require(tensors.tensors["start"])
        #expect(images.shape == [1, 1, 28, 28] && starts.shape == [1, 1, 28, 28])
        #expect(tensors.tensors["targets"]?.scalars == [5])
        #expect(tensors.tensors["probabilities"]?.shape == [1, 10])
        // The PNG holds exactly the image tensor: the round trip is lossless.
        let png = try GreyImage(contentsOfPNG: output.appendingPathComponent("5.png"))
        #expect(png.tensor().scalars == images.scalars)
        let startPNG = try GreyImage(contentsOfPNG: output.appendingPathComponent("start-5.png"))
        #expect(startPNG.tensor().scalars == starts.scalars)
        let model = try Checkpoint.load(from: URL(fileURLWithPath: cliModel)).model
        #expect(model.probabilities(png.tensor()).scalars[5] >= 0.99)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: output.appendingPathComponent("summary.json")))
        let targets = try #require((summary as? [String: Any])?["targets"] as? [[String: Any]])
        #expect((targets.first?["confidenceAfterPNG"] as? Double ?? 0) >= 0.99)
        #expect(Deceive.run(["predict", "--model", cliModel, output.appendingPathComponent("5.png").path]) == 0)
    }

    @Test func withinIsNeverExceeded() throws {
        let output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let status = Deceive.run([
            "fool", "--model", cliModel, "--all", "--within", "0.1", "--max-steps", "100", "--output", output.path,
        ])
        #expect(status == 0)
        let tensors = try Safetensors.read(from: output.appendingPathComponent("fooling.safetensors"))
        let images = try #require(tensors.tensors["images"]), starts = try #require(tensors.tensors["start"])
        #expect(images.shape == [10, 1, 28, 28])
        let distance = zip(images.scalars, starts.scalars).map { abs($0 - $1) }.max() ?? 1
        #expect(distance <= 0.1 + 1e-6)
        for digit in 0..<10 {
            let png = try GreyImage(contentsOfPNG: output.appendingPathComponent("\(digit).png"))
            #expect(png.tensor().scalars == images.batch(digit..<digit + 1).scalars)
        }
    }

    @Test func startsFromAUserImageWithoutChangingIt() throws {
        let output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        let input = output.appendingPathComponent("input.png")
        try GreyImage(width: 28, height: 28, pixels: (0..<784).map { UInt8($0 % 256) }).writePNG(to: input)
        let before = try Data(contentsOf: input)
        #expect(Deceive.run(["fool", "--model", cliModel, "--target", "3", "--start", input.path, "--output", output.path]) == 0)
        #expect(try Data(contentsOf: input) == before)
    }

    @Test(arguments: [
        ["--target", "11"], ["--target", "5", "--confidence", "1.5"], ["--target", "5", "--within", "-0.1"],
        ["--target", "5", "--within", "nan"], ["--all", "--target", "3"], [], ["--target", "5", "--max-steps", "0"],
        ["--target", "5", "--regularize", "blur"], ["--target", "5", "--method", "evolve", "--regularize", "tv"],
        ["--target", "5", "--method", "newton"],
    ])
    func badOptionsAreUsageErrors(arguments: [String]) {
        #expect(Deceive.run(["fool", "--model", cliModel] + arguments + ["--output", "/tmp/deceive-never"]) == 2)
    }

    @Test func unreadableImagesFail() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let bogus = directory.appendingPathComponent("bogus.png")
        try Data("not a png".utf8).write(to: bogus)
        #expect(Deceive.run(["fool", "--model", cliModel, "--target", "5", "--start", bogus.path, "--output", directory.path]) == 1)
        #expect(Deceive.run(["predict", "--model", cliModel, bogus.path]) == 1)
        #expect(Deceive.run(["predict", "--model", cliModel, directory.appendingPathComponent("missing.png").path]) == 1)
    }
}
