/* cli.h: the command line. One table per subcommand gives each option's
 * name, type, default, help and the field it fills; parsing and --help both
 * come from it. */
#ifndef NCSN_CLI_H
#define NCSN_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ncsn/model.h"

typedef enum { OPT_INT /* long */, OPT_DOUBLE, OPT_U64, OPT_STR, OPT_FLAG } OptType;

typedef struct {
    const char *name; /* without the leading -- */
    OptType type;
    const char *def;  /* default as text, NULL for none */
    const char *help;
    size_t offset;    /* into Options */
    /* OPT_INT, OPT_DOUBLE: the values allowed, "[lo,hi]" with ( or ) for an
     * open end and inf for none, e.g. "(0,inf)", "[0,1)". Checked at parse
     * time, with non-finite values always refused; shown by --help. */
    const char *range;
} OptSpec;

/* The most options a subcommand's table may have (checked when parsing). */
#define OPT_MAX 64

/* Every option of every subcommand. Strings point into argv or defaults. */
typedef struct {
    const char *cmd;
    const char *positional; /* info: the model file */
    /* files */
    const char *out, *model, *input, *data, *run_dir, *dataset, *resume, *init_file, *png;
    const char *inpaint, *mask, *init_dist, *sigmas, *dilations, *milestones, *dump_grads, *keep_weights;
    /* model */
    long in_channels, nf, num_classes;
    int no_scale_by_sigma;
    int plane_head;
    double head_floor, head_sigma_data;
    const char *norm;
    double sigma_begin, sigma_end;
    uint64_t seed;
    /* training */
    long steps, batch, ckpt_every, keep, warmup, log_every;
    double lr, ema_rate, weight_decay, grad_clip, sigma_pick;
    long bucket_mb;
    int no_ema_warmup;
    /* samples while training */
    long sample_every, sample_n, sample_steps_each;
    const char *sample_sampler, *sample_step_lr, *eval_data;
    const char *lr_schedule; /* constant or cosine */
    int sample_no_clip;
    /* sampling */
    long n, image_size, height, width, steps_each, micro_batch;
    const char *step_lr, *sampler; /* step_lr: a number or "auto" */
    int no_clip, denoise, trajectory, use_ema;
    /* which options were given on the command line, each once */
    const char *given[OPT_MAX];
    int n_given;
} Options;

int opt_given(const Options *o, const char *name);
/* Builds the model configuration from the model options (init, train). */
void opt_model_config(const Options *o, NcsnConfig *cfg);
/* The inverse: sets the model options to cfg (dilations written to the
 * caller's buffer), for printing the configuration that took effect. */
void opt_set_model_config(Options *o, const NcsnConfig *cfg, char *dilations, size_t cap);
/* With --model the file decides the network: a model option given on the
 * command line that disagrees with the file's configuration f is refused
 * (exit 2, naming it); one that agrees is accepted. */
void opt_check_model_file(const Options *o, const NcsnConfig *f, const char *path);
/* Parses the noise-level options into sigmas[L]; returns 0 when none given. */
int opt_sigmas(const Options *o, int L, float *sigmas);
/* Prints every resolved option of the subcommand (rank 0 does this once). */
void opt_print(const Options *o, FILE *f);
/* One line per option "name=value" for storing in checkpoints, in buf as
 * far as cap allows (cap 0: buf may be NULL); returns the whole length. */
size_t opt_format(const Options *o, char *buf, size_t cap);
/* The same in a buffer of its size (free it). */
char *opt_format_alloc(const Options *o);

int cli_main(int argc, char **argv);

/* Subcommands. */
int cmd_init(const Options *o);
int cmd_info(const Options *o);
int cmd_score(const Options *o);
int cmd_grad(const Options *o);
int cmd_train(const Options *o);
int cmd_sample(const Options *o);

#endif
