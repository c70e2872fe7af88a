/* optim.c: see optim.h. The update is element-wise and identical on every
 * rank, so replicas stay bitwise equal without broadcasting weights. */
#include "ncsn/optim.h"

#include <math.h>
#include <stdlib.h>

#include "ncsn/common.h"

double adam_lr(const AdamConfig *c, long t)
{
    if (c->warmup > 0 && t < c->warmup) return c->lr * (double)t / (double)c->warmup;
    if (!c->cosine || c->total <= c->warmup) return c->lr;
    double done = (double)(t - c->warmup) / (double)(c->total - c->warmup);
    if (done > 1.0) done = 1.0;
    return c->lr * 0.5 * (1.0 + cos(acos(-1.0) * done));
}

void adam_step(const AdamConfig *c, long t, float *p, const float *g, float *m, float *v, size_t n)
{
    float b1 = (float)c->beta1, b2 = (float)c->beta2, wd = (float)c->weight_decay;
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    float step = (float)(adam_lr(c, t) / bc1);
    float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float eps = (float)c->eps;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}

/* The sum of squares in an order fixed by n alone, so every thread count
 * gives the same bits: blocks of NORM_BLOCK floats, each summed in 8
 * double lanes (element i into lane i mod 8, which also lets the adds
 * overlap), the lanes pairwise, then the blocks' sums in block order.
 * Threaded because a serial chain of adds over the parameters is 3-4 % of
 * a batch-1 training step, with the other threads waiting. */
#define NORM_BLOCK 65536

double grad_norm(const float *g, size_t n)
{
    size_t nb = (n + NORM_BLOCK - 1) / NORM_BLOCK;
    double *part = xmalloc((nb ? nb : 1) * sizeof(double));
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t lo = b * NORM_BLOCK, hi = n - lo < NORM_BLOCK ? n : lo + NORM_BLOCK;
        double acc[8] = {0};
        size_t i = lo;
        for (; i + 8 <= hi; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += (double)g[i + j] * g[i + j];
        for (int j = 0; i < hi; i++, j++) acc[j] += (double)g[i] * g[i];
        part[b] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    double s = 0.0;
    for (size_t b = 0; b < nb; b++) s += part[b];
    free(part);
    return sqrt(s);
}

void grad_scale(float *g, size_t n, float s)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) g[i] *= s;
}

double ema_rate_at(double rate, long t, int warmup)
{
    double ramp = (1.0 + (double)t) / (10.0 + (double)t);
    return warmup && ramp < rate ? ramp : rate;
}

void ema_update(float *ema, const float *p, size_t n, float rate)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) ema[i] = rate * ema[i] + (1.0f - rate) * p[i];
}
