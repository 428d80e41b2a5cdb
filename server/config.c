/* config.c: the one table of parleyd's configuration keys, and the parser,
 * defaults, checks, reload rule and documentation that it drives. */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "auth.h"
#include "err.h"
#include "log.h"
#include "topic.h"

/* Larger files are refused before parsing: a real config is a few KiB. */
#define CONFIG_MAX_BYTES (4u << 20)

enum ktype {
	K_STRING,   /* char *, owned. */
	K_INT,	    /* int. */
	K_SIZE,	    /* size_t. */
	K_DOUBLE,   /* double; a JSON integer is accepted too. */
	K_BOOL,	    /* int, 0 or 1. */
	K_SHA256,   /* unsigned char[32], written as 64 hex digits. */
	K_PATTERNS, /* config_patterns_t of valid topic filters. */
	K_STRINGS,  /* config_patterns_t of strings passing check. */
	K_OBJECT,   /* An object whose members are rows of their own. */
	K_ARRAY,    /* An array of objects: a pointer and a count. */
};

enum {
	F_RELOAD = 1,	/* SIGHUP may change it. */
	F_REQUIRED = 2, /* Must be present in its object. */
	F_UNIQUE = 4,	/* Distinct across the elements of its array. */
};

/* The off of an object that is only a container (no field of its own). */
#define NO_FIELD ((size_t)-1)

/* One configuration key. */
struct key {
	const char *path; /* "limits.max_frame_bytes"; "[]" stands for every
			     element of an array ("auth.tokens[].user"). */
	enum ktype type;  /* How the value is read and stored. */
	int flags;	  /* F_* bits. */
	double min, max;  /* Numbers: inclusive bounds. Strings: bounds of
			     the length in bytes (max 0: unbounded). */
	long long idef;	  /* Default of K_INT, K_SIZE and K_BOOL. */
	double ddef;	  /* Default of K_DOUBLE. */
	const char *sdef; /* Default of K_STRING (NULL: none), or the one
			     filter of a K_PATTERNS default (NULL: []). */
	double (*derive)(const config_t *); /* K_DOUBLE default computed
					       from keys earlier in the
					       table. */
	const char *defdoc; /* The documented default, when it is not a
			       plain value (derived, or none). */
	size_t off; /* Field offset in config_t, or in the array element for
		       keys under "[]". K_OBJECT: the int set to 1 when the
		       section is present, or NO_FIELD. */
	size_t count_off; /* K_ARRAY: offset of the size_t element count. */
	size_t elem_size; /* K_ARRAY: size of one element. */
	const char *(*check)(const char *s); /* K_STRING: a further rule;
						returns what is wrong, or
						NULL. */
	const char *doc; /* One line for config/README.md. */
};

static double derive_burst(const config_t *c)
{
	double b = 2 * c->limits.publish_per_second;

	return b < 1 ? 1 : b;
}

static double derive_token_rate(const config_t *c)
{
	return 10 * c->limits.publish_per_second;
}

static const char *check_dns(const char *s)
{
	static const char why[] =
	    "must be a DNS-style name: dot-separated labels of 1-63 "
	    "lowercase letters, digits and '-', not starting or ending "
	    "with '-', 253 characters at most";
	size_t label = 0, n = strlen(s);

	if (n < 1 || n > 253)
		return why;
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];

		if (c == '.' || c == 0) {
			if (label == 0 || label > 63 || s[i - 1] == '-')
				return why;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			   c == '-') {
			if (label++ == 0 && c == '-')
				return why;
		} else {
			return why;
		}
	}
	return NULL;
}

static const char *check_log_level(const char *s)
{
	enum log_level l;

	return log_level_parse(s, &l) ? "must be debug, info, warn or error"
				      : NULL;
}

static const char *check_ws_path(const char *s)
{
	static const char why[] =
	    "must start with '/' and hold only printable ASCII without "
	    "spaces, '?' or '#'";

	if (s[0] != '/')
		return why;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 0x7f || *s == '?' || *s == '#')
			return why;
	return NULL;
}

/* True when every byte of s is an ASCII letter or digit, or in extra. */
static bool only_alnum_and(const char *s, const char *extra)
{
	for (; *s; s++) {
		char c = *s;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || strchr(extra, c)))
			return false;
	}
	return true;
}

static const char *check_user(const char *s)
{
	return only_alnum_and(s, "._-")
		   ? NULL
		   : "may hold only letters, digits, '.', '_' and '-'";
}

static const char *check_prefix(const char *s)
{
	return only_alnum_and(s, ":_-")
		   ? NULL
		   : "may hold only letters, digits, ':', '_' and '-'";
}

/* An allowed WebSocket Origin: "*" or scheme://host[:port], as browsers
 * send it (no path, no trailing slash). */
static const char *check_origin(const char *s)
{
	const char *host;

	if (!strcmp(s, "*"))
		return NULL;
	if (!strncmp(s, "https://", 8))
		host = s + 8;
	else if (!strncmp(s, "http://", 7))
		host = s + 7;
	else
		return "must be \"*\" or http(s)://host[:port]";
	if (!*host || strchr(host, '/'))
		return "must be \"*\" or http(s)://host[:port]";
	for (; *host; host++)
		if ((unsigned char)*host <= 0x20 || *host == 0x7f)
			return "must not hold spaces or control characters";
	return NULL;
}

static const char *check_wss(const char *s)
{
	return strncmp(s, "wss://", 6) || !s[6]
		   ? "must be a wss:// URL (federation links use TLS)"
		   : NULL;
}

static const char *check_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return "must not hold control characters";
	return NULL;
}

#define CF(f) offsetof(config_t, f)
#define TF(f) offsetof(config_token_t, f)
#define PF(f) offsetof(config_peer_t, f)

#define OBJ(p_, fl_, o_, doc_)                                                 \
	{                                                                      \
		.path = p_, .type = K_OBJECT, .flags = fl_, .off = o_,         \
		.doc = doc_                                                    \
	}
#define STR(p_, fl_, lo_, hi_, def_, chk_, o_, doc_)                           \
	{                                                                      \
		.path = p_, .type = K_STRING, .flags = fl_, .min = lo_,        \
		.max = hi_, .sdef = def_, .check = chk_, .off = o_,            \
		.doc = doc_                                                    \
	}
#define NUM(p_, t_, fl_, lo_, hi_, def_, o_, doc_)                             \
	{                                                                      \
		.path = p_, .type = t_, .flags = fl_, .min = lo_, .max = hi_,  \
		.idef = (long long)(def_), .ddef = def_, .off = o_,            \
		.doc = doc_                                                    \
	}
#define DERIVED(p_, fl_, lo_, hi_, fn_, defdoc_, o_, doc_)                     \
	{                                                                      \
		.path = p_, .type = K_DOUBLE, .flags = fl_, .min = lo_,        \
		.max = hi_, .derive = fn_, .defdoc = defdoc_, .off = o_,       \
		.doc = doc_                                                    \
	}
#define PATS(p_, fl_, o_, doc_)                                                \
	{                                                                      \
		.path = p_, .type = K_PATTERNS, .flags = fl_, .off = o_,       \
		.doc = doc_                                                    \
	}
#define ARR(p_, fl_, elem_, o_, n_, doc_)                                      \
	{                                                                      \
		.path = p_, .type = K_ARRAY, .flags = fl_, .off = o_,          \
		.count_off = n_, .elem_size = sizeof(elem_), .doc = doc_       \
	}

#define R F_RELOAD

/* Every key, parents before children, and a derived default after the keys
 * it is computed from. This table is the whole configuration: the parser,
 * the defaults, config_free, config_keep_fixed and config_write_docs all
 * walk it. */
static const struct key keys[] = {
    STR("node", F_REQUIRED, 1, 253, NULL, check_dns, CF(node),
	"This node's DNS-style name: its identity to peers (the name in "
	"its federation certificate) and the `@node` in user names."),
    STR("log_level", R, 0, 0, "info", check_log_level, CF(log_level),
	"Lowest level logged: `debug`, `info`, `warn` or `error`."),

    OBJ("listen", F_REQUIRED, NO_FIELD,
	"The client listener (WebSocket and HTTP API)."),
    STR("listen.host", 0, 1, 255, "127.0.0.1", check_printable, CF(listen_host),
	"Address the client listener binds to."),
    NUM("listen.port", K_INT, 0, 1, 65535, 8080, CF(listen_port),
	"Port of the client listener."),
    STR("listen.path", 0, 1, 255, "/ws", check_ws_path, CF(ws_path),
	"Path of the WebSocket endpoint (subprotocol `parley.v1`)."),
    {.path = "listen.allowed_origins",
     .type = K_STRINGS,
     .flags = R,
     .check = check_origin,
     .off = CF(allowed_origins),
     .doc = "Web origins (`https://forum.example.org`, or `\"*\"`) whose "
	    "pages may open WebSocket sessions. A browser session whose "
	    "Origin is neither listed nor this hub itself is refused (403); "
	    "clients that send no Origin (bots) are not affected."},

    OBJ("history", 0, NO_FIELD, "Per-topic message history."),
    NUM("history.length", K_SIZE, 0, 1, 1000000, 1000, CF(history_length),
	"Messages kept per topic, for backlog and resume."),

    OBJ("presence", 0, NO_FIELD, "Who is on which topic."),
    {.path = "presence.topics",
     .type = K_PATTERNS,
     .flags = R,
     .sdef = "#",
     .off = CF(presence_topics),
     .doc = "Filters of the topics whose subscribers are told who joins "
	    "and leaves (docs/protocol.md, \"Presence\")."},

    OBJ("http", 0, NO_FIELD, "The web pages served on the client listener."),
    {.path = "http.root",
     .type = K_STRING,
     .min = 1,
     .max = 4096,
     .check = check_printable,
     .defdoc = "the installed pages",
     .off = CF(http_root),
     .doc = "Directory of the web chat page served at `/`."},

    OBJ("auth", 0, NO_FIELD, "Tokens and permissions."),
    OBJ("auth.anonymous", 0, NO_FIELD, "What a client without a token may do."),
    PATS("auth.anonymous.subscribe", R, CF(anon_subscribe),
	 "Filters that anonymous subscriptions must fall within."),
    PATS("auth.anonymous.publish", R, CF(anon_publish),
	 "Filters of the topics anonymous clients may publish to."),
    ARR("auth.tokens", R, config_token_t, CF(tokens), CF(n_tokens),
	"One entry per user or bot that holds a token."),
    STR("auth.tokens[].user", R | F_REQUIRED | F_UNIQUE, 1, 64, NULL,
	check_user, TF(user),
	"User name (letters, digits, `.`, `_`, `-`), unique; messages "
	"show it as `user@node`."),
    {.path = "auth.tokens[].token_sha256",
     .type = K_SHA256,
     .flags = R | F_REQUIRED | F_UNIQUE,
     .off = TF(sha256),
     .doc = "SHA-256 of the token in hex (`printf %s TOKEN | sha256sum`), "
	    "unique. The token itself is never stored."},
    PATS("auth.tokens[].subscribe", R, TF(subscribe),
	 "Filters that this user's subscriptions must fall within."),
    PATS("auth.tokens[].publish", R, TF(publish),
	 "Filters of the topics this user may publish to."),

    OBJ("federation", 0, CF(fed_enabled),
	"Present: federation is on (the mTLS listener for peers and the "
	"links to them)."),
    OBJ("federation.listen", 0, NO_FIELD, "The federation listener."),
    STR("federation.listen.host", 0, 1, 255, "127.0.0.1", check_printable,
	CF(fed_host), "Address the federation listener binds to."),
    NUM("federation.listen.port", K_INT, 0, 1, 65535, 8443, CF(fed_port),
	"Port of the federation listener."),
    STR("federation.ca", F_REQUIRED, 1, 4096, NULL, check_printable, CF(fed_ca),
	"File of the federation CA certificate (PEM) that signs every "
	"node's certificate."),
    STR("federation.cert", F_REQUIRED, 1, 4096, NULL, check_printable,
	CF(fed_cert),
	"File of this node's certificate (PEM); its identity is `node`."),
    STR("federation.key", F_REQUIRED, 1, 4096, NULL, check_printable,
	CF(fed_key), "File of this node's private key (PEM)."),
    STR("federation.state_file", 0, 1, 4096, NULL, check_printable,
	CF(fed_state_file),
	"File where the last position received from each peer is saved "
	"(default: `<node>.fedstate` beside the configuration file)."),
    NUM("federation.ping_interval_ms", K_INT, R, 100, 600000, 5000,
	CF(fed_ping_ms), "Interval of liveness pings on peer links."),
    NUM("federation.dead_after_ms", K_INT, R, 300, 3600000, 15000,
	CF(fed_dead_ms),
	"A link that received nothing for this long is closed and "
	"redialled."),
    NUM("federation.backoff_min_ms", K_INT, R, 10, 600000, 200,
	CF(fed_backoff_min_ms), "First delay before redialling a peer."),
    NUM("federation.backoff_max_ms", K_INT, R, 100, 3600000, 30000,
	CF(fed_backoff_max_ms),
	"Largest delay between redials (exponential backoff, full "
	"jitter)."),
    NUM("federation.dedup_window", K_SIZE, 0, 1000, 10000000, 100000,
	CF(fed_dedup_window),
	"How many recent message ids are remembered to drop duplicates."),
    NUM("federation.max_queue_bytes", K_SIZE, R, 65536, 1073741824, 67108864,
	CF(fed_max_queue_bytes),
	"Bytes queued to one peer link before it is reset (replay then "
	"resumes from the peer's cursor)."),
    ARR("federation.peers", R, config_peer_t, CF(peers), CF(n_peers),
	"The nodes this node links with (it dials each of them)."),
    STR("federation.peers[].name", R | F_REQUIRED | F_UNIQUE, 1, 253, NULL,
	check_dns, PF(name),
	"The peer's node name, unique and not this node's; its "
	"certificate must carry it."),
    STR("federation.peers[].url", R | F_REQUIRED, 1, 2048, NULL, check_wss,
	PF(url), "Where to dial the peer (`wss://host:port`)."),
    PATS("federation.peers[].export", R, PF(export_),
	 "Filters of the topics sent to this peer."),
    PATS("federation.peers[].import", R, PF(import_),
	 "Filters of the topics accepted from this peer."),
    NUM("federation.peers[].relay", K_BOOL, R, 0, 1, 1, PF(relay),
	"Whether this peer may relay messages that other nodes "
	"originated (false: only its own)."),

    OBJ("redis", 0, CF(redis_enabled),
	"Present: cluster mode is on (instances of this node share "
	"fan-out and history through this Redis)."),
    STR("redis.host", 0, 1, 255, "127.0.0.1", check_printable, CF(redis_host),
	"Redis server address."),
    NUM("redis.port", K_INT, 0, 1, 65535, 6379, CF(redis_port),
	"Redis server port."),
    STR("redis.prefix", 0, 1, 64, "parley", check_prefix, CF(redis_prefix),
	"Prefix of every Redis key and channel (letters, digits, `:`, "
	"`_`, `-`); the instances of one node share it."),

    OBJ("limits", 0, NO_FIELD, "Bounds on every input path."),
    NUM("limits.max_frame_bytes", K_SIZE, 0, 256, 16777216, 65536,
	CF(limits.max_frame_bytes),
	"Largest client frame accepted; a larger one closes the "
	"connection (1009). Federation frames may be twice this plus "
	"64 KiB (a msg carries a body of up to this size)."),
    NUM("limits.max_subscriptions", K_SIZE, R, 1, 100000, 256,
	CF(limits.max_subscriptions),
	"Subscriptions per connection (a reload applies to new ones)."),
    NUM("limits.max_queue_bytes", K_SIZE, R, 65536, 1073741824, 4194304,
	CF(limits.max_queue_bytes),
	"Outgoing bytes queued for one connection before it is cut as "
	"a slow consumer (1008)."),
    NUM("limits.publish_per_second", K_DOUBLE, R, 0.1, 1e6, 50,
	CF(limits.publish_per_second),
	"Sustained publishes per second per connection."),
    DERIVED("limits.publish_burst", R, 1, 1e7, derive_burst,
	    "2 × `publish_per_second`, at least 1", CF(limits.publish_burst),
	    "Publishes a connection may make at once (its token bucket "
	    "size)."),
    DERIVED("limits.token_publish_per_second", R, 0.1, 1e7, derive_token_rate,
	    "10 × `publish_per_second`", CF(limits.token_publish_per_second),
	    "Publishes per second per token, over all its connections and "
	    "HTTP."),
    NUM("limits.max_connections", K_SIZE, R, 1, 1000000, 10000,
	CF(limits.max_connections),
	"Client connections per instance (a reload applies to new "
	"ones)."),
    NUM("limits.max_errors", K_SIZE, R, 1, 10000, 10, CF(limits.max_errors),
	"Bad requests in a row before a connection is closed (1008)."),
    NUM("limits.max_topics", K_SIZE, 0, 1, 100000000, 100000,
	CF(limits.max_topics), "Topics held in history per instance."),
    NUM("limits.max_connections_per_ip", K_SIZE, R, 1, 1000000, 1024,
	CF(limits.max_connections_per_ip),
	"Client WebSocket sessions from one IP address."),
    NUM("limits.handshake_timeout_s", K_INT, 0, 1, 3600, 10,
	CF(limits.handshake_timeout_s),
	"Seconds a connection may take to complete its HTTP request or "
	"WebSocket handshake."),
    NUM("limits.ping_interval_s", K_INT, 0, 1, 3600, 30,
	CF(limits.ping_interval_s),
	"Seconds of silence after which the hub pings a WebSocket client."),
    NUM("limits.idle_timeout_s", K_INT, 0, 2, 86400, 90,
	CF(limits.idle_timeout_s),
	"Seconds without any frame (pongs count) after which a WebSocket "
	"client is dropped; must exceed limits.ping_interval_s."),
    NUM("limits.max_memory_mb", K_SIZE, R, 0, 1048576, 2048,
	CF(limits.max_memory_mb),
	"Resident memory (MiB) above which new publishes are refused with "
	"`unavailable` until it falls again; 0 turns the check off."),
};

#define N_KEYS (sizeof keys / sizeof keys[0])

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		abort(); /* The daemon's rule for out-of-memory. */
	return p;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		abort();
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(xmalloc(n), s, n);
}

/* Returns the last component of path when the key at path is a direct
 * member of the object at scope ("" is the top level), else NULL. */
static const char *child_leaf(const char *path, const char *scope)
{
	size_t n = strlen(scope);
	const char *leaf = path;

	if (n) {
		if (strncmp(path, scope, n) || path[n] != '.')
			return NULL;
		leaf = path + n + 1;
	}
	return strpbrk(leaf, ".[") ? NULL : leaf;
}

/* True when the key at path is stored in the struct of scope: below it, and
 * not inside a further array ("" is config_t itself, "auth.tokens[]" is a
 * config_token_t). */
static bool in_scope(const char *path, const char *scope)
{
	size_t n = strlen(scope);

	if (n) {
		if (strncmp(path, scope, n) || path[n] != '.')
			return false;
		path += n + 1;
	}
	return !strstr(path, "[]");
}

static const struct key *find_key(const char *path)
{
	for (size_t i = 0; i < N_KEYS; i++)
		if (!strcmp(keys[i].path, path))
			return &keys[i];
	return NULL;
}

/* ---- Where a path sits in the text ----
 *
 * Jansson keeps no positions for values, so an error finds its line by
 * scanning the text again with this small tokenizer, which follows the path
 * of object keys and array indices. It runs only on an error, over text that
 * Jansson has accepted. */

#define SCAN_DEPTH 32 /* Deeper levels are skipped, not followed. */

/* One open object or array. */
struct scan_frame {
	bool array;   /* An array, else an object. */
	size_t index; /* Array: index of the current element. */
	size_t base;  /* Length of its own path. */
};

/* Decodes the escape at t[*i] (a backslash) into a code point, leaving *i
 * at its last character. Jansson has checked it, surrogate pairs included. */
static unsigned long unescape(const char *t, size_t len, size_t *i)
{
	static const char from[] = "bfnrt", to[] = "\b\f\n\r\t";
	char e = t[++*i], hex[5] = {0};
	const char *m;
	unsigned long cp, lo;

	if (e != 'u' || *i + 4 >= len) {
		m = e ? strchr(from, e) : NULL;
		return (unsigned char)(m ? to[m - from] : e);
	}
	memcpy(hex, t + *i + 1, 4);
	cp = strtoul(hex, NULL, 16);
	*i += 4;
	if (cp >= 0xd800 && cp < 0xdc00 && *i + 6 < len && t[*i + 1] == '\\' &&
	    t[*i + 2] == 'u') {
		memcpy(hex, t + *i + 3, 4);
		lo = strtoul(hex, NULL, 16);
		cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		*i += 6;
	}
	return cp;
}

/* Writes cp as UTF-8 into u; returns its length. */
static size_t utf8_put(unsigned long cp, char u[4])
{
	if (cp < 0x80) {
		u[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	u[0] = (char)(0xf0 | cp >> 18);
	u[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	u[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	u[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Decodes the JSON string whose opening quote is at t[*i] into out (NUL
 * terminated; it never grows longer than its text), and moves *i past the
 * closing quote. */
static void scan_string(const char *t, size_t len, size_t *i, char *out)
{
	size_t o = 0;

	for ((*i)++; *i < len && t[*i] != '"'; (*i)++) {
		if (t[*i] == '\\' && *i + 1 < len)
			o += utf8_put(unescape(t, len, i), out + o);
		else
			out[o++] = t[*i]; /* Raw UTF-8 passes as it is. */
	}
	(*i)++;
	out[o] = 0;
}

/* Returns the 1-based line where the member at want starts (its key for an
 * object member, its value for an array element, the opening bracket for
 * ""), or 0 when it is not found. */
static int line_of(const char *t, size_t len, const char *want)
{
	struct scan_frame st[SCAN_DEPTH];
	/* A path holds at most every key (no longer than its text) and one
	 * index per tracked level. */
	char *path = xmalloc(len + SCAN_DEPTH * 24 + 2),
	     *key = xmalloc(len + 1);
	size_t i = 0;
	int depth = 0, line = 1, found = 0;
	bool at_value = true;  /* Next token starts an element at path. */
	bool want_key = false; /* Next string is an object key. */

	path[0] = 0;
	while (i < len && !found) {
		char c = t[i];
		struct scan_frame *f =
		    depth > 0 && depth <= SCAN_DEPTH ? &st[depth - 1] : NULL;

		if (c == '\n')
			line++;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
			continue;
		}
		if (at_value && c != ']' && depth <= SCAN_DEPTH &&
		    !strcmp(path, want))
			found = line;
		at_value = false;
		if (c == '{' || c == '[') {
			if (depth < SCAN_DEPTH) {
				struct scan_frame *n = &st[depth];

				n->array = c == '[';
				n->index = 0;
				n->base = strlen(path);
				if (n->array)
					strcpy(path + n->base, "[0]");
				at_value = n->array;
				want_key = !n->array;
			}
			depth++;
			i++;
		} else if (c == '}' || c == ']') {
			if (--depth >= 0 && depth < SCAN_DEPTH)
				path[st[depth].base] = 0;
			i++;
		} else if (c == ',') {
			if (f && f->array) {
				sprintf(path + f->base, "[%zu]", ++f->index);
				at_value = true;
			} else if (f) {
				path[f->base] = 0;
				want_key = true;
			}
			i++;
		} else if (c == ':') {
			i++;
		} else if (c == '"') {
			scan_string(t, len, &i, key);
			if (want_key && f) {
				sprintf(path + f->base, "%s%s",
					f->base ? "." : "", key);
				want_key = false;
				if (!strcmp(path, want))
					found = line;
			}
		} else {
			/* A number, true, false or null. strchr finds the
			 * terminator for a NUL byte, so NUL is its own case,
			 * and every token moves on by at least one byte (a
			 * fuzzed file made this loop spin). */
			size_t start = i;

			while (i < len && t[i] && !strchr(",]} \t\r\n", t[i]))
				i++;
			if (i == start)
				i++;
		}
	}
	free(key);
	free(path);
	return found;
}

/* ---- Parsing ---- */

/* One run of the parser. */
struct parse {
	const char *text; /* The raw file, for line numbers. */
	size_t len;	  /* Its length. */
	const char *name; /* The file name in messages. */
	char *err;	  /* Where the message goes. */
	size_t errlen;	  /* Its size. */
	config_t *cfg;	  /* The config being filled. */
};

/* Writes "NAME:LINE: KEY: message" into the error buffer, where LINE is
 * where at sits in the text, and returns PE_CONFIG. */
__attribute__((format(printf, 4, 5))) static int
fail(struct parse *x, const char *at, const char *key, const char *fmt, ...)
{
	char msg[512];
	size_t n = 0;
	va_list ap;
	int line;

	if (!x->errlen)
		return PE_CONFIG;
	line = line_of(x->text, x->len, at);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (line)
		n = (size_t)snprintf(x->err, x->errlen, "%s:%d: ", x->name,
				     line);
	else
		n = (size_t)snprintf(x->err, x->errlen, "%s: ", x->name);
	if (n < x->errlen)
		snprintf(x->err + n, x->errlen - n, "%s%s%s", key,
			 *key ? ": " : "", msg);
	/* Keys may hold escaped control characters: keep one line. */
	for (char *p = x->err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return PE_CONFIG;
}

static char *path_key(const char *parent, const char *key)
{
	size_t a = strlen(parent), b = strlen(key);
	char *p = xmalloc(a + b + 2);

	if (a) {
		memcpy(p, parent, a);
		p[a++] = '.';
	}
	memcpy(p + a, key, b + 1);
	return p;
}

static char *path_index(const char *parent, size_t i)
{
	size_t n = strlen(parent) + 24;
	char *p = xmalloc(n);

	snprintf(p, n, "%s[%zu]", parent, i);
	return p;
}

static const char *kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "integer";
	case JSON_REAL:
		return "real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "boolean";
	default:
		return "null";
	}
}

static const char *expected(enum ktype t)
{
	switch (t) {
	case K_STRING:
	case K_SHA256:
		return "a string";
	case K_INT:
	case K_SIZE:
		return "an integer";
	case K_DOUBLE:
		return "a number";
	case K_BOOL:
		return "a boolean";
	case K_PATTERNS:
		return "an array of topic filters";
	case K_STRINGS:
		return "an array of strings";
	case K_OBJECT:
		return "an object";
	default:
		return "an array of objects";
	}
}

/* Levenshtein distance of two short strings (a at most 64 bytes). */
static size_t distance(const char *a, const char *b)
{
	size_t row[65], na = strlen(a), nb = strlen(b);

	for (size_t i = 0; i <= na; i++)
		row[i] = i;
	for (size_t j = 1; j <= nb; j++) {
		size_t diag = row[0];

		row[0] = j;
		for (size_t i = 1; i <= na; i++) {
			size_t up = row[i];
			size_t best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[i - 1] + 1 < best)
				best = row[i - 1] + 1;
			row[i] = best;
			diag = up;
		}
	}
	return row[na];
}

/* Fails with "unknown key", naming the closest member of scope when it is
 * a likely typo. */
static int unknown_key(struct parse *x, const char *path, const char *scope,
		       const char *name)
{
	const char *best = NULL;
	size_t best_d = 3;

	if (strlen(name) <= 64) {
		for (size_t i = 0; i < N_KEYS; i++) {
			const char *leaf = child_leaf(keys[i].path, scope);
			size_t d;

			if (leaf && (d = distance(name, leaf)) < best_d) {
				best_d = d;
				best = leaf;
			}
		}
	}
	if (best)
		return fail(x, path, path, "unknown key (did you mean \"%s\"?)",
			    best);
	return fail(x, path, path, "unknown key");
}

static void patterns_free(config_patterns_t *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

static int parse_object(struct parse *x, json_t *obj, const char *path,
			const char *scope, char *base);

/* Parses a list of topic filters, or with check a list of strings that
 * check accepts (it returns NULL or what is wrong). */
static int parse_patterns(struct parse *x, json_t *v, const char *path,
			  config_patterns_t *p,
			  const char *(*check)(const char *s))
{
	size_t i;
	json_t *e;

	patterns_free(p);
	p->v = xcalloc(json_array_size(v), sizeof *p->v);
	json_array_foreach(v, i, e)
	{
		char *ep;
		bool pattern;
		int rc = 0;

		const char *bad = NULL;

		if (json_is_string(e)) {
			if (check)
				bad = check(json_string_value(e));
			else if (topic_validate_filter(json_string_value(e),
						       json_string_length(e),
						       &pattern))
				bad = "invalid topic filter";
			if (!bad && strlen(json_string_value(e)) ==
					json_string_length(e)) {
				p->v[p->n++] = xstrdup(json_string_value(e));
				continue;
			}
			if (!bad)
				bad = "must not hold NUL characters";
		}
		ep = path_index(path, i);
		if (!json_is_string(e))
			rc = fail(x, ep, ep, "expected a string, got %s",
				  kind(e));
		else
			rc = fail(x, ep, ep, "%s %s", bad,
				  log_str(json_string_value(e)));
		free(ep);
		return rc;
	}
	return 0;
}

/* One value to compare for uniqueness. */
struct uniq {
	const char *v; /* Its bytes. */
	size_t n;      /* Their count. */
	size_t idx;    /* Its array index. */
};

static int uniq_cmp(const void *pa, const void *pb)
{
	const struct uniq *a = pa, *b = pb;
	int d = memcmp(a->v, b->v, a->n < b->n ? a->n : b->n);

	if (d)
		return d;
	if (a->n != b->n)
		return a->n < b->n ? -1 : 1;
	return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static bool same(const struct uniq *a, const struct uniq *b)
{
	return a->n == b->n && !memcmp(a->v, b->v, a->n);
}

/* Checks the F_UNIQUE members of the n elements of array k (at path); on a
 * duplicate, names the first one in file order and what it repeats. Sorts
 * rather than comparing pairs: a config may hold thousands of tokens. */
static int check_unique(struct parse *x, const struct key *k, const char *path,
			const char *elems, size_t n)
{
	char scope[128];
	struct uniq *u;

	snprintf(scope, sizeof scope, "%s[]", k->path);
	if (n < 2)
		return 0;
	u = xcalloc(n, sizeof *u);
	for (size_t r = 0; r < N_KEYS; r++) {
		const struct key *m = &keys[r];
		const char *leaf = child_leaf(m->path, scope);
		size_t dup = n, orig = 0;

		if (!leaf || !(m->flags & F_UNIQUE))
			continue;
		for (size_t i = 0; i < n; i++) {
			const char *f = elems + i * k->elem_size + m->off;

			u[i].idx = i;
			if (m->type == K_SHA256) {
				u[i].v = f;
				u[i].n = 32;
			} else {
				u[i].v = *(char *const *)f;
				u[i].n = strlen(u[i].v);
			}
		}
		qsort(u, n, sizeof *u, uniq_cmp);
		/* In each run of equal values, the first is the original. */
		for (size_t i = 1, first = 0; i < n; i++) {
			if (!same(&u[first], &u[i])) {
				first = i;
			} else if (u[i].idx < dup) {
				dup = u[i].idx;
				orig = u[first].idx;
			}
		}
		if (dup < n) {
			char *ep = path_index(path, dup);
			char *kp = path_key(ep, leaf);
			int rc = fail(x, kp, kp,
				      "must be unique, but %s[%zu] has the "
				      "same value",
				      path, orig);

			free(kp);
			free(ep);
			free(u);
			return rc;
		}
	}
	free(u);
	return 0;
}

static int parse_array(struct parse *x, const struct key *k, json_t *v,
		       const char *path, char *base)
{
	char scope[128];
	char *elems;
	size_t i, n = json_array_size(v);
	json_t *e;

	snprintf(scope, sizeof scope, "%s[]", k->path);
	elems = xcalloc(n, k->elem_size);
	/* Stored at once, so that config_free frees a half-parsed array. */
	memcpy(base + k->off, &elems, sizeof elems);
	memcpy(base + k->count_off, &n, sizeof n);
	json_array_foreach(v, i, e)
	{
		char *ep = path_index(path, i);
		int rc;

		if (!json_is_object(e))
			rc = fail(x, ep, ep, "expected an object, got %s",
				  kind(e));
		else
			rc = parse_object(x, e, ep, scope,
					  elems + i * k->elem_size);
		free(ep);
		if (rc)
			return rc;
	}
	return check_unique(x, k, path, elems, n);
}

/* Reads the value v of key k (at path) into its field in base. */
static int parse_value(struct parse *x, const struct key *k, json_t *v,
		       const char *path, char *base)
{
	char *f = k->off == NO_FIELD ? base : base + k->off;
	const char *s, *why;
	double d;

	switch (k->type) {
	case K_STRING:
		if (!json_is_string(v))
			break;
		s = json_string_value(v);
		d = (double)json_string_length(v);
		if (k->max > 0 && (d < k->min || d > k->max))
			return fail(x, path, path,
				    "must be %.15g to %.15g bytes long", k->min,
				    k->max);
		if (k->check && (why = k->check(s)))
			return fail(x, path, path, "%s", why);
		free(*(char **)f);
		*(char **)f = xstrdup(s);
		return 0;
	case K_INT:
	case K_SIZE:
		if (!json_is_integer(v))
			break;
		d = (double)json_integer_value(v);
		if (d < k->min || d > k->max)
			return fail(x, path, path,
				    "must be an integer between %.15g and "
				    "%.15g",
				    k->min, k->max);
		if (k->type == K_INT)
			*(int *)f = (int)json_integer_value(v);
		else
			*(size_t *)f = (size_t)json_integer_value(v);
		return 0;
	case K_DOUBLE:
		if (!json_is_number(v))
			break;
		d = json_number_value(v);
		if (!(d >= k->min && d <= k->max))
			return fail(x, path, path,
				    "must be a number between %.15g and %.15g",
				    k->min, k->max);
		*(double *)f = d;
		return 0;
	case K_BOOL:
		if (!json_is_boolean(v))
			break;
		*(int *)f = json_is_true(v);
		return 0;
	case K_SHA256:
		if (!json_is_string(v))
			break;
		if (auth_parse_hex(json_string_value(v), (unsigned char *)f))
			return fail(x, path, path,
				    "must be 64 hex digits (a SHA-256)");
		return 0;
	case K_PATTERNS:
	case K_STRINGS:
		if (!json_is_array(v))
			break;
		return parse_patterns(x, v, path, (config_patterns_t *)f,
				      k->type == K_STRINGS ? k->check : NULL);
	case K_OBJECT:
		if (!json_is_object(v))
			break;
		if (k->off != NO_FIELD)
			*(int *)f = 1;
		return parse_object(x, v, path, k->path, base);
	case K_ARRAY:
		if (!json_is_array(v))
			break;
		return parse_array(x, k, v, path, base);
	}
	return fail(x, path, path, "expected %s, got %s", expected(k->type),
		    kind(v));
}

/* Gives key k, absent from the file, its default; an absent object gives
 * its members theirs (an absent section stays switched off). */
static void set_default(struct parse *x, const struct key *k, char *base)
{
	char *f = k->off == NO_FIELD ? base : base + k->off;

	switch (k->type) {
	case K_STRING:
		if (k->sdef)
			*(char **)f = xstrdup(k->sdef);
		break;
	case K_INT:
	case K_BOOL:
		*(int *)f = (int)k->idef;
		break;
	case K_SIZE:
		*(size_t *)f = (size_t)k->idef;
		break;
	case K_DOUBLE:
		*(double *)f = k->derive ? k->derive(x->cfg) : k->ddef;
		break;
	case K_OBJECT:
		for (size_t i = 0; i < N_KEYS; i++)
			if (child_leaf(keys[i].path, k->path))
				set_default(x, &keys[i], base);
		break;
	case K_PATTERNS:
	case K_STRINGS:
		/* A list's default is empty or the one filter in sdef. */
		if (k->sdef) {
			config_patterns_t *p = (config_patterns_t *)f;

			p->v = xcalloc(1, sizeof *p->v);
			p->v[0] = xstrdup(k->sdef);
			p->n = 1;
		}
		break;
	default:
		/* Arrays start empty; a hash has no default. */
		break;
	}
}

/* Reads the members of obj (at path; its keys are the members of scope)
 * into base, then gives absent members their defaults. */
static int parse_object(struct parse *x, json_t *obj, const char *path,
			const char *scope, char *base)
{
	const char *name;
	json_t *v;

	json_object_foreach(obj, name, v)
	{
		char tp[128];
		const struct key *k = NULL;
		char *kp = path_key(path, name);
		int n = snprintf(tp, sizeof tp, "%s%s%s", scope,
				 *scope ? "." : "", name);
		int rc;

		/* A key with '.' or '[' must not reach a deeper row. */
		if (n > 0 && (size_t)n < sizeof tp && !strpbrk(name, ".["))
			k = find_key(tp);
		rc = k ? parse_value(x, k, v, kp, base)
		       : unknown_key(x, kp, scope, name);
		free(kp);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		const char *leaf = child_leaf(k->path, scope);
		char *kp;
		int rc;

		if (!leaf || json_object_get(obj, leaf))
			continue;
		if (!(k->flags & F_REQUIRED)) {
			set_default(x, k, base);
			continue;
		}
		kp = path_key(path, leaf);
		rc = fail(x, path, kp, "required key is missing");
		free(kp);
		return rc;
	}
	return 0;
}

/* Checks what no single key can: a peer is not this node. */
static int cross_check(struct parse *x)
{
	const config_t *c = x->cfg;

	char *ep, *kp;
	int rc;

	
	for (size_t i = 0; i < c->n_peers; i++) {
		if (strcmp(c->peers[i].name, c->node))
			continue;
		ep = path_index("federation.peers", i);
		kp = path_key(ep, "name");
		rc = fail(x, kp, kp, "is this node's own name");
		free(kp);
		free(ep);
		return rc;
	}
	return 0;
}

/* Frees what the keys of scope own in base (the struct of that scope). */
static void free_scope(const char *scope, char *base)
{
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		char *f;

		if (!in_scope(k->path, scope) || k->off == NO_FIELD)
			continue;
		f = base + k->off;
		if (k->type == K_STRING) {
			free(*(char **)f);
		} else if (k->type == K_PATTERNS || k->type == K_STRINGS) {
			patterns_free((config_patterns_t *)f);
		} else if (k->type == K_ARRAY) {
			char sub[128], *elems;
			size_t n;

			snprintf(sub, sizeof sub, "%s[]", k->path);
			memcpy(&elems, f, sizeof elems);
			memcpy(&n, base + k->count_off, sizeof n);
			for (size_t e = 0; elems && e < n; e++)
				free_scope(sub, elems + e * k->elem_size);
			free(elems);
		}
	}
}

void config_free(config_t *c)
{
	if (!c)
		return;
	free_scope("", (char *)c);
	free(c);
}

int config_parse(const char *text, size_t len, const char *name, config_t **out,
		 char *err, size_t errlen)
{
	struct parse x = {text, len, name, err, errlen, NULL};
	json_error_t je;
	json_t *root;
	int rc;

	*out = NULL;
	if (errlen)
		err[0] = 0;
	if (len > CONFIG_MAX_BYTES) {
		if (errlen)
			snprintf(err, errlen, "%s: larger than %u MiB", name,
				 CONFIG_MAX_BYTES >> 20);
		return PE_TOO_LARGE;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		if (errlen)
			snprintf(err, errlen, "%s:%d:%d: %s", name,
				 je.line > 0 ? je.line : 1,
				 je.column > 0 ? je.column : 1, je.text);
		return PE_CONFIG;
	}
	if (!json_is_object(root)) {
		rc = fail(&x, "", "", "expected an object at the top, got %s",
			  kind(root));
		json_decref(root);
		return rc;
	}
	x.cfg = xcalloc(1, sizeof *x.cfg);
	rc = parse_object(&x, root, "", "", (char *)x.cfg);
	if (!rc)
		rc = cross_check(&x);
	json_decref(root);
	if (rc) {
		config_free(x.cfg);
		return rc;
	}
	*out = x.cfg;
	return 0;
}

int config_load(const char *path, config_t **out, char *err, size_t errlen)
{
	size_t cap = 65536, n = 0;
	struct stat st;
	char *buf;
	FILE *f;
	int rc;

	*out = NULL;
	f = fopen(path, "rb");
	if (!f) {
		if (errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path,
				 strerror(errno));
		return PE_IO;
	}
	if (!fstat(fileno(f), &st) && S_ISREG(st.st_mode) &&
	    st.st_size > (off_t)CONFIG_MAX_BYTES) {
		fclose(f);
		if (errlen)
			snprintf(err, errlen, "%s: larger than %u MiB", path,
				 CONFIG_MAX_BYTES >> 20);
		return PE_TOO_LARGE;
	}
	/* Read to the end whatever the file is (a pipe has no size), but
	 * never more than the limit and one byte. */
	buf = xmalloc(cap);
	for (;;) {
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (n > CONFIG_MAX_BYTES || got == 0)
			break;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
	}
	if (ferror(f)) {
		int e = errno;

		fclose(f);
		free(buf);
		if (errlen)
			snprintf(err, errlen, "%s: cannot read: %s", path,
				 strerror(e));
		return PE_IO;
	}
	fclose(f);
	rc = config_parse(buf, n, path, out, err, errlen);
	free(buf);
	return rc;
}

/* ---- Reload ---- */

/* Appends name to the comma-separated list in out. */
static void note(char *out, size_t len, const char *name)
{
	size_t n = strnlen(out, len);

	if (n + 1 < len)
		snprintf(out + n, len - n, "%s%s", n ? ", " : "", name);
}

int config_keep_fixed(config_t *next, const config_t *cur, char *changed,
		      size_t len)
{
	int count = 0;

	if (len)
		changed[0] = 0;
	/* Only top-level fields are fixed: every array and whatever lies in
	 * one is reloadable, so no deep copy is needed. */
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];
		char *nf;
		const char *cf;
		bool differs = false;

		if ((k->flags & F_RELOAD) || !in_scope(k->path, "") ||
		    k->off == NO_FIELD)
			continue;
		nf = (char *)next + k->off;
		cf = (const char *)cur + k->off;
		switch (k->type) {
		case K_STRING: {
			char *a = *(char **)nf;
			const char *b = *(char *const *)cf;

			differs = (a || b) && (!a || !b || strcmp(a, b));
			if (differs) {
				free(a);
				*(char **)nf = b ? xstrdup(b) : NULL;
			}
			break;
		}
		case K_INT:
		case K_BOOL:
		case K_OBJECT:
			differs = *(int *)nf != *(const int *)cf;
			*(int *)nf = *(const int *)cf;
			break;
		case K_SIZE:
			differs = *(size_t *)nf != *(const size_t *)cf;
			*(size_t *)nf = *(const size_t *)cf;
			break;
		case K_DOUBLE:
			differs = *(double *)nf != *(const double *)cf;
			*(double *)nf = *(const double *)cf;
			break;
		default:
			/* Fixed patterns, hashes and arrays: none so far. */
			break;
		}
		if (differs) {
			count++;
			note(changed, len, k->path);
		}
	}
	return count;
}

/* ---- Documentation ---- */

static const char *type_doc(const struct key *k)
{
	switch (k->type) {
	case K_STRING:
		return "string";
	case K_INT:
	case K_SIZE:
		return "integer";
	case K_DOUBLE:
		return "number";
	case K_BOOL:
		return "boolean";
	case K_SHA256:
		return "hex string";
	case K_PATTERNS:
		return "list of topic filters";
	case K_STRINGS:
		return "list of strings";
	case K_OBJECT:
		return "object";
	default:
		return "list of objects";
	}
}

/* "yes", "no", or for a container "partly", from its members. */
static const char *reload_doc(const struct key *k)
{
	size_t n = strlen(k->path), yes = 0, no = 0;

	if (k->type != K_OBJECT || k->off != NO_FIELD)
		return k->flags & F_RELOAD ? "yes" : "no";
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *m = &keys[i];

		if (strncmp(m->path, k->path, n) || m->path[n] != '.' ||
		    (m->type == K_OBJECT && m->off == NO_FIELD))
			continue;
		if (m->flags & F_RELOAD)
			yes++;
		else
			no++;
	}
	return !no ? "yes" : !yes ? "no" : "partly";
}

void config_write_docs(void *stream)
{
	FILE *out = stream;

	fputs("| key | type | default | bounds | reload | description |\n"
	      "|---|---|---|---|---|---|\n",
	      out);
	for (size_t i = 0; i < N_KEYS; i++) {
		const struct key *k = &keys[i];

		fprintf(out, "| `%s` | %s | ", k->path, type_doc(k));
		if (k->flags & F_REQUIRED)
			fputs("required", out);
		else if (k->defdoc)
			fputs(k->defdoc, out);
		else if (k->type == K_STRING && k->sdef)
			fprintf(out, "`\"%s\"`", k->sdef);
		else if (k->type == K_PATTERNS && k->sdef)
			fprintf(out, "`[\"%s\"]`", k->sdef);
		else if (k->type == K_INT || k->type == K_SIZE)
			fprintf(out, "%lld", k->idef);
		else if (k->type == K_DOUBLE)
			fprintf(out, "%.15g", k->ddef);
		else if (k->type == K_BOOL)
			fputs(k->idef ? "true" : "false", out);
		else if (k->type == K_PATTERNS || k->type == K_STRINGS ||
			 k->type == K_ARRAY)
			fputs("`[]`", out);
		else if (k->off != NO_FIELD)
			fputs("absent (off)", out);
		fputs(" | ", out);
		if (k->type == K_INT || k->type == K_SIZE ||
		    k->type == K_DOUBLE)
			fprintf(out, "%.15g–%.15g", k->min, k->max);
		else if (k->type == K_STRING && k->max > 0)
			fprintf(out, "%.15g–%.15g bytes", k->min, k->max);
		else if (k->type == K_SHA256)
			fputs("64 hex digits", out);
		fprintf(out, " | %s | ", reload_doc(k));
		/* A '|' would end the cell, even inside a code span. */
		for (const char *d = k->doc; *d; d++) {
			if (*d == '|')
				fputc('\\', out);
			fputc(*d, out);
		}
		fputs(" |\n", out);
	}
}

/* Returns 0 when path is a readable regular file holding a PEM block,
 * else writes why into err. */
static int pem_ok(const char *key, const char *path, char *err,
		  size_t errlen)
{
	char buf[65536];
	struct stat st;
	size_t n;
	FILE *f;

	if (stat(path, &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: %s is not a readable file", key,
			 path);
		return -1;
	}
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open %s: %s", key, path,
			 strerror(errno));
		return -1;
	}
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	if (!strstr(buf, "-----BEGIN ")) {
		snprintf(err, errlen, "%s: %s holds no PEM block", key, path);
		return -1;
	}
	return 0;
}

int config_check_files(const config_t *c, char *err, size_t errlen)
{
	if (!c->fed_enabled)
		return 0;
	if (pem_ok("federation.ca", c->fed_ca, err, errlen) ||
	    pem_ok("federation.cert", c->fed_cert, err, errlen) ||
	    pem_ok("federation.key", c->fed_key, err, errlen))
		return PE_CONFIG;
	return 0;
}
