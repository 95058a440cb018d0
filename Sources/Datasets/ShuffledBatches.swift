import NeuralNet
import Synchronization

/// Training batches drawn from a ``LabeledImages`` set: a new seeded shuffle every epoch,
/// an optional random shift of each image (augmentation), and a last batch that may be
/// smaller (PyTorch's `DataLoader` with `drop_last=False`).
///
/// The shuffle of epoch `e` comes from `SplitMix64(seed:stream: e)` and the shift of a
/// sample from a stream keyed by epoch and sample, so a batch is the same whenever it is
/// asked for: runs repeat exactly and can resume from any batch.
public struct ShuffledBatches: BatchSource {
    /// The images.
    public let data: LabeledImages
    /// Images per batch.
    public let batchSize: Int
    /// Seeds the shuffles and the shifts.
    public let seed: UInt64
    /// The largest shift, in pixels, along each axis (0: no augmentation).
    public let maximumShift: Int
    private let cache = PermutationCache()

    /// Creates a batch source; `maximumShift` > 0 shifts every image by a random whole number
    /// of pixels in −maximumShift…maximumShift along each axis, filling with background.
    public init(_ data: LabeledImages, batchSize: Int, seed: UInt64, maximumShift: Int = 0) {
        precondition(batchSize > 0, "batch size must be positive")
        self.data = data
        self.batchSize = batchSize
        self.seed = seed
        self.maximumShift = maximumShift
    }

    public var sampleCount: Int { data.count }
    public var batchesPerEpoch: Int { (data.count + batchSize - 1) / batchSize }

    /// The order in which epoch `epoch` visits the samples (Fisher–Yates).
    public func permutation(epoch: Int) -> [Int] {
        cache.permutation(epoch: epoch, count: data.count) {
            var generator = SplitMix64(seed: seed, stream: UInt64(epoch))
            var order = Array(0..<data.count)
            for index in stride(from: order.count - 1, to: 0, by: -1) {
                order.swapAt(index, Int(generator.next() % UInt64(index + 1)))
            }
            return order
        }
    }

    public func batch(epoch: Int, index: Int) -> (input: Tensor, labels: [Int]) {
        let order = permutation(epoch: epoch)
        let range = index * batchSize..<min((index + 1) * batchSize, data.count)
        let indices = Array(order[range])
        var input = data.images(indices)
        if maximumShift > 0 {
            let size = data.height * data.width
            let span = UInt64(2 * maximumShift + 1)
            input.scalars.withUnsafeMutableBufferPointer { buffer in
                var scratch = [Float](repeating: 0, count: size)
                for (row, sample) in indices.enumerated() {
                    var generator = SplitMix64(seed: seed, stream: 1_000_000 + UInt64(epoch), UInt64(sample))
                    let dy = Int(generator.next() % span) - maximumShift
                    let dx = Int(generator.next() % span) - maximumShift
                    shift(buffer, offset: row * size, dy: dy, dx: dx, scratch: &scratch)
                }
            }
        }
        return (input, indices.map { data.labels[$0] })
    }

    /// Moves one image by (dy, dx) pixels; pixels shifted in are background (0).
    private func shift(_ buffer: UnsafeMutableBufferPointer<Float>, offset: Int, dy: Int, dx: Int, scratch: inout [Float]) {
        if dy == 0 && dx == 0 { return }
        let height = data.height, width = data.width
        for index in 0..<height * width { scratch[index] = 0 }
        for y in max(0, dy)..<min(height, height + dy) {
            for x in max(0, dx)..<min(width, width + dx) {
                scratch[y * width + x] = buffer[offset + (y - dy) * width + (x - dx)]
            }
        }
        for index in 0..<height * width { buffer[offset + index] = scratch[index] }
    }
}

/// Remembers the last epoch's permutation, so that every batch of an epoch reuses it.
private final class PermutationCache: Sendable {
    private let state = Mutex<(epoch: Int, order: [Int])?>(nil)

    func permutation(epoch: Int, count: Int, make: () -> [Int]) -> [Int] {
        if let cached = state.withLock({ $0 }), cached.epoch == epoch, cached.order.count == count { return cached.order }
        let order = make()
        state.withLock { $0 = (epoch, order) }
        return order
    }
}
