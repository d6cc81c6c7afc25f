/* log.c: logging to stderr. Each line starts with a syslog priority prefix ("<3>") so that
 * journald files it under the right priority when rxgemmd runs as a service; on a terminal
 * the prefix is still there, which keeps one format for people and machines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rxgemmd.h"

static int log_level = LOG_INFO;

void log_set_level(int level)
{
	log_level = level;
}

int log_get_level(void)
{
	return log_level;
}

int log_parse_level(const char *s)
{
	static const char *const names[] = { "emerg", "alert", "crit", "error",
					     "warning", "notice", "info", "debug" };

	if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
		return s[0] - '0';
	for (int i = 0; i < 8; i++)
		if (strcasecmp(s, names[i]) == 0)
			return i;
	if (strcasecmp(s, "err") == 0)
		return LOG_ERR;
	if (strcasecmp(s, "warn") == 0)
		return LOG_WARNING;
	return -1;
}

static void log_vmsg(int prio, const char *fmt, va_list ap)
{
	char line[1024];
	size_t len;
	int n;

	if (prio > log_level)
		return;
	n = snprintf(line, sizeof(line), "<%d>rxgemmd: ", prio);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	len = strlen(line);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2; /* a cut message still ends its line */
	line[len++] = '\n';
	line[len] = '\0';
	/* One write per line: lines from the two threads never interleave mid-line. */
	fputs(line, stderr);
}

void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(prio, fmt, ap);
	va_end(ap);
}

void fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_CRIT, fmt, ap);
	va_end(ap);
	exit(1);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
