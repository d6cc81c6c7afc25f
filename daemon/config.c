/* config.c: rxgemmd's options and its config file.
 *
 * The config file holds "key = value" lines with the long options' names as keys (socket,
 * device, log-level, max-frame, hang-timeout, cache-dir, cache-max, vram-budget, max-queue,
 * ...); '#'
 * starts a comment. Options on the command line win over the file, the file over the built-in defaults. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loop.h"
#include "sockpath.h"

enum { OPT_SOCKET = 256, OPT_DEVICE, OPT_LIST, OPT_CONFIG, OPT_LOG, OPT_MAXFRAME, OPT_HANG,
       OPT_CACHE_DIR, OPT_CACHE_MAX, OPT_CLEAR_CACHE, OPT_TUNE, OPT_TUNE_BUDGET,
       OPT_AUTO_TUNE, OPT_AUTO_TUNE_BUDGET, OPT_VRAM_BUDGET, OPT_CLIENT_QUOTA,
       OPT_MAX_QUEUE, OPT_CLIENT_MAX_QUEUE, OPT_CLIENT_MAX_MEMORY, OPT_MAX_MEMORY,
       OPT_FRAME_TIMEOUT,
       OPT_IDLE_TIMEOUT, OPT_STALL_TIMEOUT, OPT_SHUTDOWN_TIMEOUT, OPT_ZERO_COPY,
       OPT_CLIENT_SHM_REGIONS, OPT_CLIENT_SHM_MAX, OPT_ALLOW_UIDS, OPT_ALLOW_GIDS,
       OPT_STATUS_DETAIL, OPT_NAS_PLAN_CACHE, OPT_BUSY_POLL, OPT_LAST_ };

static const struct option config_options[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "device", required_argument, NULL, OPT_DEVICE },
	{ "list-devices", no_argument, NULL, OPT_LIST },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "log-level", required_argument, NULL, OPT_LOG },
	{ "max-frame", required_argument, NULL, OPT_MAXFRAME },
	{ "hang-timeout", required_argument, NULL, OPT_HANG },
	{ "cache-dir", required_argument, NULL, OPT_CACHE_DIR },
	{ "cache-max", required_argument, NULL, OPT_CACHE_MAX },
	{ "clear-cache", no_argument, NULL, OPT_CLEAR_CACHE },
	{ "tune", no_argument, NULL, OPT_TUNE },
	{ "tune-budget", required_argument, NULL, OPT_TUNE_BUDGET },
	{ "auto-tune", required_argument, NULL, OPT_AUTO_TUNE },
	{ "auto-tune-budget", required_argument, NULL, OPT_AUTO_TUNE_BUDGET },
	{ "vram-budget", required_argument, NULL, OPT_VRAM_BUDGET },
	{ "client-quota", required_argument, NULL, OPT_CLIENT_QUOTA },
	{ "max-queue", required_argument, NULL, OPT_MAX_QUEUE },
	{ "client-max-queue", required_argument, NULL, OPT_CLIENT_MAX_QUEUE },
	{ "client-max-memory", required_argument, NULL, OPT_CLIENT_MAX_MEMORY },
	{ "max-memory", required_argument, NULL, OPT_MAX_MEMORY },
	{ "frame-timeout", required_argument, NULL, OPT_FRAME_TIMEOUT },
	{ "idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT },
	{ "stall-timeout", required_argument, NULL, OPT_STALL_TIMEOUT },
	{ "shutdown-timeout", required_argument, NULL, OPT_SHUTDOWN_TIMEOUT },
	{ "zero-copy", required_argument, NULL, OPT_ZERO_COPY },
	{ "client-shm-regions", required_argument, NULL, OPT_CLIENT_SHM_REGIONS },
	{ "client-shm-max", required_argument, NULL, OPT_CLIENT_SHM_MAX },
	{ "allow-uids", required_argument, NULL, OPT_ALLOW_UIDS },
	{ "allow-gids", required_argument, NULL, OPT_ALLOW_GIDS },
	{ "status-detail", required_argument, NULL, OPT_STATUS_DETAIL },
	{ "nas-plan-cache", required_argument, NULL, OPT_NAS_PLAN_CACHE },
	{ "busy-poll", required_argument, NULL, OPT_BUSY_POLL },
	/* Indexed by OPT_* - OPT_SOCKET up to here: keep this table and the enum in one order. */
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ "json", no_argument, NULL, 'j' }, /* with --list-devices */
	{ NULL, 0, NULL, 0 },
};

/* getopt_long's '?' or ':' in one line, then where the help is. */
static void config_option_error(int opt, char **argv)
{
	const char *arg = argv[optind - 1];

	if (opt == ':')
		fprintf(stderr, "rxgemmd: option '%s' needs a value\n", arg);
	else if (arg[0] == '-' && arg[1] == '-' && optopt)
		fprintf(stderr, "rxgemmd: option '%.*s' takes no value\n", (int)strcspn(arg, "="),
			arg);
	else if (arg[0] == '-' && arg[1] == '-')
		fprintf(stderr, "rxgemmd: unknown option '%.*s'\n", (int)strcspn(arg, "="), arg);
	else
		fprintf(stderr, "rxgemmd: unknown option '-%c'\n", optopt);
	fputs("Try 'rxgemmd --help'.\n", stderr);
}

static void config_usage(FILE *f)
{
	fprintf(f,
		"Usage: rxgemmd [OPTION]...\n"
		"Serve GEMM jobs on one OpenCL device to the processes of this machine.\n"
		"\n"
		"  --socket PATH      listen on PATH (default: $RXGEMM_SOCKET, else\n"
		"                     $RUNTIME_DIRECTORY/rxgemmd.sock, else /run/rxgemmd/rxgemmd.sock\n"
		"                     as root, else $XDG_RUNTIME_DIR/rxgemmd.sock)\n"
		"  --device SEL       serve the device SEL: an index from --list-devices or a\n"
		"                     case-insensitive part of \"platform device\" (default: the\n"
		"                     first GPU, else the first device)\n"
		"  --list-devices     print every OpenCL platform and device, then exit\n"
		"  --json             with --list-devices: print them as one JSON object\n"
		"  --config FILE      read options from FILE (default: %s if present)\n"
		"  --log-level LEVEL  error, warning, notice, info (default) or debug\n"
		"  --max-frame SIZE   largest message accepted, e.g. 64M (default 256M)\n"
		"  --hang-timeout T   under a systemd watchdog, a device worker on one job for\n"
		"                     longer than T seconds (or e.g. 500ms, 2min) is taken to be\n"
		"                     hung and the watchdog pings stop (default 120; 0: never)\n"
		"  --cache-dir DIR    keep compiled kernels in DIR (default: $CACHE_DIRECTORY,\n"
		"                     else /var/cache/rxgemmd as root, else\n"
		"                     $XDG_CACHE_HOME/rxgemmd, else ~/.cache/rxgemmd)\n"
		"  --cache-max SIZE   bound on the kernel cache's size (default 256M; 0: no\n"
		"                     cache on disk)\n"
		"  --clear-cache      empty the kernel cache, then exit\n"
		"  --tune             search the fastest kernels for this device, store the\n"
		"                     choice beside the kernel cache (later starts load it), exit\n"
		"  --tune-budget SECS  time the search may take (default 120)\n"
		"  --auto-tune WHEN   search at the first start on a device and driver with no\n"
		"                     stored choice: gpu (default: GPUs only), always or never\n"
		"  --auto-tune-budget SECS  time that first-start search may take (default 60)\n"
		"  --vram-budget SIZE device memory the daemon's buffers may take, e.g. 6G, 512M\n"
		"                     or 75%% of the device's (default 8G, or the device's memory\n"
		"                     if less); a job bigger than that runs in pieces\n"
		"  --client-quota SIZE  device memory one connection may hold reserved at once\n"
		"                     (default 0: no quota)\n"
		"  --max-queue N      jobs that may wait for the device in total; more are\n"
		"                     refused at once with BUSY (default %d; 0: no bound)\n"
		"  --client-max-queue N  jobs one connection may have waiting (default %d;\n"
		"                     0: no bound)\n"
		"  --zero-copy WHEN   run GEMMs in place on shared-memory operands: auto (default:\n"
		"                     on devices that work on host memory, e.g. CPUs) or never\n"
		"  --client-max-memory SIZE  host memory one connection may make the daemon\n"
		"                     hold: its requests, the results of its jobs, its unread\n"
		"                     replies (default 1G; 0: no bound)\n"
		"  --max-memory SIZE  the same for all connections together (default 4G;\n"
		"                     0: no bound)\n"
		"  --frame-timeout T  a message begun must arrive whole within T seconds, else\n"
		"                     the connection is closed (default 30; 0: never)\n"
		"  --idle-timeout T   close a connection that has nothing in flight for T\n"
		"                     seconds (default 0: never)\n"
		"  --stall-timeout T  close a client over its memory that reads none of its\n"
		"                     replies for T seconds (default 60; 0: never)\n"
		"  --shutdown-timeout T  at SIGTERM, connections still open after T seconds are\n"
		"                     closed (default 5)\n"
		"  --client-shm-regions N  shared-memory regions one connection may have\n"
		"                     registered at once (default and most %d)\n"
		"  --client-shm-max SIZE  their bytes together (default %lluG; 0: only the\n"
		"                     daemon's total of %lluG)\n"
		"  --allow-uids LIST  serve only these users (names or uids, comma-separated),\n"
		"                     besides root and the members of --allow-gids (default:\n"
		"                     whoever may open the socket)\n"
		"  --allow-gids LIST  serve only members of these groups (names or gids)\n"
		"  --status-detail WHO  other clients' names, pids and job shapes in status: own\n"
		"                     (default: for root and the clients' own user; others see\n"
		"                     counts) or all\n"
		"  --nas-plan-cache N  NAS networks whose plans are kept for the next job on\n"
		"                     them (default %d, at most %d; 0: none)\n"
		"  --busy-poll T      after each request and reply, the loop and device threads\n"
		"                     poll for T (e.g. 200us, 1ms) before they sleep, so that\n"
		"                     the next one is not waited for through a wake-up: auto\n"
		"                     (default: %dus on devices with memory of their own, none\n"
		"                     on CPUs, whose cores run the kernels) or 0\n"
		"  -h, --help         print this help and exit\n"
		"  -V, --version      print the version and exit\n"
		"\n"
		"SIGHUP re-reads the config file (log-level, hang-timeout, vram-budget,\n"
		"client-quota, max-queue, client-max-queue, client-shm-regions, client-shm-max,\n"
		"allow-uids, allow-gids, status-detail and the options from client-max-memory\n"
		"on take effect at once).\n"
		"\n"
		"Exit status: 0 after a clean shutdown (SIGTERM, SIGINT), 1 on a start-up failure\n"
		"(no device, socket in use), 2 on a usage error.\n",
		RXD_DEFAULT_CONFIG, RXD_DEFAULT_MAX_QUEUE, RXD_DEFAULT_CLIENT_MAX_QUEUE,
		RXD_SHM_MAX_REGIONS, RXD_SHM_DEFAULT_CLIENT_BYTES >> 30, RXD_SHM_MAX_TOTAL_BYTES >> 30,
		RXD_DEFAULT_NAS_PLAN_CACHE, RXD_NAS_PLAN_CACHE_MAX, RXD_DEFAULT_BUSY_POLL_US);
}

int config_parse_size(const char *s, uint64_t *bytes)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	}
	/* "64K", "64KB", "64KiB" and "4096B" all mean binary units of bytes. */
	if (shift && end[0] == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end != '\0' || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*bytes = (uint64_t)v << shift;
	return 0;
}

int config_parse_budget(const char *s, uint64_t *bytes, double *percent)
{
	size_t len = strlen(s);

	if (len > 1 && s[len - 1] == '%') {
		char num[32], *end;
		double v;

		if (len - 1 >= sizeof(num) || !isdigit((unsigned char)*s))
			return -EINVAL;
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		v = strtod(num, &end);
		if (*end != '\0' || !(v > 0 && v <= 100))
			return -EINVAL;
		*percent = v;
		*bytes = 0;
		return 0;
	}
	if (config_parse_size(s, bytes) < 0 || *bytes < RXD_MIN_VRAM_BUDGET)
		return -EINVAL;
	*percent = 0;
	return 0;
}

/* "120", "0.5", "500ms", "30s", "2min": a duration of 0 to 1 day. 0 or -EINVAL. */
static int config_parse_duration(const char *s, uint64_t *ns)
{
	char *end;
	double v, unit_s = 1;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno)
		return -EINVAL;
	if (strcmp(end, "ms") == 0)
		unit_s = 1e-3;
	else if (strcmp(end, "us") == 0)
		unit_s = 1e-6;
	else if (strcmp(end, "min") == 0)
		unit_s = 60;
	else if (*end != '\0' && strcmp(end, "s") != 0)
		return -EINVAL;
	v *= unit_s;
	if (!(v >= 0 && v <= 86400))
		return -EINVAL;
	*ns = (uint64_t)(v * 1e9);
	return 0;
}

static int config_set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* "alice, 1001,bob": user (gids: group) names or numbers into a new array. 0 or -EINVAL
 * (with a message naming the bad one), -ENOMEM. An empty list allows nobody but root. */
static int config_parse_ids(const char *v, bool groups, uint32_t **out, size_t *n_out,
			    const char *where)
{
	char *copy = strdup(v), *tok, *save = NULL;
	uint32_t *ids = NULL;
	size_t n = 0;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		char *end;
		unsigned long id;
		uint32_t *grown;

		errno = 0;
		id = strtoul(tok, &end, 10);
		if (!isdigit((unsigned char)*tok) || *end || errno || id >= UINT32_MAX) {
			struct passwd *pw = groups ? NULL : getpwnam(tok);
			struct group *gr = groups ? getgrnam(tok) : NULL;

			if (!pw && !gr) {
				fprintf(stderr, "rxgemmd: %s: %s '%s' is not a %s name or number\n",
					where, groups ? "allow-gids" : "allow-uids", tok,
					groups ? "group" : "user");
				ret = -EINVAL;
				goto out;
			}
			id = pw ? pw->pw_uid : gr->gr_gid;
		}
		if (!(grown = realloc(ids, (n + 1) * sizeof(*ids)))) {
			ret = -ENOMEM;
			goto out;
		}
		ids = grown;
		ids[n++] = (uint32_t)id;
	}
	free(*out);
	*out = ids;
	*n_out = n;
	ids = NULL;
out:
	free(ids);
	free(copy);
	return ret;
}

/* Apply one option; where names the source for messages ("--x" or "file:line"). Over 100
 * lines: one case per option, each parsing its value and saying in its own words what a
 * bad one should look like; a table of parsers would lose those sentences. */
static int config_apply(struct rxd_config *cfg, int opt, const char *v, const char *where)
{
	int lvl;

	switch (opt) {
	case OPT_SOCKET:
		if (!*v) {
			fprintf(stderr, "rxgemmd: %s: empty socket path\n", where);
			return -EINVAL;
		}
		return config_set_str(&cfg->socket_path, v);
	case OPT_DEVICE:
		return config_set_str(&cfg->device, v);
	case OPT_LOG:
		lvl = log_parse_level(v);
		if (lvl < 0) {
			fprintf(stderr, "rxgemmd: %s: unknown log level '%s'\n", where, v);
			return -EINVAL;
		}
		cfg->log_level = lvl;
		return 0;
	case OPT_MAXFRAME:
		if (config_parse_size(v, &cfg->max_frame_bytes) < 0 ||
		    cfg->max_frame_bytes < RXD_MIN_MAX_FRAME ||
		    cfg->max_frame_bytes > UINT32_MAX) {
			fprintf(stderr,
				"rxgemmd: %s: max-frame '%s' is not a size from 4K to 4G-1\n",
				where, v);
			return -EINVAL;
		}
		return 0;
	case OPT_CACHE_DIR:
		if (!*v) {
			fprintf(stderr, "rxgemmd: %s: empty cache directory\n", where);
			return -EINVAL;
		}
		return config_set_str(&cfg->cache_dir, v);
	case OPT_TUNE_BUDGET:
	case OPT_AUTO_TUNE_BUDGET: {
		char *end;
		double secs = strtod(v, &end);

		if (end == v || *end != '\0' || !(secs >= 1 && secs <= 86400)) {
			fprintf(stderr, "rxgemmd: %s: %s '%s' is not a number of seconds from 1 to "
					"86400\n",
				where, opt == OPT_TUNE_BUDGET ? "tune-budget" : "auto-tune-budget", v);
			return -EINVAL;
		}
		*(opt == OPT_TUNE_BUDGET ? &cfg->tune_budget_s : &cfg->auto_tune_budget_s) = secs;
		return 0;
	}
	case OPT_AUTO_TUNE:
		if (strcmp(v, "gpu") == 0)
			cfg->auto_tune = RXD_AUTO_TUNE_GPU;
		else if (strcmp(v, "always") == 0)
			cfg->auto_tune = RXD_AUTO_TUNE_ALWAYS;
		else if (strcmp(v, "never") == 0)
			cfg->auto_tune = RXD_AUTO_TUNE_NEVER;
		else {
			fprintf(stderr, "rxgemmd: %s: auto-tune '%s' is not gpu, always or never\n",
				where, v);
			return -EINVAL;
		}
		return 0;
	case OPT_BUSY_POLL:
		if (strcmp(v, "auto") == 0) {
			cfg->busy_poll_ns = RXD_BUSY_POLL_AUTO;
		} else if (config_parse_duration(v, &cfg->busy_poll_ns) < 0 ||
			   cfg->busy_poll_ns > RXD_BUSY_POLL_MAX_NS) {
			fprintf(stderr, "rxgemmd: %s: busy-poll '%s' is not auto or a duration up "
				"to 10ms (e.g. 0, 200us, 1ms)\n", where, v);
			return -EINVAL;
		}
		return 0;
	case OPT_ZERO_COPY:
		if (strcmp(v, "auto") == 0)
			cfg->zero_copy = true;
		else if (strcmp(v, "never") == 0)
			cfg->zero_copy = false;
		else {
			fprintf(stderr, "rxgemmd: %s: zero-copy '%s' is not auto or never\n", where,
				v);
			return -EINVAL;
		}
		return 0;
	case OPT_CACHE_MAX:
		if (config_parse_size(v, &cfg->cache_max_bytes) < 0) {
			fprintf(stderr, "rxgemmd: %s: cache-max '%s' is not a size\n", where, v);
			return -EINVAL;
		}
		return 0;
	case OPT_VRAM_BUDGET:
		if (config_parse_budget(v, &cfg->vram_budget_bytes, &cfg->vram_budget_percent) < 0) {
			fprintf(stderr, "rxgemmd: %s: vram-budget '%s' is not a size of at least 4M "
				"(e.g. 6G, 512M) or a percentage of the device's memory (e.g. 75%%)\n",
				where, v);
			return -EINVAL;
		}
		return 0;
	case OPT_CLIENT_QUOTA:
		if (config_parse_size(v, &cfg->client_quota_bytes) < 0) {
			fprintf(stderr, "rxgemmd: %s: client-quota '%s' is not a size (e.g. 1G; 0: "
				"none)\n", where, v);
			return -EINVAL;
		}
		return 0;
	case OPT_MAX_QUEUE:
	case OPT_CLIENT_MAX_QUEUE: {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end != '\0' || errno || n > RXD_MAX_QUEUE_LIMIT) {
			fprintf(stderr, "rxgemmd: %s: %s '%s' is not a number of jobs from 0 (no "
				"bound) to %u\n", where,
				opt == OPT_MAX_QUEUE ? "max-queue" : "client-max-queue", v,
				RXD_MAX_QUEUE_LIMIT);
			return -EINVAL;
		}
		*(opt == OPT_MAX_QUEUE ? &cfg->max_queue : &cfg->client_max_queue) = (uint32_t)n;
		return 0;
	}
	case OPT_CLIENT_MAX_MEMORY:
	case OPT_MAX_MEMORY:
		if (config_parse_size(v, opt == OPT_MAX_MEMORY ? &cfg->max_memory_bytes :
				  &cfg->client_max_memory_bytes) < 0) {
			fprintf(stderr, "rxgemmd: %s: %s '%s' is not a size (e.g. 512M; 0: no "
				"bound)\n", where,
				opt == OPT_MAX_MEMORY ? "max-memory" : "client-max-memory", v);
			return -EINVAL;
		}
		return 0;
	case OPT_FRAME_TIMEOUT:
	case OPT_IDLE_TIMEOUT:
	case OPT_STALL_TIMEOUT:
	case OPT_SHUTDOWN_TIMEOUT: {
		uint64_t *dst = opt == OPT_FRAME_TIMEOUT  ? &cfg->frame_timeout_ns
				: opt == OPT_IDLE_TIMEOUT ? &cfg->idle_timeout_ns
				: opt == OPT_STALL_TIMEOUT ? &cfg->stall_timeout_ns
							   : &cfg->shutdown_timeout_ns;

		if (config_parse_duration(v, dst) < 0) {
			fprintf(stderr, "rxgemmd: %s: %s '%s' is not a duration from 0 to 1 day "
				"(e.g. 30, 0.5s, 500ms, 2min)\n", where,
				config_options[opt - OPT_SOCKET].name, v);
			return -EINVAL;
		}
		return 0;
	}
	case OPT_CLIENT_SHM_REGIONS: {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end != '\0' || errno || n < 1 ||
		    n > RXD_SHM_MAX_REGIONS) {
			fprintf(stderr, "rxgemmd: %s: client-shm-regions '%s' is not a number of "
				"regions from 1 to %d\n", where, v, RXD_SHM_MAX_REGIONS);
			return -EINVAL;
		}
		cfg->client_shm_regions = (uint32_t)n;
		return 0;
	}
	case OPT_NAS_PLAN_CACHE: {
		char *end;
		unsigned long n;

		errno = 0;
		n = strtoul(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end != '\0' || errno ||
		    n > RXD_NAS_PLAN_CACHE_MAX) {
			fprintf(stderr, "rxgemmd: %s: nas-plan-cache '%s' is not a number of plans "
				"from 0 to %d\n", where, v, RXD_NAS_PLAN_CACHE_MAX);
			return -EINVAL;
		}
		cfg->nas_plan_cache = (uint32_t)n;
		return 0;
	}
	case OPT_ALLOW_UIDS:
		cfg->allow_uids_set = true;
		return config_parse_ids(v, false, &cfg->allow_uids, &cfg->n_allow_uids, where);
	case OPT_ALLOW_GIDS:
		cfg->allow_gids_set = true;
		return config_parse_ids(v, true, &cfg->allow_gids, &cfg->n_allow_gids, where);
	case OPT_STATUS_DETAIL:
		if (strcmp(v, "own") != 0 && strcmp(v, "all") != 0) {
			fprintf(stderr, "rxgemmd: %s: status-detail '%s' is not own or all\n", where,
				v);
			return -EINVAL;
		}
		cfg->status_detail_all = strcmp(v, "all") == 0;
		return 0;
	case OPT_CLIENT_SHM_MAX:
		if (config_parse_size(v, &cfg->client_shm_bytes) < 0) {
			fprintf(stderr, "rxgemmd: %s: client-shm-max '%s' is not a size (e.g. 16G; "
				"0: only the total bound)\n", where, v);
			return -EINVAL;
		}
		return 0;
	case OPT_HANG:
		if (config_parse_duration(v, &cfg->hang_timeout_ns) < 0) {
			fprintf(stderr, "rxgemmd: %s: hang-timeout '%s' is not a duration from 0 "
				"to 1 day (e.g. 120, 0.5s, 500ms, 2min)\n", where, v);
			return -EINVAL;
		}
		return 0;
	}
	return -EINVAL;
}

static int config_key(const char *key)
{
	for (const struct option *o = config_options; o->name; o++)
		if (strcmp(o->name, key) == 0 && o->has_arg == required_argument &&
		    o->val != OPT_CONFIG)
			return o->val;
	return -1;
}

static char *config_trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Read path; options already given on the command line (seen[opt]) keep their values. */
static int config_load(struct rxd_config *cfg, const char *path, const bool *seen)
{
	FILE *f = fopen(path, "re");
	char line[1024], where[PATH_MAX + 32];
	int lineno = 0, ret = 0;

	if (!f) {
		fprintf(stderr, "rxgemmd: cannot read config %s: %s\n", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		char *key, *val, *eq, *hash;
		int opt;

		lineno++;
		snprintf(where, sizeof(where), "%s:%d", path, lineno);
		if ((hash = strchr(line, '#')))
			*hash = '\0';
		key = config_trim(line);
		if (!*key)
			continue;
		if (!(eq = strchr(key, '='))) {
			fprintf(stderr, "rxgemmd: %s: expected 'key = value'\n", where);
			ret = -EINVAL;
			goto out;
		}
		*eq = '\0';
		key = config_trim(key);
		val = config_trim(eq + 1);
		if ((opt = config_key(key)) < 0) {
			fprintf(stderr, "rxgemmd: %s: unknown key '%s'\n", where, key);
			ret = -EINVAL;
			goto out;
		}
		if (seen[opt - OPT_SOCKET])
			continue;
		if ((ret = config_apply(cfg, opt, val, where)) < 0)
			goto out;
	}
	if (ferror(f))
		ret = -EIO;
out:
	fclose(f);
	return ret;
}

int config_init(struct rxd_config *cfg, int argc, char **argv)
{
	bool seen[OPT_LAST_ - OPT_SOCKET] = { false };
	char where[64], path[PATH_MAX];
	int opt;

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = LOG_INFO;
	cfg->max_frame_bytes = RXD_DEFAULT_MAX_FRAME;
	cfg->cache_max_bytes = RXD_DEFAULT_CACHE_MAX;
	cfg->tune_budget_s = RXD_DEFAULT_TUNE_BUDGET_S;
	cfg->auto_tune = RXD_AUTO_TUNE_GPU;
	cfg->auto_tune_budget_s = RXD_DEFAULT_AUTO_TUNE_BUDGET_S;
	cfg->hang_timeout_ns = RXD_DEFAULT_HANG_TIMEOUT_NS;
	cfg->max_queue = RXD_DEFAULT_MAX_QUEUE;
	cfg->client_max_queue = RXD_DEFAULT_CLIENT_MAX_QUEUE;
	cfg->zero_copy = true;
	cfg->busy_poll_ns = RXD_BUSY_POLL_AUTO;
	cfg->client_max_memory_bytes = RXD_DEFAULT_CLIENT_MAX_MEMORY;
	cfg->max_memory_bytes = RXD_DEFAULT_MAX_MEMORY;
	cfg->frame_timeout_ns = RXD_DEFAULT_FRAME_TIMEOUT_NS;
	cfg->stall_timeout_ns = RXD_DEFAULT_STALL_TIMEOUT_NS;
	cfg->shutdown_timeout_ns = RXD_DEFAULT_SHUTDOWN_TIMEOUT_NS;
	cfg->client_shm_regions = RXD_SHM_MAX_REGIONS;
	cfg->client_shm_bytes = RXD_SHM_DEFAULT_CLIENT_BYTES;
	cfg->nas_plan_cache = RXD_DEFAULT_NAS_PLAN_CACHE;
	/* 0, not 1: glibc then starts afresh, also when config_reload scans argv again. */
	optind = 0;
	opterr = 0; /* one line of our own and "Try --help", not getopt's and the whole help */
	while ((opt = getopt_long(argc, argv, ":hV", config_options, NULL)) != -1) {
		switch (opt) {
		case 'h':
			config_usage(stdout);
			return 1;
		case 'V':
			printf("rxgemmd %s (protocol %d)\n", PACKAGE_VERSION, RXGEMM_PROTOCOL_VERSION);
			return 1;
		case OPT_LIST:
			cfg->list_devices = true;
			break;
		case OPT_CLEAR_CACHE:
			cfg->clear_cache = true;
			break;
		case OPT_TUNE:
			cfg->tune = true;
			break;
		case OPT_CONFIG:
			if (config_set_str(&cfg->config_path, optarg) < 0)
				return 2;
			break;
		case OPT_SOCKET: case OPT_DEVICE: case OPT_LOG: case OPT_MAXFRAME: case OPT_HANG:
		case OPT_CACHE_DIR: case OPT_CACHE_MAX: case OPT_TUNE_BUDGET: case OPT_AUTO_TUNE:
		case OPT_AUTO_TUNE_BUDGET: case OPT_VRAM_BUDGET: case OPT_CLIENT_QUOTA:
		case OPT_MAX_QUEUE: case OPT_CLIENT_MAX_QUEUE: case OPT_CLIENT_MAX_MEMORY:
		case OPT_MAX_MEMORY:
		case OPT_FRAME_TIMEOUT: case OPT_IDLE_TIMEOUT: case OPT_STALL_TIMEOUT:
		case OPT_SHUTDOWN_TIMEOUT: case OPT_ZERO_COPY: case OPT_CLIENT_SHM_REGIONS:
		case OPT_CLIENT_SHM_MAX: case OPT_ALLOW_UIDS: case OPT_ALLOW_GIDS:
		case OPT_STATUS_DETAIL: case OPT_NAS_PLAN_CACHE: case OPT_BUSY_POLL:
			snprintf(where, sizeof(where), "--%s", config_options[opt - OPT_SOCKET].name);
			if (config_apply(cfg, opt, optarg, where) < 0)
				return 3;
			seen[opt - OPT_SOCKET] = true;
			break;
		case 'j':
			cfg->list_json = true;
			break;
		default:
			config_option_error(opt, argv);
			return 3;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rxgemmd: unexpected argument '%s'\nTry 'rxgemmd --help'.\n",
			argv[optind]);
		return 3;
	}
	if (cfg->list_json && !cfg->list_devices) {
		fprintf(stderr, "rxgemmd: --json goes with --list-devices\nTry 'rxgemmd --help'.\n");
		return 3;
	}
	/* The default file is optional; a file named with --config must be there. */
	if (!cfg->config_path && access(RXD_DEFAULT_CONFIG, F_OK) == 0 &&
	    config_set_str(&cfg->config_path, RXD_DEFAULT_CONFIG) < 0)
		return 2;
	if (cfg->config_path && config_load(cfg, cfg->config_path, seen) < 0)
		return 3;
	if (!cfg->socket_path) {
		if (sockpath_default(path, sizeof(path)) < 0 ||
		    config_set_str(&cfg->socket_path, path) < 0) {
			fprintf(stderr, "rxgemmd: the default socket path is too long\n");
			return 3;
		}
	}
	return 0;
}

void config_fini(struct rxd_config *cfg)
{
	free(cfg->socket_path);
	free(cfg->device);
	free(cfg->config_path);
	free(cfg->cache_dir);
	free(cfg->allow_uids);
	free(cfg->allow_gids);
	memset(cfg, 0, sizeof(*cfg));
}

int config_reload(struct rxd_config *cfg, int argc, char **argv)
{
	struct rxd_config next;
	int ret = config_init(&next, argc, argv);

	if (ret != 0) {
		config_fini(&next);
		log_msg(LOG_ERR, "reload: the configuration has errors (printed above); keeping "
			"the running one");
		return -EINVAL;
	}
	/* What the running daemon can take over without dropping a client. */
	cfg->log_level = next.log_level;
	cfg->hang_timeout_ns = next.hang_timeout_ns;
	/* main.c hands these to budget_set_limits. */
	cfg->vram_budget_bytes = next.vram_budget_bytes;
	cfg->vram_budget_percent = next.vram_budget_percent;
	cfg->client_quota_bytes = next.client_quota_bytes;
	/* main.c hands these to worker_set_limits. */
	cfg->max_queue = next.max_queue;
	cfg->client_max_queue = next.client_max_queue;
	/* conn.c (and dispatch.c) read these at each use. */
	cfg->client_max_memory_bytes = next.client_max_memory_bytes;
	cfg->max_memory_bytes = next.max_memory_bytes;
	cfg->frame_timeout_ns = next.frame_timeout_ns;
	cfg->idle_timeout_ns = next.idle_timeout_ns;
	cfg->stall_timeout_ns = next.stall_timeout_ns;
	cfg->shutdown_timeout_ns = next.shutdown_timeout_ns;
	/* main.c hands these to shm_set_limits. */
	cfg->client_shm_regions = next.client_shm_regions;
	cfg->client_shm_bytes = next.client_shm_bytes;
	/* Access control applies to connections accepted from now on. */
	{
		uint32_t *u = cfg->allow_uids, *g = cfg->allow_gids;
		size_t nu = cfg->n_allow_uids, ng = cfg->n_allow_gids;

		cfg->allow_uids = next.allow_uids, cfg->n_allow_uids = next.n_allow_uids;
		cfg->allow_gids = next.allow_gids, cfg->n_allow_gids = next.n_allow_gids;
		next.allow_uids = u, next.n_allow_uids = nu;
		next.allow_gids = g, next.n_allow_gids = ng;
		cfg->allow_uids_set = next.allow_uids_set;
		cfg->allow_gids_set = next.allow_gids_set;
		cfg->status_detail_all = next.status_detail_all;
	}
	/* What needs a restart: the socket, the device and the kernel cache are in use, and
	 * connections hold frame readers sized by max-frame. */
	if (strcmp(next.socket_path, cfg->socket_path) != 0)
		log_msg(LOG_WARNING, "reload: socket %s takes effect at the next start (serving "
			"%s)", next.socket_path, cfg->socket_path);
	if ((next.device == NULL) != (cfg->device == NULL) ||
	    (next.device && strcmp(next.device, cfg->device) != 0))
		log_msg(LOG_WARNING, "reload: device '%s' takes effect at the next start",
			next.device ? next.device : "(default)");
	if (next.max_frame_bytes != cfg->max_frame_bytes)
		log_msg(LOG_WARNING, "reload: max-frame %llu takes effect at the next start",
			(unsigned long long)next.max_frame_bytes);
	if ((next.cache_dir == NULL) != (cfg->cache_dir == NULL) ||
	    (next.cache_dir && strcmp(next.cache_dir, cfg->cache_dir) != 0) ||
	    next.cache_max_bytes != cfg->cache_max_bytes)
		log_msg(LOG_WARNING, "reload: cache-dir and cache-max take effect at the next start");
	if (next.busy_poll_ns != cfg->busy_poll_ns)
		log_msg(LOG_WARNING, "reload: busy-poll takes effect at the next start");
	if (next.nas_plan_cache != cfg->nas_plan_cache)
		log_msg(LOG_WARNING, "reload: nas-plan-cache %u takes effect at the next start",
			next.nas_plan_cache);
	log_msg(LOG_NOTICE, "reloaded %s: log level %d, hang-timeout %.1f s",
		next.config_path ? next.config_path : "(no config file)", cfg->log_level,
		cfg->hang_timeout_ns / 1e9);
	config_fini(&next);
	return 0;
}
