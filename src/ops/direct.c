/* direct.c: 3x3 convolution (stride 1, dilation d, padding d) summed
 * directly, for the convs with few channels on one side: the network's
 * first (image channels -> nf) and last (nf -> image channels).
 *
 * There a conv is 27 x nf multiply-adds per pixel, and im2col spent its
 * time writing and reading the [9 C, H W] column matrix (4.7 MB for the
 * last conv at nf 128, 32x32), not in sgemm. Here a sample's input planes
 * are copied once into zero-padded planes of Hp = H + 2d rows by
 * Wp = W + 2d columns, and the output is computed on the padded width: at
 * flat index i = h Wp + w (w < Wp; the columns from W on are dropped),
 *   out[co, i] = sum over ci, kh, kw of w[co, ci, kh, kw] xp[ci, i + kh d Wp + kw d]
 * so every tap is one shifted run of a padded plane. The output is made in
 * blocks of BLOCK vectors held in registers while all the taps run:
 *   din[ci, i] += sum over co, kh, kw of w[co, ci, kh, kw] dp[co, i + (2 - kh) d Wp + (2 - kw) d]
 *   dw[co, ci, kh, kw] += sum over i of dp[co, i + d Wp + d] xp[ci, i + kh d Wp + kw d]
 * (dp: dout padded the same way; its pads make the dropped columns add 0).
 * Each output element is summed by one thread in a fixed order, and the
 * samples are taken one after another by the whole team, so the result
 * does not depend on the thread count. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/ops.h"
#include "isa.h"

#define BLOCK 8 /* vectors of output per block */

typedef struct {
    int H, W, Wp, d;
    size_t padded; /* floats of a padded plane: Hp Wp, and 2d more read past its end by the last taps */
    size_t flat;   /* output elements on the padded width: H Wp */
    int blocks;    /* of BLOCK x LANES output elements */
} Geom;

static Geom geom(Shape s, int d)
{
    Geom g = {s.H, s.W, s.W + 2 * d, d, 0, 0, 0};
    g.padded = (size_t)(s.H + 2 * d) * g.Wp + 2 * (size_t)d;
    g.flat = (size_t)s.H * g.Wp;
    g.blocks = (int)((g.flat + BLOCK * LANES - 1) / (BLOCK * LANES));
    return g;
}

/* Work: the padded planes of one sample's input and output gradient, the
 * taps' offsets, and w with its channel axes swapped (din's coefficients). */
size_t direct_work_floats(Shape s, int cout, int d)
{
    Geom g = geom(s, d);
    size_t taps = 9 * ((size_t)(s.C > cout ? s.C : cout) + 1);
    return (size_t)(s.C + cout) * g.padded + taps * (sizeof(size_t) / sizeof(float)) + 9 * (size_t)s.C * cout + 16;
}

/* dst = src [H, W] with d zeros around it (and the slack after it) */
static void pad_plane(float *dst, const float *src, const Geom *g)
{
    memset(dst, 0, g->padded * sizeof(float));
    for (int h = 0; h < g->H; h++)
        memcpy(dst + (size_t)(h + g->d) * g->Wp + g->d, src + (size_t)h * g->W, (size_t)g->W * sizeof(float));
}

/* out[i - i0], i in [i, i + nb LANES): sum over taps j in order of
 * c[j] base[off[j] + i], in nb vector registers */
INLINE void sum_vectors(float *out, const float *c, const float *base, const size_t *off, int taps, size_t i, int nb)
{
    vec acc[BLOCK] = {0};
    for (int j = 0; j < taps; j++) {
        const float *p = base + off[j] + i;
        vec cj = c[j] - (vec){0};
        for (int b = 0; b < nb; b++) acc[b] += cj * vload(p + b * LANES);
    }
    for (int b = 0; b < nb; b++) vstore(out + b * LANES, acc[b]);
}

/* out[i - i0], i in [i0, i1) of the flat output: sum over taps j in order
 * of c[j] base[off[j] + i]; runs of 8, 4, 2, 1 vectors, then one by one
 * (the same order of operations for every element) */
INLINE void sum_taps(float *out, const float *c, const float *base, const size_t *off, int taps, size_t i0,
                     size_t i1)
{
    size_t i = i0;
    for (; i + BLOCK * LANES <= i1; i += BLOCK * LANES) sum_vectors(out + (i - i0), c, base, off, taps, i, BLOCK);
    for (int nb = BLOCK / 2; nb >= 1; nb /= 2)
        if (i + (size_t)nb * LANES <= i1) {
            sum_vectors(out + (i - i0), c, base, off, taps, i, nb);
            i += (size_t)nb * LANES;
        }
    for (; i < i1; i++) {
        float a = 0.0f;
        for (int j = 0; j < taps; j++) a += c[j] * base[off[j] + i];
        out[i - i0] = a;
    }
}

static size_t block_end(const Geom *g, int blk)
{
    size_t e = ((size_t)blk + 1) * BLOCK * LANES;
    return e < g->flat ? e : g->flat;
}

/* The flat block `blk` of an output plane [H, W] (padded width dropped):
 * y = (accumulate ? y + t : t) + bias over the block's valid elements */
INLINE void put_block(float *y, const float *t, int blk, const Geom *g, int accumulate, float bias)
{
    size_t i0 = (size_t)blk * BLOCK * LANES, i1 = block_end(g, blk);
    for (size_t i = i0; i < i1;) { /* one row's part of the block at a time */
        size_t h = i / g->Wp, w = i % g->Wp, row = h * g->Wp;
        size_t e = row + g->W < i1 ? row + g->W : i1; /* the row's valid columns in the block */
        float *o = y + h * g->W;
        const float *tr = t + (row - i0);
        for (size_t c = w; c < e - row; c++) o[c] = (accumulate ? o[c] + tr[c] : tr[c]) + bias;
        i = row + g->Wp;
    }
}

OPS_KERNEL void direct_forward(float *out, const float *in, const float *w, const float *b, Shape s, int cout, int d,
                               int accumulate, float *work)
{
    Geom g = geom(s, d);
    float *xp = work;
    size_t *off = (size_t *)(work + (size_t)(s.C + cout) * g.padded);
    int taps = 9 * s.C, items = cout * g.blocks;
    for (int j = 0; j < taps; j++) off[j] = (size_t)(j / 9) * g.padded + (size_t)(j % 9 / 3) * d * g.Wp + j % 3 * d;
    int nt = ops_threads_for(items, 2.0 * taps * BLOCK * LANES);
#pragma omp parallel num_threads(nt)
    {
        float t[BLOCK * LANES];
        for (int n = 0; n < s.N; n++) {
#pragma omp for schedule(static)
            for (int ci = 0; ci < s.C; ci++) pad_plane(xp + ci * g.padded, in + ((size_t)n * s.C + ci) * g.H * g.W, &g);
#pragma omp for schedule(static)
            for (int q = 0; q < items; q++) {
                int co = q / g.blocks, blk = q % g.blocks;
                sum_taps(t, w + (size_t)co * taps, xp, off, taps, (size_t)blk * BLOCK * LANES, block_end(&g, blk));
                put_block(out + ((size_t)n * cout + co) * g.H * g.W, t, blk, &g, accumulate, b[co]);
            }
        }
    }
}

/* sum over i of a[i] p[off[k] + i], k = 0..8, for the flat output: per
 * lane in order of i, then the lanes in order, then the tail */
INLINE void dot_taps(float s[9], const float *a, const float *p, const size_t *off, size_t n)
{
    vec acc[9] = {0};
    size_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        vec av = vload(a + i);
        for (int k = 0; k < 9; k++) acc[k] += av * vload(p + off[k] + i);
    }
    for (int k = 0; k < 9; k++) {
        float t = 0.0f;
        for (int l = 0; l < LANES; l++) t += acc[k][l];
        for (size_t r = i; r < n; r++) t += a[r] * p[off[k] + r];
        s[k] = t;
    }
}

OPS_KERNEL void direct_backward(float *din, float *dw, const float *dout, const float *in, const float *w, Shape s,
                                int cout, int d, float *work)
{
    Geom g = geom(s, d);
    size_t P = (size_t)g.H * g.W;
    float *xp = work, *dp = work + (size_t)s.C * g.padded;
    size_t *off = (size_t *)(dp + (size_t)cout * g.padded);
    float *wt = (float *)(off + 9 * ((size_t)(s.C > cout ? s.C : cout) + 1)); /* [C][cout][9] */
    int pairs = cout * s.C, items = s.C * g.blocks;
    size_t *doff = off + 9;
    for (int k = 0; k < 9; k++) off[k] = (size_t)(k / 3) * d * g.Wp + k % 3 * d; /* xp's taps for dw */
    for (int j = 0; j < 9 * cout; j++) /* dp's taps for din */
        doff[j] = (size_t)(j / 9) * g.padded + (size_t)(2 - j % 9 / 3) * d * g.Wp + (2 - j % 3) * d;
    int nt = ops_threads_for(pairs > items ? pairs : items, 36.0 * P);
#pragma omp parallel num_threads(nt)
    {
        float t[BLOCK * LANES];
        if (din) {
#pragma omp for schedule(static)
            for (int q = 0; q < pairs; q++) /* q = ci cout + co */
                memcpy(wt + (size_t)q * 9, w + ((size_t)(q % cout) * s.C + q / cout) * 9, 9 * sizeof(float));
        }
        for (int n = 0; n < s.N; n++) {
            const float *dy = dout + (size_t)n * cout * P;
#pragma omp for schedule(static)
            for (int c = 0; c < s.C + cout; c++) {
                if (c < cout) pad_plane(dp + c * g.padded, dy + c * P, &g);
                else if (dw) pad_plane(xp + (c - cout) * g.padded, in + ((size_t)n * s.C + c - cout) * P, &g);
            }
            if (dw) {
#pragma omp for schedule(static)
                for (int q = 0; q < pairs; q++) { /* q = co C + ci */
                    float sum[9];
                    dot_taps(sum, dp + (q / s.C) * g.padded + (size_t)d * g.Wp + d, xp + (q % s.C) * g.padded, off,
                             g.flat);
                    for (int k = 0; k < 9; k++) dw[(size_t)q * 9 + k] += sum[k];
                }
            }
            if (din) {
#pragma omp for schedule(static)
                for (int q = 0; q < items; q++) {
                    int ci = q / g.blocks, blk = q % g.blocks;
                    sum_taps(t, wt + (size_t)ci * cout * 9, dp, doff, 9 * cout, (size_t)blk * BLOCK * LANES,
                             block_end(&g, blk));
                    put_block(din + ((size_t)n * s.C + ci) * P, t, blk, &g, 1, 0.0f);
                }
            }
        }
    }
}
