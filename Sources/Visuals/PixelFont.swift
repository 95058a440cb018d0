/// A tiny bitmap font for captions and titles in report images: 5 × 8 pixel glyphs (capitals
/// and digits 7 pixels tall, one row below the baseline for descenders) for the digits,
/// upper and lower case ASCII letters, space and `. , % : - + = / ( ) < > ε × ∞ ! ? ' _ # [ ]`.
///
/// Text is drawn with ``RGBImage/draw(text:x:y:scale:colour:)`` at an integer scale, each
/// font pixel a `scale × scale` square. A character the font does not have is drawn as `?`.
public enum PixelFont {
    /// The width of a glyph in font pixels.
    public static let glyphWidth = 5
    /// The height of a glyph in font pixels, descenders included.
    public static let glyphHeight = 8
    /// The horizontal distance from one character to the next in font pixels (a glyph and a
    /// one-pixel gap).
    public static let advance = glyphWidth + 1

    /// Every character the font can draw.
    public static var characters: Set<Character> { Set(glyphs.keys).union([" "]) }

    /// The width in image pixels of `text` drawn at `scale`: `advance` per character, without
    /// the gap after the last one.
    public static func width(of text: String, scale: Int = 1) -> Int {
        text.isEmpty ? 0 : (text.count * advance - 1) * scale
    }

    /// The rows of a character's glyph, top first, bit 4 the leftmost pixel; `nil` for space.
    static func rows(of character: Character) -> [UInt8]? {
        if character == " " { return nil }
        return glyphs[character] ?? glyphs["?"]
    }

    /// The glyphs, ten to a block: a line naming the characters (one every six columns), then
    /// the glyphs' eight rows side by side, `#` for ink.
    private static let table = """
        0     1     2     3     4     5     6     7     8     9
        .###. ..#.. .###. ##### ...#. ##### ..##. ##### .###. .###.
        #...# .##.. #...# ...#. ..##. #.... .#... ....# #...# #...#
        #..## ..#.. ....# ..#.. .#.#. ####. #.... ...#. #...# #...#
        #.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#.. .###. .####
        ##..# ..#.. ..#.. ....# ##### ....# #...# .#... #...# ....#
        #...# ..#.. .#... #...# ...#. #...# #...# .#... #...# ...#.
        .###. .###. ##### .###. ...#. .###. .###. .#... .###. .##..
        ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

        A     B     C     D     E     F     G     H     I     J
        .###. ####. .###. ###.. ##### ##### .###. #...# .###. ..###
        #...# #...# #...# #..#. #.... #.... #...# #...# ..#.. ...#.
        #...# #...# #.... #...# #.... #.... #.... #...# ..#.. ...#.
        ##### ####. #.... #...# ####. ####. #.### ##### ..#.. ...#.
        #...# #...# #.... #...# #.... #.... #...# #...# ..#.. ...#.
        #...# #...# #...# #..#. #.... #.... #...# #...# ..#.. #..#.
        #...# ####. .###. ###.. ##### #.... .#### #...# .###. .##..
        ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

        K     L     M     N     O     P     Q     R     S     T
        #...# #.... #...# #...# .###. ####. .###. ####. .#### #####
        #..#. #.... ##.## #...# #...# #...# #...# #...# #.... ..#..
        #.#.. #.... #.#.# ##..# #...# #...# #...# #...# #.... ..#..
        ##... #.... #.#.# #.#.# #...# ####. #...# ####. .###. ..#..
        #.#.. #.... #...# #..## #...# #.... #.#.# #.#.. ....# ..#..
        #..#. #.... #...# #...# #...# #.... #..#. #..#. ....# ..#..
        #...# ##### #...# #...# .###. #.... .##.# #...# ####. ..#..
        ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

        U     V     W     X     Y     Z     a     b     c     d
        #...# #...# #...# #...# #...# ##### ..... #.... ..... ....#
        #...# #...# #...# #...# #...# ....# ..... #.... ..... ....#
        #...# #...# #...# .#.#. .#.#. ...#. .###. #.##. .###. .##.#
        #...# #...# #.#.# ..#.. ..#.. ..#.. ....# ##..# #.... #..##
        #...# #...# #.#.# .#.#. ..#.. .#... .#### #...# #.... #...#
        #...# .#.#. #.#.# #...# ..#.. #.... #...# #...# #...# #...#
        .###. ..#.. .#.#. #...# ..#.. ##### .#### ####. .###. .####
        ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

        e     f     g     h     i     j     k     l     m     n
        ..... ..##. ..... #.... ..#.. ...#. #.... .##.. ..... .....
        ..... .#..# ..... #.... ..... ..... #.... ..#.. ..... .....
        .###. .#... .#### #.##. .##.. ..##. #..#. ..#.. ##.#. #.##.
        #...# ###.. #...# ##..# ..#.. ...#. #.#.. ..#.. #.#.# ##..#
        ##### .#... #...# #...# ..#.. ...#. ##... ..#.. #.#.# #...#
        #.... .#... .#### #...# ..#.. ...#. #.#.. ..#.. #...# #...#
        .###. .#... ....# #...# .###. #..#. #..#. .###. #...# #...#
        ..... ..... .###. ..... ..... .##.. ..... ..... ..... .....

        o     p     q     r     s     t     u     v     w     x
        ..... ..... ..... ..... ..... .#... ..... ..... ..... .....
        ..... ..... ..... ..... ..... .#... ..... ..... ..... .....
        .###. ####. .#### #.##. .#### ###.. #...# #...# #...# #...#
        #...# #...# #...# ##..# #.... .#... #...# #...# #...# .#.#.
        #...# #...# #...# #.... .###. .#... #...# #...# #.#.# ..#..
        #...# ####. .#### #.... ....# .#..# #..## .#.#. #.#.# .#.#.
        .###. #.... ....# #.... ####. ..##. .##.# ..#.. .#.#. #...#
        ..... #.... ....# ..... ..... ..... ..... ..... ..... .....

        y     z     .     ,     %     :     -     +     =     /
        ..... ..... ..... ..... ##... ..... ..... ..... ..... .....
        ..... ..... ..... ..... ##..# .##.. ..... ..#.. ..... ....#
        #...# ##### ..... ..... ...#. .##.. ..... ..#.. ##### ...#.
        #...# ...#. ..... ..... ..#.. ..... ##### ##### ..... ..#..
        #...# ..#.. ..... ..... .#... .##.. ..... ..#.. ##### .#...
        .#### .#... .##.. .##.. #..## .##.. ..... ..#.. ..... #....
        ....# ##### .##.. ..#.. ...## ..... ..... ..... ..... .....
        .###. ..... ..... .#... ..... ..... ..... ..... ..... .....

        (     )     <     >     ε     ×     ∞     !     ?     '
        ...#. .#... ...#. .#... ..... ..... ..... ..#.. .###. ..#..
        ..#.. ..#.. ..#.. ..#.. ..... #...# ..... ..#.. #...# ..#..
        .#... ...#. .#... ...#. .###. .#.#. .#.#. ..#.. ....# .#...
        .#... ...#. #.... ....# #.... ..#.. #.#.# ..#.. ...#. .....
        .#... ...#. .#... ...#. .##.. .#.#. #.#.# ..#.. ..#.. .....
        ..#.. ..#.. ..#.. ..#.. #.... #...# .#.#. ..... ..... .....
        ...#. .#... ...#. .#... .###. ..... ..... ..#.. ..#.. .....
        ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

        _     #     [     ]
        ..... .#.#. .###. .###.
        ..... .#.#. .#... ...#.
        ..... ##### .#... ...#.
        ..... .#.#. .#... ...#.
        ..... ##### .#... ...#.
        ..... .#.#. .#... ...#.
        ..... .#.#. .###. .###.
        ##### ..... ..... .....
        """

    private static let glyphs: [Character: [UInt8]] = {
        var glyphs: [Character: [UInt8]] = [:]
        let lines = table.split(separator: "\n").map(Array.init)
        precondition(lines.count % (glyphHeight + 1) == 0, "the font table has a block of the wrong height")
        for blockStart in stride(from: 0, to: lines.count, by: glyphHeight + 1) {
            let names = lines[blockStart]
            for (index, position) in stride(from: 0, to: names.count, by: advance).enumerated() {
                let rows = (1...glyphHeight).map { row in
                    lines[blockStart + row][position..<(position + glyphWidth)]
                        .reduce(UInt8(0)) { bits, pixel in bits << 1 | (pixel == "#" ? 1 : 0) }
                }
                glyphs[names[index * advance]] = rows
            }
        }
        return glyphs
    }()
}

extension RGBImage {
    /// Draws one line of `text` with its top-left corner at (`x`, `y`), each font pixel a
    /// `scale × scale` square of `colour`; only the ink is drawn, the background is left as
    /// it is, and parts outside the image are ignored.
    ///
    /// The text occupies ``PixelFont/width(of:scale:)`` by `PixelFont.glyphHeight * scale`
    /// pixels. Characters the font does not have are drawn as `?`.
    ///
    /// - Precondition: `scale` is positive.
    public mutating func draw(text: String, x: Int, y: Int, scale: Int = 1, colour: Colour = .black) {
        precondition(scale > 0, "scale must be positive, got \(scale)")
        for (index, character) in text.enumerated() {
            guard let rows = PixelFont.rows(of: character) else { continue }
            let left = x + index * PixelFont.advance * scale
            for (row, bits) in rows.enumerated() {
                for column in 0..<PixelFont.glyphWidth
                where bits & (1 << (PixelFont.glyphWidth - 1 - column)) != 0 {
                    fill(
                        x: left + column * scale, y: y + row * scale, width: scale, height: scale,
                        colour: colour)
                }
            }
        }
    }
}
