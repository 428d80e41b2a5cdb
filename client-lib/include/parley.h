/* parley.h: libparley, the C client library of the parley messaging hub.
 *
 * One client holds one WebSocket connection (ws:// or wss://) to a hub that
 * speaks the parley.v1 protocol. It subscribes to topics or patterns with a
 * callback per subscription, publishes with a completion callback, and
 * reconnects by itself: after a reconnect every subscription resumes from
 * the last message it delivered, so the application sees no gap and no
 * duplicate.
 *
 * Threading: a client belongs to one libuv loop and one thread. Every
 * callback runs on that loop. No function of this library is thread-safe.
 *
 * Errors: functions return 0 (or a non-negative value) on success and a
 * negative PARLEY_E* code on failure; parley_strerror() gives its text. A
 * function that returns an error never calls its callback; one that returns
 * 0 calls it exactly once.
 *
 * Minimal bot:
 *
 *     parley_client *c;
 *     parley_client_new(&c, NULL);
 *     parley_set_token(c, getenv("PARLEY_TOKEN"));
 *     parley_connect(c, "ws://127.0.0.1:8080/ws");
 *     parley_subscribe(c, "forum/#", -1, NULL, on_msg, NULL);
 *     parley_run(c);
 *     parley_client_free(c);
 *
 * Build with: cc bot.c $(pkg-config --cflags --libs parley)
 */
#ifndef PARLEY_H
#define PARLEY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(PARLEY_BUILDING) && defined(__GNUC__)
#define PARLEY_API __attribute__((visibility("default")))
#else
#define PARLEY_API
#endif

#define PARLEY_VERSION_MAJOR 0
#define PARLEY_VERSION_MINOR 1
#define PARLEY_VERSION_PATCH 0

/* The WebSocket subprotocol the library speaks. */
#define PARLEY_SUBPROTOCOL "parley.v1"

/* libuv's loop type, declared here so that this header does not need
 * <uv.h>; it is the same type as uv_loop_t. */
struct uv_loop_s;

/* One client: a connection to a hub with its subscriptions and pending
 * publishes. Created by parley_client_new, released by parley_client_free. */
typedef struct parley_client parley_client;

/* One received message. Only valid during the callback that receives it:
 * copy what you need to keep. */
typedef struct parley_msg parley_msg;

/* X(name, value, text): every error code of the library. The hub's error
 * words map to them as unauthorized -> EAUTH, forbidden -> EFORBIDDEN,
 * bad_request, bad_json, unknown_op -> EBADREQUEST, too_large -> ETOOLARGE,
 * rate_limited -> ERATELIMITED, history_gap -> EHISTORYGAP, unavailable ->
 * EUNAVAILABLE, internal and unknown words -> EHUB. */
#define PARLEY_ERRORS(X)                                                       \
	X(PARLEY_EINVAL, -1, "invalid argument")                               \
	X(PARLEY_ENOMEM, -2, "out of memory")                                  \
	X(PARLEY_ESTATE, -3, "not allowed in the client's current state")      \
	X(PARLEY_ECONNECT, -4, "cannot connect to the hub")                    \
	X(PARLEY_ECLOSED, -5, "connection to the hub lost")                    \
	X(PARLEY_ETLS, -6, "TLS error")                                        \
	X(PARLEY_EAUTH, -7, "unauthorized: unknown or invalid token")          \
	X(PARLEY_EFORBIDDEN, -8, "forbidden: not permitted for this identity") \
	X(PARLEY_EBADREQUEST, -9, "the hub refused the request as malformed")  \
	X(PARLEY_ETOOLARGE, -10, "too large, or a hub limit reached")          \
	X(PARLEY_ERATELIMITED, -11, "rate limit exceeded")                     \
	X(PARLEY_EHISTORYGAP, -12,                                             \
	  "history gap: messages after the resume point are no longer "        \
	  "stored")                                                            \
	X(PARLEY_EUNAVAILABLE, -13, "the hub cannot store messages right now") \
	X(PARLEY_EHUB, -14, "the hub reported an internal error")              \
	X(PARLEY_EPROTO, -15, "invalid frame from the hub")                    \
	X(PARLEY_EMSGSIZE, -16, "frame from the hub exceeds max_frame_bytes")  \
	X(PARLEY_EQUEUEFULL, -17, "too many publishes waiting for the hub")    \
	X(PARLEY_ECANCELED, -18, "canceled: the client was closed")            \
	X(PARLEY_EUNACKED, -19,                                                \
	  "connection lost before the hub acknowledged: the message may or "   \
	  "may not be stored")                                                 \
	X(PARLEY_ETIMEDOUT, -20, "the hub did not answer in time")             \
	X(PARLEY_EEXIST, -21, "already subscribed to this filter")             \
	X(PARLEY_ENOENT, -22, "not subscribed to this filter")

enum parley_error {
	PARLEY_OK = 0,
#define PARLEY_ENUM_(name, value, text) name = value,
	PARLEY_ERRORS(PARLEY_ENUM_)
#undef PARLEY_ENUM_
};

/* Returns the text of an error code (static storage, never NULL). */
PARLEY_API const char *parley_strerror(int err);

/* Returns the code's enum name, e.g. "PARLEY_EAUTH" (static, never NULL). */
PARLEY_API const char *parley_errname(int err);

/* Returns the library version as "MAJOR.MINOR.PATCH" (static storage). */
PARLEY_API const char *parley_version(void);

/* Connection state, changed only by the library. */
enum parley_state {
	PARLEY_STATE_IDLE = 0,	     /* Created; parley_connect not called. */
	PARLEY_STATE_CONNECTING,     /* TCP/TLS/WebSocket handshake. */
	PARLEY_STATE_AUTHENTICATING, /* Token sent, waiting for the hub. */
	PARLEY_STATE_CONNECTED,	     /* Ready: subscriptions and publishes
					flow. */
	PARLEY_STATE_WAITING,	     /* Disconnected, reconnecting after a
					backoff delay. */
	PARLEY_STATE_CLOSED,	     /* Stopped: closed by the application,
					or gave up (see parley_last_error). */
};

/* Returns the name of a state, e.g. "connected" (static, never NULL). */
PARLEY_API const char *parley_state_name(int state);

/* Tunable options, set with parley_set_option before parley_connect. */
enum parley_option {
	/* Largest WebSocket message accepted from the hub, in bytes; a larger
	 * one is discarded and reported as PARLEY_EMSGSIZE. Default 1 MiB. */
	PARLEY_OPT_MAX_FRAME_BYTES = 1,
	/* Publishes that may wait for an acknowledgement (queued while
	 * disconnected plus in flight); past it parley_publish returns
	 * PARLEY_EQUEUEFULL. Default 1000. */
	PARLEY_OPT_MAX_QUEUED,
	/* Reconnect backoff: first delay and cap, in milliseconds. Defaults
	 * 250 and 30000. */
	PARLEY_OPT_BACKOFF_MIN_MS,
	PARLEY_OPT_BACKOFF_MAX_MS,
	/* Attempts to make for the first connection before giving up with
	 * PARLEY_ECONNECT; -1 tries forever (default). */
	PARLEY_OPT_CONNECT_ATTEMPTS,
	/* 1 (default): reconnect after an established connection drops. 0:
	 * go to PARLEY_STATE_CLOSED instead. */
	PARLEY_OPT_RECONNECT,
	/* 1 (default): a publish sent but not yet acknowledged when the
	 * connection drops is sent again after the reconnect (at least once:
	 * the hub may then store it twice). 0: its callback gets
	 * PARLEY_EUNACKED instead (at most once). */
	PARLEY_OPT_RESEND_UNACKED,
	/* A request the hub leaves unanswered this long (ms) means the link
	 * is broken: the client reconnects. Default 30000. */
	PARLEY_OPT_REQUEST_TIMEOUT_MS,
	/* Seconds allowed for the TCP, TLS and WebSocket handshake.
	 * Default 10. */
	PARLEY_OPT_CONNECT_TIMEOUT_S,
	/* An idle connection is checked with a WebSocket ping after this
	 * many seconds, and dropped when nothing arrives for twice as long;
	 * 0 disables. Default 30. */
	PARLEY_OPT_KEEPALIVE_S,
	/* 1 (default): a publish the hub refuses with rate_limited or
	 * unavailable (nothing stored) is sent again later instead of
	 * failing, and publishing slows down to one at a time, paced, until
	 * the hub accepts them again. 0: the callback gets the error. */
	PARLEY_OPT_RETRY_THROTTLED,
};

/* Sets an option. Returns 0; PARLEY_EINVAL for an unknown option or a value
 * out of its bounds; PARLEY_ESTATE after parley_connect. */
PARLEY_API int parley_set_option(parley_client *c, int option, long value);

/* Returns an option's current value, or PARLEY_EINVAL when unknown. */
PARLEY_API long parley_get_option(const parley_client *c, int option);

/* Creates a client in *out. loop: the caller's libuv loop to attach to
 * (uv_loop_t *), or NULL for a loop of the client's own, driven by
 * parley_run / parley_run_once. Returns 0, PARLEY_EINVAL or PARLEY_ENOMEM
 * (then *out is NULL). */
PARLEY_API int parley_client_new(parley_client **out, struct uv_loop_s *loop);

/* Releases a client: closes its connection and fails every pending
 * publish with PARLEY_ECANCELED (their callbacks run during this call or,
 * with an attached loop, soon after on the loop). NULL is a no-op.
 *
 * Own loop: outside callbacks, returns with everything released. Inside a
 * callback of this client, the release completes before parley_run or
 * parley_run_once returns.
 * Attached loop: the release completes asynchronously on the caller's
 * loop, which must keep running (uv_run returns once it is done). Safe
 * inside callbacks. Do not use c after this call. */
PARLEY_API void parley_client_free(parley_client *c);

/* Returns the libuv loop the client runs on (uv_loop_t *): the attached
 * one or its own. */
PARLEY_API struct uv_loop_s *parley_client_loop(const parley_client *c);

/* Sets the token sent with the "auth" request on each connection; NULL
 * connects anonymously. Copied. Returns 0, PARLEY_ENOMEM or PARLEY_ESTATE
 * (after parley_connect). */
PARLEY_API int parley_set_token(parley_client *c, const char *token);

/* TLS files for wss:// URLs, each NULL for none: ca_file, PEM CA
 * certificates to verify the hub with (NULL: the system's); cert_file and
 * key_file, a PEM client certificate and its key for hubs that require one
 * (both or neither). The files are checked for readability here and loaded
 * at parley_connect. Returns 0, PARLEY_EINVAL (unreadable file, or only one
 * of cert/key), PARLEY_ENOMEM or PARLEY_ESTATE. */
PARLEY_API int parley_set_tls(parley_client *c, const char *ca_file,
			      const char *cert_file, const char *key_file);

/* Called on every state change. Must not free the client unless in
 * PARLEY_STATE_CLOSED. */
typedef void (*parley_state_cb)(parley_client *c, int state, void *ud);

/* Called for errors not tied to one request: a failed connection attempt
 * (PARLEY_ECONNECT, PARLEY_ETLS, PARLEY_EAUTH), a lost connection
 * (PARLEY_ECLOSED), an invalid frame from the hub (PARLEY_EPROTO,
 * PARLEY_EMSGSIZE; the frame is dropped, the connection kept), a history
 * gap on resume (PARLEY_EHISTORYGAP with the topic filter: the
 * subscription continues from now, without backlog), or an error the hub
 * sent without a request id. text: details (never NULL); topic: the
 * filter concerned or NULL. Both borrowed for the call. */
typedef void (*parley_error_cb)(parley_client *c, int err, const char *text,
				const char *topic, void *ud);

/* Sets the state and error callbacks (each may be NULL). Returns 0. */
PARLEY_API int parley_set_callbacks(parley_client *c, parley_state_cb on_state,
				    parley_error_cb on_error, void *ud);

/* Starts connecting to url: ws://HOST[:PORT][/PATH][?QUERY] or wss://...
 * (HOST may be [IPv6]; a URL without a path uses /ws). Asynchronous: the
 * state callback reports progress. Returns 0; PARLEY_EINVAL for a bad URL;
 * PARLEY_ETLS when the TLS files cannot be loaded; PARLEY_ENOMEM;
 * PARLEY_ESTATE when already connecting or connected. After
 * PARLEY_STATE_CLOSED a client may connect again. */
PARLEY_API int parley_connect(parley_client *c, const char *url);

/* Closes the connection and stops reconnecting: the state becomes
 * PARLEY_STATE_CLOSED; queued publishes stay queued for a later
 * parley_connect. Returns 0. */
PARLEY_API int parley_disconnect(parley_client *c);

/* Returns the current state (enum parley_state). */
PARLEY_API int parley_state(const parley_client *c);

/* Returns the error that put the client in PARLEY_STATE_CLOSED (0 when it
 * was closed by the application), or the error of the last failed attempt
 * while reconnecting. */
PARLEY_API int parley_last_error(const parley_client *c);

/* Returns the identity the hub gave the token ("user@node"), or NULL
 * before authentication or when anonymous. Valid until the next state
 * change. */
PARLEY_API const char *parley_user(const parley_client *c);

/* Called for each message of a subscription, in the hub's order. */
typedef void (*parley_msg_cb)(parley_client *c, const parley_msg *m, void *ud);

/* Called when the hub answers a subscription request: err 0 once the
 * subscription is active (any backlog asked for has been delivered), or a
 * negative code (text: the hub's reason) when it was refused, after which
 * the subscription no longer exists. Also called after a reconnect. An
 * "unavailable" answer (a cluster instance that has not reached Redis
 * yet) is not a refusal: the request is sent again about a second later,
 * with the same cursor, and nothing is reported. */
typedef void (*parley_sub_cb)(parley_client *c, const char *filter, int err,
			      const char *text, void *ud);

/* Sets the callback for subscription answers (may be NULL). Returns 0. */
PARLEY_API int parley_set_sub_callback(parley_client *c, parley_sub_cb cb,
				       void *ud);

/* Subscribes to filter (a topic, or a pattern with "+" and a final "#"),
 * calling cb(c, msg, ud) for each message. Backlog: last >= 0 asks for the
 * last N stored messages first; since, a cursor from parley_msg_cursor,
 * asks for every message after it (at most one of the two; -1 / NULL for
 * none). Sent at once when connected, otherwise on connection. Returns 0;
 * PARLEY_EINVAL for an invalid filter or both last and since;
 * PARLEY_EEXIST when already subscribed to that exact filter;
 * PARLEY_ENOMEM. */
PARLEY_API int parley_subscribe(parley_client *c, const char *filter, int last,
				const char *since, parley_msg_cb cb, void *ud);

/* Ends the subscription to filter (the same text as subscribed): its
 * callback is not called again, even for frames already received.
 * Returns 0 or PARLEY_ENOENT. */
PARLEY_API int parley_unsubscribe(parley_client *c, const char *filter);

/* How parley_publish reads body. */
enum parley_body {
	PARLEY_BODY_JSON = 0, /* body is JSON text (any value). */
	PARLEY_BODY_STRING,   /* body is UTF-8 text, sent as a JSON string. */
	PARLEY_BODY_AUTO,     /* JSON when it parses as JSON, else a string. */
};

/* Called once per publish: err 0 and mid, the message id the hub stored it
 * under; or a negative code, mid NULL and text (the hub's reason or the
 * library's). Strings borrowed for the call. */
typedef void (*parley_pub_cb)(parley_client *c, int err, const char *mid,
			      const char *text, void *ud);

/* Publishes body (len bytes, read as `kind`) to topic. Sent at once when
 * connected, else queued (in order) until connected. cb may be NULL.
 * Returns 0 (cb will be called); PARLEY_EINVAL for an invalid topic, kind
 * or body; PARLEY_EQUEUEFULL past PARLEY_OPT_MAX_QUEUED; PARLEY_ESTATE
 * while the client is being freed; PARLEY_ENOMEM. */
PARLEY_API int parley_publish(parley_client *c, const char *topic,
			      const char *body, size_t len, int kind,
			      parley_pub_cb cb, void *ud);

/* Returns the number of publishes waiting for an acknowledgement. */
PARLEY_API size_t parley_pending(const parley_client *c);

/* Own loop only: runs until parley_stop is called or the client reaches
 * PARLEY_STATE_CLOSED. Returns 0, the error that closed the client, or
 * PARLEY_ESTATE for an attached client. */
PARLEY_API int parley_run(parley_client *c);

/* Own loop only: waits at most timeout_ms (0: do not wait; -1: no limit)
 * for events and handles them. Returns 0; the error that closed the
 * client once closed; PARLEY_ESTATE for an attached client. */
PARLEY_API int parley_run_once(parley_client *c, int timeout_ms);

/* Makes parley_run return after the current callback. Returns 0. */
PARLEY_API int parley_stop(parley_client *c);

/* Message accessors: strings are NUL-terminated and borrowed for the
 * callback. */
PARLEY_API const char *parley_msg_topic(const parley_msg *m);
PARLEY_API const char *parley_msg_mid(const parley_msg *m);
PARLEY_API const char *parley_msg_origin(const parley_msg *m);
PARLEY_API const char *parley_msg_from(const parley_msg *m);
PARLEY_API const char *parley_msg_cursor(const parley_msg *m);
/* Milliseconds since the epoch, set by the origin hub. */
PARLEY_API int64_t parley_msg_ts(const parley_msg *m);
/* The body as compact JSON text; *len (if not NULL) gets its length. NULL
 * only when out of memory. */
PARLEY_API const char *parley_msg_body(const parley_msg *m, size_t *len);
/* The body's text when it is a JSON string (*len its length; it may hold
 * NUL bytes only if the hub sent \u0000, which the library refuses), else
 * NULL. */
PARLEY_API const char *parley_msg_body_string(const parley_msg *m, size_t *len);
/* The whole message as one compact JSON object with the fields topic, mid,
 * origin, from, ts, cursor and body. NULL only when out of memory. */
PARLEY_API const char *parley_msg_json(const parley_msg *m);

/* Validates a topic (pattern 0) or a filter (pattern 1) by the hub's
 * rules. Returns 0 or PARLEY_EINVAL. */
PARLEY_API int parley_topic_check(const char *topic, int pattern);

/* Returns 1 when topic matches filter, else 0. */
PARLEY_API int parley_topic_matches(const char *filter, const char *topic);

#ifdef __cplusplus
}
#endif

#endif
