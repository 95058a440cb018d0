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
