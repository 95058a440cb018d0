import ArgumentParser
import Foundation
import NeuralNet
import Visuals

/// Reads a PNG as a model input [1, 1, 28, 28]; larger or non-square pictures are padded
/// to a square and scaled down, with a warning on standard error.
func readImageForModel(_ path: String) throws -> Tensor {
    let image: GreyImage
    do {
        image = try GreyImage(contentsOfPNG: URL(fileURLWithPath: path))
    } catch {
        throw Failure(error.description)
    }
    if image.width == 28 && image.height == 28 { return image.tensor() }
    printError("deceive: warning: \(path) is \(image.width)×\(image.height); scaled to 28×28 (MNIST digits are light on black)")
    return image.fittedToSquare(side: 28).tensor()
}

/// Writes one image [1, 1, H, W] as an 8-bit grey PNG, atomically.
func writeGreyPNG(_ image: Tensor, to url: URL) throws {
    do {
        try GreyImage(image).writePNG(to: url)
    } catch {
        throw Failure(error.description)
    }
}

/// Writes rows of images as one upscaled, captioned grid PNG.
func writeGrid(rows: [Tensor], captions: [[String]], titles: [String] = [], to url: URL, scale: Int = 4) throws {
    let gridRows = rows.enumerated().map { index, batch in
        let images = GreyImage.images(fromBatch: batch)
        let cells = images.enumerated().map { column, image in
            ImageGrid.Cell(image, caption: column < captions[index].count ? captions[index][column] : "")
        }
        return ImageGrid.Row(title: index < titles.count ? titles[index] : "", cells: cells)
    }
    do {
        try ImageGrid(rows: gridRows, scale: scale).render().writePNG(to: url)
    } catch {
        throw Failure(error.description)
    }
}

/// Writes text to a file atomically.
func writeText(_ text: String, to url: URL) throws {
    do {
        try AtomicFile.write(Data((text + "\n").utf8), to: url)
    } catch {
        throw Failure(error.description)
    }
}

/// Creates an output directory (and parents), failing early and clearly when it cannot.
func prepareOutputDirectory(_ url: URL) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), !isDirectory.boolValue {
        throw ValidationError("--output \(url.path) is a file; name a directory")
    }
    do {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    } catch {
        throw Failure("\(url.path): cannot create the output directory")
    }
    guard FileManager.default.isWritableFile(atPath: url.path) else {
        throw Failure("\(url.path): the output directory is not writable")
    }
}
