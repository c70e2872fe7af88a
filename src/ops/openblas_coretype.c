/* openblas_coretype.c: make OpenBLAS use kernels that fit this processor.
 *
 * OpenBLAS (built for several processors) picks its kernels once, when the
 * library is loaded, from the CPU model, or from OPENBLAS_CORETYPE. Version
 * 0.3.21 does not know recent Xeons (seen: family 6 model 207) and falls
 * back to its SSE3 "Prescott" kernels, about 5x slower than the AVX-512
 * ones on the same core. When that happened and the user did not choose
 * (OPENBLAS_CORETYPE unset), the program runs itself again, before any
 * other work, with the kernels its instruction set supports. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/ops.h"

char *openblas_get_corename(void) __attribute__((weak)); /* NULL with another BLAS: nothing to do */

static int is_fallback(const char *core)
{
    const char *old[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Coppermine"};
    for (size_t i = 0; i < sizeof old / sizeof old[0]; i++)
        if (strcmp(core, old[i]) == 0) return 1;
    return 0;
}

static const char *best_core(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
    if (__builtin_cpu_supports("avx512f")) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
    return NULL;
}

void ops_choose_blas_kernels(char **argv)
{
    if (!openblas_get_corename) return;
    const char *core = openblas_get_corename();
    const char *want = best_core();
    if (!core || !want || !is_fallback(core)) return;
    if (getenv("OPENBLAS_CORETYPE")) {
        if (!getenv("NCSN_BLAS_REEXEC"))
            fprintf(stderr, "ncsn: warning: OPENBLAS_CORETYPE gives OpenBLAS's %s kernels on a CPU that runs %s "
                    "ones (several times faster)\n", core, want);
        return;
    }
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("NCSN_BLAS_REEXEC", core, 1); /* what OpenBLAS had chosen, for the message after the exec */
    execv("/proc/self/exe", argv);
    fprintf(stderr, "ncsn: warning: OpenBLAS chose its %s kernels on a CPU that runs %s ones, and running again "
            "with OPENBLAS_CORETYPE=%s failed; set it by hand for much faster convolutions\n", core, want, want);
    unsetenv("OPENBLAS_CORETYPE");
}

const char *ops_blas_kernels_note(void)
{
    static char note[160];
    const char *was = getenv("NCSN_BLAS_REEXEC");
    if (!was || !openblas_get_corename) return NULL;
    snprintf(note, sizeof note, "OpenBLAS kernels: %s (it had picked %s, which does not fit this CPU; set "
             "OPENBLAS_CORETYPE to choose)", openblas_get_corename(), was);
    return note;
}
