/* test_codec.c: unit tests of the hot-path encoders and of the string
 * scanner's word-at-a-time path: every special byte at every offset of a
 * string, and encoded frames read back with Jansson. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_request.h"
#include "codec.h"
#include "err.h"
#include "fedcodec.h"
#include "history.h"
#include "jscan.h"
#include "jwrite.h"
#include "msg.h"
#include "tap.h"

/* A byte-at-a-time answer for the strings test_scan_offsets builds
 * (ASCII letters plus one special byte or escape): what jscan_string must
 * return for the quoted text q of n bytes. A letter run never holds four
 * hex digits after a 'u', so \u is always bad here. */
static int reference(const char *q, size_t n, size_t *end, int *esc)
{
	*esc = 0;
	for (size_t p = 1; p < n; p++) {
		unsigned char c = (unsigned char)q[p];

		if (c == '"') {
			*end = p + 1;
			return JSCAN_OK;
		}
		if (c < 0x20 || c >= 0x80)
			return JSCAN_BAD; /* A lone byte >= 0x80 is bad UTF-8.
					   */
		if (c == '\\') {
			*esc = 1;
			if (p + 1 >= n || !strchr("\"\\/bfnrt", q[p + 1]) ||
			    !q[p + 1])
				return JSCAN_BAD;
			p++;
		}
	}
	return JSCAN_BAD;
}

/* One special byte (or escape) at each offset of strings of each length:
 * the word-at-a-time skip must stop exactly where the byte loop would. */
static void test_scan_offsets(void)
{
	static const char *specials[] = {"\"",	 "\\n",	 "\\", "\x01", "\x1f",
					 "\x7f", "\x80", " ",  "!",    "#",
					 "[",	 "]",	 "\t"};
	char q[64];
	int mismatches = 0, cases = 0;

	for (size_t n = 0; n < 40; n++) {
		for (size_t at = 0; at <= n; at++) {
			for (size_t k = 0;
			     k < sizeof specials / sizeof *specials; k++) {
				const char *sp = specials[k];
				size_t sl = strlen(sp), len = 0;
				size_t end_ref = 0, end = 0;
				int esc_ref, esc, rc_ref, rc;

				q[len++] = '"';
				for (size_t i = 0; i < n; i++) {
					if (i == at) {
						memcpy(q + len, sp, sl);
						len += sl;
					}
					q[len++] = (char)('a' + i % 26);
				}
				if (at == n) {
					memcpy(q + len, sp, sl);
					len += sl;
				}
				q[len++] = '"';
				rc_ref = reference(q, len, &end_ref, &esc_ref);
				rc = jscan_string(q, len, &end, &esc);
				cases++;
				if (rc != rc_ref ||
				    (rc == JSCAN_OK &&
				     (end != end_ref || esc != esc_ref))) {
					if (mismatches++ < 5)
						fprintf(stderr,
							"scan n=%zu at=%zu "
							"special=%zu: rc %d/%d "
							"end %zu/%zu\n",
							n, at, k, rc, rc_ref,
							end, end_ref);
				}
			}
		}
	}
	CHECK_INT(mismatches, 0);
	CHECK(cases > 10000);
}

/* Valid UTF-8 after a long plain run, and truncated input. */
static void test_scan_utf8_and_truncation(void)
{
	const char *ok = "\"abcdefghijklmnop\xc3\xa9qrstuvwxyz\"";
	const char *bad = "\"abcdefghijklmnop\xc3qrstuvwxyz\"";
	size_t pos = 0;
	int esc;

	CHECK_INT(jscan_string(ok, strlen(ok), &pos, &esc), JSCAN_OK);
	CHECK_INT(pos, strlen(ok));
	pos = 0;
	CHECK_INT(jscan_string(bad, strlen(bad), &pos, &esc), JSCAN_BAD);
	/* No closing quote within len, though one lies just beyond it. */
	for (size_t len = 1; len < strlen(ok); len++) {
		pos = 0;
		CHECK_INT(jscan_string(ok, len, &pos, &esc), JSCAN_BAD);
	}
}

/* jscan_plain_run stops exactly at the first special byte, wherever it
 * lies against the 16-byte blocks. */
static void test_plain_run(void)
{
	static const char specials[] = {'"',  '\\',	  0x01,
					0x1f, (char)0x80, (char)0xff};
	char buf[80];
	int bad = 0;

	memset(buf, 'a', sizeof buf);
	CHECK_INT(jscan_plain_run(buf, sizeof buf), sizeof buf);
	CHECK_INT(jscan_plain_run(buf, 0), 0);
	for (size_t at = 0; at < 70; at++)
		for (size_t k = 0; k < sizeof specials; k++) {
			memset(buf, 'a' + (int)(at % 26), sizeof buf);
			buf[at] = specials[k];
			bad += jscan_plain_run(buf, sizeof buf) != at;
			bad += jscan_plain_run(buf, at) != at;
		}
	CHECK_INT(bad, 0);
	/* Every length up to 40 with a special at every position, in a heap
	 * block of exactly that size: the short-string paths read whole
	 * vectors ending at the string's end, and must stop there (ASan
	 * sees any byte read past it). */
	bad = 0;
	for (size_t len = 0; len <= 40; len++) {
		char *h = malloc(len ? len : 1);

		for (size_t at = 0; at <= len; at++)
			for (size_t k = 0; k < sizeof specials; k++) {
				memset(h, 'a' + (int)(len % 26), len);
				if (at < len)
					h[at] = specials[k];
				bad += jscan_plain_run(h, len) != at;
			}
		free(h);
	}
	CHECK_INT(bad, 0);
}

/* A plain decoder of RFC 3629 to check jscan_utf8_valid against. */
static int ref_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i], need, cp;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			need = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			need = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			need = 3, cp = c & 0x07;
		else
			return 0;
		if (i + need >= n)
			return 0;
		for (unsigned k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* jscan_utf8_valid (the hub's check of every text message) agrees with
 * the reference on every 1- and 2-byte sequence and on 3-byte ones with
 * telling third bytes, placed at every offset against its 8-byte words,
 * around the edges of its 16- and 64-byte steps, and at the end of the
 * text (truncated sequences). */
static void test_utf8_valid(void)
{
	static const unsigned char third[] = {0x00, 0x41, 0x7f, 0x80, 0x8f,
					      0x90, 0x9f, 0xa0, 0xbf, 0xc0,
					      0xe2, 0xff};
	static const size_t offsets[] = {0,  1,	 2,  3,	 4,  5,	 6,  7,
					 8,  13, 14, 15, 16, 17, 30, 31,
					 47, 48, 62, 63, 64, 65, 79};
	unsigned char buf[96];
	const char *cases[] = {"", "plain ascii, longer than one word",
			       "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x97",
			       "\xf4\x8f\xbf\xbf"};
	const char *bad[] = {"\x80", "\xc0\xaf", "\xc1\xbf",
			     "\xe0\x80\xaf", "\xed\xa0\x80",
			     "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
			     "\xff", "abcdefgh\xe2\x82"};
	long mismatches = 0;

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
		CHECK_INT(jscan_utf8_valid(cases[i], strlen(cases[i])), 1);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_INT(jscan_utf8_valid(bad[i], strlen(bad[i])), 0);
	for (size_t o = 0; o < sizeof offsets / sizeof *offsets; o++)
		for (unsigned a = 0; a < 256; a++)
			for (unsigned b = 0; b < 256; b++)
				for (size_t t = 0; t <= sizeof third; t++) {
					size_t at = offsets[o];
					size_t n = at + 2 + (t < sizeof third);

					memset(buf, 'x', sizeof buf);
					buf[at] = (unsigned char)a;
					buf[at + 1] = (unsigned char)b;
					if (t < sizeof third)
						buf[at + 2] = third[t];
					/* Also with text after it. */
					mismatches +=
					    jscan_utf8_valid((char *)buf, n) !=
					    ref_utf8(buf, n);
					mismatches +=
					    jscan_utf8_valid((char *)buf, n + 9) !=
					    ref_utf8(buf, n + 9);
					mismatches +=
					    jscan_utf8_valid((char *)buf,
							     sizeof buf) !=
					    ref_utf8(buf, sizeof buf);
				}
	CHECK_INT(mismatches, 0);
}

static msg_t *sample(const char *topic, const char *from, int64_t ts,
		     const char *body)
{
	msg_t *m = msg_new(topic, "01h2x3y4z5a6b7c8d9e0f1g2h3", "a.example",
			   from, ts, body, strlen(body));

	return m;
}

/* Reads a frame's payload back as JSON. */
static json_t *payload_json(const frame_t *f)
{
	json_error_t e;
	json_t *j = json_loadb(frame_payload(f), f->payload_len, 0, &e);

	if (!j)
		fprintf(stderr, "frame does not parse: %s\n", e.text);
	return j;
}

/* A JSON string of n 'x's (malloc'd, NUL-terminated). */
static char *json_x_string(size_t n)
{
	char *s = malloc(n + 3);

	if (!s)
		abort();
	s[0] = '"';
	memset(s + 1, 'x', n);
	s[n + 1] = '"';
	s[n + 2] = 0;
	return s;
}

static void test_msg_frame(void)
{
	/* Quotes, backslashes and control characters in identity strings
	 * (topics cannot hold them, user names could). */
	const char *from = "o\"dd\\na\x01me@a.example";
	msg_t *m = sample("forum/zev", from, -12345,
			  "{\"k\":[1,2,{\"x\":\"\\u00e9\"}]}");
	frame_t *f = codec_msg(m, "1a-2b");
	json_t *j = payload_json(f);

	CHECK(j != NULL);
	CHECK_STR(json_string_value(json_object_get(j, "op")), "msg");
	CHECK_STR(json_string_value(json_object_get(j, "topic")), "forum/zev");
	CHECK_STR(json_string_value(json_object_get(j, "from")), from);
	CHECK_STR(json_string_value(json_object_get(j, "cursor")), "1a-2b");
	CHECK_INT(json_integer_value(json_object_get(j, "ts")), -12345);
	CHECK_STR(json_string_value(json_object_get(
		      json_array_get(
			  json_object_get(json_object_get(j, "body"), "k"), 2),
		      "x")),
		  "\xc3\xa9");
	/* The header says the payload's length. */
	CHECK_INT(f->data[0], 0x81);
	CHECK_INT(f->len - f->payload_len, f->payload_len < 126 ? 2 : 4);
	json_decref(j);
	frame_unref(f);

	/* The HTTP encoder appends the same text to a buffer. */
	{
		char *buf = NULL;
		size_t len = 0, cap = 0;
		frame_t *g = codec_msg(m, "1a-2b");

		CHECK_INT(codec_msg_json(m, "1a-2b", &buf, &len, &cap), 0);
		CHECK_INT(codec_msg_json(m, "1a-2b", &buf, &len, &cap), 0);
		CHECK_INT(len, 2 * g->payload_len);
		CHECK(!memcmp(buf, frame_payload(g), g->payload_len));
		CHECK(!memcmp(buf + g->payload_len, frame_payload(g),
			      g->payload_len));
		free(buf);
		frame_unref(g);
	}
	msg_unref(m);

	/* Escapes past the first 16-byte block. */
	{
		const char *longfrom =
		    "abcdefghijklmnopqrstuvwxyz\"0123456789\x02tail@a.example";

		m = sample("forum/zev", longfrom, 1, "1");
		f = codec_msg(m, "c");
		j = payload_json(f);
		CHECK(j != NULL);
		CHECK_STR(json_string_value(json_object_get(j, "from")),
			  longfrom);
		json_decref(j);
		frame_unref(f);
		msg_unref(m);
	}

	/* Extremes of ts and a body long enough for a 64-bit length. */
	{
		size_t n = 70000;
		char *big = json_x_string(n);
		m = sample("t", "u@a.example", INT64_MIN, big);
		f = codec_msg(m, "0-0");
		j = payload_json(f);
		CHECK_INT(f->data[1], 127);
		CHECK(j && json_integer_value(json_object_get(j, "ts")) ==
			       INT64_MIN);
		CHECK_INT(json_string_length(json_object_get(j, "body")), n);
		json_decref(j);
		frame_unref(f);
		msg_unref(m);
		free(big);
	}
}

static int same_frame(const frame_t *a, const frame_t *b)
{
	return a->len == b->len && a->payload_len == b->payload_len &&
	       !memcmp(a->data, b->data, a->len);
}

/* A frame written inside its message's allocation has the bytes
 * codec_msg writes, outlives the message while a queue holds it, and
 * falls back to a frame of its own when the head does not fit. */
static void test_msg_place(void)
{
	char cursor[HISTORY_CURSOR_MAX], esc[64];
	msg_t *m =
	    sample("forum/zev", "u@a.example", 1700000000000, "{\"k\":[1,2]}");
	frame_t *f = codec_msg(m, "1a-2b");
	frame_t *g = codec_msg_place(m, "1a-2b", 5);
	frame_t *h = codec_msg_place(m, "1a-2b", 5);

	CHECK(g == m->own && g->block == m);
	CHECK(same_frame(f, g));
	/* Placed once: the second gets its own allocation. */
	CHECK(h != g && h->block == h);
	CHECK(same_frame(f, h));
	frame_unref(h);
	msg_unref(m); /* A queue still holds g: its bytes must stay. */
	CHECK(same_frame(f, g));
	frame_unref(g);
	frame_unref(f);

	/* The longest cursor, the widest ts and a body that needs the
	 * 10-byte header still fit the room msg_new leaves. */
	{
		size_t n = 70000;
		char *big = json_x_string(n);
		memset(cursor, 'z', sizeof cursor - 1);
		cursor[sizeof cursor - 1] = 0;
		m = sample("t", "u@a.example", INT64_MIN, big);
		f = codec_msg(m, cursor);
		g = codec_msg_place(m, cursor, strlen(cursor));
		CHECK(g == m->own);
		CHECK_INT(g->data[1], 127);
		CHECK(same_frame(f, g));
		frame_unref(f);
		frame_unref(g);
		msg_unref(m);
		free(big);
	}

	/* A name of control characters grows six-fold as JSON: no room,
	 * so the frame is allocated apart, with the same bytes. */
	memset(esc, 1, sizeof esc - 1);
	esc[sizeof esc - 1] = 0;
	m = sample("forum/zev", esc, 1, "[]");
	f = codec_msg(m, "c");
	g = codec_msg_place(m, "c", 1);
	CHECK(g != m->own && g->block == g);
	CHECK(same_frame(f, g));
	frame_unref(f);
	frame_unref(g);
	msg_unref(m);
}

/* jscan_small_int against a digit-at-a-time reference: every digit count
 * 0-17, with and without a minus, with a leading zero, each kind of byte
 * after the digits (or none), and the number near the end of the buffer
 * (the short path) or well inside it (the vector path). */
static int ref_small_int(const char *s, size_t len, size_t *pos, int64_t *out)
{
	size_t q = *pos + (*pos < len && s[*pos] == '-'), d = q;
	int64_t v = 0;

	while (d < len && s[d] >= '0' && s[d] <= '9')
		d++;
	if (d == q || d - q > 15 || (s[q] == '0' && d - q > 1))
		return 0;
	for (size_t i = q; i < d; i++)
		v = v * 10 + (s[i] - '0');
	*out = q > *pos ? -v : v;
	*pos = d;
	return 1;
}

/* 1 when both agree on the number at the start of the len bytes at s. */
static int small_int_agrees(const char *s, size_t len)
{
	size_t p1 = 0, p2 = 0;
	int64_t v1 = -7, v2 = -7;
	int r1 = jscan_small_int(s, len, &p1, &v1);
	int r2 = ref_small_int(s, len, &p2, &v2);

	return r1 == r2 && (!r1 || (p1 == p2 && v1 == v2));
}

static void test_small_int(void)
{
	static const char after[] = {',', '}', ' ', '.', 'e', '/', ':', 0};
	char buf[64];
	int mismatches = 0;

	for (size_t n = 0; n <= 17; n++)
		for (int form = 0; form < 4; form++) /* Minus, leading 0. */
			for (size_t a = 0; a <= sizeof after; a++) {
				size_t len = 0;

				if (form & 1)
					buf[len++] = '-';
				for (size_t i = 0; i < n; i++)
					buf[len++] =
					    (char)('0' + (i * 7 + n + 3) % 10);
				if (n && (form & 2))
					buf[len - n] = '0';
				if (a < sizeof after)
					buf[len++] = after[a];
				for (size_t tail = 0; tail <= 20; tail++) {
					memset(buf + len, '9', tail);
					mismatches +=
					    !small_int_agrees(buf, len + tail);
				}
			}
	CHECK_INT(mismatches, 0);
	{
		const char *ts = "1764400000000,\"cursor\":\"x\"}";
		size_t p = 0;
		int64_t v = 0;

		CHECK(jscan_small_int(ts, strlen(ts), &p, &v));
		CHECK(v == 1764400000000);
		CHECK_INT(p, 13);
	}
}

/* jw_plain_nul against a byte-at-a-time reference: every length up to 70
 * at every alignment, each kind of byte planted at each position, and
 * never a look at the byte after the region. */
static int ref_plain_nul(const unsigned char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((s[i] && s[i] < 0x20) || s[i] == '"' || s[i] == '\\')
			return 0;
	return 1;
}

static void test_plain_nul(void)
{
	static const unsigned char kinds[] = {0,    1,	  0x1f, 0x20, '"',
					      '\\', 0x7f, 0x80, 0xc3, 0xff};
	unsigned char buf[96];
	int mismatches = 0;

	for (size_t align = 0; align < 8; align++)
		for (size_t len = 0; len <= 70; len++) {
			unsigned char *s = buf + align;

			for (size_t i = 0; i < len; i++)
				s[i] = (unsigned char)('a' + i % 26);
			s[len] = '"'; /* Outside: must not count. */
			mismatches += jw_plain_nul((char *)s, len) != 1;
			for (size_t at = 0; at < len; at++)
				for (size_t k = 0; k < sizeof kinds; k++) {
					unsigned char keep = s[at];

					s[at] = kinds[k];
					mismatches +=
					    jw_plain_nul((char *)s, len) !=
					    ref_plain_nul(s, len);
					s[at] = keep;
				}
		}
	CHECK_INT(mismatches, 0);
}

/* Each of a message's four strings with bytes JSON must escape (and
 * UTF-8 it need not): the message knows it is not plain, and the frame,
 * written in place or apart, reads back as the same strings. */
static void test_msg_escapes(void)
{
	static const char *const odd[] = {"a\"b", "a\\b",
					  "a\x1f"
					  "b",
					  "a\x7f\xc3\xa9"
					  "b",
					  "plain"};

	for (size_t f = 0; f < 4; f++)
		for (size_t k = 0; k < sizeof odd / sizeof odd[0]; k++) {
			const char *v[4] = {"forum/zev", "m1", "a.example",
					    "u@a.example"};
			msg_t *m;
			frame_t *a, *b;
			json_t *j;
			int want_plain = !strchr(odd[k], '"') &&
					 !strchr(odd[k], '\\') &&
					 !strchr(odd[k], 0x1f);

			v[f] = odd[k];
			m = msg_new(v[0], v[1], v[2], v[3], 7, "1", 1);
			CHECK_INT(m->plain, want_plain);
			a = codec_msg(m, "c-1");
			b = codec_msg_place(m, "c-1", 3);
			CHECK(same_frame(a, b));
			j = payload_json(a);
			CHECK(j != NULL);
			CHECK_STR(
			    json_string_value(json_object_get(j, "topic")),
			    v[0]);
			CHECK_STR(json_string_value(json_object_get(j, "mid")),
				  v[1]);
			CHECK_STR(
			    json_string_value(json_object_get(j, "origin")),
			    v[2]);
			CHECK_STR(json_string_value(json_object_get(j, "from")),
				  v[3]);
			CHECK_STR(
			    json_string_value(json_object_get(j, "cursor")),
			    "c-1");
			json_decref(j);
			frame_unref(a);
			frame_unref(b);
			msg_unref(m);
		}
}

/* The cluster's split of a msg frame: head + seq digits + tail is the
 * frame codec_msg writes with the whole cursor. */
static void test_msg_split(void)
{
	msg_t *m = sample("forum/zev", "o\"dd@a.example", 42,
			  "{\"cursor\":\"x\",\"body\":1}");
	char whole[1024];
	frame_t *f = codec_msg(m, "3f-9z");
	char path[64], *buf;
	const char *p3[] = {"a.example", "b\"c"};
	size_t len = 3, cap = 4, cut;

	/* Appended after what the buffer holds, growing it. */
	buf = malloc(cap);
	memcpy(buf, "pre", 3);
	cut = codec_msg_split(m, "3f-", &buf, &len, &cap);
	CHECK(!memcmp(buf, "pre", 3));
	snprintf(whole, sizeof whole, "%.*s9z%.*s", (int)(cut - 3), buf + 3,
		 (int)(len - cut), buf + cut);
	CHECK_INT(strlen(whole), f->payload_len);
	CHECK(!memcmp(whole, frame_payload(f), f->payload_len));
	CHECK_INT(buf[cut], '"');
	CHECK(cap >= len);
	free(buf);
	frame_unref(f);
	msg_unref(m);

	/* The path array: its measured length is what is written. */
	CHECK_INT(codec_path_len(p3, 2), 20);
	*codec_path_put(path, p3, 2) = 0;
	CHECK_STR(path, "[\"a.example\",\"b\\\"c\"]");
	CHECK_INT(codec_path_len(NULL, 0), 2);
	*codec_path_put(path, NULL, 0) = 0;
	CHECK_STR(path, "[]");
}

/* The ok answer in a buffer of exactly its size, which is then full. */
static frame_t *ok_frame(const char *id, size_t id_len, const char *mid)
{
	size_t mr, mj = jw_str_len(mid, &mr);
	size_t n = codec_ok_mid_len(id, id_len, mj);
	frame_t *f = frame_alloc_buf(frame_text_size(n));
	char *d = frame_append_text(f, frame_text_size(n), n);

	CHECK(d != NULL);
	CHECK(codec_ok_mid_put(d, id, id_len, mid, mr, mj) == d + n);
	CHECK(frame_append_text(f, frame_text_size(n), 0) == NULL);
	return f;
}

static void test_ok_mid(void)
{
	frame_t *f = ok_frame("\"r-1\"", 5, "01abc");
	json_t *j = payload_json(f);
	size_t at = 0, n = 0;

	CHECK(j != NULL);
	CHECK_STR(json_string_value(json_object_get(j, "op")), "ok");
	CHECK_STR(json_string_value(json_object_get(j, "id")), "r-1");
	CHECK_STR(json_string_value(json_object_get(j, "mid")), "01abc");
	json_decref(j);
	frame_unref(f);

	f = ok_frame(NULL, 0, "01abc");
	j = payload_json(f);
	CHECK(j && json_object_size(j) == 2);
	json_decref(j);
	frame_unref(f);

	f = ok_frame("-42", 3, "m");
	j = payload_json(f);
	CHECK(j && json_integer_value(json_object_get(j, "id")) == -42);
	json_decref(j);
	frame_unref(f);

	/* Many answers in one buffer: whole frames, back to back, until
	 * the next does not fit. */
	f = frame_alloc_buf(300);
	for (char *d; (d = frame_append_text(f, 300, codec_ok_mid_len("7", 1, 7)));
	     n++)
		codec_ok_mid_put(d, "7", 1, "01abc", 5, 7);
	CHECK_INT(n, 300 / frame_text_size(codec_ok_mid_len("7", 1, 7)));
	for (size_t i = 0; i < n; i++) {
		size_t pl = f->data[at + 1];
		json_error_t e;

		CHECK_INT(f->data[at], 0x81);
		j = json_loadb((const char *)f->data + at + 2, pl, 0, &e);
		CHECK(j && json_integer_value(json_object_get(j, "id")) == 7);
		json_decref(j);
		at += 2 + pl;
	}
	CHECK_INT(at, f->len);
	frame_unref(f);
}

static void test_path(void)
{
	msg_t *m = sample("t", "u@a.example", 1, "1");
	const char *prev[] = {"x.example", "y.example"};

	msg_set_path(m, NULL, 0, "a.example");
	CHECK_INT(m->n_path, 1);
	CHECK_STR(m->path[0], "a.example");
	/* The new path may be built from the old one. */
	msg_set_path(m, (const char *const *)m->path, m->n_path, "b.example");
	CHECK_INT(m->n_path, 2);
	CHECK_STR(m->path[0], "a.example");
	CHECK_STR(m->path[1], "b.example");
	msg_set_path(m, prev, 2, "c.example");
	CHECK_INT(m->n_path, 3);
	CHECK_STR(m->path[2], "c.example");
	CHECK(msg_on_path(m, "y.example"));
	CHECK(!msg_on_path(m, "a.example"));
	msg_unref(m);

	/* Built with the message: the same paths, inside its allocation
	 * (ASan: msg_set_path and msg_unref must not free it). */
	m = msg_new_path("t", "m", "a.example", "u@a.example", 1, "1", 1, NULL,
			 0, "a.example");
	CHECK(m->path == m->own_path && m->n_path == 1);
	CHECK_STR(m->path[0], "a.example");
	msg_unref(m);
	m = msg_new_path("t", "m", "x.example", "u@x.example", 1, "1", 1, prev,
			 2, "c.example");
	CHECK_INT(m->n_path, 3);
	CHECK_STR(m->path[0], "x.example");
	CHECK_STR(m->path[1], "y.example");
	CHECK_STR(m->path[2], "c.example");
	CHECK(msg_on_path(m, "c.example"));
	msg_set_path(m, (const char *const *)m->path, m->n_path, "d.example");
	CHECK_INT(m->n_path, 4);
	CHECK_STR(m->path[1], "y.example");
	CHECK_STR(m->path[3], "d.example");
	msg_unref(m);
	m = msg_new_path("t", "m", "a.example", "u@a.example", 1, "1", 1, NULL,
			 0, NULL);
	CHECK(m->path == NULL && m->n_path == 0);
	msg_unref(m);

	/* From measured fields (what a receiving node does): the lengths
	 * are taken as given, and the result is msg_new_path's. */
	{
		const size_t prev_len[] = {9, 9};
		msg_fields_t mf = {
		    .topic = "t/u",
		    .topic_len = 3,
		    .mid = "m1",
		    .mid_len = 2,
		    .origin = "x.example",
		    .origin_len = 9,
		    .from = "u@x.example",
		    .from_len = 11,
		    .ts = 7,
		    .body = "[1]",
		    .body_len = 3,
		};
		msg_t *w = msg_new_path("t/u", "m1", "x.example", "u@x.example",
					7, "[1]", 3, prev, 2, "c.example");
		frame_t *fm, *fw;

		m = msg_new_fields(&mf, prev, prev_len, 2, "c.example", 9);
		CHECK_INT(m->n_path, 3);
		CHECK(m->path != m->own_path);
		for (size_t i = 0; i < 3; i++)
			CHECK_STR(m->path[i], w->path[i]);
		CHECK(m->plain && w->plain);
		CHECK(!memcmp(m->slen, w->slen, sizeof m->slen));
		CHECK_INT(m->topic_hash, w->topic_hash);
		fm = codec_msg(m, "c1");
		fw = codec_msg(w, "c1");
		CHECK(fm->payload_len == fw->payload_len &&
		      !memcmp(frame_payload(fm), frame_payload(fw),
			      fm->payload_len));
		frame_unref(fm);
		frame_unref(fw);
		msg_unref(m);
		msg_unref(w);
		/* The own path needs self to be the origin: equal lengths
		 * alone, or a prefix, are not enough. */
		m = msg_new_fields(&mf, NULL, NULL, 0, "x.example", 9);
		CHECK(m->path == m->own_path && m->n_path == 1);
		msg_unref(m);
		m = msg_new_fields(&mf, NULL, NULL, 0, "y.example", 9);
		CHECK(m->path != m->own_path && m->n_path == 1);
		CHECK_STR(m->path[0], "y.example");
		msg_unref(m);
		m = msg_new_fields(&mf, NULL, NULL, 0, "x.exampl", 8);
		CHECK(m->path != m->own_path && m->n_path == 1);
		CHECK_STR(m->path[0], "x.exampl");
		msg_unref(m);
	}
}

/* A federation msg frame read back by the fast decoder, and frames it
 * must leave to the full one. */
static void test_fed_roundtrip(void)
{
	const char *from = "o\"dd@a.example";
	msg_t *m = sample("forum/zev", "bot@a.example", 1764390000000,
			  "{\"t\":\"caf\xc3\xa9\",\"n\":[1,-2.5]}");
	const char *reason = NULL;
	fed_in_t in;
	frame_t *f;

	msg_set_path(m, NULL, 0, "a.example");
	msg_set_path(m, (const char *const *)m->path, 1, "b.example");
	for (int masked = 0; masked < 4; masked++) {
		/* Rounds 2 and 3: the message holds its client frame, as a
		 * stored one does, and the peer's frame is built from it. */
		if (masked == 2)
			m->frame = codec_msg(m, "1a-2b");
		f = fedcodec_msg(m, "1a-2b", masked & 1);
		CHECK_INT(f->data[1] & 0x80, masked & 1 ? 0x80 : 0);
		CHECK_INT(fedcodec_decode(frame_payload(f), f->payload_len, &in,
					  &reason),
			  0);
		CHECK_INT(in.op, FED_MSG);
		CHECK(in.body_text != NULL); /* The fast path took it, */
		/* and of the fast paths the layout one (inline path storage):
		 * fedcodec_msg and layout_msg must agree on the layout. */
		CHECK(in.path == in.path_buf);
		CHECK_STR(in.topic, "forum/zev");
		CHECK_STR(in.mid, m->mid);
		CHECK_STR(in.origin, "a.example");
		CHECK_STR(in.from, "bot@a.example");
		CHECK_STR(in.cursor, "1a-2b");
		CHECK(in.ts == 1764390000000);
		CHECK_INT(in.n_path, 2);
		CHECK_STR(in.path[1], "b.example");
		CHECK_INT(in.body_len, m->body_len);
		CHECK(in.body_text &&
		      !memcmp(in.body_text, m->body, m->body_len));
		fedcodec_free(&in);
		frame_unref(f);
	}
	msg_unref(m);

	/* This node's own message (path [origin], written from the
	 * message's measured origin): the client frame plus the path. */
	m = sample("forum/zev", "bot@a.example", 5, "[1]");
	msg_set_path(m, NULL, 0, "a.example");
	CHECK(m->plain && m->path == m->own_path);
	{
		frame_t *c = codec_msg(m, "1a-2b");
		char want[512];

		snprintf(want, sizeof want, "%.*s,\"path\":[\"a.example\"]}",
			 (int)c->payload_len - 1, frame_payload(c));
		f = fedcodec_msg(m, "1a-2b", 0);
		CHECK_INT(f->payload_len, strlen(want));
		CHECK(!memcmp(frame_payload(f), want, strlen(want)));
		frame_unref(f);
		frame_unref(c);
	}
	msg_unref(m);

	/* An escaped identity: the full decoder reads it, same answer. */
	m = sample("t", from, 7, "null");
	msg_set_path(m, NULL, 0, "a.example");
	f = fedcodec_msg(m, "c", 0);
	CHECK_INT(
	    fedcodec_decode(frame_payload(f), f->payload_len, &in, &reason), 0);
	CHECK(in.body_text == NULL && in.body != NULL);
	CHECK_STR(in.from, from);
	fedcodec_free(&in);
	frame_unref(f);
	msg_unref(m);

	/* Whatever the fast decoder declines gets the full decoder's
	 * error. */
	{
		static const char *bad[] = {
		    "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"m\",\"origin\":"
		    "\"a.example\",\"from\":\"u@a.example\",\"ts\":1,\"body\":"
		    "1,"
		    "\"path\":[],\"cursor\":\"c\"}",
		    "{\"op\":\"msg\",\"topic\":\"a/"
		    "#\",\"mid\":\"m\",\"origin\":"
		    "\"a.example\",\"from\":\"u@a.example\",\"ts\":1,\"body\":"
		    "1,"
		    "\"path\":[\"a.example\"],\"cursor\":\"c\"}",
		    "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"m\",\"origin\":"
		    "\"a.example\",\"from\":\"u@a.example\",\"ts\":1.5,"
		    "\"body\":1,"
		    "\"path\":[\"a.example\"],\"cursor\":\"c\"}",
		    "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"m\",\"origin\":"
		    "\"a.example\",\"from\":\"u@a.example\",\"ts\":1,\"body\":"
		    "1,"
		    "\"path\":[\"A B\"],\"cursor\":\"c\"}",
		    "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"m\",\"origin\":"
		    "\"a.example\",\"from\":\"u@a.example\",\"ts\":1,\"body\":"
		    "1,"
		    "\"path\":[\"a.example\"]}",
		    "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"m\",\"origin\":"
		    "\"a.example\",\"from\":\"u@a.example\",\"ts\":1,\"body\":["
		    "1,,"
		    "\"path\":[\"a.example\"],\"cursor\":\"c\"}",
		};
		static const int want[] = {PE_BAD_REQUEST, PE_BAD_TOPIC,
					   PE_BAD_REQUEST, PE_BAD_REQUEST,
					   PE_BAD_REQUEST, PE_BAD_JSON};

		for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
			reason = NULL;
			CHECK_INT(fedcodec_decode(bad[i], strlen(bad[i]), &in,
						  &reason),
				  want[i]);
			CHECK(reason != NULL);
			fedcodec_free(&in);
		}
	}
}

/* Decodes buf both ways: the decoders must agree on the answer and on
 * every field. Returns which path took a msg: 2 the layout decoder
 * (its path storage is inline), 1 the member walk, 0 the full decoder
 * or an error; -1 when they disagree. */
static int fed_both(const char *buf)
{
	const char *reason = NULL;
	fed_in_t in, full;
	size_t len = strlen(buf);
	int rc = fedcodec_decode(buf, len, &in, &reason), how = 0;
	int rj = fedcodec_decode_json(buf, len, &full, &reason);

	if (rc != rj)
		how = -1;
	else if (!rc && in.op == FED_MSG) {
		json_error_t jerr;
		json_t *body = in.body_text ? json_loadb(in.body_text,
							 in.body_len,
							 JSON_DECODE_ANY, &jerr)
					    : json_incref(in.body);

		how = in.path == in.path_buf ? 2 : in.body_text ? 1 : 0;
		if (strcmp(in.topic, full.topic) || strcmp(in.mid, full.mid) ||
		    strcmp(in.origin, full.origin) ||
		    strcmp(in.from, full.from) ||
		    strcmp(in.cursor, full.cursor) || in.ts != full.ts ||
		    in.n_path != full.n_path || !json_equal(body, full.body))
			how = -1;
		for (size_t i = 0; how >= 0 && i < in.n_path; i++)
			if (strcmp(in.path[i], full.path[i]))
				how = -1;
		/* The lengths the checks and the message rely on. */
		if (in.topic_len != strlen(in.topic) ||
		    in.mid_len != strlen(in.mid) ||
		    in.origin_len != strlen(in.origin) ||
		    in.from_len != strlen(in.from) ||
		    in.cursor_len != strlen(in.cursor) ||
		    full.topic_len != in.topic_len ||
		    full.mid_len != in.mid_len ||
		    full.origin_len != in.origin_len ||
		    full.from_len != in.from_len ||
		    full.cursor_len != in.cursor_len)
			how = -1;
		for (size_t i = 0; how >= 0 && i < in.n_path; i++)
			if (in.path_len[i] != strlen(in.path[i]) ||
			    full.path_len[i] != in.path_len[i])
				how = -1;
		json_decref(body);
	}
	fedcodec_free(&in);
	fedcodec_free(&full);
	return how;
}

/* The layout decoder (frames exactly as fedcodec_msg writes them) against
 * the full decoder: what it takes, what it leaves to the others, and
 * what nobody may take. */
static void test_fed_layout(void)
{
	static const struct {
		const char *ts, *body, *path, *tail;
		int how; /* fed_both's answer. */
	} v[] = {
	    {"1764390000000", "{\"a\":[1,2]}", "[\"a.example\"]", "}", 2},
	    {"0", "\"x\"", "[\"a.example\",\"b.example\"]", "}", 2},
	    {"-5", "null", "[\"a.example\"]", "}", 2},
	    {"-0", "true", "[\"a.example\"]", "}", 2},
	    {"123456789012345", "1", "[\"a.example\"]", "}", 2},
	    /* What the layout leaves to the member walk or to Jansson. */
	    {"1234567890123456", "1", "[\"a.example\"]", "}", 0},
	    {"1", " 1", "[\"a.example\"]", "}", 1},
	    {"1", "1", "[ \"a.example\"]", "}", 1},
	    {"1", "1", "[\"a.example\"]", "} ", 1},
	    {"1", "1", "[\"a\\u002eexample\"]", "}", 0},
	    /* Refused by every decoder. */
	    {"01", "1", "[\"a.example\"]", "}", 0},
	    {"-", "1", "[\"a.example\"]", "}", 0},
	    {"1", "[1,,2]", "[\"a.example\"]", "}", 0},
	    {"1", "1", "[]", "}", 0},
	    {"1", "1", "[\"a.example\",]", "}", 0},
	    {"1", "1", "[\"a.example\"", "}", 0},
	    {"1", "1", "[\"a.example\"]", "}x", 0},
	    {"1", "1", "[\"a.example\"]", "", 0},
	    {"1", "1", "[\"A B\"]", "}", 0},
	};
	char buf[1024];

	for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
		snprintf(buf, sizeof buf,
			 "{\"op\":\"msg\",\"topic\":\"forum/zev\",\"mid\":\"m1\","
			 "\"origin\":\"a.example\",\"from\":\"u@a.example\","
			 "\"ts\":%s,\"cursor\":\"c\",\"body\":%s,\"path\":%s%s",
			 v[i].ts, v[i].body, v[i].path, v[i].tail);
		CHECK_INT(fed_both(buf), v[i].how);
	}
	/* Non-ASCII, escaped and control bytes in the strings; a path of
	 * 64 nodes and one of 65. */
	{
		static const char *const from[] = {
		    "jos\xc3\xa9@a.example", "o\\\"dd@a.example",
		    "u\\u00e9@a.example", "u\x01@a.example", "u\xff@a.example"};
		static const int want[] = {1, 0, 0, 0, 0};

		for (size_t i = 0; i < sizeof from / sizeof *from; i++) {
			snprintf(buf, sizeof buf,
				 "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"m\","
				 "\"origin\":\"a.example\",\"from\":\"%s\","
				 "\"ts\":1,\"cursor\":\"c\",\"body\":1,"
				 "\"path\":[\"a.example\"]}",
				 from[i]);
			CHECK_INT(fed_both(buf), want[i]);
		}
	}
	for (int n = 64; n <= 65; n++) {
		char *d = buf;

		d += sprintf(d, "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"m\","
				"\"origin\":\"n\",\"from\":\"u@n\",\"ts\":1,"
				"\"cursor\":\"c\",\"body\":1,\"path\":[");
		for (int k = 0; k < n; k++)
			d += sprintf(d, "%s\"%s\"", k ? "," : "", "n");
		strcpy(d, "]}");
		CHECK_INT(fed_both(buf), n == 64 ? 2 : 0);
	}
}

/* ---- batch frames ---- */

/* One element as the layout writes it: mid m, body b. */
static void elem(char *out, size_t cap, const char *mid, const char *body)
{
	snprintf(out, cap,
		 "{\"op\":\"msg\",\"topic\":\"forum/zev\",\"mid\":\"%s\","
		 "\"origin\":\"a.example\",\"from\":\"u@a.example\",\"ts\":7,"
		 "\"cursor\":\"c\",\"body\":%s,\"path\":[\"a.example\"]}",
		 mid, body);
}

/* Reads the batch frame buf as a receiving node does (layout, else the
 * general decoder's tree). Writes into got, for each element read, its
 * mid or "!" when it did not decode, separated by spaces, then "|" and
 * the end: "end", "bad" (the rest is not a batch) or "none" (not a
 * batch frame). Also checks that every decoded element is a msg with
 * measured lengths. */
static void batch_read(const char *buf, char *got, size_t cap)
{
	size_t len = strlen(buf), n = 0;
	const char *reason = NULL;
	fed_batch_t b;
	fed_in_t in;
	int r, rc;

	got[0] = 0;
	if (!fedcodec_batch_begin(&b, buf, len)) {
		rc = fedcodec_decode(buf, len, &in, &reason);
		if (rc || in.op != FED_BATCH) {
			fedcodec_free(&in);
			snprintf(got, cap, "|none");
			return;
		}
		fedcodec_batch_tree(&b, &in);
		fedcodec_free(&in);
	}
	while ((r = fedcodec_batch_next(&b, &in, &rc, &reason)) == 1) {
		if (!rc)
			CHECK(
			    in.op == FED_MSG && in.mid_len == strlen(in.mid) &&
			    in.topic_len == strlen(in.topic) && in.n_path >= 1);
		n += (size_t)snprintf(got + n, cap - n, "%s%s", n ? " " : "",
				      rc ? "!" : in.mid);
		fedcodec_free(&in);
	}
	CHECK(r == 0 || reason != NULL);
	snprintf(got + n, cap - n, "|%s", r ? "bad" : "end");
	fedcodec_batch_end(&b);
}

/* Writes fmt into out with the bytes 1, 2 and 3 replaced by e1, e2, e3. */
static void expand(char *out, size_t cap, const char *fmt, const char *e1,
		   const char *e2, const char *e3)
{
	size_t n = 0;

	for (; *fmt; fmt++) {
		const char *e = *fmt == 1   ? e1
				: *fmt == 2 ? e2
				: *fmt == 3 ? e3
					    : NULL;
		size_t k = e ? strlen(e) : 1;

		if (n + k >= cap)
			break;
		memcpy(out + n, e ? e : fmt, k);
		n += k;
	}
	out[n] = 0;
}

/* Reads fmt, its bytes 1, 2 and 3 replaced by e1, e2 and e3, as a batch
 * frame (batch_read) and checks that it gives want. */
static void batch_case(const char *fmt, const char *e1, const char *e2,
		       const char *e3, const char *want)
{
	char buf[4096], got[512];

	expand(buf, sizeof buf, fmt, e1, e2, e3);
	batch_read(buf, got, sizeof got);
	if (strcmp(got, want))
		fprintf(stderr, "# batch %s: got %s want %s\n", buf, got, want);
	CHECK(!strcmp(got, want));
}

static void test_fed_batch(void)
{
	char a[512], bb[512], c[512], deep[200];
	static const struct {
		const char *fmt; /* Bytes 1, 2, 3 stand for a, b, c. */
		const char *want;
	} v[] = {
	    {FED_BATCH_OPEN "\001,\002,\003" FED_BATCH_CLOSE, "a b c|end"},
	    {FED_BATCH_OPEN "\001" FED_BATCH_CLOSE, "a|end"},
	    {FED_BATCH_OPEN FED_BATCH_CLOSE, "|end"},
	    /* Whitespace: the layout hands over, nothing is read twice. */
	    {FED_BATCH_OPEN "\001 , \002\n,\003 ] } ", "a b c|end"},
	    {"{ \"op\": \"batch\", \"msgs\": [\001, \002] }", "a b|end"},
	    {"{\"msgs\":[\001,\002],\"op\":\"batch\"}", "a b|end"},
	    {FED_BATCH_OPEN "\001,\002],\"note\":1}", "a b|end"},
	    /* An element that is not a msg, or not valid. */
	    {FED_BATCH_OPEN "\001,{\"op\":\"ping\",\"t\":1},\003]}",
	     "a ! c|end"},
	    {FED_BATCH_OPEN "\001,7,\003]}", "a ! c|end"},
	    {FED_BATCH_OPEN "\001," FED_BATCH_OPEN "\002]},\003]}",
	     "a ! c|end"},
	    /* Broken batches: what came before the break is read. */
	    {FED_BATCH_OPEN "\001,\002", "a b|bad"},
	    {FED_BATCH_OPEN "\001,\002,]}", "a b|bad"},
	    {FED_BATCH_OPEN "\001,,\002]}", "a|bad"},
	    {FED_BATCH_OPEN "\001]}]}", "a|bad"},
	    {FED_BATCH_OPEN "\001,{\"op\":\"msg\"", "a|bad"},
	    {"{\"op\":\"batch\",\"msgs\":5}", "|none"},
	    {"{\"op\":\"batch\"}", "|none"},
	    {"{\"op\":\"batch\",\"msgs\":{}}", "|none"},
	    /* A duplicate msgs member after the layout's: refused. */
	    {FED_BATCH_OPEN "\001],\"msgs\":[\002]}", "a|bad"},
	};

	elem(a, sizeof a, "a", "{\"n\":[1,2]}");
	elem(bb, sizeof bb, "b", "\"x\"");
	elem(c, sizeof c, "c", "null");
	for (size_t i = 0; i < sizeof v / sizeof *v; i++)
		batch_case(v[i].fmt, a, bb, c, v[i].want);
	/* An element failing its checks is refused alone; one in another
	 * layout (escapes, members reordered) is read by the general
	 * decoders; a body the scanner is unsure of (deep nesting) hands the
	 * rest of the frame to Jansson. */
	snprintf(bb, sizeof bb,
		 "{\"op\":\"msg\",\"topic\":\"forum//x\",\"mid\":\"b\","
		 "\"origin\":\"a.example\",\"from\":\"u@a.example\",\"ts\":7,"
		 "\"cursor\":\"c\",\"body\":1,\"path\":[\"a.example\"]}");
	batch_case(FED_BATCH_OPEN "\001,\002,\003]}", a, bb, c, "a ! c|end");
	snprintf(bb, sizeof bb,
		 "{\"path\":[\"a.example\"],\"op\":\"msg\",\"topic\":"
		 "\"forum/z\\u0065v\",\"mid\":\"b\",\"origin\":\"a.example\","
		 "\"from\":\"u@a.example\",\"ts\":7,\"cursor\":\"c\","
		 "\"body\":1}");
	batch_case(FED_BATCH_OPEN "\001,\002,\003]}", a, bb, c, "a b c|end");
	memset(deep, '[', 40);
	memset(deep + 40, ']', 40);
	deep[80] = 0;
	elem(bb, sizeof bb, "b", deep);
	batch_case(FED_BATCH_OPEN "\001,\002,\003]}", a, bb, c, "a b c|end");
	/* The same with the frame broken after it: the tree cannot read on. */
	batch_case(FED_BATCH_OPEN "\001,\002,\003", a, bb, c, "a|bad");
}

/* What outq_set_batch writes, read back: frames fedcodec_msg made, joined
 * as a peer link's queue joins them, are the same messages. */
static void test_fed_batch_roundtrip(void)
{
	char buf[8192], got[512], want[512];
	size_t len = 0, wl = 0;
	frame_t *f[5];

	len += (size_t)sprintf(buf, "%s", FED_BATCH_OPEN);
	for (int i = 0; i < 5; i++) {
		char mid[16], body[64];
		msg_t *m;

		snprintf(mid, sizeof mid, "m%d", i);
		snprintf(body, sizeof body, "{\"i\":%d,\"s\":\"caf\xc3\xa9\"}",
			 i);
		m = msg_new("forum/zev", mid, "a.example", "bot@a.example",
			    1764390000000 + i, body, strlen(body));
		msg_set_path(m, NULL, 0, "a.example");
		f[i] = fedcodec_msg(m, "1a-2b", i & 1);
		CHECK_INT(f[i]->batch, 1);
		if (i)
			buf[len++] = ',';
		memcpy(buf + len, frame_payload(f[i]), f[i]->payload_len);
		len += f[i]->payload_len;
		wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%s",
				       i ? " " : "", mid);
		frame_unref(f[i]);
		msg_unref(m);
	}
	strcpy(buf + len, FED_BATCH_CLOSE);
	snprintf(want + wl, sizeof want - wl, "|end");
	batch_read(buf, got, sizeof got);
	CHECK(!strcmp(got, want));
	/* Control frames are never joined. */
	f[0] = fedcodec_simple(FED_PING, 1, 0);
	f[1] = fedcodec_hello("a.example", NULL, 1);
	CHECK(!f[0]->batch && !f[1]->batch);
	frame_unref(f[0]);
	frame_unref(f[1]);
}

/* A hello says whether its sender reads batch frames. */
static void test_fed_hello_batch(void)
{
	static const struct {
		const char *text;
		int batch;
	} v[] = {
	    {"{\"op\":\"hello\",\"node\":\"a.example\",\"cursor\":null}", 0},
	    {"{\"op\":\"hello\",\"node\":\"a.example\",\"cursor\":null,"
	     "\"batch\":true}",
	     1},
	    {"{\"op\":\"hello\",\"node\":\"a.example\",\"batch\":1}", 0},
	    {"{\"op\":\"hello\",\"node\":\"a.example\",\"batch\":false}", 0},
	};
	const char *reason = NULL;
	frame_t *f = fedcodec_hello("a.example", "1a-2b", 0);
	fed_in_t in;

	CHECK_INT(
	    fedcodec_decode(frame_payload(f), f->payload_len, &in, &reason), 0);
	CHECK(in.op == FED_HELLO && in.batch == 1);
	fedcodec_free(&in);
	frame_unref(f);
	for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
		CHECK_INT(
		    fedcodec_decode(v[i].text, strlen(v[i].text), &in, &reason),
		    0);
		CHECK_INT(in.batch, v[i].batch);
		fedcodec_free(&in);
	}
}

/* A publish read by the fast decoder must be what codec_decode reads:
 * same topic, body and id; and what it declines, codec_decode words.
 * Returns 1 when the fast decoder took buf, 0 when it left it to
 * codec_decode, 2 when neither takes it as a publish, -1 when the two
 * disagree. */
static int pub_both(const char *buf)
{
	const char *reason = NULL;
	size_t len = strlen(buf);
	fast_pub_t fp;
	req_t r;
	int fast = codec_fast_pub(buf, len, &fp), rc, how;

	rc = codec_decode(buf, len, &r, &reason);
	how = fast ? 1 : rc || r.op != REQ_PUB ? 2 : 0;
	if (fast) {
		json_error_t jerr;
		json_t *body = json_loadb(fp.body, fp.body_len,
					  JSON_DECODE_ANY, &jerr);
		json_t *id = codec_id_value(fp.id, fp.id_len);

		if (rc || r.op != REQ_PUB || strcmp(r.topic, fp.topic) ||
		    !body || !json_equal(body, r.body) ||
		    (id == NULL) != (r.id == NULL) ||
		    (id && !json_equal(id, r.id)) ||
		    (unsigned char)fp.body[0] <= ' ')
			how = -1;
		json_decref(body);
		json_decref(id);
	}
	req_free(&r);
	return how;
}

/* The client layouts the fast decoder reads by literals (libparley's
 * member order, the chat page's, parley-loadgen's) and its edges. */
static void test_pub_fast(void)
{
	static const struct {
		const char *frame;
		int how;
	} v[] = {
	    {"{\"op\":\"pub\",\"id\":7,\"topic\":\"a/b\",\"body\":{\"k\":[1]}}",
	     1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":\"x\",\"id\":12}", 1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"id\":\"r-1\",\"body\":null}",
	     1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1}", 1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"id\":-0}", 1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"id\":"
	     "123456789012345}",
	     1},
	    /* Left to the member walk, which takes them. */
	    {"{\"op\":\"pub\",\"topic\":\"caf\xc3\xa9\",\"body\":1}", 1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\": 1}", 1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":\t1}", 1},
	    {"{\"body\":1,\"op\":\"pub\",\"topic\":\"a/b\"}", 1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"x\":2}", 1},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1} ", 1},
	    /* Left to codec_decode. */
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"id\":"
	     "1234567890123456}",
	     0},
	    {"{\"op\":\"pub\",\"topic\":\"a\\/b\",\"body\":1}", 0},
	    /* Duplicate keys: Jansson keeps the last. */
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"body\":2}", 0},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"topic\":\"c\",\"body\":1}",
	     0},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"id\":1,\"id\":2,\"body\":1}",
	     0},
	    /* Refused by both: a fractional id, bad JSON, a missing member,
	     * a control byte, bad UTF-8. */
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"id\":1.5}", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"id\":01}", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1,\"id\":-}", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":[1,,2]}", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":1}}", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\"}", 2},
	    {"{\"op\":\"pub\",\"body\":1}", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a\x01\",\"body\":1}", 2},
	    {"{\"op\":\"pub\",\"topic\":\"a/b\",\"body\":\"\xff\"}", 2},
	};
	char buf[600], id[140];

	for (size_t i = 0; i < sizeof v / sizeof *v; i++)
		CHECK_INT(pub_both(v[i].frame), v[i].how);
	/* Ids of 128 and 129 bytes; topics of 255 and 256. */
	for (int n = 128; n <= 129; n++) {
		memset(id, 'i', (size_t)n);
		id[n] = 0;
		snprintf(buf, sizeof buf,
			 "{\"op\":\"pub\",\"topic\":\"t\",\"id\":\"%s\","
			 "\"body\":1}",
			 id);
		CHECK_INT(pub_both(buf), n == 128 ? 1 : 2);
	}
	for (int n = 255; n <= 256; n++) {
		char *d = buf + sprintf(buf, "{\"op\":\"pub\",\"topic\":\"");

		memset(d, 't', (size_t)n);
		strcpy(d + n, "\",\"body\":1}");
		CHECK_INT(pub_both(buf), n == 255);
	}
}

/* Reads a client batch frame as client_handle does (in place when it
 * starts as parley's clients write it, else through codec_decode) and
 * describes what came out: "pub" or "req" per request, then "end", or the
 * error's code and the index it broke at ("bad_json@1"). Each request
 * handed out must equal Jansson's reading of that element, whenever
 * Jansson reads the whole frame. */
static void client_batch_case(const char *frame, const char *want)
{
	json_error_t jerr;
	json_t *all = json_loads(frame, JSON_REJECT_DUPLICATES, &jerr);
	json_t *msgs = json_object_get(all, "msgs");
	const char *reason = NULL, *text;
	char got[256] = "";
	size_t len = strlen(frame), tl, n = 0;
	codec_batch_t b;
	fast_pub_t fp;
	req_t r;
	int rc = 0, same = 1;

	if (!codec_batch_begin(&b, frame, len)) {
		rc = codec_decode(frame, len, &r, &reason);
		if (!rc && r.op != REQ_BATCH)
			rc = 1;
		if (!rc)
			codec_batch_tree(&b, r.msgs);
		req_free(&r);
		if (rc) {
			snprintf(got, sizeof got, "%s",
				 rc == 1 ? "not a batch" : parley_errcode(rc));
			goto done;
		}
	}
	while ((rc = codec_batch_next(&b, &fp, &text, &tl, &reason)) > 0) {
		json_t *v = batch_request(rc, &fp, text, tl);

		if (json_is_array(msgs) &&
		    !json_equal(v, json_array_get(msgs, n)))
			same = 0;
		json_decref(v);
		n++;
		strcat(got, rc == CB_PUB ? "pub " : "req ");
	}
	if (rc)
		snprintf(got + strlen(got), sizeof got - strlen(got), "%s@%zu",
			 parley_errcode(rc), n);
	else
		strcat(got, "end");
	codec_batch_end(&b);
done:
	CHECK_STR(got, want);
	if (!same)
		printf("# %s: a request differs from Jansson's\n", frame);
	CHECK(same);
	json_decref(all);
}

#define P1 "{\"op\":\"pub\",\"topic\":\"a/b\",\"id\":1,\"body\":{\"k\":[1]}}"
#define P2 "{\"op\":\"pub\",\"topic\":\"a/c\",\"body\":\"x\",\"id\":\"r\"}"

/* Client batch frames: the layout, other layouts, requests of every kind,
 * and frames broken at each place. */
static void test_client_batch(void)
{
	char deep[200], frame[400];

	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 "," P2 "]}",
			  "pub pub end");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[ " P1 " ,\n" P2 " ] } ",
			  "pub pub end");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[]}", "end");
	client_batch_case(
	    "{\"op\":\"batch\",\"msgs\":[{\"op\":\"ping\",\"id\":1},"
	    "{\"op\":\"sub\",\"topic\":\"a/#\"}," P1 "]}",
	    "req req pub end");
	/* A publish in another member order is a request like any other. */
	client_batch_case("{\"op\":\"batch\",\"msgs\":[{\"topic\":\"a\",\"op\":"
			  "\"pub\",\"body\":1}]}",
			  "req end");
	/* Not objects, or a batch in a batch: the hub answers each with an
	 * error of its own. */
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 ",7,\"s\","
			  "{\"op\":\"batch\",\"msgs\":[]}]}",
			  "pub req req req end");
	/* A trailing member hands the rest to Jansson, which skips what was
	 * read. */
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 "],\"id\":3}",
			  "pub end");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 "," P2
			  "],\"x\":[1,2]}",
			  "pub pub end");
	/* Other layouts go through codec_decode. */
	client_batch_case("{\"msgs\":[" P1 "," P2 "],\"op\":\"batch\"}",
			  "req req end");
	client_batch_case("{\"op\": \"batch\", \"msgs\": [" P1 "]}", "req end");
	/* A body jscan is unsure of: Jansson from there on. */
	memset(deep, '[', 40);
	memset(deep + 40, ']', 40);
	deep[80] = 0;
	snprintf(frame, sizeof frame,
		 "{\"op\":\"batch\",\"msgs\":[" P1
		 ",{\"op\":\"pub\",\"topic\":\"a\",\"body\":%s}," P2 "]}",
		 deep);
	client_batch_case(frame, "pub req req end");
	snprintf(frame, sizeof frame,
		 "{\"op\":\"batch\",\"msgs\":[" P1
		 ",{\"op\":\"pub\",\"topic\":\"a\",\"body\":%s}," P2 "]",
		 deep);
	client_batch_case(frame, "pub bad_json@1");
	/* Broken part way: what came before is kept, the break named. */
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 ",{\"op\"",
			  "pub bad_json@1");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 " " P2 "]}",
			  "pub bad_json@1");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 ",]}",
			  "pub bad_json@1");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[," P1 "]}",
			  "bad_json@0");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 "]}x",
			  "pub bad_json@1");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 "]",
			  "pub bad_json@1");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1, "pub bad_json@1");
	client_batch_case("{\"op\":\"batch\",\"msgs\":[", "bad_json@0");
	client_batch_case(
	    "{\"op\":\"batch\",\"msgs\":[{\"op\":\"pub\",\"topic\":"
	    "\"a\",\"body\":1e999}]}",
	    "bad_json@0");
	/* A second msgs must not replace the first. */
	client_batch_case("{\"op\":\"batch\",\"msgs\":[" P1 "],\"msgs\":[" P2
			  "]}",
			  "pub bad_json@1");
	/* Not the layout: codec_decode keeps the last op, a pub without
	 * a topic. */
	client_batch_case("{\"op\":\"batch\",\"op\":\"pub\",\"msgs\":[" P1 "]}",
			  "bad_request");
	/* Not batches. */
	client_batch_case("{\"op\":\"batch\",\"msgs\":5}", "bad_request");
	client_batch_case("{\"op\":\"batch\"}", "bad_request");
	client_batch_case("{\"op\":\"batch\",\"msgs\":{}}", "bad_request");
	client_batch_case(P1, "not a batch");
	client_batch_case("[" P1 "]", "bad_json");
}

/* jw_i64 against printf, around every digit-count boundary, at both ends
 * of int64_t, and over a spread of values. */
static void test_i64(void)
{
	char got[24], want[24];
	int64_t vals[64];
	size_t n = 0, len;
	uint64_t x = 0x9e3779b97f4a7c15ULL;

	vals[n++] = 0;
	vals[n++] = INT64_MAX;
	vals[n++] = INT64_MIN;
	vals[n++] = 1764400000000; /* A millisecond timestamp. */
	for (int64_t p = 1; p <= INT64_MAX / 10; p *= 10) {
		vals[n++] = p - 1;
		vals[n++] = p;
		vals[n++] = -p;
	}
	while (n < sizeof vals / sizeof vals[0]) {
		tap_xorshift(&x);
		vals[n++] = (int64_t)(x >> (x % 64));
	}
	for (size_t i = 0; i < n; i++) {
		len = jw_i64(vals[i], got);
		got[len] = 0;
		snprintf(want, sizeof want, "%lld", (long long)vals[i]);
		CHECK_STR(got, want);
	}
	/* Every magnitude, many values each (the 8-digit steps). */
	{
		long bad = 0;

		for (long i = 0; i < 200000; i++) {
			int64_t w;

			w = (int64_t)(tap_xorshift(&x) >> (i % 64));
			if (i & 1)
				w = -w;
			len = jw_i64(w, got);
			got[len] = 0;
			snprintf(want, sizeof want, "%lld", (long long)w);
			bad += strcmp(got, want) != 0;
		}
		CHECK_INT(bad, 0);
	}
}

/* A peer's msg with this mid and origin (also its path): accepted or
 * refused by both decoders alike, at every edge of the name rules. */
static int fed_names_ok(const char *mid, const char *origin)
{
	char buf[1200];
	const char *reason = NULL;
	fed_in_t in;
	int rc;

	snprintf(buf, sizeof buf,
		 "{\"op\":\"msg\",\"topic\":\"t\",\"mid\":\"%s\","
		 "\"origin\":\"%s\",\"from\":\"u@%s\",\"ts\":1,"
		 "\"body\":1,\"path\":[\"%s\"],\"cursor\":\"c\"}",
		 mid, origin, origin, origin);
	rc = fedcodec_decode(buf, strlen(buf), &in, &reason);
	fedcodec_free(&in);
	if (fedcodec_decode_json(buf, strlen(buf), &in, &reason) != rc)
		rc = -1; /* The decoders disagree. */
	fedcodec_free(&in);
	return rc == 0;
}

static void test_fed_names(void)
{
	char mid64[65], mid65[66], node253[254], node254[255];

	memset(mid64, 'a', 64);
	mid64[64] = 0;
	memset(mid65, 'a', 65);
	mid65[65] = 0;
	memset(node253, 'n', 253);
	node253[253] = 0;
	memset(node254, 'n', 254);
	node254[254] = 0;
	CHECK(fed_names_ok("01AZaz09-_", "a-0.example"));
	CHECK(fed_names_ok(mid64, "a.example"));
	CHECK(!fed_names_ok(mid65, "a.example"));
	CHECK(!fed_names_ok("", "a.example"));
	CHECK(!fed_names_ok("m.1", "a.example"));
	CHECK(!fed_names_ok("m 1", "a.example"));
	CHECK(!fed_names_ok("m\\u00e9", "a.example"));
	CHECK(fed_names_ok("m", node253));
	CHECK(!fed_names_ok("m", node254));
	CHECK(!fed_names_ok("m", "A.example"));
	CHECK(!fed_names_ok("m", "a_b.example"));
	CHECK(!fed_names_ok("m", ""));
	CHECK(!fed_names_ok("m", "caf\xc3\xa9.example"));
	/* Every byte at the start, inside and at the end of a mid and of a
	 * node name: taken exactly when the rules allow it. */
	{
		long bad = 0;

		for (int c = 1; c < 256; c++) {
			int mid_c =
			    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9') || c == '-' || c == '_';
			int node_c = (c >= 'a' && c <= 'z') ||
				     (c >= '0' && c <= '9') || c == '-' ||
				     c == '.';

			if (c == '"' || c == '\\')
				continue; /* Would end or escape the string. */
			for (int at = 0; at < 3; at++) {
				char mid[] = "mid0123456789abcdefg";
				char node[] = "node.example";

				mid[at == 0 ? 0 : at == 1 ? 9 : 19] = (char)c;
				node[at == 0 ? 0 : at == 1 ? 5 : 11] = (char)c;
				bad += fed_names_ok(mid, "a.example") != mid_c;
				bad += fed_names_ok("m", node) != node_c;
			}
		}
		CHECK_INT(bad, 0);
	}
}

int main(void)
{
	test_i64();
	test_fed_names();
	test_scan_offsets();
	test_plain_run();
	test_scan_utf8_and_truncation();
	test_utf8_valid();
	test_msg_frame();
	test_ok_mid();
	test_msg_place();
	test_plain_nul();
	test_small_int();
	test_msg_escapes();
	test_msg_split();
	test_path();
	test_fed_roundtrip();
	test_fed_layout();
	test_fed_batch();
	test_fed_batch_roundtrip();
	test_fed_hello_batch();
	test_pub_fast();
	test_client_batch();
	return tap_done();
}
