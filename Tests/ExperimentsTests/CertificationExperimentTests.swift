import Foundation
import NeuralNet
import Testing

@testable import Experiments

@Suite struct CertificationExperimentTests {
    @Test func jsonHasTheKeysAndOneFlagPerImage() throws {
        var generator = SplitMix64(seed: 3)
        let model = try Model(
            architecture: try Architecture(
                parsing: "conv4k3s2p1 relu maxpool2 flatten dense10", inputShape: [1, 8, 8]),
            generator: &generator)
        let images = Tensor(shape: [5, 1, 8, 8]) { x in
            for i in x.indices { x[i] = Float.random(in: 0...1, using: &generator) }
        }
        let labels = model.predictions(images)
        let results = try Certification.run(model, images: images, labels: labels, epsilons: [0, 0.1], pgd: true)
        #expect(results.map(\.epsilon) == [0, 0.1])
        #expect(results[0].cleanAccuracy == 1)
        let object = try JSONSerialization.jsonObject(with: Data(jsonText(results[0]).utf8)) as! [String: Any]
        #expect(results[0].pgdAccuracy == 1)
        for result in results {
            let pgd = try #require(result.pgdAccuracy)
            #expect(result.verifiedAccuracy <= pgd && pgd <= result.cleanAccuracy)
        }
        for key in ["eps", "method", "clean_accuracy", "verified_accuracy", "verified", "pgd_accuracy"] {
            #expect(object[key] != nil, "\(key)")
        }
        #expect((object["verified"] as! [Bool]).count == 5)
        #expect(object["method"] as? String == "ibp")
        #expect(throws: ExperimentError.self) {
            try Certification.run(model, images: images, labels: labels, epsilons: [-1])
        }
    }
}
