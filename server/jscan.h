/* jscan.h: a validating JSON scanner that builds nothing: it checks that
 * bytes form one JSON value and says where it ends. The publish fast path
 * uses it to keep a message body as the client's own bytes instead of
 * parsing it into a tree and serialising it again. Conservative on
 * purpose: anything it is unsure of (numbers with exponents or many
 * digits, deep nesting) is reported as JSCAN_UNSURE so that callers fall
 * back to the full parser. Strings are checked for valid UTF-8 here too,
 * so any input is safe; the hub checks whole messages first with
 * jscan_utf8_valid. */
#ifndef PARLEY_JSCAN_H
#define PARLEY_JSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

/* Walks the members of one JSON object text, for decoders that take
 * fields without building a tree: keys must be plain strings (no
 * escapes), values are validated and given as byte spans. */
typedef struct jscan_obj {
	const char *s; /* The text. */
	size_t len;    /* Its length. */
	size_t pos;    /* Where the walk stands. */
	int first;     /* No member was returned yet. */
} jscan_obj_t;

/* Starts a walk over the object text s (leading whitespace allowed).
 * Returns 0, or -1 when s does not start with an object. */
int jscan_obj_begin(jscan_obj_t *o, const char *s, size_t len);

/* Returns 1 when the len bytes at s are valid UTF-8 (no overlongs,
 * surrogates or code points above U+10FFFF), else 0. ASCII runs go a word
 * at a time: RFC 6455 wants every text message checked, and lws's own
 * check (LWS_SERVER_OPTION_VALIDATE_UTF8) went byte by byte at ~8% of a
 * busy hub. */
int jscan_utf8_valid(const char *s, size_t len);

/* Returns how many bytes at the start of s (len bytes) are plain: not a
 * quote, a backslash, a control character or non-ASCII. Word at a time
 * (SSE2 where the compiler targets it). */
size_t jscan_plain_run(const char *s, size_t len);

/* For decoders of one known layout (what parley's own encoders write),
 * which compare the literals between values instead of walking members:
 * JSCAN_LIT steps *pos over the literal lit (a string constant) when s
 * holds it at *pos, and is 0 otherwise. */
#define JSCAN_LIT(s, len, pos, lit)                                          \
	((len) - *(pos) >= sizeof lit - 1 &&                                 \
	 !memcmp((s) + *(pos), lit, sizeof lit - 1) &&                       \
	 (*(pos) += sizeof lit - 1, 1))

/* A string of plain bytes (see jscan_plain_run) whose contents start at
 * s[*pos], just after its opening quote: returns their length with *pos
 * past the closing quote, or (size_t)-1 when a byte that is not plain, or
 * the end, comes first (an escape, a control byte, non-ASCII: left to
 * a full scan). */
size_t jscan_plain_string(const char *s, size_t len, size_t *pos);

/* An integer at s[*pos] that jscan_value takes as sure: an optional minus,
 * then 1 to 15 digits without a leading zero. Returns 1 with *out and *pos
 * past it, or 0 (anything else, left to a full scan). */
int jscan_small_int(const char *s, size_t len, size_t *pos, int64_t *out);

/* Advances *pos past JSON whitespace. Inline: called around every key
 * and value, and there is usually none. */
static inline void jscan_ws(const char *s, size_t len, size_t *pos)
{
	while (*pos < len && (s[*pos] == ' ' || s[*pos] == '\t' ||
			      s[*pos] == '\n' || s[*pos] == '\r'))
		(*pos)++;
}

/* Returns 1 with the next member: the key at s[*ks .. *ks + *kl) (quotes
 * excluded) and the value at s[*vs .. *ve). Returns 0 at the end of the
 * object when nothing but whitespace follows it, or -1 for anything else
 * (an escaped key, bad JSON, trailing bytes, a value jscan_value is
 * unsure of). Inline: the publish fast path calls it for every member. */
static inline int jscan_obj_next(jscan_obj_t *o, size_t *ks, size_t *kl,
				 size_t *vs, size_t *ve)
{
	const char *s = o->s;
	size_t len = o->len, p = o->pos;
	int esc;

	jscan_ws(s, len, &p);
	if (p >= len)
		return -1;
	if (s[p] == '}' && !o->first) {
		p++;
		jscan_ws(s, len, &p);
		o->pos = p;
		return p == len ? 0 : -1;
	}
	if (!o->first) {
		if (s[p] != ',')
			return -1;
		p++;
		jscan_ws(s, len, &p);
	}
	o->first = 0;
	if (p >= len || s[p] != '"')
		return -1;
	*ks = p + 1;
	if (jscan_string(s, len, &p, &esc) || esc)
		return -1;
	*kl = p - 1 - *ks;
	jscan_ws(s, len, &p);
	if (p >= len || s[p] != ':')
		return -1;
	p++;
	jscan_ws(s, len, &p);
	*vs = p;
	if (jscan_value(s, len, &p))
		return -1;
	*ve = p;
	o->pos = p;
	return 1;
}

#endif
