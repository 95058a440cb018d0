import Foundation
import NeuralNet
import Testing

@testable import Visuals

/// A report with every kind of block, laid out like `deceive report`'s. Set
/// `DECEIVE_SAMPLE_REPORT=/path/report.html` when running the tests to write it to a file for
/// a look in a browser.
enum SampleReport {
    static let sectionIDs = ["model", "fooling", "attacks", "defence", "how-it-was-made"]
    static let sectionTitles = ["The model", "Fooling", "Attacks", "Defence", "How it was made"]

    /// A 28 × 28 "digit": a ring, or uniform noise from a simple generator.
    static func digit(seed: Int, noise: Bool) -> GreyImage {
        var state = UInt64(truncatingIfNeeded: seed &* 2_654_435_761 &+ 1)
        var image = GreyImage(width: 28, height: 28)
        for y in 0..<28 {
            for x in 0..<28 {
                if noise {
                    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    image[x, y] = UInt8(truncatingIfNeeded: state >> 56)
                } else {
                    let (dx, dy) = (Double(x) - 13.5, Double(y) - 13.5 + Double(seed % 3))
                    let radius = (dx * dx / 36 + dy * dy / 81).squareRoot()
                    image[x, y] = UInt8(max(0, min(255, 255 - abs(radius - 1) * 600)))
                }
            }
        }
        return image
    }

    static func sigmoid(_ x: Double) -> Double { 1 / (1 + exp(-x)) }

    static func png(_ image: GreyImage) -> Data { (try? image.pngData()) ?? Data() }

    static func make() -> HTMLReport {
        let digits = (0...9).map(String.init)
        let confusion = (0..<10).map { row in
            (0..<10).map { (column: Int) -> Int in
                if row == column { return 970 + row * 3 }
                return (row * 7 + column * 3) % 5 == 0 ? row % 3 + 1 : 0
            }
        }
        let curves = LineChart(
            title: "Training curves", xLabel: "epoch", yLabel: "accuracy",
            series: [
                .init("train", values: [0.973, 0.984, 0.990, 0.992, 0.9932, 0.9934]),
                .init("test", values: [0.980, 0.986, 0.989, 0.991, 0.9925, 0.993], dashed: true),
            ],
            yRange: 0.97...1, yFormat: .percent, width: 480, height: 300)
        let loss = LineChart(
            title: "Training loss", xLabel: "epoch", yLabel: "cross-entropy",
            series: [.init("loss", values: [0.31, 0.09, 0.05, 0.035, 0.026, 0.021])], width: 480, height: 300)
        let matrix = HeatMap(
            title: "Confusion matrix (10,000 test digits)", rowLabels: digits, columnLabels: digits,
            counts: confusion, rowAxisLabel: "true digit", columnAxisLabel: "predicted digit", scaling: .logarithmic)

        let misclassified = (0..<12).map { index in
            HTMLReport.FigureItem.image(
                png: png(digit(seed: index, noise: false)), alt: "test digit \(index) misread",
                label: "\(index % 10) → \((index + 3) % 10)", scale: 3)
        }

        let fooledCards = (0...9).map { target -> HTMLReport.Figure in
            var probabilities = (0...9).map { (digit: Int) -> Double in
                let weight = Double((digit * 7 + target) % 5)
                return digit == target ? 0 : 0.01 / 9 * weight
            }
            probabilities[target] = 1 - probabilities.reduce(0, +)
            let bars = BarChart(
                title: "", categories: digits, values: probabilities, orientation: .horizontal, valueRange: 0...1,
                valueFormat: .percent, valueLabels: .highlighted, highlightedCategories: [target], width: 220,
                height: 200)
            return HTMLReport.Figure(
                items: [
                    .image(png: png(digit(seed: target, noise: true)), alt: "start noise", label: "start", scale: 3),
                    .image(png: png(digit(seed: target + 100, noise: true)), alt: "fooled as \(target)", label: "fooled", scale: 3),
                    .svg(bars.svg()),
                ],
                caption: "“\(target)” at \(ChartNumberFormat.percent.string(probabilities[target]))")
        }
        let trajectory = LineChart(
            title: "Target confidence per step", xLabel: "step", yLabel: "confidence",
            series: (0...9).map { target in
                .init(
                    "\(target)",
                    points: (0...16).map { step in
                        ChartPoint(x: Double(step), y: sigmoid(Double(step) - Double(target) * 0.9 - 2))
                    })
            },
            yRange: 0...1, yFormat: .percent, showsMarkers: false)
        let robustness = LineChart(
            title: "Accuracy under PGD-40", xLabel: "ε (L∞)", yLabel: "accuracy",
            series: [
                .init("standard", x: [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3], y: [0.993, 0.93, 0.52, 0.11, 0.01, 0, 0]),
                .init(
                    "PGD-7 trained", x: [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
                    y: [0.985, 0.97, 0.95, 0.92, 0.87, 0.81, 0.68], dashed: true),
            ],
            yRange: 0...1, yFormat: .percent)
        let success = BarChart(
            title: "Attack success rate", categories: ["FGSM", "PGD-40", "CW-L2", "DeepFool", "Square", "Boundary"],
            series: [
                .init("standard", values: [0.89, 1.0, 1.0, 0.99, 0.97, 0.93]),
                .init("robust", values: [0.08, 0.27, 0.41, 0.33, 0.19, .nan]),
            ],
            valueLabel: "success", valueRange: 0...1, valueFormat: .percent, height: 320)

        let attackRows = ["original", "perturbation ×10", "adversarial"].enumerated().map { kind, name in
            HTMLReport.Figure(
                items: (0..<8).map { index in
                    .image(png: png(digit(seed: index + kind * 50, noise: kind == 1)), alt: "\(name) \(index)", scale: 2.5)
                },
                caption: name)
        }

        return HTMLReport(
            title: "Deceive report",
            subtitle: "How a small CNN for MNIST is fooled, attacked and defended — seed architecture, 6 epochs",
            sections: [
                .init(
                    id: sectionIDs[0], title: sectionTitles[0],
                    intro: "A convolutional network trained on 60,000 handwritten digits with `deceive train`.",
                    blocks: [
                        .keyFigures([
                            .init(value: "99.3%", label: "test accuracy"), .init(value: "225,034", label: "parameters"),
                            .init(value: "6", label: "epochs"), .init(value: "4 min 12 s", label: "training time"),
                        ]),
                        .heading("Architecture"),
                        .table(
                            .init(
                                header: ["layer", "output shape", "parameters"],
                                rows: [
                                    ["conv1 3×3, 32", "32 × 26 × 26", "320"], ["max pool 2", "32 × 13 × 13", "0"],
                                    ["conv2 3×3, 64", "64 × 11 × 11", "18,496"], ["max pool 2", "64 × 5 × 5", "0"],
                                    ["fc1 1600 → 128", "128", "204,928"], ["fc2 128 → 10", "10", "1,290"],
                                    ["total", "", "225,034"],
                                ],
                                caption: "ReLU after every layer but the last.")),
                        .heading("Training"),
                        .figureRow(
                            [.chart(curves, caption: "Accuracy per epoch."), .chart(loss, caption: "Loss per epoch.")],
                            minimumWidth: 400),
                        .figure(.chart(matrix, caption: "Rows are the true digits, columns the predictions; colour on a log scale.")),
                        .figure(HTMLReport.Figure(items: misclassified, caption: "Misclassified test digits: true → predicted.")),
                    ]),
                .init(
                    id: sectionIDs[1], title: sectionTitles[1],
                    intro: "Images of pure noise that the network reads as a digit with 99% confidence.",
                    blocks: [
                        .figureRow(fooledCards, minimumWidth: 175),
                        .figure(.chart(trajectory, caption: "Adam, learning rate 0.1, all ten targets in one batch.")),
                        .table(
                            .init(
                                header: ["ε", "reached 99%", "mean confidence"],
                                rows: [["0.1", "0/10", "41.2%"], ["0.2", "8/10", "97.9%"], ["0.3", "10/10", "99.4%"]])),
                        .paragraph("Black-box search found images for 10 of 10 digits in 4,000 queries each."),
                        .figure(.image(png: png(digit(seed: 5, noise: false)), alt: "what the network thinks a 5 looks like", caption: "Class visualisation of “5”.", scale: 6)),
                    ]),
                .init(
                    id: sectionIDs[2], title: sectionTitles[2], intro: "Tiny perturbations that change the answer.",
                    blocks: [
                        .figureRow(attackRows, minimumWidth: 900),
                        .table(
                            .init(
                                header: ["attack", "success", "median L2", "median L∞", "time"],
                                rows: [
                                    ["FGSM ε=0.3", "89.1%", "5.41", "0.300", "0.4 s"],
                                    ["PGD-40 ε=0.3", "100%", "4.98", "0.300", "21 s"],
                                    ["CW-L2", "100%", "1.37", "0.412", "3 min 2 s"],
                                ])),
                        .figure(.chart(success)),
                        .callout(
                            .init(
                                .warning, title: "Gradient-masking check failed",
                                text: "The black-box `Square` attack beat PGD-40 on the robust model: its gradients may be masked.")),
                    ]),
                .init(
                    id: sectionIDs[3], title: sectionTitles[3], intro: "Adversarial training against PGD-7.",
                    blocks: [
                        .figure(.chart(robustness, caption: "Accuracy of both models as the budget ε grows.")),
                        .callout(.init(.success, title: "Sanity checks passed", text: "Accuracy falls to 0% at ε = 1 for both models.")),
                        .callout(.init(.note, text: "Numbers are for the first 1,000 test digits.")),
                    ]),
                .init(
                    id: sectionIDs[4], title: sectionTitles[4],
                    blocks: [
                        .code("deceive data fetch\ndeceive train --epochs 6 --seed 1 --out models/seed.safetensors\ndeceive report --out out/report.html"),
                        .table(
                            .init(
                                header: ["", "value"],
                                rows: [["Swift", "6.3.1"], ["seed", "1"], ["threads", "2"], ["report time", "12.4 s"]])),
                    ]),
            ],
            footer: "Generated by Deceive 0.1 — `deceive report`.")
    }
}

@Suite("HTML report")
struct HTMLReportTests {
    @Test("the sample report is well-formed and has every section, chart and image")
    func sampleReport() throws {
        let report = SampleReport.make()
        let html = report.render()
        if let path = ProcessInfo.processInfo.environment["DECEIVE_SAMPLE_REPORT"] {
            try report.write(to: URL(fileURLWithPath: path))
        }
        let xml = ParsedXML(html)
        #expect(xml.error == nil)
        #expect(html.hasPrefix("<!DOCTYPE html>\n<html lang=\"en\">"))
        let sections = xml.elements("section")
        #expect(sections.map { $0.attributes["id"] ?? "" } == SampleReport.sectionIDs)
        let headings = xml.elements("h2").map { $0.text }
        for (index, title) in SampleReport.sectionTitles.enumerated() {
            #expect(headings.contains(title), "missing heading \(title) (\(index))")
        }
        // The table of contents links every section.
        let links = xml.elements("a").compactMap { $0.attributes["href"] }
        #expect(links == SampleReport.sectionIDs.map { "#\($0)" })
        #expect(xml.texts("a") == SampleReport.sectionTitles)

        // 12 misclassified + 10 × 2 fooling + 1 class visualisation + 3 × 8 attack images.
        let images = xml.elements("img")
        #expect(images.count == 12 + 20 + 1 + 24)
        #expect(images.allSatisfy { ($0.attributes["src"] ?? "").hasPrefix("data:image/png;base64,") })
        #expect(images.allSatisfy { !($0.attributes["alt"] ?? "").isEmpty })
        // 2 curves + matrix + 10 confidence bars + trajectory + success + robustness.
        #expect(xml.elements("svg").count == 16)
        #expect(xml.elements("table").count == 4)
        #expect(xml.elements("pre").count == 1)
        #expect(xml.elements("div", className: "callout").count == 3)
        #expect(xml.elements("div", className: "key-figure").count == 4)
        #expect(xml.elements("figure", className: "card").count == 10 + 2 + 3)
        #expect(xml.texts("code").contains("deceive train"))

        #expect(!html.contains("http://") && !html.contains("https://"))
        #expect(!html.contains("<script") && !html.contains("url("))
    }

    @Test("an embedded PNG decodes back to the same bytes")
    func pngRoundTrip() throws {
        let image = SampleReport.digit(seed: 3, noise: true)
        let png = try image.pngData()
        let report = HTMLReport(
            title: "PNG", sections: [.init(id: "s", title: "S", blocks: [.figure(.image(png: png, alt: "noise", scale: 4))])])
        let xml = ParsedXML(report.render())
        #expect(xml.error == nil)
        let image0 = try #require(xml.elements("img").first)
        let source = try #require(image0.attributes["src"])
        let prefix = "data:image/png;base64,"
        #expect(source.hasPrefix(prefix))
        let decoded = try #require(Data(base64Encoded: String(source.dropFirst(prefix.count))))
        #expect(decoded == png)
        #expect(try GreyImage(png: decoded) == image)
        // Shown at 4× its size with sharp pixels.
        #expect(image0.attributes["width"] == "112" && image0.attributes["height"] == "112")
        #expect(image0.attributes["class"] == "pixelated")
        #expect(report.render().contains("image-rendering: pixelated"))
    }

    @Test("text is escaped everywhere, with backticks for code")
    func escaping() {
        let hostile = "<script>alert(\"x\")</script> & 'y'"
        let report = HTMLReport(
            title: hostile, subtitle: hostile,
            sections: [
                .init(
                    id: "a b<c>", title: hostile, intro: "run `a < b && c` now, and `unpaired",
                    blocks: [
                        .heading(hostile), .paragraph(hostile), .code("if a < b && c > d { print(\"</pre>\") }"),
                        .table(.init(header: [hostile], rows: [[hostile], ["<td>"]], caption: hostile)),
                        .callout(.init(.warning, title: hostile, text: hostile)),
                        .keyFigures([.init(value: hostile, label: hostile)]),
                        .figure(.image(png: Data([1, 2, 3]), alt: hostile, caption: hostile)),
                    ]),
                .init(id: "a b<c>", title: "same id again"),
            ],
            footer: hostile)
        let html = report.render()
        #expect(!html.contains("<script"))
        #expect(!html.contains("<td><td>"))
        let xml = ParsedXML(html)
        #expect(xml.error == nil)
        #expect(xml.texts("h1") == [hostile])
        #expect(xml.texts("title") == [hostile])
        #expect(xml.texts("code").contains("a < b && c"))
        #expect(xml.texts("p", className: "intro").first == "run  now, and `unpaired")
        #expect(xml.texts("code").contains("if a < b && c > d { print(\"</pre>\") }"))
        // Ids are made safe and unique.
        #expect(xml.elements("section").map { $0.attributes["id"] ?? "" } == ["a-b-c-", "a-b-c--2"])
        // Not a PNG: embedded as given, without a size.
        #expect(xml.elements("img").first?.attributes["width"] == nil)
    }

    @Test("numeric columns are right-aligned")
    func numericAlignment() {
        let table = HTMLReport.Table(
            header: ["attack", "success", "norm", "time", "note"],
            rows: [["FGSM", "89.1%", "-0.5", "0.4 s", "fast"], ["PGD", "100%", "—", "21 s", "3 restarts"]])
        #expect(HTMLWriter.numericColumns(table, columnCount: 5) == [1, 2, 3])
        let report = HTMLReport(title: "t", sections: [.init(id: "t", title: "t", blocks: [.table(table)])])
        let xml = ParsedXML(report.render())
        #expect(xml.elements("td", className: "num").count == 6)
        #expect(xml.elements("th", className: "num").count == 3)
        var explicit = table
        explicit.rightAlignedColumns = [4]
        let explicitXML = ParsedXML(
            HTMLReport(title: "t", sections: [.init(id: "t", title: "t", blocks: [.table(explicit)])]).render())
        #expect(explicitXML.texts("td", className: "num") == ["fast", "3 restarts"])
    }

    @Test("inline SVG loses its namespace declaration and XML declaration")
    func inlineSVG() {
        let svg = "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 1 1\"><title>t</title></svg>"
        #expect(HTMLWriter.inlineSVG(svg) == "<svg viewBox=\"0 0 1 1\"><title>t</title></svg>")
        let chart = BarChart(title: "bars", categories: ["a"], values: [1])
        #expect(chart.svg().contains("xmlns=\"http://www.w3.org/2000/svg\""))
        let html = HTMLReport(title: "t", sections: [.init(id: "t", title: "t", blocks: [.figure(.chart(chart))])]).render()
        #expect(!html.contains("http"))
        #expect(ParsedXML(html).elements("rect", className: "bar").count == 1)
    }

    @Test("write(to:) writes the rendered report atomically")
    func writeIsAtomic() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("nested/report.html")
        let report = SampleReport.make()
        try report.write(to: url)
        #expect(try String(contentsOf: url, encoding: .utf8) == report.render())
        // Rewriting replaces the file whole and leaves no temporary file behind.
        let smaller = HTMLReport(title: "again")
        try smaller.write(to: url)
        #expect(try Data(contentsOf: url) == Data(smaller.render().utf8))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
        #expect(leftovers == ["report.html"])
        // A path under a regular file cannot be written, and says so.
        #expect(throws: FileWriteError.self) { try smaller.write(to: url.appendingPathComponent("x.html")) }
    }
}
