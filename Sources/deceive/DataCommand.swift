import ArgumentParser
import Datasets
import Foundation

/// `deceive data`: dataset management.
struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data", abstract: "Fetch and check datasets.", subcommands: [Fetch.self])

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch a dataset into the cache and verify its SHA-256 sums.")

        @OptionGroup var data: DataOptions

        func run() throws {
            try runReportingErrors {
                let store = data.store
                try store.fetch(log: { printError($0) })
                let dataset = try store.load(fetchIfMissing: false)
                print("\(store.dataset.rawValue): \(dataset.train.count) training and \(dataset.test.count) test images in \(store.directory.path)")
            }
        }
    }
}
