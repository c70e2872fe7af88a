/* winograd.c: 3x3 convolutions by Winograd's minimal filtering F(m x m, 3x3)
 * (Lavin & Gray 2016), with the transformed-domain products done by gemm16
 * (gemm16.h: a kernel of our own on AVX-512, else OpenBLAS sgemm).
 *
 * Dilation d: output pixel (h, w) reads only pixels of its own phase
 * (h mod d, w mod d), so a d-dilated conv is d*d ordinary 3x3 convs (pad 1)
 * on the phase-decimated subgrids; tiles are taken on those subgrids.
 *
 * With alpha = m + 2 and xi = one of the alpha^2 transform points:
 *   U[xi][co][ci] = (G g G^T)          weights
 *   V[t][xi][ci]  = (B^T d_t B)        input tile t (alpha x alpha)
 *   M[t][xi][co]  = sum_ci U V         (alpha^2 products; the forward reads U
 *                                      transposed, Ut[xi][ci][co])
 *   y_t           = A^T M_t A          (m x m outputs)
 * and the backward pass uses the adjoints:
 *   dM_t = A dy_t A^T,  dV = U^T dM,  dx_t += B dV_t B^T,
 *   dU = dM V^T,  dg += G^T dU G.
 * Tiles are read from (and written to) phase-decimated, zero-padded copies
 * of the images, so the transforms need no bounds checks; they run on
 * LANES channels at once so the compiler vectorises across them.
 * A sample's whole convolution (decimate, transforms, the alpha^2 products,
 * the inverse) runs in one thread on buffers of one sample, which stay in
 * cache; the threads take whole samples, and the products run single-threaded.
 * The samples left over when the batch does not divide among the threads
 * (all of them when a rank holds fewer samples than threads) are instead
 * split inside: each thread takes a range of channel blocks in the
 * transforms and a range of the alpha^2 products. Each product and each
 * block's transform is the same call either way, so a sample's results do
 * not depend on how it was split (bitwise). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"
#include "gemm16.h"
#include "isa.h"

#define AMAX 6

/* F(m x m, 3x3): output tile m, input tile alpha = m + 2. The transform
 * matrices themselves are the FLAT tables below. */
typedef struct {
    int m, alpha;
} Wino;

static const Wino F2 = {2, 4};
static const Wino F4 = {4, 6};

static const Wino *pick(int algo) { return algo == CONV_WINOGRAD2 ? &F2 : &F4; }

/* The transform matrices (Lavin & Gray 2016), flattened with row stride AMAX, as compile-time
 * constants: the transforms below are inlined per F(m) so the compiler
 * folds the coefficients and drops the zero terms. */
#define FLAT(name, ...) static const float name[AMAX * AMAX] = {__VA_ARGS__}
FLAT(F2_BT, 1, 0, -1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, -1, 1, 0, 0, 0, 0, 1, 0, -1);
FLAT(F2_B, 1, 0, 0, 0, 0, 0, 0, 1, -1, 1, 0, 0, -1, 1, 1, 0, 0, 0, 0, 0, 0, -1);
FLAT(F2_AT, 1, 1, 1, 0, 0, 0, 0, 1, -1, -1);
FLAT(F2_A, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, -1, 0, 0, 0, 0, 0, -1);
FLAT(F2_G, 1, 0, 0, 0, 0, 0, 0.5f, 0.5f, 0.5f, 0, 0, 0, 0.5f, -0.5f, 0.5f, 0, 0, 0, 0, 0, 1);
FLAT(F2_GT, 1, 0.5f, 0.5f, 0, 0, 0, 0, 0.5f, -0.5f, 0, 0, 0, 0, 0.5f, 0.5f, 1);
FLAT(F4_BT, 4, 0, -5, 0, 1, 0, 0, -4, -4, 1, 1, 0, 0, 4, -4, -1, 1, 0, 0, -2, -1, 2, 1, 0, 0, 2, -1, -2, 1, 0,
     0, 4, 0, -5, 0, 1);
FLAT(F4_B, 4, 0, 0, 0, 0, 0, 0, -4, 4, -2, 2, 4, -5, -4, -4, -1, -1, 0, 0, 1, -1, 2, -2, -5, 1, 1, 1, 1, 1, 0,
     0, 0, 0, 0, 0, 1);
FLAT(F4_AT, 1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 0, 0, 1, 1, 4, 4, 0, 0, 1, -1, 8, -8, 1);
FLAT(F4_A, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, -1, 1, -1, 0, 0, 1, 2, 4, 8, 0, 0, 1, -2, 4, -8, 0, 0, 0, 0,
     0, 1);
FLAT(F4_G, 1.0f / 4, 0, 0, 0, 0, 0, -1.0f / 6, -1.0f / 6, -1.0f / 6, 0, 0, 0, -1.0f / 6, 1.0f / 6, -1.0f / 6, 0,
     0, 0, 1.0f / 24, 1.0f / 12, 1.0f / 6, 0, 0, 0, 1.0f / 24, -1.0f / 12, 1.0f / 6, 0, 0, 0, 0, 0, 1);
FLAT(F4_GT, 1.0f / 4, -1.0f / 6, -1.0f / 6, 1.0f / 24, 1.0f / 24, 0, 0, -1.0f / 6, 1.0f / 6, 1.0f / 12,
     -1.0f / 12, 0, 0, -1.0f / 6, -1.0f / 6, 1.0f / 6, 1.0f / 6, 1);

/* Phase-decimated, zero-padded, channel-blocked planes. Channels are taken
 * in blocks of CB = LANES (zero-padded up to a multiple); for channel block
 * b, sample n and phase (ph, pw), subgrid pixel (i, j) = image pixel
 * (ph + d*i, pw + d*j) of channel b*CB + l sits at [row i+1][col j+1][l] of
 * a PH x PW x CB plane, zeros elsewhere. Planes are ordered [b][n][ph][pw]
 * (the kernels below hold one sample: n = 0).
 * Every phase gets the grid of th x tw tiles of the largest subgrid, and
 * tile t = ((n*d + ph)*d + pw)*th*tw + ti*tw + tj reads the window at row
 * ti*m, column tj*m of its plane. The lanes of a transform are the CB
 * channels of one tile, which are contiguous here, and the transformed
 * tensors are [t][xi][channel] so those lanes stay contiguous there too,
 * and one tile's alpha^2 transformed vectors are written close together;
 * the products read the [t][channel] matrix of one xi with a row stride. */
#define CB LANES

static int round_up(int c) { return (c + CB - 1) / CB * CB; }

/* A range [b0, b1) of channel blocks or of transform points. */
typedef struct {
    int b0, b1;
} Range;

/* Thread th's share of n items split over nt threads. */
static Range share(int n, int th, int nt) { return (Range){n * th / nt, n * (th + 1) / nt}; }

typedef struct {
    int d, m, alpha, th, tw, PH, PW, T;
    size_t plane, per_b; /* floats per plane (PH*PW*CB), per channel block */
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
    g.plane = (size_t)g.PH * g.PW * CB;
    g.T = s.N * d * d * g.th * g.tw;
    g.per_b = (size_t)s.N * d * d * g.plane;
    return g;
}

static size_t tile_offset(const Grid *g, int t)
{
    int per = g->th * g->tw, r = t % per;
    return (size_t)(t / per) * g->plane + ((size_t)(r / g->tw) * g->m * g->PW + (size_t)(r % g->tw) * g->m) * CB;
}

/* Transposes the LANES x LANES matrix whose rows are r[0..LANES-1]: for
 * b = 8, 4, 2, 1 the two off-diagonal b x b blocks of every 2b x 2b block
 * swap places, each swap a two-vector shuffle with a constant mask
 * (element j of the pair's first row, and of its second). */
typedef int ivec __attribute__((vector_size(LANES * sizeof(int))));
INLINE void transpose_lanes(vec r[LANES])
{
    static const ivec mask[4][2] = {
        {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}, {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
        {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}, {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
        {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}, {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
        {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}, {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}},
    };
    for (int s = 0, b = LANES / 2; s < 4; s++, b /= 2)
        for (int i = 0; i < LANES; i++)
            if (!(i & b)) {
                vec lo = __builtin_shuffle(r[i], r[i + b], mask[s][0]);
                vec hi = __builtin_shuffle(r[i], r[i + b], mask[s][1]);
                r[i] = lo;
                r[i + b] = hi;
            }
}

/* The planes of one sample: channel block b, image row h starts at
 * row_of(b, h); image column w then sits at + col_of(w). */
static float *row_of(float *planes, const Grid *g, int b, int h)
{
    return planes + (size_t)b * g->per_b + (size_t)(h % g->d) * g->d * g->plane +
           ((size_t)(h / g->d + 1) * g->PW + 1) * CB;
}

static size_t col_of(const Grid *g, int w) { return (size_t)(w % g->d) * g->plane + (size_t)(w / g->d) * CB; }

/* Zeroes the part of a phase's plane that decimate does not write: the
 * border and whatever lies beyond the phase's rows x cols pixels. */
static void zero_pads(float *plane, int rows, int cols, const Grid *g)
{
    size_t row = (size_t)g->PW * CB;
    memset(plane, 0, row * sizeof(float));
    for (int i = 1; i <= rows; i++) {
        float *r = plane + (size_t)i * row;
        memset(r, 0, CB * sizeof(float));
        memset(r + (size_t)(cols + 1) * CB, 0, (size_t)(g->PW - cols - 1) * CB * sizeof(float));
    }
    memset(plane + (size_t)(rows + 1) * row, 0, (size_t)(g->PH - rows - 1) * row * sizeof(float));
}

/* pixels of phase ph on an axis of n pixels */
static int phase_len(int n, int ph, int d) { return ph < n ? (n - ph + d - 1) / d : 0; }

/* planes <- x [C][H][W] (one sample; channel blocks r). LANES pixels of LANES channels are
 * loaded as rows, transposed, and stored pixel by pixel. */
static void decimate(float *planes, const float *x, Shape s, const Grid *g, Range r)
{
    size_t HW = (size_t)s.H * s.W;
    for (int b = r.b0; b < r.b1; b++) {
        int nl = s.C - b * CB < CB ? s.C - b * CB : CB;
        const float *xb = x + (size_t)b * CB * HW;
        for (int ph = 0; ph < g->d; ph++)
            for (int pw = 0; pw < g->d; pw++)
                zero_pads(planes + (size_t)b * g->per_b + (size_t)(ph * g->d + pw) * g->plane,
                          phase_len(s.H, ph, g->d), phase_len(s.W, pw, g->d), g);
        for (int h = 0; h < s.H; h++) {
            float *row = row_of(planes, g, b, h);
            const float *src = xb + (size_t)h * s.W;
            int w = 0;
            for (; w + LANES <= s.W; w += LANES) {
                vec r[LANES];
                for (int l = 0; l < LANES; l++) r[l] = l < nl ? vload(src + l * HW + w) : (vec){0};
                transpose_lanes(r);
                for (int k = 0; k < LANES; k++) vstore(row + col_of(g, w + k), r[k]);
            }
            for (; w < s.W; w++) /* lanes past the last channel are zeros, as above */
                for (int l = 0; l < CB; l++) row[col_of(g, w) + l] = l < nl ? src[l * HW + w] : 0.0f;
        }
    }
}

/* y [C][H][W] (+)= the image part of planes (one sample) */
static void undecimate(float *y, float *planes, Shape s, const Grid *g, int accumulate, Range r)
{
    size_t HW = (size_t)s.H * s.W;
    for (int b = r.b0; b < r.b1; b++) {
        int nl = s.C - b * CB < CB ? s.C - b * CB : CB;
        float *yb = y + (size_t)b * CB * HW;
        for (int h = 0; h < s.H; h++) {
            const float *row = row_of(planes, g, b, h);
            float *dst = yb + (size_t)h * s.W;
            int w = 0;
            for (; w + LANES <= s.W; w += LANES) {
                vec r[LANES];
                for (int k = 0; k < LANES; k++) r[k] = vload(row + col_of(g, w + k));
                transpose_lanes(r);
                for (int l = 0; l < nl; l++)
                    vstore(dst + l * HW + w, accumulate ? vload(dst + l * HW + w) + r[l] : r[l]);
            }
            for (; w < s.W; w++)
                for (int l = 0; l < nl; l++)
                    dst[l * HW + w] = (accumulate ? dst[l * HW + w] : 0.0f) + row[col_of(g, w) + l];
        }
    }
}

/* out[i][j] = sum_k,q L[i][k] in[k][q] R[j][q]: the 2-D transform L X R^T
 * of LANES channels at once; with constant L and R the zero terms fold away. */
INLINE void transform2d(vec out[AMAX][AMAX], vec in[AMAX][AMAX], const float *L, int li, int lk, const float *R,
                        int rj, int rq)
{
    vec t[AMAX][AMAX];
    for (int i = 0; i < li; i++)
        for (int q = 0; q < rq; q++) {
            vec acc = {0};
            for (int k = 0; k < lk; k++)
                if (L[i * AMAX + k] != 0.0f) acc += L[i * AMAX + k] * in[k][q];
            t[i][q] = acc;
        }
    for (int i = 0; i < li; i++)
        for (int j = 0; j < rj; j++) {
            vec acc = {0};
            for (int q = 0; q < rq; q++)
                if (R[j * AMAX + q] != 0.0f) acc += R[j * AMAX + q] * t[i][q];
            out[i][j] = acc;
        }
}

/* F(4x4, 3x3) tile transforms written out with their common terms, about
 * half the additions of the matrix products above (which the compiler may
 * not regroup: that would change the rounding). Each is a 1-D transform
 * of LANES-wide vectors; the 2-D transform applies it down the columns,
 * then along the rows. */
INLINE void f4_bt(vec o[6], const vec d[6]) /* B^T d */
{
    vec u = d[1] + d[2], v = d[3] + d[4], p = d[1] - d[2], q = d[4] - d[3];
    vec e = d[4] - d[2], f = d[1] - d[3];
    o[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    o[1] = v - 4.0f * u;
    o[2] = q + 4.0f * p;
    o[3] = e - 2.0f * f;
    o[4] = e + 2.0f * f;
    o[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

INLINE void f4_b(vec o[6], const vec d[6]) /* B d */
{
    vec u = d[1] + d[2], v = d[3] + d[4], p = d[1] - d[2], q = d[3] - d[4];
    o[0] = 4.0f * d[0];
    o[1] = 4.0f * (d[5] - p) - 2.0f * q;
    o[2] = -5.0f * d[0] - 4.0f * u - v;
    o[3] = p + 2.0f * q - 5.0f * d[5];
    o[4] = d[0] + u + v;
    o[5] = d[5];
}

INLINE void f4_at(vec o[4], const vec d[6]) /* A^T d */
{
    vec s1 = d[1] + d[2], s2 = d[1] - d[2], s3 = d[3] + d[4], s4 = d[3] - d[4];
    o[0] = d[0] + s1 + s3;
    o[1] = s2 + 2.0f * s4;
    o[2] = s1 + 4.0f * s3;
    o[3] = s2 + 8.0f * s4 + d[5];
}

INLINE void f4_a(vec o[6], const vec d[4]) /* A d */
{
    vec e = d[0] + d[2], f = d[1] + d[3], g = d[0] + 4.0f * d[2], h = 2.0f * d[1] + 8.0f * d[3];
    o[0] = d[0];
    o[1] = e + f;
    o[2] = e - f;
    o[3] = g + h;
    o[4] = g - h;
    o[5] = d[3];
}

typedef enum { T_BT, T_B, T_AT, T_A } TileOp;

/* out = L in L^T for the F(4,3) matrix L of op: n inputs, k outputs per axis */
INLINE void f4_2d(vec out[AMAX][AMAX], vec in[AMAX][AMAX], TileOp op)
{
    int n = op == T_A ? 4 : 6, k = op == T_AT ? 4 : 6;
    vec col[AMAX], res[AMAX], t[AMAX][AMAX];
    for (int q = 0; q < n; q++) { /* down column q */
        for (int i = 0; i < n; i++) col[i] = in[i][q];
        if (op == T_BT) f4_bt(res, col);
        else if (op == T_B) f4_b(res, col);
        else if (op == T_AT) f4_at(res, col);
        else f4_a(res, col);
        for (int i = 0; i < k; i++) t[i][q] = res[i];
    }
    for (int i = 0; i < k; i++) { /* along row i */
        if (op == T_BT) f4_bt(out[i], t[i]);
        else if (op == T_B) f4_b(out[i], t[i]);
        else if (op == T_AT) f4_at(out[i], t[i]);
        else f4_a(out[i], t[i]);
    }
}

/* One row of the transformed weights for every transform point xi:
 * dst[xi * plane + c] for c < n, LANES at a time, where the lane c reads
 * the 3x3 kernel at g + c * lane_stride. For U[xi][co][.] (lanes over
 * input channels) the row is output channel co: g at co's first kernel,
 * lane_stride 9; for Ut[xi][ci][.] (lanes over output channels, the layout
 * the forward product reads as gemm16's B) the row is input channel ci:
 * g at ci's kernel of output channel 0, lane_stride cin * 9. Padding lanes
 * (c >= n) are left alone. The LANES kernels of a block are loaded as
 * vectors (LANES floats from each kernel's start, fewer before gend, the
 * end of the weights) and transposed, so that vector k holds tap k of
 * every lane: the taps gathered one float at a time through a stack
 * buffer cost 10-15 % more (one 128 -> 128 transform, 1 or 2 threads). */
INLINE void weight_transform_row(float *dst, const float *g, const float *gend, int n, size_t lane_stride,
                                 size_t plane, int a, const float *Gm)
{
    for (int c0 = 0; c0 < n; c0 += LANES) {
        int nl = n - c0 < LANES ? n - c0 : LANES;
        vec taps[LANES], in[AMAX][AMAX], out[AMAX][AMAX];
        for (int l = 0; l < LANES; l++) {
            const float *kernel = g + (size_t)(c0 + l) * lane_stride;
            if (l >= nl) taps[l] = (vec){0};
            else if (gend - kernel >= LANES) taps[l] = vload(kernel);
            else { /* the last kernels: only their 9 taps lie before gend */
                float last[LANES] = {0};
                memcpy(last, kernel, 9 * sizeof(float));
                taps[l] = vload(last);
            }
        }
        transpose_lanes(taps);
        for (int k = 0; k < 3; k++)
            for (int q = 0; q < 3; q++) in[k][q] = taps[k * 3 + q];
        transform2d(out, in, Gm, a, 3, Gm, a, 3);
        for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
                float *d = dst + (size_t)(i * a + j) * plane + c0;
                if (nl == LANES) { /* one vector store; a memcpy of nl floats was a call per point */
                    vstore(d, out[i][j]);
                    continue;
                }
                float res[LANES];
                vstore(res, out[i][j]);
                memcpy(d, res, nl * sizeof(float));
            }
    }
}

/* The OpenMP loops sit in the OPS_KERNEL functions themselves, so that
 * their outlined bodies are multiversioned too (isa.h). transposed: Ut
 * for the forward product, else U for the backward's. */
static OPS_KERNEL void weight_transform(float *U, const float *g, int cout, int cin, const Wino *w, int transposed)
{
    int a = w->alpha;
    size_t plane = (size_t)round_up(cout) * round_up(cin);
    const float *gend = g + (size_t)cout * cin * 9;
    if (cin % CB || cout % CB) vec_zero(U, (size_t)a * a * plane); /* the padding (none when both divide) */
    if (transposed) {
#pragma omp parallel for num_threads(ops_threads_for(cin, 20.0 * a * a * cout)) schedule(static)
        for (int ci = 0; ci < cin; ci++) {
            float *row = U + (size_t)ci * round_up(cout);
            if (w->m == 4) weight_transform_row(row, g + (size_t)ci * 9, gend, cout, (size_t)cin * 9, plane, 6, F4_G);
            else weight_transform_row(row, g + (size_t)ci * 9, gend, cout, (size_t)cin * 9, plane, 4, F2_G);
        }
        return;
    }
#pragma omp parallel for num_threads(ops_threads_for(cout, 20.0 * a * a * cin)) schedule(static)
    for (int co = 0; co < cout; co++) {
        float *row = U + (size_t)co * round_up(cin);
        if (w->m == 4) weight_transform_row(row, g + (size_t)co * cin * 9, gend, cin, 9, plane, 6, F4_G);
        else weight_transform_row(row, g + (size_t)co * cin * 9, gend, cin, 9, plane, 4, F2_G);
    }
}

/* dg[co][.] += G^T dU[.][co] G for one output channel co, where dU is the
 * sum of the threads' shares (the first at dU, each next one stride floats
 * on), added in thread order as they are read: the same sums as adding the
 * shares into one buffer first, without that buffer's two passes. */
INLINE void weight_transform_adjoint_co(float *dg, const float *dU, int shares, size_t stride, int co, int cin,
                                        size_t plane, int a, const float *Gt)
{
    int Cp = round_up(cin);
    for (int c0 = 0; c0 < cin; c0 += LANES) {
        int nl = cin - c0 < LANES ? cin - c0 : LANES;
        vec in[AMAX][AMAX], out[AMAX][AMAX];
        for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
                size_t at = (size_t)(i * a + j) * plane + (size_t)co * Cp + c0;
                in[i][j] = vload(dU + at);
                for (int th = 1; th < shares; th++) in[i][j] += vload(dU + th * stride + at);
            }
        transform2d(out, in, Gt, 3, a, Gt, 3, a);
        float res[3][3][LANES];
        for (int k = 0; k < 3; k++)
            for (int q = 0; q < 3; q++) vstore(res[k][q], out[k][q]);
        for (int l = 0; l < nl; l++)
            for (int k = 0; k < 3; k++)
                for (int q = 0; q < 3; q++) dg[((size_t)co * cin + c0 + l) * 9 + k * 3 + q] += res[k][q][l];
    }
}

static OPS_KERNEL void weight_transform_adjoint(float *dg, const float *dU, int shares, size_t stride, int cout,
                                                int cin, const Wino *w)
{
    int a = w->alpha;
    size_t plane = (size_t)round_up(cout) * round_up(cin);
#pragma omp parallel for num_threads(ops_threads_for(cout, 20.0 * a * a * cin)) schedule(static)
    for (int co = 0; co < cout; co++) {
        if (w->m == 4) weight_transform_adjoint_co(dg, dU, shares, stride, co, cin, plane, 6, F4_GT);
        else weight_transform_adjoint_co(dg, dU, shares, stride, co, cin, plane, 4, F2_GT);
    }
}

/* X[t][xi][c] = L win_t R^T for the windows (rows x rows) of every tile and
 * channel: the input transform (L = R = B^T, alpha x alpha windows) and the
 * adjoint output transform (L = R = A, m x m windows at +1, +1). Tiles
 * outer, channel blocks inner: a tile's blocks land side by side in X
 * (Cp floats per transform point), where blocks outer wrote one 64-byte
 * line per 512 bytes; 22 % off the input transform (110 -> 86 us at
 * nf 128, 32x32, one sample). */
INLINE void gather_transform(float *X, const float *planes, int Cp, const Grid *g, const size_t *off, int a,
                             int rows, int shift, const float *L, TileOp op, Range r)
{
    int T = g->T;
    if (rows > AMAX || a > AMAX) return; /* cannot happen; tells the compiler the bounds */
    for (int t = 0; t < T; t++) {
        for (int b = r.b0; b < r.b1; b++) {
            const float *pb = planes + (size_t)b * g->per_b + ((size_t)shift * g->PW + shift) * CB;
            vec in[AMAX][AMAX], out[AMAX][AMAX];
            const float *win = pb + off[t];
            for (int k = 0; k < rows; k++)
                for (int q = 0; q < rows; q++) in[k][q] = vload(win + ((size_t)k * g->PW + q) * CB);
            if (a == 6) f4_2d(out, in, op);
            else transform2d(out, in, L, a, rows, L, a, rows);
            float *dst = X + (size_t)t * a * a * Cp + (size_t)b * CB;
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++) vstore(dst + (size_t)(i * a + j) * Cp, out[i][j]);
        }
    }
}

/* planes (window of each tile) (+)= L X_t R^T: the output transform
 * (L = R = A^T, m x m windows at +1, +1, written) and the adjoint input
 * transform (L = R = B, alpha x alpha windows, added: windows overlap;
 * each block's tiles are added in tile order, so the sums do not depend on
 * the loop order). Tiles outer, as above: the output transform 93 -> 61 us. */
INLINE void transform_scatter(float *planes, const float *X, int Cp, const Grid *g, const size_t *off, int a,
                              int rows, int shift, const float *L, TileOp op, int add, Range r)
{
    int T = g->T;
    if (rows > AMAX || a > AMAX) return; /* cannot happen; tells the compiler the bounds */
    for (int t = 0; t < T; t++) {
        for (int b = r.b0; b < r.b1; b++) {
            float *pb = planes + (size_t)b * g->per_b + ((size_t)shift * g->PW + shift) * CB;
            vec in[AMAX][AMAX], out[AMAX][AMAX];
            const float *src = X + (size_t)t * a * a * Cp + (size_t)b * CB;
            for (int i = 0; i < a; i++)
                for (int j = 0; j < a; j++) in[i][j] = vload(src + (size_t)(i * a + j) * Cp);
            if (a == 6) f4_2d(out, in, op);
            else transform2d(out, in, L, rows, a, L, rows, a);
            float *win = pb + off[t];
            for (int k = 0; k < rows; k++)
                for (int q = 0; q < rows; q++) {
                    float *dst = win + ((size_t)k * g->PW + q) * CB;
                    vstore(dst, add ? vload(dst) + out[k][q] : out[k][q]);
                }
        }
    }
}

/* The four tile transforms, instantiated per F(m); each on the channel blocks r. */
static void input_transform(float *V, const float *planes, int Cp, const Grid *g, const size_t *off, Range r)
{
    if (g->m == 4) gather_transform(V, planes, Cp, g, off, 6, 6, 0, F4_BT, T_BT, r);
    else gather_transform(V, planes, Cp, g, off, 4, 4, 0, F2_BT, T_BT, r);
}

static void output_transform_adjoint(float *dM, const float *planes, int Op, const Grid *g, const size_t *off, Range r)
{
    if (g->m == 4) gather_transform(dM, planes, Op, g, off, 6, 4, 1, F4_A, T_A, r);
    else gather_transform(dM, planes, Op, g, off, 4, 2, 1, F2_A, T_A, r);
}

static void output_transform(float *planes, const float *M, int Op, const Grid *g, const size_t *off, Range r)
{
    if (g->m == 4) transform_scatter(planes, M, Op, g, off, 6, 4, 1, F4_AT, T_AT, 0, r);
    else transform_scatter(planes, M, Op, g, off, 4, 2, 1, F2_AT, T_AT, 0, r);
}

static void input_transform_adjoint(float *planes, const float *dV, int Cp, const Grid *g, const size_t *off, Range r)
{
    if (g->m == 4) transform_scatter(planes, dV, Cp, g, off, 6, 6, 0, F4_B, T_B, 1, r);
    else transform_scatter(planes, dV, Cp, g, off, 4, 4, 0, F2_B, T_B, 1, r);
}

/* The work buffer: the transformed weights, shared, then one slice per
 * thread for the sample it is working on. A sample's whole pipeline
 * (decimate, transform, products, inverse transform) stays in its thread's
 * slice, small enough to stay in cache. */
typedef struct {
    float *V, *M, *dV, *dU, *planes; /* dU: this thread's share of the weight gradient */
} Slice;

typedef struct {
    const Wino *w;
    Grid g; /* of one sample: g.T tiles */
    int a2, Cp, Op;
    float *U;
    size_t *off; /* [g.T] tile offsets, the same for every sample */
    float *slices;
    size_t slice_floats;
} Plan;

static size_t shared_floats(const Plan *p)
{
    size_t n = (size_t)p->a2 * p->Op * p->Cp + (size_t)p->g.T * (sizeof(size_t) / sizeof(float));
    return (n + 15) & ~(size_t)15;
}

/* The sizes of a conv; with work, also the pointers into it. */
static Plan plan(Shape s, int cout, int d, int algo, float *work)
{
    Plan p;
    memset(&p, 0, sizeof p);
    Shape one = s;
    one.N = 1;
    p.w = pick(algo);
    p.g = make_grid(one, d, p.w);
    p.a2 = p.w->alpha * p.w->alpha;
    p.Cp = round_up(s.C);
    p.Op = round_up(cout);
    size_t a2 = (size_t)p.a2, T = (size_t)p.g.T, Cp = (size_t)p.Cp, Op = (size_t)p.Op;
    size_t cmax = Cp > Op ? Cp : Op;
    /* V, M, dV, dU, planes; rounded to 64 bytes */
    p.slice_floats = (2 * a2 * Cp * T + a2 * Op * T + a2 * Op * Cp + cmax / CB * p.g.per_b + 15) & ~(size_t)15;
    if (!work) return p;
    p.U = work;
    p.off = (size_t *)(p.U + a2 * Op * Cp);
    p.slices = work + shared_floats(&p);
    for (int t = 0; t < p.g.T; t++) p.off[t] = tile_offset(&p.g, t);
    return p;
}

static Slice slice(const Plan *p, int thread)
{
    size_t a2 = (size_t)p->a2, T = (size_t)p->g.T, Cp = (size_t)p->Cp, Op = (size_t)p->Op;
    Slice sl;
    sl.V = p->slices + (size_t)thread * p->slice_floats;
    sl.M = sl.V + a2 * Cp * T;
    sl.dV = sl.M + a2 * Op * T;
    sl.dU = sl.dV + a2 * Cp * T;
    sl.planes = sl.dU + a2 * Op * Cp;
    return sl;
}

size_t wino_work_floats(Shape s, int cout, int d, int algo)
{
    Plan p = plan(s, cout, d, algo, NULL);
    return shared_floats(&p) + (size_t)ops_threads() * p.slice_floats;
}

/* What one thread does of one sample: its channel blocks of the input and
 * of the output, and its transform points. team: the sample is split over
 * the threads of the enclosing parallel region, which meet at barriers
 * between the stages; else the thread does all of it alone. */
typedef struct {
    Range in, out, xi;
    int team;
} Part;

static Part whole_sample(const Plan *p) { return (Part){{0, p->Cp / CB}, {0, p->Op / CB}, {0, p->a2}, 0}; }

static Part part_of_sample(const Plan *p, int th, int nt)
{
    return (Part){share(p->Cp / CB, th, nt), share(p->Op / CB, th, nt), share(p->a2, th, nt), 1};
}

/* Marks at the end of each stage of a sample's conv, for bench/bench_split.c
 * (which defines them before it includes this file); nothing otherwise. */
#ifndef STAGE
#define STAGE_START()
#define STAGE(name)
#endif

static void meet(const Part *pt)
{
    if (pt->team) {
#pragma omp barrier
        STAGE("wait");
    }
}

/* How a batch of N is split over a team of `team` threads: the first
 * `whole` samples (a multiple of team) one per thread, the rest each over
 * the whole team. */
typedef struct {
    int whole, team;
} Split;

static Split split_batch(int N, double flops_per_sample)
{
    int team = ops_threads_for(ops_threads(), flops_per_sample * N / ops_threads());
    return (Split){N / team * team, team};
}

/* y = conv(x) + b for one sample (see Part), with the transformed weights Ut. */
static void forward_sample(const Plan *p, const float *Ut, Slice sl, const Part *pt, float *y, const float *x,
                           const float *b, Shape s, int cout, int accumulate)
{
    int T = p->g.T, Cp = p->Cp, Op = p->Op, a2 = p->a2;
    size_t P = (size_t)s.H * s.W;
    Shape si = s, so = s;
    si.N = so.N = 1;
    so.C = cout;
    STAGE_START();
    decimate(sl.planes, x, si, &p->g, pt->in);
    STAGE("decimate x");
    input_transform(sl.V, sl.planes, Cp, &p->g, p->off, pt->in);
    STAGE("input transform");
    meet(pt);
    for (int xi = pt->xi.b0; xi < pt->xi.b1; xi++) /* M[.][xi] [T][Op] = V[.][xi] [T][Cp] Ut[xi] [Cp][Op] */
        gemm16(T, Op, Cp, sl.V + (size_t)xi * Cp, (size_t)a2 * Cp, 1, Ut + (size_t)xi * Cp * Op, Op, 0.0f,
               sl.M + (size_t)xi * Op, (size_t)a2 * Op);
    STAGE("products");
    meet(pt);
    output_transform(sl.planes, sl.M, Op, &p->g, p->off, pt->out);
    STAGE("output transform");
    undecimate(y, sl.planes, so, &p->g, accumulate, pt->out);
    int c1 = pt->out.b1 * CB < cout ? pt->out.b1 * CB : cout;
    for (int co = pt->out.b0 * CB; co < c1; co++) {
        float bias = b[co], *yc = y + (size_t)co * P;
        for (size_t i = 0; i < P; i++) yc[i] += bias;
    }
    STAGE("undecimate y, bias");
    meet(pt); /* the next sample reuses the buffers */
}

size_t wino_prepared_floats(int cin, int cout, int algo)
{
    int a = pick(algo)->alpha;
    return (size_t)a * a * round_up(cin) * round_up(cout);
}

OPS_KERNEL void wino_prepare(float *Ut, const float *w, int cin, int cout, int algo)
{
    weight_transform(Ut, w, cout, cin, pick(algo), 1);
}

OPS_KERNEL void wino_forward(float *out, const float *in, const float *w, const float *prepared, const float *b,
                             Shape s, int cout, int d, int accumulate, int algo, float *work)
{
    if (s.N <= 0) return;
    Plan p = plan(s, cout, d, algo, work);
    size_t P = (size_t)s.H * s.W;
    gemm16_own(); /* decided here, outside the threads' regions */
    const float *Ut = prepared;
    if (!Ut) {
        weight_transform(p.U, w, cout, s.C, p.w, 1);
        Ut = p.U;
    }
    Split sp = split_batch(s.N, 2.0 * p.a2 * p.g.T * p.Cp * p.Op);
    if (sp.whole > 0) {
#pragma omp parallel for num_threads(sp.team) schedule(static)
        for (int n = 0; n < sp.whole; n++) {
            Part pt = whole_sample(&p);
            forward_sample(&p, Ut, slice(&p, omp_get_thread_num()), &pt, out + (size_t)n * cout * P,
                           in + (size_t)n * s.C * P, b, s, cout, accumulate);
        }
    }
    if (sp.whole == s.N) return;
#pragma omp parallel num_threads(sp.team)
    {
        Part pt = part_of_sample(&p, omp_get_thread_num(), sp.team);
        for (int n = sp.whole; n < s.N; n++)
            forward_sample(&p, Ut, slice(&p, 0), &pt, out + (size_t)n * cout * P, in + (size_t)n * s.C * P, b, s,
                           cout, accumulate);
    }
}

/* One sample's share of the backward pass (see Part): din (+)= its input
 * gradient, sl.dU = dU_beta sl.dU + its transformed weight gradient (0 for
 * the first sample into a share: no zeroing pass over dU). */
static void backward_sample(const Plan *p, Slice sl, const Part *pt, float *din, int want_dw, float dU_beta,
                            const float *dout, const float *in, Shape s, int cout)
{
    int T = p->g.T, Cp = p->Cp, Op = p->Op, a2 = p->a2;
    Shape si = s, so = s;
    si.N = so.N = 1;
    so.C = cout;
    STAGE_START();
    decimate(sl.planes, dout, so, &p->g, pt->out);
    STAGE("decimate dy");
    output_transform_adjoint(sl.M, sl.planes, Op, &p->g, p->off, pt->out); /* M holds dM [T][xi][Op] */
    STAGE("output transform adjoint");
    meet(pt);
    if (want_dw) {
        decimate(sl.planes, in, si, &p->g, pt->in);
        STAGE("decimate x");
        input_transform(sl.V, sl.planes, Cp, &p->g, p->off, pt->in);
        STAGE("input transform");
        meet(pt);
        for (int xi = pt->xi.b0; xi < pt->xi.b1; xi++) /* dU[xi] [Op][Cp] (+)= dM[.][xi]^T V[.][xi] */
            gemm16(Op, Cp, T, sl.M + (size_t)xi * Op, 1, (size_t)a2 * Op, sl.V + (size_t)xi * Cp, (size_t)a2 * Cp,
                   dU_beta, sl.dU + (size_t)xi * Op * Cp, Cp);
        STAGE("products dU");
    }
    if (din) {
        for (int xi = pt->xi.b0; xi < pt->xi.b1; xi++) /* dV[.][xi] [T][Cp] = dM[.][xi] U[xi] */
            gemm16(T, Cp, Op, sl.M + (size_t)xi * Op, (size_t)a2 * Op, 1, p->U + (size_t)xi * Op * Cp, Cp, 0.0f,
                   sl.dV + (size_t)xi * Cp, (size_t)a2 * Cp);
        STAGE("products dV");
        meet(pt);
        memset(sl.planes + (size_t)pt->in.b0 * p->g.per_b, 0,
               (size_t)(pt->in.b1 - pt->in.b0) * p->g.per_b * sizeof(float));
        input_transform_adjoint(sl.planes, sl.dV, Cp, &p->g, p->off, pt->in);
        STAGE("input transform adjoint");
        undecimate(din, sl.planes, si, &p->g, 1, pt->in);
        STAGE("undecimate dx");
    }
    meet(pt); /* the next sample reuses the buffers */
}

OPS_KERNEL void wino_backward(float *din, float *dw, const float *dout, const float *in, const float *w, Shape s, int cout,
                   int d, int algo, float *work)
{
    if (s.N <= 0) return; /* no gradient to add */
    Plan p = plan(s, cout, d, algo, work);
    size_t P = (size_t)s.H * s.W;
    gemm16_own();
    if (din) weight_transform(p.U, w, cout, s.C, p.w, 0);
    Split sp = split_batch(s.N, 4.0 * p.a2 * p.g.T * p.Cp * p.Op);
    if (sp.whole > 0) {
#pragma omp parallel num_threads(sp.team)
        {
            Slice sl = slice(&p, omp_get_thread_num());
            Part pt = whole_sample(&p);
            float beta = 0.0f; /* every thread gets at least one sample: sp.whole >= sp.team */
#pragma omp for schedule(static)
            for (int n = 0; n < sp.whole; n++) {
                backward_sample(&p, sl, &pt, din ? din + (size_t)n * s.C * P : NULL, dw != NULL, beta,
                                dout + (size_t)n * cout * P, in + (size_t)n * s.C * P, s, cout);
                beta = 1.0f;
            }
        }
    }
    if (sp.whole < s.N) {
        /* the rest add to thread 0's share of dU, each thread to its own transform points */
#pragma omp parallel num_threads(sp.team)
        {
            Part pt = part_of_sample(&p, omp_get_thread_num(), sp.team);
            Slice sl = slice(&p, 0);
            for (int n = sp.whole; n < s.N; n++)
                backward_sample(&p, sl, &pt, din ? din + (size_t)n * s.C * P : NULL, dw != NULL,
                                n == 0 ? 0.0f : 1.0f, dout + (size_t)n * cout * P, in + (size_t)n * s.C * P, s,
                                cout);
        }
    }
    if (!dw) return;
    /* the threads' shares, summed in thread order by the adjoint */
    int shares = sp.whole > 0 ? sp.team : 1;
    weight_transform_adjoint(dw, slice(&p, 0).dU, shares, p.slice_floats, cout, s.C, p.w);
}
