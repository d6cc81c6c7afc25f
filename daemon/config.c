/* config.c: rxgemmd's options and its config file.
 *
 * The config file holds "key = value" lines with the long options' names as keys (socket,
 * device, log-level, max-frame); '#' starts a comment. Options on the command line win over
 * the file, the file over the built-in defaults. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rxgemmd.h"
#include "sockpath.h"

enum { OPT_SOCKET = 256, OPT_DEVICE, OPT_LIST, OPT_CONFIG, OPT_LOG, OPT_MAXFRAME };

static const struct option config_options[] = {
	{ "socket", required_argument, NULL, OPT_SOCKET },
	{ "device", required_argument, NULL, OPT_DEVICE },
	{ "list-devices", no_argument, NULL, OPT_LIST },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "log-level", required_argument, NULL, OPT_LOG },
	{ "max-frame", required_argument, NULL, OPT_MAXFRAME },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

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
		"  --config FILE      read options from FILE (default: %s if present)\n"
		"  --log-level LEVEL  error, warning, notice, info (default) or debug\n"
		"  --max-frame SIZE   largest message accepted, e.g. 64M (default 256M)\n"
		"  -h, --help         print this help and exit\n"
		"  -V, --version      print the version and exit\n"
		"\n"
		"Exit status: 0 after a clean shutdown (SIGTERM, SIGINT), 1 on a start-up failure\n"
		"(no device, socket in use), 2 on a usage error.\n",
		RXD_DEFAULT_CONFIG);
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

static int config_set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

/* Apply one option; where names the source for messages ("--x" or "file:line"). */
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
	bool seen[OPT_MAXFRAME - OPT_SOCKET + 1] = { false };
	char where[64], path[PATH_MAX];
	int opt;

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = LOG_INFO;
	cfg->max_frame_bytes = RXD_DEFAULT_MAX_FRAME;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "hV", config_options, NULL)) != -1) {
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
		case OPT_CONFIG:
			if (config_set_str(&cfg->config_path, optarg) < 0)
				return 2;
			break;
		case OPT_SOCKET: case OPT_DEVICE: case OPT_LOG: case OPT_MAXFRAME:
			snprintf(where, sizeof(where), "--%s", config_options[opt - OPT_SOCKET].name);
			if (config_apply(cfg, opt, optarg, where) < 0)
				return 3;
			seen[opt - OPT_SOCKET] = true;
			break;
		default:
			config_usage(stderr);
			return 3;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rxgemmd: unexpected argument '%s'\n", argv[optind]);
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
	memset(cfg, 0, sizeof(*cfg));
}
