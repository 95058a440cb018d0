import NeuralNet

/// An 8-bit greyscale image: `width × height` bytes in row-major order, 0 black, 255 white.
///
/// This is the on-disk form of an MNIST digit. Converting to and from a ``Tensor`` follows
/// PyTorch: byte `b` becomes `Float(b) / 255` (as `torchvision.transforms.ToTensor` does),
/// and a float `x` becomes `round(x * 255)` clamped to `0...255` (as
/// `torchvision.utils.save_image` does), so a byte survives the round trip unchanged.
public struct GreyImage: Sendable, Equatable, Hashable {
    /// The number of columns.
    public let width: Int
    /// The number of rows.
    public let height: Int
    /// The pixels, row by row from the top; `pixels.count == width * height`.
    public private(set) var pixels: [UInt8]

    /// Creates an image from its pixels, row by row from the top.
    ///
    /// - Precondition: `width` and `height` are not negative and
    ///   `pixels.count == width * height`.
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0, "negative image size \(width)×\(height)")
        precondition(
            pixels.count == width * height,
            "a \(width)×\(height) image needs \(width * height) pixels, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Creates an image with every pixel equal to `value` (black by default).
    public init(width: Int, height: Int, repeating value: UInt8 = 0) {
        self.init(width: width, height: height, pixels: [UInt8](repeating: value, count: width * height))
    }

    /// The pixel in column `x` and row `y`, counted from the top left.
    ///
    /// - Precondition: `0 <= x < width` and `0 <= y < height`.
    public subscript(x: Int, y: Int) -> UInt8 {
        get {
            precondition(
                x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) is outside the image")
            return pixels[y * width + x]
        }
        set {
            precondition(
                x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) is outside the image")
            pixels[y * width + x] = newValue
        }
    }

    /// The same image with black and white swapped (`255 - value`).
    ///
    /// MNIST digits are white on black; a digit photographed or drawn dark on light needs this
    /// before a model trained on MNIST can read it.
    public func inverted() -> GreyImage {
        GreyImage(width: width, height: height, pixels: pixels.map { 255 - $0 })
    }
}

// MARK: - Tensors

extension GreyImage {
    /// Creates an image from a single-channel tensor of shape `[1, 1, H, W]`, `[1, H, W]` or
    /// `[H, W]` with pixels in `[0, 1]`.
    ///
    /// Each value `x` becomes `round(x * 255)` clamped to `0...255`; NaN becomes 0. This is
    /// the 8-bit quantisation every PNG written from a tensor goes through.
    ///
    /// - Precondition: the shape is one of the three above.
    public init(_ tensor: Tensor) {
        let shape = tensor.shape
        precondition(
            shape.count >= 2 && shape.count <= 4 && shape.dropLast(2).allSatisfy { $0 == 1 },
            "expected a single image of shape [1, 1, H, W], [1, H, W] or [H, W], got \(shape)")
        self.init(
            width: shape[shape.count - 1], height: shape[shape.count - 2],
            pixels: tensor.scalars.map(GreyImage.byte))
    }

    /// Splits a batch of shape `[N, 1, H, W]` into its `N` images, quantised as in
    /// ``init(_:)``.
    ///
    /// - Precondition: the tensor has four dimensions and one channel.
    public static func images(fromBatch batch: Tensor) -> [GreyImage] {
        precondition(
            batch.shape.count == 4 && batch.shape[1] == 1,
            "expected a batch of shape [N, 1, H, W], got \(batch.shape)")
        let (count, height, width) = (batch.shape[0], batch.shape[2], batch.shape[3])
        let size = height * width
        return (0..<count).map { index in
            let item = batch.scalars[(index * size)..<((index + 1) * size)]
            return GreyImage(width: width, height: height, pixels: item.map(GreyImage.byte))
        }
    }

    /// The image as a tensor of shape `[1, 1, height, width]` with `Float(byte) / 255` in each
    /// element, ready to be fed to a model.
    public func tensor() -> Tensor {
        Tensor(shape: [1, 1, height, width], scalars: pixels.map { Float($0) / 255 })
    }

    /// `round(x * 255)` clamped to a byte, NaN as 0.
    static func byte(_ value: Float) -> UInt8 {
        guard !value.isNaN else { return 0 }
        return UInt8(min(max((value * 255).rounded(), 0), 255))
    }
}

// MARK: - Resizing

extension GreyImage {
    /// The image scaled to `width × height` by area averaging (a box filter).
    ///
    /// Every output pixel is the mean of the source area it covers, with source pixels on its
    /// border weighted by the fraction that falls inside; the mean is rounded to the nearest
    /// byte. Scaling a `2k × 2k` image of uniform `2 × 2` blocks to `k × k` gives exactly the
    /// block values. The filter is meant for shrinking; enlarging with it repeats pixels,
    /// blending the two neighbours where an output pixel straddles a source edge.
    ///
    /// The aspect ratio is not kept: see ``fittedToSquare(side:background:)`` for that.
    ///
    /// - Precondition: `width` and `height` are positive and the image is not empty.
    public func resized(width newWidth: Int, height newHeight: Int) -> GreyImage {
        precondition(newWidth > 0 && newHeight > 0, "cannot resize to \(newWidth)×\(newHeight)")
        precondition(width > 0 && height > 0, "cannot resize an empty \(width)×\(height) image")
        // Separable: average along rows into floats, then along columns.
        let columnWeights = GreyImage.boxWeights(from: width, to: newWidth)
        let rowWeights = GreyImage.boxWeights(from: height, to: newHeight)
        var horizontal = [Float](repeating: 0, count: height * newWidth)  // (height, newWidth)
        for y in 0..<height {
            for (x, weights) in columnWeights.enumerated() {
                var sum: Float = 0
                for (source, weight) in weights { sum += weight * Float(pixels[y * width + source]) }
                horizontal[y * newWidth + x] = sum
            }
        }
        var result = [UInt8](repeating: 0, count: newHeight * newWidth)  // (newHeight, newWidth)
        for (y, weights) in rowWeights.enumerated() {
            for x in 0..<newWidth {
                var sum: Float = 0
                for (source, weight) in weights { sum += weight * horizontal[source * newWidth + x] }
                result[y * newWidth + x] = UInt8(min(max(sum.rounded(), 0), 255))
            }
        }
        return GreyImage(width: newWidth, height: newHeight, pixels: result)
    }

    /// The image padded to a square with `background` (evenly on both sides, the odd pixel
    /// after) and then scaled to `side × side` by ``resized(width:height:)``.
    ///
    /// This is how `deceive predict` brings an arbitrary picture to MNIST's 28 × 28 without
    /// stretching the digit. It does not imitate the rest of MNIST's preparation (the digit
    /// fitted into a 20 × 20 box and centred by its centre of mass), nor invert dark-on-light
    /// pictures: see ``inverted()``.
    ///
    /// - Precondition: `side` is positive and the image is not empty.
    public func fittedToSquare(side: Int = 28, background: UInt8 = 0) -> GreyImage {
        let squareSide = max(width, height)
        guard width != height else { return resized(width: side, height: side) }
        var square = GreyImage(width: squareSide, height: squareSide, repeating: background)
        let (left, top) = ((squareSide - width) / 2, (squareSide - height) / 2)
        for y in 0..<height {
            let from = y * width
            let to = (top + y) * squareSide + left
            square.pixels.replaceSubrange(to..<(to + width), with: pixels[from..<(from + width)])
        }
        return square.resized(width: side, height: side)
    }

    /// For each of `newCount` output cells, the source indices it overlaps and the fraction of
    /// the cell each one covers (the fractions of one cell add up to 1).
    private static func boxWeights(from count: Int, to newCount: Int) -> [[(Int, Float)]] {
        // In units of 1/newCount of a source pixel, output cell i spans [i * count, (i + 1) * count)
        // and source pixel j spans [j * newCount, (j + 1) * newCount): integer arithmetic, so
        // exact ratios such as 2:1 give exact weights.
        (0..<newCount).map { cell in
            let (start, end) = (cell * count, (cell + 1) * count)
            return (start / newCount...((end - 1) / newCount)).map { source in
                let overlap = min(end, (source + 1) * newCount) - max(start, source * newCount)
                return (source, Float(overlap) / Float(count))
            }
        }
    }
}

// MARK: - Colour

/// An 8-bit sRGB colour.
public struct Colour: Sendable, Equatable, Hashable {
    /// The red component.
    public var red: UInt8
    /// The green component.
    public var green: UInt8
    /// The blue component.
    public var blue: UInt8

    /// Creates a colour from its components.
    public init(red: UInt8, green: UInt8, blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// The grey with all three components equal to `value`.
    public init(grey value: UInt8) { self.init(red: value, green: value, blue: value) }

    /// Black.
    public static let black = Colour(grey: 0)
    /// White.
    public static let white = Colour(grey: 255)
}

/// An 8-bit RGB image: `width × height` pixels of three bytes (red, green, blue) in
/// row-major order. Report figures (grids, captions, perturbation maps) are drawn in it.
public struct RGBImage: Sendable, Equatable, Hashable {
    /// The number of columns.
    public let width: Int
    /// The number of rows.
    public let height: Int
    /// The components, red, green, blue for each pixel, row by row from the top;
    /// `components.count == 3 * width * height`.
    public private(set) var components: [UInt8]

    /// Creates an image from its interleaved red, green and blue components.
    ///
    /// - Precondition: `width` and `height` are not negative and
    ///   `components.count == 3 * width * height`.
    public init(width: Int, height: Int, components: [UInt8]) {
        precondition(width >= 0 && height >= 0, "negative image size \(width)×\(height)")
        precondition(
            components.count == 3 * width * height,
            "a \(width)×\(height) RGB image needs \(3 * width * height) components, got \(components.count)")
        self.width = width
        self.height = height
        self.components = components
    }

    /// Creates an image filled with `colour`.
    public init(width: Int, height: Int, filledWith colour: Colour) {
        let pixel = [colour.red, colour.green, colour.blue]
        self.init(
            width: width, height: height,
            components: Array([[UInt8]](repeating: pixel, count: max(width * height, 0)).joined()))
    }

    /// The grey image in colour: each grey value becomes the grey colour of that value.
    public init(_ grey: GreyImage) {
        self.init(width: grey.width, height: grey.height, components: grey.pixels.flatMap { [$0, $0, $0] })
    }

    /// A signed perturbation (for example an adversarial image minus the original) drawn in
    /// diverging colours: white where it is zero, shading to pure red where it is
    /// `+1 / amplification` or more and to pure blue where it is `-1 / amplification` or less.
    ///
    /// Perturbations are usually far below what the eye sees in a grey image; amplifying makes
    /// them visible. When `amplification` is `nil`, the largest absolute value is mapped to
    /// full colour (an all-zero perturbation stays white). NaN is drawn as zero.
    ///
    /// - Parameters:
    ///   - perturbation: a single-channel tensor of shape `[1, 1, H, W]`, `[1, H, W]` or
    ///     `[H, W]`, in pixel units.
    ///   - amplification: the factor applied before clamping to `-1...1`, or `nil`.
    /// - Precondition: the shape is one of the three above and `amplification`, if given, is
    ///   positive and finite.
    public init(perturbation: Tensor, amplification: Float? = nil) {
        let shape = perturbation.shape
        precondition(
            shape.count >= 2 && shape.count <= 4 && shape.dropLast(2).allSatisfy { $0 == 1 },
            "expected a single perturbation of shape [1, 1, H, W], [1, H, W] or [H, W], got \(shape)")
        let factor: Float
        if let amplification {
            precondition(amplification > 0 && amplification.isFinite, "amplification must be positive")
            factor = amplification
        } else {
            let largest = perturbation.scalars.reduce(Float(0)) { $1.isFinite ? max($0, abs($1)) : $0 }
            factor = largest > 0 ? 1 / largest : 1
        }
        var components = [UInt8]()
        components.reserveCapacity(3 * perturbation.count)
        for value in perturbation.scalars {
            let amount = value.isNaN ? 0 : min(max(value * factor, -1), 1)
            let faded = UInt8((255 * (1 - abs(amount))).rounded())
            components.append(contentsOf: amount >= 0 ? [255, faded, faded] : [faded, faded, 255])
        }
        self.init(width: shape[shape.count - 1], height: shape[shape.count - 2], components: components)
    }

    /// The colour in column `x` and row `y`, counted from the top left.
    ///
    /// - Precondition: `0 <= x < width` and `0 <= y < height`.
    public subscript(x: Int, y: Int) -> Colour {
        get {
            precondition(
                x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) is outside the image")
            let index = 3 * (y * width + x)
            return Colour(red: components[index], green: components[index + 1], blue: components[index + 2])
        }
        set {
            precondition(
                x >= 0 && x < width && y >= 0 && y < height, "pixel (\(x), \(y)) is outside the image")
            let index = 3 * (y * width + x)
            components[index] = newValue.red
            components[index + 1] = newValue.green
            components[index + 2] = newValue.blue
        }
    }

    /// Fills the rectangle with top-left corner (`x`, `y`) and the given size with `colour`;
    /// the parts outside the image are ignored.
    public mutating func fill(
        x: Int, y: Int, width rectangleWidth: Int, height rectangleHeight: Int, colour: Colour
    ) {
        let columns = max(x, 0)..<max(min(x + rectangleWidth, width), max(x, 0))
        for row in max(y, 0)..<max(min(y + rectangleHeight, height), max(y, 0)) {
            for column in columns { self[column, row] = colour }
        }
    }

    /// Copies `image` with its top-left corner at (`x`, `y`), each of its pixels enlarged to a
    /// `scale × scale` square (nearest neighbour, so pixels stay crisp); the parts outside
    /// this image are ignored.
    ///
    /// - Precondition: `scale` is positive.
    public mutating func draw(_ image: RGBImage, x: Int, y: Int, scale: Int = 1) {
        precondition(scale > 0, "scale must be positive, got \(scale)")
        for sourceY in 0..<image.height {
            for sourceX in 0..<image.width {
                fill(
                    x: x + sourceX * scale, y: y + sourceY * scale, width: scale, height: scale,
                    colour: image[sourceX, sourceY])
            }
        }
    }

    /// Copies the grey `image` as grey colours, each pixel enlarged to a `scale × scale`
    /// square, like the `RGBImage` overload.
    ///
    /// - Precondition: `scale` is positive.
    public mutating func draw(_ image: GreyImage, x: Int, y: Int, scale: Int = 1) {
        draw(RGBImage(image), x: x, y: y, scale: scale)
    }
}
