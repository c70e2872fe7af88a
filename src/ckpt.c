/* ckpt.c: model files and training checkpoints (ckpt.h): one writer per
 * group kind, one reader family that returns errors, and the thin exiting
 * wrappers of the commands that stop at bad input. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/atomic_file.h"
#include "ncsn/common.h"
#include "ncsn/h5util.h"

/* ---- writing ---- */

static hid_t group_create(hid_t file, const char *group)
{
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(file, g, "create group %s", group);
    return g;
}

/* one float32 dataset per parameter, in its PyTorch shape */
static void write_params(hid_t g, const Model *m, const float *buf)
{
    for (int i = 0; i < m->table.n; i++) {
        const ParamSpec *p = &m->table.specs[i];
        hsize_t dims[4];
        for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
        h5_write(g, p->key, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, p->ndim, dims, buf + p->offset);
    }
}

void ckpt_write_group(hid_t file, const char *group, const Model *m, const float *buf)
{
    hid_t g = group_create(file, group);
    write_params(g, m, buf);
    H5Gclose(g);
}

void ckpt_write_weights(hid_t file, const char *group, const Model *m, const float *weights, long step)
{
    hid_t g = group_create(file, group);
    const NcsnConfig *c = &m->cfg;
    h5_attr_write_int(g, "in_channels", 1, &c->in_channels);
    h5_attr_write_int(g, "nf", 1, &c->nf);
    h5_attr_write_int(g, "num_classes", 1, &c->num_classes);
    h5_attr_write_int(g, "dilations", 4, c->dilations);
    h5_attr_write_int(g, "scale_by_sigma", 1, &c->scale_by_sigma);
    h5_attr_write_int(g, "plane_head", 1, &c->plane_head);
    h5_attr_write_double(g, "head_floor", 1, &c->head_floor);
    h5_attr_write_double(g, "head_sigma_data", 1, &c->head_sigma_data);
    h5_attr_write_str(g, "norm", norm_kind_name(c->norm));
    int version = NCSN_FORMAT_VERSION;
    h5_attr_write_int(g, "format_version", 1, &version);
    write_params(g, m, weights);
    if (m->sigmas) {
        hsize_t L = (hsize_t)c->num_classes;
        h5_write(g, "sigmas", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, &L, m->sigmas);
    }
    if (step >= 0) {
        int st = (int)step;
        h5_attr_write_int(g, "step", 1, &st);
    }
    H5Gclose(g);
}

/* what a model file holds: /model and, with EMA, /ema */
static void write_model(hid_t f, const Model *m, const float *weights, const float *ema, long step)
{
    ckpt_write_weights(f, "/model", m, weights, step);
    if (ema) ckpt_write_weights(f, "/ema", m, ema, -1);
}

void ckpt_save_model(const char *path, const Model *m, const float *weights, const float *ema, long step)
{
    AtomicH5 out;
    hid_t f = atomic_h5_begin(&out, path);
    write_model(f, m, weights, ema, step);
    atomic_h5_commit(&out);
}

static void write_train_attrs(hid_t f, const TrainMeta *meta, int has_ema, const char *options_text)
{
    hid_t t = group_create(f, "/train");
    int step = (int)meta->step, batch = (int)meta->batch, shape[4], ema = has_ema, version = NCSN_FORMAT_VERSION;
    int epoch = meta->data_shape[0] > 0 ? (int)(meta->step * meta->batch / meta->data_shape[0]) : 0;
    long long pos = (long long)meta->step * meta->batch;
    for (int i = 0; i < 4; i++) shape[i] = (int)meta->data_shape[i];
    h5_attr_write_int(t, "step", 1, &step);
    h5_attr_write_int(t, "epoch", 1, &epoch);
    h5_attr_write_int(t, "batch", 1, &batch);
    h5_attr_write(t, "position", H5T_STD_I64LE, H5T_NATIVE_LLONG, 1, &pos);
    h5_attr_write(t, "seed", H5T_STD_U64LE, H5T_NATIVE_ULLONG, 1, &meta->seed);
    h5_attr_write_int(t, "data_shape", 4, shape);
    h5_attr_write_int(t, "has_ema", 1, &ema);
    h5_attr_write_str(t, "rng", "philox4x32-10, counter-based: draws are functions of (seed, step, sample)");
    h5_attr_write_str(t, "options", options_text ? options_text : "");
    if (meta->sigma_rule[0]) h5_attr_write_str(t, "sigma_rule", meta->sigma_rule);
    h5_attr_write_int(t, "format_version", 1, &version);
    H5Gclose(t);
}

void ckpt_save_train(const char *path, const Model *model, const OptimState *o, const TrainMeta *meta,
                     const char *options_text)
{
    AtomicH5 out;
    hid_t f = atomic_h5_begin(&out, path);
    write_model(f, model, model->params, o->ema, meta->step);
    H5Gclose(group_create(f, "/optim"));
    ckpt_write_group(f, "/optim/adam_m", model, o->m);
    ckpt_write_group(f, "/optim/adam_v", model, o->v);
    write_train_attrs(f, meta, o->ema != NULL, options_text);
    atomic_h5_commit(&out);
}

/* ---- reading ---- */

/* a numeric attribute that must be there: 0, or -1 with err */
static int need_attr(hid_t obj, const char *path, const char *where, const char *name, int n, hid_t type,
                     void *v, char *err, size_t cap)
{
    int rc = h5_attr_try_read(obj, path, where, name, n, type, v, err, cap);
    if (rc == 0) snprintf(err, cap, "%s: attribute %s of %s is missing", path, name, where);
    return rc == 1 ? 0 : -1;
}

/* one that older files lack: absent leaves v as it is */
static int may_attr(hid_t obj, const char *path, const char *where, const char *name, hid_t type, void *v,
                    char *err, size_t cap)
{
    return h5_attr_try_read(obj, path, where, name, 1, type, v, err, cap) < 0 ? -1 : 0;
}

/* the string attribute norm, "cin" or "cin++"; absent (files written
 * before the option): cin */
static int read_norm(hid_t g, const char *path, NormKind *kind, char *err, size_t cap)
{
    if (H5Aexists(g, "norm") <= 0) return 0;
    char text[32];
    if (!h5_attr_read_str(g, "norm", text, sizeof text)) {
        snprintf(err, cap, "%s: attribute norm of /model is not a string", path);
        return -1;
    }
    if (!norm_kind_parse(text, kind)) {
        snprintf(err, cap, "%s: attribute norm of /model is '%s', expected cin or cin++", path, text);
        return -1;
    }
    return 0;
}

static int read_model_attrs(hid_t g, const char *path, NcsnConfig *c, char *err, size_t cap)
{
    int version = 0;
    const char *at = "/model";
    if (need_attr(g, path, at, "in_channels", 1, H5T_NATIVE_INT, &c->in_channels, err, cap) < 0 ||
        need_attr(g, path, at, "nf", 1, H5T_NATIVE_INT, &c->nf, err, cap) < 0 ||
        need_attr(g, path, at, "num_classes", 1, H5T_NATIVE_INT, &c->num_classes, err, cap) < 0 ||
        need_attr(g, path, at, "scale_by_sigma", 1, H5T_NATIVE_INT, &c->scale_by_sigma, err, cap) < 0 ||
        need_attr(g, path, at, "dilations", 4, H5T_NATIVE_INT, c->dilations, err, cap) < 0 ||
        may_attr(g, path, at, "plane_head", H5T_NATIVE_INT, &c->plane_head, err, cap) < 0 ||
        may_attr(g, path, at, "head_floor", H5T_NATIVE_DOUBLE, &c->head_floor, err, cap) < 0 ||
        may_attr(g, path, at, "head_sigma_data", H5T_NATIVE_DOUBLE, &c->head_sigma_data, err, cap) < 0 ||
        read_norm(g, path, &c->norm, err, cap) < 0 ||
        may_attr(g, path, at, "format_version", H5T_NATIVE_INT, &version, err, cap) < 0)
        return -1;
    if (version > NCSN_FORMAT_VERSION) {
        snprintf(err, cap, "%s: format_version %d is newer than this program reads (%d)", path, version,
                 NCSN_FORMAT_VERSION);
        return -1;
    }
    const char *bad = config_validate(c);
    if (bad) {
        snprintf(err, cap, "%s: /model attributes: %s", path, bad);
        return -1;
    }
    return 0;
}

int ckpt_read_config(hid_t file, const char *path, NcsnConfig *cfg, float *sigmas, int *has_sigmas,
                     char *err, size_t cap)
{
    config_default(cfg);
    *has_sigmas = 0;
    if (!h5_exists(file, "/model")) {
        snprintf(err, cap, "%s: group /model is missing (not a model file)", path);
        return -1;
    }
    hid_t g = H5Gopen2(file, "/model", H5P_DEFAULT);
    int rc = read_model_attrs(g, path, cfg, err, cap);
    H5Gclose(g);
    if (rc < 0 || !h5_exists(file, "/model/sigmas")) return rc;
    hsize_t L = (hsize_t)cfg->num_classes;
    if (h5_try_read_exact(file, path, "/model/sigmas", 1, &L, H5T_NATIVE_FLOAT, sigmas, err, cap) < 0) return -1;
    const char *why = sigmas_validate(sigmas, cfg->num_classes);
    if (why) {
        snprintf(err, cap, "%s: /model/sigmas: %s", path, why);
        return -1;
    }
    *has_sigmas = 1;
    return 0;
}

int ckpt_try_read_config(const char *path, NcsnConfig *cfg, float *sigmas, int *has_sigmas, char *err,
                         size_t cap)
{
    hid_t f = h5_try_open_read(path, err, cap);
    if (f < 0) return -1;
    int rc = ckpt_read_config(f, path, cfg, sigmas, has_sigmas, err, cap);
    H5Fclose(f);
    return rc;
}

int ckpt_read_group(hid_t file, const char *path, const char *group, const Model *m, float *buf, char *err,
                    size_t cap)
{
    char name[256];
    for (int i = 0; i < m->table.n; i++) {
        const ParamSpec *p = &m->table.specs[i];
        hsize_t dims[4];
        for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
        snprintf(name, sizeof name, "%s/%s", group, p->key);
        if (h5_try_read_exact(file, path, name, p->ndim, dims, H5T_NATIVE_FLOAT, buf + p->offset, err, cap) < 0)
            return -1;
    }
    return 0;
}

int ckpt_try_load_model(Model *m, hid_t file, const char *path, char *err, size_t cap)
{
    NcsnConfig cfg;
    float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    int has_sig = 0, rc = ckpt_read_config(file, path, &cfg, sig, &has_sig, err, cap);
    if (rc == 0) {
        model_init(m, &cfg);
        rc = ckpt_read_group(file, path, "/model", m, m->params, err, cap);
        if (rc == 0 && has_sig) model_set_sigmas(m, sig);
        if (rc != 0) model_free(m);
    }
    free(sig);
    return rc;
}

void ckpt_load_model_from(Model *m, hid_t file, const char *path)
{
    char err[8400];
    if (ckpt_try_load_model(m, file, path, err, sizeof err) < 0) ncsn_die_usage("%s", err);
}

void ckpt_load_model(Model *m, const char *path)
{
    hid_t f = h5_open_read(path);
    ckpt_load_model_from(m, f, path);
    H5Fclose(f);
}

void ckpt_load_group(hid_t file, const char *path, const char *group, const Model *m, float *buf)
{
    char err[8400];
    if (ckpt_read_group(file, path, group, m, buf, err, sizeof err) < 0) ncsn_die_usage("%s", err);
}

/* ---- training checkpoints ---- */

/* -2 with err when the checkpoint's configuration differs from the run's */
static int same_config(const NcsnConfig *have, const NcsnConfig *want, const char *path, char *err, size_t cap)
{
    const char *field = NULL;
    char in_file[64] = "", in_run[64] = "";
#define DIFF(name, a, b)                                                                           \
    if (!field && (a) != (b)) {                                                                    \
        field = name;                                                                              \
        snprintf(in_file, sizeof in_file, "%d", (a));                                              \
        snprintf(in_run, sizeof in_run, "%d", (b));                                                \
    }
    DIFF("in_channels", have->in_channels, want->in_channels)
    DIFF("nf", have->nf, want->nf)
    DIFF("num_classes", have->num_classes, want->num_classes)
    for (int i = 0; i < 4; i++) DIFF("dilations", have->dilations[i], want->dilations[i])
    DIFF("scale_by_sigma", have->scale_by_sigma, want->scale_by_sigma)
    DIFF("plane_head", have->plane_head, want->plane_head)
#undef DIFF
    if (!field && have->plane_head && have->head_floor != want->head_floor) {
        field = "head_floor";
        snprintf(in_file, sizeof in_file, "%g", have->head_floor);
        snprintf(in_run, sizeof in_run, "%g", want->head_floor);
    }
    if (!field && have->head_sigma_data != want->head_sigma_data) {
        field = "head_sigma_data";
        snprintf(in_file, sizeof in_file, "%g", have->head_sigma_data);
        snprintf(in_run, sizeof in_run, "%g", want->head_sigma_data);
    }
    if (!field && have->norm != want->norm) {
        field = "norm";
        snprintf(in_file, sizeof in_file, "%s", norm_kind_name(have->norm));
        snprintf(in_run, sizeof in_run, "%s", norm_kind_name(want->norm));
    }
    if (!field) return 0;
    snprintf(err, cap, "%s: /model %s is %s in the checkpoint but %s in this run", path, field, in_file, in_run);
    return -2;
}

/* the /train attributes resuming needs */
static int read_train_attrs(hid_t f, const char *path, TrainMeta *meta, char *err, size_t cap)
{
    if (!h5_exists(f, "/train")) {
        snprintf(err, cap, "%s: group /train is missing (a model file, not a training checkpoint)", path);
        return -1;
    }
    hid_t t = H5Gopen2(f, "/train", H5P_DEFAULT);
    int step = 0, batch = 0, shape[4] = {0}, has_ema = 0;
    const char *at = "/train";
    int rc = need_attr(t, path, at, "step", 1, H5T_NATIVE_INT, &step, err, cap) < 0 ||
             need_attr(t, path, at, "batch", 1, H5T_NATIVE_INT, &batch, err, cap) < 0 ||
             need_attr(t, path, at, "data_shape", 4, H5T_NATIVE_INT, shape, err, cap) < 0 ||
             need_attr(t, path, at, "has_ema", 1, H5T_NATIVE_INT, &has_ema, err, cap) < 0 ||
             need_attr(t, path, at, "seed", 1, H5T_NATIVE_ULLONG, &meta->seed, err, cap) < 0 ? -1 : 0;
    if (rc == 0) h5_attr_read_str(t, "sigma_rule", meta->sigma_rule, sizeof meta->sigma_rule);
    H5Gclose(t);
    meta->step = step;
    meta->batch = batch;
    for (int i = 0; i < 4; i++) meta->data_shape[i] = shape[i];
    meta->has_ema = has_ema;
    return rc;
}

int ckpt_try_load_train(const char *path, Model *model, OptimState *o, TrainMeta *meta, char *err,
                        size_t cap)
{
    hid_t f = h5_try_open_read(path, err, cap);
    if (f < 0) return -1;
    NcsnConfig cfg;
    float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    int has_sig = 0;
    int rc = ckpt_read_config(f, path, &cfg, sig, &has_sig, err, cap);
    if (rc == 0) rc = same_config(&cfg, &model->cfg, path, err, cap);
    if (rc == 0 && !has_sig) {
        snprintf(err, cap, "%s: /model/sigmas is missing", path);
        rc = -1;
    }
    if (rc == 0) rc = read_train_attrs(f, path, meta, err, cap);
    if (rc == 0) rc = ckpt_read_group(f, path, "/model", model, model->params, err, cap);
    if (rc == 0) rc = ckpt_read_group(f, path, "/optim/adam_m", model, o->m, err, cap);
    if (rc == 0) rc = ckpt_read_group(f, path, "/optim/adam_v", model, o->v, err, cap);
    if (rc == 0 && o->ema) {
        if (meta->has_ema) rc = ckpt_read_group(f, path, "/ema", model, o->ema, err, cap);
        else memcpy(o->ema, model->params, model->table.total * sizeof(float));
    }
    H5Fclose(f);
    if (rc == 0) model_set_sigmas(model, sig);
    free(sig);
    return rc;
}
