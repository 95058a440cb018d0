/// A source of labelled training batches, asked for batch `index` of `epoch`.
///
/// The training loop knows nothing of files or datasets; `Datasets` provides sources.
/// A source must return the same batch for the same `(epoch, index)` every time, so that
/// a training run can be resumed from any batch position and repeat exactly.
public protocol BatchSource: Sendable {
    /// The number of batches in one epoch.
    var batchesPerEpoch: Int { get }
    /// The number of samples in one epoch.
    var sampleCount: Int { get }
    /// Batch `index` (0..<batchesPerEpoch) of `epoch` (0-based): NCHW images in [0,1]
    /// and their class labels.
    func batch(epoch: Int, index: Int) -> (input: Tensor, labels: [Int])
}
