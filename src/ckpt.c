/* ckpt.c: the model group of model files and checkpoints. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/ckpt.h"

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
    CHECK(g >= 0, "cannot create group %s", group);
    const NcsnConfig *c = &m->cfg;
    h5_attr_write_int(g, "in_channels", 1, &c->in_channels);
    h5_attr_write_int(g, "nf", 1, &c->nf);
    h5_attr_write_int(g, "num_classes", 1, &c->num_classes);
    h5_attr_write_int(g, "dilations", 4, c->dilations);
    h5_attr_write_int(g, "scale_by_sigma", 1, &c->scale_by_sigma);
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
    CHECK(fd >= 0, "%s: cannot reopen to sync", tmp);
    CHECK(fsync(fd) == 0, "%s: fsync failed", tmp);
    close(fd);
    CHECK(rename(tmp, final) == 0, "cannot rename %s to %s", tmp, final);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", final);
    int dfd = open(dirname(dir), O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

void ckpt_save_model(const char *path, const Model *m, const float *weights, long step)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    ncsn_cleanup_on_error(tmp);
    hid_t f = h5_create(tmp);
    ckpt_write_weights(f, "/model", m, weights);
    hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
    int st = (int)step;
    h5_attr_write_int(g, "step", 1, &st);
    H5Gclose(g);
    H5_CHECK(H5Fclose(f));
    file_commit(tmp, path);
    ncsn_cleanup_done();
}
