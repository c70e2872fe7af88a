/* openblas_coretype.c: make OpenBLAS use kernels that fit this processor.
 *
 * OpenBLAS (built for several processors) picks its kernels once, when the
 * library is loaded, from the CPU model, or from OPENBLAS_CORETYPE. Version
 * 0.3.21 does not know recent Xeons (seen: family 6 model 207) and falls
 * back to its SSE3 "Prescott" kernels, about 5x slower than the AVX-512
 * ones on the same core. When that happened and the user did not choose
 * (OPENBLAS_CORETYPE unset), the program runs itself again, before any
 * other work, with the kernels its instruction set supports.
 *
 * With OMP_PROC_BIND set, libgomp has by then bound the first thread to
 * the first place (one core), and an exec keeps that mask: the program
 * run again would see one core and put every thread on it. The mask of
 * all the places is given back before the exec. */
#define _GNU_SOURCE
#include <omp.h>
#include <sched.h>
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

/* The process may run on every CPU of every OpenMP place again (the CPUs it
 * was given at start, as far as OMP_PLACES covers them). */
static void unbind_for_exec(void)
{
    if (omp_get_proc_bind() == omp_proc_bind_false || omp_get_num_places() <= 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int p = 0; p < omp_get_num_places(); p++) {
        int n = omp_get_place_num_procs(p);
        int ids[CPU_SETSIZE];
        if (n <= 0 || n > CPU_SETSIZE) continue;
        omp_get_place_proc_ids(p, ids);
        for (int i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < CPU_SETSIZE) CPU_SET(ids[i], &set);
    }
    if (CPU_COUNT(&set) > 0 && sched_setaffinity(0, sizeof set, &set) != 0)
        perror("ncsn: warning: could not widen the CPU mask before running again");
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
    unbind_for_exec();
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
