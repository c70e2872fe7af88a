/* loss.h: annealed denoising score matching (DESIGN.md 2).
 *
 * For images x [N, C, H, W], labels y and noise z:
 *   xt = x + sigma[y] z,  sum = sum_n w_n sum_chw (sigma[y_n] s(xt, y)_n + z_n)^2,
 * w_n = head_loss_weight(sigma[y_n]): 1 unless the output is preconditioned.
 * The loss of a batch is sum / N. dsm_step returns `sum` (so ranks can add
 * their partial sums) and adds grad_scale * d(sum)/dparams to m->grads. */
#ifndef NCSN_LOSS_H
#define NCSN_LOSS_H

#include "ncsn/model.h"

typedef struct {
    float *xt, *out, *dout; /* [N, C, H, W] each */
    size_t cap;
} DsmWork;

void dsm_work_free(DsmWork *w);
/* Per-sample sums are written to per_sample[N] when it is not NULL. */
double dsm_step(Model *m, ModelRun *r, DsmWork *w, const float *x, const int *labels,
                const float *noise, Shape s, float grad_scale, double *per_sample);

#endif
