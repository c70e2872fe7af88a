/* train_samples.c: see train_samples.h. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/train_samples.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/common.h"
#include "ncsn/h5util.h"
#include "ncsn/png.h"
#include "ncsn/rundir.h"

#define EVAL_HEADER "step,fd,fd_floor,classifier_score,classes_5pct,n_classes"

/* The held-out file: images of the training images' shape. The evaluation's
 * classifier trains on the training file's /labels, so it must have them. */
static void check_eval_data(const TrainSamplesConfig *c, const Dataset *data)
{
    if (!h5_exists(data->file, "/labels"))
        ncsn_die_usage("--eval-data: the evaluation's classifier trains on the labels of --data %s, which has "
                       "no /labels (make it with ncsn_convert.py --labels)", c->train_data);
    Dataset held;
    data_open(&held, c->eval_data, c->dataset, 0);
    if (held.C != data->C || held.H != data->H || held.W != data->W)
        ncsn_die_usage("--eval-data %s: dataset %s has images of %d x %d x %d, the training data %d x %d x %d",
                       c->eval_data, c->dataset, held.C, held.H, held.W, data->C, data->H, data->W);
    data_close(&held);
}

/* Rank 0 checks the evaluator; every rank learns the verdict and, on a
 * failure, exits 2 with rank 0's message. */
static void check_evaluator(TrainSamples *ts)
{
    char err[8192] = "";
    int bad = 0;
    if (ts->d.rank == 0)
        bad = evaluator_init(&ts->ev, ts->c.eval_data, ts->c.train_data, ts->c.dataset, err, sizeof err) != 0;
    dist_bcast(&bad, sizeof bad, 0);
    if (bad) ncsn_die_usage("%s", err);
}

void train_samples_init(TrainSamples *ts, const TrainSamplesConfig *c, const Model *model,
                        const Dataset *data, const Dist *d)
{
    memset(ts, 0, sizeof *ts);
    ts->c = *c;
    ts->d = *d;
    ncsn_set_collective(1); /* every rank checks the same things */
    if (c->eval_data && c->every == 0)
        ncsn_die_usage("option --eval-data evaluates the samples of --sample-every K; give --sample-every");
    if (c->every > 0) {
        int L = model->cfg.num_classes;
        if (model->cfg.in_channels != 1 && model->cfg.in_channels != 3)
            ncsn_die_usage("--sample-every: pictures need 1 or 3 channels, the model has %d", model->cfg.in_channels);
        Sampler *S = &ts->S;
        S->n = c->n;
        S->img = (Shape){1, data->C, data->H, data->W};
        sampler_setup(S, &c->sampler, model->sigmas, L, ts->desc, sizeof ts->desc);
        S->clip = c->clip;
        S->denoise = 1;
        S->micro_batch = ops_pass_samples();
        S->keep_weights = 0; /* no 4x copy of the weights beside a trainer's memory (ncsn sample's --keep-weights) */
        S->seed = c->seed;
        if (c->eval_data) {
            if (c->n < 2) ncsn_die_usage("option --sample-n: the evaluation (--eval-data) needs at least 2 samples");
            check_eval_data(c, data);
            check_evaluator(ts);
        }
        model_init(&ts->m, &model->cfg);
        model_drop_grads(&ts->m);
        model_set_sigmas(&ts->m, model->sigmas);
    }
    ncsn_set_collective(0);
}

void train_samples_free(TrainSamples *ts)
{
    if (ts->c.every > 0) model_free(&ts->m);
    memset(ts, 0, sizeof *ts);
}

/* Rank 0: the grid picture, written under a temporary name and renamed. */
static void write_png(const TrainSamples *ts, const char *path, const float *all)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    const Sampler *S = &ts->S;
    int cols = (int)ceil(sqrt((double)S->n));
    if (png_write_grid(tmp, all, (int)S->n, S->img.C, S->img.H, S->img.W, cols) != 0 || rename(tmp, path) != 0) {
        int why = errno;
        unlink(tmp);
        fprintf(stderr, "ncsn: warning: cannot write %s: %s; training goes on\n", path, strerror(why));
    }
}

/* Rank 0: one row of eval.csv (the header first when the file is new). */
static void append_eval_row(const TrainSamples *ts, long step, const EvalNumbers *r)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/eval.csv", ts->c.run_dir);
    int fresh = access(path, F_OK) != 0;
    FILE *f = fopen(path, "a");
    if (!f) {
        fprintf(stderr, "ncsn: warning: cannot append to %s: %s; training goes on\n", path, strerror(errno));
        return;
    }
    if (fresh) fprintf(f, "%s\n", EVAL_HEADER);
    fprintf(f, "%ld,%.9g,%.9g,%.9g,%.0f,%.0f\n", step, r->fd, r->fd_floor, r->score, r->coverage, r->n_classes);
    if (fclose(f) != 0) fprintf(stderr, "ncsn: warning: writing %s failed: %s\n", path, strerror(errno));
}

/* Rank 0: the evaluation of step-<step>.h5; a failure is a warning. */
static void evaluate(const TrainSamples *ts, long step)
{
    char h5[4096], json[4096], log[4096], err[8192];
    rundir_samples_path(h5, sizeof h5, ts->c.run_dir, step, "h5");
    rundir_samples_path(json, sizeof json, ts->c.run_dir, step, "json");
    rundir_samples_path(log, sizeof log, ts->c.run_dir, step, "log");
    double t0 = ncsn_now();
    EvalNumbers r;
    if (evaluator_run(&ts->ev, h5, json, log, &r, err, sizeof err) != 0) {
        fprintf(stderr, "ncsn: warning: evaluation at step %ld: %s; training goes on\n", step, err);
        return;
    }
    append_eval_row(ts, step, &r);
    printf("eval at step %ld: fd %.4g (real images %.4g), classifier score %.4g, classes >= 5%%: %.0f/%.0f "
           "(%.1f s)\n", step, r.fd, r.fd_floor, r.score, r.coverage, r.n_classes, ncsn_now() - t0);
    fflush(stdout);
}

/* Every rank: samples, files and (rank 0) the evaluation of `step`. */
static void sample_step(TrainSamples *ts, long step, const float *weights, int with_eval)
{
    memcpy(ts->m.params, weights, ts->m.table.total * sizeof(float));
    const Sampler *S = &ts->S;
    float *all = ts->d.rank == 0 ? xmalloc((size_t)S->n * shape_count(S->img) * sizeof(float)) : NULL;
    double elapsed = sampler_run(S, &ts->m, &ts->d, 0, all, NULL);
    if (ts->d.rank == 0) {
        char h5[4096], png[4096];
        rundir_samples_path(h5, sizeof h5, ts->c.run_dir, step, "h5");
        rundir_samples_path(png, sizeof png, ts->c.run_dir, step, "png");
        SamplesSource src = {.model = ts->c.run_dir, .weights = ts->c.use_ema ? "ema" : "model",
                             .init = "uniform", .step = step};
        sampler_write(h5, S, &ts->m, &src, all, NULL);
        write_png(ts, png, all);
        printf("samples at step %ld: %s and .h5 (%ld samples, %.1f s)\n", step, png, S->n, elapsed);
        fflush(stdout);
        if (with_eval) evaluate(ts, step);
    }
    free(all);
    dist_barrier_idle(); /* the other ranks sleep while rank 0 writes and evaluates */
}

void train_samples_start(TrainSamples *ts, long start, const float *weights)
{
    int todo[2] = {0, 0}; /* sample, evaluate */
    if (ts->d.rank == 0) {
        char dir[4096], h5[4096];
        rundir_drop_samples_after(ts->c.run_dir, start);
        long last = rundir_trim_csv(ts->c.run_dir, "eval.csv", EVAL_HEADER, start, ts->c.eval_data != NULL);
        if (ts->c.every > 0) {
            snprintf(dir, sizeof dir, "%s/samples", ts->c.run_dir);
            rundir_prepare(dir);
            rundir_samples_path(h5, sizeof h5, ts->c.run_dir, start, "h5");
            if (start > 0 && start % ts->c.every == 0) {
                int have = access(h5, F_OK) == 0;
                todo[1] = ts->c.eval_data && last != start;
                todo[0] = !have || todo[1];
            }
        }
    }
    dist_bcast(todo, sizeof todo, 0);
    if (todo[0]) sample_step(ts, start, weights, todo[1]);
}

int train_samples_at(TrainSamples *ts, long step, const float *weights)
{
    if (ts->c.every <= 0 || step % ts->c.every != 0) return 0;
    sample_step(ts, step, weights, ts->c.eval_data != NULL);
    return 1;
}
