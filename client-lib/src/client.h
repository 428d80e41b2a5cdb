/* client.h: the one shared core type of libparley, struct parley_client,
 * and the entry points its modules call on it. One parley_client per
 * application client; it owns its subscriptions, its publish queue, its
 * lws context and (for a client with its own loop) its libuv loop. */
#ifndef PARLEY_CLIENT_H
#define PARLEY_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "backoff.h"
#include "codec.h"
#include "options.h"
#include "parley.h"
#include "pubq.h"
#include "subs.h"
#include "url.h"

struct lws;
struct lws_context;

/* How far parley_client_free has got. */
enum parley__teardown {
	PARLEY__TD_NONE = 0,  /* Not freeing. */
	PARLEY__TD_REQUESTED, /* Free asked; starts from a loop callback. */
	PARLEY__TD_LWS,	      /* lws context destroy begun; waiting for lws's
				 libuv handles to close. */
	PARLEY__TD_HANDLES,   /* Closing the client's own libuv handles. */
	PARLEY__TD_DONE,      /* Everything closed; memory may go. */
};

/* The per-connection state: one of these per WebSocket connection, reset
 * at each connection attempt and stored in the client (lws is given the
 * client as the connection's user data). */
typedef struct parley__conn {
	struct lws *wsi;	  /* The lws connection, NULL when none. */
	int established;	  /* The WebSocket handshake completed. */
	int closing;		  /* We decided to close: ignore input. */
	int close_err;		  /* Error to report for that close. */
	char close_text[128];	  /* Its text. */
	parley__txbuf *tx_head;	  /* Send queue: oldest buffer. */
	parley__txbuf *tx_tail;	  /* Send queue: newest buffer. */
	char *rx;		  /* Reassembly of a fragmented message. */
	size_t rx_len;		  /* Bytes in rx. */
	size_t rx_cap;		  /* Capacity of rx. */
	int rx_discard;		  /* Dropping the rest of an oversized or
				     binary message. */
	int rx_binary;		  /* The message being dropped is binary. */
	int peer_close_code;	  /* Close code the hub sent, or 0. */
	char peer_close_text[96]; /* Its reason, sanitised. */
} parley__conn;

struct parley_client {
	uv_loop_t *loop;    /* The loop everything runs on. */
	uv_loop_t own_loop; /* Storage for a loop of our own. */
	int owns_loop;	    /* 1 when loop == &own_loop. */

	int state;		     /* enum parley_state; parley__set_state. */
	int last_error;		     /* See parley_last_error. */
	long opt[PARLEY__OPT_COUNT]; /* Option values (options.h). */

	char *token;	 /* Token for "auth", or NULL. */
	char *ca_file;	 /* TLS CA file, or NULL. */
	char *cert_file; /* TLS client certificate, or NULL. */
	char *key_file;	 /* Its key, or NULL. */
	parley__url url; /* Where to connect (after parley_connect). */
	char *user;	 /* Identity from the auth answer. */

	parley_state_cb on_state; /* Application callbacks and their data. */
	parley_error_cb on_error;
	void *cb_ud;
	parley_sub_cb on_sub;
	void *sub_ud;

	struct lws_context *ctx; /* lws context, made by the first connect. */
	void *retry;		 /* lws_retry_bo_t: the keepalive policy. */
	unsigned conn_ends;	 /* Connections ended so far. */
	parley__conn conn;	 /* The current connection. */
	uint64_t next_id;	 /* Last request id used. */
	uint64_t auth_id;	 /* Pending auth request id, or 0. */
	uint64_t auth_sent_ms;	 /* When it was sent. */
	int attempts;		 /* Failed attempts since the last success. */
	int ever_connected;	 /* Reached CONNECTED since parley_connect. */
	int want_connection;	 /* The application wants to be connected. */
	parley__backoff backoff; /* Reconnect delays. */

	parley__subs subs; /* Subscriptions. */
	parley__pubq pubs; /* Unacknowledged publishes. */

	uv_timer_t retry_timer;	   /* Backoff wait before a reconnect. */
	uv_timer_t tick_timer;	   /* Request timeouts, once a second. */
	uv_timer_t wake_timer;	   /* Deferred work: connect, disconnect,
				      teardown. */
	uv_timer_t run_timer;	   /* parley_run_once's time limit. */
	uv_timer_t pace_timer;	   /* Paced publishing after a throttle. */
	unsigned pace_ms;	   /* Pause between publishes while the hub
				      throttles us; 0: not throttled. */
	uint64_t pace_changed_ms;  /* When pace_ms last grew. */
	uv_idle_t teardown_idle;   /* Polls for lws's handles to close. */
	int handles_open;	   /* Own handles not yet closed. */
	int closing_handles;	   /* Own handles are being closed. */
	int teardown;		   /* enum parley__teardown. */
	uint64_t teardown_started; /* When lws was asked to close. */
	int lws_left;		   /* Scratch: an lws handle is still open. */
	int cb_depth;		   /* Application callbacks running. */
	int running;		   /* Inside parley_run / parley_run_once. */
	int stop;		   /* parley_stop was called. */
};

/* Changes c's state, telling the application. The one place state
 * changes. err: recorded as parley_last_error when not 0 or on CLOSED. */
void parley__set_state(parley_client *c, int state, int err);

/* Reports an error through the application's error callback. */
void parley__report(parley_client *c, int err, const char *text,
		    const char *topic);

/* Connection events, called from conn.c's lws callback. */
void parley__on_established(parley_client *c);
void parley__on_message(parley_client *c, const char *buf, size_t len);
void parley__on_closed(parley_client *c, int err, const char *text);

/* Frees everything c holds and c itself, once teardown is done. */
void parley__client_release(parley_client *c);

/* Returns the loop's current time in ms. */
uint64_t parley__now(const parley_client *c);

/* conn.c: creates c->ctx from c's options and TLS files. Returns 0,
 * PARLEY_ETLS or PARLEY_ENOMEM. */
int parley__conn_context(parley_client *c);

/* conn.c: starts a connection attempt to c->url. Returns 0 (the outcome
 * arrives through parley__on_established / parley__on_closed, possibly
 * before this returns) or a negative code when it could not start (then
 * no callback happens). */
int parley__conn_open(parley_client *c);

/* conn.c: queues buf (taking ownership) for sending. Returns 0, or
 * PARLEY_ESTATE when there is no usable connection (buf is freed). */
int parley__conn_send(parley_client *c, parley__txbuf *buf);

/* conn.c: closes the current connection (if any); parley__on_closed
 * follows later with err and text. */
void parley__conn_close(parley_client *c, int err, const char *text);

/* conn.c: frees the send queue and reassembly buffer. */
void parley__conn_reset(parley_client *c);

#endif
