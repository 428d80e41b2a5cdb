/* conn.h: one client WebSocket session (one of these per parley.v1
 * connection, stored by lws as the per-session data): its identity, its
 * subscriptions and its bounded queue of shared outgoing frames, flushed in
 * batches once per loop pass. */
#ifndef PARLEY_CONN_H
#define PARLEY_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "hub.h"
#include "msg.h"
#include "outq.h"
#include "router.h"

struct lws;

enum conn_state {
	CONN_OPEN = 0, /* Serving requests and deliveries. */
	CONN_CLOSING,  /* A close was decided: no more reads or queueing. */
};

/* A live message held back while a backlog is read from Redis. */
typedef struct conn_held {
	char *topic;	/* Its topic (owned). */
	uint64_t seq;	/* Its sequence number. */
	frame_t *frame; /* Its frame (a reference). */
} conn_held_t;

/* A backlog sent while holding: held messages of filter up to seq were
 * in it and are not sent again. */
typedef struct conn_rule {
	char *filter; /* Filter of the backlog (owned). */
	uint64_t seq; /* Newest seq the backlog held. */
} conn_rule_t;

/* One subscription of a session. */
typedef struct conn_sub {
	router_sub_t *rs; /* Router handle (holds the filter text). */
	char *present_as; /* Identity counted in presence for this exact
			     topic, or NULL (owned). */
} conn_sub_t;

typedef struct conn {
	int kind;	       /* OWNER_CONN: first, as for every router
				  owner, so callbacks can tell them apart. */
	struct lws *wsi;       /* The lws connection. */
	hub_t *hub;	       /* Owner of every session. */
	enum conn_state state; /* Changed only by conn_set_state. */
	auth_user_t *user;     /* Identity (in hub->auth); never NULL. */
	int has_token;	       /* 1 when authenticated by a token. */
	char peer[64];	       /* Remote address, for logs. */
	uint64_t id;	       /* Session number, for logs. */

	outq_t out;	   /* Outgoing frames. */
	struct conn *next; /* Next in hub->conns. */
	struct conn *prev; /* Previous in hub->conns. */

	char *rx;      /* Reassembly of a fragmented message. */
	size_t rx_len; /* Bytes in rx. */
	size_t rx_cap; /* Capacity of rx. */
	int rx_binary; /* The message being received is binary. */

	conn_sub_t *subs;  /* Subscriptions held. */
	size_t n_subs;	   /* Count of subs. */
	size_t subs_cap;   /* Capacity of subs. */
	uint64_t last_seq; /* Seq of the last message queued: a message
			      matching several filters is queued once. */

	double bucket;		/* Publish token bucket level. */
	uint64_t bucket_ms;	/* Last refill (uv_now). */
	unsigned errors_in_row; /* Bad requests since the last good one. */
	int close_queued;	/* Our close frame is queued or sent. */
	unsigned holding;	/* Backlog reads in progress (cluster): live
				   messages wait in held meanwhile. */
	conn_held_t *held;	/* Held live messages, in order. */
	size_t n_held;		/* Count. */
	size_t cap_held;	/* Capacity. */
	size_t held_bytes;	/* Frame bytes held. */
	conn_rule_t *rules;	/* Backlogs sent while holding. */
	size_t n_rules;		/* Count. */
} conn_t;

/* Initialises the per-session struct lws allocated (zeroed) for wsi and
 * links it into the hub. Returns 0 or PE_NOMEM. */
int conn_open(conn_t *c, hub_t *h, struct lws *wsi, auth_user_t *user,
	      int has_token);

/* Releases everything the session holds (queue, subscriptions, buffers)
 * and unlinks it. Presence must have been settled (client_release).
 * Called from LWS_CALLBACK_CLOSED; lws frees the struct right after. */
void conn_release(conn_t *c);

/* Changes the state and logs the transition. */
void conn_set_state(conn_t *c, enum conn_state s);

/* Queues a frame (takes a new reference). When the queue would exceed
 * limits.max_queue_bytes the session is cut off as a slow consumer and its
 * queue freed. Returns 0, or -1 when the frame was not queued. Makes no
 * lws call: the end-of-pass flush writes. */
int conn_send(conn_t *c, frame_t *f);

/* Queues a text frame of a len-byte payload like conn_send (an
 * overflowing queue closes the session) and returns where the caller
 * writes the payload, or NULL when it was not queued. See
 * outq_push_text. */
char *conn_send_text(conn_t *c, size_t len);

/* Decides to close the session with a WebSocket close code and reason:
 * stops reading and queueing, drops what is queued when drop_queue is set
 * (a slow consumer's memory is freed at once), else lets it go first, and
 * queues our close frame. lws closes the socket when the peer answers the
 * close; a peer that does not is killed after a few seconds. (lws 4.1's
 * own close-from-WRITEABLE path was seen to drop the close frame, so the
 * hub writes it itself.) */
void conn_close(conn_t *c, int code, const char *reason, int drop_queue);

/* Handles LWS_CALLBACK_SERVER_WRITEABLE. Returns -1 to make lws close the
 * connection, else 0. */
int conn_writeable(conn_t *c);

/* Holds a live message back while a backlog is being read (takes a
 * reference). A session holding more than limits.max_queue_bytes is cut
 * off as a slow consumer. */
void conn_hold(conn_t *c, const char *topic, uint64_t seq, frame_t *f);

/* Notes that a backlog of filter up to seq was queued, then, when no
 * read is left (holding reached 0), sends the held messages that were not
 * in any such backlog. Call once per finished read (also on error, with
 * filter NULL). */
void conn_unhold(conn_t *c, const char *filter, uint64_t seq);

/* Returns 1 when a live message (cluster mode) was already sent in a
 * backlog of this session, so it must not be sent again; forgets backlogs
 * that live traffic has passed. */
int conn_seen_in_backlog(conn_t *c, const char *topic, uint64_t seq);

/* Returns the open session with this id, or NULL when it is gone. */
conn_t *conn_by_id(hub_t *h, uint64_t id);

/* Adds a subscription handle to the session's list; present_as (may be
 * NULL) moves to the session. Returns 0 or PE_NOMEM (nothing moved). */
int conn_add_sub(conn_t *c, router_sub_t *s, char *present_as);

/* Finds the session's subscription to filter; returns its index or -1. */
int conn_find_sub(const conn_t *c, const char *filter);

/* Removes subscription i from the router and the session. Returns its
 * present_as (the caller owns it and settles presence), or NULL. */
char *conn_remove_sub(conn_t *c, size_t i);

#endif
