/* atomic_file.h: files that appear under their final name only complete.
 *
 * A writer fills FINAL.tmp.PID (h5_temp_name); file_commit fsyncs it,
 * renames it to FINAL and fsyncs the directory, so after a crash FINAL is
 * either the old file or the whole new one. A temporary left by a process
 * that died is removed by the next run's rundir_prepare/rundir_lock. */
#ifndef NCSN_ATOMIC_FILE_H
#define NCSN_ATOMIC_FILE_H

#include <hdf5.h>

/* fsync of a directory, so that a rename or unlink in it is on disk. */
void dir_sync(const char *dir);
/* fsync `tmp`, rename it to `final`, fsync final's directory; dies
 * naming the file and the OS reason when that fails. */
void file_commit(const char *tmp, const char *final);

/* An HDF5 file written atomically: created as PATH.tmp.PID (removed if the
 * program dies on an error first), visible under PATH only once
 * atomic_h5_commit has closed, fsynced and renamed it. */
typedef struct {
    hid_t file;
    char path[4096], tmp[4200];
} AtomicH5;
hid_t atomic_h5_begin(AtomicH5 *a, const char *path);
void atomic_h5_commit(AtomicH5 *a);

#endif
