/* bench_split.c: where the time of one sample's 3x3 conv (Winograd F(4,3))
 * goes when threads split the sample (a rank holding fewer samples than
 * threads), stage by stage and thread by thread, against the same conv on
 * one thread. It includes src/ops/winograd.c with that file's stage marks
 * defined, so it times the code the program runs.
 *
 *   ./build/bench/bench_split [C=128] [size=32] [d=1] [reps=50] [T=2]
 *
 * A C -> C conv of dilation d on one size x size sample; forward, then
 * backward with both gradients. Each row is the median over the repetitions
 * of a stage's time on one thread, and of each thread's time with T;
 * "wait" sums a thread's barriers (waiting for the others). The stages do
 * not include the weight transforms, which run before (forward) and after
 * (backward) the sample; "wall" does. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"

#define MAXT 16
#define ROWS 16

static const char *row_name[2][ROWS]; /* [forward, backward] */
static int rows[2], phase;
static double *times; /* [rep][mode][phase][thread][row] */
static double *cur;   /* this repetition and mode: [phase][thread][row] */
static double last[MAXT];

static int stage_row(const char *name)
{
    for (int r = 0; r < rows[phase]; r++)
        if (strcmp(row_name[phase][r], name) == 0) return r;
    CHECK(rows[phase] < ROWS, "bench_split: more than %d stages", ROWS);
    row_name[phase][rows[phase]] = name;
    return rows[phase]++;
}

static void stage_start(void) { last[omp_get_thread_num()] = omp_get_wtime(); }

static void stage_mark(const char *name)
{
    int th = omp_get_thread_num();
    double now = omp_get_wtime();
    int r;
#pragma omp critical(bench_split_rows)
    r = stage_row(name);
    if (th < MAXT) cur[((size_t)phase * MAXT + th) * ROWS + r] += now - last[th];
    last[th] = now;
}

#define STAGE_START() stage_start()
#define STAGE(name) stage_mark(name)
#include "../src/ops/winograd.c"

#include "bench_stats.h"

static double med(int reps, int mode, int ph, int th, int r, double *scratch)
{
    for (int i = 0; i < reps; i++)
        scratch[i] = times[((((size_t)i * 2 + mode) * 2 + ph) * MAXT + th) * ROWS + r];
    return median(scratch, reps);
}

int main(int argc, char **argv)
{
    ops_choose_blas_kernels(argv);
    int C = argc > 1 ? atoi(argv[1]) : 128, size = argc > 2 ? atoi(argv[2]) : 32;
    int d = argc > 3 ? atoi(argv[3]) : 1, reps = argc > 4 ? atoi(argv[4]) : 50, T = argc > 5 ? atoi(argv[5]) : 2;
    if (C < 1 || size < 1 || d < 1 || reps < 1 || T < 2 || T > MAXT) {
        fprintf(stderr, "usage: bench_split [C] [size] [d] [reps] [T] (T from 2 to %d)\n", MAXT);
        return 2;
    }
    ops_set_threads(T);
    Shape s = {1, C, size, size};
    size_t n = shape_count(s), nw = (size_t)C * C * 9, per_rep = (size_t)2 * 2 * MAXT * ROWS;
    float *x = xmalloc(n * sizeof(float)), *y = xmalloc(n * sizeof(float)), *w = xmalloc(nw * sizeof(float));
    float *b = xcalloc((size_t)C, sizeof(float)), *dx = xcalloc(n, sizeof(float));
    float *dw = xcalloc(nw, sizeof(float)), *db = xcalloc((size_t)C, sizeof(float));
    bench_fill(x, n, 2654435761u);
    bench_fill(w, nw, 40503u);
    float *work = xmalloc(conv_work_floats(s, C, d, CONV_WINOGRAD4) * sizeof(float));
    times = xcalloc((size_t)reps * per_rep, sizeof(double));
    double *wall = xcalloc((size_t)reps * 4, sizeof(double)), *scratch = xmalloc((size_t)reps * sizeof(double));
    /* Two warm-up repetitions; in each repetition, 1 thread, then T threads
     * twice, timing the second: the first moves the data the 1-thread run
     * left in one core's cache back to where the T threads keep it (timed
     * right after the 1-thread run, the thread on the other core read it all
     * from there and was 20-30 % slower than its partner). */
    for (int r = -2; r < reps; r++)
        for (int run = 0; run < 3; run++) {
            int mode = run > 0;
            ops_set_threads(mode ? T : 1);
            double junk[2 * MAXT * ROWS];
            cur = r < 0 || run == 1 ? memset(junk, 0, sizeof junk)
                                    : times + (size_t)r * per_rep + (size_t)mode * 2 * MAXT * ROWS;
            double t0 = omp_get_wtime();
            phase = 0;
            conv_forward(y, x, w, NULL, b, s, C, d, 0, CONV_WINOGRAD4, work);
            double t1 = omp_get_wtime();
            phase = 1;
            conv_backward(dx, dw, db, y, x, w, s, C, d, CONV_WINOGRAD4, work);
            double t2 = omp_get_wtime();
            if (r >= 0 && run != 1) wall[r * 4 + mode * 2] = t1 - t0, wall[r * 4 + mode * 2 + 1] = t2 - t1;
        }
    printf("3x3 conv %d -> %d, %dx%d, dilation %d, one sample; 1 thread and %d splitting it; median of %d, "
           "microseconds\n", C, C, size, size, d, T, reps);
    for (int ph = 0; ph < 2; ph++) {
        printf("\n%-26s %9s", ph ? "backward" : "forward", "1 thread");
        for (int th = 0; th < T; th++) printf("  thread %-2d", th);
        printf("\n");
        double sum1 = 0;
        for (int r = 0; r < rows[ph]; r++) {
            double one = med(reps, 0, ph, 0, r, scratch);
            sum1 += one;
            printf("%-26s %9.1f", row_name[ph][r], 1e6 * one);
            for (int th = 0; th < T; th++) printf(" %10.1f", 1e6 * med(reps, 1, ph, th, r, scratch));
            printf("\n");
        }
        for (int i = 0; i < reps; i++) scratch[i] = wall[i * 4 + ph];
        double w1 = median(scratch, reps);
        for (int i = 0; i < reps; i++) scratch[i] = wall[i * 4 + 2 + ph];
        double wT = median(scratch, reps);
        printf("%-26s %9.1f %10.1f   (%.2fx; stages on 1 thread %.1f)\n", "wall", 1e6 * w1, 1e6 * wT, w1 / wT,
               1e6 * sum1);
    }
    return 0;
}
