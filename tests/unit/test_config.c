/* test_config.c: the config parser: defaults, bounds, every error with its
 * key and line, file loading, the reload rule, the docs and the examples. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "err.h"
#include "tap.h"

#define ALICE_SHA                                                              \
	"e706f2008f191924f4f6d6107fa56e8677a25a416815975bb848eb48e9694416"
#define BOT_SHA                                                                \
	"488b2115e7b46d21a9f6abf79364319488f76f251526aab4b104bcd8153dddea"

#define ZERO_SHA                                                               \
	"0000000000000000000000000000000000000000000000000000000000000000"

/* A config that must be refused. */
struct bad {
	const char *text; /* The file. */
	const char *msg;  /* A substring of the message. */
	int line;	  /* The line it must name (0: none, e.g. Jansson). */
};

/* How many keys the table has (test_docs lists them). */
#define N_DOC_KEYS 61

/* The smallest valid config. */
#define MIN "\"node\":\"a.example\",\"listen\":{}"

static const struct bad bads[] = {
    /* Syntax, as Jansson reports it, with its line. */
    {"{\n\"node\": \"a\",\n}", "test.json:3:", 0},
    {"", "test.json:1:", 0},
    {"{\"node\":\"a\",\n\"node\":\"b\",\"listen\":{}}", "duplicate object key",
     0},
    {"{" MIN ",\n\"history\":{\"length\":99999999999999999999}}",
     "too big integer", 0},
    {"[1]", "test.json:1: expected an object at the top, got array", 1},

    /* Required keys, named at the line of their object. */
    {"{\"listen\":{}}", "node: required key is missing", 1},
    {"\n{\"node\":\"a.example\"}", "listen: required key is missing", 2},

    /* Unknown keys, with a hint for a typo. */
    {"{\n\"node\": \"a\",\n\"lisetn\": {}\n}",
     "lisetn: unknown key (did you mean \"listen\"?)", 3},
    {"{" MIN ",\n\"zzzzzzzz\": 1}", "zzzzzzzz: unknown key", 2},
    {"{" MIN ",\n\"limits\": {\n\"max_frame\": 1}}",
     "limits.max_frame: unknown key", 3},
    {"{" MIN ",\n\"limits.max_errors\": 5}", "limits.max_errors: unknown key",
     2},
    {"{" MIN ",\n\"li\\u006dits\": {\n\"bogus\": 1}}",
     "limits.bogus: unknown key", 3},
    {"{" MIN ",\n\"caf\\u00e9\": {\"\\ud83d\\ude00\": 1}}",
     "caf\xc3\xa9: unknown key", 2},
    {"{" MIN ",\n\"a\\nb\": 1}", "a?b: unknown key", 2},
    {"{" MIN
     ",\"auth\":{\"tokens\":[{\"user\":\"x\",\n\"token_sha256\":\"" ALICE_SHA
     "\",\n\"pubilsh\":[]}]}}",
     "auth.tokens[0].pubilsh: unknown key (did you mean \"publish\"?)", 3},
    {"{" MIN ",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]"
     "]]]]]]]]]]]]]]]]]]],\n\"y\":{\"z\":[{\"a\":1}]}}",
     "x: unknown key", 1},

    /* Wrong types. */
    {"{\n\"node\":\"a\",\n\"listen\":{\n\"port\":\"8080\"}}",
     "listen.port: expected an integer, got string", 4},
    {"{\"node\":\"a\",\"listen\":{\n\n\"port\": 1.0}}",
     "listen.port: expected an integer, got real number", 3},
    {"{\"node\":null,\"listen\":{}}", "node: expected a string, got null", 1},
    {"{" MIN ",\n\"history\": []}", "history: expected an object, got array",
     2},
    {"{" MIN ",\"limits\":{\n\"max_frame_bytes\": true}}",
     "limits.max_frame_bytes: expected an integer, got boolean", 2},
    {"{" MIN ",\"limits\":{\n\"publish_per_second\": \"5\"}}",
     "limits.publish_per_second: expected a number, got string", 2},
    {"{" MIN ",\"auth\":{\"anonymous\":{\n\"subscribe\": \"forum/#\"}}}",
     "auth.anonymous.subscribe: expected an array of topic filters, got "
     "string",
     2},
    {"{" MIN ",\"auth\":{\"anonymous\":{\"subscribe\": [\n[\"a\"]]}}}",
     "auth.anonymous.subscribe[0]: expected a string, got array", 2},
    {"{" MIN ",\"auth\":{\n\"tokens\": {}}}",
     "auth.tokens: expected an array of objects, got object", 2},
    {"{" MIN
     ",\"auth\":{\"tokens\": [\n{\"user\":\"a\",\"token_sha256\":\"" ALICE_SHA
     "\"},\n\"b\"]}}",
     "auth.tokens[1]: expected an object, got string", 3},
    {"{" MIN ",\n\"redis\":{\"port\":\"x\"}}",
     "redis.port: expected an integer, got string", 2},

    /* Out of range. */
    {"{\"node\":\"a\",\"listen\":{\n\"port\":0}}",
     "listen.port: must be an integer between 1 and 65535", 2},
    {"{\"node\":\"a\",\"listen\":{\n\"port\":65536}}",
     "listen.port: must be an integer between 1 and 65535", 2},
    {"{" MIN ",\n\"limits\": {\n\"max_frame_bytes\": 255}}",
     "limits.max_frame_bytes: must be an integer between 256 and 16777216", 3},
    {"{" MIN ",\n\"limits\": {\n\"max_frame_bytes\": 16777217}}",
     "limits.max_frame_bytes: must be an integer between 256 and 16777216", 3},
    {"{" MIN ",\"limits\":{\"max_frame_bytes\": -1}}",
     "must be an integer between 256 and", 1},
    {"{" MIN ",\"history\":{\"length\":0}}",
     "history.length: must be an integer between 1 and 1000000", 1},
    {"{" MIN ",\"history\":{\"length\":1000001}}",
     "history.length: must be an integer between 1 and 1000000", 1},
    {"{" MIN ",\"limits\":{\"max_subscriptions\":0}}",
     "limits.max_subscriptions: must be an integer between 1 and 100000", 1},
    {"{" MIN ",\"limits\":{\"max_subscriptions\":100001}}",
     "limits.max_subscriptions: must be", 1},
    {"{" MIN ",\"limits\":{\"max_queue_bytes\":65535}}",
     "limits.max_queue_bytes: must be an integer between 65536 and "
     "1073741824",
     1},
    {"{" MIN ",\"limits\":{\"max_queue_bytes\":1073741825}}",
     "limits.max_queue_bytes: must be", 1},
    {"{" MIN ",\"limits\":{\"publish_per_second\":0}}",
     "limits.publish_per_second: must be a number between 0.1 and 1000000", 1},
    {"{" MIN ",\"limits\":{\"publish_per_second\":1000000.5}}",
     "limits.publish_per_second: must be a number between", 1},
    {"{" MIN ",\"limits\":{\"publish_burst\":0.5}}",
     "limits.publish_burst: must be a number between 1 and 10000000", 1},
    {"{" MIN ",\"limits\":{\"publish_burst\":1e7.0}}", "test.json:1:", 0},
    {"{" MIN ",\"limits\":{\"publish_burst\":10000001}}",
     "limits.publish_burst: must be a number between 1 and 10000000", 1},
    {"{" MIN ",\"limits\":{\"token_publish_per_second\":0.09}}",
     "limits.token_publish_per_second: must be a number between 0.1 and "
     "10000000",
     1},
    {"{" MIN ",\"limits\":{\"max_connections\":0}}",
     "limits.max_connections: must be an integer between 1 and 1000000", 1},
    {"{" MIN ",\"limits\":{\"max_connections\":1000001}}",
     "limits.max_connections: must be", 1},
    {"{" MIN ",\"limits\":{\"max_errors\":10001}}",
     "limits.max_errors: must be an integer between 1 and 10000", 1},
    {"{" MIN ",\"limits\":{\"max_topics\":0}}",
     "limits.max_topics: must be an integer between 1 and 100000000", 1},
    {"{" MIN ",\"limits\":{\"max_topics\":100000001}}",
     "limits.max_topics: must be", 1},
    {"{" MIN ",\"federation\":{\"ca\":\"c\",\"cert\":\"c\",\"key\":\"k\","
     "\n\"listen\":{\"port\":70000}}}",
     "federation.listen.port: must be an integer between 1 and 65535", 2},

    /* Strings with rules. */
    {"{\"node\":\"A.example\",\"listen\":{}}", "node: must be a DNS-style name",
     1},
    {"{\"node\":\"-a.example\",\"listen\":{}}",
     "node: must be a DNS-style name", 1},
    {"{\"node\":\"a-.example\",\"listen\":{}}",
     "node: must be a DNS-style name", 1},
    {"{\"node\":\"a..example\",\"listen\":{}}",
     "node: must be a DNS-style name", 1},
    {"{\"node\":\"a.example.\",\"listen\":{}}",
     "node: must be a DNS-style name", 1},
    {"{\"node\":\"a_b\",\"listen\":{}}", "node: must be a DNS-style name", 1},
    {"{\"node\":\"\",\"listen\":{}}", "node: must be 1 to 253 bytes long", 1},
    {"{" MIN ",\n\"log_level\":\"verbose\"}",
     "log_level: must be debug, info, warn or error", 2},
    {"{\"node\":\"a\",\"listen\":{\n\"path\":\"ws\"}}",
     "listen.path: must start with '/'", 2},
    {"{\"node\":\"a\",\"listen\":{\n\"path\":\"/a b\"}}",
     "listen.path: must start with '/'", 2},
    {"{\"node\":\"a\",\"listen\":{\n\"host\":\"\"}}",
     "listen.host: must be 1 to 255 bytes long", 2},
    {"{\"node\":\"a\",\"listen\":{\n\"host\":\"a\\u0001\"}}",
     "listen.host: must not hold control characters", 2},
    {"{" MIN ",\"redis\":{\n\"prefix\":\"a b\"}}",
     "redis.prefix: may hold only letters, digits, ':', '_' and '-'", 2},
    {"{" MIN ",\"redis\":{\n\"prefix\":\"\"}}",
     "redis.prefix: must be 1 to 64 bytes long", 2},

    /* Patterns, named by index, at the element's line. */

    {"{" MIN ",\"presence\":{\"topics\":[\"a\",\n\"a/#/b\"]}}",

     "presence.topics[1]: invalid topic filter \"a/#/b\"", 2},

    {"{" MIN ",\"presence\":{\n\"topics\":\"#\"}}",

     "presence.topics: expected an array of topic filters, got string", 2},

    {"{" MIN ",\"http\":{\n\"root\":\"\"}}",

     "http.root: must be 1 to 4096 bytes long", 2},

    {"{" MIN ",\"http\":{\n\"root\":5}}",

     "http.root: expected a string, got integer", 2},

    {"{" MIN ",\"http\":{\n\"rot\":\"/x\"}}",

     "http.rot: unknown key (did you mean \"root\"?)", 2},
    {"{" MIN
     ",\"auth\":{\"anonymous\":{\"publish\": [\n\"a\",\n\"a/#/b\"\n]}}}",
     "auth.anonymous.publish[1]: invalid topic filter \"a/#/b\"", 3},
    {"{" MIN ",\"auth\":{\"anonymous\":{\"subscribe\": [\"\"]}}}",
     "auth.anonymous.subscribe[0]: invalid topic filter", 1},
    {"{" MIN ",\n\"auth\": {\n\"tokens\": [\n"
     "{\"user\": \"a\", \"token_sha256\": \"" ALICE_SHA "\"},\n"
     "{\"user\": \"b\", \"token_sha256\": \"" BOT_SHA "\",\n"
     "\"publish\": [\n"
     "\"forum/+x\"]}]}}",
     "auth.tokens[1].publish[0]: invalid topic filter \"forum/+x\"", 7},

    /* Token entries. */
    {"{" MIN ",\"auth\":{\"tokens\":[\n{\"token_sha256\":\"" ALICE_SHA "\"}]}}",
     "auth.tokens[0].user: required key is missing", 2},
    {"{" MIN ",\"auth\":{\"tokens\":[{\"user\":\"a\"},\n{\"user\":\"b\"}]}}",
     "auth.tokens[0].token_sha256: required key is missing", 1},
    {"{" MIN ",\"auth\":{\"tokens\":[{\"user\":\"a\",\n\"token_sha256\":"
     "\"abc\"}]}}",
     "auth.tokens[0].token_sha256: must be 64 hex digits", 2},
    {"{" MIN
     ",\"auth\":{\"tokens\":[{\"user\":\"a\",\n\"token_sha256\":\"" ALICE_SHA
     "0\"}]}}",
     "auth.tokens[0].token_sha256: must be 64 hex digits", 2},
    {"{" MIN ",\"auth\":{\"tokens\":[{\"user\":\"a\",\n\"token_sha256\":"
     "\"g706f2008f191924f4f6d6107fa56e8677a25a416815975bb848eb48e9694416\""
     "}]}}",
     "auth.tokens[0].token_sha256: must be 64 hex digits", 2},
    {"{" MIN ",\"auth\":{\"tokens\":[{\n\"user\":\"al ice\",\"token_sha256\":"
     "\"" ALICE_SHA "\"}]}}",
     "auth.tokens[0].user: may hold only letters, digits, '.', '_' and '-'", 2},
    {"{" MIN ",\"auth\":{\"tokens\":[\n"
     "{\"user\":\"a\",\"token_sha256\":\"" ALICE_SHA "\"},\n"
     "{\"user\":\"b\",\"token_sha256\":\"" BOT_SHA "\"},\n"
     "{\"user\":\"a\",\"token_sha256\":\"" ALICE_SHA "\"},\n"
     "{\"user\":\"b\",\"token_sha256\":\"" BOT_SHA "\"}]}}",
     "auth.tokens[2].user: must be unique, but auth.tokens[0] has the same "
     "value",
     4},
    {"{" MIN ",\"auth\":{\"tokens\":[\n"
     "{\"user\":\"a\",\"token_sha256\":\"" ALICE_SHA "\"},\n"
     "{\"user\":\"b\",\"token_sha256\":\"" BOT_SHA "\"},\n"
     "{\"user\":\"c\",\n\"token_sha256\":\"" BOT_SHA "\"}]}}",
     "auth.tokens[2].token_sha256: must be unique, but auth.tokens[1] has "
     "the same value",
     5},

    /* Federation. */
    {"{" MIN ",\n\"federation\":{\"cert\":\"c\",\"key\":\"k\"}}",
     "federation.ca: required key is missing", 2},
    {"{" MIN ",\n\"federation\":{\"ca\":\"\",\"cert\":\"c\",\"key\":\"k\"}}",
     "federation.ca: must be 1 to 4096 bytes long", 2},
    {"{" MIN ",\"federation\":{\"ca\":\"c\",\"cert\":\"c\",\"key\":\"k\","
     "\"peers\":[\n{\"name\":\"b.example\",\n\"url\":\"ws://b:1\"}]}}",
     "federation.peers[0].url: must be a wss:// URL", 3},
    {"{" MIN ",\"federation\":{\"ca\":\"c\",\"cert\":\"c\",\"key\":\"k\","
     "\"peers\":[\n{\"name\":\"b.example\"}]}}",
     "federation.peers[0].url: required key is missing", 2},
    {"{" MIN ",\"federation\":{\"ca\":\"c\",\"cert\":\"c\",\"key\":\"k\","
     "\"peers\":[\n{\"name\":\"B\",\"url\":\"wss://b\"}]}}",
     "federation.peers[0].name: must be a DNS-style name", 2},
    {"{" MIN ",\"federation\":{\"ca\":\"c\",\"cert\":\"c\",\"key\":\"k\","
     "\"peers\":[\n{\"name\":\"b\",\"url\":\"wss://b\"},\n"
     "{\"name\":\"b\",\"url\":\"wss://c\"}]}}",
     "federation.peers[1].name: must be unique, but federation.peers[0] "
     "has the same value",
     3},
    {"{\"listen\":{},\"federation\":{\"ca\":\"c\",\"cert\":\"c\",\"key\":"
     "\"k\",\"peers\":[{\"name\":\"b\",\"url\":\"wss://b\"},\n"
     "{\"name\":\"a.example\",\"url\":\"wss://c\"}]},\n\"node\":\"a.example\"}",
     "federation.peers[1].name: is this node's own name", 2},
    {"{" MIN ",\"federation\":{\"ca\":\"c\",\"cert\":\"c\",\"key\":\"k\","
     "\"peers\":[{\"name\":\"b\",\"url\":\"wss://b\",\n\"export\":[\"#/a\"]"
     "}]}}",
     "federation.peers[0].export[0]: invalid topic filter", 2},

    /* Line counting is not fooled by escapes, numbers or literals before
     * the error, nor by brackets or quotes in strings. */
    {"{\"node\":\"a\",\"listen\":{\"host\":\"\\u2603\\ud83d\\ude00\\/\\\\\","
     "\"port\":8080},\"auth\":{\"anonymous\":{\"publish\":[]}},\n"
     "\"limits\":{\"max_errors\":5,\"publish_per_second\":2.5e0},\n"
     "\"l\\u006fg_level\":\"info\",\"history\":{},\n"
     "\"bad\":true}",
     "bad: unknown key", 4},
    {"{\"node\":\"a\",\"listen\":{\"host\":\"x{[\\\"]}\\\\\"},\n"
     "\"history\":{\"length\":\"9\"}}",
     "history.length: expected an integer, got string", 2},
};

static void test_bad(void)
{
	for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
		const struct bad *b = &bads[i];
		config_t *c = (config_t *)&c;
		char err[512], line[32];
		int rc = config_parse(b->text, strlen(b->text), "test.json", &c,
				      err, sizeof err);
		int ok = rc < 0 && !c && strstr(err, b->msg);

		if (b->line) {
			snprintf(line, sizeof line, "test.json:%d: ", b->line);
			ok = ok && !strncmp(err, line, strlen(line));
		}
		CHECK(ok);
		if (!ok)
			fprintf(stderr, "  case %zu: rc %d, got \"%s\"\n", i,
				rc, err);
	}
}

static config_t *parse_ok(const char *text)
{
	config_t *c = NULL;
	char err[512];
	int rc =
	    config_parse(text, strlen(text), "ok.json", &c, err, sizeof err);

	CHECK_INT(rc, 0);
	if (rc)
		fprintf(stderr, "  unexpected error: %s\n", err);
	return c;
}

static void test_defaults(void)
{
	config_t *c = parse_ok("{" MIN "}");

	if (!c)
		return;
	CHECK_STR(c->node, "a.example");
	CHECK_STR(c->log_level, "info");
	CHECK_STR(c->listen_host, "127.0.0.1");
	CHECK_INT(c->listen_port, 8080);
	CHECK_STR(c->ws_path, "/ws");
	CHECK_INT(c->history_length, 1000);
	CHECK_INT(c->presence_topics.n, 1);
	CHECK_STR(c->presence_topics.v[0], "#");
	CHECK(c->http_root == NULL);
	CHECK_INT(c->anon_subscribe.n, 0);
	CHECK_INT(c->anon_publish.n, 0);
	CHECK_INT(c->n_tokens, 0);
	CHECK_INT(c->fed_enabled, 0);
	CHECK_STR(c->fed_host, "127.0.0.1");
	CHECK_INT(c->fed_port, 8443);
	CHECK(c->fed_ca == NULL && c->fed_cert == NULL && c->fed_key == NULL);
	CHECK_INT(c->n_peers, 0);
	CHECK_INT(c->redis_enabled, 0);
	CHECK_STR(c->redis_host, "127.0.0.1");
	CHECK_INT(c->redis_port, 6379);
	CHECK_STR(c->redis_prefix, "parley");
	CHECK_INT(c->limits.max_frame_bytes, 65536);
	CHECK_INT(c->limits.max_subscriptions, 256);
	CHECK_INT(c->limits.max_queue_bytes, 4194304);
	CHECK(c->limits.publish_per_second == 50);
	CHECK(c->limits.publish_burst == 100);
	CHECK(c->limits.token_publish_per_second == 500);
	CHECK_INT(c->limits.max_connections, 10000);
	CHECK_INT(c->limits.max_errors, 10);
	CHECK_INT(c->limits.max_topics, 100000);
	config_free(c);

	/* Derived defaults follow publish_per_second; the burst is >= 1. */
	c = parse_ok("{" MIN ",\"limits\":{\"publish_per_second\":0.4}}");
	if (c) {
		CHECK(c->limits.publish_burst == 1);
		CHECK(c->limits.token_publish_per_second == 4);
		config_free(c);
	}
	c = parse_ok("{" MIN ",\"limits\":{\"publish_per_second\":3,"
		     "\"publish_burst\":7,\"token_publish_per_second\":8}}");
	if (c) {
		CHECK(c->limits.publish_burst == 7);
		CHECK(c->limits.token_publish_per_second == 8);
		config_free(c);
	}
	/* Key order does not matter to derived defaults. */
	c = parse_ok("{\"limits\":{\"max_errors\":3},\"listen\":{},"
		     "\"node\":\"a\",\"history\":{}}");
	if (c) {
		CHECK(c->limits.publish_burst == 100);
		CHECK_INT(c->limits.max_errors, 3);
		config_free(c);
	}
	config_free(NULL);
}

static void test_edges(void)
{
	static const char *const ok[] = {
	    "{\"node\":\"a\",\"listen\":{\"port\":1}}",
	    "{\"node\":\"a\",\"listen\":{\"port\":65535,\"path\":\"/\"}}",
	    "{" MIN ",\"history\":{\"length\":1}}",
	    "{" MIN ",\"history\":{\"length\":1000000}}",
	    "{" MIN ",\"limits\":{\"max_frame_bytes\":256,"
	    "\"max_subscriptions\":1,\"max_queue_bytes\":65536,"
	    "\"publish_per_second\":0.1,\"publish_burst\":1,"
	    "\"token_publish_per_second\":0.1,\"max_connections\":1,"
	    "\"max_errors\":1,\"max_topics\":1}}",
	    "{" MIN ",\"limits\":{\"max_frame_bytes\":16777216,"
	    "\"max_subscriptions\":100000,\"max_queue_bytes\":1073741824,"
	    "\"publish_per_second\":1e6,\"publish_burst\":1e7,"
	    "\"token_publish_per_second\":10000000,"
	    "\"max_connections\":1000000,\"max_errors\":10000,"
	    "\"max_topics\":100000000}}",
	    "{\"node\":\"0-9.x\",\"listen\":{},\"log_level\":\"debug\"}",
	    "{" MIN ",\"redis\":{\"prefix\":\"a:_-AZ09\"}}",
	    /* An upper-case hash. */
	    "{" MIN ",\"auth\":{\"tokens\":[{\"user\":\"a._-Z9\","
	    "\"token_sha256\":\"E706F2008F191924F4F6D6107FA56E8677A25A4168"
	    "15975BB848EB48E9694416\"}]}}",
	    /* Names that share a prefix are distinct. */
	    "{" MIN ",\"auth\":{\"tokens\":[{\"user\":\"ab\",\"token_sha256\":"
	    "\"" ALICE_SHA "\"},{\"user\":\"a\",\"token_sha256\":\"" BOT_SHA
	    "\"},{\"user\":\"abc\",\"token_sha256\":\"" ZERO_SHA "\"}]}}",
	    /* Empty sections and lists are fine. */
	    "{" MIN ",\"auth\":{},\"limits\":{},\"history\":{}}",
	    "{" MIN ",\"auth\":{\"anonymous\":{},\"tokens\":[]}}",
	    "{" MIN ",\"presence\":{\"topics\":[]},\"http\":{}}",
	};

	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		config_t *c = parse_ok(ok[i]);

		if (!c)
			fprintf(stderr, "  edge case %zu\n", i);
		config_free(c);
	}
}

/* Returns a string of n copies of c (static; one at a time). */
static const char *rep(char c, size_t n)
{
	static char buf[512];

	memset(buf, c, n);
	buf[n] = 0;
	return buf;
}

/* Parses the config printf builds; returns the code and the message. */
__attribute__((format(printf, 2, 3))) static int try_parse(char *err,
							   const char *fmt, ...)
{
	char text[2048];
	config_t *c = NULL;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	rc = config_parse(text, strlen(text), "len.json", &c, err, 512);
	config_free(c);
	return rc;
}

static void test_lengths(void)
{
	char err[512], name[300];

	/* Labels of up to 63 characters, names of up to 253. */
	/* Built with strcat: rep() returns up to 511 bytes, which GCC's
	 * -Wformat-truncation cannot see is 63 here. */
	strcpy(name, rep('a', 63));
	strcat(name, ".");
	strcat(name, rep('b', 63));
	strcat(name, ".");
	strcat(name, rep('c', 63));
	strcat(name, ".");
	strcat(name, rep('d', 61));
	CHECK_INT(strlen(name), 253);
	CHECK_INT(try_parse(err, "{\"node\":\"%s\",\"listen\":{}}", name), 0);
	strcat(name, "d");
	CHECK_INT(try_parse(err, "{\"node\":\"%s\",\"listen\":{}}", name),
		  PE_CONFIG);
	CHECK_STR(err, "len.json:1: node: must be 1 to 253 bytes long");
	CHECK_INT(
	    try_parse(err, "{\"node\":\"%s.b\",\"listen\":{}}", rep('a', 64)),
	    PE_CONFIG);
	CHECK(strstr(err, "node: must be a DNS-style name") != NULL);

	CHECK_INT(try_parse(err,
			    "{" MIN ",\"auth\":{\"tokens\":[{\"user\":\"%s\","
			    "\"token_sha256\":\"" ALICE_SHA "\"}]}}",
			    rep('u', 64)),
		  0);
	CHECK_INT(try_parse(err,
			    "{" MIN ",\"auth\":{\"tokens\":[{\"user\":\"%s\","
			    "\"token_sha256\":\"" ALICE_SHA "\"}]}}",
			    rep('u', 65)),
		  PE_CONFIG);
	CHECK_STR(err, "len.json:1: auth.tokens[0].user: must be 1 to 64 bytes "
		       "long");

	CHECK_INT(try_parse(err, "{" MIN ",\"redis\":{\"prefix\":\"%s\"}}",
			    rep('p', 64)),
		  0);
	CHECK_INT(try_parse(err, "{" MIN ",\"redis\":{\"prefix\":\"%s\"}}",
			    rep('p', 65)),
		  PE_CONFIG);
	CHECK_STR(err, "len.json:1: redis.prefix: must be 1 to 64 bytes long");

	/* A long unknown key gets no hint, and still its line. */
	CHECK_INT(try_parse(err, "{" MIN ",\n\"%s\":1}", rep('k', 300)),
		  PE_CONFIG);
	CHECK(strstr(err, "len.json:2: kkkk") == err);
	CHECK(strstr(err, "k: unknown key") != NULL);
}

static const char full[] =
    "{\n"
    "  \"node\": \"scotland.example\",\n"
    "  \"log_level\": \"warn\",\n"
    "  \"listen\": { \"host\": \"0.0.0.0\", \"port\": 9000, \"path\": "
    "\"/chat\" },\n"
    "  \"history\": { \"length\": 50 },\n"
    "  \"presence\": { \"topics\": [\"forum/#\", \"x/+\"] },\n"
    "  \"http\": { \"root\": \"/srv/parley/www\" },\n"
    "  \"auth\": {\n"
    "    \"anonymous\": { \"subscribe\": [\"forum/#\"], \"publish\": [] },\n"
    "    \"tokens\": [\n"
    "      { \"user\": \"alice\", \"token_sha256\": \"" ALICE_SHA "\",\n"
    "        \"subscribe\": [\"#\"], \"publish\": [\"forum/#\"] },\n"
    "      { \"user\": \"bot\", \"token_sha256\": \"" BOT_SHA "\",\n"
    "        \"publish\": [\"bots/+\", \"news\"] }\n"
    "    ]\n"
    "  },\n"
    "  \"federation\": {\n"
    "    \"listen\": { \"host\": \"127.0.0.2\", \"port\": 9443 },\n"
    "    \"ca\": \"ca.pem\", \"cert\": \"s.pem\", \"key\": \"s.key\",\n"
    "    \"peers\": [\n"
    "      { \"name\": \"bogota.example\", \"url\": \"wss://127.0.0.1:9444\",\n"
    "        \"export\": [\"forum/#\"], \"import\": [\"forum/+/x\"] }\n"
    "    ]\n"
    "  },\n"
    "  \"redis\": { \"host\": \"10.0.0.1\", \"port\": 7000, \"prefix\": "
    "\"p:s\" },\n"
    "  \"limits\": { \"max_frame_bytes\": 1024, \"max_subscriptions\": 5,\n"
    "              \"max_queue_bytes\": 100000, \"publish_per_second\": "
    "2.5 }\n"
    "}\n";

static void test_full(void)
{
	config_t *c = parse_ok(full);

	if (!c)
		return;
	CHECK_STR(c->node, "scotland.example");
	CHECK_STR(c->log_level, "warn");
	CHECK_STR(c->listen_host, "0.0.0.0");
	CHECK_INT(c->listen_port, 9000);
	CHECK_STR(c->ws_path, "/chat");
	CHECK_INT(c->history_length, 50);
	CHECK_INT(c->presence_topics.n, 2);
	CHECK_STR(c->presence_topics.v[1], "x/+");
	CHECK_STR(c->http_root, "/srv/parley/www");
	CHECK_INT(c->anon_subscribe.n, 1);
	CHECK_STR(c->anon_subscribe.v[0], "forum/#");
	CHECK_INT(c->anon_publish.n, 0);
	CHECK_INT(c->n_tokens, 2);
	CHECK_STR(c->tokens[0].user, "alice");
	CHECK_INT(c->tokens[0].sha256[0], 0xe7);
	CHECK_INT(c->tokens[0].sha256[31], 0x16);
	CHECK_INT(c->tokens[0].subscribe.n, 1);
	CHECK_STR(c->tokens[0].publish.v[0], "forum/#");
	CHECK_STR(c->tokens[1].user, "bot");
	CHECK_INT(c->tokens[1].subscribe.n, 0);
	CHECK_INT(c->tokens[1].publish.n, 2);
	CHECK_STR(c->tokens[1].publish.v[1], "news");
	CHECK_INT(c->fed_enabled, 1);
	CHECK_STR(c->fed_host, "127.0.0.2");
	CHECK_INT(c->fed_port, 9443);
	CHECK_STR(c->fed_ca, "ca.pem");
	CHECK_STR(c->fed_cert, "s.pem");
	CHECK_STR(c->fed_key, "s.key");
	CHECK_INT(c->n_peers, 1);
	CHECK_STR(c->peers[0].name, "bogota.example");
	CHECK_STR(c->peers[0].url, "wss://127.0.0.1:9444");
	CHECK_STR(c->peers[0].export_.v[0], "forum/#");
	CHECK_STR(c->peers[0].import_.v[0], "forum/+/x");
	CHECK_INT(c->redis_enabled, 1);
	CHECK_STR(c->redis_host, "10.0.0.1");
	CHECK_INT(c->redis_port, 7000);
	CHECK_STR(c->redis_prefix, "p:s");
	CHECK_INT(c->limits.max_frame_bytes, 1024);
	CHECK_INT(c->limits.max_subscriptions, 5);
	CHECK_INT(c->limits.max_queue_bytes, 100000);
	CHECK(c->limits.publish_per_second == 2.5);
	CHECK(c->limits.publish_burst == 5);
	CHECK(c->limits.token_publish_per_second == 25);
	config_free(c);
}

/* Writes text to a new temporary file; returns its name (static). */
static const char *temp_file(const char *text, size_t len)
{
	static char name[64];
	int fd;

	snprintf(name, sizeof name, "/tmp/parley-test-config-XXXXXX");
	fd = mkstemp(name);
	CHECK(fd >= 0);
	if (fd < 0)
		return NULL;
	CHECK_INT(write(fd, text, len), (long long)len);
	close(fd);
	return name;
}

static void test_load(void)
{
	config_t *c = (config_t *)&c;
	char err[512];
	const char *name;
	char *big;
	size_t n = (4u << 20) + 1;
	int rc;

	name = temp_file(full, strlen(full));
	if (name) {
		rc = config_load(name, &c, err, sizeof err);
		CHECK_INT(rc, 0);
		CHECK(c != NULL);
		if (c)
			CHECK_STR(c->node, "scotland.example");
		config_free(c);
		unlink(name);
	}

	/* A bad file's message names the file. */
	name = temp_file("{\n\"node\": 5}", 12);
	if (name) {
		char want[128];

		rc = config_load(name, &c, err, sizeof err);
		CHECK_INT(rc, PE_CONFIG);
		snprintf(want, sizeof want,
			 "%s:2: node: expected a string, got integer", name);
		CHECK_STR(err, want);
		unlink(name);
	}

	rc = config_load("/nonexistent/parley.json", &c, err, sizeof err);
	CHECK_INT(rc, PE_IO);
	CHECK(c == NULL);
	CHECK_STR(err, "/nonexistent/parley.json: cannot open: No such file "
		       "or directory");

	rc = config_load("/tmp", &c, err, sizeof err);
	CHECK_INT(rc, PE_IO);
	CHECK_STR(err, "/tmp: cannot read: Is a directory");

	/* Over 4 MiB: refused before parsing, even if it is valid JSON. */
	big = malloc(n);
	CHECK(big != NULL);
	if (!big)
		return;
	memset(big, ' ', n);
	memcpy(big, "{" MIN "}", strlen("{" MIN "}"));
	name = temp_file(big, n);
	if (name) {
		rc = config_load(name, &c, err, sizeof err);
		CHECK_INT(rc, PE_TOO_LARGE);
		CHECK(strstr(err, ": larger than 4 MiB") != NULL);
		unlink(name);
	}
	rc = config_parse(big, n, "big.json", &c, err, sizeof err);
	CHECK_INT(rc, PE_TOO_LARGE);
	CHECK_STR(err, "big.json: larger than 4 MiB");
	/* Exactly 4 MiB is fine. */
	rc = config_parse(big, n - 1, "big.json", &c, err, sizeof err);
	CHECK_INT(rc, 0);
	config_free(c);

	/* A file larger than the first read buffer. */
	memset(big, ' ', n);
	memcpy(big, full, strlen(full));
	name = temp_file(big, 200000);
	if (name) {
		rc = config_load(name, &c, err, sizeof err);
		CHECK_INT(rc, 0);
		config_free(c);
		unlink(name);
	}
	free(big);

	/* A device has no size; it is read to its end. */
	rc = config_load("/dev/null", &c, err, sizeof err);
	CHECK_INT(rc, PE_CONFIG);
	CHECK(strstr(err, "/dev/null:1:") == err);

	/* No error buffer: still no crash. */
	rc = config_parse("{", 1, "x", &c, NULL, 0);
	CHECK_INT(rc, PE_CONFIG);
	rc = config_parse("{}", 2, "x", &c, NULL, 0);
	CHECK_INT(rc, PE_CONFIG);
	/* A tiny buffer gets a truncated message. */
	rc = config_parse("{}", 2, "x", &c, err, 4);
	CHECK_INT(rc, PE_CONFIG);
	CHECK_STR(err, "x:1");
}

static void test_keep_fixed(void)
{
	config_t *cur = parse_ok(full);
	config_t *next = parse_ok(
	    "{\"node\":\"other.example\",\"listen\":{\"host\":\"0.0.0.0\","
	    "\"port\":1234,\"path\":\"/chat\"},\"log_level\":\"debug\","
	    "\"history\":{\"length\":50},"
	    "\"auth\":{\"tokens\":[{\"user\":\"carol\",\"token_sha256\":"
	    "\"" BOT_SHA "\"}]},"
	    "\"limits\":{\"max_frame_bytes\":2048,\"max_subscriptions\":6,"
	    "\"max_queue_bytes\":100000,\"publish_per_second\":2.5}}");
	char changed[256];
	int n;

	if (!cur || !next) {
		config_free(cur);
		config_free(next);
		return;
	}
	n = config_keep_fixed(next, cur, changed, sizeof changed);
	/* federation and redis were present and are gone: their presence
	 * and settings are fixed too. */
	CHECK_INT(n, 14);
	CHECK_STR(changed,
		  "node, listen.port, http.root, federation, "
		  "federation.listen.host, federation.listen.port, "
		  "federation.ca, federation.cert, federation.key, redis, "
		  "redis.host, redis.port, redis.prefix, "
		  "limits.max_frame_bytes");
	CHECK_STR(next->node, "scotland.example");
	CHECK_INT(next->listen_port, 9000);
	CHECK_STR(next->http_root, "/srv/parley/www");
	/* presence.topics is reloadable. */
	CHECK_INT(next->presence_topics.n, 1);
	CHECK_INT(next->fed_enabled, 1);
	CHECK_STR(next->fed_ca, "ca.pem");
	CHECK_INT(next->redis_enabled, 1);
	CHECK_STR(next->redis_prefix, "p:s");
	CHECK_INT(next->limits.max_frame_bytes, 1024);
	/* Reloadable keys keep next's values. */
	CHECK_INT(next->limits.max_subscriptions, 6);
	CHECK_STR(next->log_level, "debug");
	CHECK_INT(next->n_tokens, 1);
	CHECK_STR(next->tokens[0].user, "carol");
	CHECK_INT(next->n_peers, 0);

	/* Nothing fixed differs now. */
	n = config_keep_fixed(next, cur, changed, sizeof changed);
	CHECK_INT(n, 0);
	CHECK_STR(changed, "");
	config_free(next);

	/* A short buffer truncates the list, not the count. */
	next = parse_ok("{\"node\":\"b\",\"listen\":{\"port\":1}}");
	if (next) {
		n = config_keep_fixed(next, cur, changed, 16);
		CHECK_INT(n, 17);
		CHECK_STR(changed, "node, listen.ho");
		CHECK_INT(config_keep_fixed(next, cur, NULL, 0), 0);
		config_free(next);
	}
	config_free(cur);
}

/* Returns config_write_docs's output (free it). */
static char *docs_text(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	config_write_docs(f);
	fclose(f);
	return buf;
}

static void test_docs(void)
{
	static const char *const all[] = {
	    "node",
	    "log_level",
	    "listen",
	    "listen.host",
	    "listen.port",
	    "listen.path",
	    "listen.allowed_origins",
	    "history",
	    "history.length",
	    "presence",
	    "presence.topics",
	    "http",
	    "http.root",
	    "auth",
	    "auth.anonymous",
	    "auth.anonymous.subscribe",
	    "auth.anonymous.publish",
	    "auth.tokens",
	    "auth.tokens[].user",
	    "auth.tokens[].token_sha256",
	    "auth.tokens[].subscribe",
	    "auth.tokens[].publish",
	    "federation",
	    "federation.listen",
	    "federation.listen.host",
	    "federation.listen.port",
	    "federation.ca",
	    "federation.cert",
	    "federation.key",
	    "federation.state_file",
	    "federation.ping_interval_ms",
	    "federation.dead_after_ms",
	    "federation.backoff_min_ms",
	    "federation.backoff_max_ms",
	    "federation.dedup_window",
	    "federation.max_queue_bytes",
	    "federation.peers",
	    "federation.peers[].name",
	    "federation.peers[].url",
	    "federation.peers[].export",
	    "federation.peers[].import",
	    "federation.peers[].relay",
	    "redis",
	    "redis.host",
	    "redis.port",
	    "redis.prefix",
	    "limits",
	    "limits.max_frame_bytes",
	    "limits.max_subscriptions",
	    "limits.max_queue_bytes",
	    "limits.publish_per_second",
	    "limits.publish_burst",
	    "limits.token_publish_per_second",
	    "limits.max_connections",
	    "limits.max_errors",
	    "limits.max_topics",
	    "limits.max_connections_per_ip",
	    "limits.handshake_timeout_s",
	    "limits.ping_interval_s",
	    "limits.idle_timeout_s",
	    "limits.max_memory_mb",
	};
	char *buf = docs_text(), row[128];
	size_t rows = 0;

	CHECK(buf != NULL);
	if (!buf)
		return;
	for (const char *p = buf; (p = strstr(p, "\n| `")); p++)
		rows++;
	CHECK_INT(rows, sizeof all / sizeof all[0]);
	CHECK_INT(rows, N_DOC_KEYS);
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		snprintf(row, sizeof row, "\n| `%s` |", all[i]);
		CHECK(strstr(buf, row) != NULL);
	}
	CHECK(strstr(buf, "| `limits.max_frame_bytes` | integer | 65536 | "
			  "256–16777216 | no |") != NULL);
	CHECK(
	    strstr(buf, "| `listen.port` | integer | 8080 | 1–65535 | no |") !=
	    NULL);
	CHECK(strstr(buf,
		     "| `auth.tokens` | list of objects | `[]` |  | yes |") !=
	      NULL);
	CHECK(strstr(buf, "| `limits` | object |  |  | partly |") != NULL);
	CHECK(strstr(buf, "| `auth` | object |  |  | yes |") != NULL);
	CHECK(strstr(buf, "| `node` | string | required |") != NULL);
	/* A '|' in a description is escaped. */
	CHECK(strstr(buf, "TOKEN \\| sha256sum") != NULL);
	free(buf);
}

#ifdef PARLEY_SOURCE_DIR
/* Follows a "$ref" to "#/$defs/NAME". */
static json_t *resolve(json_t *schema, json_t *n)
{
	const char *ref = json_string_value(json_object_get(n, "$ref"));

	if (ref && !strncmp(ref, "#/$defs/", 8))
		return json_object_get(json_object_get(schema, "$defs"),
				       ref + 8);
	return n;
}

/* Checks that every key of config/schema.json has a row in the docs (so in
 * the table) with the same numeric bounds; counts the keys. */
static void schema_walk(json_t *schema, json_t *node, const char *prefix,
			const char *docs, size_t *count)
{
	const char *key;
	json_t *v;

	json_object_foreach(json_object_get(node, "properties"), key, v)
	{
		json_t *r = resolve(schema, v), *items;
		char path[128], row[160], bounds[64];
		const char *line;

		snprintf(path, sizeof path, "%s%s%s", prefix,
			 *prefix ? "." : "", key);
		snprintf(row, sizeof row, "\n| `%s` |", path);
		line = strstr(docs, row);
		CHECK(line != NULL);
		if (!line) {
			fprintf(stderr, "  schema key %s is not in the table\n",
				path);
			continue;
		}
		(*count)++;
		if (json_object_get(r, "minimum")) {
			const char *end = strchr(line + 1, '\n');

			snprintf(
			    bounds, sizeof bounds, "| %.15g–%.15g |",
			    json_number_value(json_object_get(r, "minimum")),
			    json_number_value(json_object_get(r, "maximum")));
			line = strstr(line, bounds);
			CHECK(line != NULL && line < end);
			if (!line || line >= end)
				fprintf(stderr,
					"  schema bounds of %s differ\n", path);
		}
		items = json_object_get(r, "items");
		if (json_object_get(r, "properties")) {
			schema_walk(schema, r, path, docs, count);
		} else if (items && json_object_get(items, "properties")) {
			strcat(path, "[]");
			schema_walk(schema, items, path, docs, count);
		}
	}
}
#endif

static void test_examples(void)
{
#ifdef PARLEY_SOURCE_DIR
	static const char *const files[] = {
	    PARLEY_SOURCE_DIR "/config/parleyd.example.json",
	    PARLEY_SOURCE_DIR "/config/federation.example.json",
	};
	json_error_t je;
	json_t *schema;
	char *docs;
	size_t count = 0;

	for (size_t i = 0; i < 2; i++) {
		config_t *c = NULL;
		char err[512];
		int rc = config_load(files[i], &c, err, sizeof err);

		CHECK_INT(rc, 0);
		if (rc)
			fprintf(stderr, "  %s\n", err);
		if (c && i == 0) {
			CHECK_STR(c->node, "example.local");
			CHECK_INT(c->n_tokens, 2);
			CHECK_INT(c->fed_enabled, 0);
		}
		if (c && i == 1) {
			CHECK_INT(c->fed_enabled, 1);
			CHECK_INT(c->redis_enabled, 1);
		}
		config_free(c);
	}

	/* The schema and the table list the same keys with the same
	 * bounds. */
	schema =
	    json_load_file(PARLEY_SOURCE_DIR "/config/schema.json", 0, &je);
	docs = docs_text();
	CHECK(schema != NULL && docs != NULL);
	if (schema && docs) {
		schema_walk(schema, schema, "", docs, &count);
		CHECK_INT(count, N_DOC_KEYS);
	}
	json_decref(schema);

	/* config/README.md holds the table as generated now. */
	if (docs) {
		FILE *f = fopen(PARLEY_SOURCE_DIR "/config/README.md", "r");
		char *readme = malloc(1 << 20);
		size_t n = f && readme ? fread(readme, 1, (1 << 20) - 1, f) : 0;

		CHECK(n > 0);
		if (readme) {
			readme[n] = 0;
			CHECK(strstr(readme, docs) != NULL);
			if (!strstr(readme, docs))
				fprintf(stderr,
					"  config/README.md's key table is "
					"stale: regenerate it\n");
		}
		free(readme);
		if (f)
			fclose(f);
	}
	free(docs);
#else
	printf("# skipped the example files: no PARLEY_SOURCE_DIR\n");
#endif
}

int main(void)
{
	test_bad();
	test_defaults();
	test_edges();
	test_lengths();
	test_full();
	test_load();
	test_keep_fixed();
	test_docs();
	test_examples();
	return tap_done();
}
