/* head.c: the output head of the score network, after the end conv.
 *
 * Per sample and channel, over the P = H*W pixels of the end conv's output o
 * and of the input x, with k = 1/sigma (scale_by_sigma) or 1, times
 * c = s_d / sqrt(sigma^2 + s_d^2) when head_sigma_data s_d is above 0:
 *
 *   default      s = k o
 *   plane_head   s = k Q o + (Pi o - x) / (sigma^2 + floor^2)
 *
 * Pi projects onto the plane spanned by the constant image and the input's
 * own centred pattern u = (x - mean x) / |x - mean x|, Q = I - Pi, and
 * Pi x = x. The network cannot see where its input lies in that plane:
 * every path passes an instance norm, which removes each channel's mean and
 * (nearly) its scale. So there the output is read as a prediction of the
 * clean image, as a denoiser would give it, and the score follows from it;
 * the floor bounds the weight of that prediction at the smallest levels.
 * Elsewhere the output keeps its usual meaning. docs/quality.md has the
 * measurements behind it.
 *
 * With s_d, the denoiser's step x + sigma^2 s moves by sigma c o: about
 * sigma at the small levels and s_d at the large ones, where the clean
 * image is all that is unknown. head_loss_weight (sigma^2 + s_d^2) / s_d^2
 * then makes the target of o about unit size at every level, as in
 * Karras et al. (2022), whose c_out and loss weight these are for a skip
 * weight of 1. */
#include "ncsn/head.h"

#include <math.h>
#include <string.h>

static double mean_of(const float *v, size_t P)
{
    double sum = 0;
    for (size_t i = 0; i < P; i++) sum += v[i];
    return sum / (double)P;
}

/* mean of x and |x - mean x| of one plane */
static void plane_geom(const float *x, size_t P, double *xbar, double *r)
{
    *xbar = mean_of(x, P);
    double ss = 0;
    for (size_t i = 0; i < P; i++) ss += (x[i] - *xbar) * (x[i] - *xbar);
    *r = sqrt(ss);
}

/* v . u, with u = (x - xbar) / r, or 0 when x is constant */
static double dot_u(const float *v, const float *x, double xbar, double r, size_t P)
{
    if (r <= 0) return 0;
    double sum = 0;
    for (size_t i = 0; i < P; i++) sum += v[i] * (x[i] - xbar);
    return sum / r;
}

static double head_scale(const NcsnConfig *cfg, const float *sigmas, int label)
{
    double sg = sigmas[label], sd = cfg->head_sigma_data;
    double k = cfg->scale_by_sigma ? 1.0 / sg : 1.0;
    return sd > 0 ? k * sd / sqrt(sg * sg + sd * sd) : k;
}

double head_loss_weight(const NcsnConfig *cfg, float sigma)
{
    double sd = cfg->head_sigma_data;
    return sd > 0 ? ((double)sigma * sigma + sd * sd) / (sd * sd) : 1.0;
}

static double head_d2(const NcsnConfig *cfg, const float *sigmas, int label)
{
    double sg = sigmas[label];
    return sg * sg + cfg->head_floor * cfg->head_floor;
}

void head_forward(const NcsnConfig *cfg, const float *sigmas, float *out, float *raw, const float *x,
                  const int *labels, Shape s)
{
    size_t P = (size_t)s.H * (size_t)s.W;
    if (raw && cfg->plane_head) memcpy(raw, out, shape_count(s) * sizeof(float));
    for (int n = 0; n < s.N; n++) {
        double k = head_scale(cfg, sigmas, labels[n]);
        for (int c = 0; c < s.C; c++) {
            size_t off = ((size_t)n * s.C + c) * P;
            float *o = out + off;
            if (!cfg->plane_head) {
                for (size_t i = 0; i < P; i++) o[i] = (float)(k * o[i]);
                continue;
            }
            const float *xp = x + off;
            double xbar, r, d2 = head_d2(cfg, sigmas, labels[n]);
            plane_geom(xp, P, &xbar, &r);
            double obar = mean_of(o, P), ou = dot_u(o, xp, xbar, r, P);
            for (size_t i = 0; i < P; i++) {
                double ui = r > 0 ? (xp[i] - xbar) / r : 0, par = obar + ou * ui;
                o[i] = (float)(k * (o[i] - par) + (par - xp[i]) / d2);
            }
        }
    }
}

/* With g = dout: do = k Q g + Pi g / d2 and
 * dx += (1/d2 - k) ((o.u) Q g + (g.u) Q o) / r - g / d2,
 * since the gradient of a.u in x is Q a / r for a fixed a. */
void head_backward(const NcsnConfig *cfg, const float *sigmas, float *dout_o, float *dx, const float *dout,
                   const float *raw, const float *x, const int *labels, Shape s)
{
    size_t P = (size_t)s.H * (size_t)s.W;
    for (int n = 0; n < s.N; n++) {
        double k = head_scale(cfg, sigmas, labels[n]);
        for (int c = 0; c < s.C; c++) {
            size_t off = ((size_t)n * s.C + c) * P;
            const float *g = dout + off;
            float *dg = dout_o + off;
            if (!cfg->plane_head) {
                for (size_t i = 0; i < P; i++) dg[i] = (float)(k * g[i]);
                continue;
            }
            const float *xp = x + off, *o = raw + off;
            double xbar, r, d2 = head_d2(cfg, sigmas, labels[n]);
            plane_geom(xp, P, &xbar, &r);
            double gbar = mean_of(g, P), gu = dot_u(g, xp, xbar, r, P);
            for (size_t i = 0; i < P; i++) {
                double ui = r > 0 ? (xp[i] - xbar) / r : 0, par = gbar + gu * ui;
                dg[i] = (float)(k * (g[i] - par) + par / d2);
            }
            if (!dx) continue;
            float *dxp = dx + off;
            double obar = mean_of(o, P), ou = dot_u(o, xp, xbar, r, P), a = r > 0 ? (1 / d2 - k) / r : 0;
            for (size_t i = 0; i < P; i++) {
                double ui = r > 0 ? (xp[i] - xbar) / r : 0;
                double qg = g[i] - gbar - gu * ui, qo = o[i] - obar - ou * ui;
                dxp[i] += (float)(a * (ou * qg + gu * qo) - g[i] / d2);
            }
        }
    }
}
