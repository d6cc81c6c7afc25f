/* fuzz-npy: client/npy.c's reader, on a file holding the input.
 *
 * npy_read takes a path: the input goes into a memfd (a regular file, so the reader checks
 * the header's claims against its size) opened through /proc/self/fd. A file it accepts
 * holds exactly the announced floats after the header, and they are what it hands back;
 * a refusal always says why. */
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
	}
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
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
