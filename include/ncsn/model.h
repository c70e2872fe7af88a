/* model.h: the NCSN score network of DESIGN.md section 1.
 *
 * All parameters live in one contiguous float buffer laid out by one table
 * of state_dict keys and shapes (ParamTable); gradients live in a twin
 * buffer of the same layout. The table is built by the same function that
 * lays out the layers, so names, shapes and offsets cannot drift. */
#ifndef NCSN_MODEL_H
#define NCSN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ncsn/arena.h"
#include "ncsn/ops.h"

#define NCSN_MAX_KEY 64
#define NCSN_MAX_LEVELS 4096

typedef struct {
    int in_channels;
    int nf;
    int num_classes;
    int dilations[4];
    int scale_by_sigma;
    /* Off by default (0). On: in the plane of each channel's mean and its
     * own pattern, which the network cannot see, the output predicts the
     * clean image (src/head.c); head_floor >= 0 bounds that part's weight
     * at the smallest levels to 1 / (sigma^2 + head_floor^2). */
    int plane_head;
    double head_floor;
    /* Off by default (0). Above 0, the data's spread s_d: the output is
     * scaled by s_d / sqrt(sigma^2 + s_d^2) (the shape part only, with the
     * plane head) and the DSM loss of a level is weighted by
     * (sigma^2 + s_d^2) / s_d^2, so that every level asks the network for
     * an output of about unit size (Karras et al. 2022; src/head.c). */
    double head_sigma_data;
    /* The conditional norm of every norm layer (ops.h): NORM_CIN by
     * default (DESIGN.md), or NORM_CINPP, whose embed.weight is [L, 3*nf]. */
    NormKind norm;
} NcsnConfig;

void config_default(NcsnConfig *cfg);
/* Returns NULL when valid, else a static message saying what is wrong. */
const char *config_validate(const NcsnConfig *cfg);
/* "cin" or "cin++": the name on the command line and in model files; parse
 * returns 0 for any other text. */
const char *norm_kind_name(NormKind kind);
int norm_kind_parse(const char *text, NormKind *kind);

typedef struct {
    char key[NCSN_MAX_KEY];
    int ndim;
    int shape[4];
    size_t offset; /* into the parameter buffer, in floats */
    size_t count;
} ParamSpec;

typedef struct {
    ParamSpec *specs;
    int n;
    size_t total; /* floats */
} ParamTable;

/* Layer descriptors: offsets into the parameter buffer. */
typedef struct {
    size_t w, b;
    int cin, cout, dil;
} ConvLayer;
typedef struct {
    size_t embed;
    int c;
    NormKind kind;
} NormLayer;
typedef struct {
    NormLayer norm1, norm2;
    ConvLayer conv1, conv2;
} RcuLayer;
typedef struct {
    RcuLayer units[2];
} RcuBlock;
typedef struct {
    int n_in;
    RcuBlock rcu_in[2];
    NormLayer msf_norms[2];
    ConvLayer msf_convs[2];
    NormLayer crp_norms[4];
    ConvLayer crp_convs[4];
    RcuBlock rcu_out;
} RefineLayer;
typedef struct {
    ConvLayer begin_conv;
    RcuBlock stage[4];
    RefineLayer refine[4]; /* refine[0] is refine1 ... refine[3] is refine4 */
    NormLayer end_norm;
    ConvLayer end_conv;
} NetLayout;

typedef struct {
    NcsnConfig cfg;
    ParamTable table;
    NetLayout net;
    float *params; /* [table.total] */
    float *grads;  /* [table.total] */
    float *sigmas; /* [num_classes], or NULL when not set */
} Model;

/* Builds the layout and allocates params (zero) and grads (zero). */
void model_init(Model *m, const NcsnConfig *cfg);
void model_free(Model *m);
/* table.total of model_init(cfg) (floats, each tensor padded to a multiple
 * of 16), without allocating anything: what the buffers take. */
size_t model_param_floats(const NcsnConfig *cfg);
/* The number of parameters: the tensors' element counts, no padding. */
size_t model_param_count(const Model *m);
/* For forward-only use (sampling, scoring): frees the gradient buffer,
 * 50 MB at nf 128; model_backward then refuses to run. */
void model_drop_grads(Model *m);
/* Initialisation of DESIGN.md section 1: Xavier-uniform convs, bias 0,
 * gamma 1, beta 0; with NORM_CINPP gamma and alpha ~ N(1, 0.02) instead
 * (as the NCSN paper's code). Uses the counter-based generator with this seed. */
void model_init_weights(Model *m, uint64_t seed);
void model_set_sigmas(Model *m, const float *sigmas); /* copies; NULL clears */

/* make_sigmas(begin, end, L): exp(linspace(log begin, log end, L)) in double.
 * Returns NULL on success or a message. */
const char *make_sigmas(float *out, double begin, double end, int L);
/* Strictly descending and positive? NULL or a message. */
const char *sigmas_validate(const float *sigmas, int L);

/* Activations of one forward pass, kept for the backward pass. They live in
 * an arena that is sized on the first pass for a batch size and reused. */
typedef struct ModelCache ModelCache;

typedef struct {
    Arena act;     /* activations of the forward pass */
    Arena tmp;     /* gradient temporaries of the backward pass */
    float *work;   /* conv scratch */
    size_t work_floats;
    ConvAlgo conv_algo; /* from NCSN_CONV at model_run_init */
    int inference;      /* set: forward only, activations freed as blocks finish */
    /* Set when the weights stay the same for the life of this run (a
     * sampler's): each conv's transformed weights (conv_prepare) are kept
     * after its first forward pass instead of redone on every pass;
     * model_prepared_floats(m) more floats. */
    int keep_weights;
    struct PreparedConv *prepared;
    int n_prepared;
    Shape in_shape;
    const int *labels;
    ModelCache *cache;
    /* Optional: told during the backward pass that the gradients at buffer
     * offsets >= lo are final (lo = SIZE_MAX: nothing new, a chance to make
     * communication progress). */
    void (*grad_ready)(void *ctx, size_t lo);
    void *grad_ready_ctx;
} ModelRun;

void model_run_init(ModelRun *r);
/* An estimate, from above, of the floats a ModelRun allocates for batches
 * of shape s (activations, gradient temporaries, conv scratch), for
 * checking memory before allocating it. */
size_t model_run_floats(const NcsnConfig *cfg, Shape s, int inference);
/* The floats a ModelRun with keep_weights holds for the transformed weights of
 * every conv of m. */
size_t model_prepared_floats(const Model *m);
void model_run_free(ModelRun *r);

/* out [N, C, H, W] = s(x, labels). x [N, C, H, W] is not modified and must
 * stay alive until model_backward. */
void model_forward(Model *m, ModelRun *r, float *out, const float *x, const int *labels, Shape s);
/* grads += d(sum(dout * out))/dparams; dx (may be NULL) += d/dx. */
void model_backward(Model *m, ModelRun *r, float *dx, const float *dout);

#endif
