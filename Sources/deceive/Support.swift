import ArgumentParser
import Datasets
import Experiments
import Foundation
import NeuralNet

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Work that failed (exit status 1), as opposed to a usage error (exit status 2).
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body, turning the library's error types into ``Failure``s (exit 1)
/// and keeping ``ValidationError``s, and experiments' invalid inputs, as usage errors (exit 2).
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ValidationError {
        throw error
    } catch let error as ExitCode {
        throw error
    } catch let error as Failure {
        throw error
    } catch let error as ExperimentError {
        throw error.kind == .invalidInput ? ValidationError(error.description) : Failure(error.description)
    } catch let error as CustomStringConvertible & Error {
        throw Failure(error.description)
    }
}

/// Writes a line to standard error.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// Whether standard error is a terminal (progress bars are drawn only there).
var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

/// `--dataset` and `--data-dir`.
struct DataOptions: ParsableArguments {
    @Option(help: "Dataset: mnist or fashion-mnist.")
    var dataset: DatasetName = .mnist

    @Option(help: ArgumentHelp(
        "Directory holding the dataset's IDX files (default: $DECEIVE_DATA_DIR/<name> or ~/.cache/deceive/datasets/<name>).",
        valueName: "dir"))
    var dataDir: String?

    var store: DataStore { store(for: dataset) }

    func store(for name: DatasetName) -> DataStore {
        DataStore(dataset: name, directory: dataDir.map { URL(fileURLWithPath: $0) })
    }
}

extension DatasetName: ExpressibleByArgument {}

/// `--arch`: a name (`seed`, `madry`) or a spec string. Parsing never fails here, so that
/// a bad description reaches the user with its reason (see ``resolved()``).
struct ArchitectureOption: ExpressibleByArgument {
    let text: String
    init?(argument: String) { text = argument }
    static var defaultCompletionKind: CompletionKind { .list(["seed", "madry"]) }

    /// The architecture, or a usage error saying what is wrong with the description.
    func resolved() throws -> Architecture {
        do {
            return try Architecture.resolve(text)
        } catch {
            throw ValidationError("--arch '\(text)': \(error.description)")
        }
    }
}

/// `--model FILE [--arch A]`: the checkpoint a command reads, shared by the commands
/// that use a trained model.
struct ModelOptions: ParsableArguments {
    @Option(help: "The checkpoint (.safetensors).")
    var model: String

    @Option(help: "Architecture, for files without one in their metadata (seed, madry or a spec).")
    var arch: ArchitectureOption?

    func validate() throws { _ = try arch?.resolved() }

    /// Loads the checkpoint; errors name the file.
    func load() throws -> Checkpoint { try loadCheckpoint(model, architecture: arch) }
}

/// Loads a checkpoint, with `--arch` when given; errors become one line.
func loadCheckpoint(_ path: String, architecture: ArchitectureOption?) throws -> Checkpoint {
    let resolved = try architecture?.resolved()
    do {
        return try Checkpoint.load(from: URL(fileURLWithPath: path), architecture: resolved)
    } catch {
        throw Failure(error.description)
    }
}

/// The command line as typed, for checkpoint metadata.
var commandLine: String {
    (["deceive"] + Deceive.arguments).map { argument in
        argument.contains(" ") ? "'\(argument)'" : argument
    }.joined(separator: " ")
}

/// A one-line progress bar on standard error, redrawn in place; silent when standard
/// error is not a terminal.
struct ProgressBar {
    let enabled = standardErrorIsTerminal
    private var lastDraw = ContinuousClock.now - .seconds(1)

    mutating func draw(_ label: String, done: Int, of total: Int, detail: String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        guard done == total || now - lastDraw > .milliseconds(100) else { return }
        lastDraw = now
        let width = 30
        let filled = total > 0 ? width * done / total : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) \(bar) \(done)/\(total) \(detail)\u{1B}[K".utf8))
    }

    func clear() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}
