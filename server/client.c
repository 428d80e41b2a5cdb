/* client.c: the parley.v1 operations of a session. Every answer is queued
 * on the session's own frame queue, so it is ordered after any backlog. */
#include "client.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "codec.h"
#include "err.h"
#include "fed.h"
#include "jwrite.h"
#include "log.h"
#include "presence.h"
#include "ratelimit.h"
#include "strmap.h"
#include "topic.h"

/* Sends a new frame to the session and drops our reference. */
static void send_new(conn_t *c, frame_t *f)
{
	conn_send(c, f);
	frame_unref(f);
}

static void send_error(conn_t *c, const json_t *id, int err, const char *reason,
		       const char *topic)
{
	hub_count_error(c->hub, err);
	log_info("request_error", "conn=%llu peer=%s code=%s reason=%s",
		 (unsigned long long)c->id, c->peer, parley_errcode(err),
		 log_str(reason ? reason : parley_strerror(err)));
	send_new(c, codec_error(id, err, reason, topic));
}

/* Returns 1 when presence is tracked for the concrete topic. */
static int presence_enabled(const hub_t *h, const char *topic)
{
	const config_patterns_t *p = &h->live->presence_topics;

	for (size_t i = 0; i < p->n; i++)
		if (topic_match(p->v[i], topic))
			return 1;
	return 0;
}

/* One presence change to announce, and who must not hear it. */
struct presence_note {
	const char *topic;    /* Topic of the change. */
	frame_t *frame;	      /* The presence frame. */
	const conn_t *except; /* The session that caused it. */
};

/* Router callback: sends the note to sessions holding the exact topic. */
static void presence_deliver(void *owner, void *ud)
{
	struct presence_note *n = ud;
	conn_t *c = owner;

	if (c->kind != OWNER_CONN || c == n->except ||
	    conn_find_sub(c, n->topic) < 0)
		return;
	conn_send(c, n->frame);
}

/* Returns 1 when ident belongs to another node ("user@othernode"). */
static int except_is_remote(const hub_t *h, const char *ident)
{
	const char *at = strrchr(ident, '@');

	return !at || strcmp(at + 1, h->cfg->node) != 0;
}

/* Tells the topic's other subscribers, and peers, that ident joined or
 * left. */
static void presence_announce(hub_t *h, const char *topic, const char *ident,
			      int joined, const conn_t *except)
{
	/* Our own users are announced to peers too; theirs came from them. */
	if (h->fed && !except_is_remote(h, ident))
		fed_presence_local(h->fed, topic, ident, joined);
	client_presence_tell(h, topic, ident, joined, except);
}

void client_presence_tell(hub_t *h, const char *topic, const char *ident,
			  int joined, const conn_t *except)
{
	struct presence_note n = {topic, NULL, except};
	const char *const one[1] = {ident};

	n.frame = codec_presence(topic, joined ? one : NULL, joined ? 1 : 0,
				 joined ? NULL : one, joined ? 0 : 1);
	router_match(h->router, topic, strmap_hash(topic), presence_deliver,
		     &n);
	frame_unref(n.frame);
}

/* Collects the identities present on a topic. */
struct ident_list {
	const char **v; /* Borrowed identity strings. */
	size_t n;	/* Count. */
	size_t cap;	/* Capacity. */
};

static void collect_ident(const char *ident, void *ud)
{
	struct ident_list *l = ud;

	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 16;
		const char **nv = realloc(l->v, ncap * sizeof *nv);

		if (!nv)
			abort();
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = ident;
}

/* Counts the session's identity on topic, announces it when new, and
 * sends the session the full list. Returns the identity it holds (owned
 * by the caller). */
static char *presence_enter(conn_t *c, const char *topic)
{
	struct ident_list l = {0};
	char *as = strdup(c->user->ident);

	if (!as)
		abort();
	if (presence_join(c->hub->presence, topic, as))
		presence_announce(c->hub, topic, as, 1, c);
	presence_list(c->hub->presence, topic, collect_ident, &l);
	send_new(c, codec_presence(topic, l.v, l.n, NULL, 0));
	free(l.v);
	return as;
}

/* Drops one count of ident on topic and announces a departure. Frees
 * ident. */
static void presence_exit(hub_t *h, const char *topic, char *ident,
			  const conn_t *except)
{
	if (!ident)
		return;
	if (presence_leave(h->presence, topic, ident))
		presence_announce(h, topic, ident, 0, except);
	free(ident);
}

/* Removes subscription i of the session and settles its presence. */
static void remove_sub(conn_t *c, size_t i)
{
	char topic[TOPIC_MAX_BYTES + 1];
	char *as;

	snprintf(topic, sizeof topic, "%s", router_sub_filter(c->subs[i].rs));
	as = conn_remove_sub(c, i);
	if (c->hub->cluster)
		cluster_unwant(c->hub->cluster, topic);
	presence_exit(c->hub, topic, as, c);
}

void client_release(conn_t *c)
{
	if (!c->hub)
		return;
	while (c->n_subs)
		remove_sub(c, c->n_subs - 1);
	conn_release(c);
}

/* A backlog being collected before it is queued. */
struct backlog {
	msg_t **v;    /* Messages (references). */
	size_t n;     /* Count. */
	size_t cap;   /* Capacity. */
	size_t bytes; /* Frame bytes in all. */
};

static void collect_backlog(msg_t *m, void *ud)
{
	struct backlog *b = ud;

	b->v = msg_array_push(b->v, &b->n, &b->cap, msg_ref(m));
	b->bytes += m->frame->len;
}

static void backlog_free(struct backlog *b)
{
	for (size_t i = 0; i < b->n; i++)
		msg_unref(b->v[i]);
	free(b->v);
}

/* Queues a collected backlog outside the slow-consumer bound (its frames
 * are shared with history), provided the backlog still waiting in the
 * queue plus this one fit in limits.max_queue_bytes. Returns 0 or
 * PE_TOO_LARGE (nothing queued). */
static int queue_backlog(conn_t *c, const struct backlog *b,
			 const char **reason)
{
	hub_t *h = c->hub;

	if (c->out.exempt_bytes + b->bytes > h->live->limits.max_queue_bytes) {
		*reason = "backlog larger than this connection's queue "
			  "(limits.max_queue_bytes): ask for fewer messages "
			  "or read the backlog already sent first";
		return PE_TOO_LARGE;
	}
	for (size_t i = 0; i < b->n; i++)
		outq_push_exempt(&c->out, b->v[i]->frame);
	h->m.backlog_messages += b->n;
	h->m.messages_out += b->n;
	return 0;
}

static int do_auth(conn_t *c, req_t *r, const char **reason)
{
	hub_t *h = c->hub;
	auth_user_t *u = auth_lookup(h->auth, r->token, r->token_len);

	if (!u) {
		*reason = "unknown token";
		return PE_UNAUTHORIZED;
	}
	/* Presence counts the old identity: hand each topic over. */
	for (size_t i = 0; i < c->n_subs; i++) {
		conn_sub_t *cs = &c->subs[i];

		if (!cs->present_as || !strcmp(cs->present_as, u->ident))
			continue;
		presence_exit(h, router_sub_filter(cs->rs), cs->present_as, c);
		cs->present_as = NULL;
	}
	c->user = u;
	c->has_token = 1;
	client_recheck(c);
	for (size_t i = 0; i < c->n_subs; i++) {
		conn_sub_t *cs = &c->subs[i];
		const char *t = router_sub_filter(cs->rs);

		if (!cs->present_as && presence_enabled(h, t) &&
		    !topic_validate(t, strlen(t)))
			cs->present_as = presence_enter(c, t);
	}
	log_info("auth", "conn=%llu peer=%s user=%s", (unsigned long long)c->id,
		 c->peer, log_str(u->ident));
	send_new(c, codec_ok(r->id, "user", u->ident));
	return 0;
}

/* A subscription whose backlog is read from Redis (cluster mode). */
struct ws_sub {
	uint64_t conn_id; /* Session (looked up again at the end). */
	json_t *id;	  /* Request id to echo (a reference), or NULL. */
	char *filter;	  /* The filter (owned). */
	int added;	  /* This request added the subscription. */
	int pattern;	  /* The filter is a pattern. */
};

static void ws_sub_done(hub_t *h, int rc, const cluster_item_t *items, size_t n,
			void *ud)
{
	struct ws_sub *p = ud;
	conn_t *c = conn_by_id(h, p->conn_id);
	const char *reason = NULL;
	size_t bytes = 0;
	int i;

	if (!c || c->state != CONN_OPEN)
		goto out; /* Its subscriptions went with it. */
	for (size_t k = 0; k < n; k++)
		bytes += items[k].frame->len;
	if (!rc &&
	    c->out.exempt_bytes + bytes > h->live->limits.max_queue_bytes) {
		rc = PE_TOO_LARGE;
		reason = "backlog larger than this connection's queue "
			 "(limits.max_queue_bytes): ask for fewer messages";
	}
	if (rc) {
		if (rc == PE_UNAVAILABLE)
			reason = "the cluster's Redis is unreachable";
		else if (rc == PE_HISTORY_GAP)
			reason = "history no longer holds every message after "
				 "this cursor";
		i = conn_find_sub(c, p->filter);
		if (p->added && i >= 0)
			remove_sub(c, (size_t)i);
		send_error(c, p->id, rc, reason, NULL);
		conn_unhold(c, NULL, 0);
		goto out;
	}
	for (size_t k = 0; k < n; k++)
		outq_push_exempt(&c->out, items[k].frame);
	h->m.backlog_messages += n;
	h->m.messages_out += n;
	send_new(c, codec_ok(p->id, NULL, NULL));
	i = conn_find_sub(c, p->filter);
	if (p->added && i >= 0 && !p->pattern &&
	    presence_enabled(h, p->filter) && !c->subs[i].present_as)
		c->subs[i].present_as = presence_enter(c, p->filter);
	conn_unhold(c, p->filter, n ? items[n - 1].seq : 0);
out:
	json_decref(p->id);
	free(p->filter);
	free(p);
}

/* do_sub in cluster mode: the subscription is taken at once (messages
 * published from now on are held back), the backlog is read from Redis,
 * and the answer comes when it has been queued. */
static int cluster_sub(conn_t *c, req_t *r, int pattern, const char **reason)
{
	hub_t *h = c->hub;
	uint64_t seq = 0;
	size_t last = 0;
	struct ws_sub *p;
	router_sub_t *s;
	int rc;

	if (r->since) {
		rc = cluster_parse_cursor(h->cluster, r->since, &seq);
		if (rc) {
			*reason = rc == PE_HISTORY_GAP
				      ? "cursor is from another history (Redis "
					"lost its data, or another hub)"
				  : rc == PE_UNAVAILABLE
				      ? "the cluster's Redis is unreachable"
				      : "invalid cursor";
			return rc;
		}
	} else if (r->has_last) {
		last = (size_t)r->last < h->cfg->history_length
			   ? (size_t)r->last
			   : h->cfg->history_length;
	}
	if (!cluster_up(h->cluster)) {
		*reason = "the cluster's Redis is unreachable";
		return PE_UNAVAILABLE;
	}
	p = calloc(1, sizeof *p);
	if (!p)
		abort();
	p->conn_id = c->id;
	p->id = json_incref(r->id);
	p->filter = strdup(r->topic);
	p->pattern = pattern;
	if (!p->filter)
		abort();
	if (conn_find_sub(c, r->topic) < 0) {
		rc = router_add(h->router, r->topic, c, &s);
		if (!rc && conn_add_sub(c, s, NULL)) {
			router_remove(h->router, s);
			rc = PE_NOMEM;
		}
		if (rc) {
			json_decref(p->id);
			free(p->filter);
			free(p);
			return rc;
		}
		cluster_want(h->cluster, r->topic);
		p->added = 1;
	}
	c->holding++;
	rc = cluster_backlog(h->cluster, r->topic, 1, r->since != NULL, seq,
			     last, ws_sub_done, p);
	if (rc) {
		/* Not called back: undo by hand. */
		int i = conn_find_sub(c, r->topic);

		if (p->added && i >= 0)
			remove_sub(c, (size_t)i);
		conn_unhold(c, NULL, 0);
		json_decref(p->id);
		free(p->filter);
		free(p);
		*reason = "the cluster's Redis is unreachable";
		return PE_UNAVAILABLE;
	}
	return 0;
}

static int do_sub(conn_t *c, req_t *r, const char **reason)
{
	hub_t *h = c->hub;
	struct backlog b = {0};
	router_sub_t *s;
	uint64_t seq = 0;
	bool pattern;
	int rc;

	if (topic_validate_filter(r->topic, strlen(r->topic), &pattern)) {
		*reason = "invalid topic or pattern";
		return PE_BAD_PATTERN;
	}
	if (!auth_can_subscribe(c->user, r->topic)) {
		*reason = "not permitted to subscribe to this topic";
		return PE_FORBIDDEN;
	}
	if (conn_find_sub(c, r->topic) < 0 &&
	    c->n_subs >= h->live->limits.max_subscriptions) {
		*reason = "subscription limit reached";
		return PE_TOO_MANY;
	}
	if (h->cluster)
		return cluster_sub(c, r, pattern, reason);
	if (r->since) {
		rc = history_parse_cursor(h->history, r->since, &seq);
		if (rc) {
			*reason = rc == PE_HISTORY_GAP
				      ? "cursor is from before a restart: "
					"its history is gone"
				      : "invalid cursor";
			return rc;
		}
		rc = history_since(h->history, r->topic, seq, collect_backlog,
				   &b);
		if (rc) {
			*reason = "history no longer holds every message "
				  "after this cursor";
			return rc;
		}
	} else if (r->has_last && r->last > 0) {
		size_t n = (size_t)r->last;

		if (n > h->cfg->history_length)
			n = h->cfg->history_length;
		history_last(h->history, r->topic, n, collect_backlog, &b);
	}
	rc = queue_backlog(c, &b, reason);
	backlog_free(&b);
	if (rc)
		return rc;
	if (conn_find_sub(c, r->topic) >= 0) {
		send_new(c, codec_ok(r->id, NULL, NULL));
		return 0;
	}
	rc = router_add(h->router, r->topic, c, &s);
	if (rc)
		return rc;
	if (conn_add_sub(c, s, NULL)) {
		router_remove(h->router, s);
		return PE_NOMEM;
	}
	send_new(c, codec_ok(r->id, NULL, NULL));
	if (!pattern && presence_enabled(h, r->topic))
		c->subs[c->n_subs - 1].present_as = presence_enter(c, r->topic);
	return 0;
}

static int do_unsub(conn_t *c, req_t *r, const char **reason)
{
	int i = conn_find_sub(c, r->topic);

	if (i >= 0)
		remove_sub(c, (size_t)i);
	send_new(c, codec_ok(r->id, NULL, NULL));
	return 0;
}

/* A publish waiting for Redis (cluster mode). */
struct pub_op {
	client_done_fn done; /* Caller's callback. */
	void *ud;	     /* Caller's data. */
	char mid[64];	     /* The message's id. */
};

static void on_cluster_stored(hub_t *h, int rc, uint64_t seq, void *ud)
{
	struct pub_op *op = ud;

	(void)seq;
	op->done(h, rc, op->mid,
		 rc ? "the cluster's Redis is unreachable: nothing was "
		      "stored, publish again later"
		    : NULL,
		 op->ud);
	free(op);
}

int client_publish_text(hub_t *h, auth_user_t *user, const char *topic,
			const char *body, size_t body_len, client_done_fn done,
			void *ud, const char **reason)
{
	size_t topic_len = strlen(topic);
	msg_t *m;
	int rc;

	if (topic_validate(topic, topic_len)) {
		*reason = "invalid topic";
		return PE_BAD_TOPIC;
	}
	if (!auth_can_publish(user, topic)) {
		*reason = "not permitted to publish to this topic";
		return PE_FORBIDDEN;
	}
	if (!ratelimit_take(&user->bucket, &user->bucket_ms,
			    h->live->limits.token_publish_per_second,
			    2 * h->live->limits.token_publish_per_second,
			    uv_now(h->loop))) {
		*reason = "publish rate limit of this token exceeded";
		return PE_RATE_LIMITED;
	}
	if (body_len > h->live->limits.max_frame_bytes) {
		*reason = "body too large";
		return PE_TOO_LARGE;
	}
	rc = hub_new_msg(h, topic, topic_len, user->ident, body, body_len, &m);
	if (rc) {
		*reason = rc == PE_TOO_MANY  ? "too many topics held"
			  : h->shutting_down ? "the hub is shutting down"
					     : "the hub is above its memory "
					       "high-water mark; try later";
		return rc;
	}
	if (!h->cluster) {
		rc = hub_accept(h, m);
		if (!rc)
			done(h, 0, m->mid, NULL, ud);
		msg_unref(m);
		*reason = "the hub is shutting down";
		return rc;
	}
	struct pub_op *op = calloc(1, sizeof *op);

	if (!op)
		abort();
	op->done = done;
	op->ud = ud;
	snprintf(op->mid, sizeof op->mid, "%s", m->mid);
	rc = cluster_store(h->cluster, m, NULL, NULL, on_cluster_stored, op);
	msg_unref(m);
	if (rc) {
		free(op);
		*reason = "the cluster's Redis is unreachable: nothing was "
			  "stored, publish again later";
	}
	return rc;
}

int client_publish(hub_t *h, auth_user_t *user, const char *topic,
		   const json_t *body, client_done_fn done, void *ud,
		   const char **reason)
{
	size_t blen;
	char *btext = codec_dump_body(body, &blen);
	int rc;

	if (!btext) {
		*reason = "body cannot be encoded";
		return PE_BAD_REQUEST;
	}
	rc = client_publish_text(h, user, topic, btext, blen, done, ud, reason);
	free(btext);
	return rc;
}

/* A parley.v1 publish in flight: the session may be gone when it ends. */
struct ws_pub {
	conn_t *conn;	  /* The session while the publish is synchronous
			     (standalone), else NULL. */
	uint64_t conn_id; /* Session (looked up again at the end). */
	const char *id;	  /* Request id's JSON text to echo, or NULL. */
	size_t id_len;	  /* Its length. */
	int heap;	  /* 1 when this struct and id are malloc'd. */
};

static void ws_pub_done(hub_t *h, int rc, const char *mid, const char *reason,
			void *ud)
{
	struct ws_pub *p = ud;
	conn_t *c = p->conn ? p->conn : conn_by_id(h, p->conn_id);

	if (c && c->state == CONN_OPEN) {
		if (rc) {
			json_t *id = codec_id_value(p->id, p->id_len);

			send_error(c, id, rc, reason, NULL);
			json_decref(id);
		} else {
			size_t mr, mj = jw_str_len(mid, &mr);
			size_t n = codec_ok_mid_len(p->id, p->id_len, mj);
			char *d = conn_send_text(c, n);

			h->m.messages_in_ws++;
			/* Measured and written lengths must agree. */
			if (d && codec_ok_mid_put(d, p->id, p->id_len, mid, mr,
						  mj) != d + n)
				abort();
		}
	}
	if (p->heap) {
		free((char *)p->id);
		free(p);
	}
}

/* The publish of a session, from either decoder: the body is validated
 * JSON text, the id the JSON text of a valid id (or NULL). */
static int do_pub(conn_t *c, const char *topic, const char *body,
		  size_t body_len, const char *id, size_t id_len,
		  const char **reason)
{
	hub_t *h = c->hub;
	struct ws_pub local = {c, c->id, id, id_len, 0}, *p = &local;
	int rc;

	if (!ratelimit_take(&c->bucket, &c->bucket_ms,
			    h->live->limits.publish_per_second,
			    h->live->limits.publish_burst, uv_now(h->loop))) {
		*reason = "publish rate limit of this connection exceeded";
		return PE_RATE_LIMITED;
	}
	/* Standalone answers before client_publish_text returns; a cluster
	 * answers later, so its state must outlive this frame. */
	if (h->cluster) {
		p = malloc(sizeof *p);
		if (!p)
			abort();
		*p = local;
		p->conn = NULL;
		p->heap = 1;
		p->id = NULL;
		if (id) {
			/* The id lies in the frame: not NUL-terminated. */
			char *copy = malloc(id_len + 1);

			if (!copy)
				abort();
			memcpy(copy, id, id_len);
			copy[id_len] = 0;
			p->id = copy;
		}
	}
	rc = client_publish_text(h, c->user, topic, body, body_len, ws_pub_done,
				 p, reason);
	if (rc && p->heap) {
		free((char *)p->id);
		free(p);
	}
	return rc;
}

/* do_pub for a request the full decoder read. */
static int do_pub_req(conn_t *c, req_t *r, const char **reason)
{
	char *id =
	    r->id ? json_dumps(r->id, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
	size_t blen;
	char *body = codec_dump_body(r->body, &blen);
	int rc;

	if (!body) {
		free(id);
		*reason = "body cannot be encoded";
		return PE_BAD_REQUEST;
	}
	rc = do_pub(c, r->topic, body, blen, id, id ? strlen(id) : 0, reason);
	free(body);
	free(id);
	return rc;
}

static void request_failed(conn_t *c, const json_t *id, int rc,
			   const char *reason)
{
	send_error(c, id, rc, reason, NULL);
	/* The hub's own trouble (Redis down) is not the client's fault. */
	if (rc != PE_UNAVAILABLE &&
	    ++c->errors_in_row >= c->hub->live->limits.max_errors)
		conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
			   "too many bad requests", 0);
}

/* A publish the fast path decoded, from a frame or a batch. */
static void handle_fast_pub(conn_t *c, const fast_pub_t *fp)
{
	const char *reason = NULL;
	int rc = do_pub(c, fp->topic, fp->body, fp->body_len, fp->id,
			fp->id_len, &reason);

	if (rc) {
		json_t *id = codec_id_value(fp->id, fp->id_len);

		request_failed(c, id, rc, reason);
		json_decref(id);
	} else {
		c->errors_in_row = 0;
	}
}

static void handle_batch(conn_t *c, codec_batch_t *b);

/* One request's text: a frame of its own, which client_handle has tried
 * as a publish already, or one of a batch (in_batch; a batch inside a
 * batch is refused). */
static void handle_request(conn_t *c, const char *buf, size_t len, int in_batch)
{
	const char *reason = NULL;
	fast_pub_t fp;
	codec_batch_t b;
	req_t r;
	int rc;

	if (in_batch && codec_fast_pub(buf, len, &fp)) {
		handle_fast_pub(c, &fp);
		return;
	}
	rc = codec_decode(buf, len, &r, &reason);
	if (!rc) {
		switch (r.op) {
		case REQ_AUTH:
			rc = do_auth(c, &r, &reason);
			break;
		case REQ_SUB:
			rc = do_sub(c, &r, &reason);
			break;
		case REQ_UNSUB:
			rc = do_unsub(c, &r, &reason);
			break;
		case REQ_PUB:
			rc = do_pub_req(c, &r, &reason);
			break;
		case REQ_PING:
			send_new(c, codec_pong(r.id));
			break;
		case REQ_BATCH:
			if (in_batch) {
				reason = "a batch cannot hold a batch";
				rc = PE_BAD_REQUEST;
				break;
			}
			codec_batch_tree(&b, r.msgs);
			req_free(&r);
			handle_batch(c, &b);
			return;
		}
	}
	if (rc)
		request_failed(c, r.id, rc, reason);
	else
		c->errors_in_row = 0;
	req_free(&r);
}

/* Handles a batch's requests in order until it ends, breaks, or the
 * session closes (too many bad requests). */
static void handle_batch(conn_t *c, codec_batch_t *b)
{
	const char *req, *reason = NULL;
	size_t req_len;
	fast_pub_t fp;
	int rc;

	c->hub->m.batches_in++;
	while (c->state == CONN_OPEN) {
		rc = codec_batch_next(b, &fp, &req, &req_len, &reason);
		if (rc == CB_END)
			break;
		if (rc == CB_PUB) {
			handle_fast_pub(c, &fp);
		} else if (rc == CB_REQ) {
			handle_request(c, req, req_len, 1);
		} else {
			char why[160];

			/* Say which request the client must send again. */
			snprintf(why, sizeof why,
				 "%s: msgs[%zu] and what follows it were not "
				 "handled",
				 reason, b->index);
			request_failed(c, NULL, rc, why);
			break;
		}
	}
	codec_batch_end(b);
}

void client_handle(conn_t *c, const char *buf, size_t len)
{
	codec_batch_t b;
	fast_pub_t fp;

	/* Most frames are publishes: take them without a JSON tree. */
	if (codec_fast_pub(buf, len, &fp))
		handle_fast_pub(c, &fp);
	else if (codec_batch_begin(&b, buf, len))
		handle_batch(c, &b);
	else
		handle_request(c, buf, len, 0);
}

void client_reject_binary(conn_t *c)
{
	send_error(c, NULL, PE_BAD_REQUEST,
		   "binary frames are not part of parley.v1", NULL);
	if (++c->errors_in_row >= c->hub->live->limits.max_errors)
		conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
			   "too many bad requests", 0);
}

void client_recheck(conn_t *c)
{
	size_t i = 0;

	while (i < c->n_subs) {
		const char *f = router_sub_filter(c->subs[i].rs);

		if (auth_can_subscribe(c->user, f)) {
			i++;
			continue;
		}
		/* The error frame copies the filter before it is freed. */
		send_error(c, NULL, PE_FORBIDDEN,
			   "subscription removed: no longer permitted", f);
		remove_sub(c, i);
	}
}
