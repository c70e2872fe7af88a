/* dist.c: everything that talks MPI: start-up, the bucketed gradient
 * allreduce, small collectives. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/dist.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ncsn/common.h"

/* Ring allreduce (Open MPI's coll/tuned algorithm number 4) is several
 * times faster than Open MPI's default choice for large buffers here
 * (DESIGN.md 7); the user's setting wins. */
#define OMPI_ALLREDUCE_RING "4"

void dist_init(Dist *d, int *argc, char ***argv)
{
    setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", 0);
    setenv("OMPI_MCA_coll_tuned_allreduce_algorithm", OMPI_ALLREDUCE_RING, 0);
    MPI_CHECK(MPI_Init(argc, argv));
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    ncsn_set_rank(d->rank);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &d->node_size);
    MPI_Comm_free(&node);
}

void dist_finalize(void) { MPI_Finalize(); }

void dist_reducer_init(GradReducer *g, float *buf, size_t total, size_t bucket_floats, int size)
{
    memset(g, 0, sizeof *g);
    g->buf = buf;
    g->total = total;
    g->size = size;
    if (bucket_floats == 0) bucket_floats = total;
    g->n_buckets = (int)((total + bucket_floats - 1) / bucket_floats);
    g->lo = xmalloc((size_t)(g->n_buckets + 1) * sizeof(size_t));
    for (int i = 0; i <= g->n_buckets; i++) {
        size_t at = (size_t)i * bucket_floats;
        g->lo[i] = at < total ? at : total;
    }
    g->req = xmalloc((size_t)g->n_buckets * sizeof(MPI_Request));
    for (int i = 0; i < g->n_buckets; i++) g->req[i] = MPI_REQUEST_NULL;
    g->next = g->n_buckets;
}

void dist_reducer_free(GradReducer *g)
{
    free(g->lo);
    free(g->req);
    memset(g, 0, sizeof *g);
}

void dist_reducer_begin(GradReducer *g) { g->next = g->n_buckets; }

void dist_reducer_ready(void *ctx, size_t lo)
{
    GradReducer *g = ctx;
    if (g->size == 1) return;
    while (g->next > 0 && lo != SIZE_MAX && g->lo[g->next - 1] >= lo) {
        int b = --g->next;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, g->buf + g->lo[b], (int)(g->lo[b + 1] - g->lo[b]),
                                 MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g->req[b]));
    }
    for (int b = g->next; b < g->n_buckets; b++) {
        if (g->req[b] == MPI_REQUEST_NULL) continue;
        int done = 0;
        MPI_CHECK(MPI_Test(&g->req[b], &done, MPI_STATUS_IGNORE));
    }
}

void dist_reducer_finish(GradReducer *g)
{
    if (g->size == 1) return;
    dist_reducer_ready(g, 0);
    double t0 = ncsn_now();
    MPI_CHECK(MPI_Waitall(g->n_buckets, g->req, MPI_STATUSES_IGNORE));
    g->wait_s += ncsn_now() - t0;
}

void dist_bcast(void *buf, size_t bytes, int root)
{
    char *p = buf;
    while (bytes > 0) {
        int chunk = bytes > (size_t)INT_MAX ? INT_MAX : (int)bytes;
        MPI_CHECK(MPI_Bcast(p, chunk, MPI_BYTE, root, MPI_COMM_WORLD));
        p += chunk;
        bytes -= (size_t)chunk;
    }
}

void dist_sum_floats(float *v, size_t n)
{
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v, chunk, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        v += chunk;
        n -= (size_t)chunk;
    }
}

int dist_max_int(int v)
{
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return v;
}

void dist_allgather_doubles(const double *mine, double *all, int n)
{
    MPI_CHECK(MPI_Allgather(mine, n, MPI_DOUBLE, all, n, MPI_DOUBLE, MPI_COMM_WORLD));
}

void dist_barrier(void) { MPI_Barrier(MPI_COMM_WORLD); }

void dist_barrier_idle(void)
{
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
    struct timespec nap = {0, 1000000}; /* 1 ms */
    for (int done = 0;;) {
        MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
        if (done) break;
        nanosleep(&nap, NULL);
    }
}

void dist_gather_floats(const float *mine, float *all, const long *counts)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int *cnt = xmalloc((size_t)size * sizeof(int)), *disp = xmalloc((size_t)size * sizeof(int));
    long at = 0;
    for (int r = 0; r < size; r++) {
        CHECK(counts[r] <= INT_MAX && at <= INT_MAX, "gather too large for one MPI call");
        cnt[r] = (int)counts[r];
        disp[r] = (int)at;
        at += counts[r];
    }
    MPI_CHECK(MPI_Gatherv(mine, cnt[rank], MPI_FLOAT, all, cnt, disp, MPI_FLOAT, 0, MPI_COMM_WORLD));
    free(cnt);
    free(disp);
}

void dist_agree_usage_any(char *msg, size_t cap)
{
    int rank, first;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int mine = msg[0] ? rank : INT_MAX;
    MPI_CHECK(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
    if (first == INT_MAX) return;
    dist_bcast(msg, cap, first);
    msg[cap - 1] = '\0';
    ncsn_die_usage("%s", msg);
}

void dist_agree_usage(char *msg, size_t cap)
{
    dist_bcast(msg, cap, 0);
    msg[cap - 1] = '\0';
    if (msg[0]) ncsn_die_usage("%s", msg);
}
