import Adversarial
import Foundation
import NeuralNet
import Visuals

/// The report's section on attacks that see less than gradients: how the perturbation a
/// label-only or score-based attack finds shrinks with the queries it may spend, against
/// the white-box Carlini–Wagner attack; and one universal perturbation for all digits.
extension ReportBuilder {
    /// The query budgets per digit of the queries chart.
    static let queryBudgets = [500, 1000, 2000, 5000, 10_000]

    /// Test digits the queries chart attacks: a twentieth of `count`, from 2 to 20, since
    /// each costs about a second per 10,000 queries and attack.
    var queryDigits: Int { min(20, max(2, count / 20)) }

    /// Training digits the report's universal perturbation is learned on (the command's
    /// default is 10,000; 2,000 fool as many test digits, in a fifth of the time).
    static let universalTrainingDigits = 2000

    func labelOnlySection() throws(ExperimentError) -> HTMLReport.Section {
        let model = checkpoint.model
        let test = dataset.test.prefix(queryDigits)
        let images = test.allImages
        let probabilities = model.probabilities(images)
        let clean = argmax(rows: probabilities)
        let correct = test.labels.indices.filter { clean[$0] == test.labels[$0] }

        let cw = try AttackRun.run(
            settings(.cw, epsilon: nil), model: model, images: images, labels: test.labels, cleanPredictions: clean)
        let cwMedian = Self.medianL2(of: cw.result.adversarial, success: cw.result.success, originals: images, items: correct)

        // Each attack at each budget, from scratch: what a user with that budget gets.
        struct Point {
            let median: Float
            let successRate: Double
        }
        var curves: [(name: String, points: [Point])] = []
        for method: AttackMethod in [.hopskipjump, .boundary, .square] {
            var points: [Point] = []
            for budget in Self.queryBudgets {
                let parameters =
                    method == .square
                    ? AttackParameters(epsilon: 0.3, steps: budget) : AttackParameters(maxQueries: budget)
                let run = try AttackRun.run(
                    AttackSettings(method: method, parameters: parameters), model: model, images: images,
                    labels: test.labels, cleanPredictions: clean)
                points.append(
                    Point(
                        median: Self.medianL2(
                            of: run.result.adversarial, success: run.result.success, originals: images, items: correct),
                        successRate: run.report.successRate))
            }
            curves.append((method.rawValue, points))
        }
        // The evolution strategy fools by target: each digit towards the model's runner-up,
        // until the runner-up wins (p > ½), inside the same L∞ box as Square.
        let runnersUp = (0..<test.labels.count).map { row in
            let p = probabilities.row(row)
            return p.indices.filter { $0 != clean[row] }.max { p[$0] < p[$1] } ?? 0
        }
        var evolution: [Point] = []
        for budget in Self.queryBudgets {
            let result: FoolingResult
            do throws(AdversarialError) {
                // Each step scores the current image and 50 antithetic pairs: 101 queries.
                let fooling = try Fooling(
                    method: .evolve, confidence: 0.5, epsilon: 0.3, maxSteps: max(1, budget / 101))
                result = try fooling.run(model: model, starts: images, targets: runnersUp)
            } catch {
                throw .invalid(error.description)
            }
            let predictions = argmax(rows: result.probabilities)
            let success = predictions.indices.map { predictions[$0] != test.labels[$0] }
            let fooled = correct.filter { success[$0] }.count
            evolution.append(
                Point(
                    median: Self.medianL2(of: result.images, success: success, originals: images, items: correct),
                    successRate: Double(fooled) / Double(max(correct.count, 1))))
        }
        curves.append(("evolution", evolution))

        let budgets = Self.queryBudgets.map(Double.init)
        var series = curves.map { curve in
            LineChart.Series(
                curve.name, x: budgets, y: curve.points.map { $0.median.isFinite ? Double($0.median) : .nan })
        }
        if cwMedian.isFinite {
            series.append(
                .init(
                    "cw (white-box)", x: [budgets[0], budgets[budgets.count - 1]], y: [Double(cwMedian), Double(cwMedian)],
                    dashed: true))
        }
        let finite = (curves.flatMap { $0.points.map(\.median) } + [cwMedian]).filter(\.isFinite)
        let chart = LineChart(
            title: "Median L2 of the perturbation against queries", xLabel: "queries per digit (budget, log scale)",
            yLabel: "median L2", series: series, yRange: 0...max(1, Double(finite.max() ?? 1) * 1.1), xScale: .logarithmic)
        var rows: [[String]] = []
        for curve in curves {
            rows.append(
                [curve.name]
                    + curve.points.map { point in
                        (point.median.isFinite ? String(format: "%.2f", point.median) : "∞")
                            + " (" + percent(point.successRate) + ")"
                    })
        }
        rows.append(
            ["cw (white-box)"]
                + Self.queryBudgets.map { _ in
                    (cwMedian.isFinite ? String(format: "%.2f", cwMedian) : "∞") + " (" + percent(cw.report.successRate) + ")"
                })
        var blocks: [HTMLReport.Block] = [
            .paragraph(
                "HopSkipJump and the Boundary attack read only the predicted label, never a probability or a gradient: they start from a misclassified point and walk along the decision boundary towards the digit. Square and the evolution strategy read probabilities and stay inside an L∞ box of ε = 0.3. Each point is a fresh run with that many queries per digit."),
            .figure(
                .chart(
                    chart,
                    caption: "On the first \(test.labels.count) test digits (\(correct.count) classified correctly); a digit the attack failed on counts as infinitely far, as in Foolbox, so a median above half failures is missing. The dashed line is Carlini–Wagner's median with gradients.")),
            .table(
                .init(
                    header: ["attack"] + Self.queryBudgets.map { "\($0) queries" }, rows: rows,
                    caption: "Median L2 (success rate on correctly classified digits). Square and evolution are L∞ attacks: their L2 is the price of the whole ε-box.")),
        ]
        blocks += try universalBlocks()
        return .init(
            id: "label-only", title: "Attacks that see only answers",
            intro: "A deployed classifier often shows its answer and nothing else. Labels alone suffice: the perturbations shrink towards what the white-box attack finds as the queries grow.",
            blocks: blocks)
    }

    /// The universal perturbation: learned on training digits, scored on the first `count`
    /// test digits, drawn, and shown on a row of digits it fools; with the robust model's
    /// fooling rate beside.
    func universalBlocks() throws(ExperimentError) -> [HTMLReport.Block] {
        let epsilon: Float = 0.25
        let universal: UniversalPerturbation
        do throws(AdversarialError) {
            universal = try UniversalPerturbation(norm: .linf, epsilon: epsilon)
        } catch {
            throw .invalid(error.description)
        }
        let training = dataset.train.prefix(Self.universalTrainingDigits)
        let test = dataset.test.prefix(count)
        var rates: [(String, Double)] = []
        var standardRun: UniversalRun?
        for (name, checkpoint) in [("standard", self.checkpoint)] + (robust.map { [("robust", $0)] } ?? []) {
            let run = try UniversalRun.run(
                universal, model: checkpoint.model, training: (training.allImages, training.labels),
                images: test.allImages, labels: test.labels)
            rates.append((name, run.foolingRate))
            if standardRun == nil { standardRun = run }
        }
        guard let run = standardRun else { return [] }
        let shown = run.attack.galleryItems(count: 10)
        let success = run.attack.result.success
        let fooled = shown.filter { success[$0] }
        // The predictions the run made already: clean, and of the final check.
        func cells(_ images: Tensor, _ predictions: [Int], marked: Bool) -> [ImageGrid.Cell] {
            shown.map { item in
                ImageGrid.Cell(
                    GreyImage(images.batch(item..<item + 1)), caption: "\(predictions[item])",
                    captionColour: marked && !success[item] ? AttackRun.failureColour : nil)
            }
        }
        let digits = grid([
            ("original", cells(run.attack.originals, run.attack.cleanPredictions, marked: false)),
            ("adversarial", cells(run.attack.result.adversarial, run.attack.result.predictions, marked: true)),
        ])
        return [
            .heading("One perturbation for every digit"),
            .paragraph(
                "A universal perturbation (Moosavi-Dezfooli et al. 2017) is one pattern δ, ‖δ‖∞ ≤ \(epsilon), learned on the first \(Self.universalTrainingDigits) training digits and added unchanged to test digits it never saw."),
            .keyFigures(rates.map { .init(value: percent($0.1), label: "fooling rate, \($0.0) model") }),
            .figureRow(
                [
                    .image(
                        png: try picture(run.picture(scale: 6), name: "universal-perturbation.png"),
                        alt: "the universal perturbation",
                        caption: "δ: red brightens, blue darkens."),
                    .image(
                        png: try picture(digits, name: "universal-digits.png"), alt: "digits the universal perturbation fools",
                        caption: "The first \(fooled.count) test digits it fools, with the model's answer before and after."
                            + (fooled.count < shown.count ? " Answers in red: digits it did not fool." : "")),
                ], minimumWidth: 180),
            .paragraph(
                "Fooling rate: the share of correctly classified digits among the first \(count) test digits whose answer δ changes. \(percent(run.learning.trainingFoolingRate)) of the training digits it was learned on."),
        ]
    }

    /// The median L2 distance of `items` from their originals, a failure counting as
    /// infinitely far (Foolbox's convention): infinite when half or more of them failed.
    static func medianL2(of adversarial: Tensor, success: [Bool], originals: Tensor, items: [Int]) -> Float {
        guard !items.isEmpty else { return .infinity }
        let distances = Norm.l2.distances(adversarial.gathering(items), originals.gathering(items))
        return median(items.indices.map { success[items[$0]] ? distances[$0] : .infinity })
    }
}
