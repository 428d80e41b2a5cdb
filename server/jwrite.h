/* jwrite.h: writing JSON text into buffers of a measured size. The hot
 * encoders (client and federation msg frames, publish acks) measure every
 * field first, allocate the frame once, then write in place. */
#ifndef PARLEY_JWRITE_H
#define PARLEY_JWRITE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Returns the length of the NUL-terminated s written as a JSON string,
 * quotes included; *raw gets strlen(s). s must be valid UTF-8 (validated
 * topics, our own texts, strings Jansson decoded): only quotes,
 * backslashes and control characters are escaped. */
size_t jw_str_len(const char *s, size_t *raw);

/* Returns 1 when none of the len bytes at s (several NUL-terminated
 * strings back to back: NULs are allowed) is one a JSON string escapes:
 * then each string's JSON length is its length plus the quotes, with no
 * jw_str_len. 16 bytes a step: a message's four strings cost less
 * together than measuring one of them did. */
int jw_plain_nul(const char *s, size_t len);

/* Writes s as a JSON string at d, given jw_str_len's answers; returns the
 * end. */
char *jw_str_put(char *d, const char *s, size_t raw, size_t n);

/* Writes v in decimal into buf (at least 21 bytes); returns its length. */
size_t jw_i64(int64_t v, char *buf);

/* Copies a string literal to d and advances d. */
#define JW_LIT(d, lit)                                                         \
	do {                                                                   \
		memcpy((d), (lit), sizeof(lit) - 1);                           \
		(d) += sizeof(lit) - 1;                                        \
	} while (0)

#endif
