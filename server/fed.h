/* fed.h: federation: the mTLS listener for peers, the links we dial, the
 * per-peer export/import policy, forwarding with loop and duplicate
 * suppression, and replay after outages (docs/federation.md). */
#ifndef PARLEY_FED_H
#define PARLEY_FED_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "msg.h"

struct hub;
typedef struct fed fed_t;

/* Why a message from a peer was dropped. */
enum fed_drop {
	FED_DROP_IMPORT = 0, /* Topic outside the peer's import patterns. */
	FED_DROP_LOOP,	     /* This node is its origin or on its path. */
	FED_DROP_DUPLICATE,  /* Its mid was already stored. */
	FED_DROP_INVALID,    /* Malformed frame or inconsistent fields. */
	FED_DROP_RELAY,	     /* Another origin from a peer without relay. */
	FED_DROP__COUNT
};

/* Counters of one peer, for /metrics. */
typedef struct fed_stats {
	uint64_t msgs_in;   /* Messages accepted from the peer. */
	uint64_t msgs_out;  /* Messages queued to the peer. */
	uint64_t bytes_in;  /* Frame bytes received. */
	uint64_t bytes_out; /* Bytes written. */
	uint64_t writes;    /* Batched writes. */
	uint64_t batches_in;  /* Batch frames received. */
	uint64_t batches_out; /* Batch frames written. */
	uint64_t replayed;  /* Messages sent as replay. */
	uint64_t gaps;	    /* Gaps the peer reported to us. */
	uint64_t connects;  /* Links that reached "up". */
	uint64_t dropped[FED_DROP__COUNT]; /* Dropped, by reason. */
} fed_stats_t;

/* A read-only view of one peer for /healthz and /metrics. */
typedef struct fed_peer_view {
	const char *name;	  /* Peer node name. */
	const char *state;	  /* connecting, up, backoff, refused, idle. */
	const char *why;	  /* Last error or refusal ("" if none). */
	const char *direction;	  /* "out", "in" or "" when not up. */
	int replaying;		  /* 1 while we replay to it. */
	size_t queue_bytes;	  /* Bytes queued to it. */
	const char *rx_cursor;	  /* Last position received from it. */
	const fed_stats_t *stats; /* Counters. */
} fed_peer_view_t;

/* Builds the federation of hub h (h->cfg->fed_enabled): peers from the
 * configuration and saved cursors from the state file. Returns NULL when
 * the state file exists but cannot be read (logged). */
fed_t *fed_new(struct hub *h);

/* Creates the listener and client vhosts on h->lws and starts dialling.
 * Returns 0 or -1 (logged). */
int fed_start(fed_t *f);

/* Queues a just-stored message to every linked peer that should get it
 * (export patterns match, not on its path). */
void fed_forward(fed_t *f, msg_t *m);

/* Tells linked peers that exported topic gained or lost one of our own
 * identities. */
void fed_presence_local(fed_t *f, const char *topic, const char *ident,
			int joined);

/* Returns 1 when this instance holds the node's links and wants every
 * live message (cluster mode's gateway). */
int fed_wants_live(const fed_t *f);

/* Returns 1 when a link that is up has bytes waiting to be read. */
int fed_input_pending(const fed_t *f);

/* Applies reloaded peers: new ones are dialled, removed ones closed, a
 * changed url redialled; policies apply at once. next replaces the live
 * configuration right after this returns. */
void fed_reload(fed_t *f, const config_t *next);

/* Shutdown: closes links, stops timers (closing their handles) and saves
 * the state file. */
void fed_stop(fed_t *f);

/* Frees everything (after fed_stop and the loop has closed handles). NULL
 * is a no-op. */
void fed_free(fed_t *f);

/* Fills up to max views; returns the number of peers. */
size_t fed_peers_view(const fed_t *f, fed_peer_view_t *out, size_t max);

/* Returns 1 when this instance holds the node's links (always in
 * standalone mode). */
int fed_is_gateway(const fed_t *f);

/* Returns the name of a drop reason (label value in /metrics). */
const char *fed_drop_name(enum fed_drop d);

#endif
