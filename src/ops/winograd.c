/* winograd.c: 3x3 convolutions by Winograd's minimal filtering F(m x m, 3x3)
 * (Lavin & Gray 2016), with the transformed-domain products done by sgemm.
 *
 * Dilation d: output pixel (h, w) reads only pixels of its own phase
 * (h mod d, w mod d), so a d-dilated conv is d*d ordinary 3x3 convs (pad 1)
 * on the phase-decimated subgrids; tiles are taken on those subgrids.
 *
 * With alpha = m + 2 and xi = one of the alpha^2 transform points:
 *   U[xi][co][ci] = (G g G^T)          weights
 *   V[xi][ci][t]  = (B^T d_t B)        input tile t (alpha x alpha)
 *   M[xi][co][t]  = sum_ci U V         (alpha^2 sgemms)
 *   y_t           = A^T M_t A          (m x m outputs)
 * and the backward pass uses the adjoints:
 *   dM_t = A dy_t A^T,  dV = U^T dM,  dx_t += B dV_t B^T,
 *   dU = dM V^T,  dg += G^T dU G.
 * Tiles are read from (and written to) phase-decimated, zero-padded copies
 * of the images, so the transforms need no bounds checks; they run on
 * blocks of LANES tiles (or weights) so the compiler vectorises across them. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"

#define LANES 16
#define AMAX 6

typedef struct {
    int m, alpha;
    float BT[AMAX][AMAX], G[AMAX][3], AT[4][AMAX];
} Wino;

static const Wino F2 = {
    2, 4,
    {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}},
    {{1, 0, 0}, {0.5f, 0.5f, 0.5f}, {0.5f, -0.5f, 0.5f}, {0, 0, 1}},
    {{1, 1, 1, 0}, {0, 1, -1, -1}}};

static const Wino F4 = {
    4, 6,
    {{4, 0, -5, 0, 1, 0},
     {0, -4, -4, 1, 1, 0},
     {0, 4, -4, -1, 1, 0},
     {0, -2, -1, 2, 1, 0},
     {0, 2, -1, -2, 1, 0},
     {0, 4, 0, -5, 0, 1}},
    {{1.0f / 4, 0, 0},
     {-1.0f / 6, -1.0f / 6, -1.0f / 6},
     {-1.0f / 6, 1.0f / 6, -1.0f / 6},
     {1.0f / 24, 1.0f / 12, 1.0f / 6},
     {1.0f / 24, -1.0f / 12, 1.0f / 6},
     {0, 0, 1}},
    {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}}};

static const Wino *pick(int algo) { return algo == CONV_WINOGRAD2 ? &F2 : &F4; }

/* Phase-decimated, zero-padded planes: for channel c, sample n and phase
 * (ph, pw), subgrid pixel (i, j) = image pixel (ph + d*i, pw + d*j) sits at
 * row i + 1, column j + 1 of a PH x PW plane; the rest is zero. Planes are
 * ordered [c][n][ph][pw]. Every phase gets the grid of th x tw tiles of the
 * largest subgrid, and tile t = ((n*d + ph)*d + pw)*th*tw + ti*tw + tj
 * reads the window at row ti*m, column tj*m of its plane. */
typedef struct {
    int d, m, alpha, th, tw, PH, PW, T;
    size_t plane, per_c; /* floats per plane, per channel */
} Grid;

static Grid make_grid(Shape s, int d, const Wino *w)
{
    Grid g;
    g.d = d;
    g.m = w->m;
    g.alpha = w->alpha;
    int Hp = (s.H + d - 1) / d, Wp = (s.W + d - 1) / d;
    g.th = (Hp + g.m - 1) / g.m;
    g.tw = (Wp + g.m - 1) / g.m;
    g.PH = g.th * g.m + 2;
    g.PW = g.tw * g.m + 2;
    g.plane = (size_t)g.PH * g.PW;
    g.T = s.N * d * d * g.th * g.tw;
    g.per_c = (size_t)s.N * d * d * g.plane;
    return g;
}

static size_t tile_offset(const Grid *g, int t)
{
    int per = g->th * g->tw, r = t % per;
    return (size_t)(t / per) * g->plane + (size_t)(r / g->tw) * g->m * g->PW + (size_t)(r % g->tw) * g->m;
}

/* planes <- x [N][C][H][W] */
static void decimate(float *planes, const float *x, Shape s, const Grid *g)
{
    int d = g->d;
    memset(planes, 0, g->per_c * s.C * sizeof(float));
    for (int n = 0; n < s.N; n++)
        for (int c = 0; c < s.C; c++) {
            const float *xp = x + ((size_t)n * s.C + c) * s.H * s.W;
            float *base = planes + (size_t)c * g->per_c + (size_t)n * d * d * g->plane;
            for (int h = 0; h < s.H; h++)
                for (int pw = 0; pw < d && pw < s.W; pw++) {
                    float *row = base + (size_t)((h % d) * d + pw) * g->plane + (size_t)(h / d + 1) * g->PW + 1;
                    const float *src = xp + (size_t)h * s.W + pw;
                    for (int j = 0; pw + d * j < s.W; j++) row[j] = src[d * j];
                }
        }
}

/* y [N][C][H][W] (+)= the image part of planes */
static void undecimate(float *y, const float *planes, Shape s, const Grid *g, int accumulate)
{
    int d = g->d;
    for (int n = 0; n < s.N; n++)
        for (int c = 0; c < s.C; c++) {
            float *yp = y + ((size_t)n * s.C + c) * s.H * s.W;
            const float *base = planes + (size_t)c * g->per_c + (size_t)n * d * d * g->plane;
            for (int h = 0; h < s.H; h++)
                for (int pw = 0; pw < d && pw < s.W; pw++) {
                    const float *row = base + (size_t)((h % d) * d + pw) * g->plane + (size_t)(h / d + 1) * g->PW + 1;
                    float *dst = yp + (size_t)h * s.W + pw;
                    if (accumulate)
                        for (int j = 0; pw + d * j < s.W; j++) dst[d * j] += row[j];
                    else
                        for (int j = 0; pw + d * j < s.W; j++) dst[d * j] = row[j];
                }
        }
}

size_t wino_work_floats(Shape s, int cout, int d, int algo)
{
    const Wino *w = pick(algo);
    Grid g = make_grid(s, d, w);
    size_t T = (size_t)g.T, a2 = (size_t)w->alpha * w->alpha;
    size_t cmax = (size_t)(s.C > cout ? s.C : cout);
    /* U, dU; V; M; dV; padded planes of the wider side; tile offsets */
    return 2 * a2 * cout * s.C + 2 * a2 * s.C * T + a2 * cout * T + cmax * g.per_c +
           T * (sizeof(size_t) / sizeof(float) + 1) + 64;
}

/* out[i][j][l] = sum_k,q L[i][k] in[k][q][l] R[j][q] for every lane l:
 * the 2-D transform L X R^T of LANES tiles at once (zeros of L, R skipped). */
static void transform2d(float out[AMAX][AMAX][LANES], float in[AMAX][AMAX][LANES], const float *L, int li,
                        int lk, const float *R, int rj, int rq)
{
    float t[AMAX][AMAX][LANES];
    for (int i = 0; i < li; i++)
        for (int q = 0; q < rq; q++) {
            float acc[LANES] = {0};
            for (int k = 0; k < lk; k++) {
                float c = L[i * AMAX + k];
                if (c == 0.0f) continue;
                for (int l = 0; l < LANES; l++) acc[l] += c * in[k][q][l];
            }
            memcpy(t[i][q], acc, sizeof acc);
        }
    for (int i = 0; i < li; i++)
        for (int j = 0; j < rj; j++) {
            float acc[LANES] = {0};
            for (int q = 0; q < rq; q++) {
                float c = R[j * AMAX + q];
                if (c == 0.0f) continue;
                for (int l = 0; l < LANES; l++) acc[l] += c * t[i][q][l];
            }
            memcpy(out[i][j], acc, sizeof acc);
        }
}

/* U[xi][co][ci] = G g G^T, LANES weights at a time. */
static void weight_transform(float *U, const float *g, int cout, int cin, const Wino *w)
{
    int a = w->alpha;
    size_t plane = (size_t)cout * cin;
    float Gm[AMAX * AMAX] = {0};
    for (int i = 0; i < a; i++)
        for (int k = 0; k < 3; k++) Gm[i * AMAX + k] = w->G[i][k];
    for (size_t p0 = 0; p0 < plane; p0 += LANES) {
        size_t nl = plane - p0 < LANES ? plane - p0 : LANES;
        float in[AMAX][AMAX][LANES] = {{{0}}}, out[AMAX][AMAX][LANES];
        for (size_t l = 0; l < nl; l++)
            for (int k = 0; k < 3; k++)
                for (int q = 0; q < 3; q++) in[k][q][l] = g[(p0 + l) * 9 + k * 3 + q];
        transform2d(out, in, Gm, a, 3, Gm, a, 3);
        for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) memcpy(U + (size_t)(i * a + j) * plane + p0, out[i][j], nl * sizeof(float));
    }
}

/* dg[co][ci] += G^T dU G */
static void weight_transform_adjoint(float *dg, const float *dU, int cout, int cin, const Wino *w)
{
    int a = w->alpha;
    size_t plane = (size_t)cout * cin;
    float Gt[AMAX * AMAX] = {0};
    for (int i = 0; i < a; i++)
        for (int k = 0; k < 3; k++) Gt[k * AMAX + i] = w->G[i][k];
    for (size_t p0 = 0; p0 < plane; p0 += LANES) {
        size_t nl = plane - p0 < LANES ? plane - p0 : LANES;
        float in[AMAX][AMAX][LANES] = {{{0}}}, out[AMAX][AMAX][LANES];
        for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) memcpy(in[i][j], dU + (size_t)(i * a + j) * plane + p0, nl * sizeof(float));
        transform2d(out, in, Gt, 3, a, Gt, 3, a);
        for (size_t l = 0; l < nl; l++)
            for (int k = 0; k < 3; k++)
                for (int q = 0; q < 3; q++) dg[(p0 + l) * 9 + k * 3 + q] += out[k][q][l];
    }
}

/* X[xi][c][t] = L win_t R^T for the windows (rows x cols) of every tile:
 * the input transform (L = R = B^T, alpha x alpha windows) and the
 * adjoint output transform (L = R = A, m x m windows at +1, +1). */
static void gather_transform(float *X, const float *planes, int C, const Grid *g, const size_t *off, int rows,
                             int shift, const float *L)
{
    int a = g->alpha, T = g->T;
    size_t plane = (size_t)C * T;
    for (int c = 0; c < C; c++) {
        const float *pc = planes + (size_t)c * g->per_c + (size_t)shift * g->PW + shift;
        for (int t0 = 0; t0 < T; t0 += LANES) {
            int nl = T - t0 < LANES ? T - t0 : LANES;
            float in[AMAX][AMAX][LANES], out[AMAX][AMAX][LANES];
            size_t o[LANES];
            for (int l = 0; l < LANES; l++) o[l] = off[t0 + (l < nl ? l : 0)];
            for (int k = 0; k < rows; k++)
                for (int q = 0; q < rows; q++) {
                    const float *src = pc + (size_t)k * g->PW + q;
                    for (int l = 0; l < LANES; l++) in[k][q][l] = src[o[l]];
                }
            transform2d(out, in, L, a, rows, L, a, rows);
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++)
                    memcpy(X + (size_t)(i * a + j) * plane + (size_t)c * T + t0, out[i][j], sizeof(float) * nl);
        }
    }
}

/* planes (window of each tile) (+)= L X_t R^T: the output transform
 * (L = R = A^T, m x m windows at +1, +1, written) and the adjoint input
 * transform (L = R = B, alpha x alpha windows, added: windows overlap). */
static void transform_scatter(float *planes, const float *X, int C, const Grid *g, const size_t *off, int rows,
                              int shift, const float *L, int add)
{
    int a = g->alpha, T = g->T;
    size_t plane = (size_t)C * T;
    for (int c = 0; c < C; c++) {
        float *pc = planes + (size_t)c * g->per_c + (size_t)shift * g->PW + shift;
        for (int t0 = 0; t0 < T; t0 += LANES) {
            int nl = T - t0 < LANES ? T - t0 : LANES;
            float in[AMAX][AMAX][LANES], out[AMAX][AMAX][LANES];
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++) {
                    memcpy(in[i][j], X + (size_t)(i * a + j) * plane + (size_t)c * T + t0, sizeof(float) * nl);
                    for (int l = nl; l < LANES; l++) in[i][j][l] = 0.0f;
                }
            transform2d(out, in, L, rows, a, L, rows, a);
            for (int l = 0; l < nl; l++) {
                float *win = pc + off[t0 + l];
                for (int k = 0; k < rows; k++)
                    for (int q = 0; q < rows; q++) {
                        if (add) win[(size_t)k * g->PW + q] += out[k][q][l];
                        else win[(size_t)k * g->PW + q] = out[k][q][l];
                    }
            }
        }
    }
}

typedef struct {
    const Wino *w;
    Grid g;
    int a2;
    float *U, *dU, *V, *M, *dV, *planes;
    size_t *off;
    float BT[AMAX * AMAX], B[AMAX * AMAX], AT[AMAX * AMAX], A[AMAX * AMAX];
} Plan;

static Plan plan(Shape s, int cout, int d, int algo, float *work)
{
    Plan p;
    memset(&p, 0, sizeof p);
    p.w = pick(algo);
    p.g = make_grid(s, d, p.w);
    int a = p.w->alpha, m = p.w->m;
    p.a2 = a * a;
    size_t a2 = (size_t)p.a2, T = (size_t)p.g.T, cmax = (size_t)(s.C > cout ? s.C : cout);
    p.U = work;
    p.dU = p.U + a2 * cout * s.C;
    p.V = p.dU + a2 * cout * s.C;
    p.M = p.V + a2 * s.C * T;
    p.dV = p.M + a2 * cout * T;
    p.planes = p.dV + a2 * s.C * T;
    p.off = (size_t *)(p.planes + cmax * p.g.per_c);
    for (int t = 0; t < p.g.T; t++) p.off[t] = tile_offset(&p.g, t);
    for (int i = 0; i < a; i++)
        for (int k = 0; k < a; k++) {
            p.BT[i * AMAX + k] = p.w->BT[i][k];
            p.B[i * AMAX + k] = p.w->BT[k][i];
        }
    for (int i = 0; i < m; i++)
        for (int k = 0; k < a; k++) {
            p.AT[i * AMAX + k] = p.w->AT[i][k];
            p.A[k * AMAX + i] = p.w->AT[i][k];
        }
    return p;
}

void wino_forward(float *out, const float *in, const float *w, const float *b, Shape s, int cout, int d,
                  int accumulate, int algo, float *work)
{
    Plan p = plan(s, cout, d, algo, work);
    int T = p.g.T, C = s.C, m = p.w->m, a = p.w->alpha;
    weight_transform(p.U, w, cout, C, p.w);
    decimate(p.planes, in, s, &p.g);
    gather_transform(p.V, p.planes, C, &p.g, p.off, a, 0, p.BT);
    for (int xi = 0; xi < p.a2; xi++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout, T, C, 1.0f, p.U + (size_t)xi * cout * C, C,
                    p.V + (size_t)xi * C * T, T, 0.0f, p.M + (size_t)xi * cout * T, T);
    Shape so = s;
    so.C = cout;
    transform_scatter(p.planes, p.M, cout, &p.g, p.off, m, 1, p.AT, 0);
    /* add the bias on the planes' image part while copying out */
    undecimate(out, p.planes, so, &p.g, accumulate);
    size_t P = (size_t)s.H * s.W;
    for (int n = 0; n < s.N; n++)
        for (int co = 0; co < cout; co++) {
            float *y = out + ((size_t)n * cout + co) * P, bias = b[co];
            for (size_t i = 0; i < P; i++) y[i] += bias;
        }
}

void wino_backward(float *din, float *dw, const float *dout, const float *in, const float *w, Shape s, int cout,
                   int d, int algo, float *work)
{
    Plan p = plan(s, cout, d, algo, work);
    int T = p.g.T, C = s.C, m = p.w->m, a = p.w->alpha;
    Shape so = s;
    so.C = cout;
    decimate(p.planes, dout, so, &p.g);
    gather_transform(p.M, p.planes, cout, &p.g, p.off, m, 1, p.A); /* M holds dM */
    if (dw) {
        decimate(p.planes, in, s, &p.g);
        gather_transform(p.V, p.planes, C, &p.g, p.off, a, 0, p.BT);
        for (int xi = 0; xi < p.a2; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cout, C, T, 1.0f, p.M + (size_t)xi * cout * T, T,
                        p.V + (size_t)xi * C * T, T, 0.0f, p.dU + (size_t)xi * cout * C, C);
        weight_transform_adjoint(dw, p.dU, cout, C, p.w);
    }
    if (din) {
        weight_transform(p.U, w, cout, C, p.w);
        for (int xi = 0; xi < p.a2; xi++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, T, cout, 1.0f, p.U + (size_t)xi * cout * C, C,
                        p.M + (size_t)xi * cout * T, T, 0.0f, p.dV + (size_t)xi * C * T, T);
        memset(p.planes, 0, p.g.per_c * C * sizeof(float));
        transform_scatter(p.planes, p.dV, C, &p.g, p.off, a, 0, p.B, 1);
        undecimate(din, p.planes, s, &p.g, 1);
    }
}
