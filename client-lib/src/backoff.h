/* backoff.h: reconnect delays with "decorrelated jitter": each delay is
 * drawn uniformly between the base and three times the previous delay,
 * capped, so that many clients cut off at once do not return in step. */
#ifndef PARLEY_BACKOFF_H
#define PARLEY_BACKOFF_H

#include <stdint.h>

/* One backoff sequence; plain data, no allocation. */
typedef struct parley__backoff {
	uint64_t base_ms; /* Smallest delay (and the first one's floor). */
	uint64_t cap_ms;  /* Largest delay. */
	uint64_t prev_ms; /* Last delay returned; base_ms after a reset. */
	uint64_t rng;	  /* xorshift64* state, never 0. */
} parley__backoff;

/* Starts a sequence with these bounds (cap_ms >= base_ms >= 1) and a seed
 * (any value; 0 is replaced). */
void parley__backoff_init(parley__backoff *b, uint64_t base_ms, uint64_t cap_ms,
			  uint64_t seed);

/* Returns the next delay in ms, in [base_ms, cap_ms]. */
uint64_t parley__backoff_next(parley__backoff *b);

/* Forgets the history after a success: the next delay is short again. */
void parley__backoff_reset(parley__backoff *b);

#endif
