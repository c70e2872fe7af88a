/* h5util.h: small HDF5 helpers that validate at the border.
 *
 * Every reader checks that the object exists and has the expected class,
 * rank and shape; on failure the h5_try_ readers return -1 with one line
 * naming the file, the dataset and what was expected, and the others exit
 * with status 2 and that line. HDF5's own error stack printing is turned
 * off by h5_quiet(). */
#ifndef NCSN_H5UTIL_H
#define NCSN_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

#define H5_MAX_RANK 8

void h5_quiet(void);
/* Opens path read-only: the file id, or -1 with "PATH: why" in err (the
 * OS's reason when there is one: missing, unreadable, locked by a writer;
 * else not HDF5, or truncated or corrupt with HDF5's own words). */
hid_t h5_try_open_read(const char *path, char *err, size_t cap);
hid_t h5_open_read(const char *path);   /* the same, dying with exit 2 */
hid_t h5_create(const char *path);      /* truncates */
/* The temporary name FINAL.tmp.PID of a file that becomes FINAL once
 * complete; h5_fail reports write failures in it under FINAL. */
void h5_temp_name(const char *final, char *tmp, size_t cap);
/* Flushes everything to disk (h5_fail on an error) and closes. */
void h5_close_written(hid_t file);
int h5_exists(hid_t file, const char *name);

/* HDF5's reason for the call that just failed on this thread: the OS's
 * (strerror of the errno its file driver saw) when it recorded one, else
 * HDF5's innermost message, else "". Read it before any other HDF5 call,
 * which clears the error stack. Returns buf. */
const char *h5_reason(char *buf, size_t cap);
/* Dies (exit 1) with "FILE: cannot WHAT: REASON", FILE the file that obj
 * belongs to, WHAT from fmt. For failures while writing (disk full, I/O). */
void h5_fail(hid_t obj, const char *src, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define H5_CHECK_IN(obj, call, ...)                                                                \
    do {                                                                                           \
        if ((call) < 0) h5_fail((obj), __FILE__, __LINE__, __VA_ARGS__);                           \
    } while (0)

typedef struct {
    int rank;
    hsize_t dims[H5_MAX_RANK];
    H5T_class_t cls;
    size_t type_size;
    int is_signed;
} H5Info;

/* Dies (exit 2) when missing. */
H5Info h5_info(hid_t file, const char *path, const char *name);
/* Reads a whole float32 dataset of the given rank; dims filled in. */
float *h5_read_floats(hid_t file, const char *path, const char *name, int rank, hsize_t *dims);
/* Reads a whole integer dataset of rank 1 as int. */
int *h5_read_ints(hid_t file, const char *path, const char *name, hsize_t *n);
/* Reads a numeric dataset of exactly these dims into buf as mem_type
 * (with conversion): 0, or -1 with "PATH: dataset NAME is missing / has
 * shape [..], expected [..] / cannot read ...: why" in err. */
int h5_try_read_exact(hid_t file, const char *path, const char *name, int rank, const hsize_t *dims,
                      hid_t mem_type, void *buf, char *err, size_t cap);
/* The same, dying with exit 2 and that message. */
void h5_read_exact(hid_t file, const char *path, const char *name, int rank, const hsize_t *dims,
                   hid_t mem_type, void *buf);

/* Writes a chunked dataset with the Fletcher32 checksum filter. */
void h5_write(hid_t loc, const char *name, hid_t mem_type, hid_t file_type, int rank,
              const hsize_t *dims, const void *data);
void h5_write_scalar_double(hid_t loc, const char *name, double v);

/* n values (n = 1: a scalar) of mem_type, stored as file_type; replaces an
 * attribute of that name. */
void h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, int n, const void *v);
void h5_attr_write_int(hid_t obj, const char *name, int n, const int *v);
void h5_attr_write_double(hid_t obj, const char *name, int n, const double *v);
void h5_attr_write_str(hid_t obj, const char *name, const char *s);
/* 1 when found (n values of any integer/float type read as mem_type), 0
 * when absent, -1 with err when present with another count or not numeric. */
int h5_attr_try_read(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                     hid_t mem_type, void *v, char *err, size_t cap);
/* The same as int or double, dying with exit 2 instead of returning -1. */
int h5_attr_read_int(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                     int *v);
int h5_attr_read_double(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                        double *v);
/* Reads a string attribute into buf (empty string when absent). */
int h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap);

#endif
