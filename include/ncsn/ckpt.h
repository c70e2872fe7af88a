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

/* Atomic file replacement: fsync `tmp`, rename it to `final`, fsync the dir. */
void file_commit(const char *tmp, const char *final);

#endif
