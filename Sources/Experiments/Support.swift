import Foundation
import NeuralNet
import Visuals

/// Why an experiment could not run: the input was not acceptable (a command line's usage
/// error, a server's 400), or the work failed (a file that cannot be read or written).
public struct ExperimentError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The two kinds a caller answers differently.
    public enum Kind: Sendable, Equatable {
        /// Options, targets or images the experiment cannot accept.
        case invalidInput
        /// Work that failed: files, data.
        case failed
    }

    /// Which kind of error.
    public let kind: Kind
    /// One line saying what is wrong, naming the option or file.
    public let description: String

    /// Creates an error.
    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }

    /// Input the experiment cannot accept.
    public static func invalid(_ description: String) -> ExperimentError {
        ExperimentError(.invalidInput, description)
    }

    /// Work that failed.
    public static func failed(_ description: String) -> ExperimentError {
        ExperimentError(.failed, description)
    }

    /// The failure of a lower layer (a file, a PNG, a dataset), with its one-line description.
    static func failed(_ error: some Error & CustomStringConvertible) -> ExperimentError {
        .failed(error.description)
    }
}

/// Formats a fraction as a percentage with two decimals ("99.35%").
public func percent(_ fraction: Double) -> String { String(format: "%.2f%%", 100 * fraction) }

/// Encodes a value as pretty, key-sorted JSON text: what `--json` prints and the JSON
/// files experiments write. Non-finite numbers become the strings `inf`, `-inf`, `nan`.
public func jsonText<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(
        positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    guard let data = try? encoder.encode(value) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}

/// Writes bytes to a file atomically.
func write(_ data: Data, to url: URL) throws(ExperimentError) {
    do throws(FileWriteError) {
        try AtomicFile.write(data, to: url)
    } catch {
        throw .failed(error)
    }
}

/// Writes a line of text (JSON, say) to a file atomically.
func writeText(_ text: String, to url: URL) throws(ExperimentError) {
    try write(Data((text + "\n").utf8), to: url)
}

/// Writes a safetensors file atomically.
func write(_ file: Safetensors, to url: URL) throws(ExperimentError) {
    do throws(FileWriteError) {
        try file.write(to: url)
    } catch {
        throw .failed(error)
    }
}

extension RGBImage {
    /// The image as PNG bytes.
    func png() throws(ExperimentError) -> Data {
        do throws(PNGError) { return try pngData() } catch { throw .failed(error) }
    }
}

extension GreyImage {
    /// The image as PNG bytes.
    func png() throws(ExperimentError) -> Data {
        do throws(PNGError) { return try pngData() } catch { throw .failed(error) }
    }
}

extension ImageGrid {
    /// Rows of images [N, C, H, W], one grid row per tensor, with captions and titles.
    init(rows: [Tensor], captions: [[String]], titles: [String] = [], scale: Int = 4) {
        let gridRows = rows.enumerated().map { index, batch in
            let cells = GreyImage.images(fromBatch: batch).enumerated().map { column, image in
                Cell(image, caption: column < captions[index].count ? captions[index][column] : "")
            }
            return Row(title: index < titles.count ? titles[index] : "", cells: cells)
        }
        self.init(rows: gridRows, scale: scale)
    }
}

extension Tensor {
    /// Row `row` of a [N, classes] tensor.
    func row(_ row: Int) -> [Float] {
        let width = shape[1]
        return Array(scalars[row * width..<(row + 1) * width])
    }
}
