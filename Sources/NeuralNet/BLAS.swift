import Foundation
import Synchronization

#if canImport(Accelerate)
import Accelerate
#else
import COpenBLAS
#endif

/// The vector instruction sets that decide which GEMM kernel a CPU can run, in order.
public enum VectorISA: Int, Sendable, Comparable, CustomStringConvertible {
    case generic, sse3, avx, avx2, avx512

    public static func < (lhs: VectorISA, rhs: VectorISA) -> Bool { lhs.rawValue < rhs.rawValue }

    /// `avx512`, `avx2`, …: the name `deceive info` prints.
    public var description: String {
        switch self {
        case .generic: "generic"
        case .sse3: "sse3"
        case .avx: "avx"
        case .avx2: "avx2"
        case .avx512: "avx512"
        }
    }

    /// Float32 lanes of one vector register.
    public var lanes: Int {
        switch self {
        case .generic: 1
        case .sse3: 4
        case .avx, .avx2: 8
        case .avx512: 16
        }
    }
}

/// The processor, as CPUID and the operating system describe it.
public struct CPU: Sendable, CustomStringConvertible {
    /// `GenuineIntel`, `AuthenticAMD`, or empty off x86-64.
    public let vendor: String
    /// The brand string, e.g. `Intel(R) Xeon(R) Platinum 8581C CPU @ 2.30GHz`.
    public let brand: String
    public let family: Int
    public let model: Int
    /// The feature flags that matter for kernels, in the kernel's terms (`avx2`, `fma`,
    /// `avx512f`, `avx512bf16`, …), only those the OS also saves the registers of.
    public let features: [String]
    /// The widest vector ISA both the processor and the OS support.
    public let isa: VectorISA

    /// The machine this process runs on.
    public static let current = CPU()

    private init() {
        #if canImport(Accelerate)
        vendor = ""
        brand = ""
        family = 0
        model = 0
        features = []
        isa = .generic
        #else
        var raw = deceive_cpu()
        guard deceive_cpu_read(&raw) != 0 else {
            vendor = ""
            brand = ""
            family = 0
            model = 0
            features = []
            isa = .generic
            return
        }
        vendor = withUnsafeBytes(of: raw.vendor) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        brand = withUnsafeBytes(of: raw.brand) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            .trimmingCharacters(in: .whitespaces)
        family = Int(raw.family)
        model = Int(raw.model)
        let avx = raw.avx != 0 && raw.osAVX != 0
        let avx512 = raw.osAVX512 != 0
        let flags: [(String, Bool)] = [
            ("sse3", raw.sse3 != 0), ("ssse3", raw.ssse3 != 0), ("sse4.1", raw.sse41 != 0),
            ("sse4.2", raw.sse42 != 0), ("avx", avx), ("fma", avx && raw.fma != 0), ("avx2", avx && raw.avx2 != 0),
            ("avx512f", avx512 && raw.avx512f != 0), ("avx512cd", avx512 && raw.avx512cd != 0),
            ("avx512bw", avx512 && raw.avx512bw != 0), ("avx512dq", avx512 && raw.avx512dq != 0),
            ("avx512vl", avx512 && raw.avx512vl != 0), ("avx512vnni", avx512 && raw.avx512vnni != 0),
            ("avx512bf16", avx512 && raw.avx512bf16 != 0), ("amx", raw.amx != 0),
        ]
        features = flags.filter(\.1).map(\.0)
        let has = Set(features)
        if has.isSuperset(of: ["avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"]) {
            isa = .avx512
        } else if has.isSuperset(of: ["avx2", "fma"]) {
            isa = .avx2
        } else if has.contains("avx") {
            isa = .avx
        } else if has.contains("sse3") {
            isa = .sse3
        } else {
            isa = .generic
        }
        #endif
    }

    /// `AMD EPYC (family 25, model 17)`.
    public var description: String {
        let name = brand.isEmpty ? (vendor.isEmpty ? "unknown CPU" : vendor) : brand
        return family == 0 ? name : "\(name) (family \(family), model \(model))"
    }
}

/// The GEMM backend: which library, which kernel, and why that kernel.
///
/// On Linux this is OpenBLAS, loaded at run time (see `COpenBLAS.h` for why it is not
/// linked). Its kernel is chosen from the CPU's features by ``coreType(for:)``, in this
/// one place, unless the user set `OPENBLAS_CORETYPE`, which is respected. On Apple
/// platforms it is Accelerate.
public struct BLASBackend: Sendable {
    /// How the kernel was chosen.
    public enum Choice: Sendable, Equatable {
        /// `OPENBLAS_CORETYPE` was set by the user to this value.
        case user(String)
        /// Deceive set `OPENBLAS_CORETYPE` to this value from the CPU's features.
        case cpuFeatures(String)
        /// The library chose by itself (no core type fits the CPU's features, or Accelerate).
        case library
    }

    /// `OpenBLAS 0.3.21` or `Accelerate`.
    public let library: String
    /// The library's own build description.
    public let configuration: String
    /// The file it was loaded from.
    public let path: String
    /// The kernel family it runs, e.g. `SkylakeX`, `Haswell`, `Prescott`.
    public let kernel: String
    /// The vector ISA that kernel family uses.
    public let kernelISA: VectorISA
    public let choice: Choice

    /// The OpenBLAS core type Deceive asks for on a CPU with these capabilities: the
    /// newest kernel family whose instructions the CPU and OS support, so that the
    /// choice never depends on OpenBLAS knowing the CPU model. `nil` leaves it to OpenBLAS.
    public static func coreType(for isa: VectorISA) -> String? {
        switch isa {
        case .avx512: "SkylakeX"
        case .avx2: "Haswell"
        case .avx: "Sandybridge"
        case .sse3, .generic: nil
        }
    }

    /// The vector ISA of an OpenBLAS kernel family (`openblas_get_corename`).
    public static func isa(ofKernel kernel: String) -> VectorISA {
        switch kernel.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": .avx512
        case "haswell", "zen": .avx2
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator": .avx
        case "accelerate", "unknown": .generic
        default: .sse3
        }
    }

    /// The loaded backend; loads it on first use.
    public static func load() throws(BLASError) -> BLASBackend {
        try loaded.get()
    }

    private static let loaded: Result<BLASBackend, BLASError> = {
        #if canImport(Accelerate)
        return .success(
            BLASBackend(
                library: "Accelerate", configuration: "Accelerate", path: "", kernel: "Accelerate", kernelISA: .generic,
                choice: .library))
        #else
        let environment = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? ""
        let choice: Choice
        if !environment.isEmpty {
            choice = .user(environment)
        } else if let coreType = coreType(for: CPU.current.isa) {
            choice = .cpuFeatures(coreType)
        } else {
            choice = .library
        }
        var message = [CChar](repeating: 0, count: 512)
        let status: Int32
        if case .cpuFeatures(let coreType) = choice {
            status = deceive_blas_load(coreType, &message, message.count)
        } else {
            status = deceive_blas_load(nil, &message, message.count)
        }
        guard status == 0 else {
            let text = message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
            return .failure(BLASError(description: String(decoding: text, as: UTF8.self)))
        }
        // Parallelism comes from sharding the batch; BLAS itself runs on the calling thread.
        deceive_blas_set_threads(1)
        let configuration = String(cString: deceive_blas_config()).trimmingCharacters(in: .whitespaces)
        let kernel = String(cString: deceive_blas_corename()).trimmingCharacters(in: .whitespaces)
        let words = configuration.split(separator: " ")
        let library = words.count >= 2 ? words[0...1].joined(separator: " ") : "OpenBLAS"
        return .success(
            BLASBackend(
                library: library, configuration: configuration, path: String(cString: deceive_blas_path()),
                kernel: kernel, kernelISA: isa(ofKernel: kernel), choice: choice))
        #endif
    }()

    /// Loads the backend, or stops with the reason when the library cannot be loaded (the
    /// CLI calls ``load()`` first and prints that reason as an error line instead). Cheap
    /// after the first call: every GEMM goes through it.
    static let ensured: Void = {
        if case .failure(let error) = loaded {
            fatalError("deceive: \(error.description)")
        }
    }()

    /// A warning a user should not miss, when the kernel in use is below what the CPU runs.
    public var warning: String? {
        let cpu = CPU.current
        guard kernelISA < cpu.isa, library != "Accelerate" else { return nil }
        let reason: String
        switch choice {
        case .user(let value): reason = "because OPENBLAS_CORETYPE=\(value) is set"
        case .cpuFeatures(let value): reason = "although \(value) was asked for"
        case .library: reason = "because the library chose it"
        }
        return "the GEMM kernel \(kernel) (\(kernelISA)) is below this CPU's \(cpu.isa), \(reason): "
            + "matrix products run several times slower than this machine can do"
    }

    /// One line for headers: `OpenBLAS 0.3.21, kernel SkylakeX (avx512, from the CPU's features)`.
    public var summary: String {
        let why: String
        switch choice {
        case .user(let value): why = "OPENBLAS_CORETYPE=\(value)"
        case .cpuFeatures: why = "from the CPU's features"
        case .library: why = "the library's choice"
        }
        return "\(library), kernel \(kernel) (\(kernelISA), \(why))"
    }

    /// Sets the BLAS library's own thread count (1 everywhere but roofline measurements).
    static func setThreads(_ threads: Int) {
        #if !canImport(Accelerate)
        _ = ensured
        deceive_blas_set_threads(Int32(threads))
        #endif
    }
}

/// The BLAS library could not be loaded.
public struct BLASError: Error, Sendable, CustomStringConvertible {
    public let description: String
}

/// Single-precision GEMM, row-major: `C = alpha * op(A) * op(B) + beta * C`, with
/// `op(A)` of shape [m, k] and `op(B)` of shape [k, n].
@inline(__always)
func sgemm(
    transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    #if canImport(Accelerate)
    cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    #else
    _ = BLASBackend.ensured
    deceive_sgemm(
        transposeA ? 1 : 0, transposeB ? 1 : 0, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
        beta, c, Int32(ldc))
    #endif
}

/// Measures the loaded BLAS's sgemm on square matrices of size `size` with `threads`
/// threads, in GFLOP/s, running for about `seconds`.
public func measureSGEMM(size: Int = 2048, seconds: Double = 1.0, threads: Int) -> Double {
    BLASBackend.setThreads(threads)
    defer { BLASBackend.setThreads(1) }
    var generator = SplitMix64(seed: 1)
    let a = (0..<(size * size)).map { _ in generator.nextUnitFloat() }
    let b = (0..<(size * size)).map { _ in generator.nextUnitFloat() }
    var c = [Float](repeating: 0, count: size * size)
    var repetitions = 0
    let clock = ContinuousClock()
    var elapsed = Duration.zero
    a.withUnsafeBufferPointer { a in
        b.withUnsafeBufferPointer { b in
            c.withUnsafeMutableBufferPointer { c in
                func run() {
                    sgemm(
                        m: size, n: size, k: size, a: a.baseAddress!, lda: size, b: b.baseAddress!, ldb: size,
                        beta: 0, c: c.baseAddress!, ldc: size)
                }
                run()
                let start = clock.now
                repeat {
                    run()
                    repetitions += 1
                    elapsed = clock.now - start
                } while elapsed < .seconds(seconds)
            }
        }
    }
    let secondsTaken = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    return 2 * Double(size * size * size) * Double(repetitions) / secondsTaken / 1e9
}
