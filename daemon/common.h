/* common.h: what every part of the daemon uses: the log, the clock, text checks, and
 * (status.h) the status and error of a reply. No OpenCL, no libuv. */
#ifndef RXGEMMD_COMMON_H
#define RXGEMMD_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "status.h"

/* ---- log.c: stderr with syslog priority prefixes ("<6>"), which journald understands ---- */
void log_set_level(int level);
int log_get_level(void);
/* "debug", "info", "notice", "warning", "error" or a number 0-7; -1 when unknown. */
int log_parse_level(const char *s);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For start-up failures and broken invariants only: logs and exits 1. */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t now_ns(void); /* CLOCK_MONOTONIC */
/* The format: RXGEMMD_LOG_FORMAT "text" (local time and a level word, for people) or
 * "journal" ("<N>" prefixes); unset, text on a terminal outside journald (rxgemmd(8)). */
/* Client text made safe for one log line: printable ASCII and printable UTF-8 characters
 * as they are; controls, the backslash and bytes that are not UTF-8 as \xHH. Writes at
 * most size - 1 bytes and a NUL into dst, never half an escape; returns the length. */
size_t log_escape(char *dst, size_t size, const char *src);
/* Whether s[0..len) is UTF-8 (no overlong forms, surrogates or code points > U+10FFFF). */
bool text_utf8_valid(const char *s, size_t len);
/* Copy src (UTF-8) into dst of size bytes, cut only between characters; returns the length
 * copied. */
size_t text_copy_utf8(char *dst, size_t size, const char *src);

#endif
