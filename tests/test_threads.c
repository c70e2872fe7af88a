/* test_threads.c: every threaded loop of the kernels runs on the threads it
 * is given, and gives the results of one thread.
 *
 * Run with OMP_NUM_THREADS=4 (ctest sets it; 4 threads on fewer cores is
 * fine). The test is linked with -Wl,--wrap=GOMP_parallel: every OpenMP
 * parallel region of ncsn_core (GCC's libgomp starts each one through
 * GOMP_parallel) passes through __wrap_GOMP_parallel below, which records
 * the team size the region asked for and the distinct omp_get_thread_num()
 * values that ran its body. For each op, at sizes where its main loop is
 * worth all threads:
 *   - every region ran on exactly the threads it asked for, and
 *   - the largest region of the op asked for all 4 (the element-wise loops
 *     were once capped at 2 whatever OMP_NUM_THREADS said);
 * and its outputs at 4 threads equal those at 1 thread bitwise, except the
 * convolution weight gradients, whose per-thread shares are summed in
 * thread order: those agree to 1e-5 of their largest magnitude (bitwise
 * too when the batch is smaller than the threads: one share, split inside
 * each sample, as at batch 1 and 2).
 * Also checks ops_set_threads / ops_threads_for's contract (ops.h). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"
#include "ncsn/optim.h"
#include "ncsn/rng.h"

#define THREADS 4
#define MAX_REGIONS 64
#define TOL_REDUCTION 1e-5

static int g_failed = 0;

/* ---- the probe around GOMP_parallel ---- */

typedef struct {
    int asked;         /* the team size requested (0 in the call: the default) */
    unsigned ran;      /* bit t: thread t ran the body */
} Region;

static struct {
    int n;
    Region r[MAX_REGIONS];
} g_probe;

typedef struct {
    void (*fn)(void *);
    void *data;
    Region *region;
} Trampoline;

void __real_GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);

static void trampoline(void *arg)
{
    Trampoline *t = arg;
    int id = omp_get_thread_num();
    if (id < 32) __atomic_fetch_or(&t->region->ran, 1u << id, __ATOMIC_RELAXED);
    t->fn(t->data);
}

void __wrap_GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)
{
    CHECK(g_probe.n < MAX_REGIONS, "more than %d parallel regions in one op", MAX_REGIONS);
    Region *r = &g_probe.r[g_probe.n++];
    r->asked = num_threads ? (int)num_threads : omp_get_max_threads();
    r->ran = 0;
    Trampoline t = {fn, data, r};
    __real_GOMP_parallel(trampoline, &t, num_threads, flags);
}

/* Checks the regions recorded since the last call, for op `name`. */
static void check_regions(const char *name)
{
    int largest = 0, ok = 1;
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; i < g_probe.n; i++) {
        Region *r = &g_probe.r[i];
        int ran = __builtin_popcount(r->ran);
        if (used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s%d/%d", i ? " " : "", ran, r->asked);
        if (ran != r->asked) ok = 0;
        if (r->asked > largest) largest = r->asked;
    }
    if (g_probe.n == 0 || !ok || largest != THREADS) {
        printf("FAIL %-24s regions (threads ran/asked): %s; expected every region to run on the threads it "
               "asks for, and one to ask for %d\n", name, g_probe.n ? list : "none", THREADS);
        g_failed = 1;
    } else {
        printf("ok   %-24s regions (threads ran/asked): %s\n", name, list);
    }
    g_probe.n = 0;
}

/* ---- comparisons with one thread ---- */

static void same_bits(const char *name, const char *what, const float *a, const float *b, size_t n)
{
    if (memcmp(a, b, n * sizeof(float)) == 0) return;
    size_t i = 0;
    while (i < n && memcmp(&a[i], &b[i], sizeof(float)) == 0) i++;
    printf("FAIL %-24s %s differs from 1 thread at [%zu]: %.9g vs %.9g\n", name, what, i, a[i], b[i]);
    g_failed = 1;
}

static void close_to(const char *name, const char *what, const float *a, const float *b, size_t n)
{
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    if (worst > TOL_REDUCTION * scale) {
        printf("FAIL %-24s %s differs from 1 thread by %.3g (largest magnitude %.3g)\n", name, what, worst, scale);
        g_failed = 1;
    }
}

static float *randn(size_t n, uint32_t tag)
{
    float *p = xmalloc(n * sizeof(float));
    rng_fill_normal(p, n, 42, 7, tag, 0);
    return p;
}

static float *copy_of(const float *x, size_t n)
{
    float *p = xmalloc(n * sizeof(float));
    memcpy(p, x, n * sizeof(float));
    return p;
}

/* Runs at 1 thread (pass 0), then at THREADS (pass 1) with the regions
 * recorded; the caller checks them after pass 1. */
static void at_threads(int pass)
{
    ops_set_threads(pass ? THREADS : 1);
    g_probe.n = 0;
}

/* ---- the cases ---- */

static void check_contract(void)
{
    int n = ops_set_threads(0);
    if (n != THREADS) {
        printf("FAIL ops_set_threads(0) chose %d threads; run with OMP_NUM_THREADS=%d (ctest sets it)\n", n, THREADS);
        exit(1);
    }
    struct {
        int items;
        double flops;
        int want;
    } c[] = {{1000, 1e6, THREADS}, {3, 1e7, 3}, {1000, 1.0, 1}, {0, 1e9, 1}, {1, 1e9, 1}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int got = ops_threads_for(c[i].items, c[i].flops);
        if (got != c[i].want) {
            printf("FAIL ops_threads_for(%d, %g) = %d, expected %d\n", c[i].items, c[i].flops, got, c[i].want);
            g_failed = 1;
        }
    }
    printf("ok   ops_threads_for          (%d threads configured)\n", n);
}

static void check_elementwise(void)
{
    size_t n = (size_t)1 << 20;
    float *x = randn(n, 1), *y = randn(n, 2), *dout = randn(n, 3);
    float *out[2], *din[2], *sum[2], *zero[2], *copy[2];
    const char *names[] = {"elu_forward", "elu_backward", "vec_add", "vec_zero", "vec_copy"};
    for (int k = 0; k < 5; k++)
        for (int pass = 0; pass < 2; pass++) {
            at_threads(pass);
            switch (k) {
            case 0: elu_forward(out[pass] = xmalloc(n * sizeof(float)), x, n); break;
            case 1: elu_backward(din[pass] = copy_of(y, n), dout, out[pass], n); break;
            case 2: vec_add(sum[pass] = copy_of(y, n), x, n); break;
            case 3: vec_zero(zero[pass] = copy_of(y, n), n); break;
            case 4: vec_copy(copy[pass] = copy_of(y, n), x, n); break;
            }
            if (pass) check_regions(names[k]);
        }
    same_bits("elu_forward", "out", out[1], out[0], n);
    same_bits("elu_backward", "din", din[1], din[0], n);
    same_bits("vec_add", "y", sum[1], sum[0], n);
    same_bits("vec_zero", "y", zero[1], zero[0], n);
    same_bits("vec_copy", "y", copy[1], copy[0], n);
    for (int pass = 0; pass < 2; pass++) free(out[pass]), free(din[pass]), free(sum[pass]), free(zero[pass]), free(copy[pass]);
    free(x), free(y), free(dout);
}

/* forward, then backward with every gradient, for one algorithm and batch N:
 * N = 8 gives each thread whole samples; with N < THREADS every sample is
 * split over all threads (channel blocks and transform points), and N = 5
 * does both (4 whole, 1 split). */
static void check_conv(ConvAlgo algo, const char *algo_name, int N, int cin, int cout)
{
    Shape s = {N, cin, 32, 32};
    char name[48];
    snprintf(name, sizeof name, "%s %d->%d N=%d", algo_name, cin, cout, N);
    int d = 2;
    size_t nin = shape_count(s), nout = (size_t)s.N * cout * s.H * s.W, nw = (size_t)cout * s.C * 9;
    float *x = randn(nin, 10), *w = randn(nw, 11), *b = randn(cout, 12), *dout = randn(nout, 13);
    ops_set_threads(THREADS);
    float *work = xmalloc(conv_work_floats(s, cout, d, algo) * sizeof(float));
    float *out[2], *din[2], *dw[2], *db[2];
    char what[64];
    for (int pass = 0; pass < 2; pass++) {
        at_threads(pass);
        conv_forward(out[pass] = xmalloc(nout * sizeof(float)), x, w, NULL, b, s, cout, d, 0, algo, work);
        if (pass) check_regions(strcat(strcpy(what, name), " forward"));
    }
    size_t np = conv_prepared_floats(s.C, cout, algo);
    if (np) { /* kept transformed weights give the same bits, and are what is read (w zeroed) */
        float *prep = xmalloc(np * sizeof(float)), *wz = xcalloc(nw, sizeof(float));
        float *outp = xmalloc(nout * sizeof(float));
        conv_prepare(prep, w, s.C, cout, algo);
        conv_forward(outp, x, wz, prep, b, s, cout, d, 0, algo, work);
        same_bits(name, "out with prepared weights", outp, out[0], nout);
        free(prep), free(wz), free(outp);
    }
    for (int pass = 0; pass < 2; pass++) {
        at_threads(pass);
        din[pass] = xcalloc(nin, sizeof(float)), dw[pass] = xcalloc(nw, sizeof(float));
        db[pass] = xcalloc((size_t)cout, sizeof(float));
        conv_backward(din[pass], dw[pass], db[pass], dout, x, w, s, cout, d, algo, work);
        if (pass) check_regions(strcat(strcpy(what, name), " backward"));
    }
    same_bits(name, "out", out[1], out[0], nout);
    same_bits(name, "din", din[1], din[0], nin);
    /* one share, in sample order (direct: each weight summed by one thread) */
    if ((N < THREADS && algo != CONV_IM2COL) || algo == CONV_DIRECT) same_bits(name, "dw", dw[1], dw[0], nw);
    else close_to(name, "dw", dw[1], dw[0], nw);
    same_bits(name, "db", db[1], db[0], (size_t)cout);
    for (int pass = 0; pass < 2; pass++) free(out[pass]), free(din[pass]), free(dw[pass]), free(db[pass]);
    free(x), free(w), free(b), free(dout), free(work);
}

/* norm and norm+ELU, forward and backward, for one kind */
static void check_norm(NormKind kind, const char *name)
{
    Shape s = {8, 96, 32, 32};
    int L = 4, cols = kind == NORM_CINPP ? 3 : 2;
    size_t n = shape_count(s), nc = (size_t)s.N * s.C, ne = (size_t)L * cols * s.C;
    float *x = randn(n, 20), *embed = randn(ne, 21), *dout = randn(n, 22);
    int labels[8];
    for (int i = 0; i < s.N; i++) labels[i] = (i * 3) % L;
    float *out[2][2], *mean[2][2], *rstd[2][2], *din[2][2], *de[2][2];
    char what[64];
    for (int elu = 0; elu < 2; elu++) {
        for (int pass = 0; pass < 2; pass++) {
            at_threads(pass);
            out[elu][pass] = xmalloc(n * sizeof(float));
            mean[elu][pass] = xmalloc(nc * sizeof(float)), rstd[elu][pass] = xmalloc(nc * sizeof(float));
            (elu ? norm_elu_forward : norm_forward)(out[elu][pass], mean[elu][pass], rstd[elu][pass], x, embed,
                                                     labels, s, kind);
            if (pass) check_regions(strcat(strcpy(what, name), elu ? " elu forward" : " forward"));
        }
        for (int pass = 0; pass < 2; pass++) {
            at_threads(pass);
            din[elu][pass] = xcalloc(n, sizeof(float)), de[elu][pass] = xcalloc(ne, sizeof(float));
            if (elu)
                norm_elu_backward(din[elu][pass], de[elu][pass], dout, out[elu][0], mean[elu][0], rstd[elu][0], x,
                                  embed, labels, s, kind);
            else
                norm_backward(din[elu][pass], de[elu][pass], dout, mean[elu][0], rstd[elu][0], x, embed, labels, s,
                              kind);
            if (pass) check_regions(strcat(strcpy(what, name), elu ? " elu backward" : " backward"));
        }
        same_bits(name, elu ? "elu out" : "out", out[elu][1], out[elu][0], n);
        same_bits(name, "mean", mean[elu][1], mean[elu][0], nc);
        same_bits(name, "rstd", rstd[elu][1], rstd[elu][0], nc);
        same_bits(name, elu ? "elu din" : "din", din[elu][1], din[elu][0], n);
        same_bits(name, elu ? "elu dembed" : "dembed", de[elu][1], de[elu][0], ne);
        for (int pass = 0; pass < 2; pass++)
            free(out[elu][pass]), free(mean[elu][pass]), free(rstd[elu][pass]), free(din[elu][pass]),
                free(de[elu][pass]);
    }
    free(x), free(embed), free(dout);
}

static void check_pool(void)
{
    Shape s = {8, 96, 32, 32};
    size_t n = shape_count(s);
    float *x = randn(n, 30), *dout = randn(n, 31), *out[2], *din[2];
    for (int pass = 0; pass < 2; pass++) {
        at_threads(pass);
        maxpool5_forward(out[pass] = xmalloc(n * sizeof(float)), x, s);
        if (pass) check_regions("maxpool5_forward");
    }
    for (int pass = 0; pass < 2; pass++) {
        at_threads(pass);
        maxpool5_backward(din[pass] = xcalloc(n, sizeof(float)), dout, x, s);
        if (pass) check_regions("maxpool5_backward");
    }
    same_bits("maxpool5", "out", out[1], out[0], n);
    same_bits("maxpool5", "din", din[1], din[0], n);
    for (int pass = 0; pass < 2; pass++) free(out[pass]), free(din[pass]);
    free(x), free(dout);
}

static void check_optim(void)
{
    size_t n = (size_t)1 << 20;
    float *p0 = randn(n, 40), *g = randn(n, 41), *m0 = randn(n, 42), *v0 = randn(n, 43);
    for (size_t i = 0; i < n; i++) v0[i] *= v0[i];
    AdamConfig c = {1e-3, 0.9, 0.999, 1e-8, 1e-4, 0, 0, 0};
    float *p[2], *m[2], *v[2], *ema[2];
    for (int pass = 0; pass < 2; pass++) {
        at_threads(pass);
        p[pass] = copy_of(p0, n), m[pass] = copy_of(m0, n), v[pass] = copy_of(v0, n);
        adam_step(&c, 3, p[pass], g, m[pass], v[pass], n);
        if (pass) check_regions("adam_step");
    }
    for (int pass = 0; pass < 2; pass++) {
        at_threads(pass);
        ema_update(ema[pass] = copy_of(p0, n), g, n, 0.999f);
        if (pass) check_regions("ema_update");
    }
    same_bits("adam_step", "p", p[1], p[0], n);
    same_bits("adam_step", "m", m[1], m[0], n);
    same_bits("adam_step", "v", v[1], v[0], n);
    same_bits("ema_update", "ema", ema[1], ema[0], n);
    /* the gradient norm: same bits at any thread count (a tail past the
     * last whole block too), and the sum of squares to double rounding */
    size_t ng = n + 13;
    float *gg = randn(ng, 44), *scaled[2];
    double norm[2];
    for (int pass = 0; pass < 2; pass++) {
        at_threads(pass);
        norm[pass] = grad_norm(gg, ng);
        if (pass) check_regions("grad_norm");
        grad_scale(scaled[pass] = copy_of(gg, ng), ng, 0.37f);
        if (pass) check_regions("grad_scale");
    }
    long double ref = 0;
    for (size_t i = 0; i < ng; i++) ref += (long double)gg[i] * gg[i];
    double rel = fabs(norm[0] - (double)sqrtl(ref)) / (double)sqrtl(ref);
    if (memcmp(&norm[0], &norm[1], sizeof(double)) != 0 || !(rel < 1e-13)) {
        printf("FAIL grad_norm %.17g at %d threads, %.17g at 1, %.17Lg by a long double sum (rel %.2e)\n", norm[1],
               THREADS, norm[0], sqrtl(ref), rel);
        g_failed = 1;
    }
    same_bits("grad_scale", "g", scaled[1], scaled[0], ng);
    for (int pass = 0; pass < 2; pass++) free(p[pass]), free(m[pass]), free(v[pass]), free(ema[pass]), free(scaled[pass]);
    free(p0), free(g), free(m0), free(v0), free(gg);
}

int main(void)
{
    check_contract();
    check_elementwise();
    check_conv(CONV_IM2COL, "conv im2col", 8, 96, 96);
    for (int k = 0; k < 4; k++) {
        static const int batch[] = {8, 1, 2, 5};
        check_conv(CONV_WINOGRAD2, "conv wino2", batch[k], 96, 96);
        check_conv(CONV_WINOGRAD4, "conv wino4", batch[k], 96, 96);
        check_conv(CONV_DIRECT, "conv direct", batch[k], 3, 96); /* the first conv's shape */
        check_conv(CONV_DIRECT, "conv direct", batch[k], 96, 3); /* the last's */
    }
    check_norm(NORM_CIN, "norm cin");
    check_norm(NORM_CINPP, "norm cin++");
    check_pool();
    check_optim();
    printf(g_failed ? "FAILED\n" : "all threaded loops used their threads and matched 1 thread\n");
    return g_failed;
}
