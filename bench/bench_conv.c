/* bench_conv.c: one 3x3 conv (dilation 1) by each algorithm of conv.c,
 * forward and backward (input and weight gradients), on the same
 * operands in one process: im2col + sgemm, Winograd F(4,3) and the direct
 * sum. Meant for the image-channel convs (3 -> nf, nf -> 3), where the
 * default is the direct sum.
 *
 *   OMP_NUM_THREADS=1 ./build/bench/bench_conv [N=1] [cin=128] [cout=3] [size=32] [reps=20]
 *
 * Prints the median wall time of each over the repetitions (the three
 * interleaved) and im2col's time over the others'. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_stats.h"
#include "ncsn/common.h"
#include "ncsn/ops.h"

#define ALGOS 3

int main(int argc, char **argv)
{
    int N = argc > 1 ? atoi(argv[1]) : 1, cin = argc > 2 ? atoi(argv[2]) : 128;
    int cout = argc > 3 ? atoi(argv[3]) : 3, size = argc > 4 ? atoi(argv[4]) : 32;
    int reps = argc > 5 ? atoi(argv[5]) : 20;
    if (N < 1 || cin < 1 || cout < 1 || size < 1 || reps < 1) {
        fprintf(stderr, "usage: bench_conv [N] [cin] [cout] [size] [reps] (all >= 1)\n");
        return 2;
    }
    ops_set_threads(0);
    Shape s = {N, cin, size, size};
    size_t nx = shape_count(s), ny = (size_t)N * cout * size * size, nw = (size_t)cout * cin * 9;
    float *x = xmalloc(nx * sizeof(float)), *y = xmalloc(ny * sizeof(float)), *w = xmalloc(nw * sizeof(float));
    float *b = xcalloc((size_t)cout, sizeof(float)), *dx = xcalloc(nx, sizeof(float));
    float *dw = xcalloc(nw, sizeof(float)), *db = xcalloc((size_t)cout, sizeof(float));
    bench_fill(x, nx, 2654435761u);
    bench_fill(w, nw, 40503u);
    static const ConvAlgo algo[ALGOS] = {CONV_IM2COL, CONV_WINOGRAD4, CONV_DIRECT};
    static const char *name[ALGOS] = {"im2col + sgemm", "Winograd F(4,3)", "direct"};
    float *work[ALGOS];
    double *fwd[ALGOS], *bwd[ALGOS];
    for (int a = 0; a < ALGOS; a++) {
        work[a] = xmalloc(conv_work_floats(s, cout, 1, algo[a]) * sizeof(float));
        fwd[a] = xmalloc((size_t)reps * sizeof(double));
        bwd[a] = xmalloc((size_t)reps * sizeof(double));
    }
    for (int r = 0; r < reps; r++)
        for (int a = 0; a < ALGOS; a++) {
            double t0 = omp_get_wtime();
            conv_forward(y, x, w, NULL, b, s, cout, 1, 0, algo[a], work[a]);
            double t1 = omp_get_wtime();
            conv_backward(dx, dw, db, y, x, w, s, cout, 1, algo[a], work[a]);
            double t2 = omp_get_wtime();
            fwd[a][r] = t1 - t0;
            bwd[a][r] = t2 - t1;
        }
    printf("3x3 conv %d -> %d, %dx%d, batch %d, %d thread(s); median of %d, microseconds\n", cin, cout, size, size, N,
           ops_threads(), reps);
    printf("%-18s %10s %10s %12s\n", "algorithm", "forward", "backward", "im2col / it");
    double base = median(fwd[0], reps) + median(bwd[0], reps);
    for (int a = 0; a < ALGOS; a++) {
        double f = median(fwd[a], reps), g = median(bwd[a], reps);
        printf("%-18s %10.0f %10.0f %11.2fx\n", name[a], 1e6 * f, 1e6 * g, base / (f + g));
    }
    return 0;
}
