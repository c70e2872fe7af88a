/* train_plan.c: the run plan of `ncsn train` (train_plan.h): rank 0 reads
 * the --model file, applies the resume policy, or starts fresh with noise
 * levels from the options, the file or the data; then every rank gets
 * rank 0's model, moments and levels. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/train_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/noise_levels.h"
#include "ncsn/rundir.h"

/* A resumed run keeps the checkpoint's noise levels: noise-level options
 * that give others refuse the checkpoint (-2, with err) rather than being
 * printed as if they took effect. */
static int resume_sigmas_agree(const TrainState *t, const Options *o, const char *path, char *err, size_t cap)
{
    int L = t->model.cfg.num_classes;
    float *want = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    int rc = 0;
    if (opt_sigmas(o, L, want) && memcmp(want, t->model.sigmas, (size_t)L * sizeof(float)) != 0) {
        snprintf(err, cap, "%s: its noise levels are %.6g .. %.6g but option %s gives %.6g .. %.6g; a resumed "
                 "run keeps its levels (drop the option, or start a new --run-dir)", path, t->model.sigmas[0],
                 t->model.sigmas[L - 1], o->sigmas ? "--sigmas" : "--sigma-begin/--sigma-end", want[0], want[L - 1]);
        rc = -2;
    }
    free(want);
    return rc;
}

/* The checkpoint was made on a dataset of this shape: 0, or -2 with err. */
static int resume_data_agree(const TrainState *t, const char *path, char *err, size_t cap)
{
    const Dataset *d = &t->data;
    const long *s = t->meta.data_shape;
    if (s[0] == d->N && s[1] == d->C && s[2] == d->H && s[3] == d->W) return 0;
    snprintf(err, cap, "%s: /train data_shape is [%ld,%ld,%ld,%ld] but %s:%s is [%ld,%d,%d,%d]", path, s[0], s[1],
             s[2], s[3], d->path, d->name, d->N, d->C, d->H, d->W);
    return -2;
}

/* What resuming from a checkpoint changes that the user may not expect. */
static void resume_warnings(const TrainState *t, const Options *o, const char *path)
{
    if (t->meta.has_ema && !t->opt.ema)
        printf("warning: %s holds EMA weights; this run has --ema 0 and drops them\n", path);
    if (!t->meta.has_ema && t->opt.ema)
        printf("warning: %s holds no EMA weights; the EMA starts from its weights\n", path);
    if (t->meta.seed != o->seed)
        printf("warning: %s was made with --seed %llu, this run uses %llu\n", path, t->meta.seed,
               (unsigned long long)o->seed);
    if (t->meta.batch != o->batch)
        printf("warning: %s was made with --batch %ld, this run uses %ld\n", path, t->meta.batch, o->batch);
}

/* Loads checkpoint `path` into t for configuration cfg: 0; -1 damaged;
 * -2 made for another run (err says why). With free_levels (the number of
 * levels is the data's to choose), the checkpoint's number is taken. */
static int load_checkpoint(TrainState *t, const Options *o, const NcsnConfig *cfg, int free_levels,
                           const char *path, char *err, size_t cap)
{
    NcsnConfig want = *cfg;
    if (free_levels) {
        NcsnConfig have;
        float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
        int has_sig;
        if (ckpt_try_read_config(path, &have, sig, &has_sig, err, cap) == 0)
            want.num_classes = have.num_classes; /* else the load below says what is wrong */
        free(sig);
    }
    model_init(&t->model, &want);
    train_optim_alloc(t, o->ema_rate > 0);
    int rc = ckpt_try_load_train(path, &t->model, &t->opt, &t->meta, err, cap);
    if (rc == 0) rc = resume_data_agree(t, path, err, cap);
    if (rc == 0) rc = resume_sigmas_agree(t, o, path, err, cap);
    if (rc == 0) return 0;
    train_optim_free(t);
    model_free(&t->model);
    return rc;
}

/* Rank 0: tries checkpoints newest first; returns 1 when one was loaded.
 * A damaged checkpoint is refused and the next older one tried; one made
 * with another model configuration or dataset ends the run (exit 2): the
 * run dir belongs to another run, and starting over would overwrite it. */
static int try_resume(TrainState *t, const Options *o, const NcsnConfig *cfg, int free_levels)
{
    const char *mode = o->resume;
    long *steps = NULL;
    int n = rundir_list_ckpts(o->run_dir, &steps);
    if (strcmp(mode, "none") == 0) {
        if (n > 0)
            ncsn_die_usage("--resume none: %s already holds checkpoints (newest: step %ld); use another "
                           "--run-dir or remove them to start over", o->run_dir, steps[0]);
        free(steps);
        return 0;
    }
    int is_auto = strcmp(mode, "auto") == 0;
    if (!is_auto) n = 1;
    char path[4096], err[8192];
    for (int i = 0; i < n; i++) {
        if (is_auto) rundir_ckpt_path(path, sizeof path, o->run_dir, steps[i]);
        else snprintf(path, sizeof path, "%s", mode);
        int rc = load_checkpoint(t, o, cfg, free_levels, path, err, sizeof err);
        if (rc == 0) {
            resume_warnings(t, o, path);
            printf("resuming from %s at step %ld\n", path, t->meta.step);
            free(steps);
            return 1;
        }
        if (rc == -2) ncsn_die_usage("--resume %s: refusing checkpoint %s", mode, err);
        if (!is_auto) ncsn_die_usage("--resume: refusing %s", err);
        fprintf(stderr, "ncsn: refusing checkpoint %s\n", err);
        if (i + 1 < n) fprintf(stderr, "ncsn: falling back to the next older checkpoint\n");
    }
    if (n > 0)
        ncsn_die_usage("--resume auto: none of the %d checkpoints in %s is usable (see above); "
                       "use --resume none in a new --run-dir to start over", n, o->run_dir);
    free(steps);
    return 0;
}

/* Without noise-level options, --num-classes or a --model file, the
 * number of levels is chosen from the data too (NCSNv2's technique 2). */
static int levels_from_data(const Options *o)
{
    return !o->model && !o->sigmas && !opt_given(o, "num-classes") && !opt_given(o, "sigma-begin") &&
           !opt_given(o, "sigma-end");
}

/* The noise levels of a fresh run, first found of: the options (--sigmas,
 * --sigma-begin/--sigma-end), the --model file's, or the data's (which may
 * set cfg->num_classes). Returns sigmas[cfg->num_classes]; `rule` says
 * where they came from. */
static float *choose_sigmas(TrainState *t, const Options *o, NcsnConfig *cfg, const Model *from_file, char *rule,
                            size_t cap)
{
    float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    if (opt_sigmas(o, cfg->num_classes, sig)) {
        snprintf(rule, cap, "option %s", o->sigmas ? "--sigmas" : "--sigma-begin/--sigma-end");
    } else if (from_file && from_file->sigmas) {
        memcpy(sig, from_file->sigmas, (size_t)cfg->num_classes * sizeof(float));
        snprintf(rule, cap, "the --model file");
    } else {
        noise_levels_from_data(&t->data, o->sigma_pick, o->seed, levels_from_data(o),
                               from_file ? "the --model file's" : "--num-classes", &cfg->num_classes, sig, rule, cap);
    }
    return sig;
}

/* Rank 0, no checkpoint: the model of the options or of the --model file,
 * its moments zero and its EMA equal to its weights. */
static void start_fresh(TrainState *t, const Options *o, NcsnConfig *cfg, const Model *from_file)
{
    float *sig = choose_sigmas(t, o, cfg, from_file, t->meta.sigma_rule, sizeof t->meta.sigma_rule);
    model_init(&t->model, cfg);
    size_t total = t->model.table.total;
    train_optim_alloc(t, o->ema_rate > 0);
    if (from_file) memcpy(t->model.params, from_file->params, total * sizeof(float));
    else model_init_weights(&t->model, o->seed);
    model_set_sigmas(&t->model, sig);
    free(sig);
    if (t->opt.ema) memcpy(t->opt.ema, t->model.params, total * sizeof(float));
}

/* Rank 0 decides the configuration, the weights and the starting step. */
static long plan_run(TrainState *t, const Options *o)
{
    NcsnConfig cfg;
    Model from_file;
    if (o->model) {
        ckpt_load_model(&from_file, o->model);
        opt_check_model_file(o, &from_file.cfg, o->model);
        cfg = from_file.cfg;
    } else {
        opt_model_config(o, &cfg);
    }
    if (cfg.in_channels != t->data.C)
        ncsn_die_usage("%s: dataset %s has %d channels, the model expects %d (--in-channels)",
                       t->data.path, t->data.name, t->data.C, cfg.in_channels);
    long start = 0;
    if (try_resume(t, o, &cfg, levels_from_data(o))) start = t->meta.step;
    else start_fresh(t, o, &cfg, o->model ? &from_file : NULL);
    if (o->model) model_free(&from_file);
    return start;
}

/* Everyone gets rank 0's configuration, weights, moments and noise levels. */
static void share_plan(TrainState *t, NcsnConfig *cfg, int with_ema)
{
    dist_bcast(cfg, sizeof *cfg, 0);
    if (t->dist.rank != 0) {
        model_init(&t->model, cfg);
        train_optim_alloc(t, with_ema);
        float *sig = xcalloc((size_t)cfg->num_classes, sizeof(float));
        model_set_sigmas(&t->model, sig);
        free(sig);
    }
    size_t bytes = t->model.table.total * sizeof(float);
    dist_bcast(t->model.params, bytes, 0);
    dist_bcast(t->opt.m, bytes, 0);
    dist_bcast(t->opt.v, bytes, 0);
    if (t->opt.ema) dist_bcast(t->opt.ema, bytes, 0);
    dist_bcast(t->model.sigmas, (size_t)cfg->num_classes * sizeof(float), 0);
}

long train_plan(TrainState *t, const Options *o)
{
    long start = 0;
    NcsnConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    if (t->dist.rank == 0) {
        start = plan_run(t, o);
        cfg = t->model.cfg;
    }
    share_plan(t, &cfg, o->ema_rate > 0);
    dist_bcast(&start, sizeof start, 0);
    return start;
}
