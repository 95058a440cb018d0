import NeuralNet

@testable import Adversarial

/// The first 100 test images and labels: what every attack test runs on.
let attackSet: (images: Tensor, labels: [Int]) = (
    testImages.images.batch(0..<100), Array(testImages.labels.prefix(100))
)

/// Which of `attackSet` the small model classifies correctly.
let cleanCorrect: [Bool] = zip(smallModel.predictions(attackSet.images), attackSet.labels).map { $0 == $1 }

/// Parameters that keep each attack quick on 100 images while leaving it strong enough
/// for the checks: fewer steps and queries than the defaults.
func quickParameters(_ method: AttackMethod, epsilon: Float? = nil) -> AttackParameters {
    switch method {
    case .fgsm: return AttackParameters(epsilon: epsilon)
    case .bim, .mifgsm: return AttackParameters(epsilon: epsilon, steps: 10)
    case .pgd, .pgdL2: return AttackParameters(epsilon: epsilon, steps: 20)
    case .apgdCE, .apgdDLR: return AttackParameters(epsilon: epsilon, steps: 20)
    // CW needs its 100 iterations to move MNIST's saturated background pixels at all.
    case .cw: return AttackParameters(steps: 100)
    case .deepfool, .jsma: return AttackParameters()
    case .square: return AttackParameters(epsilon: epsilon, steps: 500)
    case .hopskipjump, .hopskipjumpLinf, .boundary: return AttackParameters(maxQueries: 500)
    }
}

/// Attacks for targeted goals, which need more room than untargeted ones: more steps, an
/// L2 budget of 3, and JSMA's γ = 0.145 of Papernot et al.
func targetedAttack(_ method: AttackMethod) throws -> any Attack {
    switch method {
    case .pgd, .apgdCE, .apgdDLR: return try method.make(AttackParameters(steps: 40))
    case .pgdL2: return try method.make(AttackParameters(epsilon: 3, steps: 40))
    case .bim, .mifgsm: return try method.make(AttackParameters(steps: 20))
    case .square: return try method.make(AttackParameters(steps: 1000))
    // A target-class start makes every decision-based run succeed; a small budget suffices.
    case .hopskipjump, .hopskipjumpLinf, .boundary: return try method.make(AttackParameters(maxQueries: 200))
    case .jsma: return try SaliencyMapAttack(gamma: 0.145)
    case .fgsm, .cw, .deepfool: return try method.make(quickParameters(method))
    }
}

/// Untargeted runs on `attackSet`, computed once and shared by the tests that inspect them.
let untargetedRuns: [AttackMethod: AttackResult] = {
    var runs: [AttackMethod: AttackResult] = [:]
    for method in AttackMethod.allCases {
        runs[method] = try! method.make(quickParameters(method)).run(
            model: smallModel, images: attackSet.images, labels: attackSet.labels, goal: .untargeted, seed: 3)
    }
    return runs
}()

/// The mean of `values` at `indices` (0 when empty).
func attackMean(_ values: [Float], at indices: [Int]) -> Float {
    indices.isEmpty ? 0 : indices.map { values[$0] }.reduce(0, +) / Float(indices.count)
}
