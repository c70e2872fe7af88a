/* cmd_model.c: the subcommands that work on one model file without MPI:
 * init, info, score and grad (DESIGN.md 5). score and grad are how users and
 * tests compare the network with other implementations. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/atomic_file.h"
#include "ncsn/ckpt.h"
#include "ncsn/cli.h"
#include "ncsn/common.h"
#include "ncsn/h5util.h"
#include "ncsn/loss.h"

static void print_count(const char *label, size_t n)
{
    char digits[32], out[48];
    snprintf(digits, sizeof digits, "%zu", n);
    size_t len = strlen(digits), k = 0;
    for (size_t i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0) out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = '\0';
    printf("%s%s\n", label, out);
}

static void require(const char *value, const char *cmd, const char *name)
{
    if (!value) ncsn_die_usage("ncsn %s: option --%s is required", cmd, name);
}

int cmd_init(const Options *o)
{
    require(o->out, "init", "out");
    NcsnConfig cfg;
    opt_model_config(o, &cfg);
    float *sig = xmalloc((size_t)cfg.num_classes * sizeof(float));
    int has = opt_sigmas(o, cfg.num_classes, sig);
    h5_quiet();
    Model m;
    model_init(&m, &cfg);
    model_init_weights(&m, o->seed);
    if (has) model_set_sigmas(&m, sig);
    free(sig);
    ckpt_save_model(o->out, &m, m.params, NULL, 0);
    print_count("parameters: ", model_param_count(&m));
    printf("wrote %s\n", o->out);
    model_free(&m);
    return 0;
}

int cmd_info(const Options *o)
{
    if (!o->positional) ncsn_die_usage("ncsn info: give a model file (ncsn info MODEL.h5)");
    h5_quiet();
    hid_t f = h5_open_read(o->positional);
    Model m;
    ckpt_load_model_from(&m, f, o->positional);
    const NcsnConfig *c = &m.cfg;
    printf("file:           %s\n", o->positional);
    printf("in_channels:    %d\nnf:             %d\nnum_classes:    %d\n", c->in_channels, c->nf,
           c->num_classes);
    printf("dilations:      %d,%d,%d,%d\n", c->dilations[0], c->dilations[1], c->dilations[2],
           c->dilations[3]);
    printf("scale_by_sigma: %s\n", c->scale_by_sigma ? "yes" : "no");
    if (c->plane_head) printf("plane_head:     yes, head_floor %g\n", c->head_floor);
    else printf("plane_head:     no\n");
    if (c->head_sigma_data > 0) printf("head_sigma_data: %g (preconditioned output)\n", c->head_sigma_data);
    else printf("head_sigma_data: off\n");
    printf("norm:           %s\n", norm_kind_name(c->norm));
    print_count("parameters:     ", model_param_count(&m));
    printf("sigmas:         ");
    if (!m.sigmas) printf("not set");
    for (int i = 0; m.sigmas && i < c->num_classes; i++) printf("%s%.6g", i ? "," : "", m.sigmas[i]);
    printf("\n");
    int step = 0;
    hid_t g = H5Gopen2(f, "/model", H5P_DEFAULT);
    h5_attr_read_int(g, o->positional, "/model", "step", 1, &step);
    H5Gclose(g);
    printf("step:           %d\n", step);
    printf("ema weights:    %s\n", h5_exists(f, "/ema") ? "yes" : "no");
    H5Fclose(f);
    model_free(&m);
    return 0;
}

/* Reads /x [N,C,H,W] and /labels [N] (and /noise when asked) of an input file. */
typedef struct {
    float *x, *noise;
    int *labels;
    Shape s;
} NetInput;

static NetInput read_input(const char *path, const Model *m, int with_noise)
{
    NetInput in;
    memset(&in, 0, sizeof in);
    hid_t f = h5_open_read(path);
    hsize_t d[4], nl;
    in.x = h5_read_floats(f, path, "/x", 4, d);
    in.s = (Shape){(int)d[0], (int)d[1], (int)d[2], (int)d[3]};
    if (in.s.C != m->cfg.in_channels)
        ncsn_die_usage("%s: dataset /x has %d channels, the model expects %d", path, in.s.C,
                       m->cfg.in_channels);
    if (in.s.N < 1 || in.s.H < 1 || in.s.W < 1) ncsn_die_usage("%s: dataset /x is empty", path);
    in.labels = h5_read_ints(f, path, "/labels", &nl);
    if ((int)nl != in.s.N)
        ncsn_die_usage("%s: dataset /labels has %llu entries, /x has %d images", path,
                       (unsigned long long)nl, in.s.N);
    for (int i = 0; i < in.s.N; i++)
        if (in.labels[i] < 0 || in.labels[i] >= m->cfg.num_classes)
            ncsn_die_usage("%s: /labels[%d] = %d is out of range 0..%d", path, i, in.labels[i],
                           m->cfg.num_classes - 1);
    if (with_noise) {
        in.noise = xmalloc(shape_count(in.s) * sizeof(float));
        h5_read_exact(f, path, "/noise", 4, d, H5T_NATIVE_FLOAT, in.noise);
    }
    H5Fclose(f);
    return in;
}

static void free_input(NetInput *in)
{
    free(in->x);
    free(in->noise);
    free(in->labels);
}

static void load_for_eval(Model *m, const Options *o, const char *cmd)
{
    require(o->model, cmd, "model");
    require(o->input, cmd, "input");
    require(o->out, cmd, "out");
    h5_quiet();
    ckpt_load_model(m, o->model);
    if (!m->sigmas && (m->cfg.scale_by_sigma || m->cfg.plane_head || strcmp(cmd, "grad") == 0))
        ncsn_die_usage("%s: /model/sigmas is missing: ncsn %s needs noise levels", o->model, cmd);
}

int cmd_score(const Options *o)
{
    Model m;
    load_for_eval(&m, o, "score");
    model_drop_grads(&m);
    NetInput in = read_input(o->input, &m, 0);
    float *out = xmalloc(shape_count(in.s) * sizeof(float));
    ModelRun run;
    model_run_init(&run);
    run.inference = 1;
    model_forward(&m, &run, out, in.x, in.labels, in.s);
    AtomicH5 res;
    hid_t f = atomic_h5_begin(&res, o->out);
    hsize_t d[4] = {(hsize_t)in.s.N, (hsize_t)in.s.C, (hsize_t)in.s.H, (hsize_t)in.s.W};
    h5_write(f, "/score", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 4, d, out);
    atomic_h5_commit(&res);
    model_run_free(&run);
    free(out);
    free_input(&in);
    model_free(&m);
    return 0;
}

int cmd_grad(const Options *o)
{
    Model m;
    load_for_eval(&m, o, "grad");
    NetInput in = read_input(o->input, &m, 1);
    ModelRun run;
    model_run_init(&run);
    DsmWork w = {0};
    double sum = dsm_step(&m, &run, &w, in.x, in.labels, in.noise, in.s, 1.0f / (float)in.s.N, NULL);
    double loss = sum / in.s.N;
    AtomicH5 res;
    hid_t f = atomic_h5_begin(&res, o->out);
    h5_write_scalar_double(f, "/loss", loss);
    ckpt_write_group(f, "/grad", &m, m.grads);
    atomic_h5_commit(&res);
    printf("loss: %.9g\n", loss);
    dsm_work_free(&w);
    model_run_free(&run);
    free_input(&in);
    model_free(&m);
    return 0;
}
