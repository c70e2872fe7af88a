/* sample.c: `ncsn sample`: reads the model and the optional starting,
 * known and mask tensors, runs the distributed sampler (sampler.h) and
 * writes the samples file and its pictures. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/ckpt.h"
#include "ncsn/cli.h"
#include "ncsn/common.h"
#include "ncsn/dist.h"
#include "ncsn/h5util.h"
#include "ncsn/memcheck.h"
#include "ncsn/png.h"
#include "ncsn/sampler.h"
#include "ncsn/startup.h"

/* Reads a [n or 1, C, H, W] float tensor `name` of `path`. */
static float *read_images(const char *path, const char *name, const Sampler *S, long *n_out, int allow_one)
{
    hid_t f = h5_open_read(path);
    hsize_t d[4];
    float *x = h5_read_floats(f, path, name, 4, d);
    H5Fclose(f);
    if ((int)d[1] != S->img.C || (int)d[2] != S->img.H || (int)d[3] != S->img.W)
        ncsn_die_usage("%s: dataset %s has images of %llu x %llu x %llu, expected %d x %d x %d "
                       "(channels x --height x --width)",
                       path, name, (unsigned long long)d[1], (unsigned long long)d[2],
                       (unsigned long long)d[3], S->img.C, S->img.H, S->img.W);
    if (!((long)d[0] == S->n || (allow_one && d[0] == 1)))
        ncsn_die_usage("%s: dataset %s has %llu images, expected %ld%s", path, name,
                       (unsigned long long)d[0], S->n, allow_one ? " or 1" : " (--n)");
    *n_out = (long)d[0];
    return x;
}

/* GRID.png -> GRID_trajectory.png; a name without ".png" keeps all of it */
static void strip_path(char *out, size_t cap, const char *png)
{
    size_t stem = strlen(png);
    if (stem > 4 && strcmp(png + stem - 4, ".png") == 0) stem -= 4;
    snprintf(out, cap, "%.*s_trajectory.png", (int)stem, png);
}

/* Strip picture: up to 8 samples (rows) from the state after each level to the end. */
static void write_strip(const char *png, const float *traj, const float *final, const Sampler *S, int L)
{
    long rows = S->n < 8 ? S->n : 8;
    size_t per = shape_count(S->img);
    int cols = L + 1;
    float *pic = xmalloc((size_t)rows * cols * per * sizeof(float));
    for (long r = 0; r < rows; r++) {
        for (int i = 0; i < L; i++)
            memcpy(pic + ((size_t)r * cols + i) * per, traj + ((size_t)i * S->n + r) * per, per * sizeof(float));
        memcpy(pic + ((size_t)r * cols + L) * per, final + (size_t)r * per, per * sizeof(float));
    }
    char path[4200];
    strip_path(path, sizeof path, png);
    if (png_write_grid(path, pic, (int)(rows * cols), S->img.C, S->img.H, S->img.W, cols) != 0)
        ncsn_die_usage("--png: cannot write %s: %s", path, strerror(errno));
    printf("wrote %s\n", path);
    free(pic);
}

/* Samples in one forward pass on a rank (its share or --micro-batch, the smaller). */
static long pass_samples(const Sampler *S, const Dist *d)
{
    long nl = (S->n + d->size - 1) / d->size;
    return S->micro_batch < nl ? S->micro_batch : nl;
}

/* Every rank, before the sampler's buffers exist: what one rank will hold
 * (rank 0 also gathers every sample) against what its node offers. Kept
 * weights that --keep-weights auto chose and that would not fit are
 * dropped instead (returns 1 then): the samples are the same without. */
static int check_memory(Sampler *S, const Model *m, const Dist *d, int keep_auto)
{
    size_t per = shape_count(S->img);
    long nl = (S->n + d->size - 1) / d->size, mb = pass_samples(S, d);
    int L = m->cfg.num_classes;
    double f = sizeof(float), keep = S->trajectory ? 1.0 + L : 1.0; /* final state (+ one per level) */
    Shape s = S->img;
    s.N = (int)mb;
    char act[96];
    snprintf(act, sizeof act, "activations of %ld sample%s", mb, mb > 1 ? "s" : "");
    MemPart parts[] = {
        {"parameters", (double)m->table.total * f},
        {"the kept transformed weights (--keep-weights)", S->keep_weights ? (double)model_prepared_floats(m) * f : 0},
        {act, (double)model_run_floats(&m->cfg, s, 1) * f},
        {"the rank's samples", keep * (double)nl * per * f + 3.0 * (double)mb * per * f},
        {"all samples on rank 0", d->rank == 0 ? keep * (double)S->n * per * f : 0},
    };
    char why[8192];
    const char *advice =
        "lower --n, --micro-batch or --image-size, give --keep-weights off, or spread the ranks over more nodes";
    mem_verdict("sampling", parts, 5, d->node_size, advice, why, sizeof why);
    int dropped = 0;
    if (why[0] && S->keep_weights && keep_auto) {
        parts[1].bytes = 0;
        mem_verdict("sampling", parts, 5, d->node_size, advice, why, sizeof why);
        dropped = !why[0];
        if (dropped) S->keep_weights = 0;
    }
    dist_agree_usage_any(why, sizeof why);
    return dropped;
}

/* Every output can be written (rank 0 looks, all agree) before any work. */
static void check_outputs(const Options *o, int rank)
{
    char why[8400] = "", strip[4200];
    if (rank == 0 && ncsn_check_output("--out", o->out, why, sizeof why) == 0 && o->png &&
        ncsn_check_output("--png", o->png, why, sizeof why) == 0 && o->trajectory) {
        strip_path(strip, sizeof strip, o->png);
        ncsn_check_output("--png (the --trajectory strip)", strip, why, sizeof why);
    }
    dist_agree_usage(why, sizeof why);
}

/* The model of --model, with its EMA weights for --ema; no gradients. */
static void load_model(Model *m, const Options *o)
{
    hid_t mf = h5_open_read(o->model);
    ckpt_load_model_from(m, mf, o->model);
    if (o->use_ema) {
        if (!h5_exists(mf, "/ema"))
            ncsn_die_usage("%s: --ema: the file has no /ema group (train with --ema RATE)", o->model);
        ckpt_load_group(mf, o->model, "/ema", m, m->params);
    }
    H5Fclose(mf);
    model_drop_grads(m);
    if (!m->sigmas) ncsn_die_usage("%s: /model/sigmas is missing: sampling needs noise levels", o->model);
}

/* --keep-weights: on, off, or auto. A conv's weight transform costs the
 * same on every forward pass whatever its samples: a quarter of a pass of
 * 1 sample, a twelfth of a pass of 4 (nf 128). Kept, the transformed
 * weights (4x the conv weights) are read back from memory on every pass,
 * which costs most of what it saves from 2 samples per pass up (measured:
 * 1.18x sample-steps/s at 1 sample, none at 2 or 4; docs/performance.md),
 * so auto keeps them when a rank's passes hold 1 sample. */
static int keep_weights(const char *v, const Sampler *S, const Dist *d)
{
    if (strcmp(v, "on") == 0) return 1;
    if (strcmp(v, "off") == 0) return 0;
    if (strcmp(v, "auto") != 0) ncsn_die_usage("option --keep-weights: expected on, off or auto, got '%s'", v);
    return pass_samples(S, d) <= 1;
}

/* The sampling run the options ask for with model m on the ranks of d;
 * desc gets the schedule. */
static Sampler sampler_from_options(const Options *o, const Model *m, const Dist *d, char *desc, size_t cap)
{
    long H = opt_given(o, "height") ? o->height : o->image_size;
    long W = opt_given(o, "width") ? o->width : o->image_size;
    if (strcmp(o->init_dist, "uniform") != 0 && strcmp(o->init_dist, "normal") != 0)
        ncsn_die_usage("option --init-dist: expected uniform or normal, got '%s'", o->init_dist);
    if (!o->inpaint != !o->mask) ncsn_die_usage("--inpaint and --mask must be given together");
    if (o->png && m->cfg.in_channels != 1 && m->cfg.in_channels != 3)
        ncsn_die_usage("--png: pictures need 1 or 3 channels, the model has %d", m->cfg.in_channels);
    Sampler S;
    memset(&S, 0, sizeof S);
    S.n = o->n;
    S.img = (Shape){1, m->cfg.in_channels, (int)H, (int)W};
    SamplerOptions so = {.kind = o->sampler, .steps_each = o->steps_each,
                         .steps_each_given = opt_given(o, "steps-each"), .step_lr = o->step_lr,
                         .step_lr_given = opt_given(o, "step-lr"), .prefix = ""};
    sampler_setup(&S, &so, m->sigmas, m->cfg.num_classes, desc, cap);
    S.clip = !o->no_clip;
    S.denoise = o->denoise;
    S.normal_init = strcmp(o->init_dist, "normal") == 0;
    S.trajectory = o->trajectory;
    S.micro_batch = o->micro_batch > 0 ? o->micro_batch : ops_pass_samples();
    S.seed = o->seed;
    S.keep_weights = keep_weights(o->keep_weights, &S, d);
    return S;
}

/* The --init, --inpaint and --mask tensors S points to. */
typedef struct {
    float *init, *known, *mask; /* [n, C, H, W]; known and mask [n or 1, C, H, W] */
} SampleInputs;

static SampleInputs read_inputs(const Options *o, Sampler *S)
{
    SampleInputs in = {NULL, NULL, NULL};
    long n_init;
    if (o->init_file) in.init = read_images(o->init_file, "/x", S, &n_init, 0);
    if (o->inpaint) {
        in.known = read_images(o->inpaint, "/x", S, &S->n_known, 1);
        in.mask = read_images(o->mask, "/mask", S, &S->n_mask, 1);
    }
    S->init = in.init;
    S->known = in.known;
    S->mask = in.mask;
    return in;
}

/* Rank 0: the samples file, the grid picture and the trajectory strip. */
static void write_outputs(const Options *o, const Sampler *S, const Model *m, const float *all,
                          const float *traj_all, double elapsed)
{
    int L = m->cfg.num_classes;
    SamplesSource src = {.model = o->model, .weights = o->use_ema ? "ema" : "model",
                         .init = o->init_file ? o->init_file : o->init_dist, .inpaint = o->inpaint,
                         .mask = o->mask, .step = -1};
    sampler_write(o->out, S, m, &src, all, traj_all);
    printf("wrote %s: %ld samples of %d x %d x %d in %.1f s (%.1f Langevin sample-steps/s)\n", o->out,
           S->n, S->img.C, S->img.H, S->img.W, elapsed, (double)S->n * L * S->steps_each / elapsed);
    if (!o->png) return;
    int cols = (int)ceil(sqrt((double)S->n));
    if (png_write_grid(o->png, all, (int)S->n, S->img.C, S->img.H, S->img.W, cols) != 0)
        ncsn_die_usage("--png: cannot write %s: %s", o->png, strerror(errno));
    printf("wrote %s\n", o->png);
    if (traj_all) write_strip(o->png, traj_all, all, S, L);
}

int cmd_sample(const Options *o)
{
    Dist dist;
    startup_ranks(&dist);
    h5_quiet();
    ncsn_set_collective(1); /* every rank validates the same options and files */
    if (!o->model) ncsn_die_usage("ncsn sample: option --model is required");
    if (!o->out) ncsn_die_usage("ncsn sample: option --out is required");
    check_outputs(o, dist.rank);
    Model m;
    load_model(&m, o);
    char desc[512];
    Sampler S = sampler_from_options(o, &m, &dist, desc, sizeof desc);
    SampleInputs in = read_inputs(o, &S);
    int dropped = check_memory(&S, &m, &dist, strcmp(o->keep_weights, "auto") == 0);
    ncsn_set_collective(0);
    if (dist.rank == 0) {
        opt_print(o, stdout);
        printf("  %-18s %d\n  %-18s %s\n", "ranks", dist.size, "weights", o->use_ema ? "EMA" : "model");
        printf("  %-18s %s\n", "schedule", desc);
        if (S.keep_weights)
            printf("  %-18s kept for the run (%.0f MB per rank)\n", "conv weights",
                   (double)model_prepared_floats(&m) * sizeof(float) / 1e6);
        else
            printf("  %-18s transformed again on every forward pass%s\n", "conv weights",
                   dropped ? " (--keep-weights auto: keeping them would not fit in memory)" : "");
        fflush(stdout);
    }
    size_t per = shape_count(S.img);
    float *all = NULL, *traj_all = NULL; /* rank 0: [n, C, H, W], [L, n, C, H, W] */
    if (dist.rank == 0) {
        all = xmalloc((size_t)S.n * per * sizeof(float));
        if (S.trajectory) traj_all = xmalloc((size_t)m.cfg.num_classes * S.n * per * sizeof(float));
    }
    double elapsed = sampler_run(&S, &m, &dist, 1, all, traj_all);
    if (dist.rank == 0) write_outputs(o, &S, &m, all, traj_all, elapsed);
    free(all);
    free(traj_all);
    free(in.init);
    free(in.known);
    free(in.mask);
    model_free(&m);
    dist_finalize();
    return 0;
}
