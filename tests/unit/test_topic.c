/* test_topic.c: unit tests of topic/pattern validation, matching and
 * coverage, with exhaustive checks against a brute-force reference. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "tap.h"
#include "topic.h"

/* One validation case. */
struct vcase {
	const char *s;	 /* Input bytes. */
	size_t len;	 /* Bytes of s; 0 means strlen(s). */
	int topic;	 /* Expected topic_validate result. */
	int filter;	 /* Expected topic_validate_filter result. */
	bool is_pattern; /* Expected *is_pattern when filter is 0. */
};

#define OK 0
#define BT PE_BAD_TOPIC
#define BP PE_BAD_PATTERN

static const struct vcase vcases[] = {
    {"a", 0, OK, OK, false},
    {"forum/zev/heavy-duty", 0, OK, OK, false},
    {"a b/c.d_e~f", 0, OK, OK, false},
    {"$SYS/x", 0, OK, OK, false},
    /* Segments. */
    {"", 0, BT, BP, false},
    {"/", 0, BT, BP, false},
    {"/a", 0, BT, BP, false},
    {"a/", 0, BT, BP, false},
    {"a//b", 0, BT, BP, false},
    {"//", 0, BT, BP, false},
    /* Wildcards. */
    {"+", 0, BT, OK, true},
    {"#", 0, BT, OK, true},
    {"a/+", 0, BT, OK, true},
    {"+/a", 0, BT, OK, true},
    {"a/+/b", 0, BT, OK, true},
    {"+/+", 0, BT, OK, true},
    {"a/#", 0, BT, OK, true},
    {"+/#", 0, BT, OK, true},
    {"a/+/#", 0, BT, OK, true},
    {"#/a", 0, BT, BP, false},
    {"a/#/b", 0, BT, BP, false},
    {"a/#/", 0, BT, BP, false},
    {"#/", 0, BT, BP, false},
    {"+/", 0, BT, BP, false},
    {"/+", 0, BT, BP, false},
    {"a#", 0, BT, BP, false},
    {"#a", 0, BT, BP, false},
    {"a+", 0, BT, BP, false},
    {"+a", 0, BT, BP, false},
    {"a/b+", 0, BT, BP, false},
    {"a/+b/c", 0, BT, BP, false},
    {"++", 0, BT, BP, false},
    {"##", 0, BT, BP, false},
    {"+#", 0, BT, BP, false},
    {"a/##", 0, BT, BP, false},
    /* Control characters: C0, DEL, C1. */
    {"a\tb", 0, BT, BP, false},
    {"a\nb", 0, BT, BP, false},
    {"\x1f", 0, BT, BP, false},
    {"a\x7f", 0, BT, BP, false},
    {"a\0b", 3, BT, BP, false},
    {"\xc2\x80", 0, BT, BP, false},
    {"\xc2\x85", 0, BT, BP, false},
    {"\xc2\x9f", 0, BT, BP, false},
    {"\xc2\xa0", 0, OK, OK, false}, /* U+00A0, first after C1. */
    /* Valid UTF-8 at the edges of each length. */
    {"caf\xc3\xa9/\xe2\x82\xac", 0, OK, OK, false},
    {"\xdf\xbf", 0, OK, OK, false},	    /* U+07FF */
    {"\xe0\xa0\x80", 0, OK, OK, false},	    /* U+0800 */
    {"\xed\x9f\xbf", 0, OK, OK, false},	    /* U+D7FF */
    {"\xee\x80\x80", 0, OK, OK, false},	    /* U+E000 */
    {"\xef\xbf\xbf", 0, OK, OK, false},	    /* U+FFFF */
    {"\xf0\x90\x80\x80", 0, OK, OK, false}, /* U+10000 */
    {"\xf0\x9d\x84\x9e", 0, OK, OK, false}, /* U+1D11E */
    {"\xf4\x8f\xbf\xbf", 0, OK, OK, false}, /* U+10FFFF */
    /* Overlongs. */
    {"\xc0\xaf", 0, BT, BP, false},
    {"\xc1\xbf", 0, BT, BP, false},
    {"\xe0\x80\xaf", 0, BT, BP, false},
    {"\xe0\x9f\xbf", 0, BT, BP, false},
    {"\xf0\x80\x80\xaf", 0, BT, BP, false},
    {"\xf0\x8f\xbf\xbf", 0, BT, BP, false},
    {"\xc0\xaf"
     "a",
     0, BT, BP, false}, /* Overlong '/'. */
    /* Surrogates. */
    {"\xed\xa0\x80", 0, BT, BP, false},
    {"\xed\xbf\xbf", 0, BT, BP, false},
    {"\xed\xa0\xbd\xed\xb8\x80", 0, BT, BP, false},
    /* Beyond U+10FFFF and invalid lead bytes. */
    {"\xf4\x90\x80\x80", 0, BT, BP, false},
    {"\xf5\x80\x80\x80", 0, BT, BP, false},
    {"\xf8\x88\x80\x80\x80", 0, BT, BP, false},
    {"\xfe", 0, BT, BP, false},
    {"\xff", 0, BT, BP, false},
    /* Stray and missing continuation bytes. */
    {"\x80", 0, BT, BP, false},
    {"a\xbf", 0, BT, BP, false},
    {"\xc3", 0, BT, BP, false},
    {"\xc3/", 0, BT, BP, false},
    {"\xe2\x82", 0, BT, BP, false},
    {"\xe2\x82/a", 0, BT, BP, false},
    {"\xf0\x9d\x84", 0, BT, BP, false},
    {"\xe2\x28\xa1", 0, BT, BP, false},
    {"\xf0\x9d\x84\x1e", 0, BT, BP, false},
    {"\xc3\xc3\xa9", 0, BT, BP, false},
};

static void test_validate(void)
{
	for (size_t i = 0; i < sizeof vcases / sizeof vcases[0]; i++) {
		const struct vcase *c = &vcases[i];
		size_t len = c->len ? c->len : strlen(c->s);
		bool pat = !c->is_pattern;
		int rt = topic_validate(c->s, len);
		int rf = topic_validate_filter(c->s, len, &pat);

		if (rt != c->topic || rf != c->filter ||
		    (rf == 0 && pat != c->is_pattern))
			fprintf(stderr, "vcase %zu failed\n", i);
		CHECK_INT(rt, c->topic);
		CHECK_INT(rf, c->filter);
		if (rf == 0)
			CHECK(pat == c->is_pattern);
	}
}

static void test_length(void)
{
	char buf[300];
	bool pat;

	memset(buf, 'a', sizeof buf);
	CHECK_INT(topic_validate(buf, 255), 0);
	CHECK_INT(topic_validate(buf, 256), PE_BAD_TOPIC);
	CHECK_INT(topic_validate_filter(buf, 255, &pat), 0);
	CHECK_INT(topic_validate_filter(buf, 256, &pat), PE_BAD_PATTERN);
	CHECK_INT(topic_validate(buf, 0), PE_BAD_TOPIC);
	/* 128 one-byte segments fill 255 bytes exactly. */
	for (int i = 1; i < 255; i += 2)
		buf[i] = '/';
	CHECK_INT(topic_validate(buf, 255), 0);
	buf[254] = '#';
	CHECK_INT(topic_validate_filter(buf, 255, &pat), 0);
	CHECK(pat);
	/* A multi-byte character may not straddle the length given. */
	CHECK_INT(topic_validate("a\xc3\xa9", 2), PE_BAD_TOPIC);
	CHECK_INT(topic_validate("a\xc3\xa9", 3), 0);
	/* len, not the NUL, bounds the input. */
	CHECK_INT(topic_validate("ab/", 2), 0);
}

/* One match case. */
struct mcase {
	const char *filter; /* Valid filter. */
	const char *topic;  /* Valid topic. */
	bool match;	    /* Expected topic_match. */
};

static const struct mcase mcases[] = {
    {"a", "a", true},
    {"a", "b", false},
    {"a", "ab", false},
    {"ab", "a", false},
    {"a", "a/b", false},
    {"a/b", "a", false},
    {"a/b", "a/b", true},
    {"a/b", "a/bc", false},
    {"+", "a", true},
    {"+", "a/b", false},
    {"+/b", "a/b", true},
    {"+/b", "a/c", false},
    {"a/+", "a/b", true},
    {"a/+", "a", false},
    {"a/+", "a/b/c", false},
    {"a/+/c", "a/b/c", true},
    {"a/+/c", "a/b/d", false},
    {"+/+", "a/b", true},
    {"+/+", "a", false},
    {"#", "a", true},
    {"#", "a/b/c", true},
    {"a/#", "a", true},
    {"a/#", "a/b", true},
    {"a/#", "a/b/c", true},
    {"a/#", "ab", false},
    {"a/#", "b/a", false},
    {"a/b/#", "a", false},
    {"a/b/#", "a/b", true},
    {"+/#", "a", true},
    {"+/#", "a/b/c", true},
    {"+/b/#", "a/b", true},
    {"+/b/#", "a/c", false},
    {"forum/+/heavy-duty", "forum/zev/heavy-duty", true},
    {"forum/+/heavy-duty", "forum/zev/light", false},
    {"caf\xc3\xa9/+", "caf\xc3\xa9/x", true},
    {"caf\xc3\xa9/+", "cafe/x", false},
};

static void test_match_table(void)
{
	for (size_t i = 0; i < sizeof mcases / sizeof mcases[0]; i++) {
		bool got = topic_match(mcases[i].filter, mcases[i].topic);

		if (got != mcases[i].match)
			fprintf(stderr, "match(\"%s\", \"%s\") = %d\n",
				mcases[i].filter, mcases[i].topic, got);
		CHECK(got == mcases[i].match);
	}
}

/* One coverage case. */
struct ccase {
	const char *outer; /* Valid filter. */
	const char *inner; /* Valid filter. */
	bool covers;	   /* Expected topic_covers. */
};

static const struct ccase ccases[] = {
    {"forum/#", "forum/+/x", true},
    {"forum/+", "forum/#", false},
    {"#", "a", true},
    {"#", "+/+/#", true},
    {"#", "#", true},
    {"a/+", "a/b", true},
    {"a/b", "a/+", false},
    {"a/#", "a", true},
    {"a/#", "a/#", true},
    {"a/#", "#", false},
    {"a", "a/#", false},
    {"a/b", "a/b", true},
    {"a/b", "a/c", false},
    {"+", "+", true},
    {"+", "a/b", false},
    {"+/#", "#", true},
    {"+/#", "a", true},
    {"+/+/#", "#", false},
    {"+/+/#", "a/#", false},
    {"+/+/#", "a/b/#", true},
    {"+/+", "+/#", false},
    {"a/+/#", "a/b", true},
    {"a/+/#", "a/#", false},
};

static void test_covers_table(void)
{
	for (size_t i = 0; i < sizeof ccases / sizeof ccases[0]; i++) {
		bool got = topic_covers(ccases[i].outer, ccases[i].inner);

		if (got != ccases[i].covers)
			fprintf(stderr, "covers(\"%s\", \"%s\") = %d\n",
				ccases[i].outer, ccases[i].inner, got);
		CHECK(got == ccases[i].covers);
	}
}

/* The exhaustive checks use filters of up to 3 segments over {a, b, +, #}
 * and topics of up to 4 segments over {a, b, c}. c stands for any literal
 * absent from the filters and the fourth segment for any longer tail, so
 * these topics decide coverage exactly. */
#define MAXF 64
#define MAXT 128

static char filters[MAXF][8];
static char topics[MAXT][8];
static size_t nfilters, ntopics;

static void gen_filters(char *buf, size_t len, int depth)
{
	static const char *const segs[] = {"a", "b", "+", "#"};

	for (int i = 0; i < 4; i++) {
		char next[8];

		snprintf(next, sizeof next, "%.*s%s%s", (int)len, buf,
			 len ? "/" : "", segs[i]);
		snprintf(filters[nfilters++], sizeof filters[0], "%s", next);
		if (i < 3 && depth < 3)
			gen_filters(next, strlen(next), depth + 1);
	}
}

static void gen_topics(char *buf, size_t len, int depth)
{
	for (char c = 'a'; c <= 'c'; c++) {
		char next[8];

		snprintf(next, sizeof next, "%.*s%s%c", (int)len, buf,
			 len ? "/" : "", c);
		snprintf(topics[ntopics++], sizeof topics[0], "%s", next);
		if (depth < 4)
			gen_topics(next, strlen(next), depth + 1);
	}
}

/* A reference matcher over single-character segments, written from the
 * definition rather than for speed. */
static bool ref_match(const char *f, const char *t)
{
	if (f[0] == '#')
		return true;
	if (!*t)
		return false;
	if (f[0] != '+' && f[0] != t[0])
		return false;
	if (!f[1] && !t[1])
		return true;
	if (!f[1] || (!t[1] && f[2] != '#'))
		return false;
	if (!t[1])
		return true; /* "x/#" against "x". */
	return ref_match(f + 2, t + 2);
}

static void test_exhaustive(void)
{
	int bad_match = 0, bad_cover = 0;
	bool pat;

	gen_filters("", 0, 1);
	gen_topics("", 0, 1);
	CHECK_INT(nfilters, 52);
	CHECK_INT(ntopics, 120);
	for (size_t i = 0; i < nfilters; i++)
		CHECK_INT(
		    topic_validate_filter(filters[i], strlen(filters[i]), &pat),
		    0);
	for (size_t i = 0; i < ntopics; i++)
		CHECK_INT(topic_validate(topics[i], strlen(topics[i])), 0);
	for (size_t i = 0; i < nfilters; i++)
		for (size_t j = 0; j < ntopics; j++)
			if (topic_match(filters[i], topics[j]) !=
			    ref_match(filters[i], topics[j])) {
				fprintf(stderr, "match(\"%s\", \"%s\")\n",
					filters[i], topics[j]);
				bad_match++;
			}
	for (size_t o = 0; o < nfilters; o++) {
		for (size_t i = 0; i < nfilters; i++) {
			bool want = true;

			for (size_t j = 0; j < ntopics && want; j++)
				if (topic_match(filters[i], topics[j]) &&
				    !topic_match(filters[o], topics[j]))
					want = false;
			if (topic_covers(filters[o], filters[i]) != want) {
				fprintf(stderr, "covers(\"%s\", \"%s\")\n",
					filters[o], filters[i]);
				bad_cover++;
			}
		}
	}
	CHECK_INT(bad_match, 0);
	CHECK_INT(bad_cover, 0);
}

/* Every two-byte prefix, with and without a continuation tail, must give
 * the same verdict as a decoder written from the Unicode definition. */
static bool ref_valid_char(const unsigned char *p, size_t n)
{
	unsigned cp;
	size_t len;

	if (p[0] < 0x80)
		return n == 1 && p[0] >= 0x20 && p[0] != 0x7f && p[0] != '/' &&
		       p[0] != '+' && p[0] != '#';
	if ((p[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = p[0] & 0x1f;
	} else if ((p[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = p[0] & 0x0f;
	} else if ((p[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = p[0] & 0x07;
	} else {
		return false;
	}
	if (n != len)
		return false;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return false;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000))
		return false;
	if (cp >= 0xd800 && cp <= 0xdfff)
		return false;
	if (cp > 0x10ffff || (cp >= 0x80 && cp <= 0x9f))
		return false;
	return true;
}

static void test_utf8_sweep(void)
{
	int bad = 0;
	unsigned char buf[4];

	for (unsigned a = 0; a < 256; a++) {
		for (unsigned b = 0; b < 256; b++) {
			size_t tails[] = {0, 1, 2};

			buf[0] = (unsigned char)a;
			buf[1] = (unsigned char)b;
			for (size_t k = 0; k < 3; k++) {
				size_t n = 2 + tails[k];
				bool want, got;

				buf[2] = buf[3] = 0x80 | (unsigned char)(a ^ b);
				buf[2] &= 0xbf;
				buf[3] &= 0xbf;
				want = ref_valid_char(buf, n);
				got = topic_validate((const char *)buf, n) == 0;
				/* Two ASCII characters: valid when both are. */
				if (a < 0x80 && n == 2)
					want = ref_valid_char(buf, 1) &&
					       ref_valid_char(buf + 1, 1);
				if (a < 0x80 && n > 2)
					continue;
				if (want != got)
					bad++;
			}
		}
	}
	CHECK_INT(bad, 0);
}

int main(void)
{
	test_validate();
	test_length();
	test_match_table();
	test_covers_table();
	test_exhaustive();
	test_utf8_sweep();
	return tap_done();
}
