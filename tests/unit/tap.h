/* tap.h: the tiny assertion helpers shared by the unit tests. A test
 * binary exits non-zero when any check failed, and prints
 * "N passed, N failed". */
#ifndef PARLEY_TAP_H
#define PARLEY_TAP_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int tap_pass, tap_fail;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (cond) {                                                    \
			tap_pass++;                                            \
		} else {                                                       \
			tap_fail++;                                            \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
		}                                                              \
	} while (0)

#define CHECK_INT(a, b)                                                        \
	do {                                                                   \
		long long a_ = (long long)(a), b_ = (long long)(b);            \
		if (a_ == b_) {                                                \
			tap_pass++;                                            \
		} else {                                                       \
			tap_fail++;                                            \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n",  \
				__FILE__, __LINE__, #a, a_, b_);               \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *a_ = (a), *b_ = (b);                               \
		if (a_ && b_ && !strcmp(a_, b_)) {                             \
			tap_pass++;                                            \
		} else {                                                       \
			tap_fail++;                                            \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
				__FILE__, __LINE__, #a, a_ ? a_ : "(null)",    \
				b_ ? b_ : "(null)");                           \
		}                                                              \
	} while (0)

/* Advances the xorshift64 state *x (nonzero) and returns it: the
 * tests' reproducible stream of pseudo-random values. */
static inline uint64_t tap_xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static inline int tap_done(void)
{
	printf("%d passed, %d failed\n", tap_pass, tap_fail);
	return tap_fail ? 1 : 0;
}

#endif
