/* data.h: the image dataset file (DESIGN.md 4).
 *
 * uint8 [N, H, W] or [N, H, W, C] mapped to [-1, 1] by x/127.5 - 1, or
 * float32 [N, C, H, W] in [-1, 1] with attribute layout = "NCHW".
 *
 * Each rank needs random images of the whole dataset (the data order is a
 * global permutation per epoch), so a dataset whose raw size fits the cache
 * budget is read once into memory, in its stored type (uint8 stays uint8);
 * a larger one is read for each batch (its distinct images in file order,
 * one hyperslab per run of consecutive indices), keeping memory per rank at
 * one batch.
 *
 * Float data is checked before any use: every value finite and within
 * [-1, 1] up to 1e-3, else exit 2 naming file, dataset and what was found.
 * Held in memory, it is checked whole when opened; streamed, each block as
 * it is read. */
#ifndef NCSN_DATA_H
#define NCSN_DATA_H

#include <hdf5.h>
#include <stdint.h>

typedef enum { DATA_U8_HW, DATA_U8_HWC, DATA_F32_NCHW } DataKind;

typedef struct {
    char path[4096];
    char name[256];
    DataKind kind;
    long N;
    int C, H, W;
    hid_t file, ds;
    void *cache; /* whole dataset in its stored type, or NULL */
    size_t image_bytes;
} Dataset;

/* Opens and validates; exits with status 2 naming file and dataset when bad.
 * cache_bytes: keep the dataset in memory when its raw size is at most this. */
void data_open(Dataset *d, const char *path, const char *name, size_t cache_bytes);
void data_close(Dataset *d);
/* The cache budget: NCSN_DATA_CACHE_MB MiB from the environment (0: always
 * read per batch), 2048 when unset; exit 2 when it is not a number. */
size_t data_cache_bytes(void);
/* out [n, C, H, W] in [-1, 1] for the images at these indices (repeats
 * allowed). Streamed float data is checked here, before its use. */
void data_read(Dataset *d, float *out, const uint32_t *indices, int n);

/* The data order: global sample p is image perm_e[p mod N] of epoch
 * e = p / N, perm_e a permutation drawn from (seed, e). Step t of a run with
 * global batch B uses samples p = t*B + k, k in [0, B); rank r of R takes
 * the contiguous slice data_slice() gives. */
typedef struct {
    long N;
    uint64_t seed;
    uint32_t *perm; /* [N], the current epoch's */
    long epoch;
} DataOrder;

void data_order_init(DataOrder *o, long N, uint64_t seed);
void data_order_free(DataOrder *o);
uint32_t data_order_image(DataOrder *o, long p);
void data_slice(long B, int rank, int size, long *lo, long *hi);

#endif
