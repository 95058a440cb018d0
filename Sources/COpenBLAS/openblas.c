#define _GNU_SOURCE
#include "COpenBLAS.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

int deceive_cpu_read(deceive_cpu *cpu) {
    memset(cpu, 0, sizeof *cpu);
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return 0;
    unsigned int maxLeaf = eax;
    memcpy(cpu->vendor, &ebx, 4);
    memcpy(cpu->vendor + 4, &edx, 4);
    memcpy(cpu->vendor + 8, &ecx, 4);

    __get_cpuid(1, &eax, &ebx, &ecx, &edx);
    int baseFamily = (eax >> 8) & 0xf, baseModel = (eax >> 4) & 0xf;
    cpu->family = baseFamily == 0xf ? baseFamily + ((eax >> 20) & 0xff) : baseFamily;
    cpu->model = (baseFamily == 0x6 || baseFamily == 0xf) ? baseModel + (((eax >> 16) & 0xf) << 4) : baseModel;
    cpu->stepping = eax & 0xf;
    cpu->sse3 = (ecx >> 0) & 1;
    cpu->ssse3 = (ecx >> 9) & 1;
    cpu->fma = (ecx >> 12) & 1;
    cpu->sse41 = (ecx >> 19) & 1;
    cpu->sse42 = (ecx >> 20) & 1;
    int osxsave = (ecx >> 27) & 1;
    cpu->avx = (ecx >> 28) & 1;
    if (osxsave) {
        unsigned long long xcr0 = xgetbv0();
        cpu->osAVX = (xcr0 & 0x6) == 0x6;
        cpu->osAVX512 = cpu->osAVX && (xcr0 & 0xe0) == 0xe0;
    }
    if (maxLeaf >= 7) {
        __cpuid_count(7, 0, eax, ebx, ecx, edx);
        cpu->avx2 = (ebx >> 5) & 1;
        cpu->avx512f = (ebx >> 16) & 1;
        cpu->avx512dq = (ebx >> 17) & 1;
        cpu->avx512cd = (ebx >> 28) & 1;
        cpu->avx512bw = (ebx >> 30) & 1;
        cpu->avx512vl = (ebx >> 31) & 1;
        cpu->avx512vnni = (ecx >> 11) & 1;
        cpu->amx = (edx >> 24) & 1;
        unsigned int subleaves = eax;
        if (subleaves >= 1) {
            __cpuid_count(7, 1, eax, ebx, ecx, edx);
            cpu->avx512bf16 = (eax >> 5) & 1;
        }
    }
    __get_cpuid(0x80000000, &eax, &ebx, &ecx, &edx);
    if (eax >= 0x80000004) {
        unsigned int words[12];
        for (unsigned int leaf = 0; leaf < 3; leaf++)
            __get_cpuid(0x80000002 + leaf, &words[4 * leaf], &words[4 * leaf + 1], &words[4 * leaf + 2], &words[4 * leaf + 3]);
        memcpy(cpu->brand, words, 48);
        cpu->brand[48] = 0;
    }
    return 1;
}
#else
int deceive_cpu_read(deceive_cpu *cpu) {
    memset(cpu, 0, sizeof *cpu);
    return 0;
}
#endif

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                         float *, int);
typedef char *(*string_fn)(void);
typedef void (*threads_fn)(int);

static void *library;
static sgemm_fn sgemm_ptr;
static string_fn corename_ptr, config_ptr;
static threads_fn threads_ptr;
static char path[PATH_MAX];

int deceive_blas_load(const char *coretype, char *error, size_t errorSize) {
    if (library) return 0;
    char *saved = NULL;
    if (coretype) {
        const char *old = getenv("OPENBLAS_CORETYPE");
        if (old) saved = strdup(old);
        setenv("OPENBLAS_CORETYPE", coretype, 1);
    }
    const char *names[] = {"libopenblas.so.0", "libopenblas.so"};
    void *handle = NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !handle; i++) handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (coretype) {
        if (saved) setenv("OPENBLAS_CORETYPE", saved, 1);
        else unsetenv("OPENBLAS_CORETYPE");
        free(saved);
    }
    if (!handle) {
        snprintf(error, errorSize, "OpenBLAS could not be loaded (%s); install libopenblas0 (make deps)", dlerror());
        return 1;
    }
    sgemm_ptr = (sgemm_fn)dlsym(handle, "cblas_sgemm");
    corename_ptr = (string_fn)dlsym(handle, "openblas_get_corename");
    config_ptr = (string_fn)dlsym(handle, "openblas_get_config");
    threads_ptr = (threads_fn)dlsym(handle, "openblas_set_num_threads");
    if (!sgemm_ptr || !threads_ptr) {
        snprintf(error, errorSize, "the loaded libopenblas has no cblas_sgemm or openblas_set_num_threads");
        dlclose(handle);
        return 1;
    }
    Dl_info info;
    if (dladdr((void *)sgemm_ptr, &info) && info.dli_fname) {
        if (!realpath(info.dli_fname, path)) snprintf(path, sizeof path, "%s", info.dli_fname);
    }
    library = handle;
    return 0;
}

const char *deceive_blas_corename(void) { return corename_ptr ? corename_ptr() : "unknown"; }
const char *deceive_blas_config(void) { return config_ptr ? config_ptr() : "unknown"; }
const char *deceive_blas_path(void) { return path; }
void deceive_blas_set_threads(int threads) {
    if (threads_ptr) threads_ptr(threads);
}

void deceive_sgemm(int transposeA, int transposeB, int m, int n, int k, float alpha, const float *a, int lda,
                   const float *b, int ldb, float beta, float *c, int ldc) {
    // CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 (the CBLAS standard's values).
    sgemm_ptr(101, transposeA ? 112 : 111, transposeB ? 112 : 111, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
