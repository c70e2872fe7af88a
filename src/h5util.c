/* h5util.c: see h5util.h. */
#define _POSIX_C_SOURCE 200809L
#include "ncsn/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ncsn/common.h"

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* What HDF5's error stack says about the last failure: the errno its file
 * driver recorded ("..., errno = 28, error message = '...'"), and the
 * message of the innermost frame. */
typedef struct {
    int err;
    char innermost[512];
} H5Why;

static herr_t why_walk(unsigned n, const H5E_error2_t *e, void *data)
{
    H5Why *w = data;
    if (!e->desc) return 0;
    if (n == 0) snprintf(w->innermost, sizeof w->innermost, "%s", e->desc);
    const char *p = strstr(e->desc, "errno = ");
    if (p && w->err == 0) w->err = atoi(p + 8);
    return 0;
}

static H5Why why_now(void)
{
    H5Why w = {0, ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, why_walk, &w);
    return w;
}

const char *h5_reason(char *buf, size_t cap)
{
    H5Why w = why_now();
    snprintf(buf, cap, "%s", w.err > 0 ? strerror(w.err) : w.innermost);
    return buf;
}

/* A file's name for messages: FINAL (its temporary FINAL.tmp.PID) for
 * h5_temp_name's names, else the name. */
static const char *shown_name(const char *name, char *buf, size_t cap)
{
    const char *dot = strrchr(name, '.');
    size_t k = dot ? (size_t)(dot - name) : 0;
    int temp = dot && dot[1] && k >= 4 && strncmp(dot - 4, ".tmp", 4) == 0;
    for (const char *p = dot ? dot + 1 : ""; temp && *p; p++) temp = *p >= '0' && *p <= '9';
    if (temp) snprintf(buf, cap, "%.*s (its temporary %s)", (int)(k - 4), name, name);
    else snprintf(buf, cap, "%s", name);
    return buf;
}

void h5_fail(hid_t obj, const char *src, int line, const char *fmt, ...)
{
    char why[512], what[1024], name[4096] = "(an HDF5 file)", shown[8300];
    h5_reason(why, sizeof why); /* first: any other call clears the stack */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Fget_name(obj, name, sizeof name);
    char group[1024] = "";
    if (H5Iget_type(obj) == H5I_GROUP && H5Iget_name(obj, group, sizeof group) > 1) /* not the root */
        snprintf(what + strlen(what), sizeof what - strlen(what), " in %s", group);
    ncsn_fail(src, line, "%s: cannot %s: %s", shown_name(name, shown, sizeof shown), what,
              why[0] ? why : "HDF5 gave no reason");
}

hid_t h5_try_open_read(const char *path, char *err, size_t cap)
{
    struct stat st;
    int fd = -1;
    int os = stat(path, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : (fd = open(path, O_RDONLY)) < 0 ? errno : 0;
    if (fd >= 0) close(fd);
    if (os) {
        snprintf(err, cap, "%s: cannot open file: %s", path, strerror(os));
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(err, cap, "%s: not an HDF5 file", path);
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file >= 0) return file;
    H5Why w = why_now();
    if (w.err == EWOULDBLOCK || w.err == EAGAIN)
        snprintf(err, cap, "%s: cannot open: locked by a program that writes it (%s); if none does, set "
                 "HDF5_USE_FILE_LOCKING=FALSE", path, strerror(w.err));
    else if (w.err > 0)
        snprintf(err, cap, "%s: cannot open: %s", path, strerror(w.err));
    else
        snprintf(err, cap, "%s: truncated or corrupt HDF5 file (%s)", path, w.innermost);
    return -1;
}

hid_t h5_open_read(const char *path)
{
    char err[8192];
    hid_t file = h5_try_open_read(path, err, sizeof err);
    if (file < 0) ncsn_die_usage("%s", err);
    return file;
}

hid_t h5_create(const char *path)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        char why[512], shown[8300];
        h5_reason(why, sizeof why);
        ncsn_die_usage("%s: cannot create file: %s", shown_name(path, shown, sizeof shown), why);
    }
    return file;
}

void h5_temp_name(const char *final, char *tmp, size_t cap)
{
    snprintf(tmp, cap, "%s.tmp.%d", final, (int)getpid());
}

void h5_close_written(hid_t file)
{
    H5_CHECK_IN(file, H5Fflush(file, H5F_SCOPE_GLOBAL), "write");
    char name[4096] = "", why[512];
    H5Fget_name(file, name, sizeof name);
    if (H5Fclose(file) < 0) ncsn_fail(__FILE__, __LINE__, "%s: cannot close: %s", name, h5_reason(why, sizeof why));
}

int h5_exists(hid_t file, const char *name)
{
    /* H5Lexists fails on a missing intermediate group; walk the path. */
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", name);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (H5Lexists(file, buf, H5P_DEFAULT) <= 0) return 0;
        *p = '/';
    }
    return H5Lexists(file, buf, H5P_DEFAULT) > 0;
}

H5Info h5_info(hid_t file, const char *path, const char *name)
{
    H5Info info;
    memset(&info, 0, sizeof info);
    if (!h5_exists(file, name)) ncsn_die_usage("%s: dataset %s is missing", path, name);
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) ncsn_die_usage("%s: %s is not a dataset", path, name);
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    info.rank = H5Sget_simple_extent_ndims(sp);
    if (info.rank > H5_MAX_RANK) ncsn_die_usage("%s: dataset %s has rank %d (too many)", path, name, info.rank);
    H5Sget_simple_extent_dims(sp, info.dims, NULL);
    info.cls = H5Tget_class(ty);
    info.type_size = H5Tget_size(ty);
    info.is_signed = info.cls == H5T_INTEGER ? H5Tget_sign(ty) == H5T_SGN_2 : 1;
    H5Tclose(ty);
    H5Sclose(sp);
    H5Dclose(ds);
    return info;
}

static void shape_text(char *buf, size_t cap, int rank, const hsize_t *dims)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

int h5_try_read_exact(hid_t file, const char *path, const char *name, int rank, const hsize_t *dims,
                      hid_t mem_type, void *buf, char *err, size_t cap)
{
    if (!h5_exists(file, name)) {
        snprintf(err, cap, "%s: dataset %s is missing", path, name);
        return -1;
    }
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(err, cap, "%s: %s is not a dataset", path, name);
        return -1;
    }
    hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(ty);
    int got_rank = H5Sget_simple_extent_ndims(sp);
    hsize_t got[H5_MAX_RANK];
    int fits = got_rank >= 0 && got_rank <= H5_MAX_RANK;
    if (fits) H5Sget_simple_extent_dims(sp, got, NULL);
    H5Tclose(ty);
    H5Sclose(sp);
    int same = fits && got_rank == rank;
    for (int i = 0; same && i < rank; i++) same = got[i] == dims[i];
    int rc = -1;
    char want[128], have[128], why[512];
    if (!fits) {
        snprintf(err, cap, "%s: dataset %s has rank %d, expected %d", path, name, got_rank, rank);
    } else if (!same) {
        shape_text(want, sizeof want, rank, dims);
        shape_text(have, sizeof have, got_rank, got);
        snprintf(err, cap, "%s: dataset %s has shape %s, expected %s", path, name, have, want);
    } else if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
        snprintf(err, cap, "%s: dataset %s is not numeric", path, name);
    } else if (H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        snprintf(err, cap, "%s: cannot read dataset %s: %s", path, name, h5_reason(why, sizeof why));
    } else {
        rc = 0;
    }
    H5Dclose(ds);
    return rc;
}

void h5_read_exact(hid_t file, const char *path, const char *name, int rank, const hsize_t *dims,
                   hid_t mem_type, void *buf)
{
    char err[8400];
    if (h5_try_read_exact(file, path, name, rank, dims, mem_type, buf, err, sizeof err) < 0)
        ncsn_die_usage("%s", err);
}

float *h5_read_floats(hid_t file, const char *path, const char *name, int rank, hsize_t *dims)
{
    H5Info info = h5_info(file, path, name);
    if (info.cls != H5T_FLOAT) ncsn_die_usage("%s: dataset %s must be float32", path, name);
    if (info.rank != rank)
        ncsn_die_usage("%s: dataset %s has rank %d, expected %d", path, name, info.rank, rank);
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = info.dims[i];
        n *= dims[i];
    }
    float *buf = xmalloc(n * sizeof(float));
    h5_read_exact(file, path, name, rank, dims, H5T_NATIVE_FLOAT, buf);
    return buf;
}

int *h5_read_ints(hid_t file, const char *path, const char *name, hsize_t *n)
{
    H5Info info = h5_info(file, path, name);
    if (info.cls != H5T_INTEGER) ncsn_die_usage("%s: dataset %s must be integer", path, name);
    if (info.rank != 1) ncsn_die_usage("%s: dataset %s has rank %d, expected 1", path, name, info.rank);
    *n = info.dims[0];
    int *buf = xmalloc((size_t)*n * sizeof(int));
    h5_read_exact(file, path, name, 1, n, H5T_NATIVE_INT, buf);
    return buf;
}

void h5_write(hid_t loc, const char *name, hid_t mem_type, hid_t file_type, int rank,
              const hsize_t *dims, const void *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[H5_MAX_RANK];
    size_t elem = H5Tget_size(file_type), bytes = elem;
    int empty = 0;
    for (int i = 0; i < rank; i++) {
        chunk[i] = dims[i];
        bytes *= dims[i];
        if (dims[i] == 0) empty = 1;
    }
    /* Chunks of at most ~1 MiB: halve the leading dimensions. */
    for (int i = 0; i < rank && bytes > (1u << 20); i++)
        while (chunk[i] > 1 && bytes > (1u << 20)) {
            bytes = bytes / chunk[i] * ((chunk[i] + 1) / 2);
            chunk[i] = (chunk[i] + 1) / 2;
        }
    if (!empty && rank > 0) {
        H5_CHECK(H5Pset_chunk(dcpl, rank, chunk));
        H5_CHECK(H5Pset_fletcher32(dcpl));
    }
    hid_t ds = H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5_CHECK_IN(loc, ds, "create dataset %s", name);
    if (!empty) H5_CHECK_IN(loc, H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "write dataset %s", name);
    H5_CHECK_IN(loc, H5Dclose(ds), "write dataset %s", name);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

void h5_write_scalar_double(hid_t loc, const char *name, double v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(loc, ds, "create dataset %s", name);
    H5_CHECK_IN(loc, H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v), "write dataset %s", name);
    H5_CHECK_IN(loc, H5Dclose(ds), "write dataset %s", name);
    H5Sclose(sp);
}

void h5_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, int n,
                       const void *v)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &d, NULL);
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(obj, a, "create attribute %s", name);
    H5_CHECK_IN(obj, H5Awrite(a, mem_type, v), "write attribute %s", name);
    H5_CHECK_IN(obj, H5Aclose(a), "write attribute %s", name);
    H5Sclose(sp);
}

void h5_attr_write_int(hid_t obj, const char *name, int n, const int *v)
{
    h5_attr_write(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, n, v);
}

void h5_attr_write_double(hid_t obj, const char *name, int n, const double *v)
{
    h5_attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, n, v);
}

void h5_attr_write_str(hid_t obj, const char *name, const char *s)
{
    hid_t ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, strlen(s) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK_IN(obj, a, "create attribute %s", name);
    H5_CHECK_IN(obj, H5Awrite(a, ty, s), "write attribute %s", name);
    H5_CHECK_IN(obj, H5Aclose(a), "write attribute %s", name);
    H5Sclose(sp);
    H5Tclose(ty);
}

int h5_attr_try_read(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                     hid_t mem_type, void *v, char *err, size_t cap)
{
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t sp = H5Aget_space(a);
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    int rc = 1;
    if (count != n) {
        snprintf(err, cap, "%s: attribute %s of %s has %lld values, expected %d", path, name, obj_name,
                 (long long)count, n);
        rc = -1;
    } else if (H5Aread(a, mem_type, v) < 0) {
        snprintf(err, cap, "%s: attribute %s of %s is not numeric", path, name, obj_name);
        rc = -1;
    }
    H5Aclose(a);
    return rc;
}

static int attr_read(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                     hid_t mem_type, void *v)
{
    char err[8400];
    int rc = h5_attr_try_read(obj, path, obj_name, name, n, mem_type, v, err, sizeof err);
    if (rc < 0) ncsn_die_usage("%s", err);
    return rc;
}

int h5_attr_read_int(hid_t obj, const char *path, const char *obj_name, const char *name, int n, int *v)
{
    return attr_read(obj, path, obj_name, name, n, H5T_NATIVE_INT, v);
}

int h5_attr_read_double(hid_t obj, const char *path, const char *obj_name, const char *name, int n,
                        double *v)
{
    return attr_read(obj, path, obj_name, name, n, H5T_NATIVE_DOUBLE, v);
}

int h5_attr_read_str(hid_t obj, const char *name, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ty = H5Aget_type(a);
    int ok = 0;
    if (H5Tget_class(ty) == H5T_STRING) {
        if (H5Tis_variable_str(ty) > 0) {
            char *s = NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ty)); /* h5py writes UTF-8 */
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(buf, cap, "%s", s);
                H5free_memory(s);
                ok = 1;
            }
            H5Tclose(mt);
        } else {
            size_t sz = H5Tget_size(ty);
            char *tmp = xcalloc(sz + 1, 1);
            if (H5Aread(a, ty, tmp) >= 0) {
                snprintf(buf, cap, "%s", tmp);
                ok = 1;
            }
            free(tmp);
        }
    }
    H5Tclose(ty);
    H5Aclose(a);
    return ok;
}
