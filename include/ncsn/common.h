/* common.h: error checks, allocation and small shared types.
 *
 * Checks are always on. A failed check prints "[rank r] file:line: message"
 * and stops the whole job (MPI_Abort once MPI is up, exit otherwise).
 * User-facing input errors use ncsn_die_usage(), which exits with status 2
 * and one line that names the file, dataset or option. */
#ifndef NCSN_COMMON_H
#define NCSN_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define NCSN_EXIT_USAGE 2   /* bad input or option */
#define NCSN_EXIT_STOPPED 3 /* stopped by a signal, resumable */

void ncsn_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
void ncsn_die_usage(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* While on, every rank runs the same validation and meets the same usage
 * errors: ncsn_die_usage then prints once (rank 0) and all ranks finalize
 * MPI and exit 2 together. Off (the default), the rank that sees the error
 * prints it and aborts the job with status 2. */
void ncsn_set_collective(int on);

/* The rank shown in messages; set once MPI is up. */
void ncsn_set_rank(int rank);

/* Files to delete if we die on a usage error (so no partial output is left). */
void ncsn_cleanup_on_error(const char *path);
void ncsn_cleanup_done(void);

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) ncsn_fail(__FILE__, __LINE__, __VA_ARGS__);                                   \
    } while (0)

#define MPI_CHECK(call)                                                                            \
    do {                                                                                           \
        int mpi_rc_ = (call);                                                                      \
        if (mpi_rc_ != MPI_SUCCESS) ncsn_fail(__FILE__, __LINE__, "MPI error %d in %s", mpi_rc_, #call); \
    } while (0)

#define H5_CHECK(call)                                                                             \
    do {                                                                                           \
        if ((call) < 0) ncsn_fail(__FILE__, __LINE__, "HDF5 call failed: %s", #call);              \
    } while (0)

void *ncsn_xmalloc(size_t bytes, const char *file, int line);
void *ncsn_xcalloc(size_t count, size_t size, const char *file, int line);
#define xmalloc(bytes) ncsn_xmalloc((bytes), __FILE__, __LINE__)
#define xcalloc(count, size) ncsn_xcalloc((count), (size), __FILE__, __LINE__)

/* Whether the file `path` can be written (its directory exists and admits
 * writing, and path is not a directory), tested without writing anything:
 * 0, or -1 with "OPTION PATH: cannot write ...: <OS reason>" in err. */
int ncsn_check_output(const char *option, const char *path, char *err, size_t cap);

/* Monotonic wall clock in seconds. */
double ncsn_now(void);

#endif
