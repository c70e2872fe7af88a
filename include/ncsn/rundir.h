/* rundir.h: the files of a run directory.
 *
 *   ckpt-<step, 8 digits>.h5   complete training checkpoints
 *   latest.h5                  symlink to the newest complete checkpoint
 *   model.h5                   the model at the end of the run
 *   metrics.csv                step,loss,lr,grad_norm,images_per_s,wall_s
 *   samples/step-<step>.h5     with --sample-every: samples at that step
 *   samples/step-<step>.png    their grid picture
 *   samples/step-<step>.json   with --eval-data: the evaluation's numbers,
 *   samples/step-<step>.log    and its output
 *   eval.csv                   step,fd,fd_floor,classifier_score,classes_5pct,n_classes
 *   *.tmp.<pid>                files being written (removed at start-up)
 *   .lock                      "pid <pid> host <host>" of the ncsn train using it
 * Only rank 0 calls these. */
#ifndef NCSN_RUNDIR_H
#define NCSN_RUNDIR_H

#include <stddef.h>

/* The longest run directory name: its files' paths (DIR/ckpt-<step>.h5.tmp.<pid>,
 * ...) must fit the 4096-byte path buffers. */
#define RUNDIR_MAX_NAME 4000

void rundir_prepare(const char *dir); /* mkdir -p, remove stale temporaries */

/* For `ncsn train`: mkdir -p, lock DIR/.lock (flock, so the kernel lets go
 * however the process ends), write the holder's PID and host in it, then
 * remove stale temporaries. A file whose holder is gone (the lock is free
 * but names a process) is taken over with a line on stdout. Returns the
 * descriptor to keep open for the run's life, or -1 with one line in err:
 * another process holds the lock (naming its PID and host), the
 * directory cannot be created or written (with the OS reason), or its name
 * is longer than RUNDIR_MAX_NAME. */
int rundir_lock(const char *dir, char *err, size_t cap);
/* Removes DIR/.lock and lets go of it (nothing for fd < 0). */
void rundir_unlock(const char *dir, int fd);
void rundir_ckpt_path(char *out, size_t cap, const char *dir, long step);
/* Steps of the checkpoints present, newest first, in *steps (free it;
 * steps NULL: only counted); returns the count. */
int rundir_list_ckpts(const char *dir, long **steps);
int rundir_count_ckpts(const char *dir);
/* Points latest.h5 at ckpt-<step>.h5 atomically. */
void rundir_set_latest(const char *dir, long step);
/* Deletes all but the `keep` newest checkpoints, never a milestone. */
void rundir_prune(const char *dir, int keep, const long *milestones, int n_milestones);

/* At the start of a run (fresh: step 0, or resumed at `step`): rewrites the
 * CSV file `name` (metrics.csv, eval.csv) of the run directory as `header`
 * (without its newline) and the rows of steps <= step, in increasing step
 * order; later rows belong to the part of an interrupted run that is being
 * redone. Anything else is dropped: an old header, malformed lines, a last
 * line cut off by a crash (no newline), a repeated or out-of-order step.
 * The result is fsynced and renamed into place. A missing file is created
 * when `create`, else left alone. Returns the step of the last row kept,
 * -1 when there is none (or no file). */
long rundir_trim_csv(const char *dir, const char *name, const char *header, long step, int create);

/* dir/samples/step-<step, 8 digits>.<ext> */
void rundir_samples_path(char *out, size_t cap, const char *dir, long step, const char *ext);
/* Deletes the samples/step-<s>.* files of the steps s > step (after a
 * resume at step, like rundir_trim_csv). */
void rundir_drop_samples_after(const char *dir, long step);

#endif
