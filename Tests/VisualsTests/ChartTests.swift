import Foundation
import Testing

@testable import Visuals

#if canImport(FoundationXML)
import FoundationXML
#endif

/// The elements of an XML document, parsed with Foundation's `XMLParser`.
struct ParsedXML {
    struct Element {
        var name: String
        var attributes: [String: String]
        var text: String
    }

    /// Every element in document order, with the text directly inside it.
    private(set) var elements: [Element] = []
    /// The parser's error, `nil` when the document is well-formed.
    private(set) var error: String?

    init(_ text: String) {
        let delegate = Collector()
        let parser = XMLParser(data: Data(text.utf8))
        parser.delegate = delegate
        if !parser.parse() {
            error = parser.parserError.map { "\($0) at line \(parser.lineNumber)" } ?? "parse failed"
        }
        elements = delegate.elements
    }

    /// The elements called `name`, optionally only those with `class` containing `className`.
    func elements(_ name: String, className: String? = nil) -> [Element] {
        elements.filter { element in
            element.name == name
                && (className.map { (element.attributes["class"] ?? "").split(separator: " ").contains(Substring($0)) }
                    ?? true)
        }
    }

    /// The texts of all elements called `name`.
    func texts(_ name: String, className: String? = nil) -> [String] {
        elements(name, className: className).map(\.text)
    }

    private final class Collector: NSObject, XMLParserDelegate {
        var elements: [Element] = []
        var open: [Int] = []

        func parser(
            _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
            attributes: [String: String] = [:]
        ) {
            open.append(elements.count)
            elements.append(Element(name: elementName, attributes: attributes, text: ""))
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
            _ = open.popLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if let index = open.last { elements[index].text += string }
        }
    }
}

@Suite("Charts")
struct ChartTests {
    // MARK: Ticks and numbers

    @Test("ticks are round and cover the data", arguments: [
        (0.13, 0.87), (0, 1), (-3.2, 47.9), (0.981, 0.9934), (1, 6), (0, 60_000), (2.5, 2.5), (-0.004, -0.001),
        (1e-7, 3e-7), (0, 0),
    ])
    func ticksCoverRange(lower: Double, upper: Double) {
        let ticks = ChartTicks.nice(from: lower, to: upper)
        #expect(ticks.count >= 2 && ticks.count <= 12, "\(ticks)")
        #expect(ticks.first! <= lower && ticks.last! >= upper, "\(ticks) does not cover \(lower)…\(upper)")
        let step = ticks[1] - ticks[0]
        // Steps are 1, 2 or 5 times a power of ten, and every tick is a multiple of the step.
        let mantissa = step / pow(10, floor(log10(step)))
        #expect([1, 2, 5, 10].contains { abs(mantissa - $0) < 1e-6 }, "step \(step)")
        for tick in ticks {
            #expect(abs(tick / step - (tick / step).rounded()) < 1e-6, "\(tick) is not a multiple of \(step)")
        }
        for (a, b) in zip(ticks, ticks.dropFirst()) { #expect(abs((b - a) - step) < step * 1e-6) }
    }

    @Test("tick values print without floating-point noise")
    func tickValuesAreClean() {
        #expect(ChartTicks.nice(from: 0, to: 1) == [0, 0.2, 0.4, 0.6, 0.8, 1])
        #expect(ChartTicks.nice(from: 0, to: 0.7, approximateCount: 8) == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
        #expect(ChartTicks.nice(from: 1, to: 6, integersOnly: true) == [1, 2, 3, 4, 5, 6])
        #expect(ChartTicks.nice(from: 1, to: 1, integersOnly: true) == [0, 1, 2])
        #expect(ChartTicks.nice(from: .nan, to: 1) == [0, 1])
        let ticks = ChartTicks.nice(from: 0, to: 0.3, approximateCount: 4)
        #expect(ticks.map { "\($0)" } == ["0.0", "0.1", "0.2", "0.3"])
    }

    @Test("numbers are formatted compactly")
    func numberFormats() {
        #expect(ChartNumberFormat.automatic.string(0.30000001) == "0.3")
        #expect(ChartNumberFormat.automatic.string(0.1 + 0.2) == "0.3")
        #expect(ChartNumberFormat.automatic.string(12) == "12")
        #expect(ChartNumberFormat.automatic.string(1234.6) == "1235")
        #expect(ChartNumberFormat.automatic.string(0.012345) == "0.0123")
        #expect(ChartNumberFormat.automatic.string(-0.0001) == "-0.0001")
        #expect(ChartNumberFormat.automatic.string(-0.0) == "0")
        #expect(ChartNumberFormat.percent.string(0.25) == "25%")
        #expect(ChartNumberFormat.percent.string(0.9932) == "99.3%")
        #expect(ChartNumberFormat.percent.string(0.99996) == "99.996%")
        #expect(ChartNumberFormat.percent.string(1) == "100%")
        #expect(ChartNumberFormat.percent.string(0.00001) == "0.001%")
        #expect(ChartNumberFormat.decimals(2).string(0.5) == "0.50")
        #expect(ChartNumberFormat.automatic.string(.nan) == "–")
        #expect(ChartNumberFormat.percent.tickLabel(0.6000000000000001, step: 0.2) == "60%")
        #expect(ChartNumberFormat.automatic.tickLabel(0.30000000000000004, step: 0.1) == "0.3")
        #expect(SVGWriter.number(12.345678) == "12.35")
        #expect(SVGWriter.number(40.0) == "40")
    }

    // MARK: Line chart

    @Test("line chart parses and has a marker for every point and a line for every series")
    func lineChart() throws {
        let chart = LineChart(
            title: "Training curves", xLabel: "epoch", yLabel: "accuracy",
            series: [
                .init("train", values: [0.91, 0.97, 0.985, 0.99]),
                .init("test", values: [0.95, 0.975, 0.982, 0.986], dashed: true),
            ],
            yRange: 0.9...1, yFormat: .percent)
        let svg = chart.svg()
        let xml = ParsedXML(svg)
        #expect(xml.error == nil)
        let root = try #require(xml.elements.first)
        #expect(root.name == "svg")
        #expect(root.attributes["viewBox"] == "0 0 640 360")
        #expect(xml.texts("title").first == "Training curves")
        #expect(xml.elements("circle", className: "mark").count == 8)
        #expect(xml.elements("path", className: "series").count == 2)
        #expect(xml.texts("text", className: "legend-label") == ["train", "test"])
        #expect(xml.texts("text", className: "axis-label").sorted() == ["accuracy", "epoch"])
        // Integer x values get integer ticks; the y axis covers 90–100% in round steps.
        #expect(xml.texts("text", className: "tick-label").contains("90%"))
        #expect(xml.texts("text", className: "tick-label").contains("100%"))
        #expect(!xml.texts("text", className: "tick-label").contains("1.5"))
        #expect(!svg.contains("0000000"))
    }

    @Test("series beyond the palette are dashed so that ten digits stay apart")
    func tenSeries() {
        let chart = LineChart(
            title: "Ten", series: (0...9).map { LineChart.Series("\($0)", values: [Double($0), Double($0) + 1]) })
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        let paths = xml.elements("path", className: "series")
        #expect(paths.count == 10)
        #expect(paths.map { $0.attributes["stroke-dasharray"] != nil } == (0...9).map { $0 >= 7 })
        #expect(paths[0].attributes["stroke"] == paths[7].attributes["stroke"])
        #expect(xml.elements("line", className: "legend-swatch").filter { $0.attributes["stroke-dasharray"] != nil }.count == 3)
    }

    @Test("a single series has no legend")
    func singleSeriesHasNoLegend() {
        let chart = LineChart(title: "Loss", series: [.init("loss", values: [2.3, 0.4, 0.2])])
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        #expect(xml.elements("text", className: "legend-label").isEmpty)
        #expect(xml.elements("circle", className: "mark").count == 3)
    }

    @Test("logarithmic ticks are 1, 2 and 5 times powers of ten and cover the data")
    func logarithmicTicks() {
        #expect(ChartTicks.logarithmic(from: 500, to: 10_000) == [500, 1000, 2000, 5000, 10_000])
        #expect(ChartTicks.logarithmic(from: 0.003, to: 0.2) == [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2])
        #expect(ChartTicks.logarithmic(from: 1, to: 1e6) == [1, 10, 100, 1000, 1e4, 1e5, 1e6])
        #expect(ChartTicks.logarithmic(from: 7, to: 7) == [5, 10])
        #expect(ChartTicks.logarithmic(from: 0, to: 10) == [1, 10])
        #expect(ChartTicks.logarithmic(from: .nan, to: 10) == [1, 10])
    }

    @Test("a logarithmic x axis spaces equal ratios equally and skips x ≤ 0")
    func logarithmicLineChart() throws {
        let chart = LineChart(
            title: "Median L2 against queries",
            series: [.init("hopskipjump", x: [0, 100, 1000, 10_000], y: [4, 3, 2, 1])], xScale: .logarithmic)
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        let xs = xml.elements("circle", className: "mark").compactMap { $0.attributes["cx"].flatMap(Double.init) }
        #expect(xs.count == 3)
        #expect(abs((xs[1] - xs[0]) - (xs[2] - xs[1])) < 0.02, "\(xs)")
        let labels = xml.elements("text", className: "tick-label").map(\.text)
        #expect(labels.contains("1000") || labels.contains("1,000"), "\(labels)")
    }

    @Test("NaN and infinite points are skipped and break the line")
    func nonFinitePointsAreSkipped() throws {
        let chart = LineChart(
            title: "Confidence per step",
            series: [.init("5", x: [0, 1, 2, 3, 4, 5], y: [0.1, .nan, 0.5, .infinity, 0.9, -.infinity])])
        let svg = chart.svg()
        let xml = ParsedXML(svg)
        #expect(xml.error == nil)
        #expect(xml.elements("circle", className: "mark").count == 3)
        let path = try #require(xml.elements("path", className: "series").first?.attributes["d"])
        #expect(path.filter { $0 == "M" }.count == 3)  // three separate pieces
        #expect(!svg.lowercased().contains("nan"))
        #expect(!svg.contains("inf"))
    }

    @Test("a single point, an empty series and no series at all draw without trouble")
    func degenerateLineCharts() {
        let single = ParsedXML(LineChart(title: "One", series: [.init("a", values: [0.5])]).svg())
        #expect(single.error == nil)
        #expect(single.elements("circle", className: "mark").count == 1)
        #expect(single.texts("text", className: "tick-label").count >= 4)

        let empty = ParsedXML(LineChart(title: "None", series: [.init("a", points: []), .init("b", points: [])]).svg())
        #expect(empty.error == nil)
        #expect(empty.elements("circle", className: "mark").isEmpty)
        #expect(empty.texts("text", className: "empty") == ["no data"])

        let nothing = ParsedXML(LineChart(title: "", series: [], width: 10, height: 10).svg())
        #expect(nothing.error == nil)
        let allNaN = ParsedXML(LineChart(title: "NaN", series: [.init("a", values: [.nan, .nan])], yRange: 0...1).svg())
        #expect(allNaN.error == nil)
        #expect(allNaN.elements("path", className: "series").isEmpty)
    }

    @Test("hostile labels are escaped")
    func hostileLabelsAreEscaped() {
        let hostile = "<script>alert('x & y')</script>"
        let chart = LineChart(
            title: hostile, xLabel: "a & b", yLabel: "\"quoted\"",
            series: [.init(hostile, values: [1, 2]), .init("<b>", values: [2, 1])])
        let svg = chart.svg()
        #expect(!svg.contains("<script>"))
        #expect(!svg.contains("<b>"))
        let xml = ParsedXML(svg)
        #expect(xml.error == nil)
        #expect(xml.texts("title").first == hostile)
        #expect(xml.elements.first?.attributes["aria-label"] == hostile)
        #expect(xml.texts("text", className: "legend-label") == [hostile, "<b>"])
        #expect(xml.texts("text", className: "axis-label").contains("a & b"))
        // Characters XML does not allow are replaced, so the document still parses.
        let control = ParsedXML(BarChart(title: "bell \u{7} nul \u{0}", categories: ["\u{1B}[31m"], values: [1]).svg())
        #expect(control.error == nil)
    }

    // MARK: Bar chart

    @Test("vertical bar chart has one bar per finite value and value labels")
    func verticalBars() {
        let chart = BarChart(
            title: "Success rate", categories: ["FGSM", "PGD-40", "C&W", "Square"], values: [0.41, 0.98, .nan, 0.87],
            valueLabel: "success", valueRange: 0...1, valueFormat: .percent)
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        #expect(xml.elements("rect", className: "bar").count == 3)
        #expect(xml.texts("text", className: "category-label") == ["FGSM", "PGD-40", "C&W", "Square"])
        #expect(xml.texts("text", className: "value-label") == ["41%", "98%", "87%"])
        #expect(xml.texts("text", className: "tick-label").contains("100%"))
        #expect(xml.elements("text", className: "legend-label").isEmpty)
    }

    @Test("horizontal confidence bars highlight the target")
    func horizontalBars() throws {
        var probabilities = [Double](repeating: 0.001, count: 10)
        probabilities[5] = 0.991
        let chart = BarChart(
            title: "Fooled as 5", categories: (0...9).map(String.init), values: probabilities,
            orientation: .horizontal, valueRange: 0...1, valueFormat: .percent, highlightedCategories: [5],
            width: 260, height: 240)
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        let bars = xml.elements("rect", className: "bar")
        #expect(bars.count == 10)
        #expect(bars[5].attributes["fill"] == ChartPalette.highlight.hexString)
        #expect(bars[4].attributes["fill"] == ChartPalette.colour(at: 0).hexString)
        // Longest bar is the target's; bars grow to the right.
        let widths = bars.compactMap { $0.attributes["width"].flatMap(Double.init) }
        #expect(widths.firstIndex(of: widths.max()!) == 5)
        #expect(xml.texts("text", className: "value-label")[5] == "99.1%")
        // Only the target labelled.
        var quiet = chart
        quiet.valueLabels = .highlighted
        let quietXML = ParsedXML(quiet.svg())
        #expect(quietXML.texts("text", className: "value-label") == ["99.1%"])
        #expect(quietXML.elements("rect", className: "bar").count == 10)
    }

    @Test("grouped bars with negative values and a legend")
    func groupedBars() throws {
        let chart = BarChart(
            title: "Grouped", categories: ["a", "b", "c"],
            series: [.init("standard", values: [1, -2, 3]), .init("robust", values: [2, 1])],
            valueLabels: .none)
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        #expect(xml.elements("rect", className: "bar").count == 5)
        #expect(xml.texts("text", className: "legend-label") == ["standard", "robust"])
        #expect(xml.elements("text", className: "value-label").isEmpty)
        #expect(xml.texts("text", className: "tick-label").contains("-2"))
        let empty = ParsedXML(BarChart(title: "empty", categories: [], values: []).svg())
        #expect(empty.error == nil)
        #expect(empty.elements("rect", className: "bar").isEmpty)
    }

    // MARK: Heat map

    @Test("a 10×10 confusion matrix has 100 cells with their counts")
    func confusionMatrix() throws {
        let digits = (0...9).map(String.init)
        let counts = (0..<10).map { row in (0..<10).map { column in row == column ? 980 + row : (row + column) % 4 } }
        let chart = HeatMap(
            title: "Confusion matrix", rowLabels: digits, columnLabels: digits, counts: counts,
            rowAxisLabel: "true digit", columnAxisLabel: "predicted digit", scaling: .logarithmic)
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        let cells = xml.elements("rect", className: "cell")
        #expect(cells.count == 100)
        let values = xml.texts("text", className: "cell-value")
        #expect(values.count == 100)
        #expect(values[0] == "980" && values[11] == "981" && values[1] == "1")
        #expect(xml.texts("text", className: "row-label") == digits)
        #expect(xml.texts("text", className: "column-label") == digits)
        #expect(xml.texts("text", className: "axis-label").sorted() == ["predicted digit", "true digit"])
        // The diagonal is the darkest colour, with white text; zeros are the lightest.
        let diagonal = xml.elements("text", className: "cell-value")[0]
        #expect(diagonal.attributes["fill"] == "#ffffff")
        #expect(cells[0].attributes["fill"] != cells[1].attributes["fill"])
        #expect(cells[4].attributes["fill"] == HeatMap.colour(atFraction: 0).hexString)  // (0 + 4) % 4 == 0
    }

    @Test("heat map escapes labels and survives ragged rows and NaN")
    func heatMapEdgeCases() {
        let chart = HeatMap(
            title: "a < b", rowLabels: ["<r>", "&"], columnLabels: ["x", "y", "z"],
            values: [[1, .nan, 3], [4]])
        let xml = ParsedXML(chart.svg())
        #expect(xml.error == nil)
        #expect(xml.elements("rect", className: "cell").count == 6)
        #expect(xml.texts("text", className: "row-label") == ["<r>", "&"])
        #expect(xml.texts("text", className: "cell-value").filter { $0 == "–" }.count == 3)
        #expect(ParsedXML(HeatMap(title: "", rowLabels: [], columnLabels: [], values: []).svg()).error == nil)
    }

    @Test("colour scale runs from light to dark")
    func colourScale() {
        let light = HeatMap.colour(atFraction: 0)
        let dark = HeatMap.colour(atFraction: 1)
        #expect(light.relativeLuminance > 0.9)
        #expect(dark.relativeLuminance < 0.05)
        let steps = stride(from: 0.0, through: 1, by: 0.05).map { HeatMap.colour(atFraction: $0).relativeLuminance }
        #expect(zip(steps, steps.dropFirst()).allSatisfy { $0 >= $1 })
    }
}
