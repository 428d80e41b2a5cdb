/* jscan.h: a validating JSON scanner that builds nothing: it checks that
 * bytes form one JSON value and says where it ends. The publish fast path
 * uses it to keep a message body as the client's own bytes instead of
 * parsing it into a tree and serialising it again. Conservative on
 * purpose: anything it is unsure of (numbers with exponents or many
 * digits, deep nesting) is reported as JSCAN_UNSURE so that callers fall
 * back to the full parser. Input must be valid UTF-8 (lws checks text
 * frames). */
#ifndef PARLEY_JSCAN_H
#define PARLEY_JSCAN_H

#include <stddef.h>

#define JSCAN_OK     0
#define JSCAN_BAD    -1 /* Not JSON. */
#define JSCAN_UNSURE -2 /* Possibly JSON, but left to the full parser. */

/* Deepest nesting handled here. */
#define JSCAN_MAX_DEPTH 32

/* Scans one value starting at s[*pos] (leading whitespace allowed).
 * Returns JSCAN_OK with *pos just past the value, or JSCAN_BAD /
 * JSCAN_UNSURE. */
int jscan_value(const char *s, size_t len, size_t *pos);

/* Scans a string starting at its opening quote at s[*pos]. Returns
 * JSCAN_OK with *pos past the closing quote and *escaped set when it
 * holds any escape; JSCAN_BAD for control characters or bad escapes
 * (including unpaired surrogates). */
int jscan_string(const char *s, size_t len, size_t *pos, int *escaped);

/* Returns how many bytes at the start of s (len bytes) are plain: not a
 * quote, a backslash, a control character or non-ASCII. Word at a time
 * (SSE2 where the compiler targets it). */
size_t jscan_plain_run(const char *s, size_t len);

/* Advances *pos past JSON whitespace. Inline: called around every key
 * and value, and there is usually none. */
static inline void jscan_ws(const char *s, size_t len, size_t *pos)
{
	while (*pos < len && (s[*pos] == ' ' || s[*pos] == '\t' ||
			      s[*pos] == '\n' || s[*pos] == '\r'))
		(*pos)++;
}

#endif
