/// SplitMix64 (Steele, Lea & Flood 2014): a small, fast, seedable generator.
///
/// Every random choice in Deceive (initialisation, shuffling, augmentation, dropout,
/// random starts) takes one of these explicitly; nothing reads a global generator, so a
/// run with the same seed repeats exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    /// The generator's whole state; saving it and restoring it resumes the stream.
    public var state: UInt64

    /// Creates a generator from a seed.
    public init(seed: UInt64) {
        state = seed
    }

    /// A generator for one independent stream, derived from a seed and stream keys
    /// (for example the epoch and the sample index), so that the numbers a sample gets
    /// do not depend on how a batch was split between threads.
    public init(seed: UInt64, stream keys: UInt64...) {
        var mixed = SplitMix64.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
        for key in keys {
            mixed = SplitMix64.mix(mixed ^ SplitMix64.mix(key &+ 0x6A09_E667_F3BC_C909))
        }
        state = mixed
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// A uniform Float in [0, 1) with 24 random bits.
    public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * (1.0 / Float(1 << 24))
    }

    /// A standard normal sample (Box–Muller).
    public mutating func nextGaussian() -> Float { nextGaussianPair().0 }

    /// Two independent standard normal samples from one Box–Muller draw (the first is
    /// what ``nextGaussian()`` returns), for code that needs very many of them.
    public mutating func nextGaussianPair() -> (Float, Float) {
        let u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        let radius = (-2 * log(max(u1, 1e-300))).squareRoot()
        return (Float(radius * cos(2 * Double.pi * u2)), Float(radius * sin(2 * Double.pi * u2)))
    }

    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
