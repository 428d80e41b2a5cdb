/* cluster.h: cluster mode (DESIGN.md "Cluster"): the instances of one node
 * share ids, order, fan-out and history through one Redis server. An
 * accepted message is stored by one atomic script (dedup by mid, a
 * node-wide sequence number, per-topic streams trimmed to history.length,
 * a node-wide log for federation replay) that also publishes it; every
 * instance delivers what its own sessions subscribed to, in Redis's
 * order. */
#ifndef PARLEY_CLUSTER_H
#define PARLEY_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct hub;
struct redisReply;
typedef struct cluster cluster_t;

/* Called when a store finished: rc is 0 with the message's sequence
 * number (0 when its mid was already stored: a duplicate, nothing
 * published), or PE_UNAVAILABLE when Redis could not be reached (the
 * outcome is then unknown if the link dropped mid-command). */
typedef void (*cluster_store_fn)(struct hub *h, int rc, uint64_t seq, void *ud);

/* One message of a backlog: its sequence number and its client frame. */
typedef struct cluster_item {
	uint64_t seq;	/* Node-wide sequence number. */
	frame_t *frame; /* Client "msg" frame (a reference). */
	char *topic;	/* Its topic (owned). */
} cluster_item_t;

/* Called once with a backlog, oldest first (items borrowed for the call),
 * or rc = PE_HISTORY_GAP / PE_UNAVAILABLE / PE_BAD_CURSOR and no items. */
typedef void (*cluster_backlog_fn)(struct hub *h, int rc,
				   const cluster_item_t *items, size_t n,
				   void *ud);

/* Starts the Redis link of hub h (h->cfg->redis_enabled). Never NULL. */
cluster_t *cluster_new(struct hub *h);

/* Closes the link; pending stores and backlogs fail. Called at shutdown;
 * the memory is freed once every handle has closed. */
void cluster_stop(cluster_t *c);

/* Returns 1 when Redis is up (publishes are accepted). */
int cluster_up(const cluster_t *c);

/* Returns "connecting", "up" or "down". */
const char *cluster_state(const cluster_t *c);

/* Stores and publishes m (mid, origin, from, ts, path set). For a
 * message received from a federation peer, peer and peer_cursor (else
 * NULL) are saved in the same atomic step, so the position reached on
 * that link is exactly what was stored, whichever instance holds it next;
 * such a message is stored once per mid (a copy gets seq 0). The stores
 * of one loop pass go to Redis in one script call at its end. Returns 0
 * and later calls cb exactly once, or PE_UNAVAILABLE at once (cb never
 * called). */
int cluster_store(cluster_t *c, const msg_t *m, const char *peer,
		  const char *peer_cursor, cluster_store_fn cb, void *ud);

/* Takes / drops a reference to the Redis subscriptions a local filter
 * (topic or pattern) needs. */
void cluster_want(cluster_t *c, const char *filter);
void cluster_unwant(cluster_t *c, const char *filter);

/* Reads a backlog for filter: with since_mode, every stored message after
 * the cursor since (a gap is an error), else the `last` most recent. With
 * barrier it first makes sure the subscriptions of filter are live in
 * Redis (the caller took them with cluster_want), so that with the
 * messages held back meanwhile nothing falls between backlog and live;
 * last = 0 then only waits for that. Returns 0 and calls cb later exactly
 * once, or PE_UNAVAILABLE. */
int cluster_backlog(cluster_t *c, const char *filter, int barrier,
		    int since_mode, uint64_t since, size_t last,
		    cluster_backlog_fn cb, void *ud);

/* Formats the cursor of seq ("<epoch>-<seq>" in base 36, like a
 * standalone hub's) into buf (48 bytes). */
void cluster_cursor(const cluster_t *c, uint64_t seq, char *buf);

/* Parses a cursor. Returns 0 and *seq, PE_BAD_CURSOR when malformed,
 * PE_UNAVAILABLE while the data set's epoch is not known (Redis not
 * reached yet), or PE_HISTORY_GAP when it names another epoch (Redis lost
 * its data, or a standalone hub's cursor). */
int cluster_parse_cursor(const cluster_t *c, const char *cursor, uint64_t *seq);

/* Called with a replay batch: messages after the asked seq, oldest
 * first (borrowed), and gap set when older ones were already trimmed; or
 * rc = PE_UNAVAILABLE. */
typedef void (*cluster_replay_fn)(struct hub *h, int rc, msg_t *const *msgs,
				  size_t n, int gap, void *ud);

/* Reads up to max messages stored after seq from the node-wide log (for
 * federation replay). Returns 0 and calls cb later, or PE_UNAVAILABLE. */
int cluster_replay(cluster_t *c, uint64_t after, size_t max,
		   cluster_replay_fn cb, void *ud);

/* Returns the highest seq this instance received from Redis pub/sub. */
uint64_t cluster_last_seq(const cluster_t *c);

/* Called with a yes/no answer. */
typedef void (*cluster_flag_fn)(struct hub *h, int yes, void *ud);

/* Takes (or renews) the lock that makes one instance of the node its
 * federation gateway, for ttl_ms. cb gets 1 when this instance (named
 * me) holds it. Returns 0 or PE_UNAVAILABLE (cb never called). */
int cluster_gateway_lock(cluster_t *c, const char *me, unsigned ttl_ms,
			 cluster_flag_fn cb, void *ud);

/* Called with the saved federation cursors: n pairs of (peer, cursor) in
 * kv (borrowed), or rc = PE_UNAVAILABLE. */
typedef void (*cluster_cursors_fn)(struct hub *h, int rc, const char **kv,
				   size_t n, void *ud);

/* Reads the position last stored from each peer. Returns 0 or
 * PE_UNAVAILABLE (cb never called). */
int cluster_peer_cursors(cluster_t *c, cluster_cursors_fn cb, void *ud);

/* One entry of a topic stream read (XRANGE/XREVRANGE), its parts
 * borrowed from the reply. The message's client frame is head, then the
 * seq's base-36 digits, then tail; or, in entries stored whole, head
 * alone (tail NULL). */
typedef struct cluster_entry {
	uint64_t seq;	  /* From the entry id. */
	size_t index;	  /* Position in the reply. */
	const char *head; /* Frame JSON before the seq digits, or all. */
	size_t hlen;	  /* Its length. */
	const char *tail; /* Frame JSON after the seq digits, or NULL. */
	size_t tlen;	  /* Its length. */
	uint64_t prev;	  /* Seq of the topic's previous message, or 0. */
} cluster_entry_t;

typedef void (*cluster_entry_fn)(const cluster_entry_t *e, void *ud);

/* Calls fn for each well-formed entry of a topic stream read reply,
 * skipping anything else (a broken or hostile server must not crash the
 * hub). Returns the number of entries visited, or -1 when r is not an
 * array. */
int cluster_stream_walk(const struct redisReply *r, cluster_entry_fn fn,
			void *ud);

/* Returns e's client frame JSON, allocated, with its length in *len. */
char *cluster_entry_json(const cluster_entry_t *e, size_t *len);

/* One record of a pub/sub payload, its parts borrowed from the payload. */
typedef void (*cluster_record_fn)(uint64_t seq, const char *path, size_t plen,
				  const char *json, size_t jlen, void *ud);

/* Calls fn, in order, for each well-formed record of a pub/sub payload:
 * one or more records "<seq>\n<path JSON>\n<client JSON>" separated by
 * NUL bytes. Malformed records are skipped. */
void cluster_each_record(const char *data, size_t len, cluster_record_fn fn,
			 void *ud);

/* One record of a log read, with its topic. */
typedef void (*cluster_log_fn)(const char *topic, uint64_t seq,
			       const char *path, size_t plen, const char *json,
			       size_t jlen, void *ud);

/* Calls fn, in order, for each well-formed record of a log read reply
 * (entries of t <topic> m <records> pairs), skipping anything else.
 * Returns the number of entries, or -1 when r is not an array. */
int cluster_log_walk(const struct redisReply *r, cluster_log_fn fn, void *ud);

/* Rebuilds a message from a stored record (client frame JSON and path,
 * which already ends with this node; node is used when it is empty).
 * Returns a new message, or NULL (logged) when the record is malformed. */
msg_t *cluster_record_msg(const char *node, uint64_t seq, const char *path,
			  size_t plen, const char *json, size_t jlen);

/* Counters for /metrics. */
typedef struct cluster_stats {
	uint64_t stored;       /* Messages stored. */
	uint64_t duplicates;   /* Stores that found the mid already there. */
	uint64_t store_errors; /* Stores that failed. */
	uint64_t received;     /* Messages received from Redis pub/sub. */
	uint64_t redelivered;  /* Copies dropped (channel + pattern). */
	uint64_t backlogs;     /* Backlog reads. */
	uint64_t outages;      /* Times the link went down. */
	uint64_t commands;     /* Redis commands sent. */
	uint64_t writes;       /* Socket writes to Redis. */
	uint64_t pending;      /* Commands awaiting replies. */
} cluster_stats_t;

/* Fills *out. */
void cluster_stats(const cluster_t *c, cluster_stats_t *out);

#endif
