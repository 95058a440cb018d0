import Adversarial
import Datasets
import Foundation
import NeuralNet
import Visuals

/// The report of `deceive report` and `deceive demo`: runs its experiments (accuracy,
/// fooling, every attack, the label-only attacks against their query budget and a
/// universal perturbation, the ε curves of both models, fooling the robust model, and
/// what bound propagation proves about each model) with the
/// same library calls the commands use (``AccuracyEvaluation``, ``FoolingExperiment``,
/// ``AttackRun``, ``robustnessCurve(model:settings:epsilons:images:labels:progress:)``), and
/// assembles one self-contained HTML page.
public struct ReportBuilder: Sendable {
    /// The checkpoint files, named in the report's "How this report was made".
    public let modelPath: String
    public let robustModelPath: String?
    public let certifiedModelPath: String?
    /// Test digits per attack.
    public let count: Int
    /// Where the dataset came from.
    public let store: DataStore
    /// Where to also save the pictures as PNG files (the demo), or nil.
    public let pictures: URL?
    /// The standard model, and the robust and the certified ones if any.
    public let checkpoint: Checkpoint
    public let robust: Checkpoint?
    public let certified: Checkpoint?
    public let dataset: Dataset
    private let log: @Sendable (String) -> Void

    /// Loads the checkpoints and the dataset. `log` gets the dataset's messages and a line
    /// as each part of the report starts.
    public init(
        modelPath: String, robustModelPath: String?, certifiedModelPath: String? = nil, count: Int, store: DataStore,
        pictures: URL?, log: @escaping @Sendable (String) -> Void = { _ in }
    ) throws(ExperimentError) {
        guard count >= 1 else {
            throw .invalid("the report needs at least 1 test digit per attack, got \(count)")
        }
        self.modelPath = modelPath
        self.robustModelPath = robustModelPath
        self.certifiedModelPath = certifiedModelPath
        self.count = count
        self.store = store
        self.pictures = pictures
        self.log = log
        func load(_ path: String) throws(ExperimentError) -> Checkpoint {
            do throws(CheckpointError) {
                return try Checkpoint.load(from: URL(fileURLWithPath: path))
            } catch {
                throw .failed(error)
            }
        }
        checkpoint = try load(modelPath)
        robust = try robustModelPath.map { path throws(ExperimentError) in try load(path) }
        certified = try certifiedModelPath.map { path throws(ExperimentError) in try load(path) }
        do throws(DatasetError) {
            dataset = try store.load(log: log)
        } catch {
            throw .failed(error)
        }
    }

    func say(_ line: String) { log("report: \(line)") }

    /// Runs the experiments and returns the report.
    public func build() throws(ExperimentError) -> HTMLReport {
        let clock = ContinuousClock()
        let began = clock.now
        var timings: [(String, Double)] = []
        func timed(_ name: String, _ body: () throws(ExperimentError) -> HTMLReport.Section)
            throws(ExperimentError) -> HTMLReport.Section
        {
            say(name)
            let start = clock.now
            let value = try body()
            timings.append((name, (clock.now - start).seconds))
            return value
        }
        let modelSection = try timed("the model") { () throws(ExperimentError) in try self.modelSection() }
        let foolingSection = try timed("fooling") { () throws(ExperimentError) in try self.foolingSection() }
        let attackSection = try timed("attacks") { () throws(ExperimentError) in try self.attacksSection() }
        let labelOnlySection = try timed("label-only attacks") { () throws(ExperimentError) in
            try self.labelOnlySection()
        }
        let defenceSection = try timed("defence") { () throws(ExperimentError) in try self.defenceSection() }
        let certificationSection = try timed("certification") { () throws(ExperimentError) in
            try self.certificationSection()
        }
        let total = (clock.now - began).seconds
        let made = madeSection(timings: timings, total: total)
        return HTMLReport(
            title: "Deceiving neural networks: a case study with MNIST",
            subtitle: "A convolutional network that reads digits at 99% accuracy, fooled by gibberish and by invisible perturbations, and defended.",
            sections: [
                modelSection, foolingSection, attackSection, labelOnlySection, defenceSection, certificationSection, made,
            ])
    }

    // MARK: - Helpers

    /// Saves a picture for the demo and returns its bytes for the report.
    func picture(_ image: RGBImage, name: String) throws(ExperimentError) -> Data {
        let data = try image.png()
        if let pictures { try write(data, to: pictures.appendingPathComponent(name)) }
        return data
    }

    func grid(_ rows: [(String, [ImageGrid.Cell])], scale: Int = 3) -> RGBImage {
        ImageGrid(rows: rows.map { ImageGrid.Row(title: $0.0, cells: $0.1) }, scale: scale).render()
    }

    // MARK: - Sections

    func modelSection() throws(ExperimentError) -> HTMLReport.Section {
        let model = checkpoint.model
        let architecture = model.architecture
        let shapes = architecture.shapes
        let names = architecture.layerNames
        var rows: [[String]] = architecture.layers.enumerated().map { index, spec in
            let facts = spec.facts(input: index < shapes.count ? shapes[index] : [])
            let output = index + 1 < shapes.count ? shapes[index + 1] : []
            return [
                names[index] ?? "", facts.token, output.map(String.init).joined(separator: "×"),
                (facts.parameters ?? 0) > 0 ? String(facts.parameters ?? 0) : "",
            ]
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
                        counts: evaluation.confusionMatrix.counts, rowAxisLabel: "true digit",
                        columnAxisLabel: "predicted", scaling: .logarithmic),
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

    /// Fools `model` into every digit from `start` (noise unless given; seed 1), as
    /// `deceive fool --all [--certify]` does.
    func fool(
        _ model: Model, start: FoolingStart = .noise, certify: Bool = false,
        _ fooling: @autoclosure () throws(AdversarialError) -> Fooling
    ) throws(ExperimentError) -> FoolingOutcome {
        let options: Fooling
        do throws(AdversarialError) { options = try fooling() } catch { throw .invalid(error.description) }
        return try FoolingExperiment(targets: Array(0..<10), start: start, fooling: options).run(
            model: model, certify: certify)
    }

    func foolingSection() throws(ExperimentError) -> HTMLReport.Section {
        let model = checkpoint.model
        let digits = Array(0..<10)
        let fooled = try fool(model, Fooling(confidence: 0.99, maxSteps: 1000))
        let starts = fooled.result.starts
        let probabilities = fooled.probabilities
        var blocks: [HTMLReport.Block] = []
        let startCells = digits.map { ImageGrid.Cell(GreyImage(starts.batch($0..<$0 + 1)), caption: "noise") }
        let resultCells = digits.map { digit in
            ImageGrid.Cell(
                GreyImage(fooled.image(digit)),
                caption: "\(digit) " + String(format: "%.1f%%", 100 * fooled.confidencesAfterPNG[digit]))
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
            series: digits.map { .init("\($0)", values: fooled.result.trajectories[$0].map(Double.init)) },
            yRange: 0...1,
            yFormat: .percent, showsMarkers: false)
        blocks.append(.figure(.chart(trajectories, caption: "Adam on the pixels, learning rate 0.1: a few steps suffice.")))

        // Staying gibberish: ε against confidence.
        var rows: [[String]] = []
        var withinImages: [ImageGrid.Cell] = []
        for epsilon: Float in [0.1, 0.15, 0.2, 0.25, 0.3] {
            let result = try fool(model, Fooling(epsilon: epsilon, maxSteps: 1000))
            let reached = result.targets.filter(\.success).count
            let probabilities = result.confidencesAfterPNG.map { String(format: "%.3f", $0) }
            rows.append([String(format: "%.2f", epsilon)] + probabilities + ["\(reached)/10"])
            if epsilon == 0.25 {
                withinImages = digits.map { ImageGrid.Cell(GreyImage(result.image($0)), caption: "\($0)") }
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
        let penalties = Fooling.Regularization(l2: 0.01, totalVariation: 0.1)
        let drawn = try fool(model, start: .zeros, Fooling(maxSteps: 300, regularization: penalties))
        let drawnCells = digits.map {
            ImageGrid.Cell(
                GreyImage(drawn.image($0)),
                caption: String(format: "%d %.0f%%", $0, 100 * drawn.confidencesAfterPNG[$0]))
        }
        blocks.append(.heading("What the network thinks a digit looks like"))
        blocks.append(
            .figure(
                .image(
                    png: try picture(grid([("", drawnCells)], scale: 4), name: "class-visualisation.png"),
                    alt: "class visualisations", caption: "The opposite of gibberish: with L2 and total-variation penalties the optimisation draws prototypes.")))

        // Black-box.
        let evolved = try fool(model, Fooling(method: .evolve, maxSteps: 400))
        let evolvedCells = digits.map {
            ImageGrid.Cell(
                GreyImage(evolved.image($0)),
                caption: String(format: "%d %.1f%%", $0, 100 * evolved.confidencesAfterPNG[$0]))
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
                    rows: digits.map {
                        [
                            String($0), String(format: "%.4f", evolved.confidencesAfterPNG[$0]),
                            String(evolved.result.queries[$0]),
                        ]
                    })))
        return .init(
            id: "fooling", title: "Fooling: gibberish it is sure about",
            intro: "Weights frozen, the image itself is optimised until the network calls it a chosen digit with at least 99% confidence, while a person sees only noise.",
            blocks: blocks)
    }

    /// The settings of the report's attacks: untargeted, seed 1, ε where the method has
    /// a budget; Square with 1,000 queries instead of its 5,000 for evaluations, which keeps
    /// the report quick.
    func settings(_ method: AttackMethod, epsilon: Float?) -> AttackSettings {
        let steps = method == .square ? 1000 : nil
        return AttackSettings(method: method, parameters: AttackParameters(epsilon: epsilon, steps: steps))
    }

    func attacksSection() throws(ExperimentError) -> HTMLReport.Section {
        let model = checkpoint.model
        let test = dataset.test.prefix(count)
        let images = test.allImages
        let cleanPredictions = model.predictions(images, batchSize: 1000)
        var blocks: [HTMLReport.Block] = []
        var rows: [[String]] = []
        for method: AttackMethod in [.fgsm, .pgd, .apgdCE, .mifgsm, .cw, .deepfool, .jsma, .square] {
            let run = try AttackRun.run(
                settings(method, epsilon: method.isFixedBudget ? 0.1 : nil), model: model, images: images,
                labels: test.labels, cleanPredictions: cleanPredictions)
            let report = run.report
            rows.append([
                method.rawValue, percent(report.robustAccuracy), percent(report.successRate),
                report.l0.map { String(format: "%.0f", $0.mean) } ?? "–", report.l2.map { String(format: "%.2f", $0.mean) } ?? "–",
                report.linf.map { String(format: "%.3f", $0.mean) } ?? "–", String(format: "%.1f", report.meanQueries),
                String(format: "%.2f", report.seconds),
            ])
            blocks.append(.heading(method.rawValue))
            let shown = run.galleryItems(count: 8)
            let failures = shown.filter { !run.result.success[$0] }.count
            let gallery = try picture(
                run.gallery(model: model, count: 8, scale: 3), name: "attack-\(method.rawValue).png")
            blocks.append(
                .figure(
                    .image(
                        png: gallery, alt: "\(method.rawValue) examples",
                        caption: "The first digits \(method.rawValue) fooled: originals, the perturbation (red brighter, "
                            + "blue darker, amplified), and the adversarial digits with the model's wrong answer."
                            + (failures == 0
                                ? ""
                                : " It fooled only \(shown.count - failures) of the correctly classified digits; "
                                    + "the \(failures) marked “failed” kept their right answer."))))
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

    func defenceSection() throws(ExperimentError) -> HTMLReport.Section {
        let epsilons: [Float] = [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]
        let test = dataset.test.prefix(count)
        var series: [LineChart.Series] = []
        var rows: [[String]] = []
        for (name, checkpoint) in [("standard", self.checkpoint)] + (robust.map { [("robust", $0)] } ?? []) {
            let curve = try robustnessCurve(
                model: checkpoint.model, settings: settings(.pgd, epsilon: nil), epsilons: epsilons,
                images: test.allImages, labels: test.labels)
            let accuracies = curve.map(\.report.robustAccuracy)
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
            // The same starts as the fooling section, so the standard model's numbers there compare.
            let model = robust.model
            let runs: [(name: String, result: FoolingOutcome)] = [
                ("free, 1,000 steps", try fool(model, Fooling(maxSteps: 1000))),
                ("free, 5,000 steps", try fool(model, Fooling(maxSteps: 5000))),
                ("within 0.25", try fool(model, Fooling(epsilon: 0.25, maxSteps: 1000))),
            ]
            func cells(_ result: FoolingOutcome) -> [ImageGrid.Cell] {
                digits.map {
                    ImageGrid.Cell(
                        GreyImage(result.image($0)),
                        caption: String(format: "%d %.0f%%", $0, 100 * result.confidencesAfterPNG[$0]))
                }
            }
            let counts = runs.map { "\($0.name): \($0.result.targets.filter(\.success).count)/10" }
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
                        rows: runs.map { run in
                            [run.name] + run.result.confidencesAfterPNG.map { String(format: "%.3f", $0) }
                        },
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
        var commands = [
            "deceive report --model \(modelPath)" + (robustModelPath.map { " --robust-model \($0)" } ?? "")
                + (certifiedModelPath.map { " --certified-model \($0)" } ?? "")
        ]
        commands.append("# standard model: " + (checkpoint.metadata[Checkpoint.Key.command] ?? "unknown"))
        if let robust { commands.append("# robust model: " + (robust.metadata[Checkpoint.Key.command] ?? "unknown")) }
        if let certified {
            commands.append("# certified model: " + (certified.metadata[Checkpoint.Key.command] ?? "unknown"))
        }
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
