import Adversarial
import ArgumentParser
import Experiments
import Datasets
import Foundation
import NeuralNet
import Visuals

/// `deceive report`.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write one self-contained HTML report: the model, fooling, attacks and defence, with pictures.")

    @Option(help: "The standard model (.safetensors).")
    var model: String = "models/mnist-cnn.safetensors"

    @Option(help: "A robust (adversarially trained) model, for the defence section.")
    var robustModel: String?

    @Option(help: "Where to write the report.")
    var output: String = "out/report.html"

    @Option(help: "Test digits per attack.")
    var count: Int = 300

    @OptionGroup var data: DataOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1, got \(count)") }
    }

    func run() throws {
        try runReportingErrors {
            let outputURL = URL(fileURLWithPath: output)
            try checkWritable(outputURL)
            let builder = try ReportBuilder(
                modelPath: model, robustModelPath: robustModel, count: count, store: data.store,
                pictures: nil)
            try builder.build().save(to: outputURL)
            print("wrote \(output)")
        }
    }
}

/// `deceive demo`: the whole story in one command.
struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Fetch data, use the shipped models (or train), fool them, attack them, and write a report.")

    @Option(help: "Directory for report.html and the pictures.")
    var output: String = "out/demo"

    @Flag(help: "Train a standard model first (about a minute) instead of using the shipped one.")
    var train = false

    @Option(help: "Test digits per attack.")
    var count: Int = 200

    @OptionGroup var data: DataOptions

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1, got \(count)") }
    }

    func run() throws {
        try runReportingErrors {
            let directory = URL(fileURLWithPath: output)
            try prepareOutputDirectory(directory)
            let clock = ContinuousClock()
            let began = clock.now
            var model = "models/mnist-cnn.safetensors"
            if train {
                model = directory.appendingPathComponent("mnist-cnn.safetensors").path
                let status = Deceive.run(["train", "--augment", "--output", model])
                if status != 0 { throw ExitCode(status) }
            }
            guard FileManager.default.fileExists(atPath: model) else {
                throw Failure("\(model): no such file; run from the project directory, or use --train")
            }
            let robust = "models/mnist-cnn-robust.safetensors"
            let builder = try ReportBuilder(
                modelPath: model, robustModelPath: FileManager.default.fileExists(atPath: robust) ? robust : nil,
                count: count, store: data.store, pictures: directory)
            try builder.build().save(to: directory.appendingPathComponent("report.html"))
            print(String(format: "demo finished in %.0f s", (clock.now - began).seconds))
            print("report: \(directory.appendingPathComponent("report.html").path)")
        }
    }
}

extension HTMLReport {
    /// Writes the report atomically, failing with one line.
    func save(to url: URL) throws {
        do throws(FileWriteError) {
            try write(to: url)
        } catch {
            throw Failure(error.description)
        }
    }
}

/// Runs the experiments and assembles the report.
struct ReportBuilder {
    let modelPath: String
    let robustModelPath: String?
    let count: Int
    let store: DataStore
    /// Where to also save the pictures as PNG files (the demo), or nil.
    let pictures: URL?
    let checkpoint: Checkpoint
    let robust: Checkpoint?
    let dataset: Dataset

    init(modelPath: String, robustModelPath: String?, count: Int, store: DataStore, pictures: URL?) throws {
        self.modelPath = modelPath
        self.robustModelPath = robustModelPath
        self.count = count
        self.store = store
        self.pictures = pictures
        checkpoint = try loadCheckpoint(modelPath, architecture: nil)
        robust = try robustModelPath.map { try loadCheckpoint($0, architecture: nil) }
        dataset = try store.load(log: { printError($0) })
    }

    func say(_ line: String) { printError("report: \(line)") }

    func build() throws -> HTMLReport {
        let clock = ContinuousClock()
        let began = clock.now
        var timings: [(String, Double)] = []
        func timed<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
            say(name)
            let start = clock.now
            let value = try body()
            timings.append((name, (clock.now - start).seconds))
            return value
        }
        let modelSection: HTMLReport.Section = try timed("the model") { try self.modelSection() }
        let foolingSection: HTMLReport.Section = try timed("fooling") { try self.foolingSection() }
        let attackSection: HTMLReport.Section = try timed("attacks") { try self.attacksSection() }
        let defenceSection: HTMLReport.Section = try timed("defence") { try self.defenceSection() }
        let total = (clock.now - began).seconds
        let made = madeSection(timings: timings, total: total)
        return HTMLReport(
            title: "Deceiving neural networks: a case study with MNIST",
            subtitle: "A convolutional network that reads digits at 99% accuracy, fooled by gibberish and by invisible perturbations, and defended.",
            sections: [modelSection, foolingSection, attackSection, defenceSection, made])
    }

    // MARK: - Helpers

    func png(_ image: GreyImage) throws -> Data {
        do { return try image.pngData() } catch { throw Failure(error.description) }
    }

    func png(_ image: RGBImage) throws -> Data {
        do { return try image.pngData() } catch { throw Failure(error.description) }
    }

    /// Saves a picture for the demo and returns its bytes for the report.
    func picture(_ image: RGBImage, name: String) throws -> Data {
        let data = try png(image)
        if let pictures { try atomicWrite(data, pictures.appendingPathComponent(name)) }
        return data
    }

    func atomicWrite(_ data: Data, _ url: URL) throws {
        do { try AtomicFile.write(data, to: url) } catch { throw Failure(error.description) }
    }

    func grid(_ rows: [(String, [ImageGrid.Cell])], scale: Int = 3) -> RGBImage {
        ImageGrid(rows: rows.map { ImageGrid.Row(title: $0.0, cells: $0.1) }, scale: scale).render()
    }

    // MARK: - Sections

    func modelSection() throws -> HTMLReport.Section {
        let model = checkpoint.model
        let architecture = model.architecture
        var rows: [[String]] = []
        var shape = architecture.inputShape
        let shapes = (try? architecture.validate()) ?? []
        for (index, spec) in architecture.layers.enumerated() {
            let single = Architecture(layers: [spec], inputShape: shape.count == 3 ? shape : [1, 1, 1])
            var parameters = 0
            switch spec {
            case let .conv(f, k, _, _): parameters = f * shape[0] * k * k + f
            case .dense(let n): parameters = n * (shape.first ?? 0) + n
            default: break
            }
            let output = index < shapes.count ? shapes[index] : []
            rows.append([
                architecture.layerNames[index] ?? "", single.spec, output.map(String.init).joined(separator: "×"),
                parameters > 0 ? String(parameters) : "",
            ])
            shape = output
        }
        rows.append(["", "total", "", String(model.parameterCount)])
        let images = dataset.test.allImages
        let evaluation = AccuracyEvaluation(
            model: model, images: images, labels: dataset.test.labels, modelName: modelPath,
            dataset: dataset.name.rawValue)
        let predictions = evaluation.predictions
        var blocks: [HTMLReport.Block] = [
            .keyFigures([
                .init(value: percent(evaluation.accuracy), label: "test accuracy (10,000 digits)"),
                .init(value: "\(model.parameterCount)", label: "parameters"),
                .init(value: checkpoint.metadata[Checkpoint.Key.trainingSeconds].map { "\($0) s" } ?? "–", label: "training time"),
            ]),
            .table(.init(header: ["name", "layer", "output", "parameters"], rows: rows)),
        ]
        let history = checkpoint.history
        if !history.isEmpty {
            let epochs = history.map { Double($0.epoch) }
            let loss = LineChart(
                title: "Training loss", xLabel: "epoch", yLabel: "cross-entropy",
                series: [.init("training loss", x: epochs, y: history.map(\.loss))])
            let accuracyChart = LineChart(
                title: "Accuracy", xLabel: "epoch", yLabel: "accuracy",
                series: [
                    .init("train", x: epochs, y: history.map(\.trainAccuracy)),
                    .init("test", x: epochs, y: history.map { $0.testAccuracy ?? .nan }),
                ], yFormat: .percent)
            blocks.append(.figureRow([.chart(loss), .chart(accuracyChart)], minimumWidth: 300))
        }
        blocks.append(
            .figure(
                .chart(
                    HeatMap(
                        title: "Confusion matrix", rowLabels: (0...9).map(String.init), columnLabels: (0...9).map(String.init),
                        counts: evaluation.confusionMatrix.counts, rowAxisLabel: "true digit", columnAxisLabel: "predicted", scaling: .logarithmic),
                    caption: "Rows: the true digit; columns: what the model said. The diagonal is right.")))
        let wrong = dataset.test.labels.indices.filter { predictions[$0] != dataset.test.labels[$0] }.prefix(24)
        let cells = wrong.map { index in
            ImageGrid.Cell(GreyImage(images.batch(index..<index + 1)), caption: "\(dataset.test.labels[index])→\(predictions[index])")
        }
        if !cells.isEmpty {
            let image = grid(stride(from: 0, to: cells.count, by: 12).map { ("", Array(cells[$0..<min($0 + 12, cells.count)])) })
            blocks.append(
                .figure(
                    .image(
                        png: try picture(image, name: "mistakes.png"), alt: "test digits the model gets wrong",
                        caption: "Test digits it gets wrong: true digit → prediction.")))
        }
        return .init(
            id: "model", title: "The model",
            intro: "A small convolutional network trained on MNIST's 60,000 handwritten digits: `\(checkpoint.metadata[Checkpoint.Key.command] ?? "deceive train")`.",
            blocks: blocks)
    }

    func foolingSection() throws -> HTMLReport.Section {
        let model = checkpoint.model
        let digits = Array(0..<10)
        let starts = FoolingStart.noise.images(for: digits, shape: [1, 28, 28], seed: 1)
        let fooled = try Fooling(confidence: 0.99, maxSteps: 1000).run(model: model, starts: starts, targets: digits)
        let probabilities = fooled.probabilities
        var blocks: [HTMLReport.Block] = []
        let startCells = digits.map { ImageGrid.Cell(GreyImage(starts.batch($0..<$0 + 1)), caption: "noise") }
        let resultCells = digits.map { digit in
            ImageGrid.Cell(
                GreyImage(fooled.images.batch(digit..<digit + 1)),
                caption: "\(digit) " + String(format: "%.1f%%", 100 * fooled.targetProbabilities[digit]))
        }
        blocks.append(
            .figure(
                .image(
                    png: try picture(grid([("start", startCells), ("fooled", resultCells)], scale: 4), name: "fooling.png"),
                    alt: "ten noise images and the gibberish the model calls 0 to 9",
                    caption: "Top: uniform noise. Bottom: the same images optimised (weights frozen) until the model calls them 0…9 with ≥ 99% confidence.")))
        let bars = digits.map { digit in
            HTMLReport.Figure.chart(
                BarChart(
                    title: "image \(digit)", categories: (0...9).map(String.init),
                    values: (0..<10).map { Double(probabilities.scalars[digit * 10 + $0]) }, valueRange: 0...1,
                    valueFormat: .percent, valueLabels: .highlighted, highlightedCategories: [digit], width: 260, height: 180))
        }
        blocks.append(.figureRow(bars, minimumWidth: 200))
        let trajectories = LineChart(
            title: "Confidence per step", xLabel: "step", yLabel: "p(target)",
            series: digits.map { .init("\($0)", values: fooled.trajectories[$0].map(Double.init)) }, yRange: 0...1,
            yFormat: .percent, showsMarkers: false)
        blocks.append(.figure(.chart(trajectories, caption: "Adam on the pixels, learning rate 0.1: a few steps suffice.")))

        // Staying gibberish: ε against confidence.
        var rows: [[String]] = []
        var withinImages: [ImageGrid.Cell] = []
        for epsilon: Float in [0.1, 0.15, 0.2, 0.25, 0.3] {
            let result = try Fooling(epsilon: epsilon, maxSteps: 1000).run(model: model, starts: starts, targets: digits)
            let reached = result.succeeded.filter { $0 }.count
            rows.append([String(format: "%.2f", epsilon)] + result.targetProbabilities.map { String(format: "%.3f", $0) } + ["\(reached)/10"])
            if epsilon == 0.25 {
                withinImages = digits.map { ImageGrid.Cell(GreyImage(result.images.batch($0..<$0 + 1)), caption: "\($0)") }
            }
        }
        blocks.append(.heading("Staying gibberish"))
        blocks.append(
            .paragraph(
                "With `--within ε` every pixel stays within ε of its starting noise, so the image still looks like that noise. The table gives the target's probability after the PNG round trip."))
        blocks.append(.table(.init(header: ["ε"] + digits.map(String.init) + ["≥ 0.99"], rows: rows)))
        if !withinImages.isEmpty {
            blocks.append(
                .figure(
                    .image(
                        png: try picture(grid([("ε = 0.25", withinImages)], scale: 4), name: "fooling-within.png"),
                        alt: "noise images within 0.25 of the start", caption: "Within ε = 0.25 of the noise: still noise to us.")))
        }

        // Class visualisation.
        let zeros = FoolingStart.zeros.images(for: digits, shape: [1, 28, 28], seed: 1)
        let drawn = try Fooling(maxSteps: 300, regularization: .init(l2: 0.01, totalVariation: 0.1))
            .run(model: model, starts: zeros, targets: digits)
        let drawnCells = digits.map {
            ImageGrid.Cell(GreyImage(drawn.images.batch($0..<$0 + 1)), caption: String(format: "%d %.0f%%", $0, 100 * drawn.targetProbabilities[$0]))
        }
        blocks.append(.heading("What the network thinks a digit looks like"))
        blocks.append(
            .figure(
                .image(
                    png: try picture(grid([("", drawnCells)], scale: 4), name: "class-visualisation.png"),
                    alt: "class visualisations", caption: "The opposite of gibberish: with L2 and total-variation penalties the optimisation draws prototypes.")))

        // Black-box.
        let evolved = try Fooling(method: .evolve, maxSteps: 400).run(model: model, starts: starts, targets: digits)
        let evolvedCells = digits.map {
            ImageGrid.Cell(GreyImage(evolved.images.batch($0..<$0 + 1)), caption: String(format: "%d %.1f%%", $0, 100 * evolved.targetProbabilities[$0]))
        }
        blocks.append(.heading("Black-box: no gradients at all"))
        blocks.append(
            .figure(
                .image(
                    png: try picture(grid([("", evolvedCells)], scale: 4), name: "fooling-evolve.png"),
                    alt: "black-box fooling images", caption: "An evolution strategy that only reads output probabilities.")))
        blocks.append(
            .table(
                .init(
                    header: ["digit", "confidence", "queries"],
                    rows: digits.map { [String($0), String(format: "%.4f", evolved.targetProbabilities[$0]), String(evolved.queries[$0])] })))
        return .init(
            id: "fooling", title: "Fooling: gibberish it is sure about",
            intro: "Weights frozen, the image itself is optimised until the network calls it a chosen digit with at least 99% confidence, while a person sees only noise.",
            blocks: blocks)
    }

    /// Runs an attack on the first `count` test digits, whose clean predictions are given.
    func attack(_ method: AttackMethod, model: Model, cleanPredictions: [Int], epsilon: Float? = nil) throws
        -> (result: AttackResult, report: AttackReport)
    {
        let test = dataset.test.prefix(count)
        let images = test.allImages
        // Square's default budget (5,000 queries) is for evaluations; 1,000 keeps the report quick.
        let attack = try method.make(AttackParameters(epsilon: epsilon, steps: method == .square ? 1000 : nil))
        let clock = ContinuousClock()
        let began = clock.now
        let result = try runInBatches(attack, model: model, images: images, labels: test.labels, goal: .untargeted, seed: 1)
        let seconds = (clock.now - began).seconds
        let report = AttackReport(
            attack: method.rawValue, originals: images, labels: test.labels, cleanPredictions: cleanPredictions,
            result: result, seconds: seconds)
        return (result, report)
    }

    func attacksSection() throws -> HTMLReport.Section {
        let model = checkpoint.model
        let test = dataset.test.prefix(count)
        let images = test.allImages
        let clean = model.probabilities(images)
        let cleanPredictions = argmax(rows: clean)
        var blocks: [HTMLReport.Block] = []
        var rows: [[String]] = []
        for method: AttackMethod in [.fgsm, .pgd, .apgdCE, .mifgsm, .cw, .deepfool, .jsma, .square] {
            let fixedBudget: Set<AttackMethod> = [.fgsm, .pgd, .apgdCE, .mifgsm, .square]
            let (result, report) = try attack(
                method, model: model, cleanPredictions: cleanPredictions, epsilon: fixedBudget.contains(method) ? 0.1 : nil)
            rows.append([
                method.rawValue, percent(report.robustAccuracy), percent(report.successRate),
                report.l0.map { String(format: "%.0f", $0.mean) } ?? "–", report.l2.map { String(format: "%.2f", $0.mean) } ?? "–",
                report.linf.map { String(format: "%.3f", $0.mean) } ?? "–", String(format: "%.1f", report.meanQueries),
                String(format: "%.2f", report.seconds),
            ])
            let shown = Array(0..<min(8, test.count))
            func caption(_ p: Tensor, _ row: Int) -> String {
                let best = (0..<10).max { p.scalars[row * 10 + $0] < p.scalars[row * 10 + $1] } ?? 0
                return String(format: "%d %.0f%%", best, 100 * p.scalars[row * 10 + best])
            }
            let image = grid([
                ("original", shown.map { ImageGrid.Cell(GreyImage(images.batch($0..<$0 + 1)), caption: caption(clean, $0)) }),
                ("change", shown.map { ImageGrid.Cell(RGBImage(perturbation: result.adversarial.batch($0..<$0 + 1) - images.batch($0..<$0 + 1))) }),
                ("attacked", shown.map { ImageGrid.Cell(GreyImage(result.adversarial.batch($0..<$0 + 1)), caption: caption(result.probabilities, $0)) }),
            ])
            blocks.append(.heading(method.rawValue))
            blocks.append(
                .figure(
                    .image(
                        png: try picture(image, name: "attack-\(method.rawValue).png"), alt: "\(method.rawValue) examples",
                        caption: "Originals, the change (red brighter, blue darker, amplified), and the attacked digits with the model's answer.")))
        }
        blocks.insert(
            .table(
                .init(
                    header: ["attack", "robust accuracy", "success rate", "mean L0", "mean L2", "mean L∞", "queries", "seconds"],
                    rows: rows, caption: "On the first \(count) test digits; fixed-budget attacks at ε = 0.1 (L∞), minimisation attacks unbounded.")),
            at: 0)
        return .init(
            id: "attacks", title: "Attacks on real digits",
            intro: "The classic attacks, untargeted, on real test digits: tiny changes that turn a confident right answer into a confident wrong one.",
            blocks: blocks)
    }

    func defenceSection() throws -> HTMLReport.Section {
        let epsilons: [Float] = [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
        var series: [LineChart.Series] = []
        var rows: [[String]] = []
        for (name, checkpoint) in [("standard", self.checkpoint)] + (robust.map { [("robust", $0)] } ?? []) {
            var accuracies: [Double] = []
            let cleanPredictions = checkpoint.model.predictions(dataset.test.prefix(count).allImages, batchSize: 1000)
            for epsilon in epsilons {
                let (_, report) = try attack(.pgd, model: checkpoint.model, cleanPredictions: cleanPredictions, epsilon: epsilon)
                accuracies.append(report.robustAccuracy)
            }
            series.append(.init(name, x: epsilons.map(Double.init), y: accuracies, dashed: name == "robust"))
            rows.append([name] + accuracies.map(percent))
        }
        var blocks: [HTMLReport.Block] = [
            .figure(
                .chart(
                    LineChart(
                        title: "Accuracy under PGD-40 (L∞)", xLabel: "ε", yLabel: "accuracy", series: series, yRange: 0...1,
                        yFormat: .percent),
                    caption: "PGD with 40 steps and a random start on the first \(count) test digits.")),
            .table(.init(header: ["model"] + epsilons.map { String(format: "ε %.2f", $0) }, rows: rows)),
        ]
        if let robust {
            let digits = Array(0..<10)
            let starts = FoolingStart.noise.images(for: digits, shape: [1, 28, 28], seed: 1)
            // The same starts as the fooling section, so the standard model's numbers there compare.
            let runs: [(name: String, result: FoolingResult)] = [
                ("free, 1,000 steps", try Fooling(maxSteps: 1000).run(model: robust.model, starts: starts, targets: digits)),
                ("free, 5,000 steps", try Fooling(maxSteps: 5000).run(model: robust.model, starts: starts, targets: digits)),
                ("within 0.25", try Fooling(epsilon: 0.25, maxSteps: 1000).run(model: robust.model, starts: starts, targets: digits)),
            ]
            func cells(_ result: FoolingResult) -> [ImageGrid.Cell] {
                digits.map { ImageGrid.Cell(GreyImage(result.images.batch($0..<$0 + 1)), caption: String(format: "%d %.0f%%", $0, 100 * result.targetProbabilities[$0])) }
            }
            let counts = runs.map { "\($0.name): \($0.result.succeeded.filter { $0 }.count)/10" }
            blocks.append(.heading("Fooling the robust model"))
            blocks.append(
                .figure(
                    .image(
                        png: try picture(grid(runs.map { ($0.name, cells($0.result)) }, scale: 4), name: "fooling-robust.png"),
                        alt: "fooling the robust model",
                        caption: "The fooling section's runs, from the same noise, against the robust model. Digits reaching 99% — \(counts.joined(separator: "; ")). For the standard model see the fooling section: its first figure (unconstrained) and its ε table (within ε).")))
            blocks.append(
                .table(
                    .init(
                        header: ["run"] + digits.map(String.init),
                        rows: runs.map { [$0.name] + $0.result.targetProbabilities.map { String(format: "%.3f", $0) } },
                        caption: "The target's probability after the PNG round trip.")))
        } else {
            blocks.append(.callout(.init(.note, title: "No robust model", text: "Pass `--robust-model FILE` to compare an adversarially trained model.")))
        }
        return .init(
            id: "defence", title: "Defence: adversarial training",
            intro: "Training on adversarial examples makes a model hold its answers inside the ε-ball, at some cost in clean accuracy.",
            blocks: blocks)
    }

    func madeSection(timings: [(String, Double)], total: Double) -> HTMLReport.Section {
        var commands = ["deceive report --model \(modelPath)" + (robustModelPath.map { " --robust-model \($0)" } ?? "")]
        commands.append("# standard model: " + (checkpoint.metadata[Checkpoint.Key.command] ?? "unknown"))
        if let robust { commands.append("# robust model: " + (robust.metadata[Checkpoint.Key.command] ?? "unknown")) }
        return .init(
            id: "made", title: "How this report was made",
            intro: "Every number above was computed for this report, on this machine, with fixed seeds (1).",
            blocks: [
                .code(commands.joined(separator: "\n")),
                .table(
                    .init(
                        header: ["part", "seconds"],
                        rows: timings.map { [$0.0, String(format: "%.1f", $0.1)] } + [["total", String(format: "%.1f", total)]])),
                .paragraph("Threads: \(Compute.threadCount). Data: \(store.directory.path) (SHA-256 checked)."),
            ])
    }
}
