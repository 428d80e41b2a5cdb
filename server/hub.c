/* hub.c: instance state and the publish path: accept → store → encode once
 * → queue on every matching local session. */
#include "hub.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "client.h"
#include "codec.h"
#include "conn.h"
#include "err.h"
#include "fed.h"
#include "log.h"
#include "presence.h"
#include "strmap.h"

/* Picks the web page directory: the configured one, else the installed
 * one, else the source tree's (for running from a build directory). */
static char *find_webroot(const config_t *cfg)
{
	struct stat st;
	const char *dir = cfg->http_root;

	if (!dir) {
		dir = PARLEY_WEBROOT_INSTALLED;
		if (stat(dir, &st) || !S_ISDIR(st.st_mode))
			dir = PARLEY_WEBROOT_SOURCE;
	}
	if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
		log_warn("webroot_missing", "dir=%s note=\"GET / will be 404\"",
			 log_str(dir));
		return NULL;
	}
	return strdup(dir);
}

int64_t hub_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Crockford base32, the alphabet of mids. */
static const char b32[] = "0123456789abcdefghjkmnpqrstvwxyz";

hub_t *hub_new(uv_loop_t *loop, config_t *cfg, const char *config_path)
{
	hub_t *h = calloc(1, sizeof *h);
	enum log_level lvl;

	if (!h)
		abort();
	h->loop = loop;
	h->cfg = cfg;
	h->live = cfg;
	h->config_path = strdup(config_path ? config_path : "");
	h->auth = auth_new(cfg);
	h->router = router_new();
	h->presence = presence_new();
	h->per_ip = strmap_new();
	h->conn_ids = strmap_new();
	h->http_ids = strmap_new();
	h->webroot = find_webroot(cfg);
	h->started_ms = (uint64_t)hub_now_ms();
	h->history = history_new(cfg->history_length, h->started_ms);
	h->gather = malloc(LWS_PRE + HUB_GATHER);
	if (!h->config_path || !h->auth || !h->router || !h->history ||
	    !h->gather)
		abort();
	if (getrandom(&h->mid_rand, sizeof h->mid_rand, 0) !=
	    sizeof h->mid_rand)
		h->mid_rand = (uint64_t)hub_now_ms() * 2654435761u;
	h->mid_counter = h->mid_rand >> 24;
	for (uint64_t i = 8, r = h->mid_rand; i-- > 0; r >>= 5)
		h->mid_rand32[i] = b32[r & 31];
	memcpy(h->mid_last + 10, h->mid_rand32, 8);
	h->mid_last[26] = 0;
	h->mid_last_ms = INT64_MIN; /* Nothing encoded yet. */
	h->mid_last_hi = UINT64_MAX;
	if (!log_level_parse(cfg->log_level, &lvl))
		log_set_level(lvl);
	return h;
}

void hub_free(hub_t *h)
{
	if (!h)
		return;
	fed_free(h->fed);
	router_free(h->router);
	presence_free(h->presence);
	strmap_free(h->per_ip);
	strmap_free(h->conn_ids);
	strmap_free(h->http_ids);
	free(h->webroot);
	history_free(h->history);
	auth_free(h->auth);
	if (h->live != h->cfg)
		config_free(h->live);
	config_free(h->cfg);
	free(h->config_path);
	free(h->gather);
	free(h);
}

/* Writes a 26-character message id: 48 bits of milliseconds, then 40
 * random bits fixed for this process (mid_rand32) and a 40-bit counter,
 * in Crockford base32. Ids sort by time, are unique within the process by
 * the counter, and across nodes and restarts by the random part. */
static void make_mid(hub_t *h, int64_t now_ms, char out[27])
{
	uint64_t lo = (h->mid_counter++ & 0xffffffffffull);
	char *m = h->mid_last;

	/* Consecutive mids share their time within a millisecond, and all
	 * of the counter but its last digit 31 times in 32: only what
	 * changed is encoded again (a publish makes one mid). */
	if (now_ms != h->mid_last_ms) {
		uint64_t t = (uint64_t)now_ms;

		for (int i = 9; i >= 0; i--, t >>= 5)
			m[i] = b32[t & 31];
		h->mid_last_ms = now_ms;
	}
	if (lo >> 5 != h->mid_last_hi) {
		uint64_t c = lo;

		for (int i = 25; i >= 18; i--, c >>= 5)
			m[i] = b32[c & 31];
		h->mid_last_hi = lo >> 5;
	} else {
		m[25] = b32[lo & 31];
	}
	memcpy(out, m, 27);
}

int hub_mid_is_own(const hub_t *h, const char *mid, size_t len)
{
	return len == 26 && !memcmp(mid + 10, h->mid_rand32, 8);
}

/* Router callback: queues the message once per session, however many of
 * its filters match. */
/* One live delivery: what the router callback needs. */
struct delivery {
	const char *topic; /* Topic of the message. */
	uint64_t seq;	   /* Its sequence number (dedup per session). */
	frame_t *frame;	   /* Its client frame. */
};

static void deliver(void *owner, void *ud)
{
	conn_t *c = owner;
	const struct delivery *d = ud;

	if (c->kind != OWNER_CONN || c->last_seq == d->seq)
		return;
	c->last_seq = d->seq;
	/* A session waiting for a backlog from Redis holds live messages
	 * back, so that they follow it. */
	if (c->holding) {
		conn_hold(c, d->topic, d->seq, d->frame);
		return;
	}
	if (c->n_rules && conn_seen_in_backlog(c, d->topic, d->seq))
		return;
	if (conn_send(c, d->frame) == 0)
		c->hub->m.messages_out++;
}

void hub_deliver(hub_t *h, const char *topic, size_t hash, uint64_t seq,
		 frame_t *f)
{
	struct delivery d = {topic, seq, f};

	router_match(h->router, topic, hash, deliver, &d);
}

int hub_memory_high(const hub_t *h)
{
	size_t lim = h->live->limits.max_memory_mb;

	return lim && h->rss_bytes > lim * 1024 * 1024;
}

int hub_accept(hub_t *h, msg_t *m)
{
	char cursor[HISTORY_CURSOR_MAX];
	size_t cl;

	if (h->shutting_down)
		return PE_UNAVAILABLE;
	history_append(h->history, m);
	cl = history_cursor(h->history, m->seq, cursor);
	m->frame = codec_msg_place(m, cursor, cl);
	hub_deliver(h, m->topic, m->topic_hash, m->seq, m->frame);
	/* A peer's message enters the dedup window in fed.c, which
	 * accepted it; our own mids need no place there. */
	if (h->fed)
		fed_forward(h->fed, m);
	return 0;
}

int hub_new_msg(hub_t *h, const char *topic, size_t topic_len, const char *from,
		const char *body, size_t body_len, msg_t **out)
{
	char mid[27];
	int64_t now = hub_now_ms();
	const char *node = h->cfg->node;

	if (h->shutting_down)
		return PE_UNAVAILABLE;
	if (hub_memory_high(h)) {
		h->m.memory_refusals++;
		return PE_UNAVAILABLE;
	}
	/* In cluster mode topics live in Redis, bounded by its memory. */
	if (!h->cluster &&
	    history_topic_count(h->history) >= h->live->limits.max_topics &&
	    !history_has_topic(h->history, topic))
		return PE_TOO_MANY;
	make_mid(h, now, mid);
	msg_fields_t f = {
	    .topic = topic,
	    .topic_len = topic_len,
	    .mid = mid,
	    .mid_len = sizeof mid - 1,
	    .origin = node,
	    .origin_len = strlen(node),
	    .from = from,
	    .from_len = strlen(from),
	    .ts = now,
	    .body = body,
	    .body_len = body_len,
	};
	/* Its own message: the path is [origin], inside the message. */
	*out = msg_new_fields(&f, NULL, NULL, 0, node, f.origin_len);
	return 0;
}

void hub_count_error(hub_t *h, int err)
{
	int i = err - PE__FIRST - 1;

	if (i >= 0 && i < (int)(sizeof h->m.errors / sizeof h->m.errors[0]))
		h->m.errors[i]++;
}

int hub_reload(hub_t *h)
{
	char err[512], changed[512];
	config_t *n = NULL;
	auth_t *na;
	enum log_level lvl;
	int rc;

	rc = config_load(h->config_path, &n, err, sizeof err);
	if (!rc && (rc = config_check_files(n, err, sizeof err)))
		config_free(n);
	if (rc) {
		h->m.reload_failures++;
		log_error("reload_failed",
			  "error=%s note=\"running "
			  "configuration kept\"",
			  log_str(err));
		return rc;
	}
	if (config_keep_fixed(n, h->cfg, changed, sizeof changed))
		log_warn("reload_needs_restart",
			 "keys=%s note=\"changed in the file; running values "
			 "kept until restart\"",
			 log_str(changed));
	na = auth_new(n);
	if (!na)
		abort();
	for (conn_t *c = h->conns; c; c = c->next) {
		auth_user_t *u = NULL;

		if (c->has_token)
			u = auth_lookup_hash(na, c->user->sha256);
		if (c->has_token && !u) {
			c->user = auth_anonymous(na);
			c->has_token = 0;
			conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
				   "token revoked", 1);
			continue;
		}
		c->user = u ? u : auth_anonymous(na);
		if (c->state == CONN_OPEN)
			client_recheck(c);
	}
	if (h->fed)
		fed_reload(h->fed, n);
	auth_free(h->auth);
	h->auth = na;
	if (h->live != h->cfg)
		config_free(h->live);
	h->live = n;
	if (!log_level_parse(n->log_level, &lvl))
		log_set_level(lvl);
	h->m.reloads++;
	log_info("reloaded", "path=%s tokens=%zu", log_str(h->config_path),
		 n->n_tokens);
	return 0;
}
