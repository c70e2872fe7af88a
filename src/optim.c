/* optim.c: see optim.h. The update is element-wise and identical on every
 * rank, so replicas stay bitwise equal without broadcasting weights. */
#include "ncsn/optim.h"

#include <math.h>

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

double grad_norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

void grad_scale(float *g, size_t n, float s)
{
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
