/* npy.h: NumPy .npy files holding one 2-D float32 matrix, for the CLI's --a/--b/--c/--out.
 *
 * Reads format versions 1.0, 2.0 and 3.0 (3.0 differs only in allowing UTF-8 in the
 * header); writes 1.0. Only little-endian float32 ('<f4') and exactly two dimensions are
 * accepted. Sizes in the file are never trusted: header length, shape and data length are
 * checked against each other and against the file before anything is allocated for them. */
#ifndef RXGEMM_NPY_H
#define RXGEMM_NPY_H

#include <stddef.h>
#include <stdint.h>

/* Read the matrix in path. On success *data (the caller frees it with free(); non-NULL even
 * for an empty matrix) holds rows * cols floats in the file's own order: row by row when
 * *fortran_order is 0 (element (i, j) at i * cols + j), column by column when it is 1
 * (at i + j * rows). Returns 0, or a negative errno-style code with a sentence naming path
 * and the problem in err (errlen bytes, may be 0): -ENOENT and the like from the system,
 * -EINVAL for a file that is not a usable .npy, -ENOMEM. Outputs are untouched on error. */
int npy_read(const char *path, float **data, int64_t *rows, int64_t *cols, int *fortran_order,
	     char *err, size_t errlen);

/* Write rows x cols floats from data (laid out as for npy_read) to path as a version 1.0
 * file, replacing it. Returns 0 or a negative errno-style code with a sentence in err. A
 * failed write may leave a partial file behind. */
int npy_write(const char *path, const float *data, int64_t rows, int64_t cols, int fortran_order,
	      char *err, size_t errlen);

#endif
