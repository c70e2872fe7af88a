/* threads.c: how many threads a rank computes with (see ops.h). */
#include <omp.h>
#include <stdlib.h>
#include <unistd.h>

#include "ncsn/ops.h"

/* OpenBLAS's; weak, so that another BLAS links too (it must then be a
 * sequential one, such as MKL's sequential layer: see the README). */
void openblas_set_num_threads(int n) __attribute__((weak));

static int g_threads; /* 0: not chosen yet */

static int env_threads(const char *name)
{
    const char *v = getenv(name);
    int n = v ? atoi(v) : 0;
    return n > 0 ? n : 0;
}

int ops_set_threads(int n)
{
    if (n <= 0) n = env_threads("OMP_NUM_THREADS");
    if (n <= 0) n = env_threads("OPENBLAS_NUM_THREADS");
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    g_threads = n;
    omp_set_num_threads(n);
    if (openblas_set_num_threads) openblas_set_num_threads(1); /* every BLAS call runs inside one of our threads */
    return n;
}

int ops_threads(void)
{
    if (g_threads == 0) ops_set_threads(0);
    return g_threads;
}

int ops_pass_samples(void)
{
    int n = ops_threads();
    return n > 4 ? n : 4;
}

int ops_threads_for(int items, double flops_per_item)
{
    if (flops_per_item * items < 2e5) return 1; /* see ops.h */
    int n = ops_threads();
    return n < items ? n : (items > 0 ? items : 1);
}
