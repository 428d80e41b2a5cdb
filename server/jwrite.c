/* jwrite.c: JSON text into measured buffers (see jwrite.h). */
#include "jwrite.h"

#include "jscan.h"

#if defined(__SSE2__)
#include <emmintrin.h>

/* Nonzero when one of the 16 bytes at s is a control character other than
 * NUL, a quote or a backslash. */
static int escapes16(const char *s)
{
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
	__m128i lim = _mm_set1_epi8(0x1e);
	/* c - 1 wraps NUL to 0xff, so c - 1 <= 0x1e is exactly 1..0x1f. */
	__m128i ctl = _mm_cmpeq_epi8(
	    _mm_max_epu8(_mm_sub_epi8(v, _mm_set1_epi8(1)), lim), lim);
	__m128i q = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
				 _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));

	return _mm_movemask_epi8(_mm_or_si128(ctl, q));
}
#endif

size_t jw_str_len(const char *s, size_t *raw)
{
	size_t len = strlen(s), extra = 0;

	/* Non-ASCII bytes are written as they are: only the rest of the
	 * string after the first non-plain byte needs looking at. */
	for (size_t i = jscan_plain_run(s, len); i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20)
			extra += 5; /* \u00XX */
		else if (c == '"' || c == '\\')
			extra += 1;
	}
	*raw = len;
	return len + extra + 2;
}

int jw_plain_nul(const char *s, size_t len)
{
	size_t p = 0;

#if defined(__SSE2__)
	if (len >= 16) {
		for (; len - p > 16; p += 16)
			if (escapes16(s + p))
				return 0;
		/* The last vector ends at the end; the overlap is harmless. */
		return !escapes16(s + len - 16);
	}
#endif
	for (; p < len; p++) {
		unsigned char c = (unsigned char)s[p];

		if ((c && c < 0x20) || c == '"' || c == '\\')
			return 0;
	}
	return 1;
}

char *jw_str_put(char *d, const char *s, size_t raw, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	*d++ = '"';
	if (n == raw + 2) { /* Nothing to escape: the usual case. */
		memcpy(d, s, raw);
		d += raw;
	} else {
		for (; *s; s++) {
			unsigned char c = (unsigned char)*s;

			if (c >= 0x20 && c != '"' && c != '\\') {
				*d++ = (char)c;
				continue;
			}
			*d++ = '\\';
			if (c >= 0x20) {
				*d++ = (char)c;
				continue;
			}
			memcpy(d, "u00", 3);
			d[3] = hex[c >> 4];
			d[4] = hex[c & 15];
			d += 5;
		}
	}
	*d++ = '"';
	return d;
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* The 8 decimal digits of x < 10^8, leading zeros included, as the bytes
 * of a little-endian word less '0' each (byte 0 the most significant
 * digit). Lanes of 32, 16 and 8 bits split by multiplying with
 * reciprocals (exact in these ranges): three steps for 8 digits. */
static uint64_t digits8(uint32_t x)
{
	uint64_t v = x / 10000 | (uint64_t)(x % 10000) << 32;
	uint64_t q = ((v * 10486) >> 20) & 0x0000007f0000007fu; /* / 100 */

	v = q | (v - 100 * q) << 16;
	q = ((v * 103) >> 10) & 0x000f000f000f000fu; /* / 10 */
	return q | (v - 10 * q) << 8;
}

/* Writes the digits of x (0 < x < 10^8) without leading zeros at d;
 * returns their count. */
static size_t put_digits8(char *d, uint32_t x)
{
	uint64_t w = digits8(x);
	size_t lead = (size_t)__builtin_ctzll(w) / 8;
	char tmp[8];

	w += 0x3030303030303030u;
	memcpy(tmp, &w, sizeof tmp);
	memcpy(d, tmp + lead, 8 - lead);
	return 8 - lead;
}
#endif

size_t jw_i64(int64_t v, char *buf)
{
	/* Beyond 16 digits (or on a big-endian machine), two digits per
	 * division. */
	static const char pairs[] = "00010203040506070809"
				    "10111213141516171819"
				    "20212223242526272829"
				    "30313233343536373839"
				    "40414243444546474849"
				    "50515253545556575859"
				    "60616263646566676869"
				    "70717273747576777879"
				    "80818283848586878889"
				    "90919293949596979899";
	char tmp[20];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	size_t n = sizeof tmp, len = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	/* Up to 16 digits (every timestamp): 8 at a time. */
	if (u && u < 10000000000000000u) {
		if (v < 0)
			buf[len++] = '-';
		if (u < 100000000u)
			return len + put_digits8(buf + len, (uint32_t)u);
		len += put_digits8(buf + len, (uint32_t)(u / 100000000u));
		u = digits8((uint32_t)(u % 100000000u)) + 0x3030303030303030u;
		memcpy(buf + len, &u, 8);
		return len + 8;
	}
#endif
	while (u >= 100) {
		n -= 2;
		memcpy(tmp + n, pairs + 2 * (u % 100), 2);
		u /= 100;
	}
	if (u >= 10) {
		n -= 2;
		memcpy(tmp + n, pairs + 2 * u, 2);
	} else {
		tmp[--n] = (char)('0' + u);
	}
	if (v < 0)
		buf[len++] = '-';
	memcpy(buf + len, tmp + n, sizeof tmp - n);
	return len + sizeof tmp - n;
}
