/* outq.h: the outgoing side of one WebSocket connection (a client session
 * or a peer link): a bounded ring of shared, pre-encoded frames, a place
 * on the hub's dirty list, and the batched flush of PERFORMANCE.md (no lws
 * call when queueing; one LWS_WRITE_RAW write per connection per loop
 * pass; never a write while lws holds a partial one). */
#ifndef PARLEY_OUTQ_H
#define PARLEY_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

struct lws;
struct hub;

typedef struct outq outq_t;

/* Called at the end of a flush that emptied the queue (e.g. to queue the
 * next batch of a replay). May push frames. */
typedef void (*outq_drain_fn)(outq_t *q);

struct outq {
	struct lws *wsi;	/* Connection written to. */
	struct hub *hub;	/* Owner of the dirty list and gather buffer. */
	frame_t **ring;		/* Queued frames (references). */
	uint32_t cap;		/* Ring capacity, a power of two. */
	uint32_t head;		/* Index of the oldest frame. */
	uint32_t len;		/* Frames queued. */
	size_t bytes;		/* Bytes queued. */
	size_t max_bytes;	/* Bound checked by outq_push. */
	size_t exempt_bytes;	/* Queued backlog bytes outside the bound. */
	uint64_t head_abs;	/* Number of frames ever popped. */
	uint64_t exempt_end;	/* Frames before this absolute index count as
				   exempt (backlog queued ahead). */
	int dirty;		/* 1 while on the hub's dirty list. */
	int want_writable;	/* 1 while waiting for WRITEABLE. */
	int failed;		/* A write failed: the connection is dead. */
	outq_t *dirty_next;	/* Next on the dirty list. */
	outq_t **dirty_pprev;	/* Link pointing at this one. */
	frame_t *open;		/* The queue's own buffer of small frames at
				   the ring's tail, while more fit in it
				   (outq_push_text); else NULL. */
	size_t open_cap;	/* Its capacity. */
	size_t text_cap;	/* Capacity of the next one: doubles each
				   time one fills up, so a busy publisher's
				   answers share a few buffers and a quiet
				   session's take little memory. */
	outq_drain_fn on_drain; /* Optional, see outq_drain_fn. */
	uint64_t *bytes_out;	/* Counter to add written bytes to. */
	uint64_t *writes;	/* Counter to add writes to. */
	/* The envelope of a batch frame (outq_set_batch). */
	const char *batch_open, *batch_close;
	size_t batch_open_len, batch_close_len;
	size_t batch_max;  /* Largest payload of a batch frame; 0: none. */
	uint64_t *batches; /* Counter to add batch frames written to. */
};

/* Prepares q for wsi (q zeroed by the caller). */
void outq_init(outq_t *q, struct hub *h, struct lws *wsi, size_t max_bytes,
	       uint64_t *bytes_out, uint64_t *writes);

/* Queues f (takes a reference) unless that would exceed max_bytes even
 * after what is queued was handed to the socket (queues without on_drain).
 * Returns 0, or -1 when not queued (the caller decides what an overflow
 * means). */
int outq_push(outq_t *q, frame_t *f);

/* Queues f whatever the bound (close frames, control answers). */
void outq_push_force(outq_t *q, frame_t *f);

/* Queues a text frame of a len-byte payload, which the caller writes at
 * the returned address before queueing anything else, or returns NULL
 * when that would exceed max_bytes (as outq_push). Small answers (a
 * publish's "ok") are appended to one buffer the queue owns: no
 * allocation of their own, and several go out in one copy. */
char *outq_push_text(outq_t *q, size_t len);

/* Queues a backlog frame (shared with history, so it costs the queue a
 * pointer): counted apart from max_bytes, so a client reading a large
 * backlog is not mistaken for a slow consumer. Callers bound the exempt
 * total themselves. */
void outq_push_exempt(outq_t *q, frame_t *f);

/* From now on, consecutive queued frames marked batch (frame_t) leave as
 * one text frame: open, their payloads joined by ',', close, at most max
 * payload bytes (below 65,536). A peer link turns this on once the peer
 * said it reads batch frames: it then handles one WebSocket frame per
 * batch instead of per message. Only frames already queued when the
 * flush runs are joined, so nothing waits for a batch to fill. */
void outq_set_batch(outq_t *q, const char *open, const char *close, size_t max);

/* Drops every queued frame; returns how many were dropped. */
uint32_t outq_clear(outq_t *q);

/* Writes queued frames in batches until the queue is empty or lws holds
 * a partial write (then asks for WRITEABLE). Returns 0, or -1 when a write
 * failed (the queue is cleared and q->failed set). */
int outq_flush(outq_t *q);

/* Flushes every queue on the hub's dirty list (the uv_check callback). */
void outq_flush_all(struct hub *h);

/* Handles WRITEABLE for this connection: flushes. Returns -1 when the
 * connection failed, else 0. */
int outq_writeable(outq_t *q);

/* Frees the queue's memory and leaves the dirty list. */
void outq_release(outq_t *q);

#endif
