/* startup.c: MPI, threads per rank and the OpenBLAS note (startup.h). */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/startup.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "ncsn/ops.h"

static void choose_threads(const Dist *d)
{
    if (getenv("OMP_NUM_THREADS") || getenv("OPENBLAS_NUM_THREADS")) {
        ops_set_threads(0);
        return;
    }
    int local = d->node_size;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores / local > 1 ? (int)(cores / local) : 1;
    ops_set_threads(threads);
    if (d->rank == 0 && local > 1)
        printf("%d ranks share this node's %ld cores: %d thread%s per rank "
               "(set OMP_NUM_THREADS to choose)\n", local, cores, threads, threads > 1 ? "s" : "");
}

void startup_ranks(Dist *d)
{
    dist_init(d, NULL, NULL);
    choose_threads(d);
    const char *note = ops_blas_kernels_note();
    if (note && d->rank == 0) printf("%s\n", note);
}
