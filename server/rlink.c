/* rlink.c: the Redis link (rlink.h): two hiredis async connections driven
 * by our own small libuv adapter, a state machine with backoff, and the
 * subscription interests that survive reconnects. */
#include "rlink.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/sds.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "err.h"
#include "log.h"
#include "strmap.h"

#define container_of(ptr, type, field)                                         \
	((type *)((char *)(ptr)-offsetof(type, field)))

#define DEFAULT_BACKOFF_MIN_MS	   100
#define DEFAULT_BACKOFF_MAX_MS	   5000
#define DEFAULT_CONNECT_TIMEOUT_MS 2000
#define DEFAULT_MAX_PENDING	   100000
#define DEFAULT_REPLY_TIMEOUT_MS   5000

enum conn_kind { CONN_CMD = 0, CONN_SUB };

static const char *const kind_names[] = {"cmd", "sub"};

/* One of these per hiredis connection attempt (command or pub/sub). It
 * outlives its redisAsyncContext: freed only when its poll handle has
 * closed, so it stays valid for the rest of any call stack that saw it. */
struct rconn {
	rlink_t *link;	       /* Owner; freed after us. */
	enum conn_kind kind;   /* Which of the two connections. */
	redisAsyncContext *ac; /* NULL once hiredis has freed it. */
	uv_poll_t poll;	       /* Watches ac's socket. */
	int events;	       /* Mask the poll runs with (0: stopped). */
	int want_read;	       /* hiredis asked to read. */
	int want_writable;     /* Waiting for UV_WRITABLE (connect, or a
				  full socket buffer). */
	int flush;	       /* Has bytes for the end-of-pass flush. */
	int writing;	       /* Inside our redisAsyncHandleWrite. */
	int connected;	       /* hiredis reported the connect. */
	int ready;	       /* cmd: PING answered; sub: interests
				  confirmed. */
	unsigned acks;	       /* sub: confirmations still due from the
				  re-sent interests. */
	int busy;	       /* Depth of our calls into hiredis. */
	int drop;	       /* Free ac when busy falls to 0. */
};

/* One reference-counted interest in a channel or pattern. */
struct interest {
	unsigned long refs; /* rlink_subscribe calls not yet undone. */
};

/* One command waiting for its reply, in the link's list from oldest to
 * newest (the order Redis answers in). */
struct pending {
	rlink_t *link;	   /* Owner. */
	rlink_reply_fn cb; /* Caller's callback, or NULL. */
	void *ud;	   /* Its argument. */
	uint64_t sent;	   /* uv_now when queued. */
	int probe;	   /* Our idle PING: not the caller's, not counted. */
	struct pending *prev; /* Older neighbour, or NULL. */
	struct pending *next; /* Newer neighbour, or NULL. */
};

/* One of these per Redis server the daemon talks to (rlink_new). */
struct rlink {
	uv_loop_t *loop;	     /* Borrowed. */
	char *host;		     /* Server address (owned). */
	int port;		     /* Server port. */
	struct rlink_opts opts;	     /* Effective tunables. */
	rlink_state_fn on_state;     /* Caller's state callback, or NULL. */
	rlink_message_fn on_message; /* Caller's message callback, or NULL. */
	void *ud;		     /* Argument of both callbacks. */
	enum rlink_state state;	     /* Changed by set_state only. */
	char last_error[200];	     /* Reason of the last DOWN. */
	char connect_error[200];     /* Why the last attempt failed at once. */
	struct rconn *cmd;	     /* Command connection, or NULL. */
	struct rconn *sub;	     /* Pub/sub connection, or NULL. */
	uv_timer_t timer;	     /* Connect deadline while CONNECTING,
					reply watchdog while UP, retry delay
					while DOWN. */
	struct pending *oldest;	     /* Commands awaiting replies... */
	struct pending *newest;	     /* ... in the order sent. */
	uv_check_t check;	     /* Flushes writes at the end of a pass. */
	uv_prepare_t prepare;	     /* Flushes writes queued after the check
					(timers, close callbacks) before the
					loop blocks. */
	strmap_t *channels;	     /* Channel -> struct interest. */
	strmap_t *patterns;	     /* Pattern -> struct interest. */
	unsigned attempt;	     /* Failures since the last UP. */
	uint64_t retry_ms;	     /* Delay before the next attempt. */
	struct rlink_stats st;	     /* Counters. */
	unsigned handles;	     /* Open uv handles, conns' included. */
	int closing;		     /* rlink_close was called. */
	rlink_flush_fn before_flush; /* rlink_want_flush's hook, or NULL. */
	void *before_flush_ud;	     /* Its argument. */
	void (*done)(void *);	     /* rlink_close's callback, or NULL. */
	void *done_ud;		     /* Its argument. */
	char *fmt;		     /* Scratch for formatting commands. */
	size_t fmt_cap;		     /* Its size. */
};

static void link_down(rlink_t *l, const char *why);
static void link_try_free(rlink_t *l);
static void on_poll(uv_poll_t *h, int status, int events);

/* ---- state ---- */

static const char *const state_names[] = {"connecting", "up", "down"};

const char *rlink_state_name(enum rlink_state s)
{
	return (unsigned)s < 3 ? state_names[s] : "unknown";
}

enum rlink_state rlink_state(const rlink_t *l)
{
	return l->state;
}

const char *rlink_last_error(const rlink_t *l)
{
	return l->last_error;
}

void rlink_stats(const rlink_t *l, struct rlink_stats *out)
{
	*out = l->st;
}

/* The one place the state changes: logs the transition and tells the
 * caller (who may call rlink_close from on_state: callers re-check
 * l->closing). */
static void set_state(rlink_t *l, enum rlink_state s, const char *why)
{
	enum rlink_state old = l->state;

	if (old == s)
		return;
	l->state = s;
	if (s == RLINK_DOWN) {
		snprintf(l->last_error, sizeof l->last_error, "%s",
			 why ? why : "");
		log_warn("redis_link_state",
			 "host=%s port=%d from=%s to=%s why=%s attempt=%u "
			 "retry_ms=%llu",
			 log_str(l->host), l->port, rlink_state_name(old),
			 rlink_state_name(s), log_str(why), l->attempt,
			 (unsigned long long)l->retry_ms);
	} else {
		log_info("redis_link_state", "host=%s port=%d from=%s to=%s",
			 log_str(l->host), l->port, rlink_state_name(old),
			 rlink_state_name(s));
	}
	if (l->on_state && !l->closing)
		l->on_state(l, s, l->ud);
}

/* Returns the next retry delay: exponential in the failures since the
 * last UP, capped, with full jitter above the floor so that many
 * instances losing the same server do not come back in step. */
static uint64_t backoff_delay(rlink_t *l)
{
	uint64_t lo = l->opts.backoff_min_ms, cap = lo;
	uint32_t r = 0;

	for (unsigned i = 0; i < l->attempt && cap < l->opts.backoff_max_ms;
	     i++)
		cap *= 2;
	if (cap > l->opts.backoff_max_ms)
		cap = l->opts.backoff_max_ms;
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
		r = (uint32_t)uv_hrtime();
	l->attempt++;
	return cap > lo ? lo + r % (cap - lo + 1) : lo;
}

/* ---- connections and the libuv adapter ---- */

static int conn_attached(const struct rconn *c)
{
	return c->link->cmd == c || c->link->sub == c;
}

static void on_conn_closed(uv_handle_t *h)
{
	struct rconn *c = container_of(h, struct rconn, poll);
	rlink_t *l = c->link;

	free(c);
	l->handles--;
	link_try_free(l);
}

/* Restarts the poll only when the wanted mask really changes: each
 * uv_poll_start costs epoll_ctl calls, and hiredis asks to read after
 * every read and every write. */
static void conn_update_poll(struct rconn *c)
{
	int want = (c->want_read ? UV_READABLE : 0) |
		   (c->want_writable ? UV_WRITABLE : 0);

	if (!c->ac || want == c->events)
		return;
	c->link->st.poll_restarts++;
	if (want)
		uv_poll_start(&c->poll, want, on_poll);
	else
		uv_poll_stop(&c->poll);
	c->events = want;
}

/* Frees the hiredis context now or, when we are inside a hiredis call on
 * it outside a reply callback (where freeing would pull the context from
 * under hiredis), once that call returns. Inside a reply callback
 * hiredis itself defers the free. Detaches the connection from the link
 * either way. Pending callbacks get NULL. */
static void conn_drop(struct rconn *c)
{
	rlink_t *l = c->link;

	if (l->cmd == c)
		l->cmd = NULL;
	if (l->sub == c)
		l->sub = NULL;
	if (!c->ac)
		return;
	if (c->busy && !(c->ac->c.flags & REDIS_IN_CALLBACK)) {
		c->drop = 1;
		return;
	}
	redisAsyncFree(c->ac);
}

static void conn_enter(struct rconn *c)
{
	c->busy++;
}

static void conn_leave(struct rconn *c)
{
	if (--c->busy == 0 && c->drop && c->ac) {
		c->drop = 0;
		redisAsyncFree(c->ac);
	}
}

/* A connection failed: the link goes down, unless the connection was
 * already dropped on purpose. */
static void conn_lost(struct rconn *c, const char *why)
{
	char buf[256];

	if (!conn_attached(c))
		return;
	snprintf(buf, sizeof buf, "%s: %s", kind_names[c->kind],
		 why ? why : "connection lost");
	link_down(c->link, buf);
}

static const char *ac_error(const redisAsyncContext *ac)
{
	return ac && ac->err && ac->errstr ? ac->errstr : "connection closed";
}

/* Calls redisAsyncHandleWrite, counting the write(2) it makes. */
static void conn_write(struct rconn *c)
{
	if ((c->ac->c.flags & REDIS_CONNECTED) && sdslen(c->ac->c.obuf) > 0)
		c->link->st.writes++;
	c->writing = 1;
	redisAsyncHandleWrite(c->ac);
	c->writing = 0;
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct rconn *c = container_of(h, struct rconn, poll);

	if (!c->ac)
		return;
	conn_enter(c);
	if (status < 0) {
		/* libuv has stopped the poll (it reports POLLERR as
		 * UV_EBADF). Let hiredis find the socket's real error
		 * (SO_ERROR while connecting, else the read's errno) and
		 * free the context. */
		c->events = 0;
		redisAsyncHandleRead(c->ac);
		if (c->ac) {
			conn_lost(c, uv_strerror(status));
			conn_drop(c);
		}
	} else {
		if (events & UV_READABLE)
			redisAsyncHandleRead(c->ac);
		if (c->ac && (events & UV_WRITABLE))
			conn_write(c);
	}
	conn_leave(c);
}

/* Writes what commands queued on one connection. */
static void conn_flush(struct rconn *c)
{
	if (!c->ac || !c->flush)
		return;
	c->flush = 0;
	conn_enter(c);
	conn_write(c);
	conn_leave(c);
}

/* Flushes both connections; the hooks are stopped when nothing is left,
 * so an idle link costs nothing per loop pass. */
static void link_flush(rlink_t *l)
{
	rlink_flush_fn fn = l->before_flush;

	if (fn && !l->closing) {
		/* Cleared first: the hook may ask again. */
		l->before_flush = NULL;
		fn(l, l->before_flush_ud);
	}
	if (l->cmd)
		conn_flush(l->cmd);
	if (l->sub)
		conn_flush(l->sub);
	if (l->closing)
		return;
	if ((!l->cmd || !l->cmd->flush) && (!l->sub || !l->sub->flush) &&
	    !l->before_flush) {
		uv_check_stop(&l->check);
		uv_prepare_stop(&l->prepare);
	}
}

static void on_check(uv_check_t *h)
{
	link_flush(container_of(h, rlink_t, check));
}

static void on_prepare(uv_prepare_t *h)
{
	link_flush(container_of(h, rlink_t, prepare));
}

static void ev_add_read(void *privdata)
{
	struct rconn *c = privdata;

	c->want_read = 1;
	conn_update_poll(c);
}

static void ev_del_read(void *privdata)
{
	struct rconn *c = privdata;

	c->want_read = 0;
	conn_update_poll(c);
}

/* hiredis calls this for every command. Until the connect completes, and
 * when a write left bytes behind (socket buffer full), we wait for
 * UV_WRITABLE; otherwise the write waits for the end-of-pass flush so
 * that the commands of one pass share one write(2). */
static void ev_add_write(void *privdata)
{
	struct rconn *c = privdata;
	rlink_t *l = c->link;

	if (!c->ac || c->want_writable)
		return;
	if (!c->connected || c->writing) {
		c->want_writable = 1;
		conn_update_poll(c);
		return;
	}
	if (c->flush || l->closing || !conn_attached(c))
		return;
	c->flush = 1;
	uv_check_start(&l->check, on_check);
	uv_prepare_start(&l->prepare, on_prepare);
}

static void ev_del_write(void *privdata)
{
	struct rconn *c = privdata;

	c->flush = 0;
	if (c->want_writable) {
		c->want_writable = 0;
		conn_update_poll(c);
	}
}

/* hiredis is freeing the context (error, EOF, failed connect or our own
 * redisAsyncFree); the socket is still open, so the poll can be closed
 * safely. */
static void ev_cleanup(void *privdata)
{
	struct rconn *c = privdata;
	redisAsyncContext *ac = c->ac;

	c->ac = NULL;
	c->flush = 0;
	uv_close((uv_handle_t *)&c->poll, on_conn_closed);
	log_debug("redis_conn_closed", "host=%s port=%d conn=%s why=%s",
		  log_str(c->link->host), c->link->port, kind_names[c->kind],
		  log_str(ac_error(ac)));
	conn_lost(c, ac_error(ac));
}

static void on_timer(uv_timer_t *t);

/* How often the watchdog looks: a reply late by more than the timeout is
 * caught within a quarter of it. */
static uint64_t watchdog_period(const rlink_t *l)
{
	uint64_t p = l->opts.reply_timeout_ms / 4;

	return p ? p : 1;
}

static void check_up(rlink_t *l)
{
	if (l->closing || l->state != RLINK_CONNECTING)
		return;
	if (!l->cmd || !l->cmd->ready || !l->sub || !l->sub->ready)
		return;
	l->attempt = 0;
	/* From now on the timer watches for replies that never come. */
	uv_timer_start(&l->timer, on_timer, watchdog_period(l),
		       watchdog_period(l));
	set_state(l, RLINK_UP, NULL);
}

/* Reply to the PING sent on connect: the server speaks Redis. */
static void on_hello(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rconn *c = privdata;
	redisReply *r = reply;

	if (!r || !conn_attached(c))
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		conn_lost(c, r->str);
		return;
	}
	c->ready = 1;
	check_up(c->link);
}

static void deliver(rlink_t *l, const redisReply *channel,
		    const redisReply *pattern, const redisReply *data)
{
	if (channel->type != REDIS_REPLY_STRING ||
	    data->type != REDIS_REPLY_STRING ||
	    (pattern && pattern->type != REDIS_REPLY_STRING))
		return;
	/* Interest may have been dropped while Redis still sends. */
	if (pattern ? !strmap_get(l->patterns, pattern->str)
		    : !strmap_get(l->channels, channel->str))
		return;
	l->st.messages++;
	if (l->on_message)
		l->on_message(l, channel->str, pattern ? pattern->str : NULL,
			      data->str, data->len, l->ud);
}

/* Every reply on the pub/sub connection: messages and the server's
 * confirmations of (un)subscriptions. hiredis may hand us a reply with a
 * stale callback, so everything is checked here. */
static void on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rconn *c = privdata;
	rlink_t *l = c->link;
	redisReply *r = reply, **e;
	const char *kind;

	if (!r || !conn_attached(c) || l->closing)
		return;
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	e = r->element;
	kind = e[0]->str;
	if (!strcasecmp(kind, "message")) {
		deliver(l, e[1], NULL, e[2]);
	} else if (!strcasecmp(kind, "pmessage")) {
		if (r->elements >= 4)
			deliver(l, e[2], e[1], e[3]);
	} else if (e[2]->type == REDIS_REPLY_INTEGER) {
		/* (p)(un)subscribe: the count is the server's total. */
		l->st.server_subs = (uint64_t)e[2]->integer;
		/* Replies come in order, so the first acks answer the
		 * interests re-sent on connect. */
		if (c->acks && --c->acks == 0) {
			c->ready = 1;
			check_up(l);
		}
	}
}

/* Sends one SUBSCRIBE or PSUBSCRIBE naming every interest of map.
 * Returns the number of confirmations to expect. */
static unsigned send_interests(struct rconn *c, strmap_t *map, const char *verb)
{
	size_t n = strmap_count(map), i = 1, it = 0;
	const char **argv;
	const char *key;
	void *val;

	if (!n)
		return 0;
	argv = malloc((n + 1) * sizeof *argv);
	if (!argv)
		abort();
	argv[0] = verb;
	while (strmap_next(map, &it, &key, &val))
		argv[i++] = key;
	if (redisAsyncCommandArgv(c->ac, on_sub, c, (int)i, argv, NULL) !=
	    REDIS_OK)
		n = 0;
	free(argv);
	return (unsigned)n;
}

static void on_connect(const redisAsyncContext *cac, int status)
{
	struct rconn *c = cac->data;
	rlink_t *l = c->link;

	if (status != REDIS_OK || !conn_attached(c))
		return; /* hiredis frees it next; ev_cleanup reports. */
	c->connected = 1;
	if (c->kind == CONN_CMD) {
		redisAsyncCommand(c->ac, on_hello, c, "PING");
		return;
	}
	c->acks = send_interests(c, l->channels, "SUBSCRIBE");
	c->acks += send_interests(c, l->patterns, "PSUBSCRIBE");
	if (!c->acks) {
		c->ready = 1;
		check_up(l);
	}
}

/* Starts one non-blocking connect. Returns the connection, or NULL with
 * the reason in l->connect_error. */
static struct rconn *conn_new(rlink_t *l, enum conn_kind kind)
{
	redisAsyncContext *ac = redisAsyncConnect(l->host, l->port);
	struct rconn *c;
	int rc;

	if (!ac)
		abort();
	if (ac->err) {
		snprintf(l->connect_error, sizeof l->connect_error, "%s: %s",
			 kind_names[kind], ac->errstr);
		redisAsyncFree(ac);
		return NULL;
	}
	c = calloc(1, sizeof *c);
	if (!c)
		abort();
	rc = uv_poll_init(l->loop, &c->poll, ac->c.fd);
	if (rc) {
		snprintf(l->connect_error, sizeof l->connect_error, "%s: %s",
			 kind_names[kind], uv_strerror(rc));
		redisAsyncFree(ac);
		free(c);
		return NULL;
	}
	l->handles++;
	c->link = l;
	c->kind = kind;
	c->ac = ac;
	ac->data = c;
	ac->ev.data = c;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	/* Also asks to be told when the socket is writable: the connect. */
	redisAsyncSetConnectCallback(ac, on_connect);
	redisEnableKeepAlive(&ac->c);
	return c;
}

/* ---- link ---- */

static void send_probe(rlink_t *l);

static void start_connect(rlink_t *l)
{
	l->connect_error[0] = '\0';
	l->cmd = conn_new(l, CONN_CMD);
	if (l->cmd)
		l->sub = conn_new(l, CONN_SUB);
	/* An attempt that failed at once is reported from the timer, so no
	 * callback runs from inside rlink_new. */
	uv_timer_start(&l->timer, on_timer,
		       l->cmd && l->sub ? l->opts.connect_timeout_ms : 0, 0);
}

/* Takes the link DOWN: tells the caller, fails the pending commands, and
 * arms the retry. Idempotent. */
static void link_down(rlink_t *l, const char *why)
{
	uint64_t delay;

	if (l->closing || l->state == RLINK_DOWN)
		return;
	uv_timer_stop(&l->timer);
	delay = l->retry_ms = backoff_delay(l);
	l->st.server_subs = 0;
	set_state(l, RLINK_DOWN, why);
	if (l->closing)
		return;
	if (l->cmd)
		conn_drop(l->cmd);
	if (l->sub)
		conn_drop(l->sub);
	if (l->closing || l->state != RLINK_DOWN)
		return;
	uv_timer_start(&l->timer, on_timer, delay, 0);
}

/* Returns how long the oldest pending command has waited (there must be
 * one). */
static uint64_t reply_age(const rlink_t *l)
{
	return uv_now(l->loop) - l->oldest->sent;
}

static void on_timer(uv_timer_t *t)
{
	rlink_t *l = container_of(t, rlink_t, timer);

	if (l->state == RLINK_CONNECTING) {
		link_down(l, l->connect_error[0] ? l->connect_error
						 : "connect timed out");
	} else if (l->state == RLINK_DOWN) {
		l->st.reconnects++;
		set_state(l, RLINK_CONNECTING, NULL);
		if (!l->closing)
			start_connect(l);
	} else if (l->oldest) {
		/* UP: a server that stopped answering (frozen, or a path
		 * that silently drops packets) shows no socket error. */
		struct rconn *c = l->cmd;
		char why[64];

		if (reply_age(l) < l->opts.reply_timeout_ms || !c || !c->ac)
			return;
		/* Our own loop may have stalled with the replies already in
		 * the socket (timers run before I/O): read before judging. */
		conn_enter(c);
		redisAsyncHandleRead(c->ac);
		conn_leave(c);
		if (l->closing || l->state != RLINK_UP || !l->oldest ||
		    reply_age(l) < l->opts.reply_timeout_ms)
			return;
		snprintf(why, sizeof why, "cmd: no reply for %llu ms",
			 (unsigned long long)reply_age(l));
		link_down(l, why);
	} else {
		/* UP and idle: give the watchdog something to time. */
		send_probe(l);
	}
}

static void free_interests(strmap_t *m)
{
	size_t it = 0;
	const char *key;
	void *val;

	while (strmap_next(m, &it, &key, &val))
		free(val);
	strmap_free(m);
}

static void link_try_free(rlink_t *l)
{
	void (*done)(void *) = l->done;
	void *ud = l->done_ud;

	if (!l->closing || l->handles)
		return;
	free_interests(l->channels);
	free_interests(l->patterns);
	free(l->host);
	free(l->fmt);
	free(l);
	if (done)
		done(ud);
}

static void on_link_handle_closed(uv_handle_t *h)
{
	rlink_t *l = h->data;

	l->handles--;
	link_try_free(l);
}

rlink_t *rlink_new(uv_loop_t *loop, const char *host, int port,
		   const struct rlink_opts *opts, rlink_state_fn on_state,
		   rlink_message_fn on_message, void *ud)
{
	rlink_t *l;

	if (!host)
		return NULL;
	l = calloc(1, sizeof *l);
	if (!l)
		abort();
	l->loop = loop;
	l->host = strdup(host);
	if (!l->host)
		abort();
	l->port = port;
	if (opts)
		l->opts = *opts;
	if (!l->opts.backoff_min_ms)
		l->opts.backoff_min_ms = DEFAULT_BACKOFF_MIN_MS;
	if (!l->opts.backoff_max_ms)
		l->opts.backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
	if (l->opts.backoff_max_ms < l->opts.backoff_min_ms)
		l->opts.backoff_max_ms = l->opts.backoff_min_ms;
	if (!l->opts.connect_timeout_ms)
		l->opts.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	if (!l->opts.max_pending)
		l->opts.max_pending = DEFAULT_MAX_PENDING;
	if (!l->opts.reply_timeout_ms)
		l->opts.reply_timeout_ms = DEFAULT_REPLY_TIMEOUT_MS;
	l->on_state = on_state;
	l->on_message = on_message;
	l->ud = ud;
	l->channels = strmap_new();
	l->patterns = strmap_new();
	uv_timer_init(loop, &l->timer);
	uv_check_init(loop, &l->check);
	uv_prepare_init(loop, &l->prepare);
	l->timer.data = l->check.data = l->prepare.data = l;
	l->handles = 3;
	/* The initial state, not a transition: set_state is not involved. */
	l->state = RLINK_CONNECTING;
	log_info("redis_link_new", "host=%s port=%d state=%s", log_str(host),
		 port, rlink_state_name(l->state));
	start_connect(l);
	return l;
}

/* Commands that would switch the command connection into a mode where
 * replies no longer match commands one to one (pub/sub, MONITOR), or to a
 * protocol hiredis 0.14 cannot read (HELLO 3). */
static int is_mode_command(const char *name, size_t len)
{
	static const char *const bad[] = {
	    "subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
	    "punsubscribe", "sunsubscribe", "monitor",	  "hello"};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (len == strlen(bad[i]) && !strncasecmp(name, bad[i], len))
			return 1;
	return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct pending *p = privdata;
	rlink_t *l = p->link;

	if (p->prev)
		p->prev->next = p->next;
	else
		l->oldest = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		l->newest = p->prev;
	if (!p->probe) {
		l->st.pending--;
		if (reply)
			l->st.replies++;
		else
			l->st.failed++;
	}
	/* The connection is going away: be DOWN before the caller hears of
	 * it, so that it cannot queue more. */
	if (!reply)
		conn_lost(ac->data, ac_error(ac));
	if (p->cb)
		p->cb(l, reply, p->ud);
	free(p);
}

/* Writes v in decimal then CRLF at d; returns the end. */
static char *put_len_crlf(char *d, size_t v)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*d++ = tmp[--n];
	*d++ = '\r';
	*d++ = '\n';
	return d;
}

/* Formats argv as a RESP array of bulk strings into l's scratch buffer;
 * returns its length. hiredis's own formatter builds each argument's
 * header with sdscatfmt into a new string: ~5% of a cluster instance
 * storing a batch of 64 messages (seven arguments each). The text is
 * NUL-terminated like hiredis's: redisAsyncFormattedCommand reads the
 * command name with strchr. */
static size_t format_command(rlink_t *l, int argc, const char **argv,
			     const size_t *argvlen)
{
	size_t need = 17; /* "*<argc>\r\n" and the NUL. */
	char *d;

	for (int i = 0; i < argc; i++)
		need += 26 + (argvlen ? argvlen[i] : strlen(argv[i]));
	if (need > l->fmt_cap) {
		size_t cap = l->fmt_cap ? l->fmt_cap : 4096;
		char *grown;

		while (cap < need)
			cap *= 2;
		grown = realloc(l->fmt, cap);
		if (!grown)
			abort(); /* The daemon may abort on out-of-memory. */
		l->fmt = grown;
		l->fmt_cap = cap;
	}
	d = l->fmt;
	*d++ = '*';
	d = put_len_crlf(d, (size_t)argc);
	for (int i = 0; i < argc; i++) {
		size_t n = argvlen ? argvlen[i] : strlen(argv[i]);

		*d++ = '$';
		d = put_len_crlf(d, n);
		memcpy(d, argv[i], n);
		d += n;
		*d++ = '\r';
		*d++ = '\n';
	}
	*d = 0;
	return (size_t)(d - l->fmt);
}

/* Queues one command on the command connection, which must be up.
 * Returns 0 or REDIS_ERR (and then nothing was queued). */
static int send_command(rlink_t *l, struct pending *p, int argc,
			const char **argv, const size_t *argvlen)
{
	size_t len = format_command(l, argc, argv, argvlen);

	p->link = l;
	p->sent = uv_now(l->loop);
	if (redisAsyncFormattedCommand(l->cmd->ac, on_reply, p, l->fmt, len) !=
	    REDIS_OK)
		return REDIS_ERR;
	p->next = NULL;
	p->prev = l->newest;
	if (l->newest)
		l->newest->next = p;
	else
		l->oldest = p;
	l->newest = p;
	return 0;
}

static void send_probe(rlink_t *l)
{
	const char *argv[1] = {"PING"};
	struct pending *p;

	if (!l->cmd || !l->cmd->ac)
		return;
	p = calloc(1, sizeof *p);
	if (!p)
		abort();
	p->probe = 1;
	if (send_command(l, p, 1, argv, NULL))
		free(p);
}

int rlink_commandv(rlink_t *l, rlink_reply_fn cb, void *ud, int argc,
		   const char **argv, const size_t *argvlen)
{
	struct pending *p;

	if (argc < 1 || !argv || !argv[0])
		return PE_BAD_REQUEST;
	if (is_mode_command(argv[0], argvlen ? argvlen[0] : strlen(argv[0])))
		return PE_BAD_REQUEST;
	if (l->closing || l->state != RLINK_UP || !l->cmd || !l->cmd->ac)
		return PE_UNAVAILABLE;
	if (l->st.pending >= l->opts.max_pending)
		return PE_TOO_MANY;
	p = calloc(1, sizeof *p);
	if (!p)
		abort();
	p->cb = cb;
	p->ud = ud;
	if (send_command(l, p, argc, argv, argvlen)) {
		free(p);
		return PE_UNAVAILABLE;
	}
	l->st.commands++;
	l->st.pending++;
	return 0;
}

/* Sends (P)SUBSCRIBE or (P)UNSUBSCRIBE for one name when the pub/sub
 * connection can take it; otherwise the next connect sends the table. */
static void send_sub(rlink_t *l, const char *verb, const char *name)
{
	const char *argv[2] = {verb, name};

	if (!l->sub || !l->sub->ac || !l->sub->connected)
		return;
	/* An error here means hiredis is tearing the connection down; the
	 * reconnect will send the table. */
	(void)redisAsyncCommandArgv(l->sub->ac, on_sub, l->sub, 2, argv, NULL);
}

int rlink_subscribe(rlink_t *l, const char *channel, int is_pattern)
{
	strmap_t *m = is_pattern ? l->patterns : l->channels;
	struct interest *in;

	if (!channel || !*channel)
		return PE_BAD_REQUEST;
	in = strmap_get(m, channel);
	if (in) {
		in->refs++;
		return 0;
	}
	in = malloc(sizeof *in);
	if (!in)
		abort();
	in->refs = 1;
	strmap_put(m, channel, in, NULL);
	if (!l->closing)
		send_sub(l, is_pattern ? "PSUBSCRIBE" : "SUBSCRIBE", channel);
	return 0;
}

void rlink_unsubscribe(rlink_t *l, const char *channel, int is_pattern)
{
	strmap_t *m = is_pattern ? l->patterns : l->channels;
	struct interest *in;

	if (!channel)
		return;
	in = strmap_get(m, channel);
	if (!in || --in->refs)
		return;
	free(strmap_del(m, channel));
	if (!l->closing)
		send_sub(l, is_pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE",
			 channel);
}

void rlink_want_flush(rlink_t *l, rlink_flush_fn fn, void *ud)
{
	if (l->closing)
		return;
	l->before_flush = fn;
	l->before_flush_ud = ud;
	uv_check_start(&l->check, on_check);
	uv_prepare_start(&l->prepare, on_prepare);
}

void rlink_close(rlink_t *l, void (*done)(void *ud), void *ud)
{
	if (l->closing)
		return;
	l->closing = 1;
	l->done = done;
	l->done_ud = ud;
	log_info("redis_link_close", "host=%s port=%d state=%s pending=%llu",
		 log_str(l->host), l->port, rlink_state_name(l->state),
		 (unsigned long long)l->st.pending);
	if (l->cmd)
		conn_drop(l->cmd);
	if (l->sub)
		conn_drop(l->sub);
	uv_close((uv_handle_t *)&l->timer, on_link_handle_closed);
	uv_close((uv_handle_t *)&l->check, on_link_handle_closed);
	uv_close((uv_handle_t *)&l->prepare, on_link_handle_closed);
}
