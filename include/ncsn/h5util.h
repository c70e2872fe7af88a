/* h5util.h: small HDF5 helpers that validate at the border.
 *
 * Every reader checks that the object exists and has the expected class,
 * rank and shape, and on failure exits with status 2 and one line naming
 * the file, the dataset and what was expected. HDF5's own error stack
 * printing is turned off by h5_quiet(). */
#ifndef NCSN_H5UTIL_H
#define NCSN_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>

#define H5_MAX_RANK 8

void h5_quiet(void);
hid_t h5_open_read(const char *path);   /* dies with a message on failure */
hid_t h5_create(const char *path);      /* truncates */
int h5_exists(hid_t file, const char *name);

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
/* Reads a dataset of exactly these dims into buf as float32 (with conversion). */
void h5_read_exact(hid_t file, const char *path, const char *name, int rank, const hsize_t *dims,
                   hid_t mem_type, void *buf);

/* Writes a chunked dataset with the Fletcher32 checksum filter. */
void h5_write(hid_t loc, const char *name, hid_t mem_type, hid_t file_type, int rank,
              const hsize_t *dims, const void *data);
void h5_write_scalar_double(hid_t loc, const char *name, double v);

void h5_attr_write_int(hid_t obj, const char *name, int n, const int *v);
void h5_attr_write_double(hid_t obj, const char *name, int n, const double *v);
void h5_attr_write_str(hid_t obj, const char *name, const char *s);
/* 1 when found (n values of any integer/float type converted), 0 when absent.
 * Dies when present with another count. */
int h5_attr_read_int(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                     int *v);
int h5_attr_read_double(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                        double *v);
/* Reads a string attribute into buf (empty string when absent). */
int h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap);

#endif
