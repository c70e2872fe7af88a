/* train.c: `ncsn train`, annealed DSM training, data-parallel over MPI.
 *
 * Every rank holds a full replica. Step t uses the global samples
 * p = t*B + k, k in [0, B); rank r takes the contiguous slice
 * k in [r*B/R, (r+1)*B/R). Sample p is image perm_e[p mod N] of epoch
 * e = p / N, and its label and noise are drawn from (seed, t, k), so the
 * whole run is a function of the options alone, not of the rank count, and
 * a resumed run continues exactly. Gradients are summed across ranks in
 * buckets while the backward pass runs (dist.h) and scaled by 1/B. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/ckpt.h"
#include "ncsn/cli.h"
#include "ncsn/common.h"
#include "ncsn/data.h"
#include "ncsn/dist.h"
#include "ncsn/h5util.h"
#include "ncsn/loss.h"
#include "ncsn/memcheck.h"
#include "ncsn/noise_rules.h"
#include "ncsn/optim.h"
#include "ncsn/rng.h"
#include "ncsn/rundir.h"
#include "ncsn/train_samples.h"

#define METRICS_HEADER "step,loss,lr,grad_norm,images_per_s,wall_s"

static volatile sig_atomic_t g_stop_signal = 0;
static void on_stop_signal(int sig) { g_stop_signal = sig; }

/* What rank 0 decides and every rank needs before building its replica. */
typedef struct {
    NcsnConfig cfg;
    int has_sigmas;
    long start_step;
    int status; /* 0 ok, else exit status */
} RunPlan;

typedef struct {
    const Options *o;
    Dist dist;
    Dataset data;
    Model model;
    OptimState opt;
    TrainMeta meta;
    AdamConfig adam;
    long milestones[64];
    int n_milestones;
    char *options_text;
    DataOrder order;
    TrainSamples samples; /* --sample-every */
    int lock_fd;          /* rank 0: DIR/.lock, held for the run's life */
} Trainer;

static void say(const Trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const Trainer *t, const char *fmt, ...)
{
    if (t->dist.rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

/* Adam moments (zero) and, with --ema, the EMA buffer, laid out like the
 * parameters of t->model. */
static void optim_alloc(Trainer *t)
{
    size_t total = t->model.table.total;
    t->opt.m = xcalloc(total, sizeof(float));
    t->opt.v = xcalloc(total, sizeof(float));
    t->opt.ema = t->o->ema_rate > 0 ? xcalloc(total, sizeof(float)) : NULL;
}

static void optim_free(Trainer *t)
{
    free(t->opt.m);
    free(t->opt.v);
    free(t->opt.ema);
    memset(&t->opt, 0, sizeof t->opt);
}

/* The largest pairwise distance between training images, estimated on a
 * random subset: NCSNv2's choice of the largest noise level. */
static double max_pairwise_distance(Trainer *t)
{
    long n = (long)t->o->sigma_pick;
    if (n > t->data.N) n = t->data.N;
    if (n < 2) n = t->data.N < 2 ? 1 : 2;
    uint32_t *perm = xmalloc((size_t)t->data.N * sizeof(uint32_t));
    rng_permutation(perm, (uint32_t)t->data.N, t->o->seed, RNG_SIGMA_PICK, 0);
    size_t per = (size_t)t->data.C * t->data.H * t->data.W;
    float *x = xmalloc((size_t)n * per * sizeof(float));
    data_read(&t->data, x, perm, (int)n);
    double best = 0.0;
    for (long i = 0; i < n; i++)
        for (long j = i + 1; j < n; j++) {
            double s = 0.0;
            for (size_t k = 0; k < per; k++) {
                double d = (double)x[i * per + k] - x[j * per + k];
                s += d * d;
            }
            if (s > best) best = s;
        }
    free(x);
    free(perm);
    return sqrt(best);
}

static void parse_milestones(Trainer *t)
{
    const char *p = t->o->milestones;
    while (p && *p && t->n_milestones < 64) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) ncsn_die_usage("option --milestones: expected steps a,b,..., got '%s'", t->o->milestones);
        t->milestones[t->n_milestones++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') ncsn_die_usage("option --milestones: expected steps a,b,..., got '%s'", t->o->milestones);
    }
}

/* A resumed run keeps the checkpoint's noise levels: noise-level options
 * that give others refuse the checkpoint (-2, with err) rather than being
 * printed as if they took effect. */
static int resume_sigmas_agree(Trainer *t, const char *path, char *err, size_t cap)
{
    int L = t->model.cfg.num_classes;
    float *want = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    int rc = 0;
    if (opt_sigmas(t->o, L, want) && memcmp(want, t->model.sigmas, (size_t)L * sizeof(float)) != 0) {
        snprintf(err, cap, "%s: its noise levels are %.6g .. %.6g but option %s gives %.6g .. %.6g; a resumed "
                 "run keeps its levels (drop the option, or start a new --run-dir)", path, t->model.sigmas[0],
                 t->model.sigmas[L - 1], t->o->sigmas ? "--sigmas" : "--sigma-begin/--sigma-end", want[0], want[L - 1]);
        rc = -2;
    }
    free(want);
    return rc;
}

/* Rank 0: tries checkpoints newest first; returns 1 when one was loaded.
 * A damaged checkpoint is refused and the next older one tried; one made
 * with another model configuration or dataset ends the run (exit 2): the
 * run dir belongs to another run, and starting over would overwrite it.
 * With free_levels (the number of levels is the data's to choose), the
 * checkpoint's number of levels is taken, not compared. */
static int try_resume(Trainer *t, const NcsnConfig *cfg, int free_levels)
{
    const char *mode = t->o->resume;
    long steps[4096];
    int n = rundir_list_ckpts(t->o->run_dir, steps, 4096);
    if (strcmp(mode, "none") == 0) {
        if (n > 0)
            ncsn_die_usage("--resume none: %s already holds checkpoints (newest: step %ld); use another "
                           "--run-dir or remove them to start over", t->o->run_dir, steps[0]);
        return 0;
    }
    int is_auto = strcmp(mode, "auto") == 0;
    if (!is_auto) n = 1;
    char path[4096], err[8192];
    for (int i = 0; i < n; i++) {
        if (is_auto) rundir_ckpt_path(path, sizeof path, t->o->run_dir, steps[i]);
        else snprintf(path, sizeof path, "%s", mode);
        NcsnConfig want = *cfg;
        if (free_levels) {
            NcsnConfig have;
            float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
            int has_sig;
            if (ckpt_try_read_config(path, &have, sig, &has_sig, err, sizeof err) == 0)
                want.num_classes = have.num_classes; /* else the load below says what is wrong */
            free(sig);
        }
        model_init(&t->model, &want);
        optim_alloc(t);
        int rc = ckpt_try_load_train(path, &t->model, &t->opt, &t->meta, err, sizeof err);
        if (rc == 0) {
            for (int k = 0; k < 4; k++)
                if (t->meta.data_shape[k] != (k == 0 ? t->data.N : k == 1 ? t->data.C : k == 2 ? t->data.H : t->data.W)) {
                    snprintf(err, sizeof err, "%s: /train data_shape is [%ld,%ld,%ld,%ld] but %s:%s is [%ld,%d,%d,%d]",
                             path, t->meta.data_shape[0], t->meta.data_shape[1], t->meta.data_shape[2],
                             t->meta.data_shape[3], t->data.path, t->data.name, t->data.N, t->data.C, t->data.H,
                             t->data.W);
                    rc = -2;
                    break;
                }
        }
        if (rc == 0) rc = resume_sigmas_agree(t, path, err, sizeof err);
        if (rc == 0) {
            if (t->meta.has_ema && !t->opt.ema)
                printf("warning: %s holds EMA weights; this run has --ema 0 and drops them\n", path);
            if (!t->meta.has_ema && t->opt.ema)
                printf("warning: %s holds no EMA weights; the EMA starts from its weights\n", path);
            if (t->meta.seed != t->o->seed)
                printf("warning: %s was made with --seed %llu, this run uses %llu\n", path, t->meta.seed,
                       (unsigned long long)t->o->seed);
            if (t->meta.batch != t->o->batch)
                printf("warning: %s was made with --batch %ld, this run uses %ld\n", path, t->meta.batch,
                       t->o->batch);
            printf("resuming from %s at step %ld\n", path, t->meta.step);
            return 1;
        }
        optim_free(t);
        model_free(&t->model);
        if (rc == -2) ncsn_die_usage("--resume %s: refusing checkpoint %s", mode, err);
        if (!is_auto) ncsn_die_usage("--resume: refusing %s", err);
        fprintf(stderr, "ncsn: refusing checkpoint %s\n", err);
        if (i + 1 < n) fprintf(stderr, "ncsn: falling back to the next older checkpoint\n");
    }
    if (n > 0)
        ncsn_die_usage("--resume auto: none of the %d checkpoints in %s is usable (see above); "
                       "use --resume none in a new --run-dir to start over", n, t->o->run_dir);
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
 * --sigma-begin/--sigma-end), the --model file's, or the data's: sigma_1 the
 * largest pairwise distance (NCSNv2's technique 1), sigma_L 0.01, and,
 * when levels_from_data, L by technique 2 (which sets cfg->num_classes).
 * Returns sigmas[cfg->num_classes]; `rule` says where they came from. */
static float *choose_sigmas(Trainer *t, NcsnConfig *cfg, const Model *from_file, char *rule, size_t cap)
{
    const Options *o = t->o;
    float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    if (opt_sigmas(o, cfg->num_classes, sig)) {
        snprintf(rule, cap, "option %s", o->sigmas ? "--sigmas" : "--sigma-begin/--sigma-end");
        return sig;
    }
    if (from_file && from_file->sigmas) {
        memcpy(sig, from_file->sigmas, (size_t)cfg->num_classes * sizeof(float));
        snprintf(rule, cap, "the --model file");
        return sig;
    }
    long n_pick = (long)(o->sigma_pick < t->data.N ? o->sigma_pick : t->data.N);
    double dmax = max_pairwise_distance(t);
    double end = 0.01;
    if (!(dmax > end)) ncsn_die_usage("%s: dataset %s: images are (almost) identical; give --sigmas", t->data.path, t->data.name);
    int n = snprintf(rule, cap, "the data: sigma_1 = %.6g, the largest pairwise distance of %ld images (NCSNv2 "
                     "technique 1); sigma_L = %g; ", dmax, n_pick, end);
    if (levels_from_data(o)) {
        long D = (long)t->data.C * t->data.H * t->data.W;
        double gamma = noise_rules_ratio((double)D);
        if (gamma == 0.0)
            ncsn_die_usage("choosing the number of noise levels: images of %ld values are too small for NCSNv2's "
                           "technique 2; give --num-classes", D);
        long L = noise_rules_levels(dmax, end, gamma);
        if (L < 2 || L > NCSN_MAX_LEVELS)
            ncsn_die_usage("choosing the number of noise levels: technique 2 gives %ld levels, outside 2..%d; "
                           "give --num-classes", L, NCSN_MAX_LEVELS);
        cfg->num_classes = (int)L;
        snprintf(rule + n, cap - (size_t)n, "L = %ld levels by NCSNv2 technique 2 (D = %ld, gamma = %.6f, "
                 "L = ceil(log(sigma_1/sigma_L)/log(gamma)) + 1); geometric", L, D, gamma);
    } else {
        snprintf(rule + n, cap - (size_t)n, "L = %d levels (%s); geometric", cfg->num_classes,
                 from_file ? "the --model file's" : "--num-classes");
    }
    const char *why = make_sigmas(sig, dmax, end, cfg->num_classes);
    if (why) ncsn_die_usage("choosing noise levels: %s", why);
    return sig;
}

/* Rank 0 decides the configuration, the weights and the starting step. */
static RunPlan plan_run(Trainer *t)
{
    RunPlan plan;
    memset(&plan, 0, sizeof plan);
    const Options *o = t->o;
    NcsnConfig cfg;
    Model from_file;
    int have_file = 0;
    if (o->model) {
        ckpt_load_model(&from_file, o->model);
        opt_check_model_file(o, &from_file.cfg, o->model);
        have_file = 1;
        cfg = from_file.cfg;
    } else {
        opt_model_config(o, &cfg);
    }
    if (cfg.in_channels != t->data.C)
        ncsn_die_usage("%s: dataset %s has %d channels, the model expects %d (--in-channels)",
                       t->data.path, t->data.name, t->data.C, cfg.in_channels);
    if (try_resume(t, &cfg, levels_from_data(o))) {
        plan.start_step = t->meta.step;
    } else {
        float *sig = choose_sigmas(t, &cfg, have_file ? &from_file : NULL, t->meta.sigma_rule,
                                   sizeof t->meta.sigma_rule);
        model_init(&t->model, &cfg);
        size_t total = t->model.table.total;
        optim_alloc(t);
        if (have_file) memcpy(t->model.params, from_file.params, total * sizeof(float));
        else model_init_weights(&t->model, o->seed);
        model_set_sigmas(&t->model, sig);
        free(sig);
        if (t->opt.ema) memcpy(t->opt.ema, t->model.params, total * sizeof(float));
    }
    if (have_file) model_free(&from_file);
    plan.cfg = t->model.cfg;
    plan.has_sigmas = 1;
    return plan;
}

/* Everyone gets rank 0's plan, weights, moments and noise levels. */
static void share_plan(Trainer *t, RunPlan *plan)
{
    dist_bcast(plan, sizeof *plan, 0);
    if (t->dist.rank != 0) {
        model_init(&t->model, &plan->cfg);
        optim_alloc(t);
        float *sig = xcalloc((size_t)plan->cfg.num_classes, sizeof(float));
        model_set_sigmas(&t->model, sig);
        free(sig);
    }
    size_t bytes = t->model.table.total * sizeof(float);
    dist_bcast(t->model.params, bytes, 0);
    dist_bcast(t->opt.m, bytes, 0);
    dist_bcast(t->opt.v, bytes, 0);
    if (t->opt.ema) dist_bcast(t->opt.ema, bytes, 0);
    dist_bcast(t->model.sigmas, (size_t)plan->cfg.num_classes * sizeof(float), 0);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Every rank must run the same options on a dataset of the same shape. */
static void check_agreement(Trainer *t)
{
    uint64_t h = fnv1a(t->options_text);
    double mine[6] = {(double)(h >> 32), (double)(h & 0xffffffffu), (double)t->data.N, t->data.C,
                      t->data.H, t->data.W};
    double *all = xmalloc((size_t)t->dist.size * 6 * sizeof(double));
    dist_allgather_doubles(mine, all, 6);
    for (int r = 1; r < t->dist.size; r++) {
        if (all[r * 6] != all[0] || all[r * 6 + 1] != all[1])
            ncsn_fail(__FILE__, __LINE__, "rank %d was started with different options than rank 0", r);
        for (int k = 2; k < 6; k++)
            if (all[r * 6 + k] != all[k])
                ncsn_fail(__FILE__, __LINE__,
                          "rank %d sees dataset shape [%.0f,%.0f,%.0f,%.0f], rank 0 sees [%.0f,%.0f,%.0f,%.0f]",
                          r, all[r * 6 + 2], all[r * 6 + 3], all[r * 6 + 4], all[r * 6 + 5], all[2],
                          all[3], all[4], all[5]);
    }
    free(all);
}

static void write_checkpoint(Trainer *t, long step)
{
    if (t->dist.rank != 0) return;
    char path[4096];
    rundir_ckpt_path(path, sizeof path, t->o->run_dir, step);
    t->meta.step = step;
    ckpt_save_train(path, &t->model, &t->opt, &t->meta, t->options_text);
    rundir_set_latest(t->o->run_dir, step);
    rundir_prune(t->o->run_dir, (int)t->o->keep, t->milestones, t->n_milestones);
}

static void write_final_model(Trainer *t, long step)
{
    if (t->dist.rank != 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.h5", t->o->run_dir);
    ckpt_save_model(path, &t->model, t->model.params, t->opt.ema, step);
    printf("wrote %s%s\n", path, t->opt.ema ? " (with EMA weights in /ema)" : "");
}

/* --dump-grads DIR: the gradient summed over ranks (and scaled by 1/B) of
 * each step, for checking that runs do not depend on the rank count. */
static void dump_grads(Trainer *t, long step)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/grad-%08ld.h5", t->o->dump_grads, step);
    hid_t f = h5_create(path);
    ckpt_write_weights(f, "/grad", &t->model, t->model.grads, -1);
    h5_close_written(f);
}

typedef struct {
    FILE *metrics;
    int tty;
    double t_start, t_last;
    long step_start;
} Progress;

static void progress_line(Trainer *t, Progress *p, long step, double loss, double lr, double gnorm,
                          double ips)
{
    if (t->dist.rank != 0) return;
    double now = ncsn_now();
    fprintf(p->metrics, "%ld,%.9g,%.6g,%.6g,%.2f,%.3f\n", step, loss, lr, gnorm, ips, now - p->t_start);
    long total = t->o->steps, done = step - p->step_start, left = total - step;
    double per_step = done > 0 ? (now - p->t_start) / (double)done : 0.0;
    double eta = per_step * (double)left;
    long every = t->o->log_every > 0 ? t->o->log_every : (total / 20 > 0 ? total / 20 : 1);
    if (p->tty) {
        int width = 30, fill = total > 0 ? (int)(width * step / total) : width;
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] step %ld/%ld loss %.4f %.1f img/s ETA %.0fs ", bar, step, total, loss,
                ips, eta);
        if (step == total) fputc('\n', stderr);
    }
    if (!p->tty && (step % every == 0 || step == total || done == 1)) {
        printf("step %ld/%ld loss %.5f lr %.3g grad_norm %.4g %.1f img/s ETA %.0fs\n", step, total, loss,
               lr, gnorm, ips, eta);
        fflush(stdout);
    }
    if (step % every == 0 || step == total) fflush(p->metrics);
}

/* Samples per forward/backward pass: --micro-batch, or the rank's whole share. */
static long micro_batch(const Options *o, long share)
{
    return o->micro_batch > 0 && o->micro_batch < share ? o->micro_batch : share;
}

/* Every rank, before the model, its moments and the batch buffers exist:
 * what one rank will hold against what its node offers (memcheck.h). The
 * network is the --model file's when it can be read, else the options'. */
static void check_memory(Trainer *t)
{
    const Options *o = t->o;
    NcsnConfig cfg;
    float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    int has_sig;
    char why[8192];
    if (!o->model || ckpt_try_read_config(o->model, &cfg, sig, &has_sig, why, sizeof why) < 0)
        opt_model_config(o, &cfg);
    free(sig);
    long lo, hi;
    data_slice(o->batch, t->dist.rank, t->dist.size, &lo, &hi);
    long mb = micro_batch(o, hi - lo);
    Shape s = {(int)mb, t->data.C, t->data.H, t->data.W};
    double P = (double)model_param_count(&cfg) * sizeof(float);
    char act[96];
    snprintf(act, sizeof act, "activations of %ld sample%s", mb, mb > 1 ? "s" : "");
    MemPart parts[] = {
        {"parameters and gradients", 2 * P},
        {"Adam moments", 2 * P},
        {"EMA weights", o->ema_rate > 0 ? P : 0},
        {act, (double)model_run_floats(&cfg, s, 0) * sizeof(float)},
        {"batch buffers", 5.0 * (double)shape_count(s) * sizeof(float)}, /* x, z; DsmWork's xt, out, dout */
    };
    mem_verdict("training", parts, 5, t->dist.node_size, "lower --batch, set --micro-batch, or spread the "
                "ranks over more nodes", why, sizeof why);
    dist_agree_usage_any(why, sizeof why);
}

/* Rank 0: metrics.csv on disk up to `step` before the checkpoint of `step`
 * is, so a resume from any checkpoint finds all of its rows. */
static void checkpoint_with_metrics(Trainer *t, Progress *p, long step)
{
    if (p->metrics)
        CHECK(fflush(p->metrics) == 0 && fsync(fileno(p->metrics)) == 0, "%s/metrics.csv: write failed: %s",
              t->o->run_dir, strerror(errno));
    write_checkpoint(t, step);
}

static int train_loop(Trainer *t, long start)
{
    const Options *o = t->o;
    Model *m = &t->model;
    int rank = t->dist.rank, R = t->dist.size;
    long B = o->batch;
    long lo, hi;
    data_slice(B, rank, R, &lo, &hi);
    long mb = micro_batch(o, hi - lo);
    Shape s = {(int)mb, t->data.C, t->data.H, t->data.W};
    size_t per = (size_t)s.C * s.H * s.W, total = m->table.total;
    float *x = xmalloc((size_t)mb * per * sizeof(float)); /* [mb, C, H, W] */
    float *z = xmalloc((size_t)mb * per * sizeof(float)); /* [mb, C, H, W] */
    int *labels = xmalloc((size_t)mb * sizeof(int));
    uint32_t *idx = xmalloc((size_t)mb * sizeof(uint32_t));
    ModelRun run;
    model_run_init(&run);
    DsmWork w = {0};
    GradReducer red;
    size_t bucket = (size_t)o->bucket_mb * (1u << 20) / sizeof(float);
    dist_reducer_init(&red, m->grads, total, bucket, R);
    /* The cost of the same reduction done blocking after the backward pass,
     * measured once on the (zero) gradient buffer: the baseline against
     * which the overlap is reported at the end. */
    double blocking_s = 0.0;
    if (R > 1) {
        memset(m->grads, 0, total * sizeof(float));
        dist_barrier();
        double t0 = ncsn_now();
        for (int i = 0; i < 3; i++) dist_sum_floats(m->grads, total);
        blocking_s = (ncsn_now() - t0) / 3;
    }
    run.grad_ready_ctx = &red;

    Progress p = {0};
    if (rank == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/metrics.csv", o->run_dir);
        p.metrics = fopen(path, "a"); /* cut to `start` with its header by cmd_train */
        CHECK(p.metrics, "%s: cannot open for appending: %s", path, strerror(errno));
        p.tty = isatty(STDERR_FILENO);
    }
    int status = 0;
    /* The weights the pictures are made of. */
    const float *shown = t->opt.ema ? t->opt.ema : m->params;
    if (dist_max_int((int)g_stop_signal)) { /* a signal arrived while starting up */
        say(t, "stop signal received before the first step: writing a checkpoint at step %ld and exiting with status %d (resumable)\n",
            start, NCSN_EXIT_STOPPED);
        checkpoint_with_metrics(t, &p, start);
        status = NCSN_EXIT_STOPPED;
    } else {
        train_samples_start(&t->samples, start, shown);
    }
    p.t_start = ncsn_now();
    p.step_start = start;
    for (long step = start; step < o->steps && status == 0; step++) {
        double t0 = ncsn_now();
        memset(m->grads, 0, total * sizeof(float));
        double local = 0.0;
        /* The rank's slice in micro-batches of at most mb samples whose
         * gradients add up in m->grads; each sample keeps its draws from
         * (seed, step, k), so the sum is the same as in one pass. */
        for (long k0 = lo; k0 < hi; k0 += mb) {
            long n = hi - k0 < mb ? hi - k0 : mb, last = k0 + n == hi;
            for (long i = 0; i < n; i++) {
                long k = k0 + i;
                idx[i] = data_order_image(&t->order, step * B + k);
                labels[i] = (int)rng_below((uint32_t)m->cfg.num_classes, o->seed, RNG_LABELS, (uint32_t)step, (uint32_t)k);
                rng_fill_normal(z + i * per, per, o->seed, RNG_NOISE, (uint32_t)step, (uint32_t)k);
            }
            data_read(&t->data, x, idx, (int)n);
            /* Gradients are final, and reduced across ranks, only in the last pass. */
            run.grad_ready = last ? dist_reducer_ready : NULL;
            if (last) dist_reducer_begin(&red);
            s.N = (int)n;
            local += dsm_step(m, &run, &w, x, labels, z, s, 1.0f / (float)B, NULL);
        }
        dist_reducer_finish(&red);
        /* One small exchange per step: losses, and whether anyone was told to stop. */
        double mine[2] = {local, (double)g_stop_signal}, *all = xmalloc((size_t)R * 2 * sizeof(double));
        dist_allgather_doubles(mine, all, 2);
        double sum = 0.0;
        int stop = 0;
        for (int r = 0; r < R; r++) {
            if (!isfinite(all[2 * r]))
                ncsn_fail(__FILE__, __LINE__, "non-finite loss at step %ld on rank %d; stopping", step + 1, r);
            sum += all[2 * r];
            stop |= all[2 * r + 1] != 0.0;
        }
        free(all);
        double gnorm = grad_norm(m->grads, total);
        if (!isfinite(gnorm))
            ncsn_fail(__FILE__, __LINE__, "non-finite gradient at step %ld (after summing over ranks); stopping", step + 1);
        if (o->dump_grads && rank == 0) dump_grads(t, step + 1);
        if (o->grad_clip > 0 && gnorm > o->grad_clip) grad_scale(m->grads, total, (float)(o->grad_clip / gnorm));
        adam_step(&t->adam, step + 1, m->params, m->grads, t->opt.m, t->opt.v, total);
        if (t->opt.ema)
            ema_update(t->opt.ema, m->params, total, (float)ema_rate_at(o->ema_rate, step + 1, !o->no_ema_warmup));
        double dt = ncsn_now() - t0;
        progress_line(t, &p, step + 1, sum / (double)B, adam_lr(&t->adam, step + 1), gnorm, (double)B / dt);
        long done = step + 1;
        if (stop) {
            say(t, "\nstop signal received: writing a checkpoint at step %ld and exiting with status %d (resumable)\n",
                done, NCSN_EXIT_STOPPED);
            checkpoint_with_metrics(t, &p, done);
            status = NCSN_EXIT_STOPPED;
            break;
        }
        if (done == o->steps || (o->ckpt_every > 0 && done % o->ckpt_every == 0))
            checkpoint_with_metrics(t, &p, done);
        if (p.tty && o->sample_every > 0 && done % o->sample_every == 0 && done < o->steps) fputc('\n', stderr);
        train_samples_at(&t->samples, done, shown);
    }
    if (status == 0 && start >= o->steps && !g_stop_signal) {
        say(t, "nothing to do: the run is already at step %ld of %ld\n", start, o->steps);
        if (rundir_list_ckpts(o->run_dir, (long[1]){0}, 1) == 0) checkpoint_with_metrics(t, &p, start);
    }
    if (status == 0) write_final_model(t, o->steps > start ? o->steps : start);
    long ran = o->steps > start ? o->steps - start : 0;
    if (R > 1 && ran > 0) {
        double waited = red.wait_s / (double)ran;
        double hidden = blocking_s > 0 ? 1.0 - waited / blocking_s : 0.0;
        say(t, "gradient allreduce: %.3f s per step when blocking, %.3f s per step waited after the backward "
               "pass: %.0f%% hidden (rank 0; waiting includes load imbalance)\n",
            blocking_s, waited, 100.0 * (hidden > 0 ? hidden : 0.0));
    }
    if (p.metrics) fclose(p.metrics);
    dist_reducer_free(&red);
    dsm_work_free(&w);
    model_run_free(&run);
    free(x);
    free(z);
    free(labels);
    free(idx);
    return status;
}

int cmd_train(const Options *o)
{
    Trainer t;
    memset(&t, 0, sizeof t);
    t.o = o;
    /* Stop signals are caught from the start, so that a preemption during
     * start-up also ends resumably (exit 3) rather than by the signal. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    dist_init(&t.dist, NULL, NULL);
    h5_quiet();
    ncsn_set_collective(1); /* every rank validates the same options and data */
    if (!o->data) ncsn_die_usage("ncsn train: option --data is required");
    if (!o->run_dir) ncsn_die_usage("ncsn train: option --run-dir is required");
    if (o->batch < t.dist.size)
        ncsn_die_usage("option --batch: the global batch (%ld) is smaller than the number of ranks (%d)",
                       o->batch, t.dist.size);
    if (strcmp(o->lr_schedule, "constant") != 0 && strcmp(o->lr_schedule, "cosine") != 0)
        ncsn_die_usage("option --lr-schedule: '%s' is not constant or cosine", o->lr_schedule);
    parse_milestones(&t);
    /* Rank 0 takes the run dir before anything is read or written: a second
     * run on it, or a dir that cannot be written, ends every rank with 2. */
    char why[8192] = "";
    t.lock_fd = -1;
    if (t.dist.rank == 0) t.lock_fd = rundir_lock(o->run_dir, why, sizeof why);
    dist_agree_usage(why, sizeof why);
    t.options_text = xmalloc(16384);
    opt_format(o, t.options_text, 16384);
    data_open(&t.data, o->data, o->dataset, data_cache_bytes());
    if (t.data.N > 0xffffffffL) ncsn_die_usage("%s: dataset %s has too many images", o->data, o->dataset);
    data_order_init(&t.order, t.data.N, o->seed);
    check_memory(&t);
    if (o->dump_grads && t.dist.rank == 0) rundir_prepare(o->dump_grads);
    ncsn_set_collective(0);
    check_agreement(&t);
    RunPlan plan;
    memset(&plan, 0, sizeof plan);
    if (t.dist.rank == 0) plan = plan_run(&t);
    share_plan(&t, &plan);
    if (t.dist.rank == 0) { /* the model options as they took effect (--model, checkpoint or data) */
        Options shown = *o;
        char dilations[64];
        opt_set_model_config(&shown, &t.model.cfg, dilations, sizeof dilations);
        opt_print(&shown, stdout);
        printf("  %-18s %d\n", "ranks", t.dist.size);
        printf("  %-18s %s:%s [%ld images, %d x %d x %d], %s\n", "data", o->data, o->dataset, t.data.N,
               t.data.C, t.data.H, t.data.W,
               t.data.cache ? "in memory" : "read per batch (larger than NCSN_DATA_CACHE_MB)");
    }
    t.meta.batch = o->batch;
    t.meta.seed = o->seed;
    t.meta.data_shape[0] = t.data.N;
    t.meta.data_shape[1] = t.data.C;
    t.meta.data_shape[2] = t.data.H;
    t.meta.data_shape[3] = t.data.W;
    t.adam = (AdamConfig){.lr = o->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = o->weight_decay, .warmup = o->warmup,
                          .cosine = strcmp(o->lr_schedule, "cosine") == 0, .total = o->steps};
    if (t.dist.rank == 0) {
        const NcsnConfig *c = &t.model.cfg;
        size_t count = 0;
        for (int i = 0; i < t.model.table.n; i++) count += t.model.table.specs[i].count;
        printf("model: in_channels %d, nf %d, num_classes %d, dilations %d,%d,%d,%d, scale_by_sigma %d, "
               "plane_head %d (floor %g), norm %s, %zu parameters\n",
               c->in_channels, c->nf, c->num_classes, c->dilations[0], c->dilations[1], c->dilations[2],
               c->dilations[3], c->scale_by_sigma, c->plane_head, c->head_floor, norm_kind_name(c->norm), count);
        printf("sigmas:");
        for (int i = 0; i < c->num_classes; i++) printf(" %.5g", t.model.sigmas[i]);
        printf("\n");
        if (t.meta.sigma_rule[0]) printf("noise levels from %s\n", t.meta.sigma_rule);
        printf("run dir: %s (steps %ld -> %ld)\n", o->run_dir, plan.start_step, o->steps);
        fflush(stdout);
    }
    TrainSamplesConfig sc = {
        .every = o->sample_every, .n = o->sample_n,
        .sampler = {.kind = o->sample_sampler, .steps_each = o->sample_steps_each,
                    .steps_each_given = opt_given(o, "sample-steps-each"), .step_lr = o->sample_step_lr,
                    .prefix = "sample-"},
        .clip = !o->sample_no_clip, .seed = o->seed, .use_ema = t.opt.ema != NULL, .run_dir = o->run_dir,
        .eval_data = o->eval_data, .train_data = o->data, .dataset = o->dataset};
    train_samples_init(&t.samples, &sc, &t.model, &t.data, &t.dist);
    /* After every check, so that a refused run writes nothing: the rows of
     * the steps before the start, under the header (none for a fresh run). */
    if (t.dist.rank == 0) rundir_trim_csv(o->run_dir, "metrics.csv", METRICS_HEADER, plan.start_step, 1);
    if (t.dist.rank == 0 && o->sample_every > 0) {
        printf("samples: every %ld steps, %ld with the %s weights and seed %llu, %s, denoised%s -> %s/samples\n",
               o->sample_every, o->sample_n, t.opt.ema ? "EMA" : "current", (unsigned long long)o->seed,
               t.samples.desc, o->sample_no_clip ? ", no clip" : "", o->run_dir);
        if (o->eval_data) printf("evaluation: %s %s --data %s --fd --train-data %s -> %s/eval.csv\n",
                                 t.samples.ev.python, t.samples.ev.script, o->eval_data, o->data, o->run_dir);
        fflush(stdout);
    }
    int status = train_loop(&t, plan.start_step);
    if (t.dist.rank == 0 && status == 0) printf("run dir: %s\n", o->run_dir);
    train_samples_free(&t.samples);
    optim_free(&t);
    data_order_free(&t.order);
    free(t.options_text);
    model_free(&t.model);
    data_close(&t.data);
    rundir_unlock(o->run_dir, t.lock_fd);
    dist_finalize();
    return status;
}
