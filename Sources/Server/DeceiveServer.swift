import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NeuralNet
import ServiceLifecycle

/// `deceive serve`: the interactive page and its JSON API, on Hummingbird.
///
/// Routes (the README lists every field):
/// - `GET /`: the page, served by the binary itself (no external requests).
/// - `GET /api/health`: `{"status": "ok", "models": [names]}`.
/// - `POST /api/predict`: every loaded model's answer for one 28×28 image.
/// - `POST /api/fool`: fooling from noise or a given start, as `deceive fool` runs it;
///   with `Accept: text/event-stream`, `step` events and one `result` event.
/// - `POST /api/attack`: an attack on a given image (fgsm, pgd, deepfool, cw).
///
/// Fooling and attacks go through a bounded ``WorkQueue``; a client that goes away
/// cancels its work, and shutdown cancels whatever runs.
public struct DeceiveServer: Sendable {
    let api: API
    let queue: WorkQueue

    /// A server for these models (at least one), the first being the default model of
    /// every request.
    public init(models: [(name: String, model: Model)], limits: ServerLimits = ServerLimits()) {
        precondition(!models.isEmpty, "a server needs at least one model")
        api = API(models: models, limits: limits)
        queue = WorkQueue(running: limits.concurrentJobs, waiting: limits.queueLength)
    }

    /// The application on `host:port` (port 0: any free port); `onRunning` is told the
    /// port once it listens.
    public func application(
        host: String = "127.0.0.1", port: Int = 8080, onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        var logger = Logger(label: "deceive.serve")
        logger.logLevel = .warning
        return Application(
            router: router(),
            server: .http1(configuration: .init(idleTimeout: .seconds(60))),
            configuration: .init(
                address: .hostname(host, port: port), serverName: "deceive",
                availableConnectionsDelegate: MaximumAvailableConnections(512)),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    /// Runs until SIGINT or SIGTERM: then it stops accepting, cancels the running work
    /// (each run answers with what it has) and returns once the open requests are done.
    public func run(host: String, port: Int, onRunning: @escaping @Sendable (Int) async -> Void) async throws {
        let group = ServiceGroup(
            configuration: .init(
                services: [application(host: host, port: port, onRunning: onRunning), Canceller(queue: queue)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: Logger(label: "deceive.serve")))
        try await group.run()
    }

    /// The router alone, for tests.
    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let api = api
        let queue = queue
        router.get("/") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                body: .init(byteBuffer: ByteBuffer(string: Page.html)))
        }
        router.get("/api/health") { _, _ in
            json(HealthResponse(status: "ok", models: api.modelNames))
        }
        router.post("/api/predict") { request, _ in
            await respond { () async throws(APIError) -> Response in
                let object = try await body(of: request, limit: api.limits.maxBodyBytes)
                return json(try api.predict(object))
            }
        }
        router.post("/api/fool") { request, _ in
            if wantsEvents(request) {
                return await respond { () async throws(APIError) -> Response in
                    let fool = try api.foolRequest(try await body(of: request, limit: api.limits.maxBodyBytes))
                    if await queue.isFull { throw WorkQueue.busy }
                    let control = JobControl(timeLimit: api.limits.timeLimit)
                    return stream(queue: queue, control: control) { control, send throws(APIError) in
                        try api.fool(fool, control: control) { send("step", $0) }
                    }
                }
            }
            return await whileConnected(request, limits: api.limits) { object, control throws(APIError) in
                let fool = try api.foolRequest(object)
                return json(try await queue.job(control) { control throws(APIError) in try api.fool(fool, control: control) })
            }
        }
        router.post("/api/attack") { request, _ in
            await whileConnected(request, limits: api.limits) { object, control throws(APIError) in
                let attack = try api.attackRequest(object)
                return json(try await queue.job(control) { control throws(APIError) in try api.attack(attack, control: control) })
            }
        }
        return router
    }
}

/// Cancels the running work when shutdown begins; listed after the application, so the
/// service group shuts it down first, before the server waits for open requests.
private struct Canceller: Service {
    let queue: WorkQueue

    func run() async throws {
        try? await gracefulShutdown()
        await queue.cancelAll()
    }
}

struct HealthResponse: Encodable, Sendable {
    let status: String
    let models: [String]
}

struct ErrorResponse: Encodable, Sendable {
    let error: String
}

private let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return encoder
}()

/// A value as JSON text.
func jsonString(_ value: some Encodable) -> String {
    (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}

/// A 200 (or `status`) with a JSON body.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    Response(
        status: status, headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(string: jsonString(value))))
}

/// Runs a handler; a client's mistake becomes its status with `{"error": …}`, and
/// nothing a client sends becomes a 500.
func respond(_ handler: () async throws(APIError) -> Response) async -> Response {
    do {
        return try await handler()
    } catch {
        var response = json(
            ErrorResponse(error: error.message), status: HTTPResponse.Status(code: error.status))
        if error.status == 503 { response.headers[.retryAfter] = "1" }
        return response
    }
}

/// The request body as a JSON object: at most `limit` bytes (else a 413).
func body(of request: Request, limit: Int) async throws(APIError) -> JSONObject {
    try JSONValue.object(from: try await collect(request.body, limit: limit))
}

/// A request body's bytes: at most `limit` (else a 413).
func collect(_ body: RequestBody, limit: Int) async throws(APIError) -> Data {
    do {
        return Data(try await body.collect(upTo: limit).readableBytesView)
    } catch is NIOTooManyBytesError {
        throw APIError("the request body is larger than \(limit / 1024) KiB", status: 413)
    } catch {
        throw APIError("the request body could not be read")
    }
}

/// Whether the client asked for server-sent events.
func wantsEvents(_ request: Request) -> Bool {
    request.headers[.accept]?.contains("text/event-stream") ?? false
}

extension WorkQueue {
    /// The answer when the queue is full.
    static let busy = APIError("the server is busy: too many optimisations are waiting; try again", status: 503)

    /// Runs a job, a refusal turned into the client's answer: 503 when full or closing.
    func job<T: Sendable>(
        _ control: JobControl, _ body: @escaping @Sendable (JobControl) throws(APIError) -> T
    ) async throws(APIError) -> T {
        let outcome: Result<T, APIError>
        do throws(Refusal) {
            outcome = try await run(control) { control in
                do throws(APIError) { return .success(try body(control)) } catch { return .failure(error) }
            }
        } catch {
            switch error {
            case .full: throw WorkQueue.busy
            case .closed: throw APIError("the server is shutting down", status: 503)
            case .cancelled: throw APIError("the request was cancelled", status: 503)
            }
        }
        return try outcome.get()
    }
}

/// Reads the request's JSON object and runs `operation` on it while watching the
/// connection: when the client goes away, the job's control is cancelled and the work
/// stops after its current step. The connection is closed after the response (the watch
/// reads past the request), which the response says.
func whileConnected(
    _ request: Request, limits: ServerLimits,
    _ operation: @escaping (JSONObject, JobControl) async throws(APIError) -> Response
) async -> Response {
    let control = JobControl(timeLimit: limits.timeLimit)
    var response: Response
    do {
        response = try await request.body.consumeWithInboundCloseHandler { body in
            await respond { () async throws(APIError) -> Response in
                let object = try JSONValue.object(from: try await collect(body, limit: limits.maxBodyBytes))
                return try await operation(object, control)
            }
        } onInboundClosed: {
            control.cancel()
        }
    } catch {
        control.cancel()
        response = await respond { () throws(APIError) -> Response in
            throw APIError("the request was cancelled", status: 503)
        }
    }
    response.headers[.connection] = "close"
    return response
}

/// A server-sent-event stream of a job: what the job sends (`step` events) is written as
/// it comes, the newest few kept while the client reads slowly; the job's answer ends the
/// stream as one `result` event (or an `error` event). A client that goes away makes the
/// next write fail, which cancels the job: the first step of a job reports at once, so a
/// job whose client left while it waited stops after one step.
func stream<T: Encodable & Sendable>(
    queue: WorkQueue, control: JobControl,
    _ job: @escaping @Sendable (JobControl, @escaping @Sendable (String, any Encodable & Sendable) -> Void)
        throws(APIError) -> T
) -> Response {
    let body = ResponseBody { writer in
        let (events, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(8))
        continuation.yield(": queued\n\n")
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do throws(APIError) {
                    let value = try await queue.job(control) { control throws(APIError) in
                        try job(control) { name, value in continuation.yield(event(name, value)) }
                    }
                    continuation.yield(event("result", value))
                } catch {
                    continuation.yield(event("error", ErrorResponse(error: error.message)))
                }
                continuation.finish()
            }
            for await text in events {
                do {
                    try await writer.write(ByteBuffer(string: text))
                } catch {
                    // The client is gone: stop the work, drain what it still sends.
                    control.cancel()
                }
            }
        }
        try? await writer.finish(nil)
    }
    return Response(
        status: .ok,
        headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
        body: body)
}

/// One server-sent event.
func event(_ name: String, _ value: some Encodable) -> String {
    "event: \(name)\ndata: \(jsonString(value))\n\n"
}
