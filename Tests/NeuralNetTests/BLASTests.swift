import Foundation
import Testing

@testable import NeuralNet

@Suite("BLAS: the kernel is chosen from the CPU's features")
struct BLASTests {
    @Test("each ISA asks for the newest OpenBLAS kernel family of that ISA, and nothing below AVX")
    func coreTypes() {
        #expect(BLASBackend.coreType(for: .avx512) == "SkylakeX")
        #expect(BLASBackend.coreType(for: .avx2) == "Haswell")
        #expect(BLASBackend.coreType(for: .avx) == "Sandybridge")
        #expect(BLASBackend.coreType(for: .sse3) == nil)
        for isa in [VectorISA.avx, .avx2, .avx512] {
            #expect(BLASBackend.isa(ofKernel: BLASBackend.coreType(for: isa) ?? "") == isa)
        }
    }

    @Test("kernel names map to the ISA they use, whatever their case")
    func kernelISAs() {
        #expect(BLASBackend.isa(ofKernel: "Prescott") == .sse3)
        #expect(BLASBackend.isa(ofKernel: "NEHALEM") == .sse3)
        #expect(BLASBackend.isa(ofKernel: "Zen") == .avx2)
        #expect(BLASBackend.isa(ofKernel: "Cooperlake") == .avx512)
        #expect(BLASBackend.isa(ofKernel: "sandybridge") == .avx)
    }

    @Test("the CPU's ISA is consistent with its feature flags")
    func cpuFeatures() {
        let cpu = CPU.current
        #if arch(x86_64)
        #expect(!cpu.vendor.isEmpty)
        #expect(cpu.family > 0)
        #expect(cpu.isa >= .sse3)
        #endif
        if cpu.isa == .avx512 { #expect(cpu.features.contains("avx512f") && cpu.features.contains("avx512vl")) }
        if cpu.isa >= .avx2 { #expect(cpu.features.contains("avx2") && cpu.features.contains("fma")) }
        if !cpu.features.contains("avx") { #expect(cpu.isa < .avx) }
    }

    @Test("the loaded kernel matches the CPU, or is exactly what OPENBLAS_CORETYPE asked for")
    func loadedKernel() throws {
        let backend = try BLASBackend.load()
        let requested = ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? ""
        if requested.isEmpty {
            if let coreType = BLASBackend.coreType(for: CPU.current.isa) {
                #expect(backend.choice == .cpuFeatures(coreType))
                #expect(backend.kernel.lowercased() == coreType.lowercased())
                #expect(backend.kernelISA == CPU.current.isa)
                #expect(backend.warning == nil)
            }
        } else {
            #expect(backend.choice == .user(requested))
            #expect(backend.kernel.lowercased() == requested.lowercased())
            #expect((backend.warning != nil) == (backend.kernelISA < CPU.current.isa))
        }
        // Our own setting lasts only while the library loads.
        #expect((ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "") == requested)
    }

    @Test("sgemm through the loaded library: a hand-worked 2×3 · 3×2 product and a transposed one")
    func handWorkedProduct() {
        let a: [Float] = [1, 2, 3, 4, 5, 6]  // [2, 3]
        let b: [Float] = [7, 8, 9, 10, 11, 12]  // [3, 2]
        var c = [Float](repeating: 1, count: 4)
        sgemm(m: 2, n: 2, k: 3, a: a, lda: 3, b: b, ldb: 2, beta: 1, c: &c, ldc: 2)
        #expect(c == [59, 65, 140, 155])
        // Aᵀ·Aᵀ' with A [3, 2] read transposed: (2×3)·(3×2) again.
        var d = [Float](repeating: 0, count: 4)
        let at: [Float] = [1, 4, 2, 5, 3, 6]  // Aᵀ stored as [3, 2]
        let bt: [Float] = [7, 9, 11, 8, 10, 12]  // Bᵀ stored as [2, 3]
        sgemm(transposeA: true, transposeB: true, m: 2, n: 2, k: 3, a: at, lda: 2, b: bt, ldb: 3, beta: 0, c: &d, ldc: 2)
        #expect(d == [58, 64, 139, 154])
    }
}
