import CPNG
import Foundation
import NeuralNet

/// A PNG that could not be read, decoded, encoded or written.
public struct PNGError: Error, CustomStringConvertible, Equatable, Sendable {
    /// One line, "`path`: what is wrong" (just what is wrong when there is no file).
    public let description: String
    /// Creates an error with its message.
    public init(_ description: String) { self.description = description }
}

/// PNG reading and writing through the system's libpng "simplified" API (`png_image`),
/// which reports errors in the image structure instead of through `setjmp`/`longjmp`.
enum PNGCodec {
    /// Files wider or taller than this are refused before any pixel memory is allocated.
    static let maximumSide = 16_384
    /// Files with more pixels than this (64 Mi) are refused before any pixel memory is allocated.
    static let maximumPixels = 64 << 20

    private static let signature: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]

    /// The pixel layouts this module reads and writes: one byte per component, sRGB-encoded.
    enum Layout {
        case grey, rgb

        var format: UInt32 { self == .grey ? UInt32(PNG_FORMAT_GRAY) : UInt32(PNG_FORMAT_RGB) }
        var channels: Int { self == .grey ? 1 : 3 }
    }

    /// Decodes any PNG (grey, grey + alpha, RGB, RGBA, palette; 1 to 16 bits per sample) to
    /// 8-bit `layout` pixels. `source` names the data in error messages.
    ///
    /// libpng converts: colour to grey by luminance (sRGB coefficients, computed in linear
    /// light); alpha composited onto black; 16-bit samples without gamma information taken as
    /// sRGB-encoded (as image editors write them), rounded to 8 bits.
    static func decode(_ data: Data, source: String, layout: Layout) throws(PNGError) -> (
        width: Int, height: Int, bytes: [UInt8]
    ) {
        guard !data.isEmpty else { throw PNGError("\(source): empty file, not a PNG") }
        guard data.count >= signature.count, data.prefix(signature.count).elementsEqual(signature) else {
            throw PNGError("\(source): not a PNG file (it does not start with the PNG signature)")
        }
        // libpng keeps reading from `raw` until png_image_finish_read, so both calls stay inside.
        let result = data.withUnsafeBytes {
            raw -> Result<(width: Int, height: Int, bytes: [UInt8]), PNGError> in
            var image = png_image()
            image.version = UInt32(PNG_IMAGE_VERSION)
            defer { png_image_free(&image) }
            guard png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) != 0 else {
                return .failure(readError(image, source: source))
            }
            let (width, height) = (Int(image.width), Int(image.height))
            guard width <= maximumSide, height <= maximumSide, width * height <= maximumPixels else {
                return .failure(
                    PNGError(
                        "\(source): PNG of \(width)×\(height) pixels is too large (the limit is \(maximumSide) "
                            + "on a side and \(maximumPixels >> 20) Mi pixels)"))
            }
            image.format = layout.format
            // Without this flag libpng takes 16-bit samples without gamma information as linear
            // light and brightens them on the way to 8-bit sRGB; editors write them sRGB-encoded.
            image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
            var pixels = [UInt8](repeating: 0, count: width * height * layout.channels)
            var background = png_color(red: 0, green: 0, blue: 0)
            let finished = pixels.withUnsafeMutableBytes { buffer in
                png_image_finish_read(&image, &background, buffer.baseAddress, 0, nil)
            }
            guard finished != 0 else {
                return .failure(readError(image, source: source))
            }
            return .success((width, height, pixels))
        }
        return try result.get()
    }

    /// Encodes 8-bit `layout` pixels (row-major, no padding) as a PNG. Errors say what is
    /// wrong without naming a file.
    static func encode(width: Int, height: Int, bytes: [UInt8], layout: Layout) throws(PNGError) -> Data {
        guard width > 0, height > 0 else {
            throw PNGError("cannot encode a \(width)×\(height) image as PNG: it needs at least one pixel")
        }
        guard width <= Int(Int32.max) / layout.channels, height <= Int(Int32.max) else {
            throw PNGError("cannot encode a \(width)×\(height) image as PNG: it is too large")
        }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = layout.format
        defer { png_image_free(&image) }
        // Room for the pixels stored uncompressed plus headers; if libpng needs more it says
        // how much and the second pass uses that.
        var capacity = bytes.count + height + bytes.count / 256 + 1024
        for _ in 0..<2 {
            var output = [UInt8](repeating: 0, count: capacity)
            var size = png_alloc_size_t(capacity)
            let written = output.withUnsafeMutableBytes { buffer in
                bytes.withUnsafeBytes { pixels in
                    png_image_write_to_memory(
                        &image, buffer.baseAddress, &size, 0, pixels.baseAddress, 0, nil)
                }
            }
            if written != 0 { return Data(output[..<Int(size)]) }
            guard Int(size) > capacity else { break }
            capacity = Int(size)
            image.warning_or_error = 0
        }
        throw PNGError("cannot encode a \(width)×\(height) image as PNG (\(libpngMessage(image)))")
    }

    /// Reads the file at `url` (errors "`path`: no such file" and the like).
    static func read(_ url: URL) throws(PNGError) -> Data {
        switch InputFile.read(url) {
        case .success(let data): return data
        case .failure(let error): throw PNGError(error.description)
        }
    }

    /// Writes `data` to `url` atomically.
    static func write(_ data: Data, to url: URL) throws(PNGError) {
        do {
            try AtomicFile.write(data, to: url)
        } catch {
            throw PNGError(error.description)
        }
    }

    /// "`source`: truncated PNG" when libpng ran out of data, "corrupt PNG" otherwise, with
    /// libpng's own words (for example "IDAT: incorrect data check").
    private static func readError(_ image: png_image, source: String) -> PNGError {
        let message = libpngMessage(image)
        let problem = message.contains("beyond end of data") ? "truncated PNG" : "corrupt PNG"
        return PNGError("\(source): \(problem) (\(message))")
    }

    /// libpng's message for the last error, prefixed with "libpng: ".
    private static func libpngMessage(_ image: png_image) -> String {
        let text = withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return "libpng: " + (text.isEmpty ? "unknown error" : text)
    }
}

extension PNGCodec {
    /// Encodes with `encode` and writes the bytes atomically; errors name `url`.
    static func write(to url: URL, encode: () throws(PNGError) -> Data) throws(PNGError) {
        let data: Data
        do {
            data = try encode()
        } catch {
            throw PNGError("\(url.path): \(error.description)")
        }
        try write(data, to: url)
    }
}

extension GreyImage {
    /// Decodes a PNG of any kind to 8-bit grey.
    ///
    /// The conversions are libpng's, done in linear light:
    /// - colour becomes luminance with sRGB coefficients, so pure greys keep their value but
    ///   pure red reads as 126 (not PIL's 76);
    /// - transparency is composited onto black, the background of MNIST digits, so
    ///   half-transparent white reads as 188 (not 128);
    /// - 16-bit samples without gamma information are taken as sRGB-encoded and rounded to
    ///   8 bits (`v * 257` reads as `v`); files whose gAMA chunk is not sRGB's are converted
    ///   to sRGB. 8-bit grey files without gamma information are read unchanged, so every
    ///   PNG this module writes reads back exactly.
    ///
    /// - Parameters:
    ///   - png: the file's bytes.
    ///   - source: names the data in error messages, usually its path.
    /// - Throws: ``PNGError`` when the data is not a PNG, is corrupt or truncated, or is
    ///   larger than 16384 pixels on a side or 64 Mi pixels in all.
    public init(png data: Data, source: String = "PNG data") throws(PNGError) {
        let (width, height, bytes) = try PNGCodec.decode(data, source: source, layout: .grey)
        self.init(width: width, height: height, pixels: bytes)
    }

    /// Reads and decodes the PNG file at `url` as ``init(png:source:)`` does.
    ///
    /// - Throws: ``PNGError`` "`path`: what is wrong" when the file is missing or unreadable
    ///   or its contents are not an acceptable PNG.
    public init(contentsOfPNG url: URL) throws(PNGError) {
        try self.init(png: try PNGCodec.read(url), source: url.path)
    }

    /// The image encoded as an 8-bit greyscale PNG, byte for byte lossless.
    ///
    /// - Throws: ``PNGError`` when the image is empty (PNG needs at least one pixel).
    public func pngData() throws(PNGError) -> Data {
        try PNGCodec.encode(width: width, height: height, bytes: pixels, layout: .grey)
    }

    /// Writes the image as an 8-bit greyscale PNG file, atomically (a reader sees the old
    /// file or the new one, never half of one), creating missing directories.
    ///
    /// - Throws: ``PNGError`` "`path`: what is wrong".
    public func writePNG(to url: URL) throws(PNGError) {
        try PNGCodec.write(to: url) { () throws(PNGError) in try pngData() }
    }
}

extension RGBImage {
    /// Decodes a PNG of any kind to 8-bit RGB: grey becomes equal components, transparency
    /// is composited onto black (in linear light, as libpng does), 16-bit samples without
    /// gamma information are taken as sRGB-encoded and rounded to 8 bits.
    ///
    /// - Parameters:
    ///   - png: the file's bytes.
    ///   - source: names the data in error messages, usually its path.
    /// - Throws: ``PNGError`` when the data is not a PNG, is corrupt or truncated, or is
    ///   larger than 16384 pixels on a side or 64 Mi pixels in all.
    public init(png data: Data, source: String = "PNG data") throws(PNGError) {
        let (width, height, bytes) = try PNGCodec.decode(data, source: source, layout: .rgb)
        self.init(width: width, height: height, components: bytes)
    }

    /// Reads and decodes the PNG file at `url` as ``init(png:source:)`` does.
    ///
    /// - Throws: ``PNGError`` "`path`: what is wrong" when the file is missing or unreadable
    ///   or its contents are not an acceptable PNG.
    public init(contentsOfPNG url: URL) throws(PNGError) {
        try self.init(png: try PNGCodec.read(url), source: url.path)
    }

    /// The image encoded as an 8-bit RGB PNG, byte for byte lossless.
    ///
    /// - Throws: ``PNGError`` when the image is empty (PNG needs at least one pixel).
    public func pngData() throws(PNGError) -> Data {
        try PNGCodec.encode(width: width, height: height, bytes: components, layout: .rgb)
    }

    /// Writes the image as an 8-bit RGB PNG file, atomically (a reader sees the old file or
    /// the new one, never half of one), creating missing directories.
    ///
    /// - Throws: ``PNGError`` "`path`: what is wrong".
    public func writePNG(to url: URL) throws(PNGError) {
        try PNGCodec.write(to: url) { () throws(PNGError) in try pngData() }
    }
}
