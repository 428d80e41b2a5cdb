/* test_client_units.c: unit tests of libparley's internal modules (topic,
 * url, backoff, codec, options, errors) and of the API's argument checks,
 * linked against the static library. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "codec.h"
#include "errors.h"
#include "options.h"
#include "parley.h"
#include "tap.h"
#include "url.h"

static void test_topics(void)
{
	CHECK_INT(parley_topic_check("forum/zev/heavy-duty", 0), 0);
	CHECK_INT(parley_topic_check("a", 0), 0);
	CHECK_INT(parley_topic_check("caf\xc3\xa9/x", 0), 0);
	CHECK_INT(parley_topic_check("", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("/a", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a/", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a//b", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a/+", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a/#", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a\tb", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a\x7f", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a\xc2\x85", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a\xff", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a\xc3", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("\xed\xa0\x80", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("\xc0\xaf", 0), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check(NULL, 0), PARLEY_EINVAL);
	{
		char big[300];

		memset(big, 'a', sizeof(big));
		big[255] = 0;
		CHECK_INT(parley_topic_check(big, 0), 0);
		big[255] = 'a';
		big[256] = 0;
		CHECK_INT(parley_topic_check(big, 0), PARLEY_EINVAL);
	}
	CHECK_INT(parley_topic_check("forum/+/heavy-duty", 1), 0);
	CHECK_INT(parley_topic_check("forum/#", 1), 0);
	CHECK_INT(parley_topic_check("#", 1), 0);
	CHECK_INT(parley_topic_check("+", 1), 0);
	CHECK_INT(parley_topic_check("+/+/#", 1), 0);
	CHECK_INT(parley_topic_check("a/#/b", 1), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a/b#", 1), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a/+b", 1), PARLEY_EINVAL);
	CHECK_INT(parley_topic_check("a/b+/c", 1), PARLEY_EINVAL);

	CHECK(parley_topic_matches("forum/#", "forum/a/b"));
	CHECK(parley_topic_matches("forum/#", "forum"));
	CHECK(parley_topic_matches("#", "x/y"));
	CHECK(parley_topic_matches("forum/+/heavy", "forum/zev/heavy"));
	CHECK(!parley_topic_matches("forum/+/heavy", "forum/zev/x/heavy"));
	CHECK(!parley_topic_matches("forum/+", "forum"));
	CHECK(parley_topic_matches("a/b", "a/b"));
	CHECK(!parley_topic_matches("a/b", "a/bc"));
	CHECK(!parley_topic_matches("a/bc", "a/b"));
	CHECK(!parley_topic_matches("a/b", "a/b/c"));
	CHECK(!parley_topic_matches("a/b/c", "a/b"));
	CHECK(parley_topic_matches("+/+", "a/b"));
	CHECK(!parley_topic_matches("+/+", "a"));
	CHECK(parley_topic_matches("a/+/#", "a/b"));
	CHECK(!parley_topic_matches(NULL, "a"));
}

static void test_urls(void)
{
	parley__url u;

	CHECK_INT(parley__url_parse("ws://127.0.0.1:8080/ws", &u), 0);
	CHECK_INT(u.tls, 0);
	CHECK_STR(u.host, "127.0.0.1");
	CHECK_INT(u.port, 8080);
	CHECK_STR(u.path, "/ws");
	CHECK_STR(u.host_header, "127.0.0.1:8080");
	parley__url_free(&u);

	CHECK_INT(parley__url_parse("wss://hub.example", &u), 0);
	CHECK_INT(u.tls, 1);
	CHECK_INT(u.port, 443);
	CHECK_STR(u.path, "/ws");
	CHECK_STR(u.host_header, "hub.example");
	parley__url_free(&u);

	CHECK_INT(parley__url_parse("ws://h?token=abc", &u), 0);
	CHECK_STR(u.path, "/ws?token=abc");
	CHECK_INT(u.port, 80);
	parley__url_free(&u);

	CHECK_INT(parley__url_parse("ws://[::1]:9000/x/y?z=1", &u), 0);
	CHECK_STR(u.host, "::1");
	CHECK_STR(u.path, "/x/y?z=1");
	CHECK_STR(u.host_header, "[::1]:9000");
	parley__url_free(&u);

	CHECK_INT(parley__url_parse("http://h/ws", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://:80/", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://h:0/", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://h:65536/", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://h:x/", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://h:80x/", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://u@h/", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://h/a b", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://h/a#f", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse("ws://[::1/", &u), PARLEY_EINVAL);
	CHECK_INT(parley__url_parse(NULL, &u), PARLEY_EINVAL);
}

static void test_backoff(void)
{
	parley__backoff b;
	uint64_t d, prev = 100, sum = 0, max = 0;
	int i, distinct = 0;

	parley__backoff_init(&b, 100, 5000, 42);
	for (i = 0; i < 1000; i++) {
		d = parley__backoff_next(&b);
		if (d < 100 || d > 5000 || d > prev * 3)
			break;
		distinct += d != prev;
		prev = d;
		sum += d;
		if (d > max)
			max = d;
	}
	CHECK_INT(i, 1000);
	CHECK(distinct > 900); /* Jittered. */
	CHECK(max > 4000);     /* Reaches near the cap. */
	CHECK(sum / 1000 > 500);
	parley__backoff_reset(&b);
	CHECK(parley__backoff_next(&b) <= 300);

	/* Two clients with different seeds do not move in step. */
	{
		parley__backoff x, y;
		int same = 0;

		parley__backoff_init(&x, 100, 30000, 1);
		parley__backoff_init(&y, 100, 30000, 2);
		for (i = 0; i < 50; i++)
			same += parley__backoff_next(&x) ==
				parley__backoff_next(&y);
		CHECK(same < 5);
	}
	parley__backoff_init(&b, 0, 0, 0); /* Degenerate bounds. */
	CHECK_INT(parley__backoff_next(&b), 1);
}

/* Decodes text; returns the code. */
static int dec(const char *text, parley__frame *f)
{
	char why[160];
	int rc = parley__codec_decode(text, strlen(text), f, why, sizeof(why));

	if (rc)
		CHECK(why[0] != 0);
	return rc;
}

static void test_decode(void)
{
	parley__frame f;
	const char *bad[] = {
	    "",
	    "{",
	    "[1,2]",
	    "42",
	    "\"msg\"",
	    "null",
	    "{}",
	    "{\"op\":5}",
	    "{\"op\":\"\"}",
	    "{\"op\":\"bogus\"}",
	    "{\"op\":\"msg\"}",
	    "{\"op\":\"msg\",\"topic\":\"a\",\"mid\":\"m\",\"origin\":\"o\","
	    "\"from\":\"f\",\"ts\":1,\"cursor\":\"c\"}",
	    "{\"op\":\"msg\",\"topic\":\"a/+\",\"mid\":\"m\",\"origin\":"
	    "\"o\",\"from\":\"f\",\"ts\":1,\"cursor\":\"c\",\"body\":1}",
	    "{\"op\":\"msg\",\"topic\":\"a\",\"mid\":7,\"origin\":\"o\","
	    "\"from\":\"f\",\"ts\":1,\"cursor\":\"c\",\"body\":1}",
	    "{\"op\":\"msg\",\"topic\":\"a\",\"mid\":\"m\",\"origin\":\"o\","
	    "\"from\":\"f\",\"ts\":\"1\",\"cursor\":\"c\",\"body\":1}",
	    "{\"op\":\"msg\",\"topic\":\"a\",\"mid\":\"m\",\"origin\":\"o\","
	    "\"from\":\"f\",\"ts\":1,\"cursor\":\"\",\"body\":1}",
	    "{\"op\":\"msg\",\"topic\":\"a\",\"mid\":\"m\",\"origin\":null,"
	    "\"from\":\"f\",\"ts\":1,\"cursor\":\"c\",\"body\":1}",
	    "{\"op\":\"error\"}",
	    "{\"op\":\"error\",\"code\":1}",
	    "{\"op\":\"error\",\"code\":\"x\",\"topic\":3}",
	    "{\"op\":\"ok\",\"user\":3}",
	    "{\"op\":\"ok\",\"mid\":\"\"}",
	    "{\"op\":\"presence\"}",
	    "{\"op\":\"msg\",\"topic\":\"a\\u0000b\"}",
	    "{\"op\":\"ok\"} trailing",
	    "{\"op\":\"ok\",\"user\":\"\xff\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = dec(bad[i], &f);

		if (rc != PARLEY_EPROTO)
			fprintf(stderr, "accepted bad frame %zu: %s\n", i,
				bad[i]);
		CHECK_INT(rc, PARLEY_EPROTO);
		CHECK(f.root == NULL);
	}

	CHECK_INT(dec("{\"op\":\"msg\",\"topic\":\"a/b\",\"mid\":\"m1\","
		      "\"origin\":\"n\",\"from\":\"u@n\",\"ts\":1700000000000,"
		      "\"cursor\":\"c-1\",\"body\":{\"k\":[1,2]},\"id\":3}",
		      &f),
		  0);
	CHECK_INT(f.op, PARLEY__OP_MSG);
	CHECK_STR(f.topic, "a/b");
	CHECK_STR(f.cursor, "c-1");
	CHECK_INT(f.ts, 1700000000000LL);
	CHECK_INT(f.has_id, 1);
	{
		size_t n;
		char *t = parley__codec_body_text(&f, &n);
		char *j = parley__codec_msg_json(&f);

		CHECK_STR(t, "{\"k\":[1,2]}");
		CHECK_INT(n, 11);
		CHECK(parley__codec_body_string(&f, &n) == NULL);
		CHECK(j && strstr(j, "\"topic\":\"a/b\"") &&
		      strstr(j, "\"body\":{\"k\":[1,2]}") &&
		      !strstr(j, "\"op\""));
		free(t);
		free(j);
	}
	parley__codec_frame_free(&f);

	CHECK_INT(dec("{\"op\":\"ok\",\"id\":\"abc\"}", &f), 0);
	CHECK_INT(f.has_id, 0); /* String ids are never the library's. */
	parley__codec_frame_free(&f);
	CHECK_INT(dec("{\"op\":\"ok\",\"id\":-4}", &f), 0);
	CHECK_INT(f.has_id, 0);
	parley__codec_frame_free(&f);
	CHECK_INT(dec("{\"op\":\"ok\",\"id\":9,\"mid\":\"x\"}", &f), 0);
	CHECK_INT(f.op, PARLEY__OP_OK);
	CHECK_INT(f.id, 9);
	CHECK_STR(f.mid, "x");
	parley__codec_frame_free(&f);
	CHECK_INT(dec("{\"op\":\"error\",\"code\":\"forbidden\"}", &f), 0);
	CHECK_STR(f.reason, "");
	CHECK(f.topic == NULL);
	parley__codec_frame_free(&f);
	CHECK_INT(dec("{\"op\":\"pong\"}", &f), 0);
	parley__codec_frame_free(&f);

	/* Deep nesting is refused by the parser, not by a stack overflow. */
	{
		size_t n = 200000;
		char *deep = malloc(n * 2 + 1);

		memset(deep, '[', n);
		memset(deep + n, ']', n);
		deep[2 * n] = 0;
		CHECK_INT(dec(deep, &f), PARLEY_EPROTO);
		free(deep);
	}
}

static void test_encode(void)
{
	json_t *body;
	parley__txbuf *b;

	CHECK_INT(
	    parley__codec_body_new("{\"a\":1}", 7, PARLEY_BODY_JSON, &body), 0);
	b = parley__codec_pub(7, "t/x", body);
	CHECK(b != NULL);
	if (b) {
		CHECK(b->len == strlen("{\"op\":\"pub\",\"id\":7,\"topic\":"
				       "\"t/x\",\"body\":{\"a\":1}}"));
		CHECK(!memcmp(PARLEY__TXBUF_PAYLOAD(b),
			      "{\"op\":\"pub\",\"id\":7,", 19));
		free(b);
	}
	parley__codec_body_free(body);

	CHECK_INT(parley__codec_body_new("hello", 5, PARLEY_BODY_JSON, &body),
		  PARLEY_EINVAL);
	CHECK_INT(parley__codec_body_new("hello", 5, PARLEY_BODY_AUTO, &body),
		  0);
	CHECK(json_is_string(body));
	parley__codec_body_free(body);
	CHECK_INT(parley__codec_body_new("42", 2, PARLEY_BODY_AUTO, &body), 0);
	CHECK(json_is_integer(body));
	parley__codec_body_free(body);
	CHECK_INT(parley__codec_body_new("42", 2, PARLEY_BODY_STRING, &body),
		  0);
	CHECK(json_is_string(body));
	parley__codec_body_free(body);
	CHECK_INT(parley__codec_body_new("", 0, PARLEY_BODY_AUTO, &body), 0);
	CHECK(json_is_string(body));
	parley__codec_body_free(body);
	CHECK_INT(parley__codec_body_new("\xff", 1, PARLEY_BODY_AUTO, &body),
		  PARLEY_EINVAL);
	CHECK_INT(parley__codec_body_new("a\0b", 3, PARLEY_BODY_STRING, &body),
		  PARLEY_EINVAL);
	CHECK_INT(parley__codec_body_new("1", 1, 99, &body), PARLEY_EINVAL);

	b = parley__codec_sub(3, "a/#", 5, NULL);
	CHECK(b && memmem(PARLEY__TXBUF_PAYLOAD(b), b->len, "\"last\":5", 8));
	free(b);
	b = parley__codec_sub(3, "a/#", -1, "c1");
	CHECK(b && b->len == strlen("{\"op\":\"sub\",\"id\":3,\"topic\":"
				    "\"a/#\",\"since\":\"c1\"}"));
	free(b);
	b = parley__codec_auth(1, "tok\"en");
	CHECK(b && b->len == strlen("{\"op\":\"auth\",\"id\":1,\"token\":"
				    "\"tok\\\"en\"}"));
	free(b);
}

static void test_errors_and_options(void)
{
	long opt[PARLEY__OPT_COUNT];

	CHECK_STR(parley_strerror(PARLEY_EAUTH),
		  "unauthorized: unknown or invalid token");
	CHECK_STR(parley_strerror(12345), "unknown error");
	CHECK_STR(parley_strerror(0), "success");
	CHECK_STR(parley_errname(PARLEY_EMSGSIZE), "PARLEY_EMSGSIZE");
	CHECK_INT(parley__err_from_wire("forbidden"), PARLEY_EFORBIDDEN);
	CHECK_INT(parley__err_from_wire("history_gap"), PARLEY_EHISTORYGAP);
	CHECK_INT(parley__err_from_wire("???"), PARLEY_EHUB);
	CHECK_INT(parley__err_from_wire(NULL), PARLEY_EHUB);
	CHECK_STR(parley_state_name(PARLEY_STATE_CONNECTED), "connected");
	CHECK_STR(parley_state_name(99), "unknown");

	parley__options_defaults(opt);
	CHECK_INT(opt[PARLEY_OPT_MAX_FRAME_BYTES], 1 << 20);
	CHECK_INT(opt[PARLEY_OPT_CONNECT_ATTEMPTS], -1);
	CHECK_INT(parley__options_check(PARLEY_OPT_MAX_FRAME_BYTES, 10),
		  PARLEY_EINVAL);
	CHECK_INT(parley__options_check(PARLEY_OPT_CONNECT_ATTEMPTS, 0),
		  PARLEY_EINVAL);
	CHECK_INT(parley__options_check(PARLEY_OPT_CONNECT_ATTEMPTS, 3), 0);
	CHECK_INT(parley__options_check(999, 1), PARLEY_EINVAL);
}

/* Callbacks that must never run in these tests. */
static int never_called;
static void msg_cb(parley_client *c, const parley_msg *m, void *ud)
{
	never_called++;
}
static void pub_cb(parley_client *c, int err, const char *mid, const char *text,
		   void *ud)
{
	int *n = ud;

	(*n)++;
	CHECK_INT(err, PARLEY_ECANCELED);
}

static void test_api_arguments(void)
{
	parley_client *c = NULL;
	int canceled = 0;

	CHECK_INT(parley_client_new(NULL, NULL), PARLEY_EINVAL);
	CHECK_INT(parley_client_new(&c, NULL), 0);
	CHECK_INT(parley_set_option(c, PARLEY_OPT_MAX_FRAME_BYTES, 1),
		  PARLEY_EINVAL);
	CHECK_INT(parley_set_option(c, PARLEY_OPT_MAX_QUEUED, 2), 0);
	CHECK_INT(parley_get_option(c, PARLEY_OPT_MAX_QUEUED), 2);
	CHECK_INT(parley_set_tls(c, "/nonexistent/ca.pem", NULL, NULL),
		  PARLEY_EINVAL);
	CHECK_INT(parley_set_tls(c, NULL, "/etc/hostname", NULL),
		  PARLEY_EINVAL);
	CHECK_INT(parley_set_token(c, ""), PARLEY_EINVAL);
	CHECK_INT(parley_connect(c, "http://x"), PARLEY_EINVAL);
	CHECK_INT(parley_subscribe(c, "a/#/b", -1, NULL, msg_cb, NULL),
		  PARLEY_EINVAL);
	CHECK_INT(parley_subscribe(c, "a", 3, "cur", msg_cb, NULL),
		  PARLEY_EINVAL);
	CHECK_INT(parley_subscribe(c, "a", -1, NULL, NULL, NULL),
		  PARLEY_EINVAL);
	CHECK_INT(parley_subscribe(c, "a/#", 5, NULL, msg_cb, NULL), 0);
	CHECK_INT(parley_subscribe(c, "a/#", -1, NULL, msg_cb, NULL),
		  PARLEY_EEXIST);
	CHECK_INT(parley_unsubscribe(c, "a/#"), 0);
	CHECK_INT(parley_unsubscribe(c, "a/#"), PARLEY_ENOENT);
	CHECK_INT(
	    parley_publish(c, "a/+", "1", 1, PARLEY_BODY_JSON, NULL, NULL),
	    PARLEY_EINVAL);
	CHECK_INT(parley_publish(c, "a", "{", 1, PARLEY_BODY_JSON, NULL, NULL),
		  PARLEY_EINVAL);
	/* Queued while not connected, up to the bound. */
	CHECK_INT(
	    parley_publish(c, "a", "1", 1, PARLEY_BODY_JSON, pub_cb, &canceled),
	    0);
	CHECK_INT(
	    parley_publish(c, "a", "x", 1, PARLEY_BODY_AUTO, pub_cb, &canceled),
	    0);
	CHECK_INT(
	    parley_publish(c, "a", "2", 1, PARLEY_BODY_JSON, pub_cb, &canceled),
	    PARLEY_EQUEUEFULL);
	CHECK_INT(parley_pending(c), 2);
	CHECK_INT(parley_state(c), PARLEY_STATE_IDLE);
	CHECK_INT(parley_run(c), 0); /* Nothing to do: returns at once. */
	CHECK_INT(parley_run_once(c, 0), 0);
	parley_client_free(c); /* Cancels both publishes. */
	CHECK_INT(canceled, 2);
	CHECK_INT(never_called, 0);
	parley_client_free(NULL);
	CHECK(strcmp(parley_version(), "0.1.0") == 0);
}

int main(void)
{
	test_topics();
	test_urls();
	test_backoff();
	test_decode();
	test_encode();
	test_errors_and_options();
	test_api_arguments();
	return tap_done();
}
