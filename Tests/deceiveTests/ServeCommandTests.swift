import Foundation
import Testing

@testable import deceive

@Suite struct ServeCommandTests {
    @Test func badOptionsAreUsageErrors() {
        for arguments in [
            ["--port", "70000"], ["--port", "-1"], ["--host", ""], ["--max-steps", "0"], ["--jobs", "0"],
            ["--queue", "-1"], ["--time-limit", "0"], ["--time-limit", "nan"],
        ] {
            #expect(Deceive.run(["serve"] + arguments) == 2, "\(arguments)")
        }
    }

    @Test func aMissingModelIsOneErrorLine() {
        #expect(Deceive.run(["serve", "--model", "/nonexistent/model.safetensors", "--port", "0"]) == 1)
    }
}
