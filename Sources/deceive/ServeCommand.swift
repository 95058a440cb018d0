import ArgumentParser
import Foundation
import NeuralNet
import Server
import Synchronization

/// `deceive serve`.
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve the interactive page: draw a digit, fool the network step by step, attack the drawing.",
        discussion: """
            The page and its JSON API (/api/health, /api/predict, /api/fool, /api/attack) are served by this \
            binary alone, with no external requests. It binds loopback unless --host says otherwise; SIGINT or \
            SIGTERM stop it gracefully: running work is cancelled and the command exits 0.
            """)

    @Option(help: "Address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface).")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port).")
    var port: Int = 8080

    @Option(help: "The standard model (PyTorch-named safetensors).")
    var model: String = "models/mnist-cnn.safetensors"

    @Option(help: "The robust model, shown beside the standard one.")
    var robustModel: String = "models/mnist-cnn-robust.safetensors"

    @Option(help: "Largest maxSteps a fooling request may ask for.")
    var maxSteps: Int = ServerLimits().maxSteps

    @Option(help: "Optimisations (fooling, attacks) running at once; default: one per core.")
    var jobs: Int = ServerLimits().concurrentJobs

    @Option(help: "Optimisations that may wait beyond those; one more is answered 503.")
    var queue: Int = ServerLimits().queueLength

    @Option(help: "Seconds one optimisation may take before it stops and answers with what it has.")
    var timeLimit: Double = 20

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0–65535, got \(port)") }
        guard !host.isEmpty else { throw ValidationError("--host must not be empty") }
        guard maxSteps >= 1 else { throw ValidationError("--max-steps must be at least 1, got \(maxSteps)") }
        guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1, got \(jobs)") }
        guard queue >= 0 else { throw ValidationError("--queue must be at least 0, got \(queue)") }
        guard timeLimit.isFinite, timeLimit > 0, timeLimit <= 3600 else {
            throw ValidationError("--time-limit must be a number of seconds in (0, 3600], got \(timeLimit)")
        }
    }

    func run() throws {
        try runReportingErrors {
            var models: [(name: String, model: Model)] = []
            for (name, path) in [("standard", model), ("robust", robustModel)] {
                let checkpoint = try loadCheckpoint(path, architecture: nil)
                guard checkpoint.model.architecture.inputShape == [1, 28, 28], checkpoint.model.classCount == 10 else {
                    throw Failure("\(path): the page needs a model of 28×28 grey digits with 10 classes")
                }
                models.append((name, checkpoint.model))
            }
            let limits = ServerLimits(
                maxSteps: maxSteps, concurrentJobs: jobs, queueLength: queue,
                timeLimit: .milliseconds(Int(timeLimit * 1000)))
            let server = DeceiveServer(models: models, limits: limits)
            let host = host
            let port = port
            try waitFor(describing: { error in
                let text = "\(error)"
                return text.contains("Address already in use")
                    ? "cannot listen on \(host):\(port): the address is already in use (is another server running? try --port)"
                    : "cannot serve on \(host):\(port): \(text)"
            }) {
                try await server.run(host: host, port: port) { port in
                    // Unbuffered, so that a script reading a pipe sees it at once.
                    FileHandle.standardOutput.write(Data("listening on http://\(host):\(port)\n".utf8))
                }
            }
            print("stopped")
        }
    }
}

/// Runs async work from a synchronous command and waits for it.
private func waitFor(
    describing describe: (any Error) -> String, _ work: @escaping @Sendable () async throws -> Void
) throws {
    let done = DispatchSemaphore(value: 0)
    let failure = Mutex<(any Error)?>(nil)
    Task {
        do { try await work() } catch { failure.withLock { $0 = error } }
        done.signal()
    }
    done.wait()
    if let error = failure.withLock({ $0 }) {
        throw Failure(describe(error))
    }
}
