/* loss.c: the DSM loss and the gradient it sends into the network.
 * d(sum)/d(out) = 2 w (sigma s + z) sigma, scaled by grad_scale. */
#include "ncsn/loss.h"

#include <stdlib.h>

#include "ncsn/common.h"
#include "ncsn/head.h"

void dsm_work_free(DsmWork *w)
{
    free(w->xt);
    free(w->out);
    free(w->dout);
    w->xt = w->out = w->dout = NULL;
    w->cap = 0;
}

double dsm_step(Model *m, ModelRun *r, DsmWork *w, const float *x, const int *labels,
                const float *noise, Shape s, float grad_scale, double *per_sample)
{
    CHECK(m->sigmas, "the DSM loss needs noise levels and the model has none");
    size_t n = shape_count(s), per = n / (size_t)s.N;
    if (w->cap < n) {
        dsm_work_free(w);
        w->xt = xmalloc(n * sizeof(float));
        w->out = xmalloc(n * sizeof(float));
        w->dout = xmalloc(n * sizeof(float));
        w->cap = n;
    }
    for (int b = 0; b < s.N; b++) {
        float sg = m->sigmas[labels[b]];
        for (size_t i = b * per; i < (b + 1) * per; i++) w->xt[i] = x[i] + sg * noise[i];
    }
    model_forward(m, r, w->out, w->xt, labels, s);
    double total = 0.0;
    for (int b = 0; b < s.N; b++) {
        float sg = m->sigmas[labels[b]];
        double weight = head_loss_weight(&m->cfg, sg), acc = 0.0;
        float wf = (float)weight; /* 1 unless preconditioned: then bitwise as without */
        for (size_t i = b * per; i < (b + 1) * per; i++) {
            float res = sg * w->out[i] + noise[i];
            acc += (double)res * res;
            w->dout[i] = grad_scale * 2.0f * res * sg * wf;
        }
        if (per_sample) per_sample[b] = weight * acc;
        total += weight * acc;
    }
    model_backward(m, r, NULL, w->dout);
    return total;
}
