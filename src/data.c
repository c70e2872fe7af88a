/* data.c: reading image datasets; see data.h for the choice of caching. */
#include "ncsn/data.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/h5util.h"
#include "ncsn/rng.h"

#define DATA_CACHE_MB_DEFAULT 2048
#define DATA_RANGE_TOL 1e-3f

static hid_t mem_type(const Dataset *d) { return d->kind == DATA_F32_NCHW ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8; }

/* Float data as read, before any use: every value finite and within
 * [-1, 1] up to DATA_RANGE_TOL. v [n, C, H, W] holds images indices[0..n)
 * (NULL: 0..n-1, the whole dataset). */
static void check_floats(const Dataset *d, const float *v, long n, const uint32_t *indices)
{
    if (d->kind != DATA_F32_NCHW) return;
    size_t per = (size_t)d->C * d->H * d->W;
    float lo = INFINITY, hi = -INFINITY;
    for (long i = 0; i < n; i++)
        for (size_t k = 0; k < per; k++) {
            float x = v[(size_t)i * per + k];
            if (!isfinite(x))
                ncsn_die_usage("%s: dataset %s has a non-finite value in image %u (%g)", d->path, d->name,
                               indices ? indices[i] : (uint32_t)i, (double)x);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
    if (lo < -1.0f - DATA_RANGE_TOL || hi > 1.0f + DATA_RANGE_TOL)
        ncsn_die_usage("%s: dataset %s holds float32 values in [%g, %g]%s, expected [-1, 1]; store images of "
                       "0..255 as uint8 [N,H,W] or [N,H,W,C] instead (mapped to [-1, 1] by x/127.5 - 1)",
                       d->path, d->name, (double)lo, (double)hi, indices ? " (in the images read for a batch)" : "");
}

void data_open(Dataset *d, const char *path, const char *name, size_t cache_bytes)
{
    memset(d, 0, sizeof *d);
    if (strlen(path) >= sizeof d->path)
        ncsn_die_usage("%.64s...: file names of more than %zu characters are not supported", path, sizeof d->path - 1);
    if (strlen(name) >= sizeof d->name)
        ncsn_die_usage("%s: dataset names of more than %zu characters are not supported (%.32s...)", path,
                       sizeof d->name - 1, name);
    snprintf(d->path, sizeof d->path, "%s", path);
    snprintf(d->name, sizeof d->name, "%s", name);
    d->file = h5_open_read(path);
    H5Info info = h5_info(d->file, path, name);
    char layout[32];
    d->ds = H5Dopen2(d->file, name, H5P_DEFAULT);
    h5_attr_read_str(d->ds, "layout", layout, sizeof layout);
    if (info.cls == H5T_INTEGER && info.type_size == 1 && !info.is_signed &&
        (info.rank == 3 || info.rank == 4)) {
        d->kind = info.rank == 3 ? DATA_U8_HW : DATA_U8_HWC;
        d->H = (int)info.dims[1];
        d->W = (int)info.dims[2];
        d->C = info.rank == 3 ? 1 : (int)info.dims[3];
        d->image_bytes = (size_t)d->H * d->W * d->C;
    } else if (info.cls == H5T_FLOAT && info.type_size == 4 && info.rank == 4 &&
               strcmp(layout, "NCHW") == 0) {
        d->kind = DATA_F32_NCHW;
        d->C = (int)info.dims[1];
        d->H = (int)info.dims[2];
        d->W = (int)info.dims[3];
        d->image_bytes = (size_t)d->H * d->W * d->C * sizeof(float);
    } else {
        ncsn_die_usage("%s: dataset %s has rank %d and %s, expected uint8 [N,H,W] or [N,H,W,C], "
                       "or float32 [N,C,H,W] with attribute layout=\"NCHW\"",
                       path, name, info.rank,
                       info.cls == H5T_FLOAT ? (info.type_size == 4 ? "float32 without layout=\"NCHW\"" : "a float type other than float32")
                                             : "a type other than uint8");
    }
    d->N = (long)info.dims[0];
    if (d->N == 0) ncsn_die_usage("%s: dataset %s is empty (0 images)", path, name);
    if (d->H < 1 || d->W < 1 || d->C < 1) ncsn_die_usage("%s: dataset %s has an empty image shape", path, name);
    if (d->C > 64) ncsn_die_usage("%s: dataset %s has %d channels (at most 64; is the layout HWC?)", path, name, d->C);
    size_t total = d->image_bytes * (size_t)d->N;
    if (total <= cache_bytes) {
        d->cache = xmalloc(total);
        if (H5Dread(d->ds, mem_type(d), H5S_ALL, H5S_ALL, H5P_DEFAULT, d->cache) < 0) {
            char why[512];
            ncsn_die_usage("%s: cannot read dataset %s: %s", path, name, h5_reason(why, sizeof why));
        }
        check_floats(d, d->cache, d->N, NULL);
    }
}

size_t data_cache_bytes(void)
{
    const char *s = getenv("NCSN_DATA_CACHE_MB");
    if (!s || !*s) return (size_t)DATA_CACHE_MB_DEFAULT << 20;
    char *end;
    errno = 0;
    unsigned long long mb = strtoull(s, &end, 10);
    if (*end || errno || s[0] == '-' || mb > (SIZE_MAX >> 20))
        ncsn_die_usage("NCSN_DATA_CACHE_MB=%s: expected a whole number of MiB (0: always read per batch)", s);
    return (size_t)mb << 20;
}

void data_close(Dataset *d)
{
    free(d->cache);
    if (d->ds > 0) H5Dclose(d->ds);
    if (d->file > 0) H5Fclose(d->file);
    memset(d, 0, sizeof *d);
}

/* raw: one image in its stored type -> out [C, H, W] in [-1, 1] */
static void to_float(const Dataset *d, float *out, const void *raw)
{
    size_t HW = (size_t)d->H * d->W;
    if (d->kind == DATA_F32_NCHW) {
        memcpy(out, raw, d->image_bytes);
        return;
    }
    const uint8_t *u = raw; /* [H, W, C] */
    for (int c = 0; c < d->C; c++)
        for (size_t p = 0; p < HW; p++) out[c * HW + p] = (float)u[p * d->C + c] / 127.5f - 1.0f;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Streamed: the distinct images of one batch, read in file order. uniq[m]
 * gets the sorted distinct indices and raw [m, image] those images, one
 * HDF5 read per run of consecutive indices. (HDF5 1.10.8, 28x28 uint8 in
 * chunks of 256, batch 512: 7 ms, against 16 ms for a read per image and
 * 45 ms for one read of the union of the runs.) Returns m. */
static long read_block(Dataset *d, unsigned char *raw, uint32_t *uniq, const uint32_t *indices, int n)
{
    memcpy(uniq, indices, (size_t)n * sizeof(uint32_t));
    qsort(uniq, (size_t)n, sizeof(uint32_t), cmp_u32);
    long m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || uniq[i] != uniq[m - 1]) uniq[m++] = uniq[i];
    hid_t fs = H5Dget_space(d->ds);
    int rank = H5Sget_simple_extent_ndims(fs);
    hsize_t start[4] = {0, 0, 0, 0}, count[4];
    H5Sget_simple_extent_dims(fs, count, NULL);
    for (long a = 0, b; a < m; a = b) {
        for (b = a + 1; b < m && uniq[b] == uniq[b - 1] + 1; b++) continue;
        start[0] = uniq[a];
        count[0] = (hsize_t)(b - a);
        H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL));
        hid_t ms = H5Screate_simple(rank, count, NULL);
        if (H5Dread(d->ds, mem_type(d), ms, fs, H5P_DEFAULT, raw + d->image_bytes * (size_t)a) < 0) {
            char why[512];
            ncsn_die_usage("%s: cannot read images %u..%u of dataset %s: %s", d->path, uniq[a], uniq[b - 1],
                           d->name, h5_reason(why, sizeof why));
        }
        H5Sclose(ms);
    }
    H5Sclose(fs);
    check_floats(d, (const float *)raw, m, uniq);
    return m;
}

void data_read(Dataset *d, float *out, const uint32_t *indices, int n)
{
    size_t per = (size_t)d->C * d->H * d->W;
    for (int i = 0; i < n; i++) CHECK(indices[i] < (uint32_t)d->N, "image index %u out of range", indices[i]);
    if (n <= 0) return;
    if (d->cache) {
        for (int i = 0; i < n; i++)
            to_float(d, out + per * i, (const unsigned char *)d->cache + d->image_bytes * indices[i]);
        return;
    }
    unsigned char *raw = xmalloc((size_t)n * d->image_bytes);
    uint32_t *uniq = xmalloc((size_t)n * sizeof(uint32_t));
    long m = read_block(d, raw, uniq, indices, n);
    for (int i = 0; i < n; i++) {
        const uint32_t *at = bsearch(&indices[i], uniq, (size_t)m, sizeof(uint32_t), cmp_u32);
        to_float(d, out + per * i, raw + d->image_bytes * (size_t)(at - uniq));
    }
    free(uniq);
    free(raw);
}

void data_order_init(DataOrder *o, long N, uint64_t seed)
{
    o->N = N;
    o->seed = seed;
    o->perm = xmalloc((size_t)N * sizeof(uint32_t));
    o->epoch = -1;
}

void data_order_free(DataOrder *o)
{
    free(o->perm);
    o->perm = NULL;
}

uint32_t data_order_image(DataOrder *o, long p)
{
    long e = p / o->N;
    if (e != o->epoch) {
        rng_permutation(o->perm, (uint32_t)o->N, o->seed, RNG_ORDER, (uint32_t)e);
        o->epoch = e;
    }
    return o->perm[p % o->N];
}

void data_slice(long B, int rank, int size, long *lo, long *hi)
{
    *lo = rank * B / size;
    *hi = (rank + 1) * B / size;
}
