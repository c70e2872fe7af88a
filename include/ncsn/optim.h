/* optim.h: Adam (betas 0.9/0.999, eps 1e-8, optional L2 weight decay as in
 * torch.optim.Adam), linear warm-up, global-norm clipping, and an EMA of
 * the weights. All work on whole flat buffers laid out by the parameter
 * table, so they never see layers. */
#ifndef NCSN_OPTIM_H
#define NCSN_OPTIM_H

#include <stddef.h>

typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    long warmup;
    int cosine; /* after warm-up, decay as a half cosine to 0 at step total */
    long total;
} AdamConfig;

/* The learning rate of optimizer step t (1-based): the linear warm-up,
 * then constant or, with cosine, lr (1 + cos(pi (t - warmup) / (total -
 * warmup))) / 2. A pure function of t, so resume is exact. */
double adam_lr(const AdamConfig *c, long t);
/* One Adam step t (1-based) on p with gradient g and moments m, v [n]. */
void adam_step(const AdamConfig *c, long t, float *p, const float *g, float *m, float *v, size_t n);
/* sqrt(sum g^2), accumulated in double in an order that does not depend on
 * the thread count. */
double grad_norm(const float *g, size_t n);
void grad_scale(float *g, size_t n, float s);
/* The EMA rate used at optimizer step t (1-based): with warm-up,
 * min(rate, (1 + t) / (10 + t)), so a short run's average is not dominated
 * by the initial weights (0.999^800 = 0.45 of them would remain after 800
 * steps at a fixed 0.999); without, the fixed rate. */
double ema_rate_at(double rate, long t, int warmup);
/* ema = rate * ema + (1 - rate) * p */
void ema_update(float *ema, const float *p, size_t n, float rate);

#endif
