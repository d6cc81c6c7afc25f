/* npy.h: NumPy .npy files, and arrays in .npz archives, holding float32 matrices (2-D) or
 * stacks of them (3-D), for the CLI's --a/--b/--c/--out and rxgemm nas's files.
 *
 * Reads format versions 1.0, 2.0 and 3.0 (3.0 differs only in allowing UTF-8 in the
 * header); writes 1.0. Only little-endian float32 ('<f4') is accepted. Sizes in the file
 * are never trusted: header length, shape and data length are checked against each other
 * and against the file (or the archive member) before anything is allocated for them.
 *
 * A .npz archive (numpy.savez) is a zip file of NAME.npy members. Only stored
 * (uncompressed) members are read: numpy.savez_compressed's deflated ones are refused with
 * a message saying so, as this program links no zlib. */
#ifndef RXGEMM_NPY_H
#define RXGEMM_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NPY_LOAD_MAX_DIMS 4 /* images: N x 3 x H x W */

/* An array as npy_load hands it out. */
struct npy_array {
	float *data;   /* the caller frees it with free(); non-NULL even when empty */
	int ndims;     /* as in the file */
	int64_t dims[NPY_LOAD_MAX_DIMS];
	int fortran_order; /* data in the file's order: C order (the last index varies
			    * fastest) when 0, Fortran order (the first fastest) when 1 */
};

/* Read the float32 array of min_dims to max_dims (at most NPY_LOAD_MAX_DIMS) dimensions
 * named by spec:
 *   FILE           a .npy file (any name not ending in ".npz");
 *   ARCHIVE.npz    the one array in a .npz archive (an error when it holds several);
 *   ARCHIVE.npz:NAME  the array saved as NAME (numpy.savez(f, NAME=x)) in the archive.
 * Returns 0, or a negative errno-style code with a sentence naming spec and the problem in
 * err (errlen bytes, may be 0): -ENOENT and the like from the system, -EINVAL for a file
 * that is not a usable .npy/.npz (or a missing or compressed member), -ENOMEM. *out is
 * untouched on error. */
int npy_load(const char *spec, int min_dims, int max_dims, struct npy_array *out, char *err,
	     size_t errlen);

/* npy_load of a 2-D array. On success *data holds rows * cols floats in the file's own
 * order: row by row when *fortran_order is 0 (element (i, j) at i * cols + j), column by
 * column when it is 1 (at i + j * rows). Outputs are untouched on error. */
int npy_read(const char *path, float **data, int64_t *rows, int64_t *cols, int *fortran_order,
	     char *err, size_t errlen);

/* Write rows x cols floats from data (laid out as for npy_read) to path as a version 1.0
 * file, replacing it. Returns 0 or a negative errno-style code with a sentence in err. A
 * failed write may leave a partial file behind. */
int npy_write(const char *path, const float *data, int64_t rows, int64_t cols, int fortran_order,
	      char *err, size_t errlen);

/* Write a C-ordered array of ndims (1 to NPY_LOAD_MAX_DIMS) dimensions, as npy_write does. */
int npy_write_array(const char *path, const float *data, int ndims, const int64_t *dims,
		    char *err, size_t errlen);

/* Read a 1-D array of integer labels named by spec (as npy_load) into a new *out (the
 * caller frees it) of *count int32: dtype int32, int64, int8 or uint8 ('<i4', '<i8',
 * '|i1', '|u1'); a value outside int32 is refused. Errors as npy_load's. */
int npy_load_labels(const char *spec, int32_t **out, int64_t *count, char *err, size_t errlen);

/* ---- npz.c: used by npy_load ---- */

/* Find the stored member of the zip archive f (opened on archive, positioned anywhere) that
 * holds array name (saved as name.npy), or its only array when name is NULL. On success
 * f is positioned at the member's first byte, *bytes is its length and 0 is returned; else
 * a negative errno-style code with a sentence naming archive in err. */
int npz_find(FILE *f, const char *archive, const char *name, uint64_t *bytes, char *err,
	     size_t errlen);

#endif
