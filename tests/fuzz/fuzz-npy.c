/* fuzz-npy: client/npy.c's reader, and npz.c's archive reader, on a file holding the input.
 *
 * npy_read takes a path: the input goes into a memfd (a regular file, so the reader checks
 * the header's claims against its size) opened through /proc/self/fd. A file it accepts
 * holds exactly the announced floats after the header, and they are what it hands back;
 * a refusal always says why. The same input is then read as a .npz archive (through a
 * symlink named *.npz), its array "a" and its only array: an array found in it is bytes
 * of the input too. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1;
static char path[64];
static char npz[128]; /* a symlink to path, named as an archive */

/* The input as an archive: refused with a sentence naming the spec, or an array of 2 or 3
 * dimensions whose floats are somewhere in the input. */
static void try_npz(const char *spec, const uint8_t *data, size_t size)
{
	struct npy_array a = { .data = NULL, .ndims = -1 };
	char err[512];

	err[0] = '\0';
	if (npy_load(spec, 2, 3, &a, err, sizeof(err)) < 0) {
		if (a.data || a.ndims != -1 || strncmp(err, spec, strlen(spec)) != 0)
			abort();
		return;
	}
	if (!a.data || a.ndims < 2 || a.ndims > 3)
		abort();
	size_t bytes = sizeof(float);
	for (int i = 0; i < a.ndims; i++)
		bytes *= (size_t)a.dims[i];
	if (bytes > size || (bytes && !memmem(data, size, a.data, bytes)))
		abort();
	free(a.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	float *floats = NULL;
	int64_t rows = -1, cols = -1;
	int fortran = -1;
	char err[512];
	size_t bytes;

	if (memfd < 0) {
		memfd = memfd_create("fuzz-npy", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
		char dir[] = "/tmp/fuzz-npz-XXXXXX";
		if (!mkdtemp(dir))
			abort();
		snprintf(npz, sizeof(npz), "%s/in.npz", dir);
		if (symlink(path, npz) < 0)
			abort();
	}
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	char spec[160];
	snprintf(spec, sizeof(spec), "%s:a", npz);
	try_npz(spec, data, size);
	try_npz(npz, data, size);
	err[0] = '\0';
	if (npy_read(path, &floats, &rows, &cols, &fortran, err, sizeof(err)) < 0) {
		/* Outputs untouched, and a sentence naming the file. */
		if (floats || rows != -1 || cols != -1 || fortran != -1 ||
		    strncmp(err, path, strlen(path)) != 0)
			abort();
		return 0;
	}
	if (!floats || rows < 0 || cols < 0 || (fortran != 0 && fortran != 1))
		abort();
	bytes = (size_t)rows * (size_t)cols * sizeof(float);
	if (bytes > size || memcmp(floats, data + size - bytes, bytes) != 0)
		abort();
	free(floats);
	return 0;
}
