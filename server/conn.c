/* conn.c: client sessions: lifecycle, the bounded queue of shared frames,
 * and the batched end-of-pass flush (PERFORMANCE.md's recipe: no lws call
 * on publish, one LWS_WRITE_RAW write per session per pass). */
#include "conn.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "topic.h"
#include "strmap.h"

/* Seconds a closing session may take to get its close frame out. */
#define CLOSE_GRACE_S 3

static const char *const state_names[] = {"open", "closing"};

static void held_clear(conn_t *c);
static void rules_clear(conn_t *c);

static uint64_t next_conn_id = 1;

void conn_set_state(conn_t *c, enum conn_state s)
{
	if (c->state == s)
		return;
	log_debug("conn_state", "conn=%llu from=%s to=%s",
		  (unsigned long long)c->id, state_names[c->state],
		  state_names[s]);
	c->state = s;
}

int conn_open(conn_t *c, hub_t *h, struct lws *wsi, auth_user_t *user,
	      int has_token)
{
	c->kind = OWNER_CONN;
	c->wsi = wsi;
	c->hub = h;
	c->state = CONN_OPEN;
	c->user = user;
	c->has_token = has_token;
	c->id = next_conn_id++;
	c->bucket = h->live->limits.publish_burst;
	c->bucket_ms = uv_now(h->loop);
	lws_get_peer_simple(wsi, c->peer, sizeof c->peer);
	{
		char key[24];

		snprintf(key, sizeof key, "%llu", (unsigned long long)c->id);
		strmap_put(h->conn_ids, key, c, NULL);
	}
	strmap_put(h->per_ip, c->peer,
		   (void *)((uintptr_t)strmap_get(h->per_ip, c->peer) + 1),
		   NULL);
	outq_init(&c->out, h, wsi, h->live->limits.max_queue_bytes,
		  &h->m.bytes_out, &h->m.writes);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	h->n_conns++;
	h->m.connections_total++;
	return 0;
}

void conn_release(conn_t *c)
{
	hub_t *h = c->hub;

	if (!h)
		return; /* Never opened (refused during the handshake). */
	outq_release(&c->out);
	held_clear(c);
	rules_clear(c);
	{
		char key[24];

		snprintf(key, sizeof key, "%llu", (unsigned long long)c->id);
		strmap_del(h->conn_ids, key);
	}
	{
		uintptr_t n = (uintptr_t)strmap_get(h->per_ip, c->peer);

		if (n > 1)
			strmap_put(h->per_ip, c->peer, (void *)(n - 1), NULL);
		else
			strmap_del(h->per_ip, c->peer);
	}
	for (size_t i = 0; i < c->n_subs; i++) {
		router_remove(h->router, c->subs[i].rs);
		free(c->subs[i].present_as);
	}
	free(c->subs);
	c->subs = NULL;
	c->n_subs = 0;
	free(c->rx);
	c->rx = NULL;
	if (c->prev)
		c->prev->next = c->next;
	else
		h->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->n_conns--;
	c->hub = NULL;
}

void conn_close(conn_t *c, int code, const char *reason, int drop_queue)
{
	frame_t *f;

	if (c->state == CONN_CLOSING)
		return;
	conn_set_state(c, CONN_CLOSING);
	log_info("conn_close", "conn=%llu peer=%s code=%d reason=%s",
		 (unsigned long long)c->id, c->peer, code, log_str(reason));
	if (drop_queue)
		c->hub->m.dropped_messages += outq_clear(&c->out);
	f = frame_new_close(code, reason);
	outq_push_force(&c->out, f);
	frame_unref(f);
	c->close_queued = 1;
	/* A peer that never reads never takes the close frame: bound it. */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
	lws_cancel_service(lws_get_context(c->wsi));
}

/* The queue refused a frame: the session is a slow consumer. */
static void overflow(conn_t *c)
{
	hub_t *h = c->hub;

	h->m.slow_consumers++;
	h->m.dropped_messages++;
	log_warn("slow_consumer",
		 "conn=%llu peer=%s queued_bytes=%zu queued_frames=%u",
		 (unsigned long long)c->id, c->peer, c->out.bytes, c->out.len);
	conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "slow consumer", 1);
}

/* Returns 0 when the session takes frames, after following the live
 * queue bound; else counts a dropped message. */
static int can_send(conn_t *c)
{
	hub_t *h = c->hub;

	if (c->state != CONN_OPEN) {
		h->m.dropped_messages++;
		return -1;
	}
	/* The bound is reloadable: follow the live configuration. */
	c->out.max_bytes = h->live->limits.max_queue_bytes;
	return 0;
}

int conn_send(conn_t *c, frame_t *f)
{
	if (can_send(c))
		return -1;
	if (outq_push(&c->out, f) == 0)
		return 0;
	overflow(c);
	return -1;
}

char *conn_send_text(conn_t *c, size_t len)
{
	char *p;

	if (can_send(c))
		return NULL;
	if ((p = outq_push_text(&c->out, len)))
		return p;
	overflow(c);
	return NULL;
}

int conn_writeable(conn_t *c)
{
	return outq_writeable(&c->out);
}

int conn_add_sub(conn_t *c, router_sub_t *s, char *present_as)
{
	if (c->n_subs == c->subs_cap) {
		size_t ncap = c->subs_cap ? c->subs_cap * 2 : 4;
		conn_sub_t *n = realloc(c->subs, ncap * sizeof *n);

		if (!n)
			return PE_NOMEM;
		c->subs = n;
		c->subs_cap = ncap;
	}
	c->subs[c->n_subs].rs = s;
	c->subs[c->n_subs].present_as = present_as;
	c->n_subs++;
	return 0;
}

int conn_find_sub(const conn_t *c, const char *filter)
{
	for (size_t i = 0; i < c->n_subs; i++)
		if (!strcmp(router_sub_filter(c->subs[i].rs), filter))
			return (int)i;
	return -1;
}

char *conn_remove_sub(conn_t *c, size_t i)
{
	char *present_as = c->subs[i].present_as;

	router_remove(c->hub->router, c->subs[i].rs);
	c->subs[i] = c->subs[--c->n_subs];
	return present_as;
}

static void held_clear(conn_t *c)
{
	for (size_t i = 0; i < c->n_held; i++) {
		free(c->held[i].topic);
		frame_unref(c->held[i].frame);
	}
	free(c->held);
	c->held = NULL;
	c->n_held = c->cap_held = 0;
	c->held_bytes = 0;
}

static void rules_clear(conn_t *c)
{
	for (size_t i = 0; i < c->n_rules; i++)
		free(c->rules[i].filter);
	free(c->rules);
	c->rules = NULL;
	c->n_rules = 0;
}

int conn_seen_in_backlog(conn_t *c, const char *topic, uint64_t seq)
{
	size_t i = 0;

	while (i < c->n_rules) {
		conn_rule_t *r = &c->rules[i];

		if (seq <= r->seq && topic_match(r->filter, topic))
			return 1;
		/* Live messages come in seq order: once one is past a
		 * backlog's newest, no later one can be in it. */
		if (seq > r->seq) {
			free(r->filter);
			*r = c->rules[--c->n_rules];
			continue;
		}
		i++;
	}
	if (!c->n_rules)
		rules_clear(c);
	return 0;
}

void conn_hold(conn_t *c, const char *topic, uint64_t seq, frame_t *f)
{
	hub_t *h = c->hub;

	if (c->state != CONN_OPEN)
		return;
	if (c->held_bytes + f->len > h->live->limits.max_queue_bytes) {
		h->m.slow_consumers++;
		h->m.dropped_messages += c->n_held + 1;
		held_clear(c);
		conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
			   "slow consumer", 1);
		return;
	}
	if (c->n_held == c->cap_held) {
		size_t ncap = c->cap_held ? c->cap_held * 2 : 32;
		conn_held_t *n = realloc(c->held, ncap * sizeof *n);

		if (!n)
			abort();
		c->held = n;
		c->cap_held = ncap;
	}
	c->held[c->n_held].topic = strdup(topic);
	if (!c->held[c->n_held].topic)
		abort();
	c->held[c->n_held].seq = seq;
	c->held[c->n_held].frame = frame_ref(f);
	c->held_bytes += f->len;
	c->n_held++;
}

void conn_unhold(conn_t *c, const char *filter, uint64_t seq)
{
	if (filter) {
		conn_rule_t *n =
		    realloc(c->rules, (c->n_rules + 1) * sizeof *n);

		if (!n)
			abort();
		c->rules = n;
		c->rules[c->n_rules].filter = strdup(filter);
		if (!c->rules[c->n_rules].filter)
			abort();
		c->rules[c->n_rules].seq = seq;
		c->n_rules++;
	}
	if (c->holding && --c->holding)
		return;
	for (size_t i = 0; i < c->n_held; i++) {
		const conn_held_t *m = &c->held[i];
		int dup = 0;

		for (size_t r = 0; r < c->n_rules && !dup; r++)
			dup = m->seq <= c->rules[r].seq &&
			      topic_match(c->rules[r].filter, m->topic);
		if (!dup && conn_send(c, m->frame) == 0)
			c->hub->m.messages_out++;
	}
	held_clear(c);
	/* The rules stay: a message of the backlog may still come live
	 * (Redis answers reads and pub/sub on two connections). */
}

conn_t *conn_by_id(hub_t *h, uint64_t id)
{
	char key[24];

	snprintf(key, sizeof key, "%llu", (unsigned long long)id);
	return strmap_get(h->conn_ids, key);
}
