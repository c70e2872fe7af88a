/* memcheck.c: see memcheck.h. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/memcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ncsn/common.h"

/* "123", "4G", "512M": bytes, or -1 when the text is not a size. */
static double parse_size(const char *text)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || !isfinite(v) || v < 0) return -1;
    const char *units = "KMGT";
    const char *u = *end ? strchr(units, *end) : NULL;
    if (*end && (!u || end[1])) return -1;
    if (u) v *= pow(1024.0, (double)(u - units + 1));
    return v;
}

/* The first number in a file, or -1 ("max", missing, unreadable). */
static double read_number(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    double v = -1;
    if (fscanf(f, "%lf", &v) != 1) v = -1;
    fclose(f);
    return v;
}

static double meminfo_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

double mem_available(char *src, size_t cap)
{
    const char *env = getenv("NCSN_MEMORY_LIMIT");
    if (env && *env) {
        double v = parse_size(env);
        if (v < 0) ncsn_die_usage("NCSN_MEMORY_LIMIT: expected bytes, optionally with K, M, G or T, got '%s'", env);
        snprintf(src, cap, "NCSN_MEMORY_LIMIT=%s", env);
        return v > 0 ? v : -1;
    }
    double best = meminfo_available();
    snprintf(src, cap, "MemAvailable in /proc/meminfo");
    /* cgroup v2, then v1: the limit less what the group already uses */
    static const char *const limits[][2] = {{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
                                            {"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                             "/sys/fs/cgroup/memory/memory.usage_in_bytes"}};
    for (int i = 0; i < 2; i++) {
        double lim = read_number(limits[i][0]), used = read_number(limits[i][1]);
        if (lim <= 0 || lim > 1e18 || used < 0) continue; /* "max", or v1's "unlimited" */
        if (best < 0 || lim - used < best) {
            best = lim - used > 0 ? lim - used : 0;
            snprintf(src, cap, "the limit in %s less the usage in %s", limits[i][0], limits[i][1]);
        }
        break;
    }
    return best;
}

static void human(char *buf, size_t cap, double bytes)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    int i = 0;
    while (bytes >= 1024 && i < 5) {
        bytes /= 1024;
        i++;
    }
    snprintf(buf, cap, i == 0 ? "%.0f %s" : "%.1f %s", bytes, u[i]);
}

void mem_verdict(const char *cmd, const MemPart *parts, int n, int node_ranks, const char *advice,
                 char *why, size_t cap)
{
    why[0] = '\0';
    char src[512];
    double avail = mem_available(src, sizeof src);
    double total = 0;
    for (int i = 0; i < n; i++) total += parts[i].bytes;
    if (avail < 0 || total * node_ranks <= avail) return;
    char a[32], b[32], c[32];
    human(a, sizeof a, total);
    human(b, sizeof b, total * node_ranks);
    human(c, sizeof c, avail);
    size_t k = (size_t)snprintf(why, cap, "%s needs about %s per rank (", cmd, a);
    for (int i = 0, shown = 0; i < n && k < cap; i++) {
        if (parts[i].bytes <= 0) continue;
        human(a, sizeof a, parts[i].bytes);
        k += (size_t)snprintf(why + k, cap - k, "%s%s %s", shown++ ? ", " : "", parts[i].what, a);
    }
    if (k < cap)
        snprintf(why + k, cap - k, ") x %d rank%s on this node = %s, more than the %s available (%s); %s, "
                 "or set NCSN_MEMORY_LIMIT to override", node_ranks, node_ranks > 1 ? "s" : "", b, c, src, advice);
}
