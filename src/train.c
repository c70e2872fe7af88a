/* train.c: the step and the loop of `ncsn train` (train.h).
 *
 * Every rank holds a full replica. Step t uses the global samples
 * p = t*B + k, k in [0, B); rank r takes the contiguous slice
 * k in [r*B/R, (r+1)*B/R). Sample p is image perm_e[p mod N] of epoch
 * e = p / N, and its label and noise are drawn from (seed, t, k), so the
 * whole run is a function of the options alone, not of the rank count, and
 * a resumed run continues exactly. Gradients are summed across ranks in
 * buckets while the backward pass runs (dist.h) and scaled by 1/B. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"
#include "ncsn/h5util.h"
#include "ncsn/loss.h"
#include "ncsn/progress.h"
#include "ncsn/rng.h"
#include "ncsn/rundir.h"

long train_micro_batch(const TrainConfig *c, const NcsnConfig *cfg, Shape image, long share)
{
    if (c->micro_batch > 0) return c->micro_batch < share ? c->micro_batch : share;
    long mb = ops_pass_samples();
    image.N = (int)share;
    if (mb >= share || (double)model_run_floats(cfg, image, 0) * sizeof(float) <= TRAIN_AUTO_PASS_BYTES) return share;
    return mb;
}

void train_optim_alloc(TrainState *s, int with_ema)
{
    size_t total = s->model.table.total;
    s->opt.m = xcalloc(total, sizeof(float));
    s->opt.v = xcalloc(total, sizeof(float));
    s->opt.ema = with_ema ? xcalloc(total, sizeof(float)) : NULL;
}

void train_optim_free(TrainState *s)
{
    free(s->opt.m);
    free(s->opt.v);
    free(s->opt.ema);
    memset(&s->opt, 0, sizeof s->opt);
}

/* A rank's buffers for its slice [lo, hi) of every step's batch, in
 * passes of at most mb samples. */
typedef struct {
    long lo, hi, mb;
    Shape s;            /* [mb, C, H, W] */
    float *x, *z;       /* [mb, C, H, W] images, noise */
    int *labels;        /* [mb] */
    uint32_t *idx;      /* [mb] image indices */
    ModelRun run;
    DsmWork dsm;
    GradReducer red;
    double blocking_s;  /* one blocking allreduce of the gradients */
} StepWork;

/* The cost of the same reduction done blocking after the backward pass,
 * measured once on the (zero) gradient buffer: the baseline against which
 * the overlap is reported at the end. */
static double blocking_allreduce_s(Model *m, int ranks)
{
    if (ranks == 1) return 0.0;
    memset(m->grads, 0, m->table.total * sizeof(float));
    dist_barrier();
    double t0 = ncsn_now();
    for (int i = 0; i < 3; i++) dist_sum_floats(m->grads, m->table.total);
    return (ncsn_now() - t0) / 3;
}

static void step_work_init(StepWork *w, const TrainConfig *c, TrainState *t)
{
    memset(w, 0, sizeof *w);
    data_slice(c->batch, t->dist.rank, t->dist.size, &w->lo, &w->hi);
    Shape image = {1, t->data.C, t->data.H, t->data.W};
    w->mb = train_micro_batch(c, &t->model.cfg, image, w->hi - w->lo);
    if (c->micro_batch == 0 && w->mb < w->hi - w->lo) {
        image.N = (int)(w->hi - w->lo);
        progress_say(t->dist.rank, "micro-batch: %ld samples per pass, gradients summed (automatic: the rank's %ld "
                     "samples at once would hold %.0f MiB of activations; --micro-batch N sets it)\n", w->mb,
                     w->hi - w->lo, (double)model_run_floats(&t->model.cfg, image, 0) * sizeof(float) / 1048576.0);
    }
    w->s = (Shape){(int)w->mb, t->data.C, t->data.H, t->data.W};
    size_t per = (size_t)w->s.C * w->s.H * w->s.W;
    w->x = xmalloc((size_t)w->mb * per * sizeof(float));
    w->z = xmalloc((size_t)w->mb * per * sizeof(float));
    w->labels = xmalloc((size_t)w->mb * sizeof(int));
    w->idx = xmalloc((size_t)w->mb * sizeof(uint32_t));
    model_run_init(&w->run);
    size_t bucket = (size_t)c->bucket_mb * (1u << 20) / sizeof(float);
    dist_reducer_init(&w->red, t->model.grads, t->model.table.total, bucket, t->dist.size);
    w->blocking_s = blocking_allreduce_s(&t->model, t->dist.size);
    w->run.grad_ready_ctx = &w->red;
}

static void step_work_free(StepWork *w)
{
    dist_reducer_free(&w->red);
    dsm_work_free(&w->dsm);
    model_run_free(&w->run);
    free(w->x);
    free(w->z);
    free(w->labels);
    free(w->idx);
}

/* Forward and backward over the rank's slice of step `step`, in passes
 * whose gradients add up in m->grads (reduced across ranks in the last);
 * each sample keeps its draws from (seed, step, k), so the sum is the same
 * as in one pass. Returns the rank's summed loss. */
static double forward_backward(const TrainConfig *c, TrainState *t, StepWork *w, long step)
{
    Model *m = &t->model;
    size_t per = (size_t)w->s.C * w->s.H * w->s.W;
    vec_zero(m->grads, m->table.total);
    double local = 0.0;
    for (long k0 = w->lo; k0 < w->hi; k0 += w->mb) {
        long n = w->hi - k0 < w->mb ? w->hi - k0 : w->mb, last = k0 + n == w->hi;
        for (long i = 0; i < n; i++) {
            long k = k0 + i;
            w->idx[i] = data_order_image(&t->order, step * c->batch + k);
            w->labels[i] = (int)rng_below((uint32_t)m->cfg.num_classes, c->seed, RNG_LABELS, (uint32_t)step, (uint32_t)k);
            rng_fill_normal(w->z + i * per, per, c->seed, RNG_NOISE, (uint32_t)step, (uint32_t)k);
        }
        data_read(&t->data, w->x, w->idx, (int)n);
        w->run.grad_ready = last ? dist_reducer_ready : NULL;
        if (last) dist_reducer_begin(&w->red);
        Shape s = w->s;
        s.N = (int)n;
        local += dsm_step(m, &w->run, &w->dsm, w->x, w->labels, w->z, s, 1.0f / (float)c->batch, NULL);
    }
    dist_reducer_finish(&w->red);
    return local;
}

/* One small exchange per step: the sum of the ranks' losses, and whether
 * any rank was told to stop. A non-finite loss ends the run naming its rank. */
static double agree_loss(const TrainState *t, double local, int signal, long step, int *stop)
{
    int R = t->dist.size;
    double mine[2] = {local, (double)signal}, *all = xmalloc((size_t)R * 2 * sizeof(double));
    dist_allgather_doubles(mine, all, 2);
    double sum = 0.0;
    *stop = 0;
    for (int r = 0; r < R; r++) {
        if (!isfinite(all[2 * r]))
            ncsn_fail(__FILE__, __LINE__, "non-finite loss at step %ld on rank %d; stopping", step + 1, r);
        sum += all[2 * r];
        *stop |= all[2 * r + 1] != 0.0;
    }
    free(all);
    return sum;
}

/* --dump-grads DIR: the gradient summed over ranks (and scaled by 1/B) of
 * each step, for checking that runs do not depend on the rank count. */
static void dump_grads(const TrainConfig *c, const Model *m, long step)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/grad-%08ld.h5", c->dump_grads, step);
    hid_t f = h5_create(path);
    ckpt_write_weights(f, "/grad", m, m->grads, -1);
    h5_close_written(f);
}

/* Gradient norm, clipping, Adam and EMA for step t = step + 1; returns
 * the norm before clipping. */
static double update(const TrainConfig *c, TrainState *t, long step)
{
    Model *m = &t->model;
    size_t total = m->table.total;
    double gnorm = grad_norm(m->grads, total);
    if (!isfinite(gnorm))
        ncsn_fail(__FILE__, __LINE__, "non-finite gradient at step %ld (after summing over ranks); stopping", step + 1);
    if (c->dump_grads && t->dist.rank == 0) dump_grads(c, m, step + 1);
    if (c->grad_clip > 0 && gnorm > c->grad_clip) grad_scale(m->grads, total, (float)(c->grad_clip / gnorm));
    adam_step(&c->adam, step + 1, m->params, m->grads, t->opt.m, t->opt.v, total);
    if (t->opt.ema) ema_update(t->opt.ema, m->params, total, (float)ema_rate_at(c->ema_rate, step + 1, c->ema_warmup));
    return gnorm;
}

/* Rank 0: metrics.csv on disk up to `step` before the checkpoint of `step`
 * is, so a resume from any checkpoint finds all of its rows. */
static void write_checkpoint(const TrainConfig *c, TrainState *t, Progress *p, long step)
{
    if (t->dist.rank != 0) return;
    progress_sync(p);
    char path[4096];
    rundir_ckpt_path(path, sizeof path, c->run_dir, step);
    t->meta.step = step;
    ckpt_save_train(path, &t->model, &t->opt, &t->meta, c->options_text);
    rundir_set_latest(c->run_dir, step);
    rundir_prune(c->run_dir, (int)c->keep, c->milestones, c->n_milestones);
}

static void write_final_model(const TrainConfig *c, const TrainState *t, long step)
{
    if (t->dist.rank != 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.h5", c->run_dir);
    ckpt_save_model(path, &t->model, t->model.params, t->opt.ema, step);
    printf("wrote %s%s\n", path, t->opt.ema ? " (with EMA weights in /ema)" : "");
}

/* Step `step` (0-based) from the batch to the checkpoint and the pictures
 * after it; returns NCSN_EXIT_STOPPED when the ranks were told to stop. */
static int run_step(const TrainConfig *c, TrainState *t, StepWork *w, Progress *p, long step,
                    const volatile sig_atomic_t *signal)
{
    double t0 = ncsn_now();
    int stop;
    double local = forward_backward(c, t, w, step);
    double sum = agree_loss(t, local, (int)*signal, step, &stop);
    double gnorm = update(c, t, step);
    double B = (double)c->batch, dt = ncsn_now() - t0;
    long done = step + 1;
    progress_step(p, done, sum / B, adam_lr(&c->adam, done), gnorm, B / dt);
    if (stop) {
        progress_say(t->dist.rank, "\nstop signal received: writing a checkpoint at step %ld and exiting with "
                     "status %d (resumable)\n", done, NCSN_EXIT_STOPPED);
        write_checkpoint(c, t, p, done);
        return NCSN_EXIT_STOPPED;
    }
    if (done == c->steps || (c->ckpt_every > 0 && done % c->ckpt_every == 0)) write_checkpoint(c, t, p, done);
    if (p->tty && c->sample_every > 0 && done % c->sample_every == 0 && done < c->steps) fputc('\n', stderr);
    train_samples_at(&t->samples, done, t->opt.ema ? t->opt.ema : t->model.params);
    return 0;
}

/* How much of the allreduce the backward pass hid, on rank 0. */
static void report_overlap(const TrainConfig *c, const TrainState *t, const StepWork *w, long start)
{
    long ran = c->steps > start ? c->steps - start : 0;
    if (t->dist.size == 1 || ran == 0) return;
    double waited = w->red.wait_s / (double)ran;
    double hidden = w->blocking_s > 0 ? 1.0 - waited / w->blocking_s : 0.0;
    progress_say(t->dist.rank, "gradient allreduce: %.3f s per step when blocking, %.3f s per step waited after "
                 "the backward pass: %.0f%% hidden (rank 0; waiting includes load imbalance)\n",
                 w->blocking_s, waited, 100.0 * (hidden > 0 ? hidden : 0.0));
}

int train_loop(const TrainConfig *c, TrainState *t, long start, const volatile sig_atomic_t *signal)
{
    StepWork w;
    step_work_init(&w, c, t);
    Progress p;
    progress_open(&p, t->dist.rank, c->run_dir, c->steps, c->log_every); /* cut to `start` by cmd_train */
    int status = 0, rank = t->dist.rank;
    const float *shown = t->opt.ema ? t->opt.ema : t->model.params; /* the weights the pictures are made of */
    if (dist_max_int((int)*signal)) { /* a signal arrived while starting up */
        progress_say(rank, "stop signal received before the first step: writing a checkpoint at step %ld and "
                     "exiting with status %d (resumable)\n", start, NCSN_EXIT_STOPPED);
        write_checkpoint(c, t, &p, start);
        status = NCSN_EXIT_STOPPED;
    } else {
        train_samples_start(&t->samples, start, shown);
    }
    progress_start(&p, start);
    for (long step = start; step < c->steps && status == 0; step++) status = run_step(c, t, &w, &p, step, signal);
    if (status == 0 && start >= c->steps && !*signal) {
        progress_say(rank, "nothing to do: the run is already at step %ld of %ld\n", start, c->steps);
        if (rank == 0 && rundir_count_ckpts(c->run_dir) == 0) write_checkpoint(c, t, &p, start);
    }
    if (status == 0) write_final_model(c, t, c->steps > start ? c->steps : start);
    report_overlap(c, t, &w, start);
    progress_close(&p);
    step_work_free(&w);
    return status;
}
