/* conn.c: client sessions: lifecycle, the bounded queue of shared frames,
 * and the batched end-of-pass flush (PERFORMANCE.md's recipe: no lws call
 * on publish, one LWS_WRITE_RAW write per session per pass). */
#include "conn.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

/* Seconds a closing session may take to get its close frame out. */
#define CLOSE_GRACE_S 3

static const char *const state_names[] = {"open", "closing"};

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

static void idle_noop(uv_idle_t *i)
{
	(void)i;
}

static void dirty_add(conn_t *c)
{
	hub_t *h = c->hub;

	if (c->dirty)
		return;
	c->dirty = 1;
	c->dirty_next = h->dirty;
	if (h->dirty)
		h->dirty->dirty_pprev = &c->dirty_next;
	c->dirty_pprev = &h->dirty;
	h->dirty = c;
	/* An idle handle makes the loop poll without blocking, so frames
	 * queued from a timer callback are flushed in this pass too. */
	if (!uv_is_active((uv_handle_t *)&h->flush_idle))
		uv_idle_start(&h->flush_idle, idle_noop);
}

static void dirty_remove(conn_t *c)
{
	if (!c->dirty)
		return;
	*c->dirty_pprev = c->dirty_next;
	if (c->dirty_next)
		c->dirty_next->dirty_pprev = c->dirty_pprev;
	c->dirty = 0;
	c->dirty_next = NULL;
	c->dirty_pprev = NULL;
}

int conn_open(conn_t *c, hub_t *h, struct lws *wsi, auth_user_t *user,
	      int has_token)
{
	c->wsi = wsi;
	c->hub = h;
	c->state = CONN_OPEN;
	c->user = user;
	c->has_token = has_token;
	c->id = next_conn_id++;
	c->bucket = h->live->limits.publish_burst;
	c->bucket_ms = uv_now(h->loop);
	lws_get_peer_simple(wsi, c->peer, sizeof c->peer);
	c->next = h->conns;
	if (h->conns)
		h->conns->prev = c;
	h->conns = c;
	h->n_conns++;
	h->m.connections_total++;
	return 0;
}

static void queue_clear(conn_t *c)
{
	while (c->q_len) {
		frame_unref(c->q[c->q_head]);
		c->q_head = (c->q_head + 1) & (c->q_cap - 1);
		c->q_len--;
	}
	c->q_head = 0;
	c->q_bytes = 0;
}

void conn_release(conn_t *c)
{
	hub_t *h = c->hub;

	if (!h)
		return; /* Never opened (refused during the handshake). */
	dirty_remove(c);
	queue_clear(c);
	free(c->q);
	c->q = NULL;
	for (size_t i = 0; i < c->n_subs; i++)
		router_remove(h->router, c->subs[i]);
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

/* Appends a frame to the ring, growing it; no limit is checked. */
static void queue_push(conn_t *c, frame_t *f)
{
	if (c->q_len == c->q_cap) {
		uint32_t ncap = c->q_cap ? c->q_cap * 2 : 16;
		frame_t **nq = malloc(ncap * sizeof *nq);

		if (!nq)
			abort();
		/* Unwrap the ring into the new array. */
		for (uint32_t i = 0; i < c->q_len; i++)
			nq[i] = c->q[(c->q_head + i) & (c->q_cap - 1)];
		free(c->q);
		c->q = nq;
		c->q_cap = ncap;
		c->q_head = 0;
	}
	c->q[(c->q_head + c->q_len) & (c->q_cap - 1)] = frame_ref(f);
	c->q_len++;
	c->q_bytes += f->len;
	dirty_add(c);
}

void conn_close(conn_t *c, int code, const char *reason, int drop_queue)
{
	frame_t *f;

	if (c->state == CONN_CLOSING)
		return;
	conn_set_state(c, CONN_CLOSING);
	log_info("conn_close", "conn=%llu peer=%s code=%d reason=%s",
		 (unsigned long long)c->id, c->peer, code, log_str(reason));
	if (drop_queue) {
		c->hub->m.dropped_messages += c->q_len;
		queue_clear(c);
	}
	f = frame_new_close(code, reason);
	queue_push(c, f);
	frame_unref(f);
	c->close_queued = 1;
	/* A peer that never reads never takes the close frame: bound it. */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
}

int conn_send(conn_t *c, frame_t *f)
{
	hub_t *h = c->hub;

	if (c->state != CONN_OPEN) {
		h->m.dropped_messages++;
		return -1;
	}
	if (c->q_bytes + f->len > h->live->limits.max_queue_bytes) {
		h->m.slow_consumers++;
		h->m.dropped_messages++;
		log_warn("slow_consumer",
			 "conn=%llu peer=%s queued_bytes=%zu queued_frames=%u",
			 (unsigned long long)c->id, c->peer, c->q_bytes,
			 c->q_len);
		conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
			   "slow consumer", 1);
		return -1;
	}
	queue_push(c, f);
	return 0;
}

static void queue_pop(conn_t *c, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		frame_t *f = c->q[c->q_head];

		c->q_bytes -= f->len;
		frame_unref(f);
		c->q_head = (c->q_head + 1) & (c->q_cap - 1);
	}
	c->q_len -= n;
	if (!c->q_len)
		c->q_head = 0;
}

int conn_flush(conn_t *c)
{
	hub_t *h = c->hub;
	struct lws *wsi = c->wsi;

	while (c->q_len) {
		frame_t *f = c->q[c->q_head];
		unsigned char *buf;
		size_t len;
		uint32_t k;
		int n;

		/* lws still holds part of an earlier write: writing now would
		 * append behind it and misreport the count. Wait for it to
		 * drain (WRITEABLE comes back to conn_writeable). */
		if (lws_partial_buffered(wsi)) {
			if (!c->want_writable) {
				c->want_writable = 1;
				lws_callback_on_writable(wsi);
			}
			return 0;
		}
		if (c->q_len == 1 || f->len >= HUB_GATHER) {
			/* One frame: write it in place, it has LWS_PRE
			 * headroom of its own. */
			buf = f->data;
			len = f->len;
			k = 1;
		} else {
			buf = h->gather + LWS_PRE;
			len = 0;
			for (k = 0; k < c->q_len; k++) {
				frame_t *g =
				    c->q[(c->q_head + k) & (c->q_cap - 1)];

				if (len + g->len > HUB_GATHER)
					break;
				memcpy(buf + len, g->data, g->len);
				len += g->len;
			}
		}
		n = lws_write(wsi, buf, len, LWS_WRITE_RAW);
		h->m.writes++;
		if (n < (int)len) {
			log_info("conn_write_failed", "conn=%llu peer=%s",
				 (unsigned long long)c->id, c->peer);
			queue_clear(c);
			conn_set_state(c, CONN_CLOSING);
			return -1;
		}
		h->m.bytes_out += len;
		queue_pop(c, k);
	}
	return 0;
}

void conn_flush_all(hub_t *h)
{
	while (h->dirty) {
		conn_t *c = h->dirty;

		dirty_remove(c);
		if (conn_flush(c) < 0)
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK,
					LWS_TO_KILL_ASYNC);
	}
	if (uv_is_active((uv_handle_t *)&h->flush_idle))
		uv_idle_stop(&h->flush_idle);
}

int conn_writeable(conn_t *c)
{
	c->want_writable = 0;
	return conn_flush(c);
}

int conn_add_sub(conn_t *c, router_sub_t *s)
{
	if (c->n_subs == c->subs_cap) {
		size_t ncap = c->subs_cap ? c->subs_cap * 2 : 4;
		router_sub_t **n = realloc(c->subs, ncap * sizeof *n);

		if (!n)
			return PE_NOMEM;
		c->subs = n;
		c->subs_cap = ncap;
	}
	c->subs[c->n_subs++] = s;
	return 0;
}

int conn_find_sub(const conn_t *c, const char *filter)
{
	for (size_t i = 0; i < c->n_subs; i++)
		if (!strcmp(router_sub_filter(c->subs[i]), filter))
			return (int)i;
	return -1;
}

void conn_remove_sub(conn_t *c, size_t i)
{
	router_remove(c->hub->router, c->subs[i]);
	c->subs[i] = c->subs[--c->n_subs];
}
