import Foundation

// The shared parts of the SVG charts: the protocol, palette, number formatting, tick
// generation, XML escaping and the small SVG writer that LineChart, BarChart and HeatMap
// draw with, so that all of them look alike.

/// A chart that draws itself as an SVG document.
///
/// Every chart in `Visuals` (``LineChart``, ``BarChart``, ``HeatMap``) shares one style: the
/// system font stack, the colour-blind-safe ``ChartPalette``, a bold title at the top left,
/// light horizontal grid lines, axes with round tick values and labels, and a legend when
/// there is more than one series.
public protocol SVGChart: Sendable {
    /// The chart as a standalone SVG document: one `<svg>` element with a `viewBox`, a
    /// `width` and `height`, and a `<title>` for screen readers. All text is XML-escaped,
    /// so the result is well-formed XML whatever the labels contain.
    func svg() -> String
}

/// A point of a line chart.
public struct ChartPoint: Sendable, Equatable, Hashable {
    /// The horizontal coordinate, in data units.
    public var x: Double
    /// The vertical coordinate, in data units.
    public var y: Double

    /// Creates a point.
    public init(x: Double, y: Double) {
        self.x = x
        self.y = y
    }
}

/// The colours of chart series, in order: the Okabe–Ito palette (Okabe & Ito, 2008), chosen
/// to stay distinguishable for readers with the common forms of colour blindness. Its yellow
/// is left out because it is unreadable on white.
public enum ChartPalette {
    /// Blue, orange, bluish green, vermillion, reddish purple, sky blue and grey.
    public static let colours: [Colour] = [
        Colour(red: 0x00, green: 0x72, blue: 0xB2),  // blue
        Colour(red: 0xE6, green: 0x9F, blue: 0x00),  // orange
        Colour(red: 0x00, green: 0x9E, blue: 0x73),  // bluish green
        Colour(red: 0xD5, green: 0x5E, blue: 0x00),  // vermillion
        Colour(red: 0xCC, green: 0x79, blue: 0xA7),  // reddish purple
        Colour(red: 0x56, green: 0xB4, blue: 0xE9),  // sky blue
        Colour(red: 0x66, green: 0x66, blue: 0x66),  // grey
    ]

    /// The colour for bars a chart wants to stand out (``BarChart/highlightedCategories``):
    /// vermillion.
    public static let highlight = Colour(red: 0xD5, green: 0x5E, blue: 0x00)

    /// The colour of series number `index`, cycling through ``colours``.
    public static func colour(at index: Int) -> Colour {
        colours[((index % colours.count) + colours.count) % colours.count]
    }
}

extension Colour {
    /// The colour as a CSS hex string, `#rrggbb`.
    public var hexString: String { String(format: "#%02x%02x%02x", red, green, blue) }

    /// The relative luminance of the colour (WCAG 2), from 0 for black to 1 for white.
    var relativeLuminance: Double {
        func linear(_ component: UInt8) -> Double {
            let value = Double(component) / 255
            return value <= 0.04045 ? value / 12.92 : pow((value + 0.055) / 1.055, 2.4)
        }
        return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)
    }
}

// MARK: - Numbers

/// How a chart writes numbers in tick labels and value labels.
public enum ChartNumberFormat: Sendable, Equatable, Hashable {
    /// Compact: at most three significant digits in value labels, exactly as many decimals
    /// as the tick step needs in tick labels, no trailing zeros (`0.3`, `12`, `1500`).
    case automatic
    /// A fraction written as a percentage: `0.25` becomes `25%`, `0.9999` becomes `99.99%`
    /// rather than a misleading `100%`.
    case percent
    /// A fixed number of decimals (`.decimals(2)`: `0.50`).
    case decimals(Int)

    /// `value` written for a value label (on a bar, in a heat-map cell).
    public func string(_ value: Double) -> String {
        guard value.isFinite else { return ChartNumberFormat.nonFinite(value) }
        switch self {
        case .automatic:
            return ChartNumberFormat.compact(value, significantDigits: 3)
        case .percent:
            return ChartNumberFormat.percentString(value)
        case .decimals(let decimals):
            return ChartNumberFormat.fixed(value, decimals: decimals)
        }
    }

    /// `value` written as a tick label on an axis whose ticks are `step` apart.
    func tickLabel(_ value: Double, step: Double) -> String {
        guard value.isFinite else { return ChartNumberFormat.nonFinite(value) }
        switch self {
        case .automatic:
            return ChartNumberFormat.fixed(value, decimals: ChartTicks.decimals(forStep: step))
        case .percent:
            return ChartNumberFormat.fixed(value * 100, decimals: ChartTicks.decimals(forStep: step * 100)) + "%"
        case .decimals(let decimals):
            return ChartNumberFormat.fixed(value, decimals: decimals)
        }
    }

    /// `value` with `decimals` digits after the point (0 to 10), never `-0`.
    static func fixed(_ value: Double, decimals: Int) -> String {
        let text = String(format: "%.\(min(max(decimals, 0), 10))f", value)
        return isNegativeZero(text) ? String(text.dropFirst()) : text
    }

    /// `value` rounded to `significantDigits`, without trailing zeros.
    static func compact(_ value: Double, significantDigits: Int) -> String {
        guard value != 0 else { return "0" }
        let magnitude = Int(floor(log10(abs(value))))
        let decimals = min(max(significantDigits - 1 - magnitude, 0), 10)
        return trimmingZeros(fixed(value, decimals: decimals))
    }

    /// A fraction as a percentage with three significant digits, adding digits (up to four
    /// decimals) when rounding would make a value below 1 read as 100% or above 0 read as 0%.
    static func percentString(_ fraction: Double) -> String {
        let percent = fraction * 100
        var text = compact(percent, significantDigits: 3)
        var decimals = ChartTicks.decimals(ofText: text)
        while decimals < 4, (text == "100" && fraction < 1) || (text == "0" && fraction > 0) {
            decimals += 1
            text = trimmingZeros(fixed(percent, decimals: decimals))
        }
        return text + "%"
    }

    private static func nonFinite(_ value: Double) -> String {
        value.isNaN ? "–" : (value > 0 ? "∞" : "−∞")
    }

    private static func trimmingZeros(_ text: String) -> String {
        guard text.contains(".") else { return text }
        var trimmed = Substring(text)
        while trimmed.last == "0" { trimmed = trimmed.dropLast() }
        if trimmed.last == "." { trimmed = trimmed.dropLast() }
        return isNegativeZero(String(trimmed)) ? "0" : String(trimmed)
    }

    private static func isNegativeZero(_ text: String) -> Bool {
        text.hasPrefix("-") && text.dropFirst().allSatisfy { $0 == "0" || $0 == "." }
    }
}

// MARK: - Ticks

/// Round tick values for chart axes.
public enum ChartTicks {
    /// About `approximateCount` evenly spaced round values (steps of 1, 2 or 5 times a power
    /// of ten) whose first is at or below `lower` and whose last is at or above `upper`.
    ///
    /// A range of zero width is widened around its value; non-finite bounds give `[0, 1]`.
    /// With `integersOnly` the step is at least 1, for axes that count things (epochs, steps).
    ///
    ///     ChartTicks.nice(from: 0.13, to: 0.87)   // [0, 0.2, 0.4, 0.6, 0.8, 1]
    ///     ChartTicks.nice(from: 1, to: 6, integersOnly: true)   // [1, 2, 3, 4, 5, 6]
    public static func nice(
        from lower: Double, to upper: Double, approximateCount: Int = 5, integersOnly: Bool = false
    ) -> [Double] {
        guard lower.isFinite, upper.isFinite else { return [0, 1] }
        var (low, high) = (min(lower, upper), max(lower, upper))
        if high - low <= abs(high) * 1e-12 {
            let half = integersOnly ? 1 : (low == 0 ? 1 : abs(low) * 0.1)
            (low, high) = (low - half, high + half)
        }
        var step = bestStep(low: low, high: high, approximateCount: max(approximateCount, 2))
        if integersOnly { step = max(step, 1) }
        let first = floor(low / step + 1e-9)
        let last = ceil(high / step - 1e-9)
        guard last - first < 1000 else { return [low, high] }  // only reachable with absurd inputs
        let decimals = decimals(forStep: step)
        let scale = pow(10, Double(decimals))
        return stride(from: first, through: last, by: 1).map { index in
            // Rounding to the step's decimals turns 3 * 0.1 into 0.3, not 0.30000000000000004.
            let value = (index * step * scale).rounded() / scale
            return value == 0 ? 0 : value
        }
    }

    /// The values 1, 2 and 5 times a power of ten from the largest at or below `lower` to the
    /// smallest at or above `upper`, for a logarithmic axis; only the powers of ten when
    /// that would give more than `maximumCount`. Both bounds must be positive (else `[1, 10]`).
    ///
    ///     ChartTicks.logarithmic(from: 500, to: 10_000)   // [500, 1000, 2000, 5000, 10000]
    public static func logarithmic(from lower: Double, to upper: Double, maximumCount: Int = 10) -> [Double] {
        guard lower.isFinite, upper.isFinite, lower > 0, upper > 0 else { return [1, 10] }
        let (low, high) = (min(lower, upper), max(lower, upper))
        let firstPower = floor(log10(low) + 1e-12)
        let lastPower = max(ceil(log10(high) - 1e-12), firstPower + 1)
        guard lastPower - firstPower < 300 else { return [low, high] }
        func values(_ mantissas: [Double]) -> [Double] {
            let all = stride(from: firstPower, through: lastPower, by: 1).flatMap { power in
                // pow(10, −2) is not exactly 0.01: divide for negative powers.
                mantissas.map { power < 0 ? $0 / pow(10, -power) : $0 * pow(10, power) }
            }
            let first = all.lastIndex { $0 <= low * (1 + 1e-12) } ?? 0
            let last = all.firstIndex { $0 >= high * (1 - 1e-12) } ?? all.count - 1
            return Array(all[first...last])
        }
        let fine = values([1, 2, 5])
        return fine.count <= maximumCount ? fine : values([1])
    }

    /// Of the steps 1, 2 and 5 times a power of ten near `(high - low) / (approximateCount - 1)`,
    /// the one whose ticks covering `low...high` come closest to `approximateCount` in number
    /// (the smaller step when two are equally close).
    static func bestStep(low: Double, high: Double, approximateCount: Int) -> Double {
        let rough = (high - low) / Double(approximateCount - 1)
        guard rough > 0, rough.isFinite else { return 1 }
        let exponent = floor(log10(rough))
        var best = (step: 1.0, miss: Double.infinity)
        for power in [exponent - 1, exponent, exponent + 1] {
            for mantissa in [1.0, 2, 5] {
                let step = mantissa * pow(10, power)
                let count = ceil(high / step - 1e-9) - floor(low / step + 1e-9) + 1
                let miss = abs(count - Double(approximateCount))
                if miss < best.miss { best = (step, miss) }
            }
        }
        return best.step
    }

    /// The number of decimals that tick labels `step` apart need (0 for steps of 1 or more).
    static func decimals(forStep step: Double) -> Int {
        guard step > 0, step.isFinite else { return 0 }
        return min(max(-Int(floor(log10(step) + 1e-9)), 0), 10)
    }

    /// The number of digits after the point in a formatted number.
    static func decimals(ofText text: String) -> Int {
        guard let point = text.firstIndex(of: ".") else { return 0 }
        return text.distance(from: point, to: text.endIndex) - 1
    }
}

// MARK: - XML

/// Text escaped for XML and HTML content and attribute values: `&`, `<`, `>`, `"` and `'`
/// become entities, and characters XML 1.0 does not allow (most control characters) become
/// U+FFFD, so that any label keeps the document well-formed.
func xmlEscaped(_ text: String) -> String {
    var result = ""
    result.reserveCapacity(text.utf8.count)
    for scalar in text.unicodeScalars {
        switch scalar {
        case "&": result += "&amp;"
        case "<": result += "&lt;"
        case ">": result += "&gt;"
        case "\"": result += "&quot;"
        case "'": result += "&#39;"
        case "\t", "\n", "\r": result.unicodeScalars.append(scalar)
        default:
            let value = scalar.value
            let allowed = (value >= 0x20 && value <= 0xD7FF) || (value >= 0xE000 && value <= 0xFFFD) || value >= 0x10000
            result.unicodeScalars.append(allowed ? scalar : "\u{FFFD}")
        }
    }
    return result
}

// MARK: - Drawing

/// The sizes and colours every chart uses.
enum ChartStyle {
    static let fontFamily = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"
    static let titleSize = 15.0
    static let labelSize = 12.5
    static let tickSize = 11.5
    static let valueSize = 11.0
    static let padding = 12.0
    static let textColour = "#222222"
    static let mutedTextColour = "#555555"
    static let axisColour = "#888888"
    static let gridColour = "#e6e6e6"

    /// A rough width of `text` at `size`: system fonts average a little under 0.6 em a
    /// character, digits slightly more than that; enough to reserve room for labels.
    static func textWidth(_ text: String, size: Double) -> Double {
        Double(text.count) * size * 0.6
    }
}

/// Where text sits relative to its anchor point.
enum TextAnchor: String {
    case start, middle, end
}

/// How an axis maps its values: evenly, or by their logarithm (for quantities that span
/// decades, such as query budgets).
public enum ChartAxisScale: Sendable, Equatable {
    /// Equal differences are equal distances.
    case linear
    /// Equal ratios are equal distances; values ≤ 0 are not drawn.
    case logarithmic
}

/// A map from a data interval to a pixel interval, linear or logarithmic.
struct ChartScale {
    var domain: (lower: Double, upper: Double)
    var range: (from: Double, to: Double)
    var kind: ChartAxisScale = .linear

    func callAsFunction(_ value: Double) -> Double {
        let (value, lower, upper) =
            kind == .logarithmic
            ? (log10(value), log10(domain.lower), log10(domain.upper)) : (value, domain.lower, domain.upper)
        let span = upper - lower
        guard span != 0 else { return (range.from + range.to) / 2 }
        return range.from + (value - lower) / span * (range.to - range.from)
    }
}

/// A small SVG writer: elements are appended in drawing order and wrapped in an `<svg>`
/// root by ``document(title:)``. Coordinates are written with at most two decimals.
struct SVGWriter {
    let width: Double
    let height: Double
    private(set) var elements: [String] = []

    init(width: Double, height: Double) {
        self.width = width
        self.height = height
    }

    /// A coordinate or length: two decimals at most, no trailing zeros.
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let rounded = (value * 100).rounded() / 100
        if rounded == rounded.rounded() { return String(Int(rounded)) }
        return ChartNumberFormat.compact(rounded, significantDigits: 15)
    }

    private func n(_ value: Double) -> String { SVGWriter.number(value) }

    mutating func raw(_ element: String) { elements.append(element) }

    mutating func rect(
        x: Double, y: Double, width: Double, height: Double, fill: String, className: String? = nil,
        stroke: String? = nil, radius: Double = 0, tooltip: String? = nil
    ) {
        var attributes = "x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(max(width, 0)))\" height=\"\(n(max(height, 0)))\""
        attributes += " fill=\"\(fill)\""
        if let className { attributes += " class=\"\(className)\"" }
        if let stroke { attributes += " stroke=\"\(stroke)\" stroke-width=\"1\"" }
        if radius > 0 { attributes += " rx=\"\(n(radius))\"" }
        if let tooltip {
            elements.append("<rect \(attributes)><title>\(xmlEscaped(tooltip))</title></rect>")
        } else {
            elements.append("<rect \(attributes)/>")
        }
    }

    mutating func line(
        x1: Double, y1: Double, x2: Double, y2: Double, stroke: String, width: Double = 1, dash: String? = nil,
        className: String? = nil
    ) {
        var attributes = "x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\""
        attributes += " stroke=\"\(stroke)\" stroke-width=\"\(n(width))\""
        if let dash { attributes += " stroke-dasharray=\"\(dash)\"" }
        if let className { attributes += " class=\"\(className)\"" }
        elements.append("<line \(attributes)/>")
    }

    mutating func circle(x: Double, y: Double, radius: Double, fill: String, className: String?, tooltip: String?) {
        var attributes = "cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"\(n(radius))\" fill=\"\(fill)\" stroke=\"#ffffff\" stroke-width=\"1\""
        if let className { attributes += " class=\"\(className)\"" }
        if let tooltip {
            elements.append("<circle \(attributes)><title>\(xmlEscaped(tooltip))</title></circle>")
        } else {
            elements.append("<circle \(attributes)/>")
        }
    }

    /// A polyline through `points` as one path, starting a new piece after every `nil`.
    mutating func polyline(
        _ points: [(x: Double, y: Double)?], stroke: String, width: Double, dash: String?, className: String?
    ) {
        var commands: [String] = []
        var penDown = false
        for point in points {
            guard let point else {
                penDown = false
                continue
            }
            commands.append("\(penDown ? "L" : "M")\(n(point.x)) \(n(point.y))")
            penDown = true
        }
        guard !commands.isEmpty else { return }
        var attributes = "d=\"\(commands.joined(separator: " "))\" fill=\"none\" stroke=\"\(stroke)\""
        attributes += " stroke-width=\"\(n(width))\" stroke-linejoin=\"round\" stroke-linecap=\"round\""
        if let dash { attributes += " stroke-dasharray=\"\(dash)\"" }
        if let className { attributes += " class=\"\(className)\"" }
        elements.append("<path \(attributes)/>")
    }

    mutating func text(
        _ text: String, x: Double, y: Double, size: Double = ChartStyle.tickSize, anchor: TextAnchor = .start,
        fill: String = ChartStyle.mutedTextColour, bold: Bool = false, rotation: Double = 0,
        className: String? = nil, baseline: String? = nil
    ) {
        var attributes = "x=\"\(n(x))\" y=\"\(n(y))\" font-size=\"\(n(size))\" fill=\"\(fill)\""
        if anchor != .start { attributes += " text-anchor=\"\(anchor.rawValue)\"" }
        if bold { attributes += " font-weight=\"600\"" }
        if rotation != 0 { attributes += " transform=\"rotate(\(n(rotation)) \(n(x)) \(n(y)))\"" }
        if let baseline { attributes += " dominant-baseline=\"\(baseline)\"" }
        if let className { attributes += " class=\"\(className)\"" }
        elements.append("<text \(attributes)>\(xmlEscaped(text))</text>")
    }

    /// The finished document. `title` becomes the `<title>` element and the accessible name.
    func document(title: String) -> String {
        let name = xmlEscaped(title.isEmpty ? "Chart" : title)
        var lines = [
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(n(width)) \(n(height))\""
                + " width=\"\(n(width))\" height=\"\(n(height))\" role=\"img\" aria-label=\"\(name)\""
                + " font-family=\"\(ChartStyle.fontFamily)\" class=\"chart\">",
            "<title>\(name)</title>",
        ]
        lines += elements
        lines.append("</svg>")
        return lines.joined(separator: "\n")
    }
}

// MARK: - Frame

/// One entry of a chart legend.
struct LegendEntry {
    enum Swatch {
        case line(dashed: Bool)
        case box
    }

    var name: String
    var colour: String
    var swatch: Swatch
}

/// The parts every chart shares: the title and legend at the top, and the rows of legend
/// entries wrapped to the chart's width.
struct ChartHeader {
    /// Height of one legend row.
    static let legendRowHeight = 18.0
    /// Width of a legend swatch plus the gap to its text.
    static let swatchWidth = 24.0

    let title: String
    let legend: [LegendEntry]
    let width: Double

    /// The legend entries placed in rows that fit `width`: each row a list of (entry, x).
    var legendRows: [[(entry: LegendEntry, x: Double)]] {
        guard legend.count > 1 else { return [] }
        let available = width - 2 * ChartStyle.padding
        var rows: [[(entry: LegendEntry, x: Double)]] = [[]]
        var x = 0.0
        for entry in legend {
            let entryWidth = ChartHeader.swatchWidth + ChartStyle.textWidth(entry.name, size: ChartStyle.labelSize)
            if x > 0, x + entryWidth > available {
                rows.append([])
                x = 0
            }
            rows[rows.count - 1].append((entry, ChartStyle.padding + x))
            x += entryWidth + 16
        }
        return rows
    }

    /// The y coordinate where the content below the header may start.
    var bottom: Double {
        var y = ChartStyle.padding
        if !title.isEmpty { y += ChartStyle.titleSize + 6 }
        let rows = legendRows.count
        y += Double(rows) * ChartHeader.legendRowHeight
        return title.isEmpty && rows == 0 ? y - 6 : y + 6
    }

    /// Draws the title and legend.
    func draw(into svg: inout SVGWriter) {
        var y = ChartStyle.padding
        if !title.isEmpty {
            svg.text(
                title, x: ChartStyle.padding, y: y + ChartStyle.titleSize - 2, size: ChartStyle.titleSize,
                fill: ChartStyle.textColour, bold: true, className: "chart-title")
            y += ChartStyle.titleSize + 6
        }
        for row in legendRows {
            let middle = y + ChartHeader.legendRowHeight / 2
            for (entry, x) in row {
                switch entry.swatch {
                case .line(let dashed):
                    svg.line(
                        x1: x, y1: middle, x2: x + 16, y2: middle, stroke: entry.colour, width: 2.5,
                        dash: dashed ? "5 3" : nil, className: "legend-swatch")
                case .box:
                    svg.rect(x: x + 3, y: middle - 5, width: 10, height: 10, fill: entry.colour, className: "legend-swatch", radius: 2)
                }
                svg.text(
                    entry.name, x: x + ChartHeader.swatchWidth - 4, y: middle + 4, size: ChartStyle.labelSize,
                    fill: ChartStyle.textColour, className: "legend-label")
            }
            y += ChartHeader.legendRowHeight
        }
    }
}

/// A numeric axis: its ticks, scale and labels.
struct NumericAxis {
    let ticks: [Double]
    let format: ChartNumberFormat

    init(lower: Double, upper: Double, approximateCount: Int, integersOnly: Bool, format: ChartNumberFormat) {
        ticks = ChartTicks.nice(from: lower, to: upper, approximateCount: approximateCount, integersOnly: integersOnly)
        self.format = format
    }

    /// A logarithmic axis: ticks at 1, 2 and 5 times the powers of ten (or the powers alone).
    init(logarithmicFrom lower: Double, to upper: Double, maximumCount: Int, format: ChartNumberFormat) {
        ticks = ChartTicks.logarithmic(from: lower, to: upper, maximumCount: maximumCount)
        self.format = format
    }

    var lower: Double { ticks.first ?? 0 }
    var upper: Double { ticks.last ?? 1 }
    var step: Double { ticks.count > 1 ? ticks[1] - ticks[0] : 1 }

    var labels: [String] { ticks.map { format.tickLabel($0, step: step) } }

    /// The widest tick label's estimated width.
    var labelWidth: Double {
        labels.map { ChartStyle.textWidth($0, size: ChartStyle.tickSize) }.max() ?? 0
    }
}

/// The smallest and largest of the finite values, or `nil` when there are none.
func finiteExtent<S: Sequence>(_ values: S) -> (lower: Double, upper: Double)? where S.Element == Double {
    var extent: (lower: Double, upper: Double)?
    for value in values where value.isFinite {
        extent = extent.map { (min($0.lower, value), max($0.upper, value)) } ?? (value, value)
    }
    return extent
}

extension SVGWriter {
    /// Draws a vertical value axis at `x` with horizontal grid lines across to `gridEnd`.
    mutating func drawVerticalAxis(
        _ axis: NumericAxis, scale: ChartScale, x: Double, gridEnd: Double, label: String, labelX: Double
    ) {
        for (tick, text) in zip(axis.ticks, axis.labels) {
            let y = scale(tick)
            line(x1: x, y1: y, x2: gridEnd, y2: y, stroke: ChartStyle.gridColour, className: "grid")
            line(x1: x - 4, y1: y, x2: x, y2: y, stroke: ChartStyle.axisColour, className: "tick")
            self.text(text, x: x - 7, y: y + 3.5, anchor: .end, className: "tick-label")
        }
        line(x1: x, y1: scale.range.from, x2: x, y2: scale.range.to, stroke: ChartStyle.axisColour, className: "axis")
        if !label.isEmpty {
            let middle = (scale.range.from + scale.range.to) / 2
            self.text(
                label, x: labelX, y: middle, size: ChartStyle.labelSize, anchor: .middle, fill: ChartStyle.textColour,
                rotation: -90, className: "axis-label")
        }
    }

    /// Draws a horizontal value axis at `y` with vertical grid lines up to `gridEnd`.
    mutating func drawHorizontalAxis(
        _ axis: NumericAxis, scale: ChartScale, y: Double, gridEnd: Double?, label: String, labelY: Double
    ) {
        for (tick, text) in zip(axis.ticks, axis.labels) {
            let x = scale(tick)
            if let gridEnd { line(x1: x, y1: gridEnd, x2: x, y2: y, stroke: ChartStyle.gridColour, className: "grid") }
            line(x1: x, y1: y, x2: x, y2: y + 4, stroke: ChartStyle.axisColour, className: "tick")
            self.text(text, x: x, y: y + 17, anchor: .middle, className: "tick-label")
        }
        line(x1: scale.range.from, y1: y, x2: scale.range.to, y2: y, stroke: ChartStyle.axisColour, className: "axis")
        if !label.isEmpty {
            let middle = (scale.range.from + scale.range.to) / 2
            self.text(
                label, x: middle, y: labelY, size: ChartStyle.labelSize, anchor: .middle, fill: ChartStyle.textColour,
                className: "axis-label")
        }
    }
}
