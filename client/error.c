/* error.c: names for librxgemm's return codes (the RXG_ERRORS table in rxgemm.h). */
#include "rxgemm.h"

/* Built with -fvisibility=hidden: see transport.h. */
#define RXG_EXPORT __attribute__((visibility("default")))

RXG_EXPORT const char *rxg_strerror(int code)
{
	switch (code) {
#define RXG_CASE_(name, value, text) \
	case name:                   \
		return text;
		RXG_ERRORS(RXG_CASE_)
#undef RXG_CASE_
	}
	return "unknown error";
}
