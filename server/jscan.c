/* jscan.c: the validating JSON scanner of jscan.h (RFC 8259 grammar). */
#include "jscan.h"

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Longest run of digits accepted in a number (beyond it, precision and
 * range are the full parser's business). */
#define MAX_DIGITS 15

static int hex4(const char *s, size_t len, size_t p, unsigned *v)
{
	*v = 0;
	if (p + 4 > len)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = s[p + (size_t)i];
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
			     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
						    : 16u;

		if (d > 15)
			return -1;
		*v = *v * 16 + d;
	}
	return 0;
}

/* Returns the length of the valid UTF-8 sequence (2-4 bytes) starting
 * with lead byte c at s[p], or 0 (overlongs, surrogates, > U+10FFFF and
 * truncations are invalid). */
static size_t utf8_len(const char *s, size_t len, size_t p)
{
	const unsigned char *u = (const unsigned char *)s + p;
	size_t n = u[0] >= 0xf0 ? 4 : u[0] >= 0xe0 ? 3 : u[0] >= 0xc2 ? 2 : 0;

	if (!n || u[0] > 0xf4 || p + n > len)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((u[i] & 0xc0) != 0x80)
			return 0;
	if ((u[0] == 0xe0 && u[1] < 0xa0) || (u[0] == 0xed && u[1] > 0x9f) ||
	    (u[0] == 0xf0 && u[1] < 0x90) || (u[0] == 0xf4 && u[1] > 0x8f))
		return 0;
	return n;
}

/* Returns the offset of the first non-ASCII byte at or after i, or len. */
static size_t ascii_run(const char *s, size_t len, size_t i)
{
#if defined(__SSE2__)
	/* Text is mostly ASCII: 64 bytes a step, found by the OR of four
	 * vectors; the 16-byte loop then finds where a step stopped. */
	while (len - i >= 64) {
		const __m128i *v = (const __m128i *)(const void *)(s + i);
		__m128i a =
		    _mm_or_si128(_mm_loadu_si128(v), _mm_loadu_si128(v + 1));
		__m128i b = _mm_or_si128(_mm_loadu_si128(v + 2),
					 _mm_loadu_si128(v + 3));

		if (_mm_movemask_epi8(_mm_or_si128(a, b)))
			break;
		i += 64;
	}
	while (len - i >= 16) {
		unsigned m = (unsigned)_mm_movemask_epi8(
		    _mm_loadu_si128((const __m128i *)(const void *)(s + i)));

		if (m)
			return i + (size_t)__builtin_ctz(m);
		i += 16;
	}
	/* The tail: one vector ending at the end, not a loop over bytes.
	 * The bytes it shares with what came before i are masked off: they
	 * may be the multi-byte sequence the caller just stepped over. */
	if (i < len && len >= 16) {
		__m128i v = _mm_loadu_si128(
		    (const __m128i *)(const void *)(s + len - 16));
		unsigned m = (unsigned)_mm_movemask_epi8(v) &
			     (0xffffu << (i - (len - 16)));

		return m ? len - 16 + (size_t)__builtin_ctz(m) : len;
	}
#endif
	while (i + 8 <= len) {
		uint64_t w;

		memcpy(&w, s + i, 8);
		if (w & 0x8080808080808080ull)
			break;
		i += 8;
	}
	while (i < len && !((unsigned char)s[i] & 0x80))
		i++;
	return i;
}

int jscan_utf8_valid(const char *s, size_t len)
{
	size_t i = 0;

	while ((i = ascii_run(s, len, i)) < len) {
		size_t n = utf8_len(s, len, i);

		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

/* Plain bytes: anything but a quote, a backslash, a control character
 * or non-ASCII. String contents are mostly runs of them (bodies above
 * all), so runs are skipped 16 or 8 bytes at a time. */
#if defined(__SSE2__)
/* The movemask of v's bytes that are not plain. */
static unsigned not_plain(__m128i v)
{
	/* Signed compare: non-ASCII bytes are negative, so "< 0x20" also
	 * catches them. */
	__m128i bad =
	    _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
				      _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
			 _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));

	return (unsigned)_mm_movemask_epi8(bad);
}

/* Returns how many of the 16 bytes at s are plain before the first one
 * that is not (16: all). */
static size_t plain16(const char *s)
{
	unsigned m =
	    not_plain(_mm_loadu_si128((const __m128i *)(const void *)s));

	return m ? (size_t)__builtin_ctz(m) : 16;
}

/* plain16 for the 8 bytes at s. */
static size_t plain8(const char *s)
{
	/* The 8 upper bytes are zero, hence "bad": only the low 8 count. */
	unsigned m =
	    not_plain(_mm_loadl_epi64((const __m128i *)(const void *)s)) &
	    0xffu;

	return m ? (size_t)__builtin_ctz(m) : 8;
}
#else
/* Returns 16 when none of the 16 bytes at s is special, else 0 (the
 * byte loop then finds which). */
static size_t plain16(const char *s)
{
	const uint64_t ones = 0x0101010101010101u, high = ones * 0x80;

	for (int k = 0; k < 2; k++) {
		uint64_t x;

		memcpy(&x, s + 8 * k, 8);
		/* With every byte below 0x80, a subtraction sets a byte's
		 * high bit only where that byte is below the subtrahend
		 * (or follows one that is). */
		if ((x & high) ||
		    (((x - ones * 0x20) | ((x ^ ones * '"') - ones) |
		      ((x ^ ones * '\\') - ones)) &
		     high))
			return 0;
	}
	return 16;
}
#endif

size_t jscan_plain_run(const char *s, size_t len)
{
	size_t p = 0;

	while (len - p >= 16) {
		size_t k = plain16(s + p);

		p += k;
		if (k < 16)
#if defined(__SSE2__)
			return p; /* plain16 counts exactly. */
#else
			break;
#endif
	}
#if defined(__SSE2__)
	/* Fewer than 16 bytes left: a vector ending at the end of the
	 * string (overlapping bytes already found plain, so what it finds
	 * is at or after p), not a loop over bytes. Most strings the hub
	 * writes (ids, names, topics) are short, so this is most of the
	 * work for them. */
	if (p < len && len >= 16)
		return len - 16 + plain16(s + len - 16);
	if (len - p >= 8) {
		size_t k = plain8(s + p);

		if (k < 8)
			return p + k;
		p += 8;
	}
	if (p < len && len >= 8)
		return len - 8 + plain8(s + len - 8);
#endif
	while (p < len) {
		unsigned char c = (unsigned char)s[p];

		if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
			break;
		p++;
	}
	return p;
}

size_t jscan_plain_string(const char *s, size_t len, size_t *pos)
{
	size_t n = jscan_plain_run(s + *pos, len - *pos);

	if (*pos + n >= len || s[*pos + n] != '"')
		return (size_t)-1;
	*pos += n + 1;
	return n;
}

#if defined(__SSE2__)
/* The value of the n (1-8) ASCII digits at s, from a load of the 8 bytes
 * at s (x86: little-endian): the digits are moved up behind zeros, then
 * pairs, quads and the two halves are combined by multiplication, three
 * steps instead of a multiply-add per digit. */
static uint64_t value8(const char *s, size_t n)
{
	uint64_t v;

	memcpy(&v, s, sizeof v);
	v = (v - 0x3030303030303030u) << (8 * (8 - n));
	v = (v * 10 + (v >> 8)) & 0x00ff00ff00ff00ffu;
	v = (v * 100 + (v >> 16)) & 0x0000ffff0000ffffu;
	return (v * 10000 + (v >> 32)) & 0xffffffffu;
}
#endif

int jscan_small_int(const char *s, size_t len, size_t *pos, int64_t *out)
{
	size_t q = *pos + (*pos < len && s[*pos] == '-'), d = q;
	int64_t v = 0;

#if defined(__SSE2__)
	/* Timestamps (13 digits) and ids: the digit run is found with one
	 * vector when 16 bytes are there to load. */
	if (len - q >= 16) {
		__m128i c =
		    _mm_loadu_si128((const __m128i *)(const void *)(s + q));
		__m128i t = _mm_sub_epi8(c, _mm_set1_epi8('0'));
		/* t <= 9 unsigned: a digit. */
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(
		    _mm_max_epu8(t, _mm_set1_epi8(9)), _mm_set1_epi8(9)));
		size_t n = (size_t)__builtin_ctz(~m);

		if (!n || n > MAX_DIGITS || (s[q] == '0' && n > 1))
			return 0;
		v = n <= 8 ? (int64_t)value8(s + q, n)
			   : (int64_t)(value8(s + q, n - 8) * 100000000u +
				       value8(s + q + n - 8, 8));
		*out = q > *pos ? -v : v;
		*pos = q + n;
		return 1;
	}
#endif
	while (d < len && d - q <= MAX_DIGITS && s[d] >= '0' && s[d] <= '9')
		v = v * 10 + (s[d++] - '0');
	if (d == q || d - q > MAX_DIGITS || (s[q] == '0' && d - q > 1))
		return 0;
	*out = q > *pos ? -v : v;
	*pos = d;
	return 1;
}

int jscan_string(const char *s, size_t len, size_t *pos, int *escaped)
{
	size_t p = *pos + 1;

	*escaped = 0;
	while (p < len) {
		unsigned char c;
		unsigned u, lo;

		if (len - p >= 16) {
			size_t k = plain16(s + p);

			p += k;
			if (k == 16)
				continue;
		}
		c = (unsigned char)s[p];

		if (c == '"') {
			*pos = p + 1;
			return JSCAN_OK;
		}
		if (c < 0x20)
			return JSCAN_BAD;
		if (c >= 0x80) {
			size_t n = utf8_len(s, len, p);

			if (!n)
				return JSCAN_BAD;
			p += n;
			continue;
		}
		if (c != '\\') {
			p++;
			continue;
		}
		*escaped = 1;
		if (p + 1 >= len)
			return JSCAN_BAD;
		switch (s[p + 1]) {
		case '"':
		case '\\':
		case '/':
		case 'b':
		case 'f':
		case 'n':
		case 'r':
		case 't':
			p += 2;
			break;
		case 'u':
			if (hex4(s, len, p + 2, &u))
				return JSCAN_BAD;
			p += 6;
			if (u >= 0xdc00 && u <= 0xdfff)
				return JSCAN_BAD; /* A lone low surrogate. */
			if (u >= 0xd800 && u <= 0xdbff) {
				/* A high surrogate needs its low half. */
				if (p + 1 >= len || s[p] != '\\' ||
				    s[p + 1] != 'u' ||
				    hex4(s, len, p + 2, &lo) || lo < 0xdc00 ||
				    lo > 0xdfff)
					return JSCAN_BAD;
				p += 6;
			}
			/* \u0000 is valid JSON, but a NUL inside a string
			 * surprises C consumers: leave it to the full
			 * parser, which the hub already copes with. */
			if (u == 0)
				return JSCAN_UNSURE;
			break;
		default:
			return JSCAN_BAD;
		}
	}
	return JSCAN_BAD;
}

static int digits(const char *s, size_t len, size_t *p)
{
	size_t start = *p;

	while (*p < len && s[*p] >= '0' && s[*p] <= '9')
		(*p)++;
	return (int)(*p - start);
}

static int number(const char *s, size_t len, size_t *pos)
{
	size_t p = *pos;
	int n, total;

	if (p < len && s[p] == '-')
		p++;
	if (p >= len)
		return JSCAN_BAD;
	if (s[p] == '0') {
		p++;
		total = 1;
	} else if (s[p] >= '1' && s[p] <= '9') {
		total = digits(s, len, &p);
	} else {
		return JSCAN_BAD;
	}
	if (p < len && s[p] == '.') {
		p++;
		n = digits(s, len, &p);
		if (!n)
			return JSCAN_BAD;
		total += n;
	}
	if (p < len && (s[p] == 'e' || s[p] == 'E'))
		return JSCAN_UNSURE; /* Range checks: the full parser's. */
	if (total > MAX_DIGITS)
		return JSCAN_UNSURE;
	*pos = p;
	return JSCAN_OK;
}

static int literal(const char *s, size_t len, size_t *pos, const char *word,
		   size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (*pos + i >= len || s[*pos + i] != word[i])
			return JSCAN_BAD;
	*pos += n;
	return JSCAN_OK;
}

static int value(const char *s, size_t len, size_t *pos, int depth)
{
	int rc, esc;

	jscan_ws(s, len, pos);
	if (*pos >= len)
		return JSCAN_BAD;
	switch (s[*pos]) {
	case '"':
		return jscan_string(s, len, pos, &esc);
	case 't':
		return literal(s, len, pos, "true", 4);
	case 'f':
		return literal(s, len, pos, "false", 5);
	case 'n':
		return literal(s, len, pos, "null", 4);
	case '[':
	case '{': {
		char close = s[*pos] == '[' ? ']' : '}';
		int object = close == '}';

		if (depth >= JSCAN_MAX_DEPTH)
			return JSCAN_UNSURE;
		(*pos)++;
		jscan_ws(s, len, pos);
		if (*pos < len && s[*pos] == close) {
			(*pos)++;
			return JSCAN_OK;
		}
		for (;;) {
			if (object) {
				jscan_ws(s, len, pos);
				if (*pos >= len || s[*pos] != '"')
					return JSCAN_BAD;
				rc = jscan_string(s, len, pos, &esc);
				if (rc)
					return rc;
				jscan_ws(s, len, pos);
				if (*pos >= len || s[*pos] != ':')
					return JSCAN_BAD;
				(*pos)++;
			}
			rc = value(s, len, pos, depth + 1);
			if (rc)
				return rc;
			jscan_ws(s, len, pos);
			if (*pos >= len)
				return JSCAN_BAD;
			if (s[*pos] == close) {
				(*pos)++;
				return JSCAN_OK;
			}
			if (s[*pos] != ',')
				return JSCAN_BAD;
			(*pos)++;
		}
	}
	default:
		return number(s, len, pos);
	}
}

int jscan_value(const char *s, size_t len, size_t *pos)
{
	return value(s, len, pos, 0);
}

int jscan_obj_begin(jscan_obj_t *o, const char *s, size_t len)
{
	o->s = s;
	o->len = len;
	o->pos = 0;
	o->first = 1;
	jscan_ws(s, len, &o->pos);
	if (o->pos >= len || s[o->pos] != '{')
		return -1;
	o->pos++;
	return 0;
}
