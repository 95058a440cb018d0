import Dispatch
import Foundation
import Synchronization

#if !canImport(Accelerate)
import COpenBLAS
#endif

/// How Deceive uses the CPU: the number of worker threads, and the batch sharding
/// that makes results independent of that number.
///
/// A batch is cut into shards of at most ``shardSize`` items (sizes depend only on the
/// batch size), each shard runs forward and backward on one thread with single-threaded
/// BLAS, and per-shard results are combined in shard order. So the same seed gives
/// bit-identical numbers with 1 thread or 8.
public enum Compute {
    private static let configuredThreads = Mutex<Int>(defaultThreadCount())
    private static let blasSetUp: Bool = {
        // Loads BLAS (single-threaded: parallelism comes from sharding the batch).
        _ = BLASBackend.ensured
        #if canImport(Glibc)
        // Activations are megabyte-sized and reallocated every step. By default glibc maps
        // such blocks fresh from the kernel, which zeroes every page again; keeping them in
        // the heap instead saves a few percent of every step.
        mallopt(M_MMAP_THRESHOLD, 256 << 20)
        mallopt(M_TRIM_THRESHOLD, 512 << 20)
        #endif
        return true
    }()

    /// The preferred number of items per shard.
    public static let shardSize = 32

    /// The number of worker threads: `DECEIVE_THREADS` if set, else the active core count.
    public static var threadCount: Int {
        get { configuredThreads.withLock { $0 } }
        set { configuredThreads.withLock { $0 = max(1, newValue) } }
    }

    private static func defaultThreadCount() -> Int {
        if let text = ProcessInfo.processInfo.environment["DECEIVE_THREADS"], let value = Int(text), value > 0 {
            return value
        }
        return ProcessInfo.processInfo.activeProcessorCount
    }

    /// Balanced shards covering `0..<count`: `ceil(count / shardSize)` ranges whose sizes
    /// differ by at most one. Depends on `count` only.
    public static func shards(count: Int, maximumSize: Int = shardSize) -> [Range<Int>] {
        guard count > 0 else { return [] }
        let shardCount = (count + maximumSize - 1) / maximumSize
        let base = count / shardCount
        let extra = count % shardCount
        var ranges: [Range<Int>] = []
        ranges.reserveCapacity(shardCount)
        var start = 0
        for index in 0..<shardCount {
            let size = base + (index < extra ? 1 : 0)
            ranges.append(start..<(start + size))
            start += size
        }
        return ranges
    }

    /// Runs `body(i)` for every `i` in `0..<count` on the worker threads and returns the
    /// results in index order. Index `i` goes to thread `i % threadCount`, so the work
    /// each thread does (and any floating-point order inside it) depends on `i` only.
    public static func map<T>(_ count: Int, _ body: (Int) -> T) -> [T] {
        _ = blasSetUp
        let threads = min(threadCount, count)
        if threads <= 1 || isWorkerThread {
            return (0..<count).map(body)
        }
        return withoutActuallyEscaping(body) { body in
            let slots = UnsafeMutableBufferPointer<T?>.allocate(capacity: count)
            slots.initialize(repeating: nil)
            defer {
                _ = slots.deinitialize()
                slots.deallocate()
            }
            let shared = SendableBox((body, slots))
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                isWorkerThread = true
                defer { isWorkerThread = false }
                let (body, slots) = shared.value
                var index = thread
                while index < count {
                    slots[index] = body(index)
                    index += threads
                }
            }
            return slots.map { $0! }
        }
    }

    /// Whether the current thread is inside `map`: nested calls then run serially.
    private static let workerKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()
    private static var isWorkerThread: Bool {
        get { pthread_getspecific(workerKey) != nil }
        set { pthread_setspecific(workerKey, newValue ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }
}

/// Runs `body` over `0..<count` in chunks of 16,384 on the worker threads (serially for
/// fewer): for element-wise loops, whose results do not depend on how they are cut.
func elementwise(count: Int, _ body: (Range<Int>) -> Void) {
    let chunk = 1 << 14
    guard count > chunk else {
        body(0..<count)
        return
    }
    _ = Compute.map((count + chunk - 1) / chunk) { index in body(index * chunk..<min(count, (index + 1) * chunk)) }
}

/// Moves a non-Sendable value into concurrent code whose safety the caller guarantees
/// (each worker touches disjoint slots).
struct SendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
