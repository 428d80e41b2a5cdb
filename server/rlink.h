/* rlink.h: a self-healing link to one Redis server on the daemon's libuv
 * loop: a command connection and a pub/sub connection, pipelined writes,
 * reference-counted subscriptions restored after every reconnect. */
#ifndef PARLEY_RLINK_H
#define PARLEY_RLINK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct redisReply;
typedef struct rlink rlink_t;

/* State of a link. It is UP only when both connections are established,
 * the server has answered on the command connection and every
 * subscription has been confirmed on the pub/sub connection. */
enum rlink_state {
	RLINK_CONNECTING = 0, /* Connecting; bounded by connect_timeout_ms. */
	RLINK_UP,	      /* Commands are accepted. */
	RLINK_DOWN,	      /* Waiting for the backoff delay to retry. */
};

/* Tunables; a field left at 0 takes the default in brackets. */
struct rlink_opts {
	unsigned backoff_min_ms;     /* First retry delay [100]. */
	unsigned backoff_max_ms;     /* Largest retry delay [5000]. */
	unsigned connect_timeout_ms; /* Longest time in CONNECTING [2000]. */
	unsigned max_pending;	     /* Commands awaiting a reply before
					rlink_commandv refuses [100000]. */
	unsigned reply_timeout_ms;   /* Oldest reply overdue by this long:
					the server is taken for dead, the
					link goes DOWN [5000]. An idle link
					sends a PING every quarter of it. */
};

/* Counters of one link since rlink_new. */
struct rlink_stats {
	uint64_t commands;	/* Commands accepted by rlink_commandv. */
	uint64_t replies;	/* Callbacks called with a reply. */
	uint64_t failed;	/* Callbacks called with NULL. */
	uint64_t pending;	/* Commands whose callback is still due. */
	uint64_t messages;	/* Pub/sub messages given to on_message. */
	uint64_t reconnects;	/* Connection attempts after a DOWN. */
	uint64_t writes;	/* write(2) calls on either socket. */
	uint64_t poll_restarts; /* Event mask changes; each costs epoll_ctl
				   calls (none in steady state). */
	uint64_t server_subs;	/* Channels plus patterns the server last
				   reported for the pub/sub connection; 0
				   while it is not connected. */
};

/* Called once per command: r is the reply (borrowed; freed when the
 * callback returns; a Redis error is a reply of type REDIS_REPLY_ERROR),
 * or NULL when the link went down or was closed before the reply came.
 * NULL means the outcome is unknown: the server may have executed it. */
typedef void (*rlink_reply_fn)(rlink_t *l, struct redisReply *r, void *ud);

/* Called for each pub/sub message on a channel or pattern the caller is
 * interested in. pattern is NULL for a SUBSCRIBE match. All strings are
 * borrowed for the duration of the call; data holds len bytes and may
 * contain NULs. A message matching both a channel and a pattern
 * subscription comes twice, as Redis sends it. */
typedef void (*rlink_message_fn)(rlink_t *l, const char *channel,
				 const char *pattern, const char *data,
				 size_t len, void *ud);

/* Called after each state change (never from rlink_new or after
 * rlink_close). On DOWN it is called before the pending commands are
 * failed. Any of the link's callbacks may call rlink_close. */
typedef void (*rlink_state_fn)(rlink_t *l, enum rlink_state s, void *ud);

/* Returns a new link to host:port on loop, already connecting (state
 * CONNECTING), or NULL when host is NULL. host should be an IP address:
 * a name is resolved with a blocking getaddrinfo on every attempt. opts
 * may be NULL (defaults). The callbacks may be NULL; ud is passed to them.
 * The process must ignore SIGPIPE (hiredis writes with write(2)). The
 * link owns its handles and is freed by rlink_close. */
rlink_t *rlink_new(uv_loop_t *loop, const char *host, int port,
		   const struct rlink_opts *opts, rlink_state_fn on_state,
		   rlink_message_fn on_message, void *ud);

/* Queues one command (argv[0] is its name; argvlen may be NULL for
 * NUL-terminated arguments). Commands queued during one loop pass go out
 * in one write at the end of that pass; replies come in order. Returns 0,
 * after which cb (may be NULL) is called exactly once, never from inside
 * this call; or PE_UNAVAILABLE when the link is not UP, PE_TOO_MANY when
 * max_pending commands already await replies, PE_BAD_REQUEST for an empty
 * argv or a command that changes the connection's mode ((P)SUBSCRIBE: use
 * rlink_subscribe; MONITOR; HELLO); and then cb is never called. A
 * command that blocks in Redis (BLPOP, XREAD BLOCK...) longer than
 * reply_timeout_ms takes the link DOWN. */
int rlink_commandv(rlink_t *l, rlink_reply_fn cb, void *ud, int argc,
		   const char **argv, const size_t *argvlen);

/* Called by the end-of-pass flush before it writes (see
 * rlink_want_flush). */
typedef void (*rlink_flush_fn)(rlink_t *l, void *ud);

/* Asks that fn(l, ud) be called once at the end of this loop pass, just
 * before the queued commands are written, so that a caller can gather the
 * work of a whole pass into fewer commands. A later call replaces an
 * earlier one not yet made. No-op once the link is closing. */
void rlink_want_flush(rlink_t *l, rlink_flush_fn fn, void *ud);

/* Adds one reference to the interest in channel (is_pattern 0) or pattern
 * (is_pattern 1). The first reference sends SUBSCRIBE or PSUBSCRIBE when
 * the pub/sub connection is up; interests are sent again after every
 * reconnect. Messages published before Redis confirms (see
 * rlink_stats.server_subs) may be missed. Returns 0, or PE_BAD_REQUEST
 * for a NULL or empty name. Does not call back. */
int rlink_subscribe(rlink_t *l, const char *channel, int is_pattern);

/* Drops one reference taken by rlink_subscribe; the last one sends
 * UNSUBSCRIBE or PUNSUBSCRIBE, and no message of that channel or pattern
 * is delivered after this call. Unknown names are ignored. */
void rlink_unsubscribe(rlink_t *l, const char *channel, int is_pattern);

/* Returns the current state. */
enum rlink_state rlink_state(const rlink_t *l);

/* Returns "connecting", "up" or "down" (static storage). */
const char *rlink_state_name(enum rlink_state s);

/* Returns the reason of the last DOWN ("" if none yet); the string is
 * owned by the link and changes with the next DOWN. */
const char *rlink_last_error(const rlink_t *l);

/* Copies the counters into *out. */
void rlink_stats(const rlink_t *l, struct rlink_stats *out);

/* Disconnects and frees the link: pending commands get their callback
 * with NULL (before this returns, or when called from one of the link's
 * own callbacks, as soon as that callback returns), no other callback is
 * called afterwards, and done(ud) (may be NULL) is called from the loop
 * once every handle is closed and the memory freed. Calling it again is a
 * no-op. */
void rlink_close(rlink_t *l, void (*done)(void *ud), void *ud);

#endif
