/* topic.c: topic and pattern validation (strict UTF-8) and MQTT-style
 * matching and coverage, without allocation. */
#include "topic.h"

#include "err.h"

/* Returns the length (2-4) of the valid, non-control multi-byte UTF-8
 * sequence at p (n bytes available), or 0. The ranges are those of RFC 3629
 * table 3.7, which exclude overlongs, surrogates and code points above
 * U+10FFFF; C1 controls (U+0080-U+009F, "\xc2\x80"-"\xc2\x9f") are refused
 * here too because they are control characters. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		if (c == 0xc2)
			lo = 0xa0;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else {
		return 0;
	}
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

/* The shared checker: returns true when s[0..len) is a valid topic, or a
 * valid filter when wild is set; *pattern says whether it held a wildcard. */
static bool check(const char *s, size_t len, bool wild, bool *pattern)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t seg = 0; /* Index where the current segment starts. */

	*pattern = false;
	if (len < 1 || len > TOPIC_MAX_BYTES)
		return false;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n;

		if (c == '/') {
			if (i == seg)
				return false;
			seg = ++i;
		} else if (c == '+' || c == '#') {
			/* A wildcard is a whole segment; '#' is also last. */
			if (!wild || i != seg)
				return false;
			if (c == '#' ? i + 1 != len
				     : i + 1 < len && p[i + 1] != '/')
				return false;
			*pattern = true;
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			return false;
		} else if (c < 0x80) {
			i++;
		} else if ((n = utf8_seq(p + i, len - i)) != 0) {
			i += n;
		} else {
			return false;
		}
	}
	return p[len - 1] != '/';
}

int topic_validate(const char *s, size_t len)
{
	bool pattern;

	return check(s, len, false, &pattern) ? 0 : PE_BAD_TOPIC;
}

int topic_validate_filter(const char *s, size_t len, bool *is_pattern)
{
	bool pattern;

	if (!check(s, len, true, &pattern))
		return PE_BAD_PATTERN;
	*is_pattern = pattern;
	return 0;
}

/* True when the segment at p is exactly the one-character wildcard w. */
static bool is_wild(const char *p, char w)
{
	return p[0] == w && (p[1] == '/' || p[1] == 0);
}

/* Advances p past the segment it points at, to its '/' or NUL. */
static const char *seg_end(const char *p)
{
	while (*p && *p != '/')
		p++;
	return p;
}

bool topic_match(const char *filter, const char *topic)
{
	const char *f = filter, *t = topic;

	for (;;) {
		/* Here f and t each point at the start of a segment, and t's
		 * segment is not empty (valid topics have none). */
		if (is_wild(f, '#'))
			return true;
		if (is_wild(f, '+')) {
			f++;
			t = seg_end(t);
		} else {
			while (*f == *t && *f && *f != '/') {
				f++;
				t++;
			}
			if ((*f && *f != '/') || (*t && *t != '/'))
				return false;
		}
		if (!*f)
			return !*t;
		if (!*t) /* "a/#" also matches "a". */
			return is_wild(f + 1, '#');
		f++;
		t++;
	}
}

bool topic_covers(const char *outer, const char *inner)
{
	const char *o = outer, *i = inner;

	for (;;) {
		if (is_wild(o, '#'))
			return true;
		if (is_wild(i, '#')) {
			/* inner matches every continuation here, of any length;
			 * outer, not "#" here, must still accept them all. That
			 * is only possible at the top, where a topic has at
			 * least one segment, so "+/#" covers "#". */
			return i == inner && is_wild(o, '+') && o[1] == '/' &&
			       is_wild(o + 2, '#');
		}
		if (is_wild(o, '+')) {
			o++;
			i = seg_end(i);
		} else {
			/* A literal covers only the same literal, never "+". */
			while (*o == *i && *o && *o != '/') {
				o++;
				i++;
			}
			if ((*o && *o != '/') || (*i && *i != '/'))
				return false;
		}
		if (!*o)
			return !*i;
		if (!*i)
			return is_wild(o + 1, '#');
		o++;
		i++;
	}
}
