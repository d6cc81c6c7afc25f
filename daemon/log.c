/* log.c: logging to stderr, and the checks and escaping that client text gets before it
 * is kept or logged.
 *
 * Two formats. Under a service manager (stderr not a terminal, or JOURNAL_STREAM set) each
 * line starts with a syslog priority prefix ("<3>") so that journald files it under the
 * right priority. On a terminal a person reads it: each line starts with the local time and
 * a level word instead. RXGEMMD_LOG_FORMAT ("journal" or "text") overrides the choice.
 *
 * Client text (names, anything a client sends that reaches a log line) is escaped by
 * log_escape: a name holding "\n<0>" must not write a line of its own that journald files at
 * emergency priority. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

/* Written on SIGHUP by the loop thread, read by both threads at every message. */
static atomic_int log_level = LOG_INFO;
static int log_text = -1; /* 1: time and level word; 0: "<N>" prefix; -1: not chosen yet */

void log_set_level(int level)
{
	atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int log_get_level(void)
{
	return atomic_load_explicit(&log_level, memory_order_relaxed);
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

/* 1: "text", 0: "journal", -1: neither. */
static int log_parse_format(const char *s)
{
	if (strcmp(s, "text") == 0)
		return 1;
	if (strcmp(s, "journal") == 0)
		return 0;
	return -1;
}

/* The format when nobody chose one: see the top of this file. */
static int log_default_format(void)
{
	const char *env = getenv("RXGEMMD_LOG_FORMAT");
	const char *journal = getenv("JOURNAL_STREAM");
	int f;

	if (env && *env && (f = log_parse_format(env)) >= 0)
		return f;
	return isatty(STDERR_FILENO) && !(journal && *journal);
}

static void log_vmsg(int prio, const char *fmt, va_list ap)
{
	static const char *const words[] = { "emerg",   "alert",  "crit", "error",
					     "warning", "notice", "info", "debug" };
	char line[1024];
	size_t len;
	int n;

	if (prio > log_get_level())
		return;
	if (log_text < 0)
		log_text = log_default_format();
	if (log_text) {
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		n = (int)strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
		n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03ld rxgemmd %s: ",
			      ts.tv_nsec / 1000000, words[prio & 7]);
	} else {
		n = snprintf(line, sizeof(line), "<%d>rxgemmd: ", prio);
	}
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

/* The length of the UTF-8 sequence at s (of at most len bytes), or 0 when none starts
 * there: overlong forms, surrogates and code points above U+10FFFF are not UTF-8. */
static size_t log_utf8_seq(const unsigned char *s, size_t len)
{
	uint32_t cp;
	size_t n;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

bool text_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;

	for (size_t i = 0, n; i < len; i += n)
		if (!(n = log_utf8_seq(p + i, len - i)))
			return false;
	return true;
}

size_t text_copy_utf8(char *dst, size_t size, const char *src)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t len = strlen(src), at = 0, n;

	if (size == 0)
		return 0;
	/* Whole characters only: a cut one would make every reader of dst fail. */
	while (at < len && (n = log_utf8_seq(p + at, len - at)) && at + n < size)
		at += n;
	memcpy(dst, src, at);
	dst[at] = '\0';
	return at;
}

size_t log_escape(char *dst, size_t size, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)src;
	size_t len = strlen(src), at = 0, n;

	if (size == 0)
		return 0;
	for (size_t i = 0; i < len; i += n) {
		char esc[16];
		size_t elen = 0;

		n = log_utf8_seq(p + i, len - i);
		if (n == 1 && p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\') {
			esc[elen++] = (char)p[i];
		} else if (n > 1 && !(n == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0)) {
			/* A printable character beyond ASCII (C1 controls are escaped). */
			memcpy(esc, p + i, n);
			elen = n;
		} else {
			/* Controls, the backslash, and what is not UTF-8: \xHH per byte, so
			 * nothing a client sends can end a line or look like a prefix. */
			n = n ? n : 1;
			for (size_t j = 0; j < n; j++) {
				esc[elen++] = '\\';
				esc[elen++] = 'x';
				esc[elen++] = hex[p[i + j] >> 4];
				esc[elen++] = hex[p[i + j] & 15];
			}
		}
		if (at + elen >= size)
			break; /* never half an escape or half a character */
		memcpy(dst + at, esc, elen);
		at += elen;
	}
	dst[at] = '\0';
	return at;
}
