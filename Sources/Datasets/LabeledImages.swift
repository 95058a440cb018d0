import Foundation
import NeuralNet

/// Grey images with class labels, held as the bytes of the IDX files (60,000 MNIST
/// images take 47 MB this way instead of 188 MB as floats).
public struct LabeledImages: Sendable {
    /// Pixels, image after image, row-major, 0 (background) to 255.
    public let pixels: [UInt8]
    /// One class label per image.
    public let labels: [Int]
    /// Image height and width.
    public let height: Int, width: Int

    /// Creates a set from pixel bytes and labels; the sizes must agree.
    public init(pixels: [UInt8], labels: [Int], height: Int, width: Int) {
        precondition(pixels.count == labels.count * height * width, "pixel count does not match labels × height × width")
        self.pixels = pixels
        self.labels = labels
        self.height = height
        self.width = width
    }

    /// Reads a pair of IDX files (raw or gzip): images [n, h, w] and labels [n].
    public init(images: URL, labels: URL) throws(DatasetError) {
        try self.init(
            imageFile: readFile(images), imageSource: images.path, labelFile: readFile(labels), labelSource: labels.path)
    }

    /// Decodes a pair of IDX files held in memory; the sources name them in errors.
    public init(imageFile: Data, imageSource: String, labelFile: Data, labelSource: String) throws(DatasetError) {
        let (imageShape, pixels) = try IDX.decode(imageFile, source: imageSource)
        let (labelShape, labelBytes) = try IDX.decode(labelFile, source: labelSource)
        guard imageShape.count == 3 else {
            throw DatasetError(
                "\(imageSource): expected an image file with 3 dimensions [count, rows, columns], found \(imageShape.count)")
        }
        guard labelShape.count == 1 else {
            throw DatasetError("\(labelSource): expected a label file with 1 dimension, found \(labelShape.count)")
        }
        guard imageShape[0] == labelShape[0] else {
            throw DatasetError("\(imageSource) holds \(imageShape[0]) images but \(labelSource) holds \(labelShape[0]) labels")
        }
        if let bad = labelBytes.firstIndex(where: { $0 > 9 }) {
            throw DatasetError("\(labelSource): label \(labelBytes[bad]) at index \(bad) is not a class 0–9")
        }
        self.init(pixels: pixels, labels: labelBytes.map(Int.init), height: imageShape[1], width: imageShape[2])
    }

    /// The number of images.
    public var count: Int { labels.count }

    /// Images `indices` as a [n, 1, h, w] tensor with pixels in [0, 1].
    public func images<C: Collection>(_ indices: C) -> Tensor where C.Element == Int {
        let size = height * width
        return Tensor(shape: [indices.count, 1, height, width], unsafeUninitialized: { out in
            pixels.withUnsafeBufferPointer { source in
                for (row, index) in indices.enumerated() {
                    let from = index * size
                    let to = row * size
                    for offset in 0..<size { out[to + offset] = Float(source[from + offset]) / 255 }
                }
            }
        })
    }

    /// All images as one tensor.
    public var allImages: Tensor { images(0..<count) }

    /// The first `n` images (all of them when `n` is larger).
    public func prefix(_ n: Int) -> LabeledImages {
        let kept = min(max(n, 0), count)
        return LabeledImages(
            pixels: Array(pixels[0..<kept * height * width]), labels: Array(labels[0..<kept]), height: height, width: width)
    }

    /// How many images each class has.
    public var classCounts: [Int] {
        var counts = [Int](repeating: 0, count: 10)
        for label in labels { counts[label] += 1 }
        return counts
    }
}

/// A dataset's training and test sets.
public struct Dataset: Sendable {
    /// Which dataset.
    public let name: DatasetName
    /// The training set (60,000 images for MNIST and Fashion-MNIST).
    public let train: LabeledImages
    /// The test set (10,000 images).
    public let test: LabeledImages

    /// Creates a dataset from its parts.
    public init(name: DatasetName, train: LabeledImages, test: LabeledImages) {
        self.name = name
        self.train = train
        self.test = test
    }
}
