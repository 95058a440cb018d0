import Adversarial
import Foundation
import NeuralNet
import Visuals

/// A universal perturbation learned on training images and scored on test images it
/// never saw (`deceive attack --method universal`).
public struct UniversalRun: Sendable {
    /// How the perturbation was learned, and the training images' fooling rate.
    public let learning: UniversalLearning
    /// The perturbation added to the scored images, with their report.
    public let attack: AttackRun
    /// Training images the perturbation was learned on.
    public let trainingImages: Int
    /// Seconds spent learning.
    public let learningSeconds: Double
    /// The norm of the budget.
    public let norm: Norm

    /// The fraction of correctly classified scored images whose predicted class the
    /// perturbation changes (the paper's fooling rate, on images it was not learned on).
    public var foolingRate: Double { attack.report.successRate }

    /// Learns `universal` on `training` only, then adds the perturbation to `images`.
    ///
    /// The two sets meet nowhere but here, in this order: the learning is finished (and
    /// the perturbation fixed) before the first scored image is looked at.
    ///
    /// - Parameters:
    ///   - progress: scored images done.
    ///   - observer: every step of the learning (rows of `training`), which may stop it;
    ///     the perturbation reached is then scored.
    public static func run(
        _ universal: UniversalPerturbation, model: Model, training: (images: Tensor, labels: [Int]),
        images: Tensor, labels: [Int], seed: UInt64 = 1, progress: ((Int) -> Void)? = nil,
        observer: StepObserver? = nil
    ) throws(ExperimentError) -> UniversalRun {
        let clock = ContinuousClock()
        let began = clock.now
        let learning: UniversalLearning
        let attack: UniversalAttack
        do throws(AdversarialError) {
            learning = try universal.learn(
                model: model, images: training.images, labels: training.labels, seed: seed, observer: observer)
            attack = try UniversalAttack(
                perturbation: learning.perturbation, epsilon: universal.epsilon, norm: universal.norm)
        } catch {
            throw .invalid(error.description)
        }
        let seconds = (clock.now - began).seconds
        let scored = try AttackRun.run(
            attack, model: model, images: images, labels: labels, seed: seed, progress: progress)
        return UniversalRun(
            learning: learning, attack: scored, trainingImages: training.labels.count, learningSeconds: seconds,
            norm: universal.norm)
    }

    /// The perturbation drawn large enough to see: red where it brightens, blue where it
    /// darkens, full colour at the largest magnitude; `scale` screen pixels per pixel.
    public func picture(scale: Int = 8) -> RGBImage {
        let shape = learning.perturbation.shape
        let (height, width) = (shape[shape.count - 2], shape[shape.count - 1])
        // One channel: the first (MNIST has one).
        let channel = learning.perturbation.reshaped([shape[1], height, width]).batch(0..<1)
        var canvas = RGBImage(width: width * scale, height: height * scale, filledWith: .white)
        canvas.draw(RGBImage(perturbation: channel), x: 0, y: 0, scale: scale)
        return canvas
    }

    /// Writes what ``AttackRun/write(to:model:command:extra:)`` writes, with the tensor
    /// `perturbation` [1, C, H, W] in `adversarial.safetensors`, and `perturbation.png`
    /// (``picture(scale:)``).
    public func write(to directory: URL, model: Model, command: String) throws(ExperimentError) {
        try attack.write(
            to: directory, model: model, command: command, extra: ["perturbation": learning.perturbation])
        try Experiments.write(
            try picture().png(), to: directory.appendingPathComponent("perturbation.png"))
    }

    /// The numbers of a run, as `--json` prints them.
    public var summary: UniversalSummary {
        UniversalSummary(
            norm: norm.rawValue,
            epsilon: attack.epsilon ?? 0, trainingImages: trainingImages, learningSteps: learning.steps,
            learningQueries: learning.queries, learningSeconds: learningSeconds,
            trainingFoolingRate: learning.trainingFoolingRate, foolingRate: foolingRate, report: attack.report)
    }
}

/// What a universal perturbation run reports.
public struct UniversalSummary: Sendable, Encodable {
    public let norm: String
    public let epsilon: Float
    public let trainingImages: Int
    public let learningSteps: Int
    public let learningQueries: Int
    public let learningSeconds: Double
    /// On the training images it was learned on.
    public let trainingFoolingRate: Double
    /// On the scored (test) images.
    public let foolingRate: Double
    /// The scored images' report.
    public let report: AttackReport
}
