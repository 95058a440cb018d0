import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import Server

#if canImport(Glibc)
    import Glibc
#endif

/// Server-sent events split into (event, data) pairs.
func events(_ text: String) -> [(name: String, data: [String: Any])] {
    text.components(separatedBy: "\n\n").compactMap { chunk in
        var name: String?
        var data: [String: Any]?
        for line in chunk.split(separator: "\n") {
            if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") {
                data = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any]
            }
        }
        guard let name, let data else { return nil }
        return (name, data)
    }
}

/// A client on a plain socket, which can go away in the middle of a response.
struct RawClient {
    let socket: Int32

    init(port: Int) throws {
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(connected == 0)
    }

    func send(_ path: String, json: String, stream: Bool) {
        let request =
            "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + (stream ? "Accept: text/event-stream\r\n" : "") + "Content-Length: \(json.utf8.count)\r\n\r\n" + json
        _ = request.withCString { Glibc.send(socket, $0, strlen($0), 0) }
    }

    /// Reads until `marker` appears (or the peer closes); returns what was read.
    func read(until marker: String) -> String {
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !text.contains(marker) {
            let n = recv(socket, &buffer, buffer.count, 0)
            if n <= 0 { break }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        return text
    }

    func close() { _ = Glibc.close(socket) }

    /// One request on a new connection, read until the server closes it (it does after
    /// every fooling and attack answer): the status and the raw response text.
    static func request(port: Int, _ path: String, json: String) throws -> (status: Int, text: String) {
        let client = try RawClient(port: port)
        defer { client.close() }
        client.send(path, json: json, stream: false)
        let text = client.read(until: "\u{0}")
        let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, text)
    }
}

@Suite("Server streams and limits", .serialized)
struct ServerStreamTests {
    @Test func foolStreamsStepsThenOneResult() async throws {
        try await app().test(.live) { client in
            let response = try await client.execute(
                uri: "/api/fool", method: .post,
                headers: [.contentType: "application/json", .accept: "text/event-stream"],
                body: body(["target": 4, "within": 0.25, "confidence": 0.999]))
            #expect(response.status == .ok)
            #expect(response.headers[.contentType] == "text/event-stream")
            let all = events(String(buffer: response.body))
            let steps = all.filter { $0.name == "step" }
            #expect(!steps.isEmpty)
            #expect(all.last?.name == "result")
            #expect(all.filter { $0.name == "result" }.count == 1)
            let numbersOfSteps = steps.compactMap { $0.data["step"] as? Int }
            #expect(numbersOfSteps == numbersOfSteps.sorted())
            for step in steps {
                #expect(numbers(step.data["image"]).count == 784)
                #expect((step.data["probability"] as? NSNumber) != nil)
            }
            let result = try #require(all.last?.data)
            #expect(result["reached"] as? Bool == true)
            #expect(((result["confidence"] as? NSNumber)?.floatValue ?? 0) >= 0.999)
            #expect(numbers(result["image"]).count == 784)
        }
    }

    /// One job at a time and none waiting: a second request is a 503 with Retry-After;
    /// when the first client goes away its job stops, and the place is free again long
    /// before the job's own budget (a million steps) would have run out.
    @Test func fullQueueIs503AndAClientThatLeavesCancelsItsWork() async throws {
        let limits = ServerLimits(maxSteps: 1_000_000, concurrentJobs: 1, queueLength: 0, timeLimit: .seconds(120))
        try await app(limits).test(.live) { client in
            let port = try #require(client.port)
            let long = try RawClient(port: port)
            long.send(
                "/api/fool", json: #"{"target": 1, "within": 0.01, "confidence": 0.9999, "maxSteps": 1000000, "method": "sign"}"#,
                stream: true)
            let first = long.read(until: "event: step")
            #expect(first.contains("event: step"))
            let busy = try RawClient.request(port: port, "/api/fool", json: #"{"target": 5}"#)
            #expect(busy.status == 503)
            #expect(busy.text.lowercased().contains("retry-after: "))
            #expect(busy.text.contains(#"{"error":"#))
            let busyStream = try await client.execute(
                uri: "/api/fool", method: .post, headers: [.contentType: "application/json", .accept: "text/event-stream"],
                body: body(["target": 5]))
            #expect(busyStream.status == .serviceUnavailable)
            #expect(busyStream.headers[.retryAfter] != nil)
            let attack = try RawClient.request(
                port: port, "/api/attack", json: #"{"method": "fgsm", "image": [\#(Array(repeating: "0", count: 784).joined(separator: ","))]}"#)
            #expect(attack.status == 503)
            // Predictions do not queue behind optimisations.
            let predict = try await client.execute(
                uri: "/api/predict", method: .post, headers: jsonHeaders, body: body(["image": Shipped.seven]))
            #expect(predict.status == .ok)
            long.close()
            let clock = ContinuousClock()
            let began = clock.now
            var status = 503
            while status == 503, clock.now - began < .seconds(10) {
                try await Task.sleep(for: .milliseconds(50))
                status = try RawClient.request(port: port, "/api/fool", json: #"{"target": 5}"#).status
            }
            #expect(status == 200)
            #expect(clock.now - began < .seconds(5))
        }
    }

    /// The time limit stops a run and it answers with what it has.
    @Test func timeLimitStopsARun() async throws {
        let limits = ServerLimits(maxSteps: 1_000_000, timeLimit: .milliseconds(300))
        try await app(limits).test(.router) { client in
            let clock = ContinuousClock()
            let began = clock.now
            let response = try await client.execute(
                uri: "/api/fool", method: .post, headers: jsonHeaders,
                body: body(["target": 1, "within": 0.01, "confidence": 0.9999, "maxSteps": 1_000_000]))
            #expect(clock.now - began < .seconds(5))
            #expect(response.status == .ok)
            let object = try decode(response)
            #expect(object["reached"] as? Bool == false)
            #expect(object["stopped"] as? Bool == true)
            #expect(numbers(object["image"]).count == 784)
        }
    }

    /// At most `eventsPerSecond` step events a second.
    @Test func streamsAreRateLimited() async throws {
        let limits = ServerLimits(maxSteps: 1_000_000, timeLimit: .seconds(1), eventsPerSecond: 30)
        try await app(limits).test(.live) { client in
            let response = try await client.execute(
                uri: "/api/fool", method: .post,
                headers: [.contentType: "application/json", .accept: "text/event-stream"],
                body: body(["target": 1, "within": 0.01, "confidence": 0.9999, "maxSteps": 1_000_000, "method": "sign"]))
            let steps = events(String(buffer: response.body)).filter { $0.name == "step" }
            #expect(steps.count >= 5)
            #expect(steps.count <= 33)
        }
    }
}
