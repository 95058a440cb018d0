import Foundation

/// A bar chart of categories with one value each, or one value per series (grouped bars),
/// drawn as SVG, vertically (columns) or horizontally (rows).
///
/// The value axis always includes zero, so bar lengths compare honestly. NaN and infinite
/// values draw no bar. Ten "confidence bars" for a fooled network look like this:
///
///     let chart = BarChart(
///         title: "Confidence", categories: (0...9).map(String.init), values: probabilities,
///         orientation: .horizontal, valueRange: 0...1, valueFormat: .percent, valueLabels: .highlighted,
///         highlightedCategories: [target], width: 260, height: 240)
public struct BarChart: SVGChart, Equatable {
    /// The direction the bars grow in.
    public enum Orientation: Sendable, Equatable {
        /// Columns growing up from a horizontal category axis.
        case vertical
        /// Rows growing right from a vertical category axis, categories from the top.
        case horizontal
    }

    /// Which bars are labelled with their value.
    public enum ValueLabels: Sendable, Equatable {
        /// No bar.
        case none
        /// Every bar.
        case all
        /// Only the bars of ``BarChart/highlightedCategories`` (the target's confidence among
        /// ten, say), which keeps small charts uncluttered.
        case highlighted
    }

    /// One named set of values, one for each category.
    public struct Series: Sendable, Equatable {
        /// The name shown in the legend.
        public var name: String
        /// One value for each category; missing values draw no bar.
        public var values: [Double]
        /// The bars' colour; `nil` takes the next colour of ``ChartPalette``.
        public var colour: Colour?

        /// Creates a series.
        public init(_ name: String, values: [Double], colour: Colour? = nil) {
            self.name = name
            self.values = values
            self.colour = colour
        }
    }

    /// The title drawn at the top left (and the SVG's accessible name).
    public var title: String
    /// The category names, in drawing order (left to right, or top to bottom).
    public var categories: [String]
    /// The series; several series draw grouped bars and a legend.
    public var series: [Series]
    /// Which way the bars grow.
    public var orientation: Orientation
    /// The label of the category axis.
    public var categoryLabel: String
    /// The label of the value axis.
    public var valueLabel: String
    /// A range the value axis always covers (for example `0...1` for probabilities); the
    /// axis still grows to include zero and every value.
    public var valueRange: ClosedRange<Double>?
    /// How tick labels and value labels are written.
    public var valueFormat: ChartNumberFormat
    /// Which bars are labelled with their value.
    public var valueLabels: ValueLabels
    /// Indices of categories to stand out: their labels are bold and, with a single series,
    /// their bars are drawn in ``ChartPalette/highlight``.
    public var highlightedCategories: Set<Int>
    /// The width of the SVG's view box.
    public var width: Double
    /// The height of the SVG's view box.
    public var height: Double

    /// Creates a bar chart with any number of series.
    public init(
        title: String, categories: [String], series: [Series], orientation: Orientation = .vertical,
        categoryLabel: String = "", valueLabel: String = "", valueRange: ClosedRange<Double>? = nil,
        valueFormat: ChartNumberFormat = .automatic, valueLabels: ValueLabels = .all,
        highlightedCategories: Set<Int> = [], width: Double = 640, height: Double = 360
    ) {
        self.title = title
        self.categories = categories
        self.series = series
        self.orientation = orientation
        self.categoryLabel = categoryLabel
        self.valueLabel = valueLabel
        self.valueRange = valueRange
        self.valueFormat = valueFormat
        self.valueLabels = valueLabels
        self.highlightedCategories = highlightedCategories
        self.width = width
        self.height = height
    }

    /// Creates a bar chart with one unnamed series: one bar for each category.
    public init(
        title: String, categories: [String], values: [Double], orientation: Orientation = .vertical,
        categoryLabel: String = "", valueLabel: String = "", valueRange: ClosedRange<Double>? = nil,
        valueFormat: ChartNumberFormat = .automatic, valueLabels: ValueLabels = .all,
        highlightedCategories: Set<Int> = [], width: Double = 640, height: Double = 360
    ) {
        self.init(
            title: title, categories: categories, series: [Series(valueLabel, values: values)],
            orientation: orientation, categoryLabel: categoryLabel, valueLabel: valueLabel, valueRange: valueRange,
            valueFormat: valueFormat, valueLabels: valueLabels,
            highlightedCategories: highlightedCategories, width: width, height: height)
    }

    /// The chart as a standalone SVG document.
    public func svg() -> String {
        let (width, height) = (max(self.width, 120), max(self.height, 100))
        var svg = SVGWriter(width: width, height: height)
        let colours = series.indices.map { (series[$0].colour ?? ChartPalette.colour(at: $0)).hexString }
        let header = ChartHeader(
            title: title,
            legend: series.indices.map { LegendEntry(name: series[$0].name, colour: colours[$0], swatch: .box) },
            width: width)
        header.draw(into: &svg)

        var extent = finiteExtent(series.flatMap(\.values)) ?? (0, 1)
        if let valueRange, valueRange.lowerBound.isFinite, valueRange.upperBound.isFinite {
            extent = (min(extent.lower, valueRange.lowerBound), max(extent.upper, valueRange.upperBound))
        }
        extent = (min(extent.lower, 0), max(extent.upper, 0))
        let layout = Layout(chart: self, header: header, extent: extent, width: width, height: height)
        let valueScale = layout.valueScale

        // The value axis with its grid, then the category labels.
        switch orientation {
        case .vertical:
            svg.drawVerticalAxis(
                layout.axis, scale: valueScale, x: layout.plot.left, gridEnd: layout.plot.right, label: valueLabel,
                labelX: ChartStyle.padding + 8)
            svg.line(
                x1: layout.plot.left, y1: layout.plot.bottom, x2: layout.plot.right, y2: layout.plot.bottom,
                stroke: ChartStyle.axisColour, className: "axis")
        case .horizontal:
            svg.drawHorizontalAxis(
                layout.axis, scale: valueScale, y: layout.plot.bottom, gridEnd: layout.plot.top, label: valueLabel,
                labelY: height - ChartStyle.padding - 2)
            svg.line(
                x1: layout.plot.left, y1: layout.plot.top, x2: layout.plot.left, y2: layout.plot.bottom,
                stroke: ChartStyle.axisColour, className: "axis")
        }
        drawCategoryLabels(into: &svg, layout: layout, height: height)

        // The bars, with zero as their base.
        let base = valueScale(0)
        let groupCount = Double(max(series.count, 1))
        for (categoryIndex, category) in categories.enumerated() {
            let bandStart = layout.bandStart(categoryIndex)
            let barThickness = layout.band * 0.72 / groupCount
            let groupStart = bandStart + layout.band * 0.14
            for (seriesIndex, bars) in series.enumerated() {
                guard categoryIndex < bars.values.count, bars.values[categoryIndex].isFinite else { continue }
                let value = bars.values[categoryIndex]
                let end = valueScale(value)
                let offset = groupStart + Double(seriesIndex) * barThickness
                let highlighted = series.count == 1 && highlightedCategories.contains(categoryIndex)
                let fill = highlighted ? ChartPalette.highlight.hexString : colours[seriesIndex]
                let name = series.count > 1 && !bars.name.isEmpty ? "\(category) · \(bars.name)" : category
                let tooltip = "\(name): \(valueFormat.string(value))"
                let label = valueFormat.string(value)
                let labelled = valueLabels == .all || (valueLabels == .highlighted && highlightedCategories.contains(categoryIndex))
                switch orientation {
                case .vertical:
                    svg.rect(
                        x: offset, y: min(base, end), width: barThickness - 1, height: abs(end - base), fill: fill,
                        className: "bar", tooltip: tooltip)
                    if labelled {
                        let y = value >= 0 ? end - 4 : end + ChartStyle.valueSize + 2
                        svg.text(
                            label, x: offset + (barThickness - 1) / 2, y: y, size: layout.valueLabelSize,
                            anchor: .middle, fill: ChartStyle.textColour, className: "value-label")
                    }
                case .horizontal:
                    svg.rect(
                        x: min(base, end), y: offset, width: abs(end - base), height: barThickness - 1, fill: fill,
                        className: "bar", tooltip: tooltip)
                    if labelled {
                        let x = value >= 0 ? end + 4 : end - 4
                        svg.text(
                            label, x: x, y: offset + (barThickness - 1) / 2 + layout.valueLabelSize * 0.35,
                            size: layout.valueLabelSize, anchor: value >= 0 ? .start : .end,
                            fill: ChartStyle.textColour, className: "value-label")
                    }
                }
            }
        }
        if categories.isEmpty {
            svg.text(
                "no data", x: (layout.plot.left + layout.plot.right) / 2, y: (layout.plot.top + layout.plot.bottom) / 2,
                size: ChartStyle.labelSize, anchor: .middle, className: "empty")
        }
        return svg.document(title: title)
    }

    private func drawCategoryLabels(into svg: inout SVGWriter, layout: Layout, height: Double) {
        for (index, category) in categories.enumerated() {
            let middle = layout.bandStart(index) + layout.band / 2
            let bold = highlightedCategories.contains(index)
            let fill = bold ? ChartStyle.textColour : ChartStyle.mutedTextColour
            switch orientation {
            case .vertical:
                if layout.rotatesCategoryLabels {
                    svg.text(
                        category, x: middle + 3, y: layout.plot.bottom + 10, anchor: .end, fill: fill, bold: bold,
                        rotation: -40, className: "category-label")
                } else {
                    svg.text(
                        category, x: middle, y: layout.plot.bottom + 16, anchor: .middle, fill: fill, bold: bold,
                        className: "category-label")
                }
            case .horizontal:
                svg.text(
                    category, x: layout.plot.left - 6, y: middle + 3.5, anchor: .end, fill: fill, bold: bold,
                    className: "category-label")
            }
        }
        guard !categoryLabel.isEmpty else { return }
        switch orientation {
        case .vertical:
            svg.text(
                categoryLabel, x: (layout.plot.left + layout.plot.right) / 2, y: height - ChartStyle.padding - 2,
                size: ChartStyle.labelSize, anchor: .middle, fill: ChartStyle.textColour, className: "axis-label")
        case .horizontal:
            svg.text(
                categoryLabel, x: ChartStyle.padding + 8, y: (layout.plot.top + layout.plot.bottom) / 2,
                size: ChartStyle.labelSize, anchor: .middle, fill: ChartStyle.textColour, rotation: -90,
                className: "axis-label")
        }
    }

    /// Where everything goes: the plot rectangle, the value axis and the category bands.
    private struct Layout {
        var plot: (left: Double, right: Double, top: Double, bottom: Double)
        var axis: NumericAxis
        var valueScale: ChartScale
        var band: Double
        var rotatesCategoryLabels: Bool
        var valueLabelSize: Double
        let orientation: Orientation

        init(chart: BarChart, header: ChartHeader, extent: (lower: Double, upper: Double), width: Double, height: Double) {
            orientation = chart.orientation
            let count = Double(max(chart.categories.count, 1))
            let widestCategory = chart.categories.map { ChartStyle.textWidth($0, size: ChartStyle.tickSize) }.max() ?? 0
            let labelledValues = chart.series.flatMap { series in
                series.values.enumerated().filter { index, value in
                    value.isFinite
                        && (chart.valueLabels == .all
                            || (chart.valueLabels == .highlighted && chart.highlightedCategories.contains(index)))
                }.map(\.element)
            }
            let widestValue = labelledValues
                .map { ChartStyle.textWidth(chart.valueFormat.string($0), size: ChartStyle.valueSize) }.max() ?? 0
            let valueRoom = labelledValues.isEmpty ? 0 : ChartStyle.valueSize + 6
            let bottomLabel = chart.orientation == .vertical ? chart.categoryLabel : chart.valueLabel
            let sideLabel = chart.orientation == .vertical ? chart.valueLabel : chart.categoryLabel
            let top = header.bottom + 8
            let leftEdge = ChartStyle.padding + (sideLabel.isEmpty ? 0 : 20)
            let bottomEdge = height - ChartStyle.padding - (bottomLabel.isEmpty ? 0 : 20)
            switch chart.orientation {
            case .vertical:
                let plotHeight = bottomEdge - 20 - top - valueRoom
                axis = NumericAxis(
                    lower: extent.lower, upper: extent.upper, approximateCount: max(Int(plotHeight / 45), 3),
                    integersOnly: false, format: chart.valueFormat)
                let left = leftEdge + axis.labelWidth + 10
                let right = width - ChartStyle.padding
                band = (right - left) / count
                rotatesCategoryLabels = widestCategory > band - 4
                let labelRoom = rotatesCategoryLabels ? min(widestCategory * 0.65 + 12, height * 0.35) : 20
                let bottom = bottomEdge - labelRoom
                plot = (left, right, top + valueRoom, bottom)
                valueScale = ChartScale(domain: (axis.lower, axis.upper), range: (bottom, top + valueRoom))
                valueLabelSize = min(ChartStyle.valueSize, max(band * 0.72 / Double(max(chart.series.count, 1)) / 2.2, 7))
            case .horizontal:
                let left = leftEdge + widestCategory + 10
                let right = width - ChartStyle.padding - max(widestValue + 6, 12)
                axis = NumericAxis(
                    lower: extent.lower, upper: extent.upper, approximateCount: max(Int((right - left) / 60), 2),
                    integersOnly: false, format: chart.valueFormat)
                let bottom = bottomEdge - 20
                band = (bottom - top) / count
                rotatesCategoryLabels = false
                plot = (left, right, top, bottom)
                valueScale = ChartScale(domain: (axis.lower, axis.upper), range: (left, right))
                valueLabelSize = min(ChartStyle.valueSize, max(band * 0.72 / Double(max(chart.series.count, 1)) * 0.9, 7))
            }
        }

        /// The start of category `index`'s band along the category axis.
        func bandStart(_ index: Int) -> Double {
            switch orientation {
            case .vertical: plot.left + Double(index) * band
            case .horizontal: plot.top + Double(index) * band
            }
        }
    }
}
