import Foundation
import Testing

@testable import deceive

@Suite struct CertifyCommandTests {
    static let model = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("models/mnist-cnn.safetensors").path

    @Test func badBudgetsAndMethodsAreUsageErrors() {
        for eps in ["-0.1", "nan", "1.5", "0.1,2", "x", ""] {
            #expect(Deceive.run(["certify", "--model", Self.model, "--eps", eps]) == 2, "--eps \(eps)")
        }
        #expect(Deceive.run(["certify", "--model", Self.model, "--method", "deeppoly"]) == 2)
        #expect(Deceive.run(["certify", "--model", Self.model, "--count", "0"]) == 2)
    }

    @Test func certifiesAFewDigits() {
        #expect(
            Deceive.run(["certify", "--model", Self.model, "--eps", "0,0.01", "--count", "20", "--json"]) == 0
        )
        #expect(Deceive.run(["certify", "--model", Self.model, "--eps", "0.01", "--count", "20", "--no-pgd"]) == 0)
    }
}
