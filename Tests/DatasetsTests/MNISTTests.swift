import Foundation
import NeuralNet
import Testing

@testable import Datasets

/// The real MNIST, fetched into the cache when missing (`make test` fetches it first).
let mnist: Dataset = {
    do {
        return try DataStore(dataset: .mnist).load()
    } catch {
        fatalError("MNIST is needed for these tests and could not be loaded: \(error)")
    }
}()

@Suite struct MNISTTests {
    @Test func knownFacts() {
        #expect(mnist.train.count == 60_000 && mnist.test.count == 10_000)
        #expect(mnist.train.height == 28 && mnist.train.width == 28)
        #expect(mnist.train.classCounts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
        #expect(mnist.test.classCounts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
        #expect(Array(mnist.train.labels.prefix(5)) == [5, 0, 4, 1, 9])
        #expect(Array(mnist.test.labels.prefix(5)) == [7, 2, 1, 0, 4])
        let first = mnist.train.images([0])
        #expect(first.shape == [1, 1, 28, 28])
        #expect(first.scalars.allSatisfy { (0...1).contains($0) })
        #expect(first.scalars.max() == 1)
        #expect(mnist.train.pixels.count == 60_000 * 784)
    }

    @Test func checksumMismatchIsCaught() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deceive-sum-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = DataStore(dataset: .mnist).directory
        for file in DatasetName.mnist.files {
            try FileManager.default.copyItem(
                at: source.appendingPathComponent(file.name), to: directory.appendingPathComponent(file.name))
        }
        // Flip one pixel of the test images: still a valid IDX file, but not MNIST.
        let target = directory.appendingPathComponent("t10k-images-idx3-ubyte")
        var bytes = try Data(contentsOf: target)
        bytes[1000] ^= 1
        try bytes.write(to: target)
        let store = DataStore(dataset: .mnist, directory: directory)
        do {
            _ = try store.load(fetchIfMissing: false)
            Issue.record("a corrupt file loaded")
        } catch {
            #expect(error.description.hasPrefix("\(target.path): SHA-256 "))
            #expect(error.description.contains("does not match"))
        }
    }

    @Test func gzipFilesLoadToo() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("deceive-gzs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = DataStore(dataset: .mnist).directory
        for file in DatasetName.mnist.files {
            let data = try Data(contentsOf: source.appendingPathComponent(file.name))
            try gzip(data).write(to: directory.appendingPathComponent(file.name + ".gz"))
        }
        let loaded = try DataStore(dataset: .mnist, directory: directory).load(fetchIfMissing: false)
        #expect(loaded.train.pixels == mnist.train.pixels && loaded.test.labels == mnist.test.labels)
    }

    @Test func missingDirectorySaysHowToFetch() {
        let directory = URL(fileURLWithPath: "/nonexistent/deceive")
        #expect(throws: DatasetError("/nonexistent/deceive/train-images-idx3-ubyte: no such file; run `deceive data fetch --dataset mnist`")) {
            try DataStore(dataset: .mnist, directory: directory).load(fetchIfMissing: false)
        }
    }
}

@Suite struct ShuffledBatchesTests {
    let small = mnist.train.prefix(1000)

    @Test func everyEpochIsAPermutationThatRepeats() {
        let source = ShuffledBatches(small, batchSize: 128, seed: 7)
        #expect(source.batchesPerEpoch == 8)
        let first = source.permutation(epoch: 0)
        #expect(first.sorted() == Array(0..<1000))
        #expect(first != Array(0..<1000))
        #expect(source.permutation(epoch: 1) != first)
        #expect(ShuffledBatches(small, batchSize: 128, seed: 7).permutation(epoch: 0) == first)
        #expect(ShuffledBatches(small, batchSize: 128, seed: 8).permutation(epoch: 0) != first)
        var seen: [Int] = []
        for index in 0..<source.batchesPerEpoch {
            let (input, labels) = source.batch(epoch: 0, index: index)
            #expect(input.batchSize == labels.count)
            #expect(labels.count == (index == 7 ? 1000 - 7 * 128 : 128))
            seen += labels
        }
        #expect(seen == first.map { small.labels[$0] })
        let again = source.batch(epoch: 0, index: 3)
        #expect(again.input == source.batch(epoch: 0, index: 3).input)
    }

    @Test func shiftsMoveDigitsWithoutLosingThem() {
        let plain = ShuffledBatches(small, batchSize: 64, seed: 3)
        let shifted = ShuffledBatches(small, batchSize: 64, seed: 3, maximumShift: 2)
        let (a, labelsA) = plain.batch(epoch: 0, index: 0)
        let (b, labelsB) = shifted.batch(epoch: 0, index: 0)
        #expect(labelsA == labelsB)
        #expect(a != b)
        var moved = 0
        for item in 0..<64 {
            let x = Array(a.scalars[item * 784..<(item + 1) * 784])
            let y = Array(b.scalars[item * 784..<(item + 1) * 784])
            if x != y { moved += 1 }
            // The shifted image equals the original moved by some (dy, dx) in −2…2.
            let matches = (-2...2).contains { dy in
                (-2...2).contains { dx in
                    (0..<28).allSatisfy { r in
                        (0..<28).allSatisfy { c in
                            let sr = r - dy, sc = c - dx
                            let expected: Float = (0..<28).contains(sr) && (0..<28).contains(sc) ? x[sr * 28 + sc] : 0
                            return y[r * 28 + c] == expected
                        }
                    }
                }
            }
            #expect(matches)
        }
        #expect(moved > 50)
    }
}
