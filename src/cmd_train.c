/* cmd_train.c: `ncsn train`: from the options to a running loop. Catches
 * the stop signals, checks the options, takes the run directory, opens the
 * data, checks memory and that every rank agrees, plans the run
 * (train_plan.h), prints what took effect, and hands the loop (train.h) its
 * TrainConfig. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/cli.h"
#include "ncsn/common.h"
#include "ncsn/h5util.h"
#include "ncsn/memcheck.h"
#include "ncsn/progress.h"
#include "ncsn/rundir.h"
#include "ncsn/startup.h"
#include "ncsn/train.h"
#include "ncsn/train_plan.h"

static volatile sig_atomic_t g_stop_signal = 0;
static void on_stop_signal(int sig) { g_stop_signal = sig; }

/* Stop signals are caught from the start, so that a preemption during
 * start-up also ends resumably (exit 3) rather than by the signal. */
static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* --milestones a,b,...: as many steps as given. */
static long *parse_milestones(const char *text, int *n)
{
    size_t cap = 1;
    for (const char *p = text; p && *p; p++) cap += *p == ',';
    long *v = xmalloc(cap * sizeof(long));
    *n = 0;
    for (const char *p = text; p && *p;) {
        char *end;
        v[*n] = strtol(p, &end, 10);
        if (end == p || (*end && *end != ','))
            ncsn_die_usage("option --milestones: expected steps a,b,..., got '%s'", text);
        ++*n;
        p = *end == ',' ? end + 1 : end;
    }
    return v;
}

/* The options the loop runs by; exits 2 on those the table cannot check. */
static TrainConfig train_config(const Options *o, int ranks)
{
    if (!o->data) ncsn_die_usage("ncsn train: option --data is required");
    if (!o->run_dir) ncsn_die_usage("ncsn train: option --run-dir is required");
    if (o->batch < ranks)
        ncsn_die_usage("option --batch: the global batch (%ld) is smaller than the number of ranks (%d)",
                       o->batch, ranks);
    if (strcmp(o->lr_schedule, "constant") != 0 && strcmp(o->lr_schedule, "cosine") != 0)
        ncsn_die_usage("option --lr-schedule: '%s' is not constant or cosine", o->lr_schedule);
    TrainConfig c = {
        .steps = o->steps, .batch = o->batch, .micro_batch = o->micro_batch, .seed = o->seed,
        .adam = {.lr = o->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = o->weight_decay,
                 .warmup = o->warmup, .cosine = strcmp(o->lr_schedule, "cosine") == 0, .total = o->steps},
        .grad_clip = o->grad_clip, .ema_rate = o->ema_rate, .ema_warmup = !o->no_ema_warmup,
        .bucket_mb = o->bucket_mb, .ckpt_every = o->ckpt_every, .keep = o->keep, .log_every = o->log_every,
        .sample_every = o->sample_every, .run_dir = o->run_dir, .dump_grads = o->dump_grads};
    return c;
}

/* Every rank, before the model, its moments and the batch buffers exist:
 * what one rank will hold against what its node offers (memcheck.h). The
 * network is the --model file's when it can be read, else the options'. */
static void check_memory(const Options *o, const TrainConfig *c, const TrainState *t)
{
    NcsnConfig cfg;
    float *sig = xmalloc(NCSN_MAX_LEVELS * sizeof(float));
    int has_sig;
    char why[8192];
    if (!o->model || ckpt_try_read_config(o->model, &cfg, sig, &has_sig, why, sizeof why) < 0)
        opt_model_config(o, &cfg);
    free(sig);
    long lo, hi;
    data_slice(c->batch, t->dist.rank, t->dist.size, &lo, &hi);
    long mb = train_micro_batch(c, &cfg, (Shape){1, t->data.C, t->data.H, t->data.W}, hi - lo);
    Shape s = {(int)mb, t->data.C, t->data.H, t->data.W};
    double P = (double)model_param_floats(&cfg) * sizeof(float);
    char act[96];
    snprintf(act, sizeof act, "activations of %ld sample%s", mb, mb > 1 ? "s" : "");
    MemPart parts[] = {
        {"parameters and gradients", 2 * P},
        {"Adam moments", 2 * P},
        {"EMA weights", c->ema_rate > 0 ? P : 0},
        {act, (double)model_run_floats(&cfg, s, 0) * sizeof(float)},
        {"batch buffers", 5.0 * (double)shape_count(s) * sizeof(float)}, /* x, z; DsmWork's xt, out, dout */
    };
    mem_verdict("training", parts, 5, t->dist.node_size, "lower --batch, set --micro-batch, or spread the "
                "ranks over more nodes", why, sizeof why);
    dist_agree_usage_any(why, sizeof why);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Every rank must run the same options on a dataset of the same shape. */
static void check_agreement(const TrainState *t, const char *options_text)
{
    uint64_t h = fnv1a(options_text);
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

/* Rank 0: the options with the model options as they took effect (from
 * --model, a checkpoint or the data), the ranks and the data. */
static void print_options(const Options *o, const TrainState *t)
{
    Options shown = *o;
    char dilations[64];
    opt_set_model_config(&shown, &t->model.cfg, dilations, sizeof dilations);
    opt_print(&shown, stdout);
    printf("  %-18s %d\n", "ranks", t->dist.size);
    printf("  %-18s %s:%s [%ld images, %d x %d x %d], %s\n", "data", o->data, o->dataset, t->data.N, t->data.C,
           t->data.H, t->data.W, t->data.cache ? "in memory" : "read per batch (larger than NCSN_DATA_CACHE_MB)");
}

/* Rank 0: the network, its noise levels and where they came from, the steps. */
static void print_model(const TrainState *t, const char *run_dir, long start, long steps)
{
    const NcsnConfig *c = &t->model.cfg;
    printf("model: in_channels %d, nf %d, num_classes %d, dilations %d,%d,%d,%d, scale_by_sigma %d, "
           "plane_head %d (floor %g), head_sigma_data %g, norm %s, %zu parameters\n",
           c->in_channels, c->nf, c->num_classes, c->dilations[0], c->dilations[1], c->dilations[2],
           c->dilations[3], c->scale_by_sigma, c->plane_head, c->head_floor, c->head_sigma_data,
           norm_kind_name(c->norm),
           model_param_count(&t->model));
    printf("sigmas:");
    for (int i = 0; i < c->num_classes; i++) printf(" %.5g", t->model.sigmas[i]);
    printf("\n");
    if (t->meta.sigma_rule[0]) printf("noise levels from %s\n", t->meta.sigma_rule);
    printf("run dir: %s (steps %ld -> %ld)\n", run_dir, start, steps);
    fflush(stdout);
}

/* --sample-every and --eval-data: checked on every rank, told by rank 0. */
static void start_samples(const Options *o, TrainState *t)
{
    TrainSamplesConfig sc = {
        .every = o->sample_every, .n = o->sample_n,
        .sampler = {.kind = o->sample_sampler, .steps_each = o->sample_steps_each,
                    .steps_each_given = opt_given(o, "sample-steps-each"), .step_lr = o->sample_step_lr,
                    .step_lr_given = opt_given(o, "sample-step-lr"),
                    .prefix = "sample-"},
        .clip = !o->sample_no_clip, .seed = o->seed, .use_ema = t->opt.ema != NULL, .run_dir = o->run_dir,
        .eval_data = o->eval_data, .train_data = o->data, .dataset = o->dataset};
    train_samples_init(&t->samples, &sc, &t->model, &t->data, &t->dist);
}

static void print_samples(const Options *o, const TrainState *t)
{
    if (o->sample_every <= 0) return;
    printf("samples: every %ld steps, %ld with the %s weights and seed %llu, %s, denoised%s -> %s/samples\n",
           o->sample_every, o->sample_n, t->opt.ema ? "EMA" : "current", (unsigned long long)o->seed,
           t->samples.desc, o->sample_no_clip ? ", no clip" : "", o->run_dir);
    if (o->eval_data)
        printf("evaluation: %s %s --data %s --fd --train-data %s -> %s/eval.csv\n", t->samples.ev.python,
               t->samples.ev.script, o->eval_data, o->data, o->run_dir);
    fflush(stdout);
}

/* Every rank, with collective usage errors: the run dir (rank 0 takes
 * its lock before anything is read or written: a second run on it, or a
 * dir that cannot be written, ends every rank with 2), the data, memory. */
static int open_run(const Options *o, const TrainConfig *c, TrainState *t)
{
    char why[8192] = "";
    int lock_fd = -1;
    if (t->dist.rank == 0) lock_fd = rundir_lock(o->run_dir, why, sizeof why);
    dist_agree_usage(why, sizeof why);
    data_open(&t->data, o->data, o->dataset, data_cache_bytes());
    if (t->data.N > 0xffffffffL) ncsn_die_usage("%s: dataset %s has too many images", o->data, o->dataset);
    data_order_init(&t->order, t->data.N, o->seed);
    check_memory(o, c, t);
    if (o->dump_grads && t->dist.rank == 0) rundir_prepare(o->dump_grads);
    return lock_fd;
}

/* What the checkpoints record besides the weights. */
static void set_meta(TrainState *t, const Options *o)
{
    t->meta.batch = o->batch;
    t->meta.seed = o->seed;
    t->meta.data_shape[0] = t->data.N;
    t->meta.data_shape[1] = t->data.C;
    t->meta.data_shape[2] = t->data.H;
    t->meta.data_shape[3] = t->data.W;
}

int cmd_train(const Options *o)
{
    TrainState t;
    memset(&t, 0, sizeof t);
    catch_stop_signals();
    startup_ranks(&t.dist);
    h5_quiet();
    ncsn_set_collective(1); /* every rank validates the same options and data */
    TrainConfig c = train_config(o, t.dist.size);
    long *milestones = parse_milestones(o->milestones, &c.n_milestones);
    c.milestones = milestones;
    int lock_fd = open_run(o, &c, &t);
    char *options_text = opt_format_alloc(o);
    c.options_text = options_text;
    ncsn_set_collective(0);
    check_agreement(&t, options_text);
    long start = train_plan(&t, o);
    if (t.dist.rank == 0) print_options(o, &t);
    set_meta(&t, o);
    if (t.dist.rank == 0) print_model(&t, o->run_dir, start, o->steps);
    start_samples(o, &t);
    /* After every check, so that a refused run writes nothing: the rows of
     * the steps before the start, under the header (none for a fresh run). */
    if (t.dist.rank == 0) rundir_trim_csv(o->run_dir, "metrics.csv", METRICS_HEADER, start, 1);
    if (t.dist.rank == 0) print_samples(o, &t);
    int status = train_loop(&c, &t, start, &g_stop_signal);
    if (t.dist.rank == 0 && status == 0) printf("run dir: %s\n", o->run_dir);
    train_samples_free(&t.samples);
    train_optim_free(&t);
    data_order_free(&t.order);
    free(options_text);
    free(milestones);
    model_free(&t.model);
    data_close(&t.data);
    rundir_unlock(o->run_dir, lock_fd);
    dist_finalize();
    return status;
}
