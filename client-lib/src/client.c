/* client.c: a client's life: creation, options, the state machine with its
 * one setter, connecting and reconnecting with backoff, running its own
 * loop, and the staged teardown that lets lws and libuv close their
 * handles before memory is freed. The protocol itself is in session.c. */
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "session.h"

/* How long teardown waits for lws to close its libuv handles before it
 * gives up on them (leaking the context rather than freeing it early). */
#define LWS_CLOSE_WAIT_MS 5000

static const char *const state_names[] = {
    [PARLEY_STATE_IDLE] = "idle",
    [PARLEY_STATE_CONNECTING] = "connecting",
    [PARLEY_STATE_AUTHENTICATING] = "authenticating",
    [PARLEY_STATE_CONNECTED] = "connected",
    [PARLEY_STATE_WAITING] = "waiting",
    [PARLEY_STATE_CLOSED] = "closed",
};

const char *parley_version(void)
{
	return PARLEY_VERSION_STRING;
}

const char *parley_state_name(int state)
{
	if (state < 0 || state > PARLEY_STATE_CLOSED)
		return "unknown";
	return state_names[state];
}

uint64_t parley__now(const parley_client *c)
{
	return uv_now(c->loop);
}

void parley__report(parley_client *c, int err, const char *text,
		    const char *topic)
{
	if (!c->on_error || c->teardown)
		return;
	c->cb_depth++;
	c->on_error(c, err, text ? text : parley_strerror(err), topic,
		    c->cb_ud);
	c->cb_depth--;
}

void parley__set_state(parley_client *c, int state, int err)
{
	if (err || state == PARLEY_STATE_CLOSED)
		c->last_error = err;
	if (state == c->state)
		return;
	c->state = state;
	if (state != PARLEY_STATE_CONNECTED) {
		free(c->user);
		c->user = NULL;
	}
	if (state == PARLEY_STATE_CLOSED && c->owns_loop && c->running)
		uv_stop(c->loop);
	if (c->on_state && !c->teardown) {
		c->cb_depth++;
		c->on_state(c, state, c->cb_ud);
		c->cb_depth--;
	}
}

static void pump(uv_timer_t *t);
static void idle_cb(uv_idle_t *h);

/* Starts the wake timer, which runs pump() on the next loop pass. */
static void wake(parley_client *c)
{
	if (c->teardown < PARLEY__TD_HANDLES)
		uv_timer_start(&c->wake_timer, pump, 0, 0);
}

/* Starts one connection attempt (from a loop callback, never from an API
 * call, so that application callbacks never run inside the API). */
static void start_attempt(parley_client *c)
{
	int rc;

	if (!c->want_connection || c->teardown || c->conn.wsi)
		return;
	parley__set_state(c, PARLEY_STATE_CONNECTING, 0);
	if (c->teardown || !c->want_connection)
		return;
	rc = parley__conn_open(c);
	if (rc)
		parley__on_closed(c, rc, "cannot start a connection");
}

static void retry_cb(uv_timer_t *t)
{
	start_attempt(t->data);
}

/* Fails every queued publish with err (after a final failure). */
static void fail_publishes(parley_client *c, int err, const char *text)
{
	while (c->pubs.head && !c->teardown)
		parley__pub_done(c, c->pubs.head, err, NULL, text);
}

/* Gives up: the client stops with err, failing queued publishes. */
static void give_up(parley_client *c, int err, const char *text)
{
	c->want_connection = 0;
	uv_timer_stop(&c->retry_timer);
	c->last_error = err;
	fail_publishes(c, err, text);
	if (!c->teardown)
		parley__set_state(c, PARLEY_STATE_CLOSED, err);
}

void parley__on_closed(parley_client *c, int err, const char *text)
{
	long attempts = c->opt[PARLEY_OPT_CONNECT_ATTEMPTS];
	uint64_t delay;

	c->auth_id = 0;
	uv_timer_stop(&c->tick_timer);
	if (c->teardown)
		return;
	parley__session_reset(c);
	if (c->teardown)
		return;
	if (!c->want_connection) {
		parley__set_state(c, PARLEY_STATE_CLOSED, 0);
		return;
	}
	parley__report(c, err, text, NULL);
	if (c->teardown || !c->want_connection) {
		if (!c->teardown)
			parley__set_state(c, PARLEY_STATE_CLOSED, 0);
		return;
	}
	c->attempts++;
	if (err == PARLEY_EAUTH) {
		give_up(c, err, text);
	} else if (!c->ever_connected && attempts > 0 &&
		   c->attempts >= attempts) {
		give_up(c, err, text);
	} else if (c->ever_connected && !c->opt[PARLEY_OPT_RECONNECT]) {
		give_up(c, err, text);
	} else {
		delay = parley__backoff_next(&c->backoff);
		parley__set_state(c, PARLEY_STATE_WAITING, err);
		if (!c->teardown && c->want_connection)
			uv_timer_start(&c->retry_timer, retry_cb, delay, 0);
	}
}

/* Closes one of the client's own handles; the last one ends teardown. */
static void handle_closed(uv_handle_t *h)
{
	parley_client *c = h->data;

	if (--c->handles_open > 0)
		return;
	c->teardown = PARLEY__TD_DONE;
	if (!c->owns_loop)
		parley__client_release(c);
}

/* uv_walk visitor: notes whether a handle of the lws context is still on
 * the loop (lws's own handles carry the context as their data; they close
 * only after every connection's handle has closed). */
static void find_lws_handle(uv_handle_t *h, void *arg)
{
	parley_client *c = arg;

	if (h->data == (void *)c->ctx)
		c->lws_left = 1;
}

/* Moves teardown on as far as it can go now. */
static void teardown_step(parley_client *c)
{
	if (c->teardown == PARLEY__TD_REQUESTED) {
		uv_timer_stop(&c->retry_timer);
		uv_timer_stop(&c->tick_timer);
		uv_timer_stop(&c->pace_timer);
		if (c->ctx) {
			c->teardown = PARLEY__TD_LWS;
			c->teardown_started = parley__now(c);
			/* First call: lws closes its connections and starts
			 * closing its libuv handles. */
			lws_context_destroy(c->ctx);
			uv_idle_start(&c->teardown_idle, idle_cb);
			return;
		}
		c->teardown = PARLEY__TD_HANDLES;
	}
	if (c->teardown == PARLEY__TD_LWS) {
		c->lws_left = 0;
		uv_walk(c->loop, find_lws_handle, c);
		if (c->lws_left &&
		    parley__now(c) - c->teardown_started < LWS_CLOSE_WAIT_MS)
			return;
		/* Second call: every lws handle is closed, so lws can free
		 * the context (freeing it earlier would leave libuv with
		 * pointers into freed memory; past the wait it is leaked). */
		if (!c->lws_left)
			lws_context_destroy(c->ctx);
		uv_idle_stop(&c->teardown_idle);
		c->ctx = NULL;
		c->teardown = PARLEY__TD_HANDLES;
	}
	if (c->teardown == PARLEY__TD_HANDLES && !c->closing_handles) {
		c->closing_handles = 1;
		uv_close((uv_handle_t *)&c->retry_timer, handle_closed);
		uv_close((uv_handle_t *)&c->tick_timer, handle_closed);
		uv_close((uv_handle_t *)&c->wake_timer, handle_closed);
		uv_close((uv_handle_t *)&c->run_timer, handle_closed);
		uv_close((uv_handle_t *)&c->pace_timer, handle_closed);
		uv_close((uv_handle_t *)&c->teardown_idle, handle_closed);
	}
}

static void idle_cb(uv_idle_t *h)
{
	teardown_step(h->data);
}

/* Deferred work: teardown, and what parley_disconnect asked for. */
static void pump(uv_timer_t *t)
{
	parley_client *c = t->data;

	if (c->teardown) {
		teardown_step(c);
		return;
	}
	if (c->cb_depth == 0)
		parley__subs_sweep(&c->subs);
	if (c->want_connection) {
		if (!c->conn.wsi && c->state != PARLEY_STATE_WAITING)
			start_attempt(c);
		return;
	}
	if (c->conn.wsi) {
		parley__conn_close(c, 0, "closed by the application");
		return;
	}
	uv_timer_stop(&c->retry_timer);
	if (c->state != PARLEY_STATE_IDLE)
		parley__set_state(c, PARLEY_STATE_CLOSED, 0);
}

static void noop_cb(uv_timer_t *t)
{
	(void)t;
}

/* Quiets lws's own logging once per process: the library reports through
 * its callbacks. PARLEY_LWS_LOG=<lws level bitmask> turns it back on. */
static void quiet_lws(void)
{
	static int done;
	const char *env = getenv("PARLEY_LWS_LOG");

	if (done)
		return;
	done = 1;
	lws_set_log_level(env ? atoi(env) : 0, NULL);
}

int parley_client_new(parley_client **out, struct uv_loop_s *loop)
{
	parley_client *c;

	if (!out)
		return PARLEY_EINVAL;
	*out = NULL;
	quiet_lws();
	c = calloc(1, sizeof(*c));
	if (!c)
		return PARLEY_ENOMEM;
	if (loop) {
		c->loop = loop;
	} else {
		if (uv_loop_init(&c->own_loop)) {
			free(c);
			return PARLEY_ENOMEM;
		}
		c->loop = &c->own_loop;
		c->owns_loop = 1;
	}
	parley__options_defaults(c->opt);
	uv_timer_init(c->loop, &c->retry_timer);
	uv_timer_init(c->loop, &c->tick_timer);
	uv_timer_init(c->loop, &c->wake_timer);
	uv_timer_init(c->loop, &c->run_timer);
	uv_timer_init(c->loop, &c->pace_timer);
	uv_idle_init(c->loop, &c->teardown_idle);
	c->retry_timer.data = c->tick_timer.data = c->wake_timer.data = c;
	c->run_timer.data = c->teardown_idle.data = c->pace_timer.data = c;
	c->handles_open = 6;
	*out = c;
	return 0;
}

void parley__client_release(parley_client *c)
{
	parley__subs_clear(&c->subs);
	while (c->pubs.head)
		parley__pubq_remove(&c->pubs, c->pubs.head);
	parley__conn_reset(c);
	parley__url_free(&c->url);
	free(c->token);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->user);
	free(c->retry);
	if (c->owns_loop)
		uv_loop_close(&c->own_loop);
	free(c);
}

void parley_client_free(parley_client *c)
{
	if (!c || c->teardown)
		return;
	c->teardown = PARLEY__TD_REQUESTED;
	c->want_connection = 0;
	/* Every subscription ends now; pending publishes are canceled. */
	for (parley__sub *s = c->subs.head; s; s = s->next)
		s->dead = 1;
	while (c->pubs.head) {
		parley__pub *p = c->pubs.head;
		parley_pub_cb cb = p->cb;
		void *ud = p->ud;

		parley__pubq_remove(&c->pubs, p);
		if (cb) {
			c->cb_depth++;
			cb(c, PARLEY_ECANCELED, NULL,
			   parley_strerror(PARLEY_ECANCELED), ud);
			c->cb_depth--;
		}
	}
	uv_timer_start(&c->wake_timer, pump, 0, 0);
	if (c->owns_loop && !c->running && c->cb_depth == 0) {
		while (c->teardown != PARLEY__TD_DONE)
			uv_run(c->loop, UV_RUN_ONCE);
		parley__client_release(c);
	}
}

struct uv_loop_s *parley_client_loop(const parley_client *c)
{
	return c ? c->loop : NULL;
}

int parley_set_option(parley_client *c, int option, long value)
{
	if (!c || parley__options_check(option, value))
		return PARLEY_EINVAL;
	if (c->ctx || c->teardown)
		return PARLEY_ESTATE;
	c->opt[option] = value;
	return 0;
}

long parley_get_option(const parley_client *c, int option)
{
	if (!c || option <= 0 || option >= PARLEY__OPT_COUNT)
		return PARLEY_EINVAL;
	return c->opt[option];
}

/* Replaces *slot with a copy of s (NULL allowed). Returns 0 or
 * PARLEY_ENOMEM. */
static int set_string(char **slot, const char *s)
{
	char *copy = s ? strdup(s) : NULL;

	if (s && !copy)
		return PARLEY_ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}

int parley_set_token(parley_client *c, const char *token)
{
	if (!c || (token && !*token))
		return PARLEY_EINVAL;
	if (c->teardown ||
	    (c->state != PARLEY_STATE_IDLE &&
	     c->state != PARLEY_STATE_CLOSED) ||
	    c->want_connection)
		return PARLEY_ESTATE;
	return set_string(&c->token, token);
}

int parley_set_tls(parley_client *c, const char *ca_file, const char *cert_file,
		   const char *key_file)
{
	char *ca = NULL, *cert = NULL, *key = NULL;

	if (!c || !cert_file != !key_file)
		return PARLEY_EINVAL;
	if (c->ctx || c->teardown)
		return PARLEY_ESTATE;
	if ((ca_file && access(ca_file, R_OK)) ||
	    (cert_file && access(cert_file, R_OK)) ||
	    (key_file && access(key_file, R_OK)))
		return PARLEY_EINVAL;
	if (set_string(&ca, ca_file) || set_string(&cert, cert_file) ||
	    set_string(&key, key_file)) {
		free(ca);
		free(cert);
		free(key);
		return PARLEY_ENOMEM;
	}
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	c->ca_file = ca;
	c->cert_file = cert;
	c->key_file = key;
	return 0;
}

int parley_set_callbacks(parley_client *c, parley_state_cb on_state,
			 parley_error_cb on_error, void *ud)
{
	if (!c)
		return PARLEY_EINVAL;
	c->on_state = on_state;
	c->on_error = on_error;
	c->cb_ud = ud;
	return 0;
}

int parley_set_sub_callback(parley_client *c, parley_sub_cb cb, void *ud)
{
	if (!c)
		return PARLEY_EINVAL;
	c->on_sub = cb;
	c->sub_ud = ud;
	return 0;
}

int parley_connect(parley_client *c, const char *url)
{
	parley__url u;
	int rc;

	if (!c || !url)
		return PARLEY_EINVAL;
	if (c->teardown || c->want_connection ||
	    (c->state != PARLEY_STATE_IDLE && c->state != PARLEY_STATE_CLOSED))
		return PARLEY_ESTATE;
	rc = parley__url_parse(url, &u);
	if (rc)
		return rc;
	if (!c->ctx) {
		rc = parley__conn_context(c);
		if (rc) {
			parley__url_free(&u);
			return rc;
		}
	}
	parley__url_free(&c->url);
	c->url = u;
	c->want_connection = 1;
	c->ever_connected = 0;
	c->attempts = 0;
	c->last_error = 0;
	parley__backoff_init(&c->backoff,
			     (uint64_t)c->opt[PARLEY_OPT_BACKOFF_MIN_MS],
			     (uint64_t)c->opt[PARLEY_OPT_BACKOFF_MAX_MS],
			     (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32 ^
				 (uint64_t)(uintptr_t)c);
	wake(c);
	return 0;
}

int parley_disconnect(parley_client *c)
{
	if (!c)
		return PARLEY_EINVAL;
	if (c->teardown)
		return PARLEY_ESTATE;
	c->want_connection = 0;
	wake(c);
	return 0;
}

int parley_state(const parley_client *c)
{
	return c ? c->state : PARLEY_EINVAL;
}

int parley_last_error(const parley_client *c)
{
	return c ? c->last_error : PARLEY_EINVAL;
}

const char *parley_user(const parley_client *c)
{
	return c ? c->user : NULL;
}

/* Returns 1 while parley_run has something to wait for. */
static int has_work(const parley_client *c)
{
	if (c->teardown)
		return c->teardown != PARLEY__TD_DONE;
	return c->want_connection || (c->state != PARLEY_STATE_IDLE &&
				      c->state != PARLEY_STATE_CLOSED);
}

/* After a run: completes a release asked for inside a callback. Returns 1
 * when c is gone. */
static int finish_run(parley_client *c)
{
	if (!c->teardown)
		return 0;
	while (c->teardown != PARLEY__TD_DONE)
		uv_run(c->loop, UV_RUN_ONCE);
	parley__client_release(c);
	return 1;
}

int parley_run(parley_client *c)
{
	if (!c)
		return PARLEY_EINVAL;
	if (!c->owns_loop || c->running)
		return PARLEY_ESTATE;
	c->running = 1;
	c->stop = 0;
	while (!c->stop && has_work(c))
		uv_run(c->loop, UV_RUN_ONCE);
	c->running = 0;
	if (finish_run(c))
		return 0;
	return c->state == PARLEY_STATE_CLOSED ? c->last_error : 0;
}

int parley_run_once(parley_client *c, int timeout_ms)
{
	if (!c || timeout_ms < -1)
		return PARLEY_EINVAL;
	if (!c->owns_loop || c->running)
		return PARLEY_ESTATE;
	c->running = 1;
	if (timeout_ms > 0)
		uv_timer_start(&c->run_timer, noop_cb, (uint64_t)timeout_ms, 0);
	uv_run(c->loop, timeout_ms == 0 ? UV_RUN_NOWAIT : UV_RUN_ONCE);
	if (!c->teardown)
		uv_timer_stop(&c->run_timer);
	c->running = 0;
	if (finish_run(c))
		return 0;
	return c->state == PARLEY_STATE_CLOSED ? c->last_error : 0;
}

int parley_stop(parley_client *c)
{
	if (!c)
		return PARLEY_EINVAL;
	c->stop = 1;
	if (c->owns_loop)
		uv_stop(c->loop);
	return 0;
}
