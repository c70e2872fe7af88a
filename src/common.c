/* common.c: the failure paths behind CHECK and friends, and the clock. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/common.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int g_rank = 0;
static int g_collective = 0;
static char **g_cleanup = NULL; /* files to delete on an error exit */
static int g_ncleanup = 0, g_cleanup_cap = 0;

void ncsn_set_rank(int rank) { g_rank = rank; }
void ncsn_set_collective(int on) { g_collective = on; }

void ncsn_cleanup_on_error(const char *path)
{
    if (g_ncleanup == g_cleanup_cap) {
        int cap = g_cleanup_cap ? 2 * g_cleanup_cap : 4;
        char **grown = realloc(g_cleanup, (size_t)cap * sizeof *grown);
        if (!grown) ncsn_fail(__FILE__, __LINE__, "out of memory noting %s", path);
        g_cleanup = grown;
        g_cleanup_cap = cap;
    }
    char *copy = strdup(path);
    if (!copy) ncsn_fail(__FILE__, __LINE__, "out of memory noting %s", path);
    g_cleanup[g_ncleanup++] = copy;
}

void ncsn_cleanup_done(void)
{
    for (int i = 0; i < g_ncleanup; i++) free(g_cleanup[i]);
    g_ncleanup = 0;
}

static void run_cleanup(void)
{
    for (int i = 0; i < g_ncleanup; i++) unlink(g_cleanup[i]);
    ncsn_cleanup_done();
}

__attribute__((noreturn)) static void stop_job(int status)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    int size = 1;
    if (up && !down) MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (up && !down && size > 1) MPI_Abort(MPI_COMM_WORLD, status);
    /* Not exit(): HDF5's exit handler would flush the files still open,
     * and after a failed write (a full disk) it crashes doing so. */
    fflush(NULL);
    _exit(status);
}

void ncsn_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[rank %d] %s:%d: ", g_rank, file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    run_cleanup();
    stop_job(1);
}

void ncsn_die_usage(const char *fmt, ...)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    int together = g_collective && up && !down;
    if (!together || g_rank == 0) {
        va_list ap;
        va_start(ap, fmt);
        fputs("ncsn: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    run_cleanup();
    if (together) {
        MPI_Finalize();
        exit(NCSN_EXIT_USAGE);
    }
    stop_job(NCSN_EXIT_USAGE);
}

void *ncsn_xmalloc(size_t bytes, const char *file, int line)
{
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    /* 64-byte alignment for vector loads and to keep OpenBLAS happy. */
    if (posix_memalign(&p, 64, bytes) != 0) ncsn_fail(file, line, "out of memory (%zu bytes)", bytes);
    return p;
}

void *ncsn_xcalloc(size_t count, size_t size, const char *file, int line)
{
    void *p = ncsn_xmalloc(count * size, file, line);
    memset(p, 0, count * size);
    return p;
}

int ncsn_check_output(const char *option, const char *path, char *err, size_t cap)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    struct stat st;
    int why = stat(dir, &st) != 0 ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : access(dir, W_OK | X_OK) != 0 ? errno : 0;
    if (why) {
        snprintf(err, cap, "%s %s: cannot write in directory %s: %s", option, path, dir, strerror(why));
        return -1;
    }
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(err, cap, "%s %s: cannot write: %s", option, path, strerror(EISDIR));
        return -1;
    }
    return 0;
}

double ncsn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
