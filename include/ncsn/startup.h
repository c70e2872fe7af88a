/* startup.h: what `ncsn train` and `ncsn sample` do first: start MPI
 * (dist.h), choose the threads of each rank, and say when OpenBLAS runs on
 * other kernels than it would pick (ops_blas_kernels_note). */
#ifndef NCSN_STARTUP_H
#define NCSN_STARTUP_H

#include "ncsn/dist.h"

/* Ranks sharing a node split its cores: each computes with cores/ranks
 * threads unless OMP_NUM_THREADS or OPENBLAS_NUM_THREADS says otherwise
 * (threads that wait spin, so more threads than cores costs time). */
void startup_ranks(Dist *d);

#endif
