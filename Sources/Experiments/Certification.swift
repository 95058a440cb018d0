import Adversarial
import Foundation
import NeuralNet

/// How a certificate is computed (`deceive certify --method`).
public enum CertificationMethod: String, Sendable, CaseIterable, Encodable {
    /// Interval bound propagation (``IntervalBoundPropagation``).
    case ibp
    /// Linear relaxation, backward from the margins (``LinearBoundPropagation``), with IBP
    /// for the intermediate layers; never looser than IBP.
    case crown
}

/// Verified robustness at one ε (`deceive certify`): which of the images are proved to keep
/// their (correct) class over the whole L∞ box of radius ε around them.
public struct Certification: Sendable, Encodable {
    public let epsilon: Float
    public let method: CertificationMethod
    /// The fraction of the images classified correctly.
    public let cleanAccuracy: Double
    /// The fraction classified correctly and proved robust.
    public let verifiedAccuracy: Double
    /// One flag per image, in order: true only when it is classified correctly and proved robust.
    public let verified: [Bool]
    /// The time the bounds took (not counting the clean predictions).
    public let seconds: Double

    private enum CodingKeys: String, CodingKey {
        case epsilon = "eps"
        case method
        case cleanAccuracy = "clean_accuracy"
        case verifiedAccuracy = "verified_accuracy"
        case verified, seconds
    }

    /// Checks an ε for `certify`: a number in [0, 1].
    public static func validate(epsilon: Float) throws(ExperimentError) {
        guard epsilon.isFinite, epsilon >= 0, epsilon <= 1 else {
            throw .invalid("ε must be in [0, 1], got \(epsilon)")
        }
    }

    /// Certifies `images` at each of `epsilons`; the clean predictions are computed once.
    public static func run(
        _ model: Model, images: Tensor, labels: [Int], epsilons: [Float], method: CertificationMethod = .ibp
    ) throws(ExperimentError) -> [Certification] {
        for epsilon in epsilons { try validate(epsilon: epsilon) }
        guard model.classCount == 10 || labels.allSatisfy({ $0 < model.classCount }) else {
            throw .invalid("labels outside the model's \(model.classCount) classes")
        }
        let clean = model.predictions(images, batchSize: 1000)
        let cleanAccuracy =
            Double(zip(clean, labels).filter { $0 == $1 }.count) / Double(max(labels.count, 1))
        let clock = ContinuousClock()
        return epsilons.map { epsilon in
            let start = clock.now
            let verified =
                switch method {
                case .ibp:
                    IntervalBoundPropagation.certify(
                        model, images: images, labels: labels, epsilon: epsilon, cleanPredictions: clean)
                case .crown:
                    LinearBoundPropagation.certify(
                        model, images: images, labels: labels, epsilon: epsilon, cleanPredictions: clean)
                }
            return Certification(
                epsilon: epsilon, method: method, cleanAccuracy: cleanAccuracy,
                verifiedAccuracy: Double(verified.filter { $0 }.count) / Double(max(labels.count, 1)),
                verified: verified, seconds: (clock.now - start).seconds)
        }
    }
}
