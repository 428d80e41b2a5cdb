/* topic.c: topic and filter validation by the hub's rules (DESIGN.md
 * "Words") and MQTT-style matching, used to route received messages to
 * the subscriptions whose filter they match. No allocation. */
#include <string.h>

#include "parley.h"

#define TOPIC_MAX_BYTES 255

/* Returns the byte length (2-4) of the well-formed, non-control UTF-8
 * sequence starting at s (n bytes left), or 0 when it is malformed,
 * overlong, a surrogate, above U+10FFFF, or a C1 control (U+0080-U+009F). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char b = s[0];
	unsigned char min2 = 0x80, max2 = 0xbf;
	size_t len, i;

	if (b >= 0xc2 && b <= 0xdf)
		len = 2, min2 = b == 0xc2 ? 0xa0 : 0x80;
	else if (b >= 0xe0 && b <= 0xef)
		len = 3, min2 = b == 0xe0 ? 0xa0 : 0x80,
		max2 = b == 0xed ? 0x9f : 0xbf;
	else if (b >= 0xf0 && b <= 0xf4)
		len = 4, min2 = b == 0xf0 ? 0x90 : 0x80,
		max2 = b == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (n < len || s[1] < min2 || s[1] > max2)
		return 0;
	for (i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

int parley_topic_check(const char *topic, int pattern)
{
	const unsigned char *s = (const unsigned char *)topic;
	size_t len, i = 0, start = 0;

	if (!topic)
		return PARLEY_EINVAL;
	len = strlen(topic);
	if (len == 0 || len > TOPIC_MAX_BYTES || s[len - 1] == '/')
		return PARLEY_EINVAL;
	while (i < len) {
		unsigned char b = s[i];
		size_t n;

		if (b == '/') {
			if (i == start) /* An empty segment. */
				return PARLEY_EINVAL;
			start = ++i;
			continue;
		}
		if (b == '+' || b == '#') {
			/* A wildcard fills its segment; '#' ends the filter. */
			int alone =
			    i == start && (i + 1 == len || s[i + 1] == '/');

			if (!pattern || !alone || (b == '#' && i + 1 != len))
				return PARLEY_EINVAL;
			i++;
			continue;
		}
		if (b < 0x20 || b == 0x7f)
			return PARLEY_EINVAL;
		if (b < 0x80) {
			i++;
			continue;
		}
		n = utf8_len(s + i, len - i);
		if (!n)
			return PARLEY_EINVAL;
		i += n;
	}
	return 0;
}

/* Returns the end (the '/' or NUL) of the segment starting at p. */
static const char *segment_end(const char *p)
{
	while (*p && *p != '/')
		p++;
	return p;
}

int parley_topic_matches(const char *filter, const char *topic)
{
	const char *f = filter, *t = topic;

	if (!filter || !topic)
		return 0;
	for (;;) {
		const char *fe = segment_end(f), *te = segment_end(t);

		if (fe - f == 1 && *f == '#')
			return 1;
		if (!(fe - f == 1 && *f == '+') &&
		    (fe - f != te - t || memcmp(f, t, (size_t)(fe - f))))
			return 0;
		if (!*fe && !*te)
			return 1;
		if (!*te) /* "a/#" matches "a" as in MQTT. */
			return !strcmp(fe, "/#");
		if (!*fe)
			return 0;
		f = fe + 1;
		t = te + 1;
	}
}
