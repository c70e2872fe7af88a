/* progress.c: metrics.csv and the progress lines of `ncsn train` (progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/progress.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "ncsn/common.h"

void progress_say(int rank, const char *fmt, ...)
{
    if (rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

void progress_open(Progress *p, int rank, const char *run_dir, long total, long log_every)
{
    memset(p, 0, sizeof *p);
    p->run_dir = run_dir;
    p->total = total;
    p->every = log_every > 0 ? log_every : (total / 20 > 0 ? total / 20 : 1);
    if (rank != 0) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.csv", run_dir);
    p->metrics = fopen(path, "a");
    CHECK(p->metrics, "%s: cannot open for appending: %s", path, strerror(errno));
    p->tty = isatty(STDERR_FILENO);
}

void progress_start(Progress *p, long start)
{
    p->t_start = ncsn_now();
    p->step_start = start;
}

static void draw_bar(const Progress *p, long step, double loss, double ips, double eta)
{
    int width = 30, fill = p->total > 0 ? (int)(width * step / p->total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] step %ld/%ld loss %.4f %.1f img/s ETA %.0fs ", bar, step, p->total, loss, ips, eta);
    if (step == p->total) fputc('\n', stderr);
}

void progress_step(Progress *p, long step, double loss, double lr, double gnorm, double ips)
{
    if (!p->metrics) return;
    double now = ncsn_now();
    fprintf(p->metrics, "%ld,%.9g,%.6g,%.6g,%.2f,%.3f\n", step, loss, lr, gnorm, ips, now - p->t_start);
    long total = p->total, done = step - p->step_start, left = total - step;
    double per_step = done > 0 ? (now - p->t_start) / (double)done : 0.0;
    double eta = per_step * (double)left;
    if (p->tty) draw_bar(p, step, loss, ips, eta);
    if (!p->tty && (step % p->every == 0 || step == total || done == 1)) {
        printf("step %ld/%ld loss %.5f lr %.3g grad_norm %.4g %.1f img/s ETA %.0fs\n", step, total, loss,
               lr, gnorm, ips, eta);
        fflush(stdout);
    }
    if (step % p->every == 0 || step == total) fflush(p->metrics);
}

void progress_sync(Progress *p)
{
    if (p->metrics)
        CHECK(fflush(p->metrics) == 0 && fsync(fileno(p->metrics)) == 0, "%s/metrics.csv: write failed: %s",
              p->run_dir, strerror(errno));
}

void progress_close(Progress *p)
{
    if (p->metrics) fclose(p->metrics);
    p->metrics = NULL;
}
