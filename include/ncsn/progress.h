/* progress.h: what rank 0 tells about a training run as it goes: one row
 * per step in RUN_DIR/metrics.csv, and a live bar on a terminal or a plain
 * line every few steps otherwise (step, loss, images/s, ETA). */
#ifndef NCSN_PROGRESS_H
#define NCSN_PROGRESS_H

#include <stdio.h>

#define METRICS_HEADER "step,loss,lr,grad_norm,images_per_s,wall_s"

typedef struct {
    FILE *metrics;  /* NULL on ranks other than 0 */
    const char *run_dir;
    int tty;        /* stderr is a terminal: the live bar */
    long total;     /* the run's last step */
    long every;     /* a plain line every this many steps */
    double t_start;
    long step_start;
} Progress;

/* Rank 0: opens RUN_DIR/metrics.csv for appending (cut to the starting
 * step by the caller); other ranks get an inert Progress. log_every 0:
 * about 20 lines per run. */
void progress_open(Progress *p, int rank, const char *run_dir, long total, long log_every);
/* The clock of the ETA starts now, at step `start`. */
void progress_start(Progress *p, long start);
/* After step `step` (counted from 1): the metrics row and the progress line. */
void progress_step(Progress *p, long step, double loss, double lr, double gnorm, double images_per_s);
/* metrics.csv on disk (before a checkpoint, so a resume finds its rows). */
void progress_sync(Progress *p);
void progress_close(Progress *p);

/* printf on rank 0 only, flushed. */
void progress_say(int rank, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
