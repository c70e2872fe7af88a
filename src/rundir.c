/* rundir.c: see rundir.h. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ncsn/common.h"

void rundir_prepare(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        ncsn_die_usage("--run-dir %s: cannot create directory", dir);
    DIR *d = opendir(dir);
    if (!d) ncsn_die_usage("--run-dir %s: cannot open directory", dir);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strstr(e->d_name, ".tmp.")) continue;
        snprintf(buf, sizeof buf, "%s/%s", dir, e->d_name);
        unlink(buf);
    }
    closedir(d);
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

int rundir_list_ckpts(const char *dir, long *steps, int cap)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        long step;
        char tail[8];
        if (sscanf(e->d_name, "ckpt-%ld.h%7s", &step, tail) == 2 && strcmp(tail, "5") == 0)
            steps[n++] = step;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof *steps, cmp_desc);
    return n;
}

void rundir_set_latest(const char *dir, long step)
{
    char target[64], tmp[4096], link[4096];
    snprintf(target, sizeof target, "ckpt-%08ld.h5", step);
    snprintf(tmp, sizeof tmp, "%s/latest.h5.tmp.%d", dir, (int)getpid());
    snprintf(link, sizeof link, "%s/latest.h5", dir);
    unlink(tmp);
    CHECK(symlink(target, tmp) == 0, "cannot create symlink %s", tmp);
    CHECK(rename(tmp, link) == 0, "cannot rename %s to %s", tmp, link);
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

void rundir_prune(const char *dir, int keep, const long *milestones, int n_milestones)
{
    long steps[4096];
    int n = rundir_list_ckpts(dir, steps, 4096);
    for (int i = keep; i < n; i++) {
        int milestone = 0;
        for (int k = 0; k < n_milestones; k++) milestone |= milestones[k] == steps[i];
        if (milestone) continue;
        char path[4096];
        rundir_ckpt_path(path, sizeof path, dir, steps[i]);
        unlink(path);
    }
}

long rundir_trim_csv(const char *dir, const char *name, long step)
{
    char path[4096], tmp[4200], line[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *in = fopen(path, "r");
    if (!in) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *out = fopen(tmp, "w");
    CHECK(out, "%s: cannot write", tmp);
    long last = -1;
    while (fgets(line, sizeof line, in)) {
        char *end;
        long s = strtol(line, &end, 10);
        if (end == line) fputs(line, out); /* the header */
        else if (s <= step) fputs(line, out), last = s;
    }
    fclose(in);
    CHECK(fclose(out) == 0, "%s: write failed", tmp);
    CHECK(rename(tmp, path) == 0, "cannot rename %s to %s", tmp, path);
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
