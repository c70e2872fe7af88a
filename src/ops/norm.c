/* norm.c: conditional instance normalisation.
 *
 * Forward: xhat = (x - mean) * rstd with rstd = 1/sqrt(var + eps), var biased;
 * y = gamma[label, c] * xhat + beta[label, c]. Statistics are accumulated in
 * double so that large images keep full float precision.
 * Backward (per instance, M = H*W pixels, g = dy * gamma):
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *   dgamma += sum(dy * xhat), dbeta += sum(dy).
 * The _elu variants apply ELU to the output in the same pass, and take the
 * gradient at the ELU's output (dy = da * elu'(a)), formed one plane at a
 * time instead of as a full-size temporary. */
#include <math.h>
#include <stdlib.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"
#include "expm1.h"

#define NORM_EPS 1e-5
#define LANES 16

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

#define INLINE_NORM static inline __attribute__((always_inline))

static int norm_threads(Shape s) { return ops_threads_for(s.N * s.C, 8.0 * s.H * s.W); }

INLINE_NORM void norm_fwd(float *out, float *mean, float *rstd, const float *in, const float *embed,
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
            float *y = out + nc * M;      /* [H*W] */
            double sum, sq;
            LANE_SUM(sum, M, x[i]);
            double mu = sum / (double)M;
            float muf = (float)mu;
            LANE_SUM(sq, M, (x[i] - muf) * (x[i] - muf));
            double r = 1.0 / sqrt(sq / (double)M + NORM_EPS);
            mean[nc] = (float)mu;
            rstd[nc] = (float)r;
            float scale = gamma[c] * (float)r;
            float shift = beta[c] - (float)mu * scale;
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

/* elu: dout is the gradient at the ELU output act (a constant per call
 * site, so that each variant compiles to its own vector loops) */
INLINE_NORM void norm_bwd(float *din, float *dembed, const float *dout, const float *act, const float *mean,
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
                    const float *restrict da = dy, *restrict a = act + nc * M;
                    float *restrict d = plane;
                    for (size_t i = 0; i < M; i++) d[i] = da[i] * (a[i] > 0.0f ? 1.0f : a[i] + 1.0f);
                    dy = plane;
                }
                float mu = mean[nc], r = rstd[nc];
                double sum_dy, sum_dy_xhat;
                LANE_SUM(sum_dy, M, dy[i]);
                LANE_SUM(sum_dy_xhat, M, dy[i] * ((x[i] - mu) * r));
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

void norm_forward(float *out, float *mean, float *rstd, const float *in, const float *embed,
                  const int *labels, Shape s)
{
    norm_fwd(out, mean, rstd, in, embed, labels, s, 0);
}

void norm_elu_forward(float *out, float *mean, float *rstd, const float *in, const float *embed,
                      const int *labels, Shape s)
{
    norm_fwd(out, mean, rstd, in, embed, labels, s, 1);
}

void norm_backward(float *din, float *dembed, const float *dout, const float *mean, const float *rstd,
                   const float *in, const float *embed, const int *labels, Shape s)
{
    norm_bwd(din, dembed, dout, NULL, mean, rstd, in, embed, labels, s, 0);
}

void norm_elu_backward(float *din, float *dembed, const float *da, const float *a, const float *mean,
                       const float *rstd, const float *in, const float *embed, const int *labels, Shape s)
{
    norm_bwd(din, dembed, da, a, mean, rstd, in, embed, labels, s, 1);
}
