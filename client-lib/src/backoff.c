/* backoff.c: decorrelated-jitter reconnect delays (see backoff.h). */
#include "backoff.h"

/* Returns the next value of the xorshift64* generator. */
static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

void parley__backoff_init(parley__backoff *b, uint64_t base_ms, uint64_t cap_ms,
			  uint64_t seed)
{
	b->base_ms = base_ms ? base_ms : 1;
	b->cap_ms = cap_ms < b->base_ms ? b->base_ms : cap_ms;
	b->prev_ms = b->base_ms;
	b->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
}

uint64_t parley__backoff_next(parley__backoff *b)
{
	uint64_t hi = b->prev_ms * 3, d;

	if (hi > b->cap_ms || hi < b->prev_ms) /* Cap, and guard overflow. */
		hi = b->cap_ms;
	if (hi <= b->base_ms)
		d = b->base_ms;
	else
		d = b->base_ms + rng_next(&b->rng) % (hi - b->base_ms + 1);
	b->prev_ms = d;
	return d;
}

void parley__backoff_reset(parley__backoff *b)
{
	b->prev_ms = b->base_ms;
}
