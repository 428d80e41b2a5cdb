/* client.h: the parley.v1 operations of a client session (auth, sub,
 * unsub, pub, ping) and the checks shared with the HTTP API. */
#ifndef PARLEY_CLIENT_H
#define PARLEY_CLIENT_H

#include <jansson.h>
#include <stddef.h>

#include "conn.h"
#include "hub.h"

/* Handles one complete text message from a session: decodes it, runs the
 * operation, and queues the answer. Errors are answered with an error
 * frame; after limits.max_errors bad requests in a row the session is
 * closed with 1008. */
void client_handle(conn_t *c, const char *buf, size_t len);

/* Answers a binary message (not part of parley.v1) with bad_request. */
void client_reject_binary(conn_t *c);

/* Drops every subscription the session's current identity may no longer
 * hold, each with a forbidden error frame naming the topic. */
void client_recheck(conn_t *c);

/* Called once when an accepted publish is stored (rc 0, mid set) or
 * failed to be (rc and reason set; nothing was stored). */
typedef void (*client_done_fn)(hub_t *h, int rc, const char *mid,
			       const char *reason, void *ud);

/* The publish path shared by parley.v1 and HTTP: checks topic syntax,
 * permission, the per-token rate limit and the body size, then stores
 * the message as user. Returns 0 after which done is called exactly once
 * (before returning in standalone mode, when Redis answered in cluster
 * mode), or a negative code with *reason (static text), done never
 * called. Does not check the per-connection rate limit. */
int client_publish(hub_t *h, auth_user_t *user, const char *topic,
		   const json_t *body, client_done_fn done, void *ud,
		   const char **reason);

/* client_publish for a body that is already validated JSON text (kept
 * byte for byte; the fast path of parley.v1 publishes). */
int client_publish_text(hub_t *h, auth_user_t *user, const char *topic,
			const char *body, size_t body_len, client_done_fn done,
			void *ud, const char **reason);

/* Settles the presence a closing session held, then conn_release. Called
 * from LWS_CALLBACK_CLOSED. */
void client_release(conn_t *c);

/* Sends a presence change to the local sessions holding topic, except
 * one (may be NULL). Used for changes that came from peers. */
void client_presence_tell(hub_t *h, const char *topic, const char *ident,
			  int joined, const conn_t *except);

#endif
