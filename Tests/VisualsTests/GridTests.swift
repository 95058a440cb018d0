import NeuralNet
import Testing

@testable import Visuals

/// The text drawn alone on a white image just large enough for it.
func rendered(_ text: String, scale: Int = 1) -> RGBImage {
    var image = RGBImage(
        width: max(PixelFont.width(of: text, scale: scale), 1), height: PixelFont.glyphHeight * scale,
        filledWith: .white)
    image.draw(text: text, x: 0, y: 0, scale: scale)
    return image
}

func inkCount(_ image: RGBImage) -> Int {
    stride(from: 0, to: image.components.count, by: 3).count { image.components[$0] != 255 }
}

@Suite("Grids")
struct GridTests {
    let digits = (0..<3).map { index in
        GreyImage(width: 28, height: 28, pixels: (0..<784).map { UInt8(($0 * (index + 3)) % 256) })
    }

    @Test("the grid has the documented size and a cell holds the enlarged image")
    func layout() {
        let grid = ImageGrid(
            images: digits, captions: ["5 99.7%", "3", "8 12.0%"], columns: 2, scale: 3, padding: 4)
        let image = grid.render()
        // Cells are 84 × (84 + 2 + 8); two columns, two rows.
        #expect(image.width == 4 + 2 * (84 + 4))
        #expect(image.height == 4 + 2 * (94 + 4))
        let (left, top) = (4, 4 + 94 + 4)  // row 1, column 0: the third image
        for y in 0..<84 {
            for x in 0..<84 {
                #expect(image[left + x, top + y] == Colour(grey: digits[2][x / 3, y / 3]))
            }
        }
        // Padding stays background; the caption area has ink.
        #expect(image[left - 1, top] == .white && image[left + 84, top] == .white)
        let captionInk = (top + 86..<top + 94).flatMap { y in (left..<left + 84).map { image[$0, y] } }
        #expect(captionInk.contains(.black))
    }

    @Test("row titles add a column; wide captions widen the cells")
    func titlesAndWideCaptions() {
        let rows = [
            ImageGrid.Row(title: "FGSM", cells: [.init(digits[0], caption: "a long caption here")]),
            ImageGrid.Row(cells: [.init(digits[1]), .init(digits[2])]),
        ]
        let image = ImageGrid(rows: rows, scale: 1, padding: 2).render()
        let titleColumn = PixelFont.width(of: "FGSM") + 2
        let cellWidth = PixelFont.width(of: "a long caption here")
        #expect(cellWidth > 28)
        #expect(image.width == 2 + titleColumn + 2 * (cellWidth + 2))
        #expect(image.height == 2 + 2 * (28 + 2 + 8 + 2))
        let imageLeft = 2 + titleColumn + (cellWidth - 28) / 2
        #expect(image[imageLeft + 5, 2 + 7] == Colour(grey: digits[0][5, 7]))
        let title = (2..<(2 + 28)).flatMap { y in (2..<(2 + titleColumn)).map { image[$0, y] } }
        #expect(title.contains(.black))
    }

    @Test("perturbations are drawn white at zero, red positive, blue negative")
    func perturbation() {
        let delta = Tensor(shape: [1, 1, 1, 5], scalars: [-1, -0.05, 0, 0.05, 1])
        let amplified = RGBImage(perturbation: delta, amplification: 10)
        #expect(amplified.components == [0, 0, 255, 128, 128, 255, 255, 255, 255, 255, 128, 128, 255, 0, 0])
        let automatic = RGBImage(perturbation: Tensor(shape: [2, 1], scalars: [0.5, -0.25]))
        #expect(automatic.components == [255, 0, 0, 128, 128, 255])
        let nothing = RGBImage(perturbation: Tensor(shape: [1, 2, 2], scalars: [0, 0, .nan, 0]))
        #expect(nothing == RGBImage(width: 2, height: 2, filledWith: .white))
    }
}

@Suite("Pixel font")
struct FontTests {
    @Test("every character has a distinct glyph with ink, and only descenders use the last row")
    func glyphs() throws {
        let characters = PixelFont.characters.subtracting([" "])
        #expect(characters.count == 10 + 26 + 26 + 22)
        var seen: [[UInt8]: Character] = [:]
        for character in characters {
            let rows = try #require(PixelFont.rows(of: character))
            #expect(rows.count == PixelFont.glyphHeight)
            #expect(rows.contains { $0 != 0 }, "\(character) has no ink")
            #expect(seen[rows] == nil, "\(character) looks like \(seen[rows].map(String.init) ?? "")")
            seen[rows] = character
            #expect(rows[7] == 0 || "gjpqy,_".contains(character), "\(character) has a descender")
        }
    }

    @Test("captions render: different strings give different pixels")
    func captions() {
        let caption = rendered("5 99.7%")
        #expect(caption.width == 7 * 6 - 1)
        #expect(inkCount(caption) > 0)
        #expect(caption != rendered("3 12.0%"))
        #expect(rendered("ε=0.3") != rendered("e=0.3"))
        #expect(rendered("Aa") != rendered("aA"))
        #expect(inkCount(rendered("   ")) == 0)
        // Unknown characters draw as "?"; scaling enlarges every pixel.
        #expect(rendered("é") == rendered("?"))
        let large = rendered("x<y", scale: 3)
        #expect(inkCount(large) == 9 * inkCount(rendered("x<y")))
    }

    @Test("text partly outside the image is clipped")
    func clipping() {
        var image = RGBImage(width: 8, height: 4, filledWith: .white)
        image.draw(text: "Wide text", x: -3, y: -2, scale: 2, colour: Colour(red: 1, green: 2, blue: 3))
        #expect(image.components.contains(1))
    }
}
