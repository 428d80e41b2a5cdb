/* session.c: the parley.v1 conversation (see session.h) and the public
 * subscribe / publish calls that feed it.
 *
 * Resume without gap or duplicate: each subscription keeps the cursor of
 * the last message it delivered and re-subscribes with "since" after a
 * reconnect. A subscription that has delivered nothing yet learns a cursor
 * by asking for "last":1 and not delivering that backlog (a probe); if the
 * hub held no matching message, every matching message stored later is
 * new to it, so a resume asks for all of them. Each subscription also
 * remembers the ids of the last PARLEY__SEEN_MAX messages it delivered and
 * never delivers one twice (overlapping filters, replays). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "msg.h"
#include "session.h"

/* "last" sent to resume a subscription whose topic was empty: the hub
 * clamps it to its history length. */
#define LAST_ALL 1000000000L

/* Longest cursor accepted from the application. */
#define MAX_CURSOR_BYTES 1024

/* Bounds of the pause between publishes while the hub throttles. */
#define PACE_MIN_MS 20
#define PACE_MAX_MS 2000

static void tick_cb(uv_timer_t *t);
static void flush_pubs(parley_client *c);

/* Makes sure the request-timeout check runs while requests are pending. */
static void arm_tick(parley_client *c)
{
	if (!uv_is_active((uv_handle_t *)&c->tick_timer))
		uv_timer_start(&c->tick_timer, tick_cb, 1000, 1000);
}

/* Sends buf; on failure the connection is reset (requests on it would be
 * lost). Returns 0 or a negative code. */
static int send_or_reset(parley_client *c, parley__txbuf *buf)
{
	int rc = parley__conn_send(c, buf);

	if (rc == PARLEY_ENOMEM)
		parley__conn_close(c, PARLEY_ENOMEM,
				   "out of memory encoding a request");
	return rc;
}

/* Requests subscription s on the current connection. */
static void send_sub(parley_client *c, parley__sub *s)
{
	const char *since = NULL;
	long last = -1;
	uint64_t id = ++c->next_id;

	s->probing = 0;
	s->retry = 0;
	if (s->cursor)
		since = s->cursor;
	else if (s->want_since)
		since = s->want_since;
	else if (s->want_last > 0)
		last = s->want_last;
	else if (s->empty)
		last = LAST_ALL;
	else
		last = 1, s->probing = 1;
	if (send_or_reset(c, parley__codec_sub(id, s->filter, last, since)))
		return;
	s->state = PARLEY__SUB_SENT;
	s->req_id = id;
	s->sent_ms = parley__now(c);
	arm_tick(c);
}

/* Sends publish p on the current connection. */
static void send_pub(parley_client *c, parley__pub *p)
{
	uint64_t id = ++c->next_id;

	if (send_or_reset(c, parley__codec_pub(id, p->topic, p->body)))
		return;
	p->sent = 1;
	p->req_id = id;
	p->sent_ms = parley__now(c);
	arm_tick(c);
}

/* Sends the publishes that may go now, in order: all of them normally;
 * while the hub throttles us (pace_ms), one at a time, pace_ms apart. */
static void flush_pubs(parley_client *c)
{
	for (parley__pub *p = c->pubs.head; p; p = p->next) {
		if (c->teardown || c->state != PARLEY_STATE_CONNECTED)
			return;
		if (p->sent) {
			if (c->pace_ms)
				return; /* One in flight at a time. */
			continue;
		}
		if (c->pace_ms && uv_is_active((uv_handle_t *)&c->pace_timer))
			return;
		send_pub(c, p);
		if (c->pace_ms)
			return;
	}
}

static void pace_cb(uv_timer_t *t)
{
	flush_pubs(t->data);
}

/* The hub refused p for now (rate_limited, unavailable): nothing was
 * stored, so it goes back to the queue in its place and publishing slows
 * down. */
static void pub_throttled(parley_client *c, parley__pub *p)
{
	uint64_t now = parley__now(c);

	p->sent = 0;
	if (!c->pace_ms)
		c->pace_ms = PACE_MIN_MS;
	else if (p->sent_ms >= c->pace_changed_ms) /* Once per pause. */
		c->pace_ms =
		    c->pace_ms * 2 > PACE_MAX_MS ? PACE_MAX_MS : c->pace_ms * 2;
	c->pace_changed_ms = now;
	uv_timer_start(&c->pace_timer, pace_cb, c->pace_ms, 0);
}

/* The hub accepted a publish: while throttled, shorten the pause and
 * send the next one after it; back to full speed once it is short. */
static void pub_accepted(parley_client *c)
{
	if (!c->pace_ms)
		return;
	c->pace_ms = c->pace_ms * 7 / 8;
	if (c->pace_ms < PACE_MIN_MS / 2) {
		c->pace_ms = 0;
		flush_pubs(c);
		return;
	}
	uv_timer_start(&c->pace_timer, pace_cb, c->pace_ms, 0);
}

/* The connection is usable: subscribe and flush queued publishes. */
static void ready(parley_client *c)
{
	parley__sub *s;

	c->attempts = 0;
	c->ever_connected = 1;
	parley__backoff_reset(&c->backoff);
	parley__set_state(c, PARLEY_STATE_CONNECTED, 0);
	for (s = c->subs.head; s; s = s->next) {
		if (c->teardown || c->state != PARLEY_STATE_CONNECTED)
			return;
		if (!s->dead && s->state == PARLEY__SUB_UNSENT)
			send_sub(c, s);
	}
	flush_pubs(c);
}

void parley__on_established(parley_client *c)
{
	uint64_t id;

	if (!c->token) {
		ready(c);
		return;
	}
	id = ++c->next_id;
	if (send_or_reset(c, parley__codec_auth(id, c->token)))
		return;
	c->auth_id = id;
	c->auth_sent_ms = parley__now(c);
	arm_tick(c);
	parley__set_state(c, PARLEY_STATE_AUTHENTICATING, 0);
}

void parley__pub_done(parley_client *c, parley__pub *p, int err,
		      const char *mid, const char *text)
{
	parley_pub_cb cb = p->cb;
	void *ud = p->ud;

	parley__pubq_remove(&c->pubs, p);
	if (!cb)
		return;
	c->cb_depth++;
	cb(c, err, err ? NULL : mid, err ? text : NULL, ud);
	c->cb_depth--;
}

void parley__session_reset(parley_client *c)
{
	parley__pub *p, *next;

	for (parley__sub *s = c->subs.head; s; s = s->next) {
		s->state = PARLEY__SUB_UNSENT;
		s->probing = 0;
	}
	for (p = c->pubs.head; !c->teardown && p; p = next) {
		next = p->next;
		if (!p->sent)
			continue;
		if (c->opt[PARLEY_OPT_RESEND_UNACKED])
			p->sent = 0;
		else
			parley__pub_done(c, p, PARLEY_EUNACKED, NULL,
					 parley_strerror(PARLEY_EUNACKED));
	}
}

/* Removes s now, or marks it when callbacks may be iterating the list. */
static void drop_sub(parley_client *c, parley__sub *s)
{
	if (c->cb_depth)
		s->dead = 1;
	else
		parley__subs_remove(&c->subs, s);
}

/* Tells the application how a subscription request ended. */
static void sub_answered(parley_client *c, const char *filter, int err,
			 const char *text)
{
	if (!c->on_sub || c->teardown)
		return;
	c->cb_depth++;
	c->on_sub(c, filter, err, text ? text : parley_strerror(err),
		  c->sub_ud);
	c->cb_depth--;
}

/* The hub confirmed subscription s. */
static void sub_ok(parley_client *c, parley__sub *s)
{
	s->state = PARLEY__SUB_ACTIVE;
	if (!s->cursor) {
		if (s->want_since)
			parley__sub_set_cursor(s, s->want_since);
		else if (s->probing || s->want_last > 0 || s->empty)
			s->empty = 1; /* Nothing matching was stored. */
	}
	s->probing = 0;
	free(s->want_since);
	s->want_since = NULL;
	s->want_last = -1;
	sub_answered(c, s->filter, 0, "subscribed");
}

/* Delivers a "msg" frame to each subscription that matches it. */
static void dispatch(parley_client *c, const parley__frame *f)
{
	struct parley_msg m = {f, NULL, 0, NULL};
	parley__sub *s, *last = c->subs.tail;

	c->cb_depth++; /* Subscriptions are only marked dead meanwhile. */
	for (s = c->subs.head; s && !c->teardown; s = s->next) {
		int matched = !s->dead && s->state != PARLEY__SUB_UNSENT &&
			      parley_topic_matches(s->filter, f->topic);

		if (matched && s->probing && s->state == PARLEY__SUB_SENT) {
			parley__sub_set_cursor(s, f->cursor);
		} else if (matched && !parley__sub_seen(s, f->mid)) {
			parley__sub_set_cursor(s, f->cursor);
			s->empty = 0;
			s->cb(c, &m, s->ud);
		}
		if (s == last) /* Not those subscribed by the callbacks. */
			break;
	}
	c->cb_depth--;
	parley__msg_done(&m);
}

/* An "ok" frame: answers auth, a subscription or a publish. */
static void on_ok(parley_client *c, const parley__frame *f)
{
	parley__sub *s;
	parley__pub *p;

	if (!f->has_id) {
		parley__report(c, PARLEY_EPROTO, "ok frame without an id",
			       NULL);
		return;
	}
	if (c->auth_id && f->id == c->auth_id) {
		c->auth_id = 0;
		free(c->user);
		c->user = f->user ? strdup(f->user) : NULL;
		ready(c);
		return;
	}
	if ((s = parley__subs_find_req(&c->subs, f->id))) {
		sub_ok(c, s);
		return;
	}
	if ((p = parley__pubq_find_req(&c->pubs, f->id))) {
		parley__pub_done(c, p, 0, f->mid ? f->mid : "", NULL);
		if (!c->teardown)
			pub_accepted(c);
		return;
	}
	if (f->id > c->next_id)
		parley__report(c, PARLEY_EPROTO,
			       "ok frame answering no request", NULL);
	/* Else an unsub, or a subscription since removed: nothing to do. */
}

/* An "error" frame: a refused request, or a notice from the hub. */
static void on_error(parley_client *c, const parley__frame *f)
{
	int err = parley__err_from_wire(f->code);
	const char *reason = f->reason[0] ? f->reason : parley_strerror(err);
	char text[200];
	parley__sub *s = NULL;
	parley__pub *p;

	if (f->has_id && c->auth_id && f->id == c->auth_id) {
		c->auth_id = 0;
		snprintf(text, sizeof(text), "authentication refused: %.150s",
			 reason);
		parley__conn_close(c, err == PARLEY_EAUTH ? err : PARLEY_EAUTH,
				   text);
		return;
	}
	if (f->has_id)
		s = parley__subs_find_req(&c->subs, f->id);
	else if (f->topic)
		s = parley__subs_find(&c->subs, f->topic);
	if (s && err == PARLEY_EHISTORYGAP && s->state == PARLEY__SUB_SENT) {
		/* Tell, then continue from now without backlog. */
		parley__report(c, err, reason, s->filter);
		if (s->dead || c->teardown)
			return;
		free(s->cursor);
		free(s->want_since);
		s->cursor = s->want_since = NULL;
		s->want_last = -1;
		s->empty = 0;
		s->state = PARLEY__SUB_UNSENT;
		if (c->state == PARLEY_STATE_CONNECTED)
			send_sub(c, s);
		return;
	}
	if (s && err == PARLEY_EUNAVAILABLE && s->state == PARLEY__SUB_SENT) {
		/* A passing state of the hub (a cluster instance that has not
		 * reached Redis yet): keep the subscription and its cursor,
		 * and ask again from the tick. */
		s->state = PARLEY__SUB_UNSENT;
		s->retry = 1;
		arm_tick(c);
		return;
	}
	if (s) {
		s->dead = 1; /* Freed by the sweep after this frame. */
		sub_answered(c, s->filter, err, reason);
		return;
	}
	if (f->has_id && (p = parley__pubq_find_req(&c->pubs, f->id))) {
		if ((err == PARLEY_ERATELIMITED ||
		     err == PARLEY_EUNAVAILABLE) &&
		    c->opt[PARLEY_OPT_RETRY_THROTTLED])
			pub_throttled(c, p);
		else
			parley__pub_done(c, p, err, NULL, reason);
		return;
	}
	parley__report(c, err, reason, f->topic);
}

void parley__on_message(parley_client *c, const char *buf, size_t len)
{
	parley__frame f;
	char why[160];
	int rc = parley__codec_decode(buf, len, &f, why, sizeof(why));

	if (rc) {
		parley__report(
		    c, rc,
		    rc == PARLEY_ENOMEM ? "no memory to decode a frame" : why,
		    NULL);
		return;
	}
	switch (f.op) {
	case PARLEY__OP_MSG:
		dispatch(c, &f);
		break;
	case PARLEY__OP_OK:
		on_ok(c, &f);
		break;
	case PARLEY__OP_ERROR:
		on_error(c, &f);
		break;
	default: /* pong, presence: nothing to do. */
		break;
	}
	parley__codec_frame_free(&f);
	if (!c->cb_depth && !c->teardown)
		parley__subs_sweep(&c->subs);
}

/* Once a second while connected: a request unanswered for longer than
 * PARLEY_OPT_REQUEST_TIMEOUT_MS means the link is dead. */
static void tick_cb(uv_timer_t *t)
{
	parley_client *c = t->data;
	uint64_t now = parley__now(c), limit;
	uint64_t oldest = now;
	int pending = 0;
	char text[120];

	limit = (uint64_t)c->opt[PARLEY_OPT_REQUEST_TIMEOUT_MS];
	for (parley__sub *s = c->subs.head; s; s = s->next) {
		if (c->teardown || c->state != PARLEY_STATE_CONNECTED)
			break;
		if (!s->dead && s->retry && s->state == PARLEY__SUB_UNSENT)
			send_sub(c, s);
	}
	if (c->teardown)
		return;
	if (c->auth_id)
		pending = 1, oldest = c->auth_sent_ms;
	for (parley__sub *s = c->subs.head; s; s = s->next)
		if (!s->dead && s->state == PARLEY__SUB_SENT) {
			pending = 1;
			if (s->sent_ms < oldest)
				oldest = s->sent_ms;
		}
	for (parley__pub *p = c->pubs.head; p; p = p->next)
		if (p->sent) {
			pending = 1;
			if (p->sent_ms < oldest)
				oldest = p->sent_ms;
		}
	if (!pending) {
		uv_timer_stop(t);
		return;
	}
	if (now - oldest < limit)
		return;
	uv_timer_stop(t);
	snprintf(text, sizeof(text),
		 "the hub did not answer a request within %llu ms",
		 (unsigned long long)limit);
	parley__conn_close(c, PARLEY_ETIMEDOUT, text);
}

int parley_subscribe(parley_client *c, const char *filter, int last,
		     const char *since, parley_msg_cb cb, void *ud)
{
	parley__sub *s;

	if (!c || !cb || parley_topic_check(filter, 1) || last < -1 ||
	    (last >= 0 && since))
		return PARLEY_EINVAL;
	if (since && (!*since || strlen(since) > MAX_CURSOR_BYTES))
		return PARLEY_EINVAL;
	if (c->teardown)
		return PARLEY_ESTATE;
	if (parley__subs_find(&c->subs, filter))
		return PARLEY_EEXIST;
	s = parley__subs_add(&c->subs, filter, last, since, cb, ud);
	if (!s)
		return PARLEY_ENOMEM;
	if (c->state == PARLEY_STATE_CONNECTED)
		send_sub(c, s);
	return 0;
}

int parley_unsubscribe(parley_client *c, const char *filter)
{
	parley__sub *s;

	if (!c || !filter)
		return PARLEY_EINVAL;
	s = parley__subs_find(&c->subs, filter);
	if (!s)
		return PARLEY_ENOENT;
	if (s->state != PARLEY__SUB_UNSENT &&
	    c->state == PARLEY_STATE_CONNECTED)
		send_or_reset(c, parley__codec_unsub(++c->next_id, filter));
	drop_sub(c, s);
	return 0;
}

int parley_publish(parley_client *c, const char *topic, const char *body,
		   size_t len, int kind, parley_pub_cb cb, void *ud)
{
	struct json_t *j;
	parley__pub *p;
	int rc;

	if (!c || parley_topic_check(topic, 0))
		return PARLEY_EINVAL;
	if (c->teardown)
		return PARLEY_ESTATE;
	if (c->pubs.count >= (size_t)c->opt[PARLEY_OPT_MAX_QUEUED])
		return PARLEY_EQUEUEFULL;
	rc = parley__codec_body_new(body, len, kind, &j);
	if (rc)
		return rc;
	p = parley__pubq_push(&c->pubs, topic, j, cb, ud);
	if (!p)
		return PARLEY_ENOMEM;
	flush_pubs(c);
	return 0;
}

size_t parley_pending(const parley_client *c)
{
	return c ? c->pubs.count : 0;
}
