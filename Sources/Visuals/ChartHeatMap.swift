import Foundation

/// A matrix drawn as a grid of coloured cells, with row and column labels, the value written
/// in each cell and a colour bar: a confusion matrix, for example.
///
/// Colours run from near-white (the smallest value) to dark blue (the largest) along the
/// ColorBrewer "Blues" scale, which reads in greyscale and for colour-blind readers alike.
/// Text on dark cells is white. Zeros are written in a lighter grey so that the non-zero
/// cells stand out; NaN cells are grey and show a dash.
///
///     let chart = HeatMap(
///         title: "Confusion matrix", rowLabels: digits, columnLabels: digits, values: counts,
///         rowAxisLabel: "true digit", columnAxisLabel: "predicted digit", scaling: .logarithmic)
public struct HeatMap: SVGChart, Equatable {
    /// How values map to colours.
    public enum Scaling: Sendable, Equatable {
        /// Colour proportional to the value, between the smallest and the largest.
        case linear
        /// Colour proportional to `log(1 + value - smallest)`, so that a few errors stand out
        /// beside a diagonal of thousands. Meant for counts.
        case logarithmic
    }

    /// The title drawn at the top left (and the SVG's accessible name).
    public var title: String
    /// The label of each row, from the top.
    public var rowLabels: [String]
    /// The label of each column, from the left.
    public var columnLabels: [String]
    /// The values, row by row; short rows are padded with NaN.
    public var values: [[Double]]
    /// The label of the row axis (for a confusion matrix, "true digit").
    public var rowAxisLabel: String
    /// The label of the column axis (for a confusion matrix, "predicted digit").
    public var columnAxisLabel: String
    /// How the numbers in the cells and on the colour bar are written.
    public var valueFormat: ChartNumberFormat
    /// Whether each cell shows its value.
    public var showsValues: Bool
    /// How values map to colours.
    public var scaling: Scaling
    /// The width of the SVG's view box.
    public var width: Double
    /// The height of the SVG's view box.
    public var height: Double

    /// Creates a heat map.
    public init(
        title: String, rowLabels: [String], columnLabels: [String], values: [[Double]], rowAxisLabel: String = "",
        columnAxisLabel: String = "", valueFormat: ChartNumberFormat = .automatic, showsValues: Bool = true,
        scaling: Scaling = .linear, width: Double = 560, height: Double = 520
    ) {
        self.title = title
        self.rowLabels = rowLabels
        self.columnLabels = columnLabels
        self.values = values
        self.rowAxisLabel = rowAxisLabel
        self.columnAxisLabel = columnAxisLabel
        self.valueFormat = valueFormat
        self.showsValues = showsValues
        self.scaling = scaling
        self.width = width
        self.height = height
    }

    /// Creates a heat map of integer counts (a confusion matrix).
    public init(
        title: String, rowLabels: [String], columnLabels: [String], counts: [[Int]], rowAxisLabel: String = "",
        columnAxisLabel: String = "", scaling: Scaling = .linear, width: Double = 560, height: Double = 520
    ) {
        self.init(
            title: title, rowLabels: rowLabels, columnLabels: columnLabels,
            values: counts.map { $0.map(Double.init) }, rowAxisLabel: rowAxisLabel, columnAxisLabel: columnAxisLabel,
            scaling: scaling, width: width, height: height)
    }

    /// The sequential colour scale: ColorBrewer's nine-class "Blues".
    static let scale: [Colour] = [
        Colour(red: 0xF7, green: 0xFB, blue: 0xFF), Colour(red: 0xDE, green: 0xEB, blue: 0xF7),
        Colour(red: 0xC6, green: 0xDB, blue: 0xEF), Colour(red: 0x9E, green: 0xCA, blue: 0xE1),
        Colour(red: 0x6B, green: 0xAE, blue: 0xD6), Colour(red: 0x42, green: 0x92, blue: 0xC6),
        Colour(red: 0x21, green: 0x71, blue: 0xB5), Colour(red: 0x08, green: 0x51, blue: 0x9C),
        Colour(red: 0x08, green: 0x30, blue: 0x6B),
    ]

    /// The colour at `fraction` (0 to 1) of the scale, interpolated between its stops.
    static func colour(atFraction fraction: Double) -> Colour {
        let position = min(max(fraction.isFinite ? fraction : 0, 0), 1) * Double(scale.count - 1)
        let index = min(Int(position), scale.count - 2)
        let t = position - Double(index)
        func mix(_ a: UInt8, _ b: UInt8) -> UInt8 { UInt8((Double(a) + (Double(b) - Double(a)) * t).rounded()) }
        let (from, to) = (scale[index], scale[index + 1])
        return Colour(red: mix(from.red, to.red), green: mix(from.green, to.green), blue: mix(from.blue, to.blue))
    }

    /// The chart as a standalone SVG document.
    public func svg() -> String {
        let (width, height) = (max(self.width, 160), max(self.height, 140))
        var svg = SVGWriter(width: width, height: height)
        let header = ChartHeader(title: title, legend: [], width: width)
        header.draw(into: &svg)

        let rowCount = max(values.count, rowLabels.count)
        let columnCount = max(values.map(\.count).max() ?? 0, columnLabels.count)
        let extent = finiteExtent(values.joined()) ?? (0, 1)
        let fraction = { (value: Double) -> Double in
            let span = extent.upper - extent.lower
            guard span > 0 else { return value > 0 ? 1 : 0 }
            switch scaling {
            case .linear: return (value - extent.lower) / span
            case .logarithmic: return log1p(max(value - extent.lower, 0)) / log1p(span)
            }
        }

        // Layout: row labels on the left, column labels below, colour bar on the right.
        let widestRow = rowLabels.map { ChartStyle.textWidth($0, size: ChartStyle.tickSize) }.max() ?? 0
        let widestColumn = columnLabels.map { ChartStyle.textWidth($0, size: ChartStyle.tickSize) }.max() ?? 0
        let barLabelWidth = ChartStyle.textWidth(valueFormat.string(extent.upper), size: ChartStyle.tickSize)
        let left = ChartStyle.padding + (rowAxisLabel.isEmpty ? 0 : 20) + widestRow + 8
        let top = header.bottom + 4
        let colourBarRoom = 14 + 12 + 6 + barLabelWidth + 4
        let availableWidth = width - left - ChartStyle.padding - colourBarRoom
        var cell = availableWidth / Double(max(columnCount, 1))
        let rotateColumns = widestColumn > cell - 4
        let columnLabelRoom = rotateColumns ? widestColumn * 0.75 + 10 : 18
        let availableHeight = height - top - ChartStyle.padding - columnLabelRoom - (columnAxisLabel.isEmpty ? 0 : 20)
        cell = max(min(cell, availableHeight / Double(max(rowCount, 1))), 4)
        let gridWidth = cell * Double(columnCount)
        let gridHeight = cell * Double(rowCount)
        let fontSize = min(ChartStyle.tickSize, cell * 0.38)

        // Cells.
        for row in 0..<rowCount {
            for column in 0..<columnCount {
                let value = row < values.count && column < values[row].count ? values[row][column] : .nan
                let x = left + Double(column) * cell
                let y = top + Double(row) * cell
                let rowName = row < rowLabels.count ? rowLabels[row] : ""
                let columnName = column < columnLabels.count ? columnLabels[column] : ""
                let text = valueFormat.string(value)
                let fill = value.isFinite ? HeatMap.colour(atFraction: fraction(value)) : Colour(grey: 0xD9)
                svg.rect(
                    x: x, y: y, width: cell, height: cell, fill: fill.hexString, className: "cell", stroke: "#ffffff",
                    tooltip: "\(rowName) → \(columnName): \(text)")
                if showsValues, ChartStyle.textWidth(text, size: fontSize) < cell - 2 {
                    let textColour: String
                    if fill.relativeLuminance < 0.35 {
                        textColour = "#ffffff"
                    } else {
                        textColour = value == 0 ? "#a0a0a0" : ChartStyle.textColour
                    }
                    svg.text(
                        text, x: x + cell / 2, y: y + cell / 2 + fontSize * 0.35, size: fontSize, anchor: .middle,
                        fill: textColour, className: "cell-value")
                }
            }
        }
        svg.rect(x: left, y: top, width: gridWidth, height: gridHeight, fill: "none", className: "frame", stroke: "#d0d0d0")

        // Row and column labels.
        for (row, label) in rowLabels.enumerated() where row < rowCount {
            svg.text(
                label, x: left - 6, y: top + (Double(row) + 0.5) * cell + 3.5, anchor: .end, className: "row-label")
        }
        for (column, label) in columnLabels.enumerated() where column < columnCount {
            let x = left + (Double(column) + 0.5) * cell
            if rotateColumns {
                svg.text(
                    label, x: x + 3, y: top + gridHeight + 10, anchor: .end, rotation: -40, className: "column-label")
            } else {
                svg.text(label, x: x, y: top + gridHeight + 15, anchor: .middle, className: "column-label")
            }
        }
        if !rowAxisLabel.isEmpty {
            svg.text(
                rowAxisLabel, x: ChartStyle.padding + 8, y: top + gridHeight / 2, size: ChartStyle.labelSize,
                anchor: .middle, fill: ChartStyle.textColour, rotation: -90, className: "axis-label")
        }
        if !columnAxisLabel.isEmpty {
            svg.text(
                columnAxisLabel, x: left + gridWidth / 2, y: top + gridHeight + columnLabelRoom + 14,
                size: ChartStyle.labelSize, anchor: .middle, fill: ChartStyle.textColour, className: "axis-label")
        }

        drawColourBar(
            into: &svg, x: left + gridWidth + 14, top: top, height: gridHeight, extent: extent, fraction: fraction)
        return svg.document(title: title)
    }

    /// A vertical colour bar, dark (largest) at the top, made of thin rectangles (no
    /// gradient: gradient ids would clash when several charts share one HTML page).
    private func drawColourBar(
        into svg: inout SVGWriter, x: Double, top: Double, height: Double, extent: (lower: Double, upper: Double),
        fraction: (Double) -> Double
    ) {
        guard height > 0 else { return }
        let steps = 32
        let stepHeight = height / Double(steps)
        for step in 0..<steps {
            let colour = HeatMap.colour(atFraction: 1 - (Double(step) + 0.5) / Double(steps))
            svg.rect(
                x: x, y: top + Double(step) * stepHeight, width: 12, height: stepHeight + 0.5, fill: colour.hexString,
                className: "colour-scale")
        }
        svg.rect(x: x, y: top, width: 12, height: height, fill: "none", className: "frame", stroke: "#d0d0d0")
        for tick in colourBarTicks(extent) {
            let y = top + height * (1 - fraction(tick))
            svg.line(x1: x + 12, y1: y, x2: x + 16, y2: y, stroke: ChartStyle.axisColour, className: "tick")
            svg.text(valueFormat.string(tick), x: x + 19, y: y + 3.5, className: "tick-label")
        }
    }

    /// Round values for the colour bar: evenly spaced for a linear scale, the smallest value
    /// and powers of ten above it for a logarithmic one.
    private func colourBarTicks(_ extent: (lower: Double, upper: Double)) -> [Double] {
        guard extent.upper > extent.lower else { return [extent.lower] }
        switch scaling {
        case .linear:
            return ChartTicks.nice(from: extent.lower, to: extent.upper, approximateCount: 5)
                .filter { $0 >= extent.lower - 1e-9 && $0 <= extent.upper + 1e-9 }
        case .logarithmic:
            var ticks = [extent.lower]
            var power = 1.0
            while extent.lower + power <= extent.upper {
                ticks.append(extent.lower + power)
                power *= 10
            }
            return ticks
        }
    }
}
