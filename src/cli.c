/* cli.c: option tables, parsing, --help and subcommand dispatch.
 *
 * Each subcommand has one table; the same table parses argv, prints --help
 * and prints the resolved configuration, so the three cannot drift. */
#include "ncsn/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"

#define F(field) offsetof(Options, field)
_Static_assert(NCSN_MAX_LEVELS == 4096, "the range of --num-classes below is 1..NCSN_MAX_LEVELS");

#define MODEL_OPTS                                                                                 \
    {"in-channels", OPT_INT, "3", "image channels C", F(in_channels), "[1,64]"}, \
        {"nf", OPT_INT, "128", "feature width", F(nf), "[1,4096]"}, \
        {"num-classes", OPT_INT, "10", "number of noise levels L", F(num_classes), "[1,4096]"}, \
        {"dilations", OPT_STR, "1,2,4,8", "four stage dilations", F(dilations), NULL}, \
        {"no-scale-by-sigma", OPT_FLAG, NULL, "do not divide the output by sigma", F(no_scale_by_sigma), NULL}, \
        {"plane-head", OPT_FLAG, NULL, "predict the clean image's mean and scale (docs/quality.md)", F(plane_head), NULL}, \
        {"head-floor", OPT_DOUBLE, "0.05", "with --plane-head: weight floor, 1/(sigma^2+floor^2)", F(head_floor), "[0,1000]"}, \
        {"head-sigma-data", OPT_DOUBLE, "0", "precondition the output for data of this spread, e.g. 0.5 (0: off; docs/quality.md)", F(head_sigma_data), "[0,1000]"}, \
        {"norm", OPT_STR, "cin", "every conditional norm: cin or cin++ (docs/training.md)", F(norm), NULL}, \
        {"sigma-begin", OPT_DOUBLE, NULL, "largest noise level (with --sigma-end)", F(sigma_begin), "(0,inf)"}, \
        {"sigma-end", OPT_DOUBLE, NULL, "smallest noise level (with --sigma-begin)", F(sigma_end), "(0,inf)"}, \
        {"sigmas", OPT_STR, NULL, "explicit descending noise levels a,b,...", F(sigmas), NULL}

static const OptSpec INIT_OPTS[] = {
    {"out", OPT_STR, NULL, "model file to write (required)", F(out), NULL},
    MODEL_OPTS,
    {"seed", OPT_U64, "0", "seed of the weight initialisation", F(seed), NULL},
    {NULL, 0, NULL, NULL, 0, NULL}};

static const OptSpec INFO_OPTS[] = {{NULL, 0, NULL, NULL, 0, NULL}};

static const OptSpec SCORE_OPTS[] = {
    {"model", OPT_STR, NULL, "model or checkpoint file (required)", F(model), NULL},
    {"input", OPT_STR, NULL, "input file with /x and /labels (required)", F(input), NULL},
    {"out", OPT_STR, NULL, "output file (required)", F(out), NULL},
    {NULL, 0, NULL, NULL, 0, NULL}};

static const OptSpec TRAIN_OPTS[] = {
    {"data", OPT_STR, NULL, "dataset file (required)", F(data), NULL},
    {"run-dir", OPT_STR, NULL, "run directory for checkpoints and metrics (required)", F(run_dir), NULL},
    {"dataset", OPT_STR, "images", "name of the image dataset in the data file", F(dataset), NULL},
    {"model", OPT_STR, NULL, "start from this model file instead of the model options", F(model), NULL},
    MODEL_OPTS,
    {"steps", OPT_INT, "1000", "total optimizer steps of the run", F(steps), "[0,inf)"},
    {"batch", OPT_INT, "128", "global batch size (split across ranks)", F(batch), "[1,1e9]"},
    {"micro-batch", OPT_INT, "0", "samples per forward/backward pass on each rank, gradients summed (0: the rank's whole share, or passes of max(4, threads) when its activations would pass 256 MiB)", F(micro_batch), "[0,inf)"},
    {"lr", OPT_DOUBLE, "1e-3", "Adam learning rate", F(lr), "(0,inf)"},
    {"weight-decay", OPT_DOUBLE, "0", "Adam L2 weight decay", F(weight_decay), "[0,inf)"},
    {"grad-clip", OPT_DOUBLE, "0", "clip the global gradient norm to this (0: off)", F(grad_clip), "[0,inf)"},
    {"warmup", OPT_INT, "0", "linear learning-rate warm-up steps", F(warmup), "[0,inf)"},
    {"lr-schedule", OPT_STR, "constant", "after warm-up: constant, or cosine (decays to 0 at --steps)", F(lr_schedule), NULL},
    {"ema", OPT_DOUBLE, "0", "EMA rate of the weights, e.g. 0.999 (0: off)", F(ema_rate), "[0,1)"},
    {"no-ema-warmup", OPT_FLAG, NULL, "use the fixed --ema rate from step 1 (default: min(rate, (1+t)/(10+t)))", F(no_ema_warmup), NULL},
    {"seed", OPT_U64, "0", "seed of every random draw", F(seed), NULL},
    {"ckpt-every", OPT_INT, "1000", "checkpoint every K steps (0: only at the end)", F(ckpt_every), "[0,inf)"},
    {"keep", OPT_INT, "3", "keep the K newest checkpoints", F(keep), "[1,inf)"},
    {"milestones", OPT_STR, "", "steps whose checkpoints are never deleted, a,b,...", F(milestones), NULL},
    {"resume", OPT_STR, "auto", "auto (newest complete checkpoint), none, or a checkpoint file", F(resume), NULL},
    {"log-every", OPT_INT, "0", "print a progress line every K steps (0: about 20 per run)", F(log_every), "[0,inf)"},
    {"sigma-pick", OPT_DOUBLE, "1000", "images sampled when choosing noise levels from the data", F(sigma_pick), "[2,1e9]"},
    {"bucket-mb", OPT_INT, "4", "gradient allreduce bucket size in MiB", F(bucket_mb), "[0,4096]"},
    {"dump-grads", OPT_STR, NULL, "debugging: write each step's summed gradient to DIR/grad-<step>.h5", F(dump_grads), NULL},
    {"sample-every", OPT_INT, "0", "every K steps write RUN_DIR/samples/step-<K>.png and .h5 (0: off)", F(sample_every), "[0,inf)"},
    {"sample-n", OPT_INT, "64", "samples per picture", F(sample_n), "[1,inf)"},
    {"sample-sampler", OPT_STR, "als", "sampler of the pictures: als, cas or heun (as ncsn sample --sampler)", F(sample_sampler), NULL},
    {"sample-steps-each", OPT_INT, "30", "Langevin steps per noise level of the pictures (als; cas takes 1)", F(sample_steps_each), "[1,inf)"},
    {"sample-step-lr", OPT_STR, "2e-5", "step size eps of the pictures, or auto (as ncsn sample --step-lr)", F(sample_step_lr), NULL},
    {"sample-no-clip", OPT_FLAG, NULL, "pictures: do not clamp to [-1, 1] after each step", F(sample_no_clip), NULL},
    {"eval-data", OPT_STR, NULL, "labelled held-out images: score each picture's samples (ncsn_eval.py --fd) into RUN_DIR/eval.csv", F(eval_data), NULL},
    {NULL, 0, NULL, NULL, 0, NULL}};

static const OptSpec SAMPLE_OPTS[] = {
    {"model", OPT_STR, NULL, "model or checkpoint file (required)", F(model), NULL},
    {"out", OPT_STR, NULL, "samples file to write (required)", F(out), NULL},
    {"png", OPT_STR, NULL, "also write a grid picture here", F(png), NULL},
    {"n", OPT_INT, "64", "number of samples", F(n), "[1,inf)"},
    {"image-size", OPT_INT, "32", "height and width of the samples", F(image_size), "[1,4096]"},
    {"height", OPT_INT, NULL, "height (overrides --image-size)", F(height), "[1,4096]"},
    {"width", OPT_INT, NULL, "width (overrides --image-size)", F(width), "[1,4096]"},
    {"sampler", OPT_STR, "als", "als (annealed Langevin), cas (consistent annealed sampling) or heun (deterministic, probability-flow ODE)", F(sampler), NULL},
    {"steps-each", OPT_INT, "100", "Langevin steps per noise level (als; cas takes 1)", F(steps_each), "[1,inf)"},
    {"step-lr", OPT_STR, "2e-5", "step size eps at the smallest level, or auto (als: NCSNv2 technique 4)", F(step_lr), NULL},
    {"no-clip", OPT_FLAG, NULL, "do not clamp to [-1, 1] after each step", F(no_clip), NULL},
    {"denoise", OPT_FLAG, NULL, "final denoising step with the smallest level", F(denoise), NULL},
    {"init-dist", OPT_STR, "uniform", "initial distribution: uniform or normal", F(init_dist), NULL},
    {"init", OPT_STR, NULL, "start from /x of this file [N,C,H,W]", F(init_file), NULL},
    {"inpaint", OPT_STR, NULL, "known image /x [N,C,H,W] for inpainting (with --mask)", F(inpaint), NULL},
    {"mask", OPT_STR, NULL, "mask /mask [N or 1,C,H,W], 1 = known pixel", F(mask), NULL},
    {"trajectory", OPT_FLAG, NULL, "also store the state after each noise level", F(trajectory), NULL},
    {"micro-batch", OPT_INT, "0", "samples per forward pass on each rank (0: the larger of 4 and the rank's threads)", F(micro_batch), "[0,inf)"},
    {"keep-weights", OPT_STR, "auto", "keep every conv's transformed weights for the whole run instead of redoing them each forward pass: on, off, or auto (on when a rank's passes hold 1 sample)", F(keep_weights), NULL},
    {"seed", OPT_U64, "0", "seed of the initial state and the noise", F(seed), NULL},
    {"ema", OPT_FLAG, NULL, "use the EMA weights of a training checkpoint", F(use_ema), NULL},
    {NULL, 0, NULL, NULL, 0, NULL}};

typedef struct {
    const char *name;
    const OptSpec *opts;
    int (*run)(const Options *);
    const char *usage;
} Command;

static const Command COMMANDS[] = {
    {"init", INIT_OPTS, cmd_init, "write a freshly initialised model file"},
    {"info", INFO_OPTS, cmd_info, "MODEL.h5: print configuration, parameter count, noise levels, step"},
    {"score", SCORE_OPTS, cmd_score, "write s(x, labels) for /x and /labels of an input file"},
    {"grad", SCORE_OPTS, cmd_grad, "write the DSM loss and its gradient for /x, /labels, /noise"},
    {"train", TRAIN_OPTS, cmd_train, "train with annealed DSM (under mpirun/srun for many ranks)"},
    {"sample", SAMPLE_OPTS, cmd_sample, "annealed Langevin, consistent annealed or Heun sampling (under mpirun/srun for many ranks)"},
    {NULL, NULL, NULL, NULL}};

static const Command *g_cmd;

static void range_text(const OptSpec *s, char *buf, size_t cap);

static void print_help(const Command *c, FILE *f)
{
    fprintf(f, "usage: ncsn %s%s [options]\n  %s\n", c->name,
            strcmp(c->name, "info") == 0 ? " MODEL.h5" : "", c->usage);
    for (const OptSpec *o = c->opts; o->name; o++) {
        const char *arg = o->type == OPT_FLAG ? "" : o->type == OPT_STR ? " S" : " X";
        char left[64];
        snprintf(left, sizeof left, "--%s%s", o->name, arg);
        fprintf(f, "  %-24s %s", left, o->help);
        if (o->def && o->def[0]) fprintf(f, " [%s]", o->def);
        if (o->type == OPT_INT || o->type == OPT_DOUBLE) {
            char want[96];
            range_text(o, want, sizeof want);
            fprintf(f, " (%s)", want);
        }
        fputc('\n', f);
    }
}

static void print_commands(FILE *f)
{
    fprintf(f, "usage: ncsn COMMAND [options]   (ncsn COMMAND --help for its options)\n");
    for (const Command *c = COMMANDS; c->name; c++) fprintf(f, "  %-8s %s\n", c->name, c->usage);
}

/* A numeric option's range, "[lo,hi]" with ( or ) for an open end and inf
 * for none. Every value must also be finite. */
typedef struct {
    double lo, hi;
    int lo_open, hi_open;
} Range;

static Range range_of(const OptSpec *s)
{
    Range r;
    char open, close;
    int n = 0;
    CHECK(s->range && sscanf(s->range, "%c%lf,%lf%c%n", &open, &r.lo, &r.hi, &close, &n) == 4 &&
              !s->range[n] && (open == '[' || open == '(') && (close == ']' || close == ')'),
          "option table: --%s needs a range like [0,inf), has '%s'", s->name, s->range ? s->range : "(none)");
    r.lo_open = open == '(';
    r.hi_open = close == ')';
    return r;
}

/* ">= 1", "in 1..4096", "finite and > 0", "finite and in [0, 1)" */
static void range_text(const OptSpec *s, char *buf, size_t cap)
{
    Range r = range_of(s);
    const char *fin = s->type == OPT_DOUBLE ? "finite and " : "";
    if (isinf(r.hi)) snprintf(buf, cap, "%s%s %.9g", fin, r.lo_open ? ">" : ">=", r.lo);
    else if (s->type == OPT_INT) snprintf(buf, cap, "in %.0f..%.0f", r.lo, r.hi);
    else snprintf(buf, cap, "%sin %c%.9g, %.9g%c", fin, r.lo_open ? '(' : '[', r.lo, r.hi, r.hi_open ? ')' : ']');
}

static void check_range(const OptSpec *s, double v, const char *text)
{
    Range r = range_of(s);
    if (isfinite(v) && (r.lo_open ? v > r.lo : v >= r.lo) && (r.hi_open ? v < r.hi : v <= r.hi)) return;
    char want[96];
    range_text(s, want, sizeof want);
    ncsn_die_usage("option --%s: must be %s, got '%s'", s->name, want, text);
}

static void set_value(Options *o, const OptSpec *s, const char *text)
{
    void *field = (char *)o + s->offset;
    char *end = NULL;
    errno = 0;
    switch (s->type) {
    case OPT_INT: {
        long v = strtol(text, &end, 10);
        if (errno || end == text || *end)
            ncsn_die_usage("option --%s: expected an integer, got '%s'", s->name, text);
        check_range(s, (double)v, text);
        *(long *)field = v;
        break;
    }
    case OPT_DOUBLE: {
        double v = strtod(text, &end);
        if (errno || end == text || *end)
            ncsn_die_usage("option --%s: expected a number, got '%s'", s->name, text);
        check_range(s, v, text);
        *(double *)field = v;
        break;
    }
    case OPT_U64: {
        unsigned long long v = strtoull(text, &end, 10);
        if (errno || end == text || *end || text[0] == '-')
            ncsn_die_usage("option --%s: expected a non-negative integer, got '%s'", s->name, text);
        *(uint64_t *)field = v;
        break;
    }
    case OPT_STR:
        *(const char **)field = text;
        break;
    case OPT_FLAG:
        *(int *)field = 1;
        break;
    }
}

int opt_given(const Options *o, const char *name)
{
    for (int i = 0; i < o->n_given; i++)
        if (strcmp(o->given[i], name) == 0) return 1;
    return 0;
}

static void parse(Options *o, const Command *c, int argc, char **argv)
{
    for (const OptSpec *s = c->opts; s->name; s++) {
        CHECK(s - c->opts < OPT_MAX, "option table of %s: more than OPT_MAX (%d) options", c->name, OPT_MAX);
        if (s->type == OPT_INT || s->type == OPT_DOUBLE) range_of(s); /* every number has a range */
        if (s->def) set_value(o, s, s->def);
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            print_help(c, stdout);
            exit(0);
        }
        if (strncmp(a, "--", 2) != 0) {
            if (strcmp(c->name, "info") == 0 && !o->positional) {
                o->positional = a;
                continue;
            }
            ncsn_die_usage("%s: unexpected argument '%s' (options start with --)", c->name, a);
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const OptSpec *s = c->opts;
        for (; s->name; s++)
            if (strlen(s->name) == len && strncmp(s->name, name, len) == 0) break;
        if (!s->name)
            ncsn_die_usage("unknown option --%.*s for 'ncsn %s' (see ncsn %s --help)", (int)len,
                           name, c->name, c->name);
        const char *value = NULL;
        if (s->type == OPT_FLAG) {
            if (eq) ncsn_die_usage("option --%s takes no value", s->name);
        } else if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc) ncsn_die_usage("option --%s needs a value", s->name);
            value = argv[++i];
        }
        set_value(o, s, value);
        if (!opt_given(o, s->name)) o->given[o->n_given++] = s->name;
    }
}

static int parse_list(const char *text, const char *what, double *out, int cap)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end = NULL;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno) ncsn_die_usage("option --%s: cannot parse '%s' as a list of numbers", what, text);
        if (!isfinite(v)) ncsn_die_usage("option --%s: values must be finite, got '%s'", what, text);
        if (n == cap) ncsn_die_usage("option --%s: more than %d values", what, cap);
        out[n++] = v;
        p = end;
        if (*p == ',') p++;
        else if (*p) ncsn_die_usage("option --%s: cannot parse '%s' as a list of numbers", what, text);
    }
    return n;
}

void opt_model_config(const Options *o, NcsnConfig *cfg)
{
    config_default(cfg);
    cfg->in_channels = (int)o->in_channels;
    cfg->nf = (int)o->nf;
    cfg->num_classes = (int)o->num_classes;
    cfg->scale_by_sigma = !o->no_scale_by_sigma;
    if (!o->plane_head && o->head_floor != cfg->head_floor) /* cfg still holds the default */
        ncsn_die_usage("option --head-floor has no effect without --plane-head");
    cfg->plane_head = o->plane_head;
    cfg->head_floor = o->head_floor;
    cfg->head_sigma_data = o->head_sigma_data;
    if (!norm_kind_parse(o->norm, &cfg->norm))
        ncsn_die_usage("option --norm: expected cin or cin++, got '%s'", o->norm);
    double d[4];
    if (parse_list(o->dilations, "dilations", d, 4) != 4)
        ncsn_die_usage("option --dilations: expected four positive integers, got '%s'", o->dilations);
    for (int i = 0; i < 4; i++) {
        if (d[i] != (int)d[i] || d[i] < 1)
            ncsn_die_usage("option --dilations: expected four positive integers, got '%s'", o->dilations);
        cfg->dilations[i] = (int)d[i];
    }
    const char *bad = config_validate(cfg);
    if (bad) ncsn_die_usage("model options: %s", bad);
}

void opt_set_model_config(Options *o, const NcsnConfig *cfg, char *dilations, size_t cap)
{
    o->in_channels = cfg->in_channels;
    o->nf = cfg->nf;
    o->num_classes = cfg->num_classes;
    snprintf(dilations, cap, "%d,%d,%d,%d", cfg->dilations[0], cfg->dilations[1], cfg->dilations[2],
             cfg->dilations[3]);
    o->dilations = dilations;
    o->no_scale_by_sigma = !cfg->scale_by_sigma;
    o->plane_head = cfg->plane_head;
    o->head_floor = cfg->head_floor;
    o->head_sigma_data = cfg->head_sigma_data;
    o->norm = norm_kind_name(cfg->norm);
}

void opt_check_model_file(const Options *o, const NcsnConfig *f, const char *path)
{
    NcsnConfig want;
    opt_model_config(o, &want);
    const char *bad = NULL;
    char have[64] = "";
#define DISAGREE(option, differs, ...)                                                             \
    if (!bad && opt_given(o, option) && (differs)) {                                               \
        bad = option;                                                                              \
        snprintf(have, sizeof have, __VA_ARGS__);                                                  \
    }
    DISAGREE("in-channels", want.in_channels != f->in_channels, "in_channels %d", f->in_channels)
    DISAGREE("nf", want.nf != f->nf, "nf %d", f->nf)
    DISAGREE("num-classes", want.num_classes != f->num_classes, "num_classes %d", f->num_classes)
    DISAGREE("dilations", memcmp(want.dilations, f->dilations, sizeof want.dilations) != 0,
             "dilations %d,%d,%d,%d", f->dilations[0], f->dilations[1], f->dilations[2], f->dilations[3])
    DISAGREE("no-scale-by-sigma", want.scale_by_sigma != f->scale_by_sigma, "scale_by_sigma %d", f->scale_by_sigma)
    DISAGREE("plane-head", want.plane_head != f->plane_head, "plane_head %d", f->plane_head)
    DISAGREE("head-floor", !f->plane_head || want.head_floor != f->head_floor, "plane_head %d, head_floor %g",
             f->plane_head, f->head_floor)
    DISAGREE("head-sigma-data", want.head_sigma_data != f->head_sigma_data, "head_sigma_data %g",
             f->head_sigma_data)
    DISAGREE("norm", want.norm != f->norm, "norm %s", norm_kind_name(f->norm))
#undef DISAGREE
    if (bad)
        ncsn_die_usage("option --%s disagrees with --model %s (%s): with --model the file decides the network",
                       bad, path, have);
}

int opt_sigmas(const Options *o, int L, float *sigmas)
{
    int has_b = opt_given(o, "sigma-begin"), has_e = opt_given(o, "sigma-end");
    if (o->sigmas && (has_b || has_e))
        ncsn_die_usage("give either --sigmas or --sigma-begin/--sigma-end, not both");
    if (o->sigmas) {
        double *v = xmalloc((size_t)(L + 1) * sizeof(double));
        int n = parse_list(o->sigmas, "sigmas", v, L + 1);
        if (n != L) ncsn_die_usage("option --sigmas: %d values given, --num-classes is %d", n, L);
        for (int i = 0; i < L; i++) sigmas[i] = (float)v[i];
        free(v);
        const char *why = sigmas_validate(sigmas, L);
        if (why) ncsn_die_usage("option --sigmas: %s", why);
        return 1;
    }
    if (has_b != has_e) ncsn_die_usage("--sigma-begin and --sigma-end must be given together");
    if (!has_b) return 0;
    const char *why = make_sigmas(sigmas, o->sigma_begin, o->sigma_end, L);
    if (why) ncsn_die_usage("options --sigma-begin/--sigma-end: %s", why);
    return 1;
}

static size_t format_value(const Options *o, const OptSpec *s, char *buf, size_t cap)
{
    const void *field = (const char *)o + s->offset;
    switch (s->type) {
    case OPT_INT:
        return (size_t)snprintf(buf, cap, "%ld", *(const long *)field);
    case OPT_DOUBLE: return (size_t)snprintf(buf, cap, "%.9g", *(const double *)field);
    case OPT_U64: return (size_t)snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)field);
    case OPT_STR: {
        const char *v = *(const char *const *)field;
        return (size_t)snprintf(buf, cap, "%s", v ? v : "(none)");
    }
    case OPT_FLAG: return (size_t)snprintf(buf, cap, "%s", *(const int *)field ? "yes" : "no");
    }
    return 0;
}

size_t opt_format(const Options *o, char *buf, size_t cap)
{
    size_t k = 0;
    if (!g_cmd) return 0;
#define AT (k < cap ? buf + k : NULL), (k < cap ? cap - k : 0)
    for (const OptSpec *s = g_cmd->opts; s->name; s++) {
        k += (size_t)snprintf(AT, "%s=", s->name);
        k += format_value(o, s, AT);
        k += (size_t)snprintf(AT, "\n");
    }
#undef AT
    return k;
}

char *opt_format_alloc(const Options *o)
{
    size_t n = opt_format(o, NULL, 0) + 1;
    char *text = xmalloc(n);
    text[0] = '\0';
    opt_format(o, text, n);
    return text;
}

void opt_print(const Options *o, FILE *f)
{
    char v[512];
    fprintf(f, "ncsn %s configuration:\n", o->cmd);
    for (const OptSpec *s = g_cmd->opts; s->name; s++) {
        format_value(o, s, v, sizeof v);
        fprintf(f, "  %-18s %s\n", s->name, v);
    }
}

int cli_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_commands(argc < 2 ? stderr : stdout);
        return argc < 2 ? NCSN_EXIT_USAGE : 0;
    }
    for (const Command *c = COMMANDS; c->name; c++) {
        if (strcmp(argv[1], c->name) != 0) continue;
        static Options o;
        memset(&o, 0, sizeof o);
        o.cmd = c->name;
        g_cmd = c;
        parse(&o, c, argc - 2, argv + 2);
        return c->run(&o);
    }
    ncsn_die_usage("unknown command '%s' (see ncsn --help)", argv[1]);
}
