import Foundation

/// A line chart of one or more named series of (x, y) points, drawn as SVG.
///
/// Each series is a line in its own colour from ``ChartPalette`` (or the one it asks for),
/// with a marker on every point. Points with a NaN or infinite coordinate are skipped and
/// break the line there. The axes get round tick values covering the data (and
/// ``yRange`` when given), and a legend names the series when there are several.
///
///     let chart = LineChart(
///         title: "Accuracy against ε", xLabel: "ε (L∞)", yLabel: "accuracy",
///         series: [
///             .init("standard", points: standard),
///             .init("PGD-trained", points: robust, dashed: true),
///         ],
///         yRange: 0...1, yFormat: .percent)
///     let svg = chart.svg()
public struct LineChart: SVGChart, Equatable {
    /// One named line.
    public struct Series: Sendable, Equatable {
        /// The name shown in the legend.
        public var name: String
        /// The points, joined in this order.
        public var points: [ChartPoint]
        /// The line's colour; `nil` takes the next colour of ``ChartPalette``.
        public var colour: Colour?
        /// Whether the line is dashed, a second cue besides colour. Series beyond the
        /// palette's seven colours, which repeat colours, are dashed anyway (the 8th to 14th),
        /// so that ten digits stay apart.
        public var dashed: Bool

        /// Creates a series from its points.
        public init(_ name: String, points: [ChartPoint], colour: Colour? = nil, dashed: Bool = false) {
            self.name = name
            self.points = points
            self.colour = colour
            self.dashed = dashed
        }

        /// Creates a series from values at x = `firstX`, `firstX + 1`, … (epochs, steps).
        public init(_ name: String, values: [Double], firstX: Double = 1, colour: Colour? = nil, dashed: Bool = false) {
            let points = values.enumerated().map { ChartPoint(x: firstX + Double($0.offset), y: $0.element) }
            self.init(name, points: points, colour: colour, dashed: dashed)
        }

        /// Creates a series from paired x and y values; extra values of the longer array are
        /// ignored.
        public init(_ name: String, x: [Double], y: [Double], colour: Colour? = nil, dashed: Bool = false) {
            self.init(name, points: zip(x, y).map { ChartPoint(x: $0, y: $1) }, colour: colour, dashed: dashed)
        }
    }

    /// The title drawn at the top left (and the SVG's accessible name).
    public var title: String
    /// The label under the horizontal axis.
    public var xLabel: String
    /// The label beside the vertical axis.
    public var yLabel: String
    /// The lines, drawn in order.
    public var series: [Series]
    /// A range the vertical axis always covers (for example `0...1` for accuracy); the axis
    /// still grows to include points outside it. `nil` fits the axis to the data.
    public var yRange: ClosedRange<Double>?
    /// How the horizontal tick labels are written.
    public var xFormat: ChartNumberFormat
    /// Whether the horizontal axis is linear or logarithmic (points with x ≤ 0 are then
    /// skipped).
    public var xScale: ChartAxisScale
    /// How the vertical tick labels are written (`.percent` for accuracy and confidence).
    public var yFormat: ChartNumberFormat
    /// Whether every point gets a circular marker.
    public var showsMarkers: Bool
    /// The width of the SVG's view box, in pixels at 100% zoom.
    public var width: Double
    /// The height of the SVG's view box.
    public var height: Double

    /// Creates a line chart.
    public init(
        title: String, xLabel: String = "", yLabel: String = "", series: [Series],
        yRange: ClosedRange<Double>? = nil, xFormat: ChartNumberFormat = .automatic, xScale: ChartAxisScale = .linear,
        yFormat: ChartNumberFormat = .automatic, showsMarkers: Bool = true, width: Double = 640, height: Double = 360
    ) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.yRange = yRange
        self.xFormat = xFormat
        self.xScale = xScale
        self.yFormat = yFormat
        self.showsMarkers = showsMarkers
        self.width = width
        self.height = height
    }

    /// The chart as a standalone SVG document.
    public func svg() -> String {
        let (width, height) = (max(self.width, 160), max(self.height, 120))
        var svg = SVGWriter(width: width, height: height)
        let colours = series.indices.map { (series[$0].colour ?? ChartPalette.colour(at: $0)).hexString }
        let dashed = series.indices.map { series[$0].dashed || !($0 / ChartPalette.colours.count).isMultiple(of: 2) }
        let header = ChartHeader(
            title: title,
            legend: series.indices.map {
                LegendEntry(name: series[$0].name, colour: colours[$0], swatch: .line(dashed: dashed[$0]))
            },
            width: width)
        header.draw(into: &svg)

        // Axes: fitted to the finite points, widened to yRange.
        let finite = series.flatMap(\.points).filter(drawable)
        let xExtent = finiteExtent(finite.map(\.x)) ?? (0, 1)
        var yExtent = finiteExtent(finite.map(\.y)) ?? (yRange.map { ($0.lowerBound, $0.upperBound) } ?? (0, 1))
        if let yRange, yRange.lowerBound.isFinite, yRange.upperBound.isFinite {
            yExtent = (min(yExtent.lower, yRange.lowerBound), max(yExtent.upper, yRange.upperBound))
        }
        let integralX = !finite.isEmpty && finite.allSatisfy { $0.x == $0.x.rounded() }
        let yAxis = NumericAxis(
            lower: yExtent.lower, upper: yExtent.upper, approximateCount: max(Int((height - 120) / 45), 3),
            integersOnly: false, format: yFormat)

        let left = ChartStyle.padding + (yLabel.isEmpty ? 0 : 20) + yAxis.labelWidth + 10
        let plotTop = header.bottom + 8
        let plotBottom = height - ChartStyle.padding - (xLabel.isEmpty ? 0 : 20) - 20
        let xAxisProbe = NumericAxis(
            lower: xExtent.lower, upper: xExtent.upper, approximateCount: 6, integersOnly: integralX, format: xFormat)
        let right = width - ChartStyle.padding - max(xAxisProbe.labelWidth / 2, 6)
        let fitting = max(min(Int((right - left) / (xAxisProbe.labelWidth + 40)), 10), 2)
        let xAxis =
            self.xScale == .logarithmic
            ? NumericAxis(logarithmicFrom: xExtent.lower, to: xExtent.upper, maximumCount: fitting, format: xFormat)
            : NumericAxis(
                lower: xExtent.lower, upper: xExtent.upper, approximateCount: fitting, integersOnly: integralX,
                format: xFormat)

        let xScale = ChartScale(domain: (xAxis.lower, xAxis.upper), range: (left, right), kind: self.xScale)
        let yScale = ChartScale(domain: (yAxis.lower, yAxis.upper), range: (plotBottom, plotTop))
        svg.drawVerticalAxis(
            yAxis, scale: yScale, x: left, gridEnd: right, label: yLabel, labelX: ChartStyle.padding + 8)
        svg.drawHorizontalAxis(
            xAxis, scale: xScale, y: plotBottom, gridEnd: nil, label: xLabel, labelY: height - ChartStyle.padding - 2)

        // Lines first, then all markers on top of every line.
        for (index, line) in series.enumerated() {
            let points = line.points.map { point -> (x: Double, y: Double)? in
                guard drawable(point) else { return nil }
                return (xScale(point.x), yScale(point.y))
            }
            svg.polyline(
                points, stroke: colours[index], width: 2.25, dash: dashed[index] ? "6 4" : nil, className: "series")
        }
        if showsMarkers {
            for (index, line) in series.enumerated() {
                for point in line.points where drawable(point) {
                    let label = "\(line.name): \(xFormat.string(point.x)), \(yFormat.string(point.y))"
                    svg.circle(
                        x: xScale(point.x), y: yScale(point.y), radius: 3.5, fill: colours[index], className: "mark",
                        tooltip: label)
                }
            }
        }
        if finite.isEmpty {
            svg.text(
                "no data", x: (left + right) / 2, y: (plotTop + plotBottom) / 2, size: ChartStyle.labelSize,
                anchor: .middle, className: "empty")
        }
        return svg.document(title: title)
    }

    /// Whether a point has a place on the axes: finite, and x > 0 on a logarithmic axis.
    private func drawable(_ point: ChartPoint) -> Bool {
        point.x.isFinite && point.y.isFinite && (xScale == .linear || point.x > 0)
    }
}
