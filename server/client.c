/* client.c: the parley.v1 operations of a session. Every answer is queued
 * on the session's own frame queue, so it is ordered after any backlog. */
#include "client.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "err.h"
#include "fed.h"
#include "log.h"
#include "presence.h"
#include "ratelimit.h"
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

void client_identity(const hub_t *h, const auth_user_t *u, char *buf,
		     size_t len)
{
	snprintf(buf, len, "%s@%s", u->name, h->cfg->node);
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
	router_match(h->router, topic, presence_deliver, &n);
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
	char who[192];
	char *as;

	client_identity(c->hub, c->user, who, sizeof who);
	as = strdup(who);
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

	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 64;
		msg_t **nv = realloc(b->v, ncap * sizeof *nv);

		if (!nv)
			abort();
		b->v = nv;
		b->cap = ncap;
	}
	b->v[b->n++] = msg_ref(m);
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
	char who[192];

	if (!u) {
		*reason = "unknown token";
		return PE_UNAUTHORIZED;
	}
	client_identity(h, u, who, sizeof who);
	/* Presence counts the old identity: hand each topic over. */
	for (size_t i = 0; i < c->n_subs; i++) {
		conn_sub_t *cs = &c->subs[i];

		if (!cs->present_as || !strcmp(cs->present_as, who))
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
		 c->peer, log_str(who));
	send_new(c, codec_ok(r->id, "user", who));
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

int client_publish(hub_t *h, auth_user_t *user, const char *topic,
		   const json_t *body, msg_t **out, const char **reason)
{
	char from[192];
	size_t blen;
	char *btext;
	int rc;

	if (topic_validate(topic, strlen(topic))) {
		*reason = "invalid topic";
		return PE_BAD_TOPIC;
	}
	if (!auth_can_publish(user, topic)) {
		*reason = "not permitted to publish to this topic";
		return PE_FORBIDDEN;
	}
	if (!user->anonymous &&
	    !ratelimit_take(&user->bucket, &user->bucket_ms,
			    h->live->limits.token_publish_per_second,
			    2 * h->live->limits.token_publish_per_second,
			    uv_now(h->loop))) {
		*reason = "publish rate limit of this token exceeded";
		return PE_RATE_LIMITED;
	}
	btext = codec_dump_body(body, &blen);
	if (!btext) {
		*reason = "body cannot be encoded";
		return PE_BAD_REQUEST;
	}
	if (blen > h->live->limits.max_frame_bytes) {
		free(btext);
		*reason = "body too large";
		return PE_TOO_LARGE;
	}
	client_identity(h, user, from, sizeof from);
	rc = hub_publish_local(h, topic, from, btext, blen, out);
	free(btext);
	if (rc == PE_UNAVAILABLE)
		*reason = h->shutting_down ? "the hub is shutting down"
					   : "the hub is above its memory "
					     "high-water mark; try later";
	else if (rc)
		*reason = parley_strerror(rc);
	return rc;
}

static int do_pub(conn_t *c, req_t *r, const char **reason)
{
	hub_t *h = c->hub;
	msg_t *m;
	int rc;

	if (!ratelimit_take(&c->bucket, &c->bucket_ms,
			    h->live->limits.publish_per_second,
			    h->live->limits.publish_burst, uv_now(h->loop))) {
		*reason = "publish rate limit of this connection exceeded";
		return PE_RATE_LIMITED;
	}
	rc = client_publish(h, c->user, r->topic, r->body, &m, reason);
	if (rc)
		return rc;
	h->m.messages_in_ws++;
	send_new(c, codec_ok(r->id, "mid", m->mid));
	return 0;
}

void client_handle(conn_t *c, const char *buf, size_t len)
{
	const char *reason = NULL;
	req_t r;
	int rc;

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
			rc = do_pub(c, &r, &reason);
			break;
		case REQ_PING:
			send_new(c, codec_pong(r.id));
			break;
		}
	}
	if (rc) {
		send_error(c, r.id, rc, reason, NULL);
		if (++c->errors_in_row >= c->hub->live->limits.max_errors)
			conn_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION,
				   "too many bad requests", 0);
	} else {
		c->errors_in_row = 0;
	}
	req_free(&r);
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
