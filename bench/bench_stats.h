/* bench_stats.h: the median the benchmarks report (bench_net, bench_threads, bench_gemm16, bench_conv,
 * bench_split), and the fixed operands of the conv benchmarks. */
#ifndef NCSN_BENCH_STATS_H
#define NCSN_BENCH_STATS_H

#include <stdlib.h>

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[n]; sorts v. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* v[i] in [-0.5, 0.5), spread over the range by the multiplier mult */
static inline void bench_fill(float *v, size_t n, unsigned mult)
{
    for (size_t i = 0; i < n; i++) v[i] = (float)((i * mult) % 1000) / 1000.0f - 0.5f;
}

#endif
