/* isa.h: which instruction sets the numeric kernels are compiled for, and
 * the vector type they share.
 *
 * A portable build (the default) targets the compiler's baseline x86-64,
 * so the binary runs on any x86-64 node. The kernels marked OPS_KERNEL are
 * compiled three times more by GCC's function multiversioning: for
 * x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline; the
 * dynamic loader picks, once per process, the best version the CPU runs
 * (an ifunc resolver). `flatten` inlines every static helper a kernel
 * calls into each version, so the helpers' loops get that instruction set
 * too (a helper left out of line would be compiled for the baseline only).
 * The OpenMP regions written inside a kernel are multiversioned with it;
 * a region inside a helper is outlined before inlining and is not, so the
 * kernels hold their parallel loops themselves (norm.c, winograd.c).
 *
 * NCSN_KERNEL_CLONES is set by CMake when the compiler supports this; in a
 * native build (-DNCSN_NATIVE=ON, -march=native) OPS_KERNEL is empty: the
 * one version is already the build machine's. Different versions may
 * round differently (a*b+c fused or not); the tests hold for each. */
#ifndef NCSN_OPS_ISA_H
#define NCSN_OPS_ISA_H

/* The kernels' vector width in floats: the norms' partial sums and the
 * Winograd channel blocks are LANES wide (one AVX-512 register; two AVX2). */
#define LANES 16

/* LANES floats as one GCC vector value, so a kernel's arithmetic stays
 * vector operations whatever the unrolling does (winograd.c, direct.c);
 * vload/vstore read and write one at any alignment. */
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

INLINE vec vload(const float *p)
{
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

INLINE void vstore(float *p, vec v) { memcpy(p, &v, sizeof v); }

#ifdef NCSN_KERNEL_CLONES
#define OPS_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), flatten))
#else
#define OPS_KERNEL
#endif

#endif
