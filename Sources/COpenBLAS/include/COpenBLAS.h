// Run-time loading of OpenBLAS, and the CPU facts that decide its kernel.
//
// OpenBLAS picks its kernels when the library is loaded, from OPENBLAS_CORETYPE or else
// from its own table of CPU models. A library linked at build time is loaded before any
// of our code runs, so it cannot be told what to pick; and an old OpenBLAS falls back to
// its SSE3 kernels on CPUs newer than its table (Debian 12's 0.3.21 on current Xeons:
// 6x slower sgemm). So Deceive does not link OpenBLAS: it reads the CPU's features
// (CPUID and what the OS saves, XGETBV), and loads the library with dlopen after setting
// OPENBLAS_CORETYPE for the duration of the load. The policy (which core type for which
// features) is in Swift, in NeuralNet/BLAS.swift.
#ifndef DECEIVE_COPENBLAS_H
#define DECEIVE_COPENBLAS_H

#include <malloc.h>
#include <stddef.h>

/// What CPUID (and XGETBV) say about the processor. All zero on non-x86 machines.
typedef struct {
    char vendor[13];
    char brand[49];
    int family, model, stepping;
    int sse3, ssse3, sse41, sse42, avx, fma, avx2;
    int avx512f, avx512cd, avx512bw, avx512dq, avx512vl, avx512vnni, avx512bf16, amx;
    /// The OS saves YMM state (XCR0 bits 1, 2) / ZMM and opmask state too (bits 5, 6, 7).
    int osAVX, osAVX512;
} deceive_cpu;

/// Fills `cpu` from CPUID; returns 0 when the machine is not x86-64.
int deceive_cpu_read(deceive_cpu *cpu);

/// Loads OpenBLAS with `dlopen` (libopenblas.so.0, then libopenblas.so). If `coretype` is
/// not NULL, OPENBLAS_CORETYPE is set to it while the library loads and restored after.
/// Returns 0 on success; otherwise writes a sentence to `error`. Loading twice is a no-op.
/// Not thread-safe: call it once, under the caller's lock.
int deceive_blas_load(const char *coretype, char *error, size_t errorSize);

/// The kernel family OpenBLAS runs (`openblas_get_corename`), e.g. "SkylakeX".
const char *deceive_blas_corename(void);
/// OpenBLAS's build description (`openblas_get_config`), e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH …".
const char *deceive_blas_config(void);
/// The file the library was loaded from, symbolic links resolved.
const char *deceive_blas_path(void);
void deceive_blas_set_threads(int threads);

/// Row-major single-precision GEMM through the loaded library:
/// C = alpha * op(A) * op(B) + beta * C with op(A) [m, k] and op(B) [k, n].
void deceive_sgemm(
    int transposeA, int transposeB, int m, int n, int k, float alpha, const float *a, int lda,
    const float *b, int ldb, float beta, float *c, int ldc);

#endif
