import Foundation
import NeuralNet
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

@testable import deceive

@Suite(.serialized) struct AttackCommandTests {
    @Test func attackWritesItsTensorsAndGallery() throws {
        let output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        #expect(
            Deceive.run([
                "attack", "--model", cliModel, "--method", "pgd", "--eps", "0.3", "--count", "50", "--output", output.path,
            ]) == 0)
        let file = try Safetensors.read(from: output.appendingPathComponent("adversarial.safetensors"))
        for name in ["original", "adversarial", "labels", "predictions", "success"] {
            #expect(file.tensors[name] != nil, "\(name) missing")
        }
        let original = try #require(file.tensors["original"]), adversarial = try #require(file.tensors["adversarial"])
        #expect(original.shape == [50, 1, 28, 28] && adversarial.shape == original.shape)
        #expect(zip(original.scalars, adversarial.scalars).allSatisfy { abs($0 - $1) <= 0.3 + 1e-6 && (0...1).contains($1) })
        #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent("gallery.png").path))
        #expect(Deceive.run(["attack", "--model", cliModel, "--method", "deepfool", "--count", "20", "--json"]) == 0)
        #expect(
            Deceive.run(["attack", "--model", cliModel, "--method", "pgd", "--targeted", "--target", "least-likely", "--count", "20"])
                == 0)
    }

    @Test func universalWritesItsPerturbation() throws {
        let output = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: output) }
        #expect(
            Deceive.run([
                "attack", "--model", cliModel, "--method", "universal", "--eps", "0.2", "--count", "50",
                "--train-count", "500", "--steps", "1", "--restarts", "1", "--output", output.path,
            ]) == 0)
        let file = try Safetensors.read(from: output.appendingPathComponent("adversarial.safetensors"))
        let perturbation = try #require(file.tensors["perturbation"])
        let original = try #require(file.tensors["original"]), adversarial = try #require(file.tensors["adversarial"])
        #expect(perturbation.shape == [1, 1, 28, 28])
        #expect(perturbation.scalars.allSatisfy { abs($0) <= 0.2 })
        for (index, value) in original.scalars.enumerated() {
            let expected = min(max(value + perturbation.scalars[index % 784], 0), 1)
            #expect(abs(adversarial.scalars[index] - expected) <= 1e-6)
        }
        #expect(FileManager.default.fileExists(atPath: output.appendingPathComponent("perturbation.png").path))
        #expect(
            Deceive.run([
                "attack", "--model", cliModel, "--method", "universal-l2", "--eps", "3", "--count", "20",
                "--train-count", "200", "--steps", "1", "--json",
            ]) == 0)
    }

    @Test func labelOnlyAttacksRunWithinTheirBudget() {
        for method in ["hopskipjump", "hopskipjump-linf", "boundary"] {
            #expect(
                Deceive.run([
                    "attack", "--model", cliModel, "--method", method, "--max-queries", "200", "--count", "10",
                    "--json",
                ]) == 0)
        }
        #expect(
            Deceive.run([
                "attack", "--model", cliModel, "--method", "hopskipjump", "--max-queries", "200", "--count", "10",
                "--targeted", "--target", "3",
            ]) == 0)
    }

    @Test func evaluateGivesTheCurveAndTheEnsemble() {
        #expect(Deceive.run(["evaluate", "--model", cliModel, "--attack", "fgsm", "--eps", "0,0.1,0.3", "--count", "50"]) == 0)
        #expect(Deceive.run(["evaluate", "--model", cliModel, "--robust", "--eps", "0.3", "--count", "20", "--json"]) == 0)
    }

    @Test(arguments: [
        ["attack", "--method", "pgd", "--eps", "abc"], ["attack", "--method", "pgd", "--count", "0"],
        ["attack", "--method", "pgd", "--targeted", "--target", "12"], ["attack", "--method", "cw", "--eps", "0.3"],
        ["attack", "--method", "pgd", "--steps", "0"], ["attack", "--method", "pgd", "--eps", "0.1,0.2"],
        ["attack", "--method", "magic"], ["attack", "--method", "pgd", "--confidence", "2"],
        ["attack", "--method", "pgd", "--target", "3"], ["evaluate", "--attack", "pgd", "--robust"],
        ["evaluate", "--robust", "--eps", "0.1,0.2"],
        ["attack", "--method", "hopskipjump", "--eps", "0.3"], ["attack", "--method", "pgd", "--max-queries", "100"],
        ["attack", "--method", "boundary", "--max-queries", "0"], ["attack", "--method", "boundary", "--restarts", "2"],
        ["attack", "--method", "hopskipjump", "--confidence", "0.9"],
        ["attack", "--method", "hopskipjump", "--targeted", "--target", "least-likely"],
        ["attack", "--method", "universal", "--targeted"], ["attack", "--method", "universal", "--eps", "1.5"],
        ["attack", "--method", "universal", "--max-queries", "10"], ["attack", "--method", "pgd", "--train-count", "5"],
        ["attack", "--method", "universal", "--train-count", "0"],
        ["attack", "--method", "universal", "--universal-update", "magic"],
    ])
    func badAttackOptionsAreUsageErrors(arguments: [String]) {
        #expect(Deceive.run([arguments[0], "--model", cliModel] + arguments.dropFirst()) == 2)
    }
}

/// Collects element names and `id` attributes while parsing.
final class ReportScanner: NSObject, XMLParserDelegate {
    var ids: Set<String> = []
    var images = 0
    var svgs = 0
    func parser(
        _ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        if let id = attributes["id"] { ids.insert(id) }
        if name == "img", attributes["src"]?.hasPrefix("data:image/png;base64,") == true { images += 1 }
        if name == "svg" { svgs += 1 }
    }
}

@Suite(.serialized) struct ReportCommandTests {
    @Test func reportIsOneWellFormedSelfContainedFile() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let report = directory.appendingPathComponent("report.html")
        #expect(
            Deceive.run([
                "report", "--model", cliModel, "--robust-model", cliModel, "--certified-model", cliModel, "--count", "20",
                "--output", report.path,
            ])
                == 0)
        let data = try Data(contentsOf: report)
        let text = String(decoding: data, as: UTF8.self)
        #expect(!text.contains("http://") && !text.contains("https://") && !text.contains("<script"))
        let parser = XMLParser(data: data)
        let scanner = ReportScanner()
        parser.delegate = scanner
        #expect(parser.parse(), "the report is not well formed: \(String(describing: parser.parserError))")
        for section in ["model", "fooling", "attacks", "label-only", "defence", "certification", "made"] {
            #expect(scanner.ids.contains(section), "section \(section) missing")
        }
        #expect(scanner.images >= 14)
        #expect(scanner.svgs >= 16)
    }
}
