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
	char tmp[21];
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, len = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		buf[len++] = '-';
	while (n)
		buf[len++] = tmp[--n];
	return len;
}
