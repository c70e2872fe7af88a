/* evaluator.h: the quality number of `ncsn train --eval-data`.
 *
 * Runs the evaluation script on a samples file,
 *   PYTHON SCRIPTS/ncsn_eval.py SAMPLES --data EVAL --dataset NAME --fd
 *          --train-data TRAIN --json JSON
 * with PYTHON = $NCSN_PYTHON (default /usr/bin/python3) and SCRIPTS =
 * $NCSN_SCRIPTS (default: ../share/ncsn-mpi/scripts from the executable's
 * directory when installed there, else the source tree's scripts/), and
 * reads a few numbers of its JSON object. Only rank 0 calls these. */
#ifndef NCSN_EVALUATOR_H
#define NCSN_EVALUATOR_H

#include <stddef.h>

typedef struct {
    char python[4096], script[4096];
    const char *eval_data, *train_data, *dataset;
} Evaluator;

/* The numbers of one evaluation (the JSON keys in brackets). */
typedef struct {
    double fd;        /* Frechet distance of the samples to held-out images ("fd") */
    double fd_floor;  /* the same for real held-out images ("fd_real") */
    double score;     /* classifier score ("fd_score") */
    double coverage;  /* classes with at least 5% of the samples ("fd_coverage") */
    double n_classes; /* ("fd_n_classes") */
} EvalNumbers;

/* Finds the interpreter and the script and checks, before any training,
 * that `PYTHON SCRIPT --help` runs and names --fd, --train-data and --json,
 * and that the interpreter imports numpy, h5py and torch. Returns 0, or -1
 * with a message naming what is wrong (and how to fix it) in err. */
int evaluator_init(Evaluator *e, const char *eval_data, const char *train_data, const char *dataset,
                   char *err, size_t cap);

/* Evaluates `samples`: the script writes `json`, its output goes to `log`.
 * Returns 0 with the numbers, or -1 with a message in err (the script's
 * exit status, or what the JSON lacks). */
int evaluator_run(const Evaluator *e, const char *samples, const char *json, const char *log,
                  EvalNumbers *r, char *err, size_t cap);

/* The number after "key": in a JSON text (a tiny lookup, enough for the
 * flat object of ncsn_eval.py --json). Returns 1, or 0 when the key is
 * absent or its value is not a number (null, a string, a list). */
int json_number(const char *text, const char *key, double *v);

#endif
