/* conv.c: 3x3 convolution (stride 1, dilation d, padding d): Winograd
 * (winograd.c) where both channel counts are at least 4, summed directly
 * (direct.c) where one is smaller, or, on request (NCSN_CONV=im2col), by
 * im2col and OpenBLAS sgemm, one sample at a time, the samples split over
 * the threads. The im2col path is the definition the tests compare with.
 *
 * For a sample, col[k, p] with k = ci*9 + kh*3 + kw and p = h*W + w holds
 * in[ci, h + (kh-1)d, w + (kw-1)d] (0 outside the image). Then
 *   out[co, p] = sum_k w[co, k] col[k, p] + b[co]        (w viewed as [cout, K])
 *   dw[co, k] += sum_p dout[co, p] col[k, p]
 *   dcol[k, p] = sum_co w[co, k] dout[co, p]  ->  din by col2im (scatter-add). */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"
#include "isa.h"

ConvAlgo conv_algo_from_env(void)
{
    const char *v = getenv("NCSN_CONV");
    if (!v || strcmp(v, "auto") == 0) return CONV_AUTO;
    if (strcmp(v, "im2col") == 0) return CONV_IM2COL;
    if (strcmp(v, "wino2") == 0) return CONV_WINOGRAD2;
    if (strcmp(v, "wino4") == 0) return CONV_WINOGRAD4;
    if (strcmp(v, "direct") == 0) return CONV_DIRECT;
    ncsn_die_usage("NCSN_CONV=%s: expected auto, im2col, wino2, wino4 or direct", v);
}

static ConvAlgo resolve(ConvAlgo algo, int cin, int cout)
{
    if (algo != CONV_AUTO) return algo;
    return cin >= 4 && cout >= 4 ? CONV_WINOGRAD4 : CONV_DIRECT;
}

static int winograd(ConvAlgo algo) { return algo == CONV_WINOGRAD2 || algo == CONV_WINOGRAD4; }

/* Per thread: col and dcol [K, P], and a share of dw [cout, K]. */
static size_t im2col_slice(Shape s, int cout)
{
    size_t K = (size_t)s.C * 9;
    return (2 * K * s.H * s.W + (size_t)cout * K + 15) & ~(size_t)15;
}

size_t conv_work_floats(Shape s, int cout, int d, ConvAlgo algo)
{
    size_t im2col = (size_t)ops_threads() * im2col_slice(s, cout);
    algo = resolve(algo, s.C, cout);
    if (algo == CONV_IM2COL) return im2col;
    if (algo == CONV_DIRECT) return direct_work_floats(s, cout, d);
    size_t w = wino_work_floats(s, cout, d, algo);
    return w > im2col ? w : im2col;
}

/* col: [C*9, H*W] */
static void im2col(float *col, const float *x, int C, int H, int W, int d)
{
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                float *row = col + ((size_t)(c * 9 + kh * 3 + kw)) * H * W;
                int dh = (kh - 1) * d, dw = (kw - 1) * d;
                int w0 = dw < 0 ? -dw : 0, w1 = dw > 0 ? W - dw : W; /* valid w range */
                for (int h = 0; h < H; h++) {
                    float *r = row + (size_t)h * W;
                    int hs = h + dh;
                    if (hs < 0 || hs >= H || w0 >= w1) {
                        memset(r, 0, sizeof(float) * W);
                        continue;
                    }
                    const float *src = x + ((size_t)c * H + hs) * W + dw;
                    for (int w = 0; w < w0; w++) r[w] = 0.0f;
                    memcpy(r + w0, src + w0, sizeof(float) * (w1 - w0));
                    for (int w = w1 > w0 ? w1 : w0; w < W; w++) r[w] = 0.0f;
                }
            }
}

/* dx += col2im(col) */
static void col2im_add(float *dx, const float *col, int C, int H, int W, int d)
{
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const float *row = col + ((size_t)(c * 9 + kh * 3 + kw)) * H * W;
                int dh = (kh - 1) * d, dw = (kw - 1) * d;
                int w0 = dw < 0 ? -dw : 0, w1 = dw > 0 ? W - dw : W;
                for (int h = 0; h < H; h++) {
                    int hs = h + dh;
                    if (hs < 0 || hs >= H) continue;
                    const float *r = row + (size_t)h * W;
                    float *dst = dx + ((size_t)c * H + hs) * W + dw;
                    for (int w = w0; w < w1; w++) dst[w] += r[w];
                }
            }
}

/* The sum of r[0..n): SUM_LANES running sums (r[p] goes to p mod
 * SUM_LANES), added in lane order, then the tail. Vector adds, where one
 * running sum was a chain of scalar adds (2 % of a training step). */
#define SUM_LANES 64
static inline float plane_sum(const float *r, int n)
{
    float lane[SUM_LANES] = {0}, acc = 0.0f;
    int p = 0;
    for (; p + SUM_LANES <= n; p += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++) lane[l] += r[p + l];
    for (int l = 0; l < SUM_LANES; l++) acc += lane[l];
    for (; p < n; p++) acc += r[p];
    return acc;
}

size_t conv_prepared_floats(int cin, int cout, ConvAlgo algo)
{
    algo = resolve(algo, cin, cout);
    return winograd(algo) ? wino_prepared_floats(cin, cout, algo) : 0;
}

void conv_prepare(float *prepared, const float *w, int cin, int cout, ConvAlgo algo)
{
    algo = resolve(algo, cin, cout);
    if (winograd(algo)) wino_prepare(prepared, w, cin, cout, algo);
}

OPS_KERNEL void conv_forward(float *out, const float *in, const float *w, const float *prepared, const float *b,
                             Shape s, int cout, int d, int accumulate, ConvAlgo algo, float *work)
{
    algo = resolve(algo, s.C, cout);
    if (algo == CONV_DIRECT) {
        direct_forward(out, in, w, b, s, cout, d, accumulate, work);
        return;
    }
    if (winograd(algo)) {
        wino_forward(out, in, w, prepared, b, s, cout, d, accumulate, algo, work);
        return;
    }
    int K = s.C * 9, P = s.H * s.W;
    int nt = ops_threads_for(s.N, 2.0 * K * P * cout);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int n = 0; n < s.N; n++) {
        float *col = work + (size_t)omp_get_thread_num() * im2col_slice(s, cout); /* [K, P] */
        const float *x = in + (size_t)n * s.C * P;
        float *y = out + (size_t)n * cout * P; /* [cout, P] */
        im2col(col, x, s.C, s.H, s.W, d);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, P, K, 1.0f, w, K, col, P,
                    accumulate ? 1.0f : 0.0f, y, P);
        for (int co = 0; co < cout; co++) {
            float bias = b[co];
            float *yr = y + (size_t)co * P;
            for (int p = 0; p < P; p++) yr[p] += bias;
        }
    }
}

OPS_KERNEL void conv_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                   const float *w, Shape s, int cout, int d, ConvAlgo algo, float *work)
{
    int K = s.C * 9, P = s.H * s.W;
    if (db) /* db[co] += sum over samples and pixels of dout, samples in order */
#pragma omp parallel for num_threads(ops_threads_for(cout, (double)s.N * P)) schedule(static)
        for (int co = 0; co < cout; co++)
            for (int n = 0; n < s.N; n++) db[co] += plane_sum(dout + ((size_t)n * cout + co) * P, P);
    algo = resolve(algo, s.C, cout);
    if (algo == CONV_DIRECT) {
        direct_backward(din, dw, dout, in, w, s, cout, d, work);
        return;
    }
    if (winograd(algo)) {
        wino_backward(din, dw, dout, in, w, s, cout, d, algo, work);
        return;
    }
    size_t slice = im2col_slice(s, cout), wcount = (size_t)cout * K;
    int nt = ops_threads_for(s.N, 4.0 * K * P * cout);
#pragma omp parallel num_threads(nt)
    {
        float *col = work + (size_t)omp_get_thread_num() * slice; /* [K, P] */
        float *dcol = col + (size_t)K * P;                        /* [K, P] */
        float *dw_t = dcol + (size_t)K * P;                       /* this thread's share of dw */
        if (dw) memset(dw_t, 0, wcount * sizeof(float));
#pragma omp for schedule(static)
        for (int n = 0; n < s.N; n++) {
            const float *dy = dout + (size_t)n * cout * P; /* [cout, P] */
            if (dw) {
                im2col(col, in + (size_t)n * s.C * P, s.C, s.H, s.W, d);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, K, P, 1.0f, dy, P, col, P, 1.0f,
                            dw_t, K);
            }
            if (din) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, cout, 1.0f, w, K, dy, P, 0.0f, dcol,
                            P);
                col2im_add(din + (size_t)n * s.C * P, dcol, s.C, s.H, s.W, d);
            }
        }
    }
    if (dw) /* the threads' shares, in thread order */
        for (int t = 0; t < nt; t++) vec_add(dw, work + (size_t)t * slice + 2 * (size_t)K * P, wcount);
}
