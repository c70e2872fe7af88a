/* rundir.c: see rundir.h. */
#define _DEFAULT_SOURCE /* flock */
#include "ncsn/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ncsn/atomic_file.h"
#include "ncsn/common.h"

/* mkdir -p; 0, or -1 with the OS reason in err. */
static int make_dirs(const char *dir, char *err, size_t cap)
{
    char buf[4096];
    if (!dir[0]) {
        snprintf(err, cap, "an empty directory name");
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        int last = *p == '\0';
        if (*p != '/' && !last) continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            snprintf(err, cap, "cannot create directory %s: %s", buf, strerror(errno));
            return -1;
        }
        if (last) break;
        *p = '/';
    }
    struct stat st;
    int why = stat(dir, &st) != 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
    if (why) snprintf(err, cap, "%s: %s", dir, strerror(why));
    return why ? -1 : 0;
}

/* Deletes the DIR/...tmp.<pid> files being written when a run died. 0, or -1 with the reason in err. */
static int remove_temporaries(const char *dir, char *err, size_t cap)
{
    char buf[4400];
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, cap, "%s: cannot open directory: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".tmp.")) continue;
        snprintf(buf, sizeof buf, "%s/%s", dir, e->d_name);
        unlink(buf);
    }
    closedir(d);
    return 0;
}

void rundir_prepare(const char *dir)
{
    char err[4400];
    if (make_dirs(dir, err, sizeof err) != 0 || remove_temporaries(dir, err, sizeof err) != 0)
        ncsn_die_usage("%s", err);
}

/* Under the lock: says when the file named a holder that is gone, then
 * names this process in it. 0, or -1 with err. */
static int take_lock_file(int fd, const char *path, char *err, size_t cap)
{
    char held[512] = "", who[256] = "?", host[256] = "?", line[512];
    long pid = 0;
    ssize_t got = pread(fd, held, sizeof held - 1, 0);
    held[got > 0 ? got : 0] = '\0';
    if (sscanf(held, "pid %ld host %255s", &pid, who) == 2) {
        printf("taking over %s: its holder (PID %ld on host %s) is gone\n", path, pid, who);
        fflush(stdout);
    }
    gethostname(host, sizeof host - 1);
    int n = snprintf(line, sizeof line, "pid %ld host %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n || fsync(fd) != 0) {
        snprintf(err, cap, "%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* flock, not fcntl: an fcntl lock is dropped when the process closes any
 * descriptor of the file, a flock lock only with its own descriptor (or the
 * process). The descriptor is close-on-exec so the evaluation scripts rank 0
 * starts do not inherit it. The file is unlinked on release; a starter that
 * locked a file just unlinked finds its inode gone from the path and tries
 * again, so two runs never hold two different files. */
int rundir_lock(const char *dir, char *err, size_t cap)
{
    char path[4200], why[4400];
    if (strlen(dir) > RUNDIR_MAX_NAME) {
        snprintf(err, cap, "--run-dir %.64s...: names of more than %d characters are not supported", dir,
                 RUNDIR_MAX_NAME);
        return -1;
    }
    if (make_dirs(dir, why, sizeof why) != 0) {
        snprintf(err, cap, "--run-dir %s: %s", dir, why);
        return -1;
    }
    snprintf(path, sizeof path, "%s/.lock", dir);
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, cap, "%s: cannot write in the run directory: %s", path, strerror(errno));
            return -1;
        }
        char held[512] = "";
        ssize_t got = pread(fd, held, sizeof held - 1, 0);
        held[got > 0 ? got : 0] = '\0';
        long pid = 0;
        char who[256] = "?";
        int named = sscanf(held, "pid %ld host %255s", &pid, who) == 2;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int why = errno;
            close(fd);
            if (why != EWOULDBLOCK) {
                snprintf(err, cap, "%s: cannot lock: %s", path, strerror(why));
                return -1;
            }
            if (named)
                snprintf(err, cap, "--run-dir %s is in use by another ncsn train (PID %ld on host %s, %s); "
                         "wait for it to end or use another --run-dir", dir, pid, who, path);
            else
                snprintf(err, cap, "--run-dir %s is in use by another ncsn train (%s is locked)", dir, path);
            return -1;
        }
        struct stat mine, now;
        if (fstat(fd, &mine) != 0 || stat(path, &now) != 0 || mine.st_ino != now.st_ino || mine.st_dev != now.st_dev) {
            close(fd); /* released and unlinked meanwhile: take the new file */
            continue;
        }
        /* Read again under the lock: the first read may have raced a release. */
        if (take_lock_file(fd, path, err, cap) != 0) {
            close(fd);
            return -1;
        }
        if (remove_temporaries(dir, err, cap) != 0) {
            rundir_unlock(dir, fd);
            return -1;
        }
        return fd;
    }
    snprintf(err, cap, "%s: the lock file keeps being replaced; is another ncsn train starting?", path);
    return -1;
}

void rundir_unlock(const char *dir, int fd)
{
    if (fd < 0) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", dir);
    unlink(path);
    close(fd);
}

void rundir_ckpt_path(char *out, size_t cap, const char *dir, long step)
{
    snprintf(out, cap, "%s/ckpt-%08ld.h5", dir, step);
}

static int cmp_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int rundir_list_ckpts(const char *dir, long **steps)
{
    long *v = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long step;
        char tail[8];
        if (sscanf(e->d_name, "ckpt-%ld.h%7s", &step, tail) != 2 || strcmp(tail, "5") != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            long *grown = realloc(v, (size_t)cap * sizeof *v);
            CHECK(grown, "out of memory listing the checkpoints of %s", dir);
            v = grown;
        }
        v[n++] = step;
    }
    if (d) closedir(d);
    if (n > 0) qsort(v, (size_t)n, sizeof *v, cmp_desc);
    if (steps) *steps = v;
    else free(v);
    return n;
}

int rundir_count_ckpts(const char *dir) { return rundir_list_ckpts(dir, NULL); }

void rundir_set_latest(const char *dir, long step)
{
    char target[64], tmp[4096], link[4096];
    snprintf(target, sizeof target, "ckpt-%08ld.h5", step);
    snprintf(tmp, sizeof tmp, "%s/latest.h5.tmp.%d", dir, (int)getpid());
    snprintf(link, sizeof link, "%s/latest.h5", dir);
    unlink(tmp);
    CHECK(symlink(target, tmp) == 0, "cannot create symlink %s: %s", tmp, strerror(errno));
    CHECK(rename(tmp, link) == 0, "cannot rename %s to %s: %s", tmp, link, strerror(errno));
    dir_sync(dir);
}

void rundir_prune(const char *dir, int keep, const long *milestones, int n_milestones)
{
    long *steps = NULL;
    int n = rundir_list_ckpts(dir, &steps);
    for (int i = keep; i < n; i++) {
        int milestone = 0;
        for (int k = 0; k < n_milestones; k++) milestone |= milestones[k] == steps[i];
        if (milestone) continue;
        char path[4096];
        rundir_ckpt_path(path, sizeof path, dir, steps[i]);
        unlink(path);
    }
    free(steps);
}

/* A row: an integer step, a comma, and the line's newline (a line cut off
 * by a crash has none). Returns 1 with the step in *step. */
static int csv_row(const char *line, ssize_t len, long *step)
{
    char *end;
    errno = 0;
    *step = strtol(line, &end, 10);
    return len > 0 && line[len - 1] == '\n' && end != line && *end == ',' && errno == 0;
}

long rundir_trim_csv(const char *dir, const char *name, const char *header, long step, int create)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *in = fopen(path, "r");
    if (!in && !create) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *out = fopen(tmp, "w");
    CHECK(out, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(out, "%s\n", header);
    long last = -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (in && (len = getline(&line, &cap, in)) > 0) {
        long s;
        if (csv_row(line, len, &s) && s > last && s <= step) {
            fputs(line, out);
            last = s;
        }
    }
    free(line);
    if (in) fclose(in);
    CHECK(fflush(out) == 0 && fsync(fileno(out)) == 0, "%s: write failed: %s", tmp, strerror(errno));
    CHECK(fclose(out) == 0, "%s: write failed: %s", tmp, strerror(errno));
    CHECK(rename(tmp, path) == 0, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    return last;
}

void rundir_samples_path(char *out, size_t cap, const char *dir, long step, const char *ext)
{
    snprintf(out, cap, "%s/samples/step-%08ld.%s", dir, step, ext);
}

void rundir_drop_samples_after(const char *dir, long step)
{
    char sdir[4096], path[4400];
    snprintf(sdir, sizeof sdir, "%s/samples", dir);
    DIR *d = opendir(sdir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s;
        int end = 0;
        if (sscanf(e->d_name, "step-%ld.%n", &s, &end) == 1 && end > 0 && s > step) {
            snprintf(path, sizeof path, "%s/%s", sdir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}
