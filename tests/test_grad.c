/* test_grad.c: finite-difference checks of every op's backward and of the
 * whole DSM loss.
 *
 * For an op f and a fixed random r, the scalar J = sum(f(...) * r) is
 * evaluated in double from the float outputs; the analytic gradient of J
 * (the backward pass with dout = r) is compared with central differences
 * (J(t + e) - J(t - e)) / 2e on random coordinates of every input tensor.
 * The check is the relative error ||g_fd - g|| / ||g|| over the sampled
 * coordinates; a wrong sign, factor or index gives errors of order 1, while
 * float rounding gives about 1e-5 for single ops and 1e-3 for the network. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/loss.h"
#include "ncsn/model.h"
#include "ncsn/rng.h"

#define TOL_OP 1e-3  /* single ops: float rounding only */
#define TOL_NET 1e-2 /* whole network: also ELU/max-pool kinks near the step */
static int g_failed = 0;

static float *randn(size_t n, uint32_t tag, float scale)
{
    float *p = xmalloc(n * sizeof(float));
    rng_fill_normal(p, n, 1234, 99, tag, 0);
    for (size_t i = 0; i < n; i++) p[i] *= scale;
    return p;
}

/* One case: tensors to perturb, a forward that fills out, a backward that
 * accumulates gradients of sum(out * r) into grads[i]. */
typedef struct Case Case;
struct Case {
    const char *name;
    int n_in;
    float *in[5];
    size_t count[5];
    const char *in_name[5];
    float *grads[5];
    size_t n_out;
    float *out, *r;
    void (*forward)(Case *);
    void (*backward)(Case *);
    /* op parameters */
    Shape s;
    int cout, d, *labels;
    float *mean, *rstd, *work;
    double eps;
};

static double objective(Case *c)
{
    c->forward(c);
    double j = 0.0;
    for (size_t i = 0; i < c->n_out; i++) j += (double)c->out[i] * c->r[i];
    return j;
}

static void check_case(Case *c, int coords)
{
    for (int t = 0; t < c->n_in; t++) {
        c->grads[t] = xcalloc(c->count[t], sizeof(float));
    }
    c->forward(c);
    c->backward(c);
    for (int t = 0; t < c->n_in; t++) {
        double num = 0.0, den = 0.0;
        uint32_t w[4];
        for (int k = 0; k < coords; k++) {
            rng_block(w, 77, 1, (uint32_t)t, (uint32_t)k, 0);
            size_t i = w[0] % c->count[t];
            float keep = c->in[t][i];
            c->in[t][i] = keep + (float)c->eps;
            double jp = objective(c);
            c->in[t][i] = keep - (float)c->eps;
            double jm = objective(c);
            c->in[t][i] = keep;
            double fd = (jp - jm) / (2.0 * c->eps);
            num += (fd - c->grads[t][i]) * (fd - c->grads[t][i]);
            den += fd * fd;
        }
        double rel = sqrt(num / (den > 0 ? den : 1e-30));
        int ok = rel <= TOL_OP && den > 0;
        printf("%-34s d/%-6s rel.err %.2e %s\n", c->name, c->in_name[t], rel, ok ? "ok" : "FAIL");
        if (!ok) g_failed = 1;
        free(c->grads[t]);
    }
}

/* ---- conv ---- */
static ConvAlgo g_algo = CONV_IM2COL;
static void conv_f(Case *c)
{
    conv_forward(c->out, c->in[0], c->in[1], NULL, c->in[2], c->s, c->cout, c->d, 0, g_algo, c->work);
}
static void conv_b(Case *c) { conv_backward(c->grads[0], c->grads[1], c->grads[2], c->r, c->in[0], c->in[1], c->s, c->cout, c->d, g_algo, c->work); }

static const char *ALGO_NAME[] = {"auto", "im2col", "winograd F(2,3)", "winograd F(4,3)", "direct"};

static void test_conv(int d, ConvAlgo algo)
{
    Case c = {0};
    char name[64];
    g_algo = algo;
    snprintf(name, sizeof name, "conv3x3 d=%d %s", d, ALGO_NAME[algo]);
    c.name = name;
    c.s = (Shape){2, 5, 9, 19}; /* partial Winograd tiles, uneven phases, rows of 16 + 3 */
    c.cout = 6;
    c.d = d;
    c.n_in = 3;
    c.count[0] = shape_count(c.s);
    c.count[1] = (size_t)c.cout * c.s.C * 9;
    c.count[2] = (size_t)c.cout;
    c.in_name[0] = "x"; c.in_name[1] = "w"; c.in_name[2] = "b";
    for (int t = 0; t < 3; t++) c.in[t] = randn(c.count[t], (uint32_t)t + 10 * d, 1.0f);
    c.n_out = (size_t)c.s.N * c.cout * c.s.H * c.s.W;
    c.out = xmalloc(c.n_out * sizeof(float));
    c.r = randn(c.n_out, 50, 1.0f);
    size_t work_bytes = conv_work_floats(c.s, c.cout, d, algo) * sizeof(float);
    c.work = xmalloc(work_bytes);
    memset(c.work, 0xff, work_bytes); /* NaNs: the kernels must not read scratch they did not write */
    c.forward = conv_f;
    c.backward = conv_b;
    c.eps = 1e-2;
    check_case(&c, 200);
    /* and the forward agrees with im2col (the definition by sgemm) */
    if (algo != CONV_IM2COL) {
        float *ref = xmalloc(c.n_out * sizeof(float)), *work = xmalloc(conv_work_floats(c.s, c.cout, d, CONV_IM2COL) * sizeof(float));
        conv_forward(ref, c.in[0], c.in[1], NULL, c.in[2], c.s, c.cout, d, 0, CONV_IM2COL, work);
        conv_forward(c.out, c.in[0], c.in[1], NULL, c.in[2], c.s, c.cout, d, 0, algo, c.work);
        double num = 0, den = 0;
        for (size_t i = 0; i < c.n_out; i++) {
            num += (double)(c.out[i] - ref[i]) * (c.out[i] - ref[i]);
            den += (double)ref[i] * ref[i];
        }
        double rel = sqrt(num / den);
        int ok = rel < 1e-5;
        printf("%-34s vs im2col rel.err %.2e %s\n", name, rel, ok ? "ok" : "FAIL");
        if (!ok) g_failed = 1;
        free(ref);
        free(work);
    }
}

/* ---- conditional instance norm ---- */
static NormKind g_norm = NORM_CIN;
static void norm_f(Case *c) { norm_forward(c->out, c->mean, c->rstd, c->in[0], c->in[1], c->labels, c->s, g_norm); }
static void norm_b(Case *c) { norm_backward(c->grads[0], c->grads[1], c->r, c->mean, c->rstd, c->in[0], c->in[1], c->labels, c->s, g_norm); }

static int embed_width(NormKind kind, int C) { return (kind == NORM_CINPP ? 3 : 2) * C; }

static void test_norm(NormKind kind)
{
    Case c = {0};
    g_norm = kind;
    c.name = kind == NORM_CINPP ? "cond. instance norm++" : "cond. instance norm";
    c.s = (Shape){3, 4, 5, 6};
    int L = 3, labels[3] = {2, 0, 2};
    c.labels = labels;
    c.n_in = 2;
    c.count[0] = shape_count(c.s);
    c.count[1] = (size_t)L * embed_width(kind, c.s.C);
    c.in_name[0] = "x"; c.in_name[1] = "embed";
    c.in[0] = randn(c.count[0], 1, 2.0f);
    c.in[1] = randn(c.count[1], 2, 1.0f);
    c.n_out = c.count[0];
    c.out = xmalloc(c.n_out * sizeof(float));
    c.r = randn(c.n_out, 3, 1.0f);
    c.mean = xmalloc(12 * sizeof(float));
    c.rstd = xmalloc(12 * sizeof(float));
    c.forward = norm_f;
    c.backward = norm_b;
    c.eps = 1e-2;
    check_case(&c, 200);
}

/* ---- ELU ---- */
static void elu_f(Case *c) { elu_forward(c->out, c->in[0], c->n_out); }
static void elu_b(Case *c) { elu_backward(c->grads[0], c->r, c->out, c->n_out); }

/* The fused norm + ELU (what the network runs) against the two ops above,
 * forward and backward. */
static double max_rel(const float *a, const float *b, size_t n)
{
    double num = 0, den = 1e-30;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

static void test_norm_elu_fused(NormKind kind)
{
    Shape s = {3, 4, 5, 6};
    int L = 3, labels[3] = {1, 2, 1};
    size_t n = shape_count(s), ne = (size_t)L * embed_width(kind, s.C), nc = (size_t)s.N * s.C;
    float *x = randn(n, 60, 2.0f), *embed = randn(ne, 61, 1.0f), *da = randn(n, 62, 1.0f);
    float *a1 = xmalloc(n * sizeof(float)), *a2 = xmalloc(n * sizeof(float));
    float *m1 = xmalloc(nc * sizeof(float)), *r1 = xmalloc(nc * sizeof(float));
    float *m2 = xmalloc(nc * sizeof(float)), *r2 = xmalloc(nc * sizeof(float));
    float *dx1 = xcalloc(n, sizeof(float)), *dx2 = xcalloc(n, sizeof(float)), *dn = xcalloc(n, sizeof(float));
    float *de1 = xcalloc(ne, sizeof(float)), *de2 = xcalloc(ne, sizeof(float));
    norm_elu_forward(a1, m1, r1, x, embed, labels, s, kind);
    norm_forward(a2, m2, r2, x, embed, labels, s, kind);
    elu_forward(a2, a2, n);
    norm_elu_backward(dx1, de1, da, a1, m1, r1, x, embed, labels, s, kind);
    elu_backward(dn, da, a2, n);
    norm_backward(dx2, de2, dn, m2, r2, x, embed, labels, s, kind);
    double ef = max_rel(a1, a2, n), ex = max_rel(dx1, dx2, n), ee = max_rel(de1, de2, ne);
    int ok = ef < 1e-6 && ex < 1e-5 && ee < 1e-5;
    printf("%-34s out %.1e, d/x %.1e, d/embed %.1e vs norm then ELU %s\n",
           kind == NORM_CINPP ? "fused norm++ + ELU" : "fused norm + ELU", ef, ex, ee,
           ok ? "ok" : "FAIL");
    if (!ok) g_failed = 1;
    free(x), free(embed), free(da), free(a1), free(a2), free(m1), free(r1), free(m2), free(r2);
    free(dx1), free(dx2), free(dn), free(de1), free(de2);
}

static void test_elu(void)
{
    Case c = {0};
    c.name = "ELU";
    c.n_in = 1;
    c.count[0] = c.n_out = 500;
    c.in_name[0] = "x";
    c.in[0] = randn(500, 4, 2.0f);
    for (size_t i = 0; i < 500; i++) /* keep away from the kink at 0 */
        if (fabsf(c.in[0][i]) < 0.05f) c.in[0][i] = 0.5f;
    c.out = xmalloc(500 * sizeof(float));
    c.r = randn(500, 5, 1.0f);
    c.forward = elu_f;
    c.backward = elu_b;
    c.eps = 1e-3;
    check_case(&c, 200);
}

/* ---- max pool ---- */
static void pool_f(Case *c) { maxpool5_forward(c->out, c->in[0], c->s); }
static void pool_b(Case *c) { maxpool5_backward(c->grads[0], c->r, c->in[0], c->s); }

static void test_pool(void)
{
    Case c = {0};
    c.name = "max pool 5x5";
    c.s = (Shape){2, 3, 6, 9};
    c.n_in = 1;
    c.count[0] = c.n_out = shape_count(c.s);
    c.in_name[0] = "x";
    /* distinct values 0.1 apart, shuffled: no ties within eps */
    uint32_t *perm = xmalloc(c.count[0] * sizeof(uint32_t));
    rng_permutation(perm, (uint32_t)c.count[0], 5, 1, 0);
    c.in[0] = xmalloc(c.count[0] * sizeof(float));
    for (size_t i = 0; i < c.count[0]; i++) c.in[0][i] = 0.1f * (float)perm[i];
    c.out = xmalloc(c.n_out * sizeof(float));
    c.r = randn(c.n_out, 6, 1.0f);
    c.forward = pool_f;
    c.backward = pool_b;
    c.eps = 1e-2;
    check_case(&c, 200);
    free(perm);
}

/* ---- whole network: the DSM loss w.r.t. parameters and input ---- */
typedef struct {
    Model m;
    ModelRun run;
    DsmWork w;
    float *x, *noise;
    int labels[3];
    Shape s;
} Net;

static double net_loss(Net *n)
{
    memset(n->m.grads, 0, n->m.table.total * sizeof(float));
    return dsm_step(&n->m, &n->run, &n->w, n->x, n->labels, n->noise, n->s, 1.0f / n->s.N, NULL) / n->s.N;
}

/* sum(wout * s(x)) and its gradient in x, for the input-gradient check */
static double net_dot(Net *n, const float *wout, float *out)
{
    model_forward(&n->m, &n->run, out, n->x, n->labels, n->s);
    double v = 0;
    for (size_t i = 0; i < shape_count(n->s); i++) v += (double)wout[i] * out[i];
    return v;
}

static void test_input_grad(Net *n, const char *what)
{
    size_t count = shape_count(n->s);
    float *wout = randn(count, 23, 1.0f), *out = xmalloc(count * sizeof(float));
    float *dx = xcalloc(count, sizeof(float));
    net_dot(n, wout, out);
    model_backward(&n->m, &n->run, dx, wout);
    double num = 0, den = 0, eps = 1e-3;
    for (size_t i = 0; i < count; i += 3) {
        float keep = n->x[i];
        n->x[i] = keep + (float)eps;
        double lp = net_dot(n, wout, out);
        n->x[i] = keep - (float)eps;
        double lm = net_dot(n, wout, out);
        n->x[i] = keep;
        double fd = (lp - lm) / (2 * eps);
        num += (fd - dx[i]) * (fd - dx[i]);
        den += fd * fd;
    }
    double rel = sqrt(num / den);
    int ok = rel <= TOL_NET;
    printf("network output, %s  d/x rel.err %.2e %s\n", what, rel, ok ? "ok" : "FAIL");
    if (!ok) g_failed = 1;
    free(wout), free(out), free(dx);
}

static void test_network(int scale_by_sigma, int plane_head, NormKind norm, double sigma_data)
{
    Net n;
    memset(&n, 0, sizeof n);
    NcsnConfig cfg;
    config_default(&cfg);
    cfg.in_channels = 2;
    cfg.nf = 4;
    cfg.num_classes = 3;
    cfg.dilations[0] = 1; cfg.dilations[1] = 2; cfg.dilations[2] = 3; cfg.dilations[3] = 1;
    cfg.scale_by_sigma = scale_by_sigma;
    cfg.plane_head = plane_head;
    cfg.head_floor = 0.3f;
    cfg.head_sigma_data = sigma_data;
    cfg.norm = norm;
    model_init(&n.m, &cfg);
    float *p = randn(n.m.table.total, 20, 0.3f);
    memcpy(n.m.params, p, n.m.table.total * sizeof(float));
    free(p);
    float sig[3] = {1.0f, 0.5f, 0.2f};
    model_set_sigmas(&n.m, sig);
    model_run_init(&n.run);
    n.s = (Shape){3, 2, 6, 5};
    n.labels[0] = 0; n.labels[1] = 2; n.labels[2] = 1;
    n.x = randn(shape_count(n.s), 21, 0.5f);
    n.noise = randn(shape_count(n.s), 22, 1.0f);
    net_loss(&n);
    float *g = xmalloc(n.m.table.total * sizeof(float));
    memcpy(g, n.m.grads, n.m.table.total * sizeof(float));
    double num = 0, den = 0;
    uint32_t w[4];
    double eps = 1e-3;
    int used = 0;
    for (int k = 0; used < 300; k++) {
        rng_block(w, 78, 2, (uint32_t)(scale_by_sigma + 2 * plane_head + 4 * norm + 8 * (sigma_data > 0)), (uint32_t)k, 0);
        const ParamSpec *ps = &n.m.table.specs[w[0] % n.m.table.n];
        if (strncmp(ps->key, "refine4.msf", 11) == 0) continue;
        size_t i = ps->offset + w[1] % ps->count;
        float keep = n.m.params[i];
        n.m.params[i] = keep + (float)eps;
        double lp = net_loss(&n);
        n.m.params[i] = keep - (float)eps;
        double lm = net_loss(&n);
        n.m.params[i] = keep;
        double fd = (lp - lm) / (2 * eps);
        num += (fd - g[i]) * (fd - g[i]);
        den += fd * fd;
        used++;
    }
    double rel = sqrt(num / den);
    int ok = rel <= TOL_NET;
    char what[80];
    snprintf(what, sizeof what, "scale_by_sigma=%d plane_head=%d norm=%s sigma_data=%g", scale_by_sigma,
             plane_head, norm_kind_name(norm), sigma_data);
    printf("DSM loss, %s       d/params rel.err %.2e %s\n", what, rel, ok ? "ok" : "FAIL");
    if (!ok) g_failed = 1;
    test_input_grad(&n, what);
    free(g);
    dsm_work_free(&n.w);
    model_run_free(&n.run);
    model_free(&n.m);
    free(n.x);
    free(n.noise);
}

/* the vectorisable expm1 of the ELU against expm1 in double */
static void test_expm1(void)
{
    double worst = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -30.0f * (float)i / 200000.0f;
        double ref = expm1((double)x), got = ncsn_expm1_neg(x);
        double rel = fabs(got - ref) / (fabs(ref) > 1e-30 ? fabs(ref) : 1e-30);
        if (x != 0.0f && rel > worst) worst = rel;
    }
    int ok = worst < 5e-7;
    printf("%-34s max rel.err %.2e over [-30, 0] %s\n", "ELU expm1", worst, ok ? "ok" : "FAIL");
    if (!ok) g_failed = 1;
}

int main(void)
{
    test_expm1();
    for (int algo = CONV_IM2COL; algo <= CONV_DIRECT; algo++)
        for (int d = 1; d <= 3; d++) test_conv(d, (ConvAlgo)algo);
    test_norm(NORM_CIN);
    test_norm(NORM_CINPP);
    test_elu();
    test_norm_elu_fused(NORM_CIN);
    test_norm_elu_fused(NORM_CINPP);
    test_pool();
    test_network(1, 0, NORM_CIN, 0);
    test_network(0, 0, NORM_CIN, 0);
    test_network(1, 1, NORM_CIN, 0);
    test_network(0, 1, NORM_CIN, 0);
    test_network(1, 0, NORM_CINPP, 0);
    test_network(0, 1, NORM_CINPP, 0);
    test_network(1, 1, NORM_CIN, 0.5);
    test_network(1, 0, NORM_CIN, 0.5);
    test_network(1, 1, NORM_CINPP, 0.5);
    if (g_failed) printf("FAILED\n");
    return g_failed;
}
