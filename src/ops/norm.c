/* norm.c: conditional instance normalisation.
 *
 * Forward: xhat = (x - mean) * rstd with rstd = 1/sqrt(var + eps), var biased;
 * y = gamma[label, c] * xhat + beta[label, c]. Statistics are accumulated in
 * double so that large images keep full float precision.
 * Backward (per instance, M = H*W pixels, g = dy * gamma):
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *   dgamma += sum(dy * xhat), dbeta += sum(dy). */
#include <math.h>

#include "ncsn/ops.h"

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

static int norm_threads(Shape s) { return ops_threads_for(s.N * s.C, 8.0 * s.H * s.W); }

void norm_forward(float *out, float *mean, float *rstd, const float *in, const float *embed,
                  const int *labels, Shape s)
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
            for (size_t i = 0; i < M; i++) y[i] = x[i] * scale + shift;
        }
    }
}

void norm_backward(float *din, float *dembed, const float *dout, const float *mean,
                   const float *rstd, const float *in, const float *embed, const int *labels,
                   Shape s)
{
    size_t M = (size_t)s.H * s.W;
    /* channels over the threads, samples in order within: the embedding
     * gradient of a channel is summed in the same order whatever the
     * thread count */
#pragma omp parallel for num_threads(norm_threads(s)) schedule(static)
    for (int c = 0; c < s.C; c++) {
        for (int n = 0; n < s.N; n++) {
            const float *gamma = embed + (size_t)labels[n] * 2 * s.C;
            size_t nc = (size_t)n * s.C + c;
            const float *x = in + nc * M;    /* [H*W] */
            const float *dy = dout + nc * M; /* [H*W] */
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
                float a = (float)(sum_dy / (double)M);
                float b = (float)(sum_dy_xhat / (double)M);
                for (size_t i = 0; i < M; i++) {
                    float xhat = (x[i] - mu) * r;
                    dx[i] += g * r * (dy[i] - a - xhat * b);
                }
            }
        }
    }
}
