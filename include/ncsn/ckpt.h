/* ckpt.h: model files and training checkpoints in HDF5 (DESIGN.md 4).
 *
 * A model file has group /model: one float32 dataset per parameter key in
 * its PyTorch shape, /model/sigmas [L] when set, and attributes in_channels,
 * nf, num_classes, dilations[4], scale_by_sigma, format_version. */
#ifndef NCSN_CKPT_H
#define NCSN_CKPT_H

#include <hdf5.h>

#include "ncsn/model.h"

#define NCSN_FORMAT_VERSION 1

/* Writes `weights` (laid out by m->table) as group `group` with the model's
 * attributes and sigmas. */
void ckpt_write_weights(hid_t file, const char *group, const Model *m, const float *weights);
/* Reads the configuration of /model and builds m (weights and sigmas loaded).
 * Dies with exit 2 naming the file and field when anything is wrong. */
void ckpt_load_model(Model *m, const char *path);
void ckpt_load_model_from(Model *m, hid_t file, const char *path);
/* Loads group `group` into weights (laid out by m->table). */
void ckpt_read_weights(hid_t file, const char *path, const char *group, const Model *m, float *weights);
/* Writes a model-only file atomically (temporary name, fsync, rename). */
void ckpt_save_model(const char *path, const Model *m, const float *weights, long step);

/* A training checkpoint adds to the model file:
 *   /ema/<key>                  EMA weights (when EMA is on; same attributes)
 *   /optim/adam_m/<key>, /optim/adam_v/<key>   Adam moments
 *   /train attributes: step, epoch, position (samples drawn so far), seed,
 *     batch, data_shape int[4] (N,C,H,W), rng, options (the resolved
 *     training options, one name=value per line), sigma_rule (where the
 *     noise levels came from: options, a model file, or the data and which
 *     of NCSNv2's rules; absent in older checkpoints), format_version.
 * The random streams are counter-based: (seed, step) is their whole state. */
typedef struct {
    long step, batch;
    unsigned long long seed;
    long data_shape[4];
    int has_ema;
    char sigma_rule[512]; /* empty: not recorded */
} TrainMeta;

typedef struct {
    float *m, *v, *ema; /* [table.total] each; ema may be NULL */
} OptimState;

/* Writes path atomically (path.tmp.PID, fsync, rename). */
void ckpt_save_train(const char *path, const Model *model, const OptimState *o, const TrainMeta *meta,
                     const char *options_text);
/* Loads a training checkpoint into model (whose configuration must match the
 * file's) and o (o->ema NULL: EMA off; a checkpoint without /ema starts the
 * EMA from the weights). Returns 0; -1 when the file is damaged or
 * incomplete; -2 when it was made with another model configuration; err
 * names the file and the field. Never exits: callers decide. */
int ckpt_try_load_train(const char *path, Model *model, OptimState *o, TrainMeta *meta, char *err,
                        size_t cap);
/* Reads the configuration and sigmas of a checkpoint without dying:
 * returns 0 or -1 with err. */
int ckpt_try_read_config(const char *path, NcsnConfig *cfg, float *sigmas, int *has_sigmas,
                         char *err, size_t cap);

/* An HDF5 file written atomically: created as PATH.tmp.PID (removed if the
 * program dies on an error first), visible under PATH only once
 * atomic_h5_commit has closed, fsynced and renamed it. */
typedef struct {
    hid_t file;
    char path[4096], tmp[4200];
} AtomicH5;
hid_t atomic_h5_begin(AtomicH5 *a, const char *path);
void atomic_h5_commit(AtomicH5 *a);

/* Atomic file replacement: fsync `tmp`, rename it to `final`, fsync the dir. */
void file_commit(const char *tmp, const char *final);

#endif
