/* fedcodec.h: the parley.fed.v1 wire format (docs/federation.md): decoding
 * what a peer sends and encoding what we send. Frames for the dialling
 * side are masked (masked = 1), for the listening side not. */
#ifndef PARLEY_FEDCODEC_H
#define PARLEY_FEDCODEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* Longest path accepted: a federation is a few dozen nodes. */
#define FED_PATH_MAX_NODES 64
/* Longest mid accepted from a peer. */
#define FED_MID_MAX 64

enum fed_op {
	FED_HELLO,
	FED_MSG,
	FED_GAP,
	FED_LIVE,
	FED_PING,
	FED_PONG,
	FED_PRESENCE
};

/* One decoded peer frame. Strings borrow from root. */
typedef struct fed_in {
	json_t *root;	    /* Parsed frame (owned). */
	enum fed_op op;	    /* Operation. */
	const char *node;   /* hello: the sender's node name. */
	const char *cursor; /* hello: our position it has (NULL: none);
			       msg: the sender's position of the message. */
	const char *topic;  /* msg. */
	const char *mid;    /* msg. */
	const char *origin; /* msg. */
	const char *from;   /* msg. */
	int64_t ts;	    /* msg. */
	json_t *body;	    /* msg (borrowed), or NULL when decoded by the
			       fast path: then body_text is set. */
	const char *body_text; /* msg: the body's JSON text, validated (points
				  into the frame), or NULL. */
	size_t body_len;       /* msg: bytes of body_text. */
	char *strings;	       /* msg, fast path: the decoded strings (owned). */
	const char **path;  /* msg: node names (array owned unless it is
			       path_buf; strings not). */
	size_t n_path;	    /* msg: entries of path. */
	/* msg: the bytes of topic, mid, origin, from and cursor, without
	 * their NULs (the decoders measured them; the checks and the
	 * message need them). */
	size_t topic_len, mid_len, origin_len, from_len, cursor_len;
	const char *after;  /* gap: the cursor that was asked for. */
	json_t *joined;	    /* presence: array of identity strings. */
	json_t *left;	    /* presence: array of identity strings. */
	json_int_t t;	    /* ping/pong: the sender's clock. */
	/* Last, and not cleared by the decoders: path's storage when the
	 * layout decoder fills it, so that a msg costs no allocation, and
	 * the bytes of each of path's names (msg, any decoder). */
	const char *path_buf[FED_PATH_MAX_NODES];
	size_t path_len[FED_PATH_MAX_NODES];
} fed_in_t;

/* Where the mid of a msg frame in fedcodec_msg's layout is, before
 * decoding: its n bytes (a plain string) at the returned address, or
 * NULL for a frame of any other layout. A hint only (the receiver starts
 * loading the mid's dedup slot early); fedcodec_decode decides. */
const char *fedcodec_peek_mid(const char *buf, size_t len, size_t *n);

/* Decodes one peer frame. Returns 0, or PE_BAD_JSON / PE_BAD_REQUEST /
 * PE_UNKNOWN_OP with *reason (static text). Checks field types and
 * syntax (topic, mid and node name shapes, path length); the caller checks
 * meaning. Call fedcodec_free in every case. A plain msg frame (no escaped
 * strings) is decoded by a validating scanner without a JSON tree; the
 * body stays the peer's text (in->body_text), which must outlive in. */
int fedcodec_decode(const char *buf, size_t len, fed_in_t *in,
		    const char **reason);

/* fedcodec_decode with Jansson only: what it falls back to. Exposed so
 * that the fuzz target can check the two agree. */
int fedcodec_decode_json(const char *buf, size_t len, fed_in_t *in,
			 const char **reason);

/* Frees what fedcodec_decode allocated. */
void fedcodec_free(fed_in_t *in);

/* {"op":"hello","node":…,"cursor":… or null}. New frame. */
frame_t *fedcodec_hello(const char *node, const char *cursor, int masked);

/* The "msg" frame of a stored message with its path and our cursor (the
 * one its client frame carries, when it has one). New frame. */
frame_t *fedcodec_msg(const msg_t *m, const char *cursor, int masked);

/* {"op":"gap","after":…,"reason":…}. New frame. */
frame_t *fedcodec_gap(const char *after, const char *reason, int masked);

/* {"op":"presence","topic":…,"joined":[ident]} or "left". New frame. */
frame_t *fedcodec_presence(const char *topic, const char *ident, int joined,
			   int masked);

/* {"op":"live"}, {"op":"ping","t":…} or {"op":"pong","t":…}. New frame. */
frame_t *fedcodec_simple(enum fed_op op, int64_t t, int masked);

#endif
