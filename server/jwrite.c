/* jwrite.c: JSON text into measured buffers (see jwrite.h). */
#include "jwrite.h"

#include "jscan.h"

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

size_t jw_i64(int64_t v, char *buf)
{
	/* Two digits per division: a millisecond timestamp has 13. */
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
