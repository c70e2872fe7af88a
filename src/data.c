/* data.c: reading image datasets; see data.h for the choice of caching. */
#include "ncsn/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/h5util.h"
#include "ncsn/rng.h"

void data_open(Dataset *d, const char *path, const char *name, size_t cache_bytes)
{
    memset(d, 0, sizeof *d);
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
        hid_t mt = d->kind == DATA_F32_NCHW ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
        if (H5Dread(d->ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->cache) < 0)
            ncsn_die_usage("%s: cannot read dataset %s (corrupt?)", path, name);
    }
}

void data_close(Dataset *d)
{
    free(d->cache);
    if (d->ds > 0) H5Dclose(d->ds);
    if (d->file > 0) H5Fclose(d->file);
    memset(d, 0, sizeof *d);
}

/* raw: one image in its stored type -> out [C, H, W] in [-1, 1] */
static void to_float(const Dataset *d, float *out, const void *raw, uint32_t index)
{
    size_t HW = (size_t)d->H * d->W;
    if (d->kind == DATA_F32_NCHW) {
        const float *f = raw;
        for (size_t i = 0; i < HW * d->C; i++) {
            if (!isfinite(f[i]))
                ncsn_die_usage("%s: dataset %s has a non-finite value in image %u", d->path, d->name, index);
            out[i] = f[i];
        }
        return;
    }
    const uint8_t *u = raw; /* [H, W, C] */
    for (int c = 0; c < d->C; c++)
        for (size_t p = 0; p < HW; p++) out[c * HW + p] = (float)u[p * d->C + c] / 127.5f - 1.0f;
}

void data_read(Dataset *d, float *out, const uint32_t *indices, int n)
{
    size_t per = (size_t)d->C * d->H * d->W;
    unsigned char *raw = d->cache ? NULL : xmalloc(d->image_bytes);
    hid_t mt = d->kind == DATA_F32_NCHW ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
    for (int i = 0; i < n; i++) {
        CHECK(indices[i] < (uint32_t)d->N, "image index %u out of range", indices[i]);
        const void *src;
        if (d->cache) {
            src = (const unsigned char *)d->cache + d->image_bytes * indices[i];
        } else {
            hid_t fs = H5Dget_space(d->ds);
            int rank = H5Sget_simple_extent_ndims(fs);
            hsize_t start[4] = {indices[i], 0, 0, 0}, count[4];
            H5Sget_simple_extent_dims(fs, count, NULL);
            count[0] = 1;
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
            hid_t ms = H5Screate_simple(rank, count, NULL);
            if (H5Dread(d->ds, mt, ms, fs, H5P_DEFAULT, raw) < 0)
                ncsn_die_usage("%s: cannot read image %u of dataset %s", d->path, indices[i], d->name);
            H5Sclose(ms);
            H5Sclose(fs);
            src = raw;
        }
        to_float(d, out + per * i, src, indices[i]);
    }
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
