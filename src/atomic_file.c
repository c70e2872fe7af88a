/* atomic_file.c: see atomic_file.h. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/common.h"
#include "ncsn/h5util.h"

void dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

void file_commit(const char *tmp, const char *final)
{
    int fd = open(tmp, O_RDONLY);
    CHECK(fd >= 0, "%s: cannot reopen to sync: %s", tmp, strerror(errno));
    CHECK(fsync(fd) == 0, "%s: cannot write (fsync of %s): %s", final, tmp, strerror(errno));
    close(fd);
    CHECK(rename(tmp, final) == 0, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", final);
    dir_sync(dirname(dir));
}

hid_t atomic_h5_begin(AtomicH5 *a, const char *path)
{
    snprintf(a->path, sizeof a->path, "%s", path);
    h5_temp_name(path, a->tmp, sizeof a->tmp);
    ncsn_cleanup_on_error(a->tmp);
    a->file = h5_create(a->tmp);
    return a->file;
}

void atomic_h5_commit(AtomicH5 *a)
{
    h5_close_written(a->file);
    file_commit(a->tmp, a->path);
    ncsn_cleanup_done();
}
