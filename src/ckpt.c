/* ckpt.c: the model group of model files and checkpoints. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/common.h"
#include "ncsn/h5util.h"

void ckpt_write_weights(hid_t file, const char *group, const Model *m, const float *weights)
{
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(file, g, "create group %s", group);
    const NcsnConfig *c = &m->cfg;
    h5_attr_write_int(g, "in_channels", 1, &c->in_channels);
    h5_attr_write_int(g, "nf", 1, &c->nf);
    h5_attr_write_int(g, "num_classes", 1, &c->num_classes);
    h5_attr_write_int(g, "dilations", 4, c->dilations);
    h5_attr_write_int(g, "scale_by_sigma", 1, &c->scale_by_sigma);
    h5_attr_write_int(g, "plane_head", 1, &c->plane_head);
    h5_attr_write_double(g, "head_floor", 1, &c->head_floor);
    h5_attr_write_str(g, "norm", norm_kind_name(c->norm));
    int version = NCSN_FORMAT_VERSION;
    h5_attr_write_int(g, "format_version", 1, &version);
    for (int i = 0; i < m->table.n; i++) {
        const ParamSpec *p = &m->table.specs[i];
        hsize_t dims[4];
        for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
        h5_write(g, p->key, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, p->ndim, dims, weights + p->offset);
    }
    if (m->sigmas) {
        hsize_t L = (hsize_t)c->num_classes;
        h5_write(g, "sigmas", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 1, &L, m->sigmas);
    }
    H5Gclose(g);
}

static int read_attr_int(hid_t g, const char *path, const char *name, int n, int *v)
{
    return h5_attr_read_int(g, path, "/model", name, n, v);
}

/* the string attribute norm, "cin" or "cin++"; absent (files written
 * before the option): cin. 0, or -1 with err set */
static int try_attr_norm(hid_t g, NormKind *kind, const char *path, char *err, size_t cap)
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

void ckpt_load_model_from(Model *m, hid_t file, const char *path)
{
    if (!h5_exists(file, "/model")) ncsn_die_usage("%s: group /model is missing (not a model file)", path);
    hid_t g = H5Gopen2(file, "/model", H5P_DEFAULT);
    NcsnConfig c;
    config_default(&c);
    const char *req[] = {"in_channels", "nf", "num_classes", "scale_by_sigma"};
    int *dst[] = {&c.in_channels, &c.nf, &c.num_classes, &c.scale_by_sigma};
    for (int i = 0; i < 4; i++)
        if (!read_attr_int(g, path, req[i], 1, dst[i]))
            ncsn_die_usage("%s: attribute %s of /model is missing", path, req[i]);
    if (!read_attr_int(g, path, "dilations", 4, c.dilations))
        ncsn_die_usage("%s: attribute dilations of /model is missing", path);
    /* absent in files written before the plane head: off */
    read_attr_int(g, path, "plane_head", 1, &c.plane_head);
    h5_attr_read_double(g, path, "/model", "head_floor", 1, &c.head_floor);
    char err[512];
    if (try_attr_norm(g, &c.norm, path, err, sizeof err) < 0) ncsn_die_usage("%s", err);
    int version = 0;
    if (read_attr_int(g, path, "format_version", 1, &version) && version > NCSN_FORMAT_VERSION)
        ncsn_die_usage("%s: format_version %d is newer than this program reads (%d)", path, version,
                       NCSN_FORMAT_VERSION);
    H5Gclose(g);
    const char *bad = config_validate(&c);
    if (bad) ncsn_die_usage("%s: /model attributes: %s", path, bad);
    model_init(m, &c);
    ckpt_read_weights(file, path, "/model", m, m->params);
    if (h5_exists(file, "/model/sigmas")) {
        hsize_t L = (hsize_t)c.num_classes;
        float *s = xmalloc(L * sizeof(float));
        h5_read_exact(file, path, "/model/sigmas", 1, &L, H5T_NATIVE_FLOAT, s);
        const char *why = sigmas_validate(s, c.num_classes);
        if (why) ncsn_die_usage("%s: /model/sigmas: %s", path, why);
        model_set_sigmas(m, s);
        free(s);
    }
}

void ckpt_load_model(Model *m, const char *path)
{
    hid_t f = h5_open_read(path);
    ckpt_load_model_from(m, f, path);
    H5Fclose(f);
}

void ckpt_read_weights(hid_t file, const char *path, const char *group, const Model *m, float *weights)
{
    char name[256];
    for (int i = 0; i < m->table.n; i++) {
        const ParamSpec *p = &m->table.specs[i];
        hsize_t dims[4];
        for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
        snprintf(name, sizeof name, "%s/%s", group, p->key);
        h5_read_exact(file, path, name, p->ndim, dims, H5T_NATIVE_FLOAT, weights + p->offset);
    }
}

void file_commit(const char *tmp, const char *final)
{
    int fd = open(tmp, O_RDONLY);
    CHECK(fd >= 0, "%s: cannot reopen to sync: %s", tmp, strerror(errno));
    CHECK(fsync(fd) == 0, "%s: cannot write (fsync of %s): %s", final, tmp, strerror(errno));
    close(fd);
    CHECK(rename(tmp, final) == 0, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", final);
    int dfd = open(dirname(dir), O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

hid_t atomic_h5_begin(AtomicH5 *a, const char *path)
{
    snprintf(a->path, sizeof a->path, "%s", path);
    h5_temp_name(path, a->tmp, sizeof a->tmp);
    ncsn_cleanup_on_error(a->tmp);
    a->file = h5_create(a->tmp);
    return a->file;
}

void atomic_h5_commit(AtomicH5 *a)
{
    h5_close_written(a->file);
    file_commit(a->tmp, a->path);
    ncsn_cleanup_done();
}

void ckpt_save_model(const char *path, const Model *m, const float *weights, long step)
{
    AtomicH5 out;
    hid_t f = atomic_h5_begin(&out, path);
    ckpt_write_weights(f, "/model", m, weights);
    hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
    int st = (int)step;
    h5_attr_write_int(g, "step", 1, &st);
    H5Gclose(g);
    atomic_h5_commit(&out);
}

/* ---- training checkpoints ---- */

static void write_group_of(hid_t file, const char *group, const Model *m, const float *buf)
{
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(file, g, "create group %s", group);
    for (int i = 0; i < m->table.n; i++) {
        const ParamSpec *p = &m->table.specs[i];
        hsize_t dims[4];
        for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
        h5_write(g, p->key, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, p->ndim, dims, buf + p->offset);
    }
    H5Gclose(g);
}

void ckpt_save_train(const char *path, const Model *model, const OptimState *o, const TrainMeta *meta,
                     const char *options_text)
{
    AtomicH5 out;
    hid_t f = atomic_h5_begin(&out, path);
    ckpt_write_weights(f, "/model", model, model->params);
    hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
    int st = (int)meta->step;
    h5_attr_write_int(g, "step", 1, &st);
    H5Gclose(g);
    if (o->ema) ckpt_write_weights(f, "/ema", model, o->ema);
    hid_t og = H5Gcreate2(f, "/optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(f, og, "create group /optim");
    H5Gclose(og);
    write_group_of(f, "/optim/adam_m", model, o->m);
    write_group_of(f, "/optim/adam_v", model, o->v);
    hid_t t = H5Gcreate2(f, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(f, t, "create group /train");
    int ints[4];
    ints[0] = (int)meta->step;
    h5_attr_write_int(t, "step", 1, ints);
    ints[0] = meta->data_shape[0] > 0 ? (int)(meta->step * meta->batch / meta->data_shape[0]) : 0;
    h5_attr_write_int(t, "epoch", 1, ints);
    ints[0] = (int)meta->batch;
    h5_attr_write_int(t, "batch", 1, ints);
    long long pos = (long long)meta->step * meta->batch;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(t, "position", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(t, a, "create attribute position of /train");
    H5_CHECK_IN(t, H5Awrite(a, H5T_NATIVE_LLONG, &pos), "write attribute position of /train");
    H5Aclose(a);
    a = H5Acreate2(t, "seed", H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(t, a, "create attribute seed of /train");
    H5_CHECK_IN(t, H5Awrite(a, H5T_NATIVE_ULLONG, &meta->seed), "write attribute seed of /train");
    H5Aclose(a);
    H5Sclose(sp);
    for (int i = 0; i < 4; i++) ints[i] = (int)meta->data_shape[i];
    h5_attr_write_int(t, "data_shape", 4, ints);
    ints[0] = o->ema != NULL;
    h5_attr_write_int(t, "has_ema", 1, ints);
    h5_attr_write_str(t, "rng", "philox4x32-10, counter-based: draws are functions of (seed, step, sample)");
    h5_attr_write_str(t, "options", options_text ? options_text : "");
    if (meta->sigma_rule[0]) h5_attr_write_str(t, "sigma_rule", meta->sigma_rule);
    ints[0] = NCSN_FORMAT_VERSION;
    h5_attr_write_int(t, "format_version", 1, ints);
    H5Gclose(t);
    atomic_h5_commit(&out);
}

/* Non-dying readers for checkpoint validation. */
static int try_read(hid_t f, const char *name, int rank, const int *shape, float *buf, const char *path,
                    char *err, size_t cap)
{
    if (!h5_exists(f, name)) {
        snprintf(err, cap, "%s: %s is missing", path, name);
        return -1;
    }
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(err, cap, "%s: %s cannot be opened", path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[8];
    int r = H5Sget_simple_extent_ndims(sp);
    int ok = r == rank && r <= 8;
    if (ok) H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int i = 0; ok && i < rank; i++) ok = dims[i] == (hsize_t)shape[i];
    H5Sclose(sp);
    if (!ok) {
        H5Dclose(ds);
        snprintf(err, cap, "%s: %s has the wrong shape", path, name);
        return -1;
    }
    herr_t rc = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    char why[512];
    h5_reason(why, sizeof why);
    H5Dclose(ds);
    if (rc < 0) {
        snprintf(err, cap, "%s: %s cannot be read: %s", path, name, why);
        return -1;
    }
    return 0;
}

static int try_group(hid_t f, const char *group, const Model *m, float *buf, const char *path,
                     char *err, size_t cap)
{
    char name[256];
    for (int i = 0; i < m->table.n; i++) {
        const ParamSpec *p = &m->table.specs[i];
        snprintf(name, sizeof name, "%s/%s", group, p->key);
        if (try_read(f, name, p->ndim, p->shape, buf + p->offset, path, err, cap) < 0) return -1;
    }
    return 0;
}

/* reads n values of a numeric attribute as type; 0, or -1 with err set */
static int try_attr(hid_t obj, const char *name, int n, hid_t type, void *v, const char *path,
                    const char *where, char *err, size_t cap)
{
    if (H5Aexists(obj, name) <= 0) {
        snprintf(err, cap, "%s: attribute %s of %s is missing", path, name, where);
        return -1;
    }
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    int count = (int)H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    herr_t rc = count == n ? H5Aread(a, type, v) : -1;
    H5Aclose(a);
    if (rc < 0) {
        snprintf(err, cap, "%s: attribute %s of %s is unreadable", path, name, where);
        return -1;
    }
    return 0;
}

static int try_attr_int(hid_t obj, const char *name, int n, int *v, const char *path,
                        const char *where, char *err, size_t cap)
{
    return try_attr(obj, name, n, H5T_NATIVE_INT, v, path, where, err, cap);
}

/* an attribute that older files lack: absent leaves v as it is */
static int try_attr_optional(hid_t obj, const char *name, hid_t type, void *v, const char *path,
                             const char *where, char *err, size_t cap)
{
    return H5Aexists(obj, name) <= 0 ? 0 : try_attr(obj, name, 1, type, v, path, where, err, cap);
}


int ckpt_try_read_config(const char *path, NcsnConfig *cfg, float *sigmas, int *has_sigmas,
                         char *err, size_t cap)
{
    hid_t f = h5_try_open_read(path, err, cap);
    if (f < 0) return -1;
    int rc = -1;
    config_default(cfg);
    *has_sigmas = 0;
    if (!h5_exists(f, "/model")) {
        snprintf(err, cap, "%s: group /model is missing", path);
        H5Fclose(f);
        return -1;
    }
    hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
    if (try_attr_int(g, "in_channels", 1, &cfg->in_channels, path, "/model", err, cap) == 0 &&
        try_attr_int(g, "nf", 1, &cfg->nf, path, "/model", err, cap) == 0 &&
        try_attr_int(g, "num_classes", 1, &cfg->num_classes, path, "/model", err, cap) == 0 &&
        try_attr_int(g, "dilations", 4, cfg->dilations, path, "/model", err, cap) == 0 &&
        try_attr_int(g, "scale_by_sigma", 1, &cfg->scale_by_sigma, path, "/model", err, cap) == 0 &&
        try_attr_optional(g, "plane_head", H5T_NATIVE_INT, &cfg->plane_head, path, "/model", err, cap) == 0 &&
        try_attr_optional(g, "head_floor", H5T_NATIVE_DOUBLE, &cfg->head_floor, path, "/model", err, cap) == 0 &&
        try_attr_norm(g, &cfg->norm, path, err, cap) == 0) {
        const char *bad = config_validate(cfg);
        if (bad) snprintf(err, cap, "%s: /model attributes: %s", path, bad);
        else rc = 0;
    }
    H5Gclose(g);
    if (rc == 0 && h5_exists(f, "/model/sigmas")) {
        int L = cfg->num_classes;
        rc = try_read(f, "/model/sigmas", 1, &L, sigmas, path, err, cap);
        if (rc == 0) {
            const char *why = sigmas_validate(sigmas, L);
            if (why) {
                snprintf(err, cap, "%s: /model/sigmas: %s", path, why);
                rc = -1;
            }
            *has_sigmas = 1;
        }
    }
    H5Fclose(f);
    return rc;
}

int ckpt_try_load_train(const char *path, Model *model, OptimState *o, TrainMeta *meta, char *err,
                        size_t cap)
{
    NcsnConfig cfg;
    float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    int has_sig = 0;
    if (ckpt_try_read_config(path, &cfg, sig, &has_sig, err, cap) < 0) {
        free(sig);
        return -1;
    }
    const NcsnConfig *want = &model->cfg;
    const char *field = NULL;
    char have[64] = "", mine[64] = "";
#define DIFF(name, a, b)                                                                           \
    if (!field && (a) != (b)) {                                                                    \
        field = name;                                                                              \
        snprintf(have, sizeof have, "%d", (a));                                                    \
        snprintf(mine, sizeof mine, "%d", (b));                                                    \
    }
    DIFF("in_channels", cfg.in_channels, want->in_channels)
    DIFF("nf", cfg.nf, want->nf)
    DIFF("num_classes", cfg.num_classes, want->num_classes)
    for (int i = 0; i < 4; i++) DIFF("dilations", cfg.dilations[i], want->dilations[i])
    DIFF("scale_by_sigma", cfg.scale_by_sigma, want->scale_by_sigma)
    DIFF("plane_head", cfg.plane_head, want->plane_head)
#undef DIFF
    if (!field && cfg.plane_head && cfg.head_floor != want->head_floor) {
        field = "head_floor";
        snprintf(have, sizeof have, "%g", cfg.head_floor);
        snprintf(mine, sizeof mine, "%g", want->head_floor);
    }
    if (!field && cfg.norm != want->norm) {
        field = "norm";
        snprintf(have, sizeof have, "%s", norm_kind_name(cfg.norm));
        snprintf(mine, sizeof mine, "%s", norm_kind_name(want->norm));
    }
    if (field) {
        snprintf(err, cap, "%s: /model %s is %s in the checkpoint but %s in this run", path, field, have, mine);
        free(sig);
        return -2;
    }
    if (!has_sig) {
        snprintf(err, cap, "%s: /model/sigmas is missing", path);
        free(sig);
        return -1;
    }
    hid_t f = h5_try_open_read(path, err, cap);
    int rc = f < 0 ? -1 : 0;
    hid_t t = -1;
    if (rc == 0 && !h5_exists(f, "/train")) {
        snprintf(err, cap, "%s: group /train is missing (a model file, not a training checkpoint)", path);
        rc = -1;
    }
    int step = 0, batch = 0, shape[4] = {0}, has_ema = 0;
    if (rc == 0) {
        t = H5Gopen2(f, "/train", H5P_DEFAULT);
        if (try_attr_int(t, "step", 1, &step, path, "/train", err, cap) < 0 ||
            try_attr_int(t, "batch", 1, &batch, path, "/train", err, cap) < 0 ||
            try_attr_int(t, "data_shape", 4, shape, path, "/train", err, cap) < 0 ||
            try_attr_int(t, "has_ema", 1, &has_ema, path, "/train", err, cap) < 0)
            rc = -1;
        if (rc == 0) {
            if (H5Aexists(t, "seed") <= 0) {
                snprintf(err, cap, "%s: attribute seed of /train is missing", path);
                rc = -1;
            } else {
                hid_t a = H5Aopen(t, "seed", H5P_DEFAULT);
                if (H5Aread(a, H5T_NATIVE_ULLONG, &meta->seed) < 0) rc = -1;
                H5Aclose(a);
            }
        }
        if (rc == 0) h5_attr_read_str(t, "sigma_rule", meta->sigma_rule, sizeof meta->sigma_rule);
        H5Gclose(t);
    }
    if (rc == 0) rc = try_group(f, "/model", model, model->params, path, err, cap);
    if (rc == 0) rc = try_group(f, "/optim/adam_m", model, o->m, path, err, cap);
    if (rc == 0) rc = try_group(f, "/optim/adam_v", model, o->v, path, err, cap);
    if (rc == 0 && o->ema) {
        if (has_ema) rc = try_group(f, "/ema", model, o->ema, path, err, cap);
        else memcpy(o->ema, model->params, model->table.total * sizeof(float));
    }
    if (f >= 0) H5Fclose(f);
    if (rc == 0) {
        model_set_sigmas(model, sig);
        meta->step = step;
        meta->batch = batch;
        for (int i = 0; i < 4; i++) meta->data_shape[i] = shape[i];
        meta->has_ema = has_ema;
    }
    free(sig);
    return rc;
}
