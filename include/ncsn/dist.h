/* dist.h: everything that talks MPI.
 *
 * The gradient reducer sums the one contiguous gradient buffer across ranks
 * in buckets. The backward pass reports, block by block, the lowest buffer
 * offset whose gradients are final (the buffer is laid out in forward order,
 * the backward visits it from the end), and every bucket lying wholly above
 * it is started with MPI_Iallreduce at once. Open MPI makes no progress in
 * the background, so the backward also calls dist_reducer_ready with
 * lo = SIZE_MAX between layers just to call MPI_Test. */
#ifndef NCSN_DIST_H
#define NCSN_DIST_H

#include <mpi.h>
#include <stddef.h>

typedef struct {
    int rank, size;
    int node_size; /* ranks on this rank's node (sharing its memory) */
} Dist;

void dist_init(Dist *d, int *argc, char ***argv);
void dist_finalize(void);

typedef struct {
    float *buf;
    size_t total;
    int n_buckets;
    size_t *lo;           /* bucket i covers [lo[i], lo[i+1]) */
    MPI_Request *req;
    int next;             /* buckets next..n-1 started (launch from the end) */
    int size;
    double wait_s;        /* time spent waiting in dist_reducer_finish */
} GradReducer;

void dist_reducer_init(GradReducer *g, float *buf, size_t total, size_t bucket_floats, int size);
void dist_reducer_free(GradReducer *g);
void dist_reducer_begin(GradReducer *g);
/* Gradients at offsets >= lo are final: start their buckets; test the rest. */
void dist_reducer_ready(void *g, size_t lo);
/* Starts what is left and waits for every bucket. */
void dist_reducer_finish(GradReducer *g);

void dist_bcast(void *buf, size_t bytes, int root);
void dist_sum_floats(float *v, size_t n); /* blocking, in place */
int dist_max_int(int v);
/* all[rank * n + i] = mine[i] on every rank */
void dist_allgather_doubles(const double *mine, double *all, int n);
void dist_barrier(void);
/* Rank 0's verdict for all: msg (cap bytes) is broadcast from rank 0, and
 * when it is not empty every rank ends with ncsn_die_usage (exit 2
 * together when collective errors are on). */
void dist_agree_usage(char *msg, size_t cap);
/* The same, with the verdict of the lowest rank whose msg is not empty:
 * for checks whose answer differs between nodes (memory). */
void dist_agree_usage_any(char *msg, size_t cap);
/* A barrier whose waiting ranks sleep between polls instead of spinning,
 * for waits of seconds (rank 0 running an evaluation script beside them). */
void dist_barrier_idle(void);
/* Rank 0 receives every rank's `mine` (counts[r] floats from rank r) in rank
 * order into all; other ranks may pass all = NULL. */
void dist_gather_floats(const float *mine, float *all, const long *counts);

#endif
