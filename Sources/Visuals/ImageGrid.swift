/// A report figure: small images (MNIST digits, perturbation maps) laid out in rows, each
/// enlarged by an integer factor with crisp pixels, with an optional caption under each
/// image (for example "5 99.7%") and an optional title before each row.
///
/// ```swift
/// let grid = ImageGrid(images: digits, captions: labels, columns: 10)
/// try grid.render().writePNG(to: url)
/// ```
///
/// Layout, in output pixels: every cell has the same size, `cellWidth` = the larger of the
/// widest image times `scale` and the widest caption, `cellHeight` = the tallest image times
/// `scale`, plus `2 * textScale + PixelFont.glyphHeight * textScale` when any cell has a
/// caption. Cells are separated from each other and from the border by `padding`. When any
/// row has a title, a column as wide as the widest title plus `padding` comes first. Images
/// are centred in their cell's image area, captions centred below it, titles left-aligned
/// and vertically centred on the row's images.
public struct ImageGrid: Sendable {
    /// One image of the grid and the caption under it.
    public struct Cell: Sendable {
        /// The image, drawn enlarged by the grid's `scale`.
        public var image: RGBImage
        /// The line of text under the image; empty for none.
        public var caption: String
        /// The caption's colour, or nil for the grid's `textColour`.
        public var captionColour: Colour?

        /// Creates a cell with a colour image (for example a perturbation map).
        public init(_ image: RGBImage, caption: String = "", captionColour: Colour? = nil) {
            self.image = image
            self.caption = caption
            self.captionColour = captionColour
        }

        /// Creates a cell with a grey image, drawn in greys.
        public init(_ image: GreyImage, caption: String = "", captionColour: Colour? = nil) {
            self.init(RGBImage(image), caption: caption, captionColour: captionColour)
        }
    }

    /// One row of the grid.
    public struct Row: Sendable {
        /// The text drawn to the left of the row; empty for none.
        public var title: String
        /// The row's cells, left to right; rows may have different numbers of cells.
        public var cells: [Cell]

        /// Creates a row.
        public init(title: String = "", cells: [Cell]) {
            self.title = title
            self.cells = cells
        }
    }

    /// The rows, top to bottom.
    public var rows: [Row]
    /// The factor by which every image is enlarged (nearest neighbour); positive.
    public var scale: Int
    /// The factor by which the 5 × 8 font is enlarged for captions and titles; positive.
    public var textScale: Int
    /// The space between cells and around the grid, in output pixels; not negative.
    public var padding: Int
    /// The colour behind the cells.
    public var background: Colour
    /// The colour of captions and titles.
    public var textColour: Colour

    /// Creates a grid from its rows.
    public init(
        rows: [Row], scale: Int = 4, textScale: Int = 1, padding: Int = 4, background: Colour = .white,
        textColour: Colour = .black
    ) {
        self.rows = rows
        self.scale = scale
        self.textScale = textScale
        self.padding = padding
        self.background = background
        self.textColour = textColour
    }

    /// Creates an untitled grid of grey images, `columns` to a row, the i-th image captioned
    /// with the i-th caption (images beyond the end of `captions` have none).
    ///
    /// - Precondition: `columns` is positive.
    public init(
        images: [GreyImage], captions: [String] = [], columns: Int, scale: Int = 4, textScale: Int = 1,
        padding: Int = 4
    ) {
        precondition(columns > 0, "a grid needs at least one column, got \(columns)")
        let cells = images.enumerated().map { index, image in
            Cell(image, caption: index < captions.count ? captions[index] : "")
        }
        let rows = stride(from: 0, to: cells.count, by: columns).map { start in
            Row(cells: Array(cells[start..<min(start + columns, cells.count)]))
        }
        self.init(rows: rows, scale: scale, textScale: textScale, padding: padding)
    }

    /// Draws the grid.
    ///
    /// - Precondition: `scale` and `textScale` are positive and `padding` is not negative.
    public func render() -> RGBImage {
        precondition(scale > 0 && textScale > 0, "scale and textScale must be positive")
        precondition(padding >= 0, "padding must not be negative")
        let cells = rows.flatMap(\.cells)
        let imageWidth = (cells.map(\.image.width).max() ?? 0) * scale
        let imageHeight = (cells.map(\.image.height).max() ?? 0) * scale
        let captionWidth = cells.map { PixelFont.width(of: $0.caption, scale: textScale) }.max() ?? 0
        let hasCaptions = cells.contains { !$0.caption.isEmpty }
        let captionGap = 2 * textScale
        let cellWidth = max(imageWidth, captionWidth)
        let cellHeight = imageHeight + (hasCaptions ? captionGap + PixelFont.glyphHeight * textScale : 0)
        let titleWidth = rows.map { PixelFont.width(of: $0.title, scale: textScale) }.max() ?? 0
        let titleColumn = titleWidth > 0 ? titleWidth + padding : 0
        let columns = rows.map(\.cells.count).max() ?? 0

        var canvas = RGBImage(
            width: padding + titleColumn + columns * (cellWidth + padding),
            height: padding + rows.count * (cellHeight + padding),
            filledWith: background)
        for (rowIndex, row) in rows.enumerated() {
            let top = padding + rowIndex * (cellHeight + padding)
            if !row.title.isEmpty {
                let titleTop = top + (imageHeight - PixelFont.glyphHeight * textScale) / 2
                canvas.draw(text: row.title, x: padding, y: titleTop, scale: textScale, colour: textColour)
            }
            for (columnIndex, cell) in row.cells.enumerated() {
                let left = padding + titleColumn + columnIndex * (cellWidth + padding)
                canvas.draw(
                    cell.image, x: left + (cellWidth - cell.image.width * scale) / 2,
                    y: top + (imageHeight - cell.image.height * scale) / 2, scale: scale)
                let captionLeft = left + (cellWidth - PixelFont.width(of: cell.caption, scale: textScale)) / 2
                canvas.draw(
                    text: cell.caption, x: captionLeft, y: top + imageHeight + captionGap, scale: textScale,
                    colour: cell.captionColour ?? textColour)
            }
        }
        return canvas
    }
}
