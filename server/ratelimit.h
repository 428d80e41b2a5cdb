/* ratelimit.h: a token bucket, used per connection and per token. */
#ifndef PARLEY_RATELIMIT_H
#define PARLEY_RATELIMIT_H

#include <stdint.h>

/* Refills the bucket (*level, last refill *last_ms) at rate tokens per
 * second up to burst, then takes one token. Returns 1 when a token was
 * taken, 0 when the bucket is empty (nothing taken). */
static inline int ratelimit_take(double *level, uint64_t *last_ms, double rate,
				 double burst, uint64_t now_ms)
{
	if (now_ms > *last_ms) {
		*level += (double)(now_ms - *last_ms) * rate / 1000.0;
		*last_ms = now_ms;
	}
	if (*level > burst)
		*level = burst;
	if (*level < 1.0)
		return 0;
	*level -= 1.0;
	return 1;
}

#endif
