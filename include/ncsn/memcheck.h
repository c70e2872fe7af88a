/* memcheck.h: will a run fit in memory?
 *
 * Training and sampling add up what each rank will allocate (MemPart list)
 * before they allocate it, and compare that, times the ranks sharing the
 * node, with what the node offers: MemAvailable of /proc/meminfo, or the
 * cgroup's limit minus its usage when that is smaller. NCSN_MEMORY_LIMIT
 * (bytes, or with a K, M, G or T suffix, powers of 1024) replaces that
 * figure, e.g. to allow more than the kernel reports free; 0 turns the
 * check off. */
#ifndef NCSN_MEMCHECK_H
#define NCSN_MEMCHECK_H

#include <stddef.h>

typedef struct {
    const char *what;
    double bytes;
} MemPart;

/* Bytes this node offers to the run (see above), with where the figure came
 * from in src; a negative value when the check is off or nothing is known. */
double mem_available(char *src, size_t cap);

/* Empty why when parts[n] x node_ranks fits; else a one-line message naming
 * the estimate, its largest parts, the limit and how to lower or override it.
 * `advice` names the options that shrink the estimate. */
void mem_verdict(const char *cmd, const MemPart *parts, int n, int node_ranks, const char *advice,
                 char *why, size_t cap);

#endif
