import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NeuralNet
import Testing

@testable import Server

/// The shipped models, loaded once.
enum Shipped {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("models")
    static let models: [(name: String, model: Model)] = {
        _ = try? BLASBackend.load()
        return [("standard", "mnist-cnn.safetensors"), ("robust", "mnist-cnn-robust.safetensors")].map {
            // The shipped models are part of the repository: a missing one is a broken checkout.
            ($0.0, try! Checkpoint.load(from: directory.appendingPathComponent($0.1)).model)
        }
    }()

    /// The first test digit of the MNIST test set is a 7; this is a hand-made stroke 7 instead,
    /// so that the tests need no dataset: a bar across the top and a diagonal down.
    static let seven: [Float] = {
        var pixels = [Float](repeating: 0, count: 784)
        for x in 7...20 { for y in 6...7 { pixels[y * 28 + x] = 1 } }
        for step in 0...15 {
            let y = 8 + step
            let x = 20 - step / 2
            for dx in -1...0 { pixels[y * 28 + x + dx] = 1 }
        }
        return pixels
    }()
}

func app(_ limits: ServerLimits = ServerLimits()) -> some ApplicationProtocol {
    DeceiveServer(models: Shipped.models, limits: limits).application(port: 0)
}

func body(_ object: [String: Any]) -> ByteBuffer {
    ByteBuffer(data: try! JSONSerialization.data(withJSONObject: object))
}

func decode(_ response: TestResponse) throws -> [String: Any] {
    let data = Data(response.body.readableBytesView)
    return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

func numbers(_ value: Any?) -> [Float] {
    ((value as? [Any]) ?? []).compactMap { ($0 as? NSNumber)?.floatValue }
}

let jsonHeaders: HTTPFields = [.contentType: "application/json"]

@Suite("Server API")
struct ServerAPITests {
    @Test func healthListsTheModels() async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(uri: "/api/health", method: .get)
            #expect(response.status == .ok)
            let object = try decode(response)
            #expect(object["status"] as? String == "ok")
            #expect(object["models"] as? [String] == ["standard", "robust"])
        }
    }

    @Test func pageIsServedWithoutExternalRequests() async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(uri: "/", method: .get)
            #expect(response.status == .ok)
            #expect(response.headers[.contentType]?.hasPrefix("text/html") == true)
            let html = String(buffer: response.body)
            #expect(html.contains("<canvas id=\"pad\""))
            #expect(html.contains("touch-action: none"))
            // No CDN, no web fonts: nothing on the page names another host.
            #expect(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"))
        }
    }

    @Test func predictAnswersForEveryModel() async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/predict", method: .post, headers: jsonHeaders, body: body(["image": Shipped.seven]))
            #expect(response.status == .ok)
            let models = try #require(try decode(response)["models"] as? [String: [String: Any]])
            #expect(Set(models.keys) == ["standard", "robust"])
            for (_, verdict) in models {
                let p = numbers(verdict["probabilities"])
                #expect(p.count == 10)
                #expect(abs(p.reduce(0, +) - 1) < 1e-4)
                let prediction = try #require(verdict["prediction"] as? Int)
                #expect(p[prediction] == p.max())
            }
            // Both models read the hand-made 7 as a 7.
            #expect(models["standard"]?["prediction"] as? Int == 7)
            #expect(models["robust"]?["prediction"] as? Int == 7)
        }
    }

    @Test func foolReachesTheConfidenceAfterRounding() async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/fool", method: .post, headers: jsonHeaders, body: body(["target": 5]))
            #expect(response.status == .ok)
            let object = try decode(response)
            let image = numbers(object["image"])
            let start = numbers(object["start"])
            #expect(image.count == 784 && start.count == 784)
            // What a PNG holds: multiples of 1/255.
            for x in image + start { #expect(abs(x * 255 - (x * 255).rounded()) < 1e-3) }
            #expect(object["reached"] as? Bool == true)
            let confidence = try #require((object["confidence"] as? NSNumber)?.floatValue)
            #expect(confidence >= 0.99)
            let p = numbers(object["probabilities"])
            #expect(p.count == 10 && abs(p[5] - confidence) < 1e-6)
            #expect((object["steps"] as? Int ?? 0) >= 1)
            #expect((object["queries"] as? Int ?? 0) >= 1)
            // The server's answer is the model's answer for the returned image.
            let check = DeceiveServer(models: Shipped.models).api.predict(image)
            #expect(check.models["standard"]?.prediction == 5)
        }
    }

    @Test func foolWithinStaysInTheBox() async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/fool", method: .post, headers: jsonHeaders,
                body: body(["target": 3, "within": 0.25, "model": "standard", "seed": 7, "method": "sign"]))
            #expect(response.status == .ok)
            let object = try decode(response)
            let image = numbers(object["image"])
            let start = numbers(object["start"])
            let linf = zip(image, start).map { abs($0 - $1) }.max() ?? 1
            #expect(linf <= 0.25 + 1e-6)
        }
    }

    @Test func attackFlipsTheStandardModel() async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(
                uri: "/api/attack", method: .post, headers: jsonHeaders,
                body: body(["image": Shipped.seven, "method": "pgd", "eps": 0.3, "model": "standard"]))
            #expect(response.status == .ok)
            let object = try decode(response)
            #expect(object["success"] as? Bool == true)
            #expect((object["prediction"] as? Int) != 7)
            let linf = try #require((object["linf"] as? NSNumber)?.floatValue)
            #expect(linf <= 0.3 + 1e-6)
            let adversarial = numbers(object["adversarial"])
            #expect(adversarial.count == 784 && adversarial.allSatisfy { $0 >= 0 && $0 <= 1 })
            let l2 = zip(adversarial, Shipped.seven).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
            #expect(abs(l2 - ((object["l2"] as? NSNumber)?.floatValue ?? -1)) < 1e-3)
        }
    }

    @Test func minimisationAttacksTakeNoEpsilon() async throws {
        try await app().test(.router) { client in
            let ok = try await client.execute(
                uri: "/api/attack", method: .post, headers: jsonHeaders,
                body: body(["image": Shipped.seven, "method": "deepfool"]))
            #expect(ok.status == .ok)
            #expect(try decode(ok)["success"] as? Bool == true)
            let bad = try await client.execute(
                uri: "/api/attack", method: .post, headers: jsonHeaders,
                body: body(["image": Shipped.seven, "method": "cw", "eps": 0.1]))
            #expect(bad.status == .badRequest)
        }
    }

    /// Every malformed request is a 400 with one sentence, never a 500.
    @Test(arguments: [
        ("/api/predict", "{"),
        ("/api/predict", "[]"),
        ("/api/predict", "{}"),
        ("/api/predict", #"{"image": [0.5]}"#),
        ("/api/predict", #"{"image": "noise"}"#),
        ("/api/predict", #"{"image": [\#(Array(repeating: "2", count: 784).joined(separator: ","))]}"#),
        ("/api/predict", #"{"image": [\#(Array(repeating: "null", count: 784).joined(separator: ","))]}"#),
        ("/api/predict", #"{"image": [\#(Array(repeating: "0", count: 784).joined(separator: ","))], "extra": 1}"#),
        ("/api/fool", "{}"),
        ("/api/fool", #"{"target": 10}"#),
        ("/api/fool", #"{"target": 2.5}"#),
        ("/api/fool", #"{"target": "5"}"#),
        ("/api/fool", #"{"target": 5, "confidence": 1}"#),
        ("/api/fool", #"{"target": 5, "confidence": -0.5}"#),
        ("/api/fool", #"{"target": 5, "maxSteps": 5001}"#),
        ("/api/fool", #"{"target": 5, "maxSteps": 0}"#),
        ("/api/fool", #"{"target": 5, "method": "magic"}"#),
        ("/api/fool", #"{"target": 5, "model": "huge"}"#),
        ("/api/fool", #"{"target": 5, "within": 2}"#),
        ("/api/fool", #"{"target": 5, "start": "file:///etc/passwd"}"#),
        ("/api/fool", #"{"target": 5, "start": [1, 2]}"#),
        ("/api/fool", #"{"target": 5, "seed": -1}"#),
        ("/api/fool", #"{"target": 5, "maxsteps": 10}"#),
        ("/api/attack", #"{"method": "pgd"}"#),
        ("/api/attack", #"{"image": [\#(Array(repeating: "0", count: 784).joined(separator: ","))], "method": "jsma"}"#),
        ("/api/attack", #"{"image": [\#(Array(repeating: "0", count: 784).joined(separator: ","))], "eps": -1}"#),
        ("/api/attack", #"{"image": [\#(Array(repeating: "0", count: 784).joined(separator: ","))], "label": 11}"#),
    ])
    func badRequestsAreAnswered400(route: String, text: String) async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(
                uri: route, method: .post, headers: jsonHeaders, body: ByteBuffer(string: text))
            #expect(response.status == .badRequest, "\(route) \(text.prefix(60))")
            let message = try decode(response)["error"] as? String
            #expect(message?.isEmpty == false)
            #expect(message?.contains("\n") == false)
        }
    }

    @Test func bodiesOver64KiBAre413() async throws {
        try await app().test(.router) { client in
            let big = #"{"image": [\#(Array(repeating: "0.000000000", count: 7000).joined(separator: ","))]}"#
            #expect(big.utf8.count > 64 * 1024)
            for route in ["/api/predict", "/api/fool", "/api/attack"] {
                let response = try await client.execute(
                    uri: route, method: .post, headers: jsonHeaders, body: ByteBuffer(string: big))
                #expect(response.status == .contentTooLarge, "\(route)")
            }
        }
    }

    @Test func unknownRoutesAreNotFound() async throws {
        try await app().test(.router) { client in
            let response = try await client.execute(uri: "/api/files/../../etc/passwd", method: .get)
            #expect(response.status == .notFound)
        }
    }
}
