/* ckpt.h: model files and training checkpoints in HDF5 (DESIGN.md 4).
 *
 * A model file has group /model: one float32 dataset per parameter key in
 * its PyTorch shape, /model/sigmas [L] when set, and attributes in_channels,
 * nf, num_classes, dilations[4], scale_by_sigma, plane_head, head_floor,
 * head_sigma_data, norm, format_version and step; with EMA weights also
 * /ema (the same attributes but step). */
#ifndef NCSN_CKPT_H
#define NCSN_CKPT_H

#include <hdf5.h>

#include "ncsn/model.h"

#define NCSN_FORMAT_VERSION 1

/* Writers. They die (exit 1) naming the file and the reason when a write
 * fails. */
/* Group `group`: one float32 dataset per parameter key of m->table, from
 * buf (laid out by the table), e.g. Adam moments or gradients. */
void ckpt_write_group(hid_t file, const char *group, const Model *m, const float *buf);
/* The same with the model's attributes and sigmas, and attribute step when
 * step >= 0: a /model group (or /ema, which a model file can stand in for). */
void ckpt_write_weights(hid_t file, const char *group, const Model *m, const float *weights, long step);
/* A model file, atomically (temporary name, fsync, rename): /model with
 * `weights` and `step`, and /ema when ema is not NULL. */
void ckpt_save_model(const char *path, const Model *m, const float *weights, const float *ema, long step);

/* Readers. They return 0, or -1 with one line in err naming the file and
 * what is wrong ("PATH: attribute nf of /model is missing"); they never
 * exit: callers decide. */
/* The configuration of /model and its sigmas (*has_sigmas 0 when absent;
 * sigmas holds NCSN_MAX_LEVELS). */
int ckpt_read_config(hid_t file, const char *path, NcsnConfig *cfg, float *sigmas, int *has_sigmas,
                     char *err, size_t cap);
/* The same, opening path itself. */
int ckpt_try_read_config(const char *path, NcsnConfig *cfg, float *sigmas, int *has_sigmas,
                         char *err, size_t cap);
/* Group `group` of parameters into buf (laid out by m->table). */
int ckpt_read_group(hid_t file, const char *path, const char *group, const Model *m, float *buf,
                    char *err, size_t cap);
/* Builds m from /model: configuration, weights and sigmas when present. */
int ckpt_try_load_model(Model *m, hid_t file, const char *path, char *err, size_t cap);

/* The same for commands that stop at bad input: exit 2 with that line. */
void ckpt_load_model(Model *m, const char *path);
void ckpt_load_model_from(Model *m, hid_t file, const char *path);
void ckpt_load_group(hid_t file, const char *path, const char *group, const Model *m, float *buf);

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

#endif
