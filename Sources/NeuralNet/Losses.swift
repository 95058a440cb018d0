import Foundation

/// Softmax of each row of `logits` [N, classes], computed stably (max subtracted).
public func softmax(_ logits: Tensor) -> Tensor {
    precondition(logits.shape.count == 2, "logits must be [N, classes]")
    let classes = logits.shape[1]
    return Tensor(shape: logits.shape) { out in
        logits.scalars.withUnsafeBufferPointer { z in
            for n in 0..<logits.shape[0] {
                let row = z.baseAddress! + n * classes
                let dst = out.baseAddress! + n * classes
                var maximum = -Float.infinity
                for c in 0..<classes { maximum = max(maximum, row[c]) }
                var sum: Float = 0
                for c in 0..<classes {
                    dst[c] = expf(row[c] - maximum)
                    sum += dst[c]
                }
                for c in 0..<classes { dst[c] /= sum }
            }
        }
    }
}

/// Per-example softmax cross-entropy, `−log softmax(logits)[label]`, and its gradient
/// with respect to the logits, `softmax − onehot(label)`, scaled by `gradientScale`
/// (pass `1/N` for the gradient of the mean).
public func crossEntropy(
    logits: Tensor, labels: some Collection<Int>, gradientScale: Float = 1
) -> (losses: [Float], logitGradient: Tensor) {
    precondition(logits.shape.count == 2 && logits.shape[0] == labels.count, "logits [N, classes] and N labels")
    let classes = logits.shape[1]
    var losses = [Float](repeating: 0, count: labels.count)
    let probabilities = softmax(logits)
    var gradient = probabilities
    gradient.scalars.withUnsafeMutableBufferPointer { g in
        logits.scalars.withUnsafeBufferPointer { z in
            for (n, label) in labels.enumerated() {
                precondition(label >= 0 && label < classes, "label \(label) outside 0..<\(classes)")
                let row = z.baseAddress! + n * classes
                var maximum = -Float.infinity
                for c in 0..<classes { maximum = max(maximum, row[c]) }
                var sum: Float = 0
                for c in 0..<classes { sum += expf(row[c] - maximum) }
                losses[n] = logf(sum) + maximum - row[label]
                g[n * classes + label] -= 1
                for c in 0..<classes { g[n * classes + c] *= gradientScale }
            }
        }
    }
    return (losses, gradient)
}

/// The index of the largest value in each row of a [N, classes] tensor.
public func argmax(rows tensor: Tensor) -> [Int] {
    precondition(tensor.shape.count == 2, "expected [N, classes]")
    let classes = tensor.shape[1]
    return (0..<tensor.shape[0]).map { n in
        var best = 0
        for c in 1..<classes where tensor.scalars[n * classes + c] > tensor.scalars[n * classes + best] { best = c }
        return best
    }
}
