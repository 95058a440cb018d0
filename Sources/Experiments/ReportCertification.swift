import Adversarial
import Foundation
import NeuralNet
import Visuals

/// The report's section on proofs: what bound propagation verifies about each model against
/// what PGD fails to break, and whether the fooling section's noise could have been turned
/// into a confident digit at all.
extension ReportBuilder {
    /// The ε of the verified-accuracy chart.
    static let certificationEpsilons: [Float] = [0, 0.01, 0.05, 0.1, 0.2, 0.3]
    /// The ε of the fooling table, as the issue's and README's table.
    static let reachabilityEpsilons: [Float] = [0.1, 0.15, 0.2, 0.25]

    /// The models the report has, by name: standard, then robust and certified if given.
    var models: [(name: String, checkpoint: Checkpoint)] {
        [("standard", checkpoint)] + (robust.map { [("robust", $0)] } ?? [])
            + (certified.map { [("certified", $0)] } ?? [])
    }

    func certificationSection() throws(ExperimentError) -> HTMLReport.Section {
        let test = dataset.test.prefix(count)
        let images = test.allImages
        let epsilons = Self.certificationEpsilons
        var series: [LineChart.Series] = []
        var rows: [[String]] = []
        var seconds: [String] = []
        for (index, (name, checkpoint)) in models.enumerated() {
            let model = checkpoint.model
            // PGD runs beside IBP: a verified digit that PGD breaks fails the report.
            let ibp = try Certification.run(
                model, images: images, labels: test.labels, epsilons: epsilons, method: .ibp, pgd: true)
            let crown = try Certification.run(
                model, images: images, labels: test.labels, epsilons: epsilons, method: .crown)
            let colour = ChartPalette.colours[index % ChartPalette.colours.count]
            let x = epsilons.map(Double.init)
            series.append(.init("\(name): PGD", x: x, y: ibp.map { $0.pgdAccuracy ?? .nan }, colour: colour))
            series.append(.init("\(name): verified", x: x, y: crown.map(\.verifiedAccuracy), colour: colour, dashed: true))
            rows.append(
                [name, percent(ibp[0].cleanAccuracy)]
                    + zip(ibp, crown).dropFirst().map { ibp, crown in
                        "\(percent(ibp.verifiedAccuracy)) / \(percent(crown.verifiedAccuracy)) / \(percent(ibp.pgdAccuracy ?? .nan))"
                    })
            seconds.append(
                "\(name): IBP " + String(format: "%.2f", ibp.map(\.seconds).reduce(0, +)) + " s, CROWN "
                    + String(format: "%.2f", crown.map(\.seconds).reduce(0, +)) + " s")
        }
        var blocks: [HTMLReport.Block] = [
            .paragraph(
                "An attack that fails proves nothing: a stronger one might succeed. Bound propagation proves: interval bounds (IBP) and CROWN's linear bounds enclose every logit the network can produce for any image in the ε-box around a digit, so a digit whose label's logit stays above every other is robust, for every attack there is. Verified accuracy is a lower bound on the true robust accuracy, PGD's an upper bound; what lies between is what nobody knows."),
            .figure(
                .chart(
                    LineChart(
                        title: "Verified and PGD accuracy against ε", xLabel: "ε (L∞)", yLabel: "accuracy", series: series,
                        yRange: 0...1, yFormat: .percent),
                    caption: "On the first \(count) test digits. Solid: PGD-40 with a random start (an upper bound). Dashed: verified by CROWN, which is never looser than IBP (a lower bound). Only a model trained for proofs gets any beyond ε = 0.01.")),
            .table(
                .init(
                    header: ["model", "clean"] + epsilons.dropFirst().map { String(format: "ε %.2f", $0) }, rows: rows,
                    caption: "IBP verified / CROWN verified / PGD accuracy. Time for all ε: \(seconds.joined(separator: "; ")).")),
        ]
        if certified == nil {
            blocks.append(
                .callout(
                    .init(
                        .note, title: "No certified model",
                        text: "Pass `--certified-model FILE` (e.g. models/mnist-cnn-certified.safetensors, trained with `deceive train --certified ibp`) to add a model trained for proofs.")))
        }

        // Could this noise have become a confident digit at all?
        var reachRows: [[String]] = []
        for (name, checkpoint) in models {
            var cells = [name]
            for epsilon in Self.reachabilityEpsilons {
                let outcome = try fool(checkpoint.model, certify: true, Fooling(epsilon: epsilon, maxSteps: 1000))
                cells.append(Certificate.allCases.map { String(outcome.count($0)) }.joined(separator: " / "))
            }
            reachRows.append(cells)
        }
        blocks.append(.heading("Could the noise have been fooled at all?"))
        blocks.append(
            .paragraph(
                "The fooling section's question, answered with proof: from the same ten noise images, optimised within ε of the start towards each digit at 99% confidence, each digit is reached, proved unreachable (an upper bound on its probability over the whole ε-box is below 99%), or unknown (neither)."))
        blocks.append(
            .table(
                .init(
                    header: ["model"] + Self.reachabilityEpsilons.map { String(format: "ε %.2f", $0) }, rows: reachRows,
                    caption: "Digits reached / proved unreachable / unknown, of ten (`deceive fool --all --within ε --certify`).")))
        return .init(
            id: "certification", title: "Proofs: certified robustness",
            intro: "Attacks show where a model breaks; a certificate shows where it cannot.", blocks: blocks)
    }
}
