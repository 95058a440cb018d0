import NeuralNet
import Testing

@testable import Visuals

@Suite("Images and tensors")
struct ImageTests {
    @Test("bytes become Float(b) / 255 exactly, and come back unchanged")
    func bytesToTensorAndBack() {
        let image = GreyImage(width: 256, height: 1, pixels: allByteValues)
        let tensor = image.tensor()
        #expect(tensor.shape == [1, 1, 1, 256])
        #expect(tensor.scalars == allByteValues.map { Float($0) / 255 })
        #expect(GreyImage(tensor) == image)
        #expect(GreyImage(tensor.reshaped([1, 1, 256])) == image)
        #expect(GreyImage(tensor.reshaped([1, 256])) == image)
    }

    @Test("floats are rounded and clamped to bytes; NaN becomes black")
    func quantisation() {
        let values: [Float] = [-0.5, 0, 0.5, 1, 2, .nan, .infinity, -.infinity, 0.2, 1.5 / 255, 2.49 / 255]
        let image = GreyImage(Tensor(shape: [1, 1, 1, values.count], scalars: values))
        #expect(image.pixels == [0, 0, 128, 255, 255, 0, 255, 0, 51, 2, 2])
    }

    @Test("a batch splits into its images")
    func batch() {
        let batch = Tensor(shape: [3, 1, 2, 2], scalars: (0..<12).map { Float($0) / 255 })
        let images = GreyImage.images(fromBatch: batch)
        #expect(images.map(\.pixels) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
        #expect(images.allSatisfy { $0.width == 2 && $0.height == 2 })
    }

    @Test("pixels are addressed as (x, y) from the top left; inversion swaps black and white")
    func addressing() {
        var image = GreyImage(width: 3, height: 2)
        image[2, 1] = 9
        #expect(image.pixels == [0, 0, 0, 0, 0, 9])
        #expect(image.inverted().pixels == [255, 255, 255, 255, 255, 246])
    }
}

@Suite("Resizing")
struct ResizeTests {
    @Test("a 56 × 56 image of 2 × 2 blocks scales to 28 × 28 of the block values")
    func halving() {
        let blocks = GreyImage(width: 28, height: 28, pixels: (0..<784).map { UInt8(($0 * 37) % 256) })
        var large = GreyImage(width: 56, height: 56)
        for y in 0..<56 {
            for x in 0..<56 { large[x, y] = blocks[x / 2, y / 2] }
        }
        #expect(large.resized(width: 28, height: 28) == blocks)
        #expect(large.fittedToSquare() == blocks)
    }

    @Test("area averaging weights pixels by the fraction they cover")
    func fractionalCoverage() {
        // Three pixels into two: each output covers 1.5 source pixels.
        let row = GreyImage(width: 3, height: 1, pixels: [0, 90, 180])
        #expect(row.resized(width: 2, height: 1).pixels == [30, 150])
        #expect(row.resized(width: 1, height: 1).pixels == [90])
        // Enlarging repeats pixels.
        #expect(
            GreyImage(width: 2, height: 1, pixels: [10, 20]).resized(width: 4, height: 2).pixels
                == [10, 10, 20, 20, 10, 10, 20, 20])
    }

    @Test("fitting to a square pads the short side instead of stretching")
    func fitting() {
        let wide = GreyImage(width: 56, height: 28, repeating: 200)
        let fitted = wide.fittedToSquare(side: 28)
        #expect(fitted.width == 28 && fitted.height == 28)
        for y in 0..<28 {
            let expected: UInt8 = (7..<21).contains(y) ? 200 : 0
            #expect((0..<28).allSatisfy { fitted[$0, y] == expected }, "row \(y)")
        }
        let tall = GreyImage(width: 1, height: 3, pixels: [30, 60, 90])
        #expect(
            tall.fittedToSquare(side: 3, background: 255).pixels == [
                255, 30, 255, 255, 60, 255, 255, 90, 255,
            ])
    }
}
