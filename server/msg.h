/* msg.h: one accepted message and its refcounted, encode-once WebSocket
 * frame. A message is immutable once stored; history entries and
 * connection queues share it by reference. */
#ifndef PARLEY_MSG_H
#define PARLEY_MSG_H

#include <stddef.h>
#include <stdint.h>

/* One complete server-to-client WebSocket frame (header + payload), with
 * at least LWS_PRE bytes of writable headroom before data. Shared by every
 * receiver; freed by the last frame_unref. */
typedef struct frame {
	uint32_t refs;	     /* Holders: messages, connection queues. */
	uint32_t len;	     /* Bytes from data: header + payload. */
	unsigned char *data; /* First byte of the WebSocket header. */
	uint32_t payload_len; /* Bytes of payload at the end of data. */
	uint32_t batch;	      /* 1: a parley.fed.v1 msg frame, which a
				 batching peer link joins with its
				 neighbours in the queue (outq_set_batch). */
	void *block;	     /* What the last frame_unref frees: the frame's
				own allocation, or the message that holds it
				(msg_frame_place). */
} frame_t;

/* Returns a text frame holding a copy of payload (len bytes), refs = 1.
 * Aborts on out-of-memory. */
frame_t *frame_new_text(const char *payload, size_t len);

/* Returns a text frame (masked like frame_new_text_masked when masked is
 * 1) with room for a payload of len bytes, which the caller writes at
 * *payload (encoders that know the length write in place instead of
 * copying). refs = 1. Aborts on out-of-memory. */
frame_t *frame_alloc_text(size_t len, int masked, char **payload);

/* Returns a text frame like frame_new_text, but masked as a client must
 * send it. The mask key is zero, so the payload bytes stay as they are and
 * one encoding serves every link (the key only matters against caching
 * proxies, and peer links are TLS end to end). */
frame_t *frame_new_text_masked(const char *payload, size_t len);

/* Bytes a text frame of a len-byte payload takes: header + payload. */
size_t frame_text_size(size_t len);

/* Writes at p the header of a text frame of a len-byte payload (masked
 * with the zero key when masked is 1) and returns its bytes: at most
 * FRAME_HDR_MAX. */
size_t frame_text_header(unsigned char *p, size_t len, int masked);
#define FRAME_HDR_MAX 14

/* Returns an empty frame (len 0, refs = 1) with room for cap bytes of
 * frames appended by frame_append_text: one buffer for many small
 * frames, written in one go. Aborts on out-of-memory. */
frame_t *frame_alloc_buf(size_t cap);

/* Appends the header of a text frame with a len-byte payload to f (made
 * by frame_alloc_buf(cap)) and returns where the caller writes the
 * payload, or NULL when it does not fit in cap. */
char *frame_append_text(frame_t *f, size_t cap, size_t len);

/* Returns a close frame carrying code and reason (truncated to fit the
 * 125-byte control payload), refs = 1. Aborts on out-of-memory. */
frame_t *frame_new_close(int code, const char *reason);

/* Takes one more reference; returns f. */
frame_t *frame_ref(frame_t *f);

/* Drops one reference; frees the frame at zero. NULL is a no-op. */
void frame_unref(frame_t *f);

/* Returns the payload (the JSON text) of a frame; not NUL-terminated. */
const char *frame_payload(const frame_t *f);

typedef struct msg {
	uint32_t refs; /* Holders: history, in-flight publish, backlog. */
	uint64_t seq;  /* Position in this node's history; 0 until stored. */
	int64_t ts;    /* Milliseconds since the epoch, set by the origin. */
	const char *topic;  /* All strings live in the same allocation. */
	size_t topic_hash;  /* strmap_hash(topic): history and router look
			       the topic up once each per message. */
	const char *mid;    /* Globally unique message id. */
	const char *origin; /* Node that accepted it. */
	const char *from;   /* user@node of the author. */
	uint16_t slen[4];   /* strlen of topic, mid, origin and from. */
	int plain;	    /* 1 when slen holds them and none of the four
			       has a byte JSON escapes: the msg encoders
			       then need not measure them (they are
			       written for every message). */
	const char *body;   /* Compact JSON text of the body (body_len bytes,
			       followed by '}', not NUL): it sits where the
			       client frame's payload ends, so the frame is
			       written around it (msg_frame_place). */
	size_t body_len;    /* Bytes of body. */
	frame_t *frame;	    /* Encoded client "msg" frame, or NULL until set. */
	frame_t *own;	    /* The frame inside this message's allocation:
			       its first reference is the message's hold on
			       that allocation, so queues that still send
			       it keep the memory after the message goes. */
	char **path;	    /* Nodes that stored it, origin first and this node
			       last (pointers, then the names: inside the
			       message's allocation, own_path, or an
			       allocation of its own when path_alloc). */
	size_t n_path;	    /* Entries in path. */
	int path_alloc;	    /* path is an allocation of its own. */
	char *own_path[1];  /* The path of a message this node accepted from
			       a client ([origin]): no allocation. */
	frame_t *fed_frame[2]; /* parley.fed.v1 "msg" frame, encoded once when
				  first needed: [0] unmasked (sent by the
				  listening side), [1] masked (sent by the
				  dialling side). */
} msg_t;

/* Bytes reserved before the body for the client frame's WebSocket header
 * and the JSON ahead of the body, beyond the raw lengths of topic, mid,
 * origin and from: the keys, quotes, ts and cursor (codec.c's layout). */
#define MSG_HEAD_ROOM 160

/* Returns a new message (refs = 1, seq = 0, no frame) holding copies of the
 * strings, with the body placed where its client frame will end.
 * Aborts on out-of-memory. */
msg_t *msg_new(const char *topic, const char *mid, const char *origin,
	       const char *from, int64_t ts, const char *body, size_t body_len);

/* msg_new with the path set as msg_set_path(m, prev, n, self) would, in
 * the same allocation (self NULL: no path). */
msg_t *msg_new_path(const char *topic, const char *mid, const char *origin,
		    const char *from, int64_t ts, const char *body,
		    size_t body_len, const char *const *prev, size_t n,
		    const char *self);

/* A new message's fields, its strings with their lengths (bytes, without
 * the NUL each must end with), for a caller that measured them already. */
typedef struct msg_fields {
	const char *topic, *mid, *origin, *from;
	size_t topic_len, mid_len, origin_len, from_len;
	int64_t ts;
	const char *body;
	size_t body_len;
} msg_fields_t;

/* msg_new_path from measured fields. prev_len[i] is the length of prev[i]
 * (prev_len NULL: they are measured here); self_len that of self. */
msg_t *msg_new_fields(const msg_fields_t *f, const char *const *prev,
		      const size_t *prev_len, size_t n, const char *self,
		      size_t self_len);

/* Returns the frame inside m's allocation, with a new reference, set up
 * for a text payload of len bytes whose last body_len + 1 bytes are the
 * body and '}' already in place; the caller writes the len - body_len - 1
 * bytes before them. Returns NULL (the caller then allocates a frame of
 * its own) when that head does not fit in the room msg_new left, or the
 * frame was placed before. */
frame_t *msg_frame_place(msg_t *m, size_t len);

/* Sets the path: a copy of the n nodes of prev (the path it arrived
 * with, or none), then self. Aborts on out-of-memory. */
void msg_set_path(msg_t *m, const char *const *prev, size_t n,
		  const char *self);

/* Returns 1 when node is on the message's path, else 0. */
int msg_on_path(const msg_t *m, const char *node);

/* Takes one more reference; returns m. */
msg_t *msg_ref(msg_t *m);

/* Drops one reference; at zero frees the message and drops its frame. NULL
 * is a no-op. */
void msg_unref(msg_t *m);

/* Appends m (the caller's reference passes to the array) to the growable
 * array v of *n messages and room for *cap, growing it by doubling.
 * Returns the array, which may have moved. Aborts on out-of-memory. */
msg_t **msg_array_push(msg_t **v, size_t *n, size_t *cap, msg_t *m);

#endif
