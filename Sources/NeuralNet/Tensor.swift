/// A dense Float32 tensor: a shape and its scalars, contiguous and row-major.
///
/// Image batches are NCHW: `[batch, channels, height, width]`. `Tensor` is a value type
/// (copy-on-write through its `[Float]`), so a model's weights can be shared freely
/// between concurrent attacks.
public struct Tensor: Sendable, Equatable {
    /// The size of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `scalars.count == shape.reduce(1, *)`.
    public var scalars: [Float]

    /// Creates a tensor from a shape and matching scalars.
    ///
    /// - Precondition: the product of `shape` equals `scalars.count`.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(
            Tensor.elementCount(shape) == scalars.count,
            "shape \(shape) needs \(Tensor.elementCount(shape)) scalars, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    /// Creates a tensor of the given shape with every element equal to `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        self.init(shape: shape, scalars: [Float](repeating: value, count: Tensor.elementCount(shape)))
    }

    /// Creates a tensor whose scalars are written by `body`, without zero-filling first.
    ///
    /// `body` must initialise every element of the buffer it is given.
    public init(shape: [Int], unsafeUninitialized body: (UnsafeMutableBufferPointer<Float>) -> Void) {
        let count = Tensor.elementCount(shape)
        let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            body(buffer)
            initialized = count
        }
        self.init(shape: shape, scalars: scalars)
    }

    /// The number of elements.
    public var count: Int { scalars.count }

    /// The size of the first dimension (the batch size for NCHW tensors).
    public var batchSize: Int { shape.first ?? 1 }

    /// The number of elements in one item of the batch (all dimensions but the first).
    public var itemCount: Int { shape.count <= 1 ? 1 : Tensor.elementCount(shape.dropFirst()) }

    /// The same scalars viewed with another shape of equal element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// The items `range` of the batch (the first dimension).
    public func batch(_ range: Range<Int>) -> Tensor {
        let item = itemCount
        var newShape = shape
        newShape[0] = range.count
        return Tensor(shape: newShape, scalars: Array(scalars[(range.lowerBound * item)..<(range.upperBound * item)]))
    }

    /// The items at `indices` of the batch, in that order.
    public func gathering(_ indices: [Int]) -> Tensor {
        let item = itemCount
        var newShape = shape
        newShape[0] = indices.count
        return Tensor(shape: newShape) { out in
            scalars.withUnsafeBufferPointer { src in
                for (row, index) in indices.enumerated() {
                    precondition(index >= 0 && index < batchSize, "batch index \(index) out of range")
                    let from = src.baseAddress! + index * item
                    (out.baseAddress! + row * item).update(from: from, count: item)
                }
            }
        }
    }

    /// Stacks tensors of equal item shape along the first dimension.
    public static func concatenate(_ parts: [Tensor]) -> Tensor {
        precondition(!parts.isEmpty, "nothing to concatenate")
        let itemShape = Array(parts[0].shape.dropFirst())
        var scalars: [Float] = []
        scalars.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        var batch = 0
        for part in parts {
            precondition(Array(part.shape.dropFirst()) == itemShape, "item shapes differ: \(part.shape)")
            scalars += part.scalars
            batch += part.batchSize
        }
        return Tensor(shape: [batch] + itemShape, scalars: scalars)
    }

    /// Whether every element is finite (no NaN or infinity).
    public var isFinite: Bool { scalars.allSatisfy { $0.isFinite } }

    /// The product of a shape's dimensions.
    public static func elementCount<S: Sequence>(_ shape: S) -> Int where S.Element == Int {
        shape.reduce(1, *)
    }
}

extension Tensor {
    /// Element-wise sum; shapes must match.
    public static func + (lhs: Tensor, rhs: Tensor) -> Tensor {
        precondition(lhs.shape == rhs.shape, "shape mismatch \(lhs.shape) vs \(rhs.shape)")
        var out = lhs
        out.add(rhs)
        return out
    }

    /// Element-wise difference; shapes must match.
    public static func - (lhs: Tensor, rhs: Tensor) -> Tensor {
        precondition(lhs.shape == rhs.shape, "shape mismatch \(lhs.shape) vs \(rhs.shape)")
        var out = lhs
        out.add(rhs, scaledBy: -1)
        return out
    }

    /// Adds `scale * other` to this tensor in place (shapes must match).
    public mutating func add(_ other: Tensor, scaledBy scale: Float = 1) {
        precondition(count == other.count, "size mismatch \(shape) vs \(other.shape)")
        scalars.withUnsafeMutableBufferPointer { a in
            other.scalars.withUnsafeBufferPointer { b in
                for i in 0..<a.count { a[i] += scale * b[i] }
            }
        }
    }

    /// Multiplies every element by `scale`.
    public static func * (scale: Float, tensor: Tensor) -> Tensor {
        var out = tensor
        out.scalars.withUnsafeMutableBufferPointer { a in
            for i in 0..<a.count { a[i] *= scale }
        }
        return out
    }

    /// Every element clamped to `range`.
    public func clamped(to range: ClosedRange<Float>) -> Tensor {
        var out = self
        out.scalars.withUnsafeMutableBufferPointer { a in
            for i in 0..<a.count { a[i] = Swift.min(Swift.max(a[i], range.lowerBound), range.upperBound) }
        }
        return out
    }
}
