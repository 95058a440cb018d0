import Foundation
import Synchronization

/// Admission for the server's heavy work (fooling, attacks): at most `running` jobs at
/// once, at most `waiting` more in line, and beyond that a refusal (the client gets a 503
/// with `Retry-After`) instead of an unbounded queue.
///
/// Each admitted job gets a ``JobControl`` that the optimisation's step observer reads:
/// it is cancelled when the client goes away, when the job's time runs out, or when the
/// server shuts down (``cancelAll()``).
actor WorkQueue {
    /// How many jobs run at once, and how many may wait.
    let running: Int
    let waiting: Int

    private var active: [ObjectIdentifier: JobControl] = [:]
    private var line: [(control: JobControl, continuation: CheckedContinuation<Void, any Error>)] = []
    private var closed = false

    init(running: Int, waiting: Int) {
        self.running = max(1, running)
        self.waiting = max(0, waiting)
    }

    /// Why a job was not admitted.
    enum Refusal: Error, Equatable {
        /// The queue is full: try again later.
        case full
        /// The server is shutting down.
        case closed
        /// The client went away while the job waited.
        case cancelled
    }

    /// Whether a new job would be refused now (full, or closing).
    var isFull: Bool { closed || (active.count >= running && line.count >= waiting) }

    /// Jobs running and waiting now.
    var load: (running: Int, waiting: Int) { (active.count, line.count) }

    /// Runs `body` on a thread of its own once a place is free; throws ``Refusal`` when the
    /// queue is full, the server is closing, or the job was cancelled while it waited.
    /// `body` should check `control` between steps.
    func run<T: Sendable>(
        _ control: JobControl, _ body: @escaping @Sendable (JobControl) -> T
    ) async throws(Refusal) -> T {
        try await admit(control)
        defer { release(control) }
        return await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: body(control))
            }
        }
    }

    private func admit(_ control: JobControl) async throws(Refusal) {
        if closed { throw .closed }
        if control.isCancelled { throw .cancelled }
        if active.count < running {
            active[ObjectIdentifier(control)] = control
            return
        }
        guard line.count < waiting else { throw .full }
        // A client that goes away while waiting gives up its place in line at once.
        control.onCancel { [weak self] in
            Task { await self?.withdraw(control) }
        }
        do {
            try await withCheckedThrowingContinuation { continuation in
                line.append((control, continuation))
            }
        } catch let refusal as Refusal {
            throw refusal
        } catch {
            throw .cancelled
        }
    }

    private func release(_ control: JobControl) {
        active[ObjectIdentifier(control)] = nil
        // Hand the place to the first waiter that still wants it.
        while active.count < running, !line.isEmpty {
            let next = line.removeFirst()
            if next.control.isCancelled {
                next.continuation.resume(throwing: Refusal.cancelled)
            } else {
                active[ObjectIdentifier(next.control)] = next.control
                next.continuation.resume()
            }
        }
    }

    /// Takes a cancelled waiter out of the line (its client went away before it ran).
    func withdraw(_ control: JobControl) {
        if let index = line.firstIndex(where: { $0.control === control }) {
            line.remove(at: index).continuation.resume(throwing: Refusal.cancelled)
        }
    }

    /// Shutdown: refuse new jobs, stop the running ones after their current step, and
    /// turn away the waiting ones.
    func cancelAll() {
        closed = true
        for control in active.values { control.cancel() }
        for waiter in line { waiter.continuation.resume(throwing: Refusal.closed) }
        line.removeAll()
    }
}

/// A job's stop signal and deadline, shared by the request that asked for it (which
/// cancels it when the client goes away) and the optimisation (whose step observer reads
/// it).
final class JobControl: Sendable {
    private let cancelled = Atomic<Bool>(false)
    private let handler = Mutex<(@Sendable () -> Void)?>(nil)
    /// When the job's time is up.
    let deadline: ContinuousClock.Instant

    init(timeLimit: Duration) {
        deadline = ContinuousClock.now + timeLimit
    }

    /// Asks the job to stop after its current step (or to leave the line).
    func cancel() {
        cancelled.store(true, ordering: .relaxed)
        handler.withLock { $0 }?()
    }

    /// Sets what a cancellation also does.
    func onCancel(_ body: @escaping @Sendable () -> Void) {
        handler.withLock { $0 = body }
    }

    /// Whether the job was asked to stop.
    var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    /// Whether the job's time limit has passed.
    var isOverTime: Bool { ContinuousClock.now >= deadline }

    /// Whether the optimisation should stop now.
    var shouldStop: Bool { isCancelled || isOverTime }
}
