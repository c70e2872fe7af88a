/* params.c: the parameter table and layer layout of the network, its
 * initialisation, and the noise levels.
 *
 * model_layout walks the module tree in the reference's registration order
 * and, for every layer, appends its parameters (state_dict key and PyTorch
 * shape) to the table. The same walk fills the layer descriptors that the
 * forward pass uses, so the checkpoint names, the buffer offsets and the
 * computation are one source of truth. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/model.h"
#include "ncsn/rng.h"

void config_default(NcsnConfig *cfg)
{
    cfg->in_channels = 3;
    cfg->nf = 128;
    cfg->num_classes = 10;
    for (int i = 0; i < 4; i++) cfg->dilations[i] = 1 << i;
    cfg->scale_by_sigma = 1;
    cfg->plane_head = 0;
    cfg->head_floor = 0.05;
    cfg->head_sigma_data = 0.0;
    cfg->norm = NORM_CIN;
}

const char *norm_kind_name(NormKind kind) { return kind == NORM_CINPP ? "cin++" : "cin"; }

int norm_kind_parse(const char *text, NormKind *kind)
{
    if (strcmp(text, "cin") == 0) *kind = NORM_CIN;
    else if (strcmp(text, "cin++") == 0) *kind = NORM_CINPP;
    else return 0;
    return 1;
}

const char *config_validate(const NcsnConfig *cfg)
{
    if (cfg->in_channels < 1 || cfg->in_channels > 64) return "in_channels must be in 1..64";
    if (cfg->nf < 1 || cfg->nf > 4096) return "nf must be in 1..4096";
    if (cfg->num_classes < 1 || cfg->num_classes > NCSN_MAX_LEVELS)
        return "num_classes must be in 1..4096";
    for (int i = 0; i < 4; i++)
        if (cfg->dilations[i] < 1 || cfg->dilations[i] > 1024)
            return "dilations must be positive integers (at most 1024)";
    if (cfg->scale_by_sigma != 0 && cfg->scale_by_sigma != 1) return "scale_by_sigma must be 0 or 1";
    if (cfg->plane_head != 0 && cfg->plane_head != 1) return "plane_head must be 0 or 1";
    if (!(cfg->head_floor >= 0.0 && cfg->head_floor <= 1e3)) return "head_floor must be in 0..1000";
    if (!(cfg->head_sigma_data >= 0.0 && cfg->head_sigma_data <= 1e3))
        return "head_sigma_data must be in 0..1000 (0: off)";
    if (cfg->norm != NORM_CIN && cfg->norm != NORM_CINPP) return "norm must be cin or cin++";
    if (cfg->norm == NORM_CINPP && cfg->nf < 2) return "norm cin++ needs nf >= 2 (a variance over the channels)";
    return NULL;
}

typedef struct {
    ParamTable *t;
    int cap;
    int L;
    NormKind norm;
} Builder;

static size_t add_param(Builder *b, int ndim, const int *shape, const char *fmt, ...)
{
    ParamTable *t = b->t;
    if (t->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        ParamSpec *grown = realloc(t->specs, (size_t)b->cap * sizeof *grown);
        CHECK(grown, "out of memory growing the parameter table");
        t->specs = grown;
    }
    ParamSpec *p = &t->specs[t->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(p->key, sizeof p->key, fmt, ap);
    va_end(ap);
    CHECK(len < (int)sizeof p->key, "parameter key too long");
    p->ndim = ndim;
    p->count = 1;
    for (int i = 0; i < ndim; i++) {
        p->shape[i] = shape[i];
        p->count *= (size_t)shape[i];
    }
    /* Keep every tensor 16-float aligned for vector loads. */
    p->offset = t->total;
    t->total += (p->count + 15) & ~(size_t)15;
    return p->offset;
}

static ConvLayer add_conv(Builder *b, int cin, int cout, int dil, const char *prefix)
{
    ConvLayer c = {.cin = cin, .cout = cout, .dil = dil};
    int ws[4] = {cout, cin, 3, 3};
    c.w = add_param(b, 4, ws, "%s.weight", prefix);
    c.b = add_param(b, 1, &cout, "%s.bias", prefix);
    return c;
}

static NormLayer add_norm(Builder *b, int c, const char *prefix)
{
    NormLayer n = {.c = c, .kind = b->norm};
    int es[2] = {b->L, (b->norm == NORM_CINPP ? 3 : 2) * c}; /* gamma | [alpha |] beta */
    n.embed = add_param(b, 2, es, "%s.embed.weight", prefix);
    return n;
}

static RcuBlock add_rcu_block(Builder *b, int nf, int dil, const char *prefix)
{
    RcuBlock blk;
    char p[NCSN_MAX_KEY];
    for (int u = 0; u < 2; u++) {
        RcuLayer *r = &blk.units[u];
        snprintf(p, sizeof p, "%s.units.%d.norm1", prefix, u);
        r->norm1 = add_norm(b, nf, p);
        snprintf(p, sizeof p, "%s.units.%d.conv1.conv", prefix, u);
        r->conv1 = add_conv(b, nf, nf, dil, p);
        snprintf(p, sizeof p, "%s.units.%d.norm2", prefix, u);
        r->norm2 = add_norm(b, nf, p);
        snprintf(p, sizeof p, "%s.units.%d.conv2.conv", prefix, u);
        r->conv2 = add_conv(b, nf, nf, dil, p);
    }
    return blk;
}

/* refine4 has one input but owns a one-branch MSF that never runs. */
static RefineLayer add_refine(Builder *b, int nf, int n_in, const char *prefix)
{
    RefineLayer r;
    memset(&r, 0, sizeof r);
    r.n_in = n_in;
    char p[NCSN_MAX_KEY];
    for (int i = 0; i < n_in; i++) {
        snprintf(p, sizeof p, "%s.rcu_in.%d", prefix, i);
        r.rcu_in[i] = add_rcu_block(b, nf, 1, p);
    }
    for (int i = 0; i < n_in; i++) {
        snprintf(p, sizeof p, "%s.msf.norms.%d", prefix, i);
        r.msf_norms[i] = add_norm(b, nf, p);
    }
    for (int i = 0; i < n_in; i++) {
        snprintf(p, sizeof p, "%s.msf.convs.%d", prefix, i);
        r.msf_convs[i] = add_conv(b, nf, nf, 1, p);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s.crp.norms.%d", prefix, i);
        r.crp_norms[i] = add_norm(b, nf, p);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s.crp.convs.%d", prefix, i);
        r.crp_convs[i] = add_conv(b, nf, nf, 1, p);
    }
    snprintf(p, sizeof p, "%s.rcu_out", prefix);
    r.rcu_out = add_rcu_block(b, nf, 1, p);
    return r;
}

static void model_layout(Model *m)
{
    const NcsnConfig *c = &m->cfg;
    Builder b = {.t = &m->table, .cap = 0, .L = c->num_classes, .norm = c->norm};
    NetLayout *net = &m->net;
    char p[NCSN_MAX_KEY];
    net->begin_conv = add_conv(&b, c->in_channels, c->nf, 1, "begin_conv");
    for (int s = 0; s < 4; s++) {
        snprintf(p, sizeof p, "stage%d", s + 1);
        net->stage[s] = add_rcu_block(&b, c->nf, c->dilations[s], p);
    }
    for (int i = 3; i >= 0; i--) {
        snprintf(p, sizeof p, "refine%d", i + 1);
        net->refine[i] = add_refine(&b, c->nf, i == 3 ? 1 : 2, p);
    }
    net->end_norm = add_norm(&b, c->nf, "end_norm");
    net->end_conv = add_conv(&b, c->nf, c->in_channels, 1, "end_conv");
}

void model_init(Model *m, const NcsnConfig *cfg)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const char *bad = config_validate(cfg);
    CHECK(!bad, "invalid model configuration: %s", bad);
    model_layout(m);
    m->params = xcalloc(m->table.total, sizeof(float));
    m->grads = xcalloc(m->table.total, sizeof(float));
}

size_t model_param_floats(const NcsnConfig *cfg)
{
    Model m;
    memset(&m, 0, sizeof m);
    m.cfg = *cfg;
    model_layout(&m);
    free(m.table.specs);
    return m.table.total;
}

size_t model_param_count(const Model *m)
{
    size_t n = 0;
    for (int i = 0; i < m->table.n; i++) n += m->table.specs[i].count;
    return n;
}

void model_drop_grads(Model *m)
{
    free(m->grads);
    m->grads = NULL;
}

void model_free(Model *m)
{
    free(m->table.specs);
    free(m->params);
    free(m->grads);
    free(m->sigmas);
    memset(m, 0, sizeof *m);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

void model_init_weights(Model *m, uint64_t seed)
{
    memset(m->params, 0, m->table.total * sizeof(float));
    for (int i = 0; i < m->table.n; i++) {
        const ParamSpec *p = &m->table.specs[i];
        float *w = m->params + p->offset;
        if (ends_with(p->key, "embed.weight") && m->cfg.norm == NORM_CINPP) {
            /* gamma and alpha ~ N(1, 0.02), one stream per row; beta 0 */
            int L = p->shape[0], width = p->shape[1], c = width / 3;
            for (int l = 0; l < L; l++) {
                float *row = w + (size_t)l * width;
                rng_fill_normal(row, 2 * (size_t)c, seed, RNG_INIT, (uint32_t)i, (uint32_t)l);
                for (int j = 0; j < 2 * c; j++) row[j] = 1.0f + 0.02f * row[j];
            }
        } else if (ends_with(p->key, "embed.weight")) {
            int L = p->shape[0], twoc = p->shape[1];
            for (int l = 0; l < L; l++)
                for (int j = 0; j < twoc / 2; j++) w[(size_t)l * twoc + j] = 1.0f;
        } else if (p->ndim == 4) {
            /* Xavier uniform: fan_in = 9*Cin, fan_out = 9*Cout. */
            double bound = sqrt(6.0 / (9.0 * p->shape[1] + 9.0 * p->shape[0]));
            rng_fill_uniform(w, p->count, seed, RNG_INIT, (uint32_t)i, 0, (float)-bound,
                             (float)bound);
        }
        /* biases stay 0 */
    }
}

void model_set_sigmas(Model *m, const float *sigmas)
{
    free(m->sigmas);
    m->sigmas = NULL;
    if (!sigmas) return;
    m->sigmas = xmalloc((size_t)m->cfg.num_classes * sizeof(float));
    memcpy(m->sigmas, sigmas, (size_t)m->cfg.num_classes * sizeof(float));
}

const char *make_sigmas(float *out, double begin, double end, int L)
{
    if (L < 2) return "make_sigmas needs at least 2 noise levels";
    if (!(end > 0.0)) return "sigma_end must be positive";
    if (!(begin > end)) return "sigma_begin must be greater than sigma_end";
    double lb = log(begin), le = log(end);
    for (int i = 0; i < L; i++) out[i] = (float)exp(lb + (le - lb) * (double)i / (double)(L - 1));
    return sigmas_validate(out, L);
}

const char *sigmas_validate(const float *sigmas, int L)
{
    for (int i = 0; i < L; i++) {
        if (!(sigmas[i] > 0.0f) || !isfinite(sigmas[i])) return "noise levels must be positive and finite";
        if (i > 0 && !(sigmas[i] < sigmas[i - 1])) return "noise levels must be strictly descending";
    }
    return NULL;
}
