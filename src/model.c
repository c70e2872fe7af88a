/* model.c: forward and backward of the NCSN score network (DESIGN.md 1).
 *
 * The forward pass reads like the PyTorch module; every block saves in the
 * run's cache what its backward needs (the inputs of convolutions and norms,
 * the outputs of ELUs, the norms' statistics). The backward pass mirrors the
 * forward from the end to the beginning and accumulates parameter gradients
 * into m->grads. Every norm in this network is followed by an ELU, so the
 * pair is one step here (norm_elu). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/head.h"
#include "ncsn/model.h"

typedef struct {
    const float *x; /* norm input [N, nf, H, W] */
    float *a;       /* ELU output [N, nf, H, W] */
    float *mean, *rstd; /* [N * nf] */
} NormEluCache;

typedef struct {
    const float *x;
    NormEluCache n1, n2;
    float *c1; /* conv1 output = norm2 input */
} RcuCache;

typedef struct {
    RcuCache u[2];
    float *mid; /* output of unit 0 */
} RcuBlockCache;

typedef struct {
    NormEluCache n[4];
    float *p[4]; /* pooled = conv input */
    float *h[4]; /* conv outputs */
} CrpCache;

typedef struct {
    RcuBlockCache in[2];
    float *hin[2];
    NormEluCache msf[2];
    float *fused; /* MSF output, or hin[0] with one input */
    CrpCache crp;
    float *pooled; /* CRP output */
    RcuBlockCache out;
} RefineCache;

struct ModelCache {
    const float *x;
    float *h0;
    RcuBlockCache stage[4];
    float *h[4];
    RefineCache refine[4];
    float *r[4];
    NormEluCache end;
    float *raw; /* the end conv's output, for the plane head's dx */
};

typedef struct {
    Model *m;
    ModelRun *r;
    Shape s; /* [N, nf, H, W] */
    const int *labels;
} Ctx;

void model_run_init(ModelRun *r)
{
    memset(r, 0, sizeof *r);
    arena_init(&r->act);
    arena_init(&r->tmp);
    r->cache = xcalloc(1, sizeof *r->cache);
    r->conv_algo = conv_algo_from_env();
}

/* A conv's kept transformed weights (keep_weights), by its weight offset. */
struct PreparedConv {
    size_t w;
    float *u; /* NULL: the conv has none (im2col, direct) */
};

void model_run_free(ModelRun *r)
{
    for (int i = 0; i < r->n_prepared; i++) free(r->prepared[i].u);
    free(r->prepared);
    arena_free(&r->act);
    arena_free(&r->tmp);
    free(r->work);
    free(r->cache);
    memset(r, 0, sizeof *r);
}

/* In inference mode (no backward pass will follow) a block's internal
 * activations are released when it returns; its output, allocated by the
 * caller before the call, stays. */
static size_t enter(const Ctx *c) { return arena_mark(&c->r->act); }
static void leave(const Ctx *c, size_t mark)
{
    if (c->r->inference) arena_release(&c->r->act, mark);
}

static float *P(const Ctx *c, size_t off) { return c->m->params + off; }
static float *G(const Ctx *c, size_t off) { return c->m->grads + off; }
static float *act(const Ctx *c) { return arena_alloc(&c->r->act, shape_count(c->s)); }
/* a gradient temporary, as is (tmp) or zeroed (tmpz) */
static float *tmp(const Ctx *c) { return arena_alloc(&c->r->tmp, shape_count(c->s)); }
static float *tmpz(const Ctx *c)
{
    float *p = tmp(c);
    vec_zero(p, shape_count(c->s));
    return p;
}

/* The kept transformed weights of conv L, made on its first use. */
static const float *prepared(const Ctx *c, const ConvLayer *L)
{
    ModelRun *r = c->r;
    for (int i = 0; i < r->n_prepared; i++)
        if (r->prepared[i].w == L->w) return r->prepared[i].u;
    size_t n = conv_prepared_floats(L->cin, L->cout, r->conv_algo);
    float *u = n ? xmalloc(n * sizeof(float)) : NULL;
    if (u) conv_prepare(u, P(c, L->w), L->cin, L->cout, r->conv_algo);
    if (!r->prepared) r->prepared = xcalloc((size_t)c->m->table.n, sizeof *r->prepared); /* convs < parameters */
    CHECK(r->n_prepared < c->m->table.n, "more convs than parameters");
    r->prepared[r->n_prepared++] = (struct PreparedConv){L->w, u};
    return u;
}

static void conv_fwd(const Ctx *c, const ConvLayer *L, float *out, const float *in, int accumulate)
{
    Shape s = c->s;
    s.C = L->cin;
    const float *prep = c->r->keep_weights ? prepared(c, L) : NULL;
    conv_forward(out, in, P(c, L->w), prep, P(c, L->b), s, L->cout, L->dil, accumulate, c->r->conv_algo,
                 c->r->work);
}

static void notify(const Ctx *c, size_t lo)
{
    if (c->r->grad_ready) c->r->grad_ready(c->r->grad_ready_ctx, lo);
}

static void conv_bwd(const Ctx *c, const ConvLayer *L, float *din, const float *dout, const float *in)
{
    Shape s = c->s;
    s.C = L->cin;
    conv_backward(din, G(c, L->w), G(c, L->b), dout, in, P(c, L->w), s, L->cout, L->dil, c->r->conv_algo, c->r->work);
    notify(c, SIZE_MAX);
}

/* a = ELU(norm(x)) */
static void norm_elu_fwd(const Ctx *c, const NormLayer *L, NormEluCache *k, const float *x)
{
    size_t nc = (size_t)c->s.N * c->s.C;
    k->x = x;
    k->a = act(c);
    k->mean = arena_alloc(&c->r->act, nc);
    k->rstd = arena_alloc(&c->r->act, nc);
    norm_elu_forward(k->a, k->mean, k->rstd, x, P(c, L->embed), c->labels, c->s, L->kind);
}

/* dx += d/dx given da */
static void norm_elu_bwd(const Ctx *c, const NormLayer *L, const NormEluCache *k, float *dx,
                         const float *da)
{
    norm_elu_backward(dx, G(c, L->embed), da, k->a, k->mean, k->rstd, k->x, P(c, L->embed), c->labels, c->s,
                      L->kind);
}

/* out = x + conv2(ELU(norm2(conv1(ELU(norm1(x)))))) */
static void rcu_fwd(const Ctx *c, const RcuLayer *L, RcuCache *k, float *out, const float *x)
{
    size_t mark = enter(c);
    k->x = x;
    norm_elu_fwd(c, &L->norm1, &k->n1, x);
    k->c1 = act(c);
    conv_fwd(c, &L->conv1, k->c1, k->n1.a, 0);
    norm_elu_fwd(c, &L->norm2, &k->n2, k->c1);
    vec_copy(out, x, shape_count(c->s));
    conv_fwd(c, &L->conv2, out, k->n2.a, 1);
    leave(c, mark);
}

static void rcu_bwd(const Ctx *c, const RcuLayer *L, const RcuCache *k, float *dx, const float *dout)
{
    size_t mark = arena_mark(&c->r->tmp);
    vec_add(dx, dout, shape_count(c->s));
    float *da2 = tmpz(c);
    conv_bwd(c, &L->conv2, da2, dout, k->n2.a);
    float *dc1 = tmpz(c);
    norm_elu_bwd(c, &L->norm2, &k->n2, dc1, da2);
    float *da1 = da2;
    vec_zero(da1, shape_count(c->s));
    conv_bwd(c, &L->conv1, da1, dc1, k->n1.a);
    norm_elu_bwd(c, &L->norm1, &k->n1, dx, da1);
    arena_release(&c->r->tmp, mark);
}

static void rcu_block_fwd(const Ctx *c, const RcuBlock *L, RcuBlockCache *k, float *out, const float *x)
{
    size_t mark = enter(c);
    k->mid = act(c);
    rcu_fwd(c, &L->units[0], &k->u[0], k->mid, x);
    rcu_fwd(c, &L->units[1], &k->u[1], out, k->mid);
    leave(c, mark);
}

static void rcu_block_bwd(const Ctx *c, const RcuBlock *L, const RcuBlockCache *k, float *dx,
                          const float *dout)
{
    size_t mark = arena_mark(&c->r->tmp);
    float *dmid = tmpz(c);
    rcu_bwd(c, &L->units[1], &k->u[1], dmid, dout);
    rcu_bwd(c, &L->units[0], &k->u[0], dx, dmid);
    arena_release(&c->r->tmp, mark);
}

/* out = x + sum_i h_i, h_{i+1} = conv_i(maxpool5(ELU(norm_i(h_i)))), h_0 = x */
static void crp_fwd(const Ctx *c, const RefineLayer *L, CrpCache *k, float *out, const float *x)
{
    size_t mark = enter(c);
    size_t n = shape_count(c->s);
    vec_copy(out, x, n);
    /* inference: each stage's output overwrites the previous one, whose
     * norm and pool are done with it before the conv writes */
    float *h_once = c->r->inference ? act(c) : NULL;
    const float *h = x;
    for (int i = 0; i < 4; i++) {
        size_t stage = enter(c);
        norm_elu_fwd(c, &L->crp_norms[i], &k->n[i], h);
        k->p[i] = act(c);
        maxpool5_forward(k->p[i], k->n[i].a, c->s);
        k->h[i] = h_once ? h_once : act(c);
        conv_fwd(c, &L->crp_convs[i], k->h[i], k->p[i], 0);
        vec_add(out, k->h[i], n);
        h = k->h[i];
        if (h_once) leave(c, stage);
    }
    leave(c, mark);
}

static void crp_bwd(const Ctx *c, const RefineLayer *L, const CrpCache *k, float *dx, const float *dout)
{
    size_t n = shape_count(c->s);
    size_t mark = arena_mark(&c->r->tmp);
    vec_add(dx, dout, n);
    float *dh = tmp(c); /* gradient of h[i] */
    vec_copy(dh, dout, n);
    float *dp = tmp(c), *da = tmp(c); /* zeroed in the loop */
    for (int i = 3; i >= 0; i--) {
        vec_zero(dp, n);
        vec_zero(da, n);
        conv_bwd(c, &L->crp_convs[i], dp, dh, k->p[i]);
        maxpool5_backward(da, dp, k->n[i].a, c->s);
        if (i == 0) {
            norm_elu_bwd(c, &L->crp_norms[0], &k->n[0], dx, da);
        } else {
            vec_copy(dh, dout, n);
            norm_elu_bwd(c, &L->crp_norms[i], &k->n[i], dh, da);
        }
    }
    arena_release(&c->r->tmp, mark);
}

/* RefineBlock: rcu_in per input, MSF when two, CRP, rcu_out. */
static void refine_fwd(const Ctx *c, const RefineLayer *L, RefineCache *k, float *out,
                       const float *x0, const float *x1)
{
    size_t mark = enter(c);
    const float *xs[2] = {x0, x1};
    for (int i = 0; i < L->n_in; i++) {
        k->hin[i] = act(c);
        rcu_block_fwd(c, &L->rcu_in[i], &k->in[i], k->hin[i], xs[i]);
    }
    if (L->n_in == 1) {
        k->fused = k->hin[0];
    } else {
        k->fused = act(c);
        for (int i = 0; i < 2; i++) {
            size_t branch = enter(c);
            norm_elu_fwd(c, &L->msf_norms[i], &k->msf[i], k->hin[i]);
            conv_fwd(c, &L->msf_convs[i], k->fused, k->msf[i].a, i > 0);
            leave(c, branch);
        }
    }
    k->pooled = act(c);
    crp_fwd(c, L, &k->crp, k->pooled, k->fused);
    rcu_block_fwd(c, &L->rcu_out, &k->out, out, k->pooled);
    leave(c, mark);
}

static void refine_bwd(const Ctx *c, const RefineLayer *L, const RefineCache *k, float *dx0,
                       float *dx1, const float *dout)
{
    size_t mark = arena_mark(&c->r->tmp);
    float *dpooled = tmpz(c);
    rcu_block_bwd(c, &L->rcu_out, &k->out, dpooled, dout);
    float *dfused = tmpz(c);
    crp_bwd(c, L, &k->crp, dfused, dpooled);
    float *dh[2] = {dfused, NULL};
    if (L->n_in == 2) {
        float *da = dpooled;
        for (int i = 0; i < 2; i++) {
            dh[i] = tmpz(c);
            vec_zero(da, shape_count(c->s));
            conv_bwd(c, &L->msf_convs[i], da, dfused, k->msf[i].a);
            norm_elu_bwd(c, &L->msf_norms[i], &k->msf[i], dh[i], da);
        }
    }
    float *dxs[2] = {dx0, dx1};
    for (int i = 0; i < L->n_in; i++) rcu_block_bwd(c, &L->rcu_in[i], &k->in[i], dxs[i], dh[i]);
    arena_release(&c->r->tmp, mark);
}

static Ctx make_ctx(Model *m, ModelRun *r, Shape in, const int *labels)
{
    Ctx c = {.m = m, .r = r, .s = in, .labels = labels};
    c.s.C = m->cfg.nf;
    return c;
}

/* Scratch for the largest conv: every dilation of the model, nf -> nf,
 * plus the begin and end convs. */
static size_t conv_scratch_floats(const NcsnConfig *cfg, Shape s, ConvAlgo algo)
{
    Shape feat = s;
    feat.C = cfg->nf;
    size_t need = conv_work_floats(s, cfg->nf, 1, algo);
    for (int i = -1; i < 4; i++) {
        size_t k = conv_work_floats(feat, cfg->nf, i < 0 ? 1 : cfg->dilations[i], algo);
        need = k > need ? k : need;
    }
    size_t k_end = conv_work_floats(feat, cfg->in_channels, 1, algo);
    return k_end > need ? k_end : need;
}

size_t model_run_floats(const NcsnConfig *cfg, Shape s, int inference)
{
    /* Arena peaks measured per N*H*W*nf float (nf 4..32, 8x8..32x32): the
     * forward pass keeps 183-188 for the backward pass, which needs 16-16.3
     * more for temporaries; a forward-only pass 17. The margin covers the
     * per-channel statistics and the plane head's extra map. */
    double per = (double)s.N * s.H * s.W * cfg->nf;
    double arena = inference ? 18.0 * per : 210.0 * per;
    return (size_t)arena + conv_scratch_floats(cfg, s, conv_algo_from_env());
}

size_t model_prepared_floats(const Model *m)
{
    ConvAlgo algo = conv_algo_from_env();
    size_t n = 0;
    for (int i = 0; i < m->table.n; i++) { /* every conv weight [cout, cin, 3, 3] */
        const ParamSpec *p = &m->table.specs[i];
        if (p->ndim == 4 && p->shape[2] == 3 && p->shape[3] == 3)
            n += conv_prepared_floats(p->shape[1], p->shape[0], algo);
    }
    return n;
}

void model_forward(Model *m, ModelRun *r, float *out, const float *x, const int *labels, Shape s)
{
    CHECK(s.C == m->cfg.in_channels, "input has %d channels, the model expects %d", s.C,
          m->cfg.in_channels);
    CHECK(!(m->cfg.scale_by_sigma || m->cfg.plane_head) || m->sigmas,
          "the model has no noise levels (sigmas not set)");
    arena_reset(&r->act);
    arena_reset(&r->tmp);
    size_t need = conv_scratch_floats(&m->cfg, s, r->conv_algo);
    if (r->work_floats < need) {
        free(r->work);
        r->work = xmalloc(need * sizeof(float));
        r->work_floats = need;
    }
    r->in_shape = s;
    r->labels = labels;
    Ctx c = make_ctx(m, r, s, labels);
    ModelCache *k = r->cache;
    const NetLayout *net = &m->net;
    k->x = x;
    k->h0 = act(&c);
    conv_fwd(&c, &net->begin_conv, k->h0, x, 0);
    const float *h = k->h0;
    for (int i = 0; i < 4; i++) {
        k->h[i] = act(&c);
        rcu_block_fwd(&c, &net->stage[i], &k->stage[i], k->h[i], h);
        h = k->h[i];
    }
    for (int i = 3; i >= 0; i--) {
        k->r[i] = act(&c);
        refine_fwd(&c, &net->refine[i], &k->refine[i], k->r[i], k->h[i], i == 3 ? NULL : k->r[i + 1]);
    }
    norm_elu_fwd(&c, &net->end_norm, &k->end, k->r[0]);
    conv_fwd(&c, &net->end_conv, out, k->end.a, 0);
    k->raw = r->inference || !m->cfg.plane_head ? NULL : arena_alloc(&r->act, shape_count(s));
    head_forward(&m->cfg, m->sigmas, out, k->raw, x, labels, s);
}

void model_backward(Model *m, ModelRun *r, float *dx, const float *dout)
{
    CHECK(!r->inference, "model_backward after an inference-mode forward pass");
    CHECK(m->grads, "model_backward on a model without gradients (model_drop_grads)");
    Shape s = r->in_shape;
    Ctx c = make_ctx(m, r, s, r->labels);
    const ModelCache *k = r->cache;
    const NetLayout *net = &m->net;
    size_t mark = arena_mark(&r->tmp);

    /* out = head(conv(a), x): through the head first. */
    float *dscaled = arena_alloc(&r->tmp, shape_count(s));
    head_backward(&m->cfg, m->sigmas, dscaled, dx, dout, k->raw, k->x, r->labels, s);
    float *da = tmpz(&c);
    Shape end_in = c.s;
    conv_backward(da, G(&c, net->end_conv.w), G(&c, net->end_conv.b), dscaled, k->end.a,
                  P(&c, net->end_conv.w), end_in, net->end_conv.cout, 1, r->conv_algo, r->work);
    float *dr[4], *dh[4];
    for (int i = 0; i < 4; i++) {
        dr[i] = tmpz(&c);
        dh[i] = tmpz(&c);
    }
    norm_elu_bwd(&c, &net->end_norm, &k->end, dr[0], da);
    /* The buffer is laid out in forward order and each block below is done
     * with its parameters once its backward returns: tell the reducer. */
    notify(&c, net->end_norm.embed);
    for (int i = 0; i < 4; i++) {
        refine_bwd(&c, &net->refine[i], &k->refine[i], dh[i], i == 3 ? NULL : dr[i + 1], dr[i]);
        notify(&c, net->refine[i].rcu_in[0].units[0].norm1.embed);
    }
    for (int i = 3; i >= 0; i--) {
        float *dprev = i > 0 ? dh[i - 1] : da;
        if (i == 0) vec_zero(da, shape_count(c.s));
        rcu_block_bwd(&c, &net->stage[i], &k->stage[i], dprev, dh[i]);
        notify(&c, net->stage[i].units[0].norm1.embed);
    }
    Shape in = s;
    conv_backward(dx, G(&c, net->begin_conv.w), G(&c, net->begin_conv.b), da, k->x,
                  P(&c, net->begin_conv.w), in, net->begin_conv.cout, 1, r->conv_algo, r->work);
    notify(&c, 0);
    arena_release(&r->tmp, mark);
}
