import Foundation
import NeuralNet
import Testing

@testable import Visuals

/// The description of the ``PNGError`` `body` throws, or `nil` when it succeeds.
func pngError(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch let error as PNGError {
        return error.description
    } catch {
        return "not a PNGError: \(error)"
    }
}

/// IHDR's bit depth and colour type (bytes 24 and 25 of a PNG file).
func depthAndColourType(_ png: Data) -> (Int, Int) {
    (Int(png[png.startIndex + 24]), Int(png[png.startIndex + 25]))
}

@Suite("PNG")
struct PNGTests {
    @Test("grey PNG round trip is exact for all 256 values")
    func greyRoundTrip() throws {
        let image = GreyImage(width: 16, height: 16, pixels: allByteValues)
        let png = try image.pngData()
        #expect(depthAndColourType(png) == (8, 0))
        #expect(try GreyImage(png: png) == image)
        #expect(try RGBImage(png: png) == RGBImage(image))
    }

    @Test("RGB PNG round trip is exact")
    func rgbRoundTrip() throws {
        let components = (0..<105).map { (index: Int) -> UInt8 in UInt8((index * 37 + index / 3 * 11) % 256) }
        let image = RGBImage(width: 7, height: 5, components: components)
        let png = try image.pngData()
        #expect(depthAndColourType(png) == (8, 2))
        #expect(try RGBImage(png: png) == image)
    }

    @Test("files are written atomically and read back")
    func fileRoundTrip() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let grey = GreyImage(width: 16, height: 16, pixels: allByteValues.reversed())
        let greyURL = directory.appendingPathComponent("new/sub/grey.png")
        try grey.writePNG(to: greyURL)
        #expect(try GreyImage(contentsOfPNG: greyURL) == grey)
        let colour = RGBImage(width: 2, height: 1, components: [255, 0, 0, 0, 0, 255])
        let colourURL = directory.appendingPathComponent("colour.png")
        try colour.writePNG(to: colourURL)
        try colour.writePNG(to: colourURL)  // over an existing file
        #expect(try RGBImage(contentsOfPNG: colourURL) == colour)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(leftovers == ["colour.png", "new"])
    }

    @Test(
        "an 8-bit RGB PNG from another encoder: greys keep their value, colours become luminance",
        .enabled(if: PythonPNG.isAvailable, "needs python3 to write PNGs without libpng"))
    func foreignRGB() throws {
        let greys = allByteValues.flatMap { [$0, $0, $0] }
        let png = try PythonPNG.make(
            width: 16, height: 16, bitDepth: 8, colourType: 2,
            rows: (0..<16).map { Array(greys[($0 * 48)..<($0 * 48 + 48)]) })
        #expect(try GreyImage(png: png) == GreyImage(width: 16, height: 16, pixels: allByteValues))
        #expect(try RGBImage(png: png).components == greys)

        let primaries: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255]
        let colours = try PythonPNG.make(width: 3, height: 1, bitDepth: 8, colourType: 2, rows: [primaries])
        #expect(try RGBImage(png: colours).components == primaries)
        // Luminance in linear light: about 0.21 red, 0.72 green, 0.07 blue before sRGB encoding.
        let grey = try GreyImage(png: colours)
        #expect(grey.pixels == [126, 219, 76])
    }

    @Test(
        "an 8-bit RGBA PNG from another encoder: alpha is composited onto black in linear light",
        .enabled(if: PythonPNG.isAvailable, "needs python3 to write PNGs without libpng"))
    func foreignRGBA() throws {
        let pixels: [[UInt8]] = [
            [255, 255, 255, 255], [255, 255, 255, 0], [255, 255, 255, 128], [90, 90, 90, 255], [0, 0, 0, 0],
        ]
        let png = try PythonPNG.make(
            width: 5, height: 1, bitDepth: 8, colourType: 6, rows: [pixels.flatMap { $0 }])
        // Half-covered white is half the light, which sRGB encodes as about 188 (186 in colour,
        // where the composition is done per channel with 8-bit intermediate values).
        #expect(try GreyImage(png: png).pixels == [255, 0, 188, 90, 0])
        #expect(
            try RGBImage(png: png).components == [255, 255, 255, 0, 0, 0, 186, 186, 186, 90, 90, 90, 0, 0, 0])
    }

    @Test(
        "a 16-bit grey PNG from another encoder reads as its high byte (v × 257 gives v)",
        .enabled(if: PythonPNG.isAvailable, "needs python3 to write PNGs without libpng"))
    func foreignSixteenBitGrey() throws {
        let samples = allByteValues.flatMap { [$0, $0] }  // big-endian v * 257
        let png = try PythonPNG.make(
            width: 16, height: 16, bitDepth: 16, colourType: 0,
            rows: (0..<16).map { Array(samples[($0 * 32)..<($0 * 32 + 32)]) })
        #expect(try GreyImage(png: png) == GreyImage(width: 16, height: 16, pixels: allByteValues))
    }

    @Test(
        "palette and 1-bit PNGs from another encoder",
        .enabled(if: PythonPNG.isAvailable, "needs python3 to write PNGs without libpng"))
    func foreignPaletteAndBits() throws {
        let palette: [UInt8] = [0, 0, 0, 77, 77, 77, 200, 200, 200, 255, 255, 255]
        let indexed = try PythonPNG.make(
            width: 4, height: 1, bitDepth: 8, colourType: 3, rows: [[3, 2, 1, 0]], palette: palette)
        #expect(try GreyImage(png: indexed).pixels == [255, 200, 77, 0])
        let bits = try PythonPNG.make(
            width: 10, height: 1, bitDepth: 1, colourType: 0, rows: [[0b1010_0001, 0b1100_0000]])
        #expect(try GreyImage(png: bits).pixels == [255, 0, 255, 0, 0, 0, 0, 255, 255, 255])
    }
}

@Suite("PNG errors")
struct PNGErrorTests {
    @Test("not a PNG, empty, truncated and corrupt data are named with their source")
    func badData() throws {
        #expect(
            pngError { _ = try GreyImage(png: Data("hello, world".utf8), source: "x.png") }
                == "x.png: not a PNG file (it does not start with the PNG signature)")
        #expect(
            pngError { _ = try GreyImage(png: Data(), source: "x.png") } == "x.png: empty file, not a PNG")

        var random = SplitMix64(seed: 7)
        let noise = GreyImage(
            width: 64, height: 64, pixels: (0..<4096).map { _ in UInt8(truncatingIfNeeded: random.next()) })
        let png = try noise.pngData()
        let truncated = "x.png: truncated PNG (libpng: read beyond end of data)"
        #expect(pngError { _ = try GreyImage(png: png.prefix(png.count / 2), source: "x.png") } == truncated)
        #expect(pngError { _ = try GreyImage(png: png.prefix(20), source: "x.png") } == truncated)

        // A flipped byte in the compressed pixels: zlib's checksum catches it.
        var corrupt = png
        corrupt[corrupt.startIndex + png.count / 2] ^= 0xFF
        let corrupted = pngError { _ = try GreyImage(png: corrupt, source: "x.png") }
        #expect(corrupted?.hasPrefix("x.png: corrupt PNG (libpng: ") == true)
        // A flipped byte in the header: the chunk's CRC catches it.
        var badHeader = png
        badHeader[badHeader.startIndex + 17] ^= 0x01
        #expect(
            pngError { _ = try GreyImage(png: badHeader, source: "x.png") }
                == "x.png: corrupt PNG (libpng: IHDR: CRC error)")
    }

    @Test("missing files and directories are reported by path")
    func badFiles() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("missing.png")
        #expect(pngError { _ = try GreyImage(contentsOfPNG: missing) } == "\(missing.path): no such file")
        #expect(
            pngError { _ = try RGBImage(contentsOfPNG: directory) }
                == "\(directory.path): is a directory, not a file")
    }

    @Test(
        "absurd dimensions are refused before allocating",
        .enabled(if: PythonPNG.isAvailable, "needs python3 to write PNGs without libpng"))
    func absurdDimensions() throws {
        for (width, height) in [(20_000, 20_000), (16_385, 1), (1, 16_385), (10_000, 10_000)] {
            let png = try PythonPNG.make(width: width, height: height, bitDepth: 8, colourType: 0, rows: [[]])
            #expect(
                pngError { _ = try GreyImage(png: png, source: "big.png") }
                    == "big.png: PNG of \(width)×\(height) pixels is too large (the limit is 16384 on a side and 64 Mi pixels)"
            )
        }
    }

    @Test("writing reports empty images and unwritable paths")
    func badWrites() throws {
        #expect(
            pngError { _ = try GreyImage(width: 0, height: 5).pngData() }
                == "cannot encode a 0×5 image as PNG: it needs at least one pixel")
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        let inside = file.appendingPathComponent("image.png")
        let message = pngError { try GreyImage(width: 1, height: 1).writePNG(to: inside) }
        #expect(message?.hasPrefix("\(inside.path): cannot create its directory") == true)
        #expect(
            pngError { try RGBImage(width: 0, height: 0, components: []).writePNG(to: inside) }
                == "\(inside.path): cannot encode a 0×0 image as PNG: it needs at least one pixel")
    }
}
