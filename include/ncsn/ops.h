/* ops.h: the numeric kernels of the network, forward and backward.
 *
 * Tensors are float32 NCHW. Backward functions accumulate (+=) into their
 * gradient outputs; a NULL gradient pointer means "not needed". Argument
 * order: outputs, saved values, inputs, parameters, shape. */
#ifndef NCSN_OPS_H
#define NCSN_OPS_H

#include <stddef.h>

typedef struct {
    int N, C, H, W;
} Shape;

static inline size_t shape_count(Shape s) { return (size_t)s.N * s.C * s.H * s.W; }

/* Threads of a rank. The convolutions split a batch by sample over
 * ops_threads() OpenMP threads, each calling single-threaded BLAS, so a
 * sample's result does not depend on the thread count or on the other
 * samples of the batch. ops_set_threads(n) chooses n (n <= 0: from
 * OMP_NUM_THREADS, else OPENBLAS_NUM_THREADS, else all cores) and returns
 * it; without a call the first convolution chooses with n = 0. */
int ops_set_threads(int n);
int ops_threads(void);
/* The team size for one parallel loop (its num_threads clause).
 *   items           the loop's units of work, each taken whole by one
 *                   thread: samples, (sample, channel) planes, output
 *                   channels, or chunks of elements (act.c);
 *   flops_per_item  the cost of one item in floating-point operations (a
 *                   memory-bound element counted as a few flops).
 * Returns 1 when items * flops_per_item < 2e5 (tens of microseconds of
 * work, where waking the threads would cost about what they save); else
 * min(ops_threads(), items); at least 1 (items <= 0 included). The floor
 * was 4e6 until a batch of 1 or 2 had to use every thread: it kept a
 * sample's norms and pooling (1e6 flops at nf 128, 32x32) on one thread. */
int ops_threads_for(int items, double flops_per_item);
/* Samples per forward (or forward and backward) pass when the user does
 * not choose: the larger of 4 and ops_threads(), so every thread takes
 * whole samples while the activations stay small. The default of `ncsn
 * sample --micro-batch`, and of `ncsn train`'s passes when a share's
 * activations would be large (train_micro_batch). At nf 128, 32x32, 16
 * samples per pass held about 100 MB more than 4 for the same speed
 * (docs/performance.md). */
int ops_pass_samples(void);

/* OpenBLAS kernels: when OpenBLAS fell back to kernels far older than the
 * CPU (an unknown model) and OPENBLAS_CORETYPE is unset, runs the program
 * again (execv of argv) with OPENBLAS_CORETYPE set to the best kernels the
 * CPU supports; call first thing in main. ops_blas_kernels_note() is then
 * a line saying so (NULL otherwise). */
void ops_choose_blas_kernels(char **argv);
const char *ops_blas_kernels_note(void);

/* How 3x3 convolutions are computed. AUTO: Winograd F(4x4,3x3) where both
 * channel counts are at least 4, a direct sum otherwise (the image-channel
 * convs); im2col + sgemm on request. The environment variable
 * NCSN_CONV=auto|im2col|wino2|wino4|direct overrides (conv_algo_from_env). */
typedef enum { CONV_AUTO, CONV_IM2COL, CONV_WINOGRAD2, CONV_WINOGRAD4, CONV_DIRECT } ConvAlgo;
ConvAlgo conv_algo_from_env(void);

/* 3x3 convolution, stride 1, dilation d, padding d, with bias.
 * w: [cout, s.C, 3, 3], b: [cout]. out: [s.N, cout, s.H, s.W].
 * accumulate != 0 adds the result to out instead of overwriting it.
 * work: conv_work_floats(s, cout, d, algo) floats of scratch, which
 * depends on ops_threads() (a slice per thread). */
size_t conv_work_floats(Shape s, int cout, int d, ConvAlgo algo);
/* prepared: NULL, or the weights as conv_prepare left them for this w
 * (then conv_forward does not transform w again: a caller whose weights
 * stay the same over many passes, as a sampler's do, keeps them). */
void conv_forward(float *out, const float *in, const float *w, const float *prepared, const float *b, Shape s,
                  int cout, int d, int accumulate, ConvAlgo algo, float *work);
/* The forward pass's transformed weights of a cin -> cout conv:
 * conv_prepared_floats of them (0 when the algorithm has none: im2col, direct). */
size_t conv_prepared_floats(int cin, int cout, ConvAlgo algo);
void conv_prepare(float *prepared, const float *w, int cin, int cout, ConvAlgo algo);
/* din [s], dw [cout, s.C, 3, 3], db [cout] accumulate; dout [s.N, cout, s.H, s.W]. */
void conv_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                   const float *w, Shape s, int cout, int d, ConvAlgo algo, float *work);

/* The direct kernels behind conv_* (algo CONV_DIRECT): b added, no db. */
size_t direct_work_floats(Shape s, int cout, int d);
void direct_forward(float *out, const float *in, const float *w, const float *b, Shape s, int cout, int d,
                    int accumulate, float *work);
void direct_backward(float *din, float *dw, const float *dout, const float *in, const float *w, Shape s, int cout,
                     int d, float *work);

/* The Winograd kernels behind conv_* (algo CONV_WINOGRAD2 or 4); no bias. */
size_t wino_work_floats(Shape s, int cout, int d, int algo);
size_t wino_prepared_floats(int cin, int cout, int algo);
void wino_prepare(float *prepared, const float *w, int cin, int cout, int algo);
void wino_forward(float *out, const float *in, const float *w, const float *prepared, const float *b, Shape s,
                  int cout, int d, int accumulate, int algo, float *work);
void wino_backward(float *din, float *dw, const float *dout, const float *in, const float *w, Shape s,
                   int cout, int d, int algo, float *work);

/* Conditional instance norms. Per (n, c): mean mu and biased variance var
 * over H x W, xhat = (x - mu) / sqrt(var + 1e-5); gamma, alpha, beta are
 * the columns of embed's row y = labels[n] (C each, in that order).
 *   NORM_CIN    out = gamma[y,c] * xhat + beta[y,c]; embed [L, 2*C] (no alpha).
 *   NORM_CINPP  out = gamma[y,c] * (xhat + alpha[y,c] * mh[n,c]) + beta[y,c],
 *               mh = the sample's channel means, centred by their mean and
 *               divided by sqrt(their unbiased variance + 1e-5); embed
 *               [L, 3*C]; needs C >= 2 (the NCSN paper's InstanceNorm++).
 * mean, rstd: [N*C] saved for the backward pass. */
typedef enum { NORM_CIN = 0, NORM_CINPP = 1 } NormKind;
void norm_forward(float *out, float *mean, float *rstd, const float *in, const float *embed,
                  const int *labels, Shape s, NormKind kind);
void norm_backward(float *din, float *dembed, const float *dout, const float *mean,
                   const float *rstd, const float *in, const float *embed, const int *labels,
                   Shape s, NormKind kind);

/* a = ELU(norm(x)) in one pass (mean, rstd as above), and its backward
 * from da, the gradient at a, reading a instead of a stored norm output. */
void norm_elu_forward(float *out, float *mean, float *rstd, const float *in, const float *embed,
                      const int *labels, Shape s, NormKind kind);
void norm_elu_backward(float *din, float *dembed, const float *da, const float *a, const float *mean,
                       const float *rstd, const float *in, const float *embed, const int *labels, Shape s,
                       NormKind kind);

/* ELU with alpha 1. The backward reads the forward's output:
 * d/dx elu(x) = 1 for x > 0 and elu(x) + 1 otherwise. in and out may alias. */
void elu_forward(float *out, const float *in, size_t n);
float ncsn_expm1_neg(float x); /* expm1(x) for x <= 0, vectorisable */
void elu_backward(float *din, const float *dout, const float *out, size_t n);

/* 5x5 max pool, stride 1, padding 2; padded positions never win. */
void maxpool5_forward(float *out, const float *in, Shape s);
void maxpool5_backward(float *din, const float *dout, const float *in, Shape s);

/* y += x; y = 0; y = x (split over the threads when long) */
void vec_add(float *y, const float *x, size_t n);
void vec_zero(float *y, size_t n);
void vec_copy(float *y, const float *x, size_t n);

#endif
