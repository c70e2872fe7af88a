/* rundir.h: the files of a run directory.
 *
 *   ckpt-<step, 8 digits>.h5   complete training checkpoints
 *   latest.h5                  symlink to the newest complete checkpoint
 *   model.h5                   the model at the end of the run
 *   metrics.csv                step,loss,lr,grad_norm,images_per_s,wall_s
 *   *.tmp.<pid>                files being written (removed at start-up)
 * Only rank 0 calls these. */
#ifndef NCSN_RUNDIR_H
#define NCSN_RUNDIR_H

#include <stddef.h>

void rundir_prepare(const char *dir); /* mkdir -p, remove stale temporaries */
void rundir_ckpt_path(char *out, size_t cap, const char *dir, long step);
/* Steps of the checkpoints present, newest first; returns the count. */
int rundir_list_ckpts(const char *dir, long *steps, int cap);
/* Points latest.h5 at ckpt-<step>.h5 atomically. */
void rundir_set_latest(const char *dir, long step);
/* Deletes all but the `keep` newest checkpoints, never a milestone. */
void rundir_prune(const char *dir, int keep, const long *milestones, int n_milestones);

/* After a resume at `step`: drops the metrics rows of later steps (they
 * belong to the part of the interrupted run that is being redone). */
void rundir_trim_metrics(const char *dir, long step);

#endif
