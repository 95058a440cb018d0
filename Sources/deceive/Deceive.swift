import ArgumentParser
import Foundation
import NeuralNet

/// The `deceive` command: shows, measures and defends against the deception of neural networks.
@main
struct Deceive: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deceive",
        abstract: "Train a network on MNIST, fool it, attack it, and defend it.",
        subcommands: [DataCommand.self, TrainCommand.self, EvaluateCommand.self, PredictCommand.self, FoolCommand.self, AttackCommand.self, CertifyCommand.self, ServeCommand.self, ReportCommand.self, DemoCommand.self, InfoCommand.self]
    )

    /// The arguments being run, recorded in the files a command writes (task-local, so
    /// that concurrent runs in tests do not see each other's).
    @TaskLocal static var arguments: [String] = []

    /// Runs the command line. Errors are one line on standard error; the exit status is 2
    /// for usage errors and 1 for work that failed.
    static func main() {
        let code = run(CommandLine.arguments.dropFirst().map { $0 })
        Foundation.exit(code)
    }

    /// Parses and runs `arguments`, returning the exit status.
    static func run(_ arguments: [String]) -> Int32 {
        do {
            var command = try parseAsRoot(arguments)
            do {
                _ = try BLASBackend.load()
            } catch {
                throw Failure(error.description)
            }
            try Deceive.$arguments.withValue(arguments) { try command.run() }
            return 0
        } catch let exit as ExitCode {
            return exit.rawValue
        } catch let failure as Failure {
            printError("deceive: error: \(failure.description)")
            return 1
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                // --help, --version.
                print(fullMessage(for: error))
                return 0
            }
            let message = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            if code == .validationFailure {
                printError("deceive: error: \(message) (see --help)")
                return 2
            }
            printError("deceive: error: \(message)")
            return 1
        }
    }
}
