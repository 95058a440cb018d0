import ArgumentParser
import Experiments
import Foundation
import NeuralNet

/// `deceive info`: what the engine runs on.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "The CPU and its vector ISA, the BLAS backend and the kernel it runs, the thread count, and a quick sgemm measurement.")

    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// What `--json` prints; `cpu`, `isa`, `blas`, `kernel` and `threads` are the keys
    /// scripts rely on.
    struct Info: Encodable {
        let cpu: String
        let vendor: String
        let family: Int
        let model: Int
        let isa: String
        let features: [String]
        let blas: String
        let blasConfiguration: String
        let blasPath: String
        let kernel: String
        let kernelISA: String
        let kernelChoice: String
        let threads: Int
        let sgemm: SGEMM
        let warning: String?

        enum CodingKeys: String, CodingKey {
            case cpu, vendor, family, model, isa, features, blas, kernel, threads, sgemm, warning
            case blasConfiguration = "blas_configuration", blasPath = "blas_path", kernelISA = "kernel_isa"
            case kernelChoice = "kernel_choice"
        }

        /// Like the synthesised encoder, but `warning` is `null` rather than missing.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(cpu, forKey: .cpu)
            try container.encode(vendor, forKey: .vendor)
            try container.encode(family, forKey: .family)
            try container.encode(model, forKey: .model)
            try container.encode(isa, forKey: .isa)
            try container.encode(features, forKey: .features)
            try container.encode(blas, forKey: .blas)
            try container.encode(blasConfiguration, forKey: .blasConfiguration)
            try container.encode(blasPath, forKey: .blasPath)
            try container.encode(kernel, forKey: .kernel)
            try container.encode(kernelISA, forKey: .kernelISA)
            try container.encode(kernelChoice, forKey: .kernelChoice)
            try container.encode(threads, forKey: .threads)
            try container.encode(sgemm, forKey: .sgemm)
            try container.encode(warning, forKey: .warning)
        }
    }

    /// One sgemm measurement: square matrices of `size`, on `threads` threads.
    struct SGEMM: Encodable {
        let size: Int
        let threads: Int
        let gflops: Double
    }

    func run() throws {
        let backend = try BLASBackend.load()
        let cpu = CPU.current
        let threads = Compute.threadCount
        let size = 1024
        let gflops = measureSGEMM(size: size, seconds: 0.5, threads: threads)
        let choice: String
        switch backend.choice {
        case .user(let value): choice = "OPENBLAS_CORETYPE=\(value) (set by the user)"
        case .cpuFeatures(let value): choice = "OPENBLAS_CORETYPE=\(value) (chosen from the CPU's features)"
        case .library: choice = "the library's own choice"
        }
        let info = Info(
            cpu: cpu.description, vendor: cpu.vendor, family: cpu.family, model: cpu.model, isa: cpu.isa.description,
            features: cpu.features, blas: backend.library, blasConfiguration: backend.configuration,
            blasPath: backend.path, kernel: backend.kernel, kernelISA: backend.kernelISA.description,
            kernelChoice: choice, threads: threads, sgemm: SGEMM(size: size, threads: threads, gflops: gflops),
            warning: backend.warning)
        if json {
            print(jsonText(info))
            return
        }
        print("cpu      \(info.cpu)")
        print("isa      \(info.isa) (\(info.features.joined(separator: " ")))")
        print("blas     \(info.blas) from \(info.blasPath)")
        print("kernel   \(info.kernel) (\(info.kernelISA)), \(choice)")
        print("threads  \(threads)")
        print("sgemm    " + String(format: "%.1f GFLOP/s", gflops) + " (\(size)³, \(threads) threads)")
        if let warning = info.warning {
            fflush(nil)
            printError("deceive: WARNING: \(warning)")
        }
    }
}
