/* fuzz-config: daemon/config.c's config-file parser, through config_init as rxgemmd runs it
 * (rxgemmd --config FILE), with the input as the file: a memfd opened through /proc/self/fd.
 *
 * The parser prints its refusals on stderr; they are sent to /dev/null while it runs, so
 * that a minute's run is not a minute of error lines. Set RXGEMM_FUZZ_VERBOSE=1 to see them
 * (run.sh does when it replays a crash). */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "loop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int memfd = -1, devnull = -1, saved_stderr = -1;
static char path[64];
static int quiet;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rxd_config cfg;
	char arg0[] = "rxgemmd", arg1[] = "--config";
	char *argv[] = { arg0, arg1, path, NULL };
	int rc;

	if (memfd < 0) {
		memfd = memfd_create("fuzz-config", MFD_CLOEXEC);
		if (memfd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
		quiet = !getenv("RXGEMM_FUZZ_VERBOSE");
		if (quiet && ((devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0 ||
			      (saved_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3)) < 0))
			abort();
	}
	if (ftruncate(memfd, 0) < 0 || pwrite(memfd, data, size, 0) != (ssize_t)size)
		abort();
	if (quiet) {
		fflush(stderr);
		dup2(devnull, 2);
	}
	rc = config_init(&cfg, 3, argv);
	if (quiet) {
		fflush(stderr);
		dup2(saved_stderr, 2);
	}
	/* 0 (run) or 3 (exit 2 after an error): a file never asks for --help's exit. */
	if (rc != 0 && rc != 3)
		abort();
	if (rc == 0 && (!cfg.socket_path || !cfg.config_path ||
			cfg.max_frame_bytes < RXD_MIN_MAX_FRAME))
		abort();
	config_fini(&cfg);
	return 0;
}
