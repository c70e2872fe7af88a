/* norm.c: conditional instance normalisation, CIN and CIN++ (ops.h).
 *
 * Forward: per instance (n, c) over its M = H*W pixels, mean mu and
 * rstd = 1/sqrt(var + eps), var biased, xhat = (x - mu) * rstd; statistics
 * are accumulated in double so that large images keep full float precision.
 *   CIN    y = gamma[label, c] * xhat + beta[label, c]
 *   CIN++  y = gamma * (xhat + alpha * mh_c) + beta, where, per sample,
 *          mh_c = (mu_c - m) * q over its C channel means, m their mean,
 *          q = 1/sqrt(v + eps), v their unbiased variance (computed in
 *          double from the float means that the backward pass gets too).
 * Both are y = x * scale + shift on each plane. CIN runs statistics and
 * output plane by plane; CIN++ needs all of a sample's means for a shift,
 * so it passes over the planes twice (statistics, then output).
 * Backward (per instance, g = dy * gamma, sums over the plane):
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *   dgamma += sum(dy * xhat), dbeta += sum(dy);
 * CIN++ adds dgamma += alpha * mh * sum(dy), dalpha += gamma * mh * sum(dy),
 * and the path through mh: with dmh_c = gamma_c * alpha_c * sum(dy)_c,
 *   dmu_c = q * (dmh_c - mean_k dmh_k - mh_c * sum_k(dmh_k * mh_k) / (C - 1)),
 *   dx += dmu_c / M on plane c (mu_c is the plane's mean).
 * The _elu variants apply ELU to the output in the same pass, and take the
 * gradient at the ELU's output (dy = da * elu'(a)), formed one plane at a
 * time instead of as a full-size temporary. */
#include <math.h>
#include <stdlib.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"
#include "isa.h"
#include "expm1.h"

#define NORM_EPS 1e-5

/* sum of f(i) for i < M via LANES partial sums */
#define LANE_SUM(result, M, expr)                                                                  \
    do {                                                                                           \
        float part_[LANES] = {0};                                                                  \
        size_t i_ = 0;                                                                             \
        for (; i_ + LANES <= (M); i_ += LANES)                                                     \
            for (int l_ = 0; l_ < LANES; l_++) {                                                   \
                size_t i = i_ + l_;                                                                \
                part_[l_] += (expr);                                                               \
            }                                                                                      \
        double total_ = 0.0;                                                                       \
        for (; i_ < (M); i_++) {                                                                   \
            size_t i = i_;                                                                         \
            total_ += (expr);                                                                      \
        }                                                                                          \
        for (int l_ = 0; l_ < LANES; l_++) total_ += part_[l_];                                    \
        (result) = total_;                                                                         \
    } while (0)

static int norm_threads(Shape s) { return ops_threads_for(s.N * s.C, 8.0 * s.H * s.W); }

typedef struct {
    float mean, rstd;
} PlaneStats;

/* mean and 1/sqrt(var + eps) of one plane */
INLINE PlaneStats plane_stats(const float *x, size_t M)
{
    double sum, sq;
    LANE_SUM(sum, M, x[i]);
    double mu = sum / (double)M;
    float muf = (float)mu;
    LANE_SUM(sq, M, (x[i] - muf) * (x[i] - muf));
    return (PlaneStats){muf, (float)(1.0 / sqrt(sq / (double)M + NORM_EPS))};
}

/* y = x * scale + shift, then ELU when elu */
INLINE void plane_affine(float *y, const float *x, size_t M, float scale, float shift, int elu)
{
    if (elu)
        for (size_t i = 0; i < M; i++) {
            float v = x[i] * scale + shift;
            y[i] = v > 0.0f ? v : expm1_neg(v);
        }
    else
        for (size_t i = 0; i < M; i++) y[i] = x[i] * scale + shift;
}

/* d = da * elu'(a), read from the ELU output a */
INLINE void plane_elu_grad(float *restrict d, const float *restrict da, const float *restrict a, size_t M)
{
    for (size_t i = 0; i < M; i++) d[i] = da[i] * (a[i] > 0.0f ? 1.0f : a[i] + 1.0f);
}

/* sum(dy) and sum(dy * xhat) of one plane */
INLINE void plane_grad_sums(double *sum_dy, double *sum_dy_xhat, const float *dy, const float *x, float mu,
                            float r, size_t M)
{
    LANE_SUM(*sum_dy, M, dy[i]);
    LANE_SUM(*sum_dy_xhat, M, dy[i] * ((x[i] - mu) * r));
}

/* ---- CIN ---- */

/* cin_fwd, cin_bwd, cinpp_fwd and cinpp_bwd are the multiversioned kernels
 * (isa.h): each holds its OpenMP loops itself, so that their outlined
 * bodies get the instruction set of the version that runs them. The elu
 * flag is tested outside the pixel loops. */

static OPS_KERNEL void cin_fwd(float *out, float *mean, float *rstd, const float *in, const float *embed,
                         const int *labels, Shape s, int elu)
{
    size_t M = (size_t)s.H * s.W;
#pragma omp parallel for collapse(2) num_threads(norm_threads(s)) schedule(static)
    for (int n = 0; n < s.N; n++) {
        for (int c = 0; c < s.C; c++) {
            const float *gamma = embed + (size_t)labels[n] * 2 * s.C;
            const float *beta = gamma + s.C;
            size_t nc = (size_t)n * s.C + c;
            const float *x = in + nc * M; /* [H*W] */
            PlaneStats st = plane_stats(x, M);
            mean[nc] = st.mean;
            rstd[nc] = st.rstd;
            float scale = gamma[c] * st.rstd;
            float shift = beta[c] - st.mean * scale;
            /* plane_affine written out: through the helper this loop took
             * 2 % longer (GCC 12, -O3), and CIN keeps its speed */
            float *y = out + nc * M; /* [H*W] */
            if (elu)
                for (size_t i = 0; i < M; i++) {
                    float v = x[i] * scale + shift;
                    y[i] = v > 0.0f ? v : expm1_neg(v);
                }
            else
                for (size_t i = 0; i < M; i++) y[i] = x[i] * scale + shift;
        }
    }
}

/* elu: dout is the gradient at the ELU output act */
static OPS_KERNEL void cin_bwd(float *din, float *dembed, const float *dout, const float *act, const float *mean,
                         const float *rstd, const float *in, const float *embed, const int *labels, Shape s,
                         int elu)
{
    size_t M = (size_t)s.H * s.W;
    /* channels over the threads, samples in order within: the embedding
     * gradient of a channel is summed in the same order whatever the
     * thread count. With elu, each plane's dy is formed first in a buffer
     * of one plane, which stays in cache. */
#pragma omp parallel num_threads(norm_threads(s))
    {
        float *plane = elu ? xmalloc(M * sizeof(float)) : NULL;
#pragma omp for schedule(static)
        for (int c = 0; c < s.C; c++) {
            for (int n = 0; n < s.N; n++) {
                const float *gamma = embed + (size_t)labels[n] * 2 * s.C;
                size_t nc = (size_t)n * s.C + c;
                const float *x = in + nc * M; /* [H*W] */
                const float *dy = dout + nc * M;
                if (elu) {
                    plane_elu_grad(plane, dy, act + nc * M, M);
                    dy = plane;
                }
                float mu = mean[nc], r = rstd[nc];
                double sum_dy, sum_dy_xhat;
                plane_grad_sums(&sum_dy, &sum_dy_xhat, dy, x, mu, r, M);
                if (dembed) {
                    float *dg = dembed + (size_t)labels[n] * 2 * s.C;
                    dg[c] += (float)sum_dy_xhat;
                    dg[s.C + c] += (float)sum_dy;
                }
                if (din) {
                    float *dx = din + nc * M;
                    float g = gamma[c];
                    float ma = (float)(sum_dy / (double)M);
                    float mb = (float)(sum_dy_xhat / (double)M);
                    for (size_t i = 0; i < M; i++) {
                        float xhat = (x[i] - mu) * r;
                        dx[i] += g * r * (dy[i] - ma - xhat * mb);
                    }
                }
            }
        }
        free(plane);
    }
}

/* ---- CIN++ ---- */

/* mh[c] = (mean[c] - m) * q over the C >= 2 channel means of one sample
 * (see the top); returns q */
static double channel_mean_norm(double *mh, const float *mean, int C)
{
    double sum = 0, ss = 0;
    for (int c = 0; c < C; c++) sum += mean[c];
    double m = sum / C;
    for (int c = 0; c < C; c++) ss += (mean[c] - m) * (mean[c] - m);
    double q = 1.0 / sqrt(ss / (C - 1) + NORM_EPS);
    for (int c = 0; c < C; c++) mh[c] = (mean[c] - m) * q;
    return q;
}

static OPS_KERNEL void cinpp_fwd(float *out, float *mean, float *rstd, const float *in, const float *embed,
                           const int *labels, Shape s, int elu)
{
    size_t M = (size_t)s.H * s.W, C3 = (size_t)3 * s.C;
    double *mh = xmalloc((size_t)s.N * s.C * sizeof(double));
#pragma omp parallel num_threads(norm_threads(s))
    {
#pragma omp for collapse(2) schedule(static)
        for (int n = 0; n < s.N; n++)
            for (int c = 0; c < s.C; c++) {
                size_t nc = (size_t)n * s.C + c;
                PlaneStats st = plane_stats(in + nc * M, M);
                mean[nc] = st.mean;
                rstd[nc] = st.rstd;
            }
#pragma omp for schedule(static)
        for (int n = 0; n < s.N; n++) channel_mean_norm(mh + (size_t)n * s.C, mean + (size_t)n * s.C, s.C);
#pragma omp for collapse(2) schedule(static)
        for (int n = 0; n < s.N; n++)
            for (int c = 0; c < s.C; c++) {
                const float *gamma = embed + (size_t)labels[n] * C3, *alpha = gamma + s.C, *beta = alpha + s.C;
                size_t nc = (size_t)n * s.C + c;
                float scale = gamma[c] * rstd[nc];
                float shift = beta[c] + gamma[c] * alpha[c] * (float)mh[nc] - mean[nc] * scale;
                plane_affine(out + nc * M, in + nc * M, M, scale, shift, elu);
            }
    }
    free(mh);
}

/* Three passes: the plane sums and the embedding gradient (channels over
 * the threads, samples in order, as in cin_bwd); dmu per sample, which
 * needs the sums of all its channels; dx. With elu each plane's dy is
 * formed again in the last pass rather than kept. */
static OPS_KERNEL void cinpp_bwd(float *din, float *dembed, const float *dout, const float *act, const float *mean,
                           const float *rstd, const float *in, const float *embed, const int *labels, Shape s,
                           int elu)
{
    size_t M = (size_t)s.H * s.W, NC = (size_t)s.N * s.C, C3 = (size_t)3 * s.C;
    double *mh = xmalloc(NC * sizeof(double)), *q = xmalloc((size_t)s.N * sizeof(double));
    double *sum_dy = xmalloc(NC * sizeof(double)), *sum_dy_xhat = xmalloc(NC * sizeof(double));
    float *dmu_m = din ? xmalloc(NC * sizeof(float)) : NULL; /* dmu / M */
    for (int n = 0; n < s.N; n++) q[n] = channel_mean_norm(mh + (size_t)n * s.C, mean + (size_t)n * s.C, s.C);
#pragma omp parallel num_threads(norm_threads(s))
    {
        float *plane = elu ? xmalloc(M * sizeof(float)) : NULL;
#pragma omp for schedule(static)
        for (int c = 0; c < s.C; c++) {
            for (int n = 0; n < s.N; n++) {
                size_t nc = (size_t)n * s.C + c;
                const float *dy = dout + nc * M;
                if (elu) {
                    plane_elu_grad(plane, dy, act + nc * M, M);
                    dy = plane;
                }
                plane_grad_sums(&sum_dy[nc], &sum_dy_xhat[nc], dy, in + nc * M, mean[nc], rstd[nc], M);
                if (dembed) {
                    const float *gamma = embed + (size_t)labels[n] * C3, *alpha = gamma + s.C;
                    float *dg = dembed + (size_t)labels[n] * C3;
                    dg[c] += (float)(sum_dy_xhat[nc] + alpha[c] * mh[nc] * sum_dy[nc]);
                    dg[s.C + c] += (float)(gamma[c] * mh[nc] * sum_dy[nc]);
                    dg[2 * s.C + c] += (float)sum_dy[nc];
                }
            }
        }
        if (din) {
#pragma omp for schedule(static)
            for (int n = 0; n < s.N; n++) {
                const float *gamma = embed + (size_t)labels[n] * C3, *alpha = gamma + s.C;
                size_t n0 = (size_t)n * s.C;
                double mean_dmh = 0, dot = 0;
                for (int c = 0; c < s.C; c++) {
                    double dmh = (double)gamma[c] * alpha[c] * sum_dy[n0 + c];
                    mean_dmh += dmh;
                    dot += dmh * mh[n0 + c];
                }
                mean_dmh /= s.C;
                dot /= s.C - 1;
                for (int c = 0; c < s.C; c++) {
                    double dmh = (double)gamma[c] * alpha[c] * sum_dy[n0 + c];
                    dmu_m[n0 + c] = (float)(q[n] * (dmh - mean_dmh - mh[n0 + c] * dot) / (double)M);
                }
            }
#pragma omp for schedule(static)
            for (int c = 0; c < s.C; c++) {
                for (int n = 0; n < s.N; n++) {
                    size_t nc = (size_t)n * s.C + c;
                    const float *x = in + nc * M, *dy = dout + nc * M;
                    if (elu) {
                        plane_elu_grad(plane, dy, act + nc * M, M);
                        dy = plane;
                    }
                    float *dx = din + nc * M;
                    float g = embed[(size_t)labels[n] * C3 + c], mu = mean[nc], r = rstd[nc], e = dmu_m[nc];
                    float ma = (float)(sum_dy[nc] / (double)M);
                    float mb = (float)(sum_dy_xhat[nc] / (double)M);
                    for (size_t i = 0; i < M; i++) {
                        float xhat = (x[i] - mu) * r;
                        dx[i] += g * r * (dy[i] - ma - xhat * mb) + e;
                    }
                }
            }
        }
        free(plane);
    }
    free(mh), free(q), free(sum_dy), free(sum_dy_xhat), free(dmu_m);
}

void norm_forward(float *out, float *mean, float *rstd, const float *in, const float *embed,
                  const int *labels, Shape s, NormKind kind)
{
    if (kind == NORM_CINPP) cinpp_fwd(out, mean, rstd, in, embed, labels, s, 0);
    else cin_fwd(out, mean, rstd, in, embed, labels, s, 0);
}

void norm_elu_forward(float *out, float *mean, float *rstd, const float *in, const float *embed,
                      const int *labels, Shape s, NormKind kind)
{
    if (kind == NORM_CINPP) cinpp_fwd(out, mean, rstd, in, embed, labels, s, 1);
    else cin_fwd(out, mean, rstd, in, embed, labels, s, 1);
}

void norm_backward(float *din, float *dembed, const float *dout, const float *mean, const float *rstd,
                   const float *in, const float *embed, const int *labels, Shape s, NormKind kind)
{
    if (kind == NORM_CINPP) cinpp_bwd(din, dembed, dout, NULL, mean, rstd, in, embed, labels, s, 0);
    else cin_bwd(din, dembed, dout, NULL, mean, rstd, in, embed, labels, s, 0);
}

void norm_elu_backward(float *din, float *dembed, const float *da, const float *a, const float *mean,
                       const float *rstd, const float *in, const float *embed, const int *labels, Shape s,
                       NormKind kind)
{
    if (kind == NORM_CINPP) cinpp_bwd(din, dembed, da, a, mean, rstd, in, embed, labels, s, 1);
    else cin_bwd(din, dembed, da, a, mean, rstd, in, embed, labels, s, 1);
}
