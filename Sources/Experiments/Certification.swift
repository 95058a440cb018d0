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
    /// The fraction classified correctly and still correct after PGD (40 steps from a random
    /// start, the attack's defaults): an upper bound on the robust accuracy, where
    /// ``verifiedAccuracy`` is a lower bound. Nil when PGD was not run.
    public let pgdAccuracy: Double?
    /// The time PGD took.
    public let pgdSeconds: Double?

    private enum CodingKeys: String, CodingKey {
        case epsilon = "eps"
        case method
        case cleanAccuracy = "clean_accuracy"
        case verifiedAccuracy = "verified_accuracy"
        case pgdAccuracy = "pgd_accuracy"
        case pgdSeconds = "pgd_seconds"
        case verified, seconds
    }

    /// Checks an ε for `certify`: a number in [0, 1].
    public static func validate(epsilon: Float) throws(ExperimentError) {
        guard epsilon.isFinite, epsilon >= 0, epsilon <= 1 else {
            throw .invalid("ε must be in [0, 1], got \(epsilon)")
        }
    }

    /// Certifies `images` at each of `epsilons`; the clean predictions are computed once.
    /// With `pgd`, each ε also runs PGD on the images, and a verified image that PGD breaks
    /// (an unsound certificate, which would be a defect) fails the run.
    public static func run(
        _ model: Model, images: Tensor, labels: [Int], epsilons: [Float], method: CertificationMethod = .ibp,
        pgd: Bool = false, seed: UInt64 = 1
    ) throws(ExperimentError) -> [Certification] {
        for epsilon in epsilons { try validate(epsilon: epsilon) }
        guard model.classCount == 10 || labels.allSatisfy({ $0 < model.classCount }) else {
            throw .invalid("labels outside the model's \(model.classCount) classes")
        }
        let clean = model.predictions(images, batchSize: 1000)
        let cleanAccuracy =
            Double(zip(clean, labels).filter { $0 == $1 }.count) / Double(max(labels.count, 1))
        let clock = ContinuousClock()
        return try epsilons.map { epsilon throws(ExperimentError) in
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
            let seconds = (clock.now - start).seconds
            var pgdAccuracy: Double?
            var pgdSeconds: Double?
            if pgd {
                let attackStart = clock.now
                let survived = try pgdSurvivors(model, images: images, labels: labels, clean: clean, epsilon: epsilon, seed: seed)
                pgdSeconds = (clock.now - attackStart).seconds
                pgdAccuracy = Double(survived.filter { $0 }.count) / Double(max(labels.count, 1))
                let broken = labels.indices.filter { verified[$0] && !survived[$0] }
                guard broken.isEmpty else {
                    throw .failed(
                        "unsound certificate at ε \(epsilon) (\(method.rawValue)): PGD broke verified test images "
                            + broken.prefix(10).map(String.init).joined(separator: ", "))
                }
            }
            return Certification(
                epsilon: epsilon, method: method, cleanAccuracy: cleanAccuracy,
                verifiedAccuracy: Double(verified.filter { $0 }.count) / Double(max(labels.count, 1)),
                verified: verified, seconds: seconds, pgdAccuracy: pgdAccuracy, pgdSeconds: pgdSeconds)
        }
    }

    /// Per image: classified correctly, and still after PGD at `epsilon` (the clean
    /// prediction at ε = 0).
    static func pgdSurvivors(
        _ model: Model, images: Tensor, labels: [Int], clean: [Int], epsilon: Float, seed: UInt64
    ) throws(ExperimentError) -> [Bool] {
        let correct = labels.indices.map { clean[$0] == labels[$0] }
        guard epsilon > 0 else { return correct }
        do throws(AdversarialError) {
            let attack = try AttackMethod.pgd.make(AttackParameters(epsilon: epsilon))
            let result = try runInBatches(attack, model: model, images: images, labels: labels, goal: .untargeted, seed: seed)
            return labels.indices.map { correct[$0] && result.predictions[$0] == labels[$0] }
        } catch {
            throw .failed("PGD at ε \(epsilon): \(error.description)")
        }
    }
}
