/* head.h: the output head of the score network (src/head.c has the maths). */
#ifndef NCSN_HEAD_H
#define NCSN_HEAD_H

#include "ncsn/model.h"

/* In place: out [s] holds the end conv's output and receives the score.
 * raw (may be NULL) receives a copy of the end conv's output when the
 * plane head is on; head_backward needs it for dx. */
void head_forward(const NcsnConfig *cfg, const float *sigmas, float *out, float *raw, const float *x,
                  const int *labels, Shape s);
/* dout_o [s] = the gradient at the end conv's output; dx (may be NULL)
 * += the head's own dependence on x. raw as written by head_forward (only
 * read with the plane head and dx). */
void head_backward(const NcsnConfig *cfg, const float *sigmas, float *dout_o, float *dx, const float *dout,
                   const float *raw, const float *x, const int *labels, Shape s);
/* The DSM loss weight of a sample at noise level sigma: 1, or
 * (sigma^2 + s_d^2) / s_d^2 with head_sigma_data s_d (src/head.c). */
double head_loss_weight(const NcsnConfig *cfg, float sigma);

#endif
