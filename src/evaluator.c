/* evaluator.c: see evaluator.h. The script runs as a child process
 * (posix_spawn, which does not copy the MPI process's memory the way fork
 * does) with its output in a file, and the training waits for it. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/evaluator.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ncsn/common.h"

#ifndef NCSN_SCRIPTS_DIR
#define NCSN_SCRIPTS_DIR "scripts"
#endif
#ifndef NCSN_SCRIPTS_REL
#define NCSN_SCRIPTS_REL "../share/ncsn-mpi/scripts"
#endif

extern char **environ;

/* Starts argv with stdin from /dev/null and stdout and stderr to out_fd;
 * returns its pid, or -1 with errno set. */
static pid_t spawn_to(char *const argv[], int out_fd, int close_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    if (close_fd >= 0) posix_spawn_file_actions_addclose(&fa, close_fd);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return pid;
}

/* "exit status N" or "killed by signal N" for a wait status. */
static void describe_status(int status, char *out, size_t cap)
{
    if (WIFEXITED(status)) snprintf(out, cap, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
    else snprintf(out, cap, "wait status %d", status);
}

static int wait_for(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return status;
}

/* Output kept of a checking command (`--help`, an import): what is
 * searched or shown is in its first lines. */
#define CAPTURE_BYTES 65536

/* Runs argv and collects up to cap - 1 bytes of its output in out; returns
 * the wait status, or -1 when it could not start (errno set). */
static int capture(char *const argv[], char *out, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = spawn_to(argv, fds[1], fds[0]);
    int err = errno;
    close(fds[1]);
    size_t n = 0;
    if (pid > 0) {
        char chunk[4096];
        ssize_t k;
        while ((k = read(fds[0], chunk, sizeof chunk)) != 0) { /* to the end, so the child never blocks */
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) break;
            size_t take = (size_t)k < cap - 1 - n ? (size_t)k : cap - 1 - n;
            memcpy(out + n, chunk, take);
            n += take;
        }
    }
    out[n] = '\0';
    close(fds[0]);
    if (pid < 0) {
        errno = err;
        return -1;
    }
    return wait_for(pid);
}

/* The last non-empty line of a text, for messages. */
static const char *last_line(char *text)
{
    size_t n = strlen(text);
    while (n > 0 && isspace((unsigned char)text[n - 1])) text[--n] = '\0';
    char *nl = strrchr(text, '\n');
    return nl ? nl + 1 : text;
}

/* path = ncsn_eval.py in NCSN_SCRIPTS_REL from the executable's directory
 * when it is there (an installed ncsn), else in the source tree's scripts/. */
static void default_script(char *path, size_t cap)
{
    char exe[4096];
    struct stat st;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = NULL;
    if (n > 0) {
        exe[n] = '\0';
        slash = strrchr(exe, '/');
    }
    if (slash) {
        *slash = '\0';
        snprintf(path, cap, "%s/%s/ncsn_eval.py", exe, NCSN_SCRIPTS_REL);
        if (stat(path, &st) == 0) return;
    }
    snprintf(path, cap, "%s/ncsn_eval.py", NCSN_SCRIPTS_DIR);
}

int evaluator_init(Evaluator *e, const char *eval_data, const char *train_data, const char *dataset,
                   char *err, size_t cap)
{
    memset(e, 0, sizeof *e);
    e->eval_data = eval_data;
    e->train_data = train_data;
    e->dataset = dataset;
    const char *py = getenv("NCSN_PYTHON"), *dir = getenv("NCSN_SCRIPTS");
    snprintf(e->python, sizeof e->python, "%s", py && *py ? py : "/usr/bin/python3");
    if (dir && *dir) snprintf(e->script, sizeof e->script, "%s/ncsn_eval.py", dir);
    else default_script(e->script, sizeof e->script);
    const char *where = dir && *dir ? "$NCSN_SCRIPTS" : "the installed or the build's scripts directory; set "
                                                        "NCSN_SCRIPTS to another";
    struct stat st;
    if (stat(e->script, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, cap, "--eval-data: the evaluation script %s does not exist (%s)", e->script, where);
        return -1;
    }
    char *out = xmalloc(CAPTURE_BYTES), how[64];
    int rc = -1;
    char *help[] = {e->python, e->script, "--help", NULL};
    int status = capture(help, out, CAPTURE_BYTES);
    if (status < 0) {
        snprintf(err, cap, "--eval-data: cannot run the interpreter %s: %s (set NCSN_PYTHON to a Python 3)",
                 e->python, strerror(errno));
    } else if (status != 0) {
        describe_status(status, how, sizeof how);
        snprintf(err, cap, "--eval-data: `%s %s --help` failed (%s): %s", e->python, e->script, how,
                 last_line(out));
    } else if (!strstr(out, "--fd") || !strstr(out, "--train-data") || !strstr(out, "--json")) {
        snprintf(err, cap, "--eval-data: %s does not offer --fd, --train-data and --json (an older "
                 "ncsn_eval.py?)", e->script);
    } else {
        char *imports[] = {e->python, "-c", "import numpy, h5py, torch", NULL};
        status = capture(imports, out, CAPTURE_BYTES);
        if (status != 0) {
            describe_status(status, how, sizeof how);
            snprintf(err, cap, "--eval-data: %s cannot import numpy, h5py and torch, which ncsn_eval.py --fd "
                     "needs (%s): %s", e->python, status < 0 ? strerror(errno) : how, last_line(out));
        } else {
            rc = 0;
        }
    }
    free(out);
    return rc;
}

int json_number(const char *text, const char *key, double *v)
{
    char quoted[256];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    size_t len = strlen(quoted);
    for (const char *p = strstr(text, quoted); p; p = strstr(p + 1, quoted)) {
        const char *q = p + len;
        while (isspace((unsigned char)*q)) q++;
        if (*q != ':') continue; /* the key's text as a value, not a key */
        q++;
        while (isspace((unsigned char)*q)) q++;
        if (!(*q == '-' || isdigit((unsigned char)*q))) return 0; /* null, a string, a list */
        char *end;
        double x = strtod(q, &end);
        if (end == q) return 0;
        *v = x;
        return 1;
    }
    return 0;
}

/* Reads a whole small file into a string (NULL when unreadable). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *s = xmalloc(cap);
    size_t k;
    while ((k = fread(s + n, 1, cap - 1 - n, f)) > 0) {
        n += k;
        if (n == cap - 1) {
            char *t = xmalloc(cap * 2);
            memcpy(t, s, n);
            free(s);
            s = t;
            cap *= 2;
        }
    }
    s[n] = '\0';
    fclose(f);
    return s;
}

int evaluator_run(const Evaluator *e, const char *samples, const char *json, const char *log,
                  EvalNumbers *r, char *err, size_t cap)
{
    unlink(json); /* never read an older evaluation's numbers */
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        snprintf(err, cap, "cannot write %s: %s", log, strerror(errno));
        return -1;
    }
    char *argv[] = {(char *)e->python, (char *)e->script, (char *)samples, "--data", (char *)e->eval_data,
                    "--dataset", (char *)e->dataset, "--fd", "--train-data", (char *)e->train_data,
                    "--json", (char *)json, NULL};
    pid_t pid = spawn_to(argv, fd, -1);
    int spawn_errno = errno;
    close(fd);
    if (pid < 0) {
        snprintf(err, cap, "cannot run %s: %s", e->python, strerror(spawn_errno));
        return -1;
    }
    int status = wait_for(pid);
    if (status != 0) {
        char how[64];
        describe_status(status, how, sizeof how);
        snprintf(err, cap, "%s failed (%s); its output is in %s", e->script, how, log);
        return -1;
    }
    char *text = read_text(json);
    if (!text) {
        snprintf(err, cap, "%s exited with status 0 but wrote no %s", e->script, json);
        return -1;
    }
    static const char *keys[5] = {"fd", "fd_real", "fd_score", "fd_coverage", "fd_n_classes"};
    double *into[5] = {&r->fd, &r->fd_floor, &r->score, &r->coverage, &r->n_classes};
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++)
        if (!json_number(text, keys[i], into[i])) {
            snprintf(err, cap, "%s: no number \"%s\"", json, keys[i]);
            rc = -1;
        }
    free(text);
    return rc;
}
