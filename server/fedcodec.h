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
	FED_PRESENCE,
	FED_BATCH
};

/* Largest payload of a batch frame a node sends: the receiver's frame
 * bound (2 x limits.max_frame_bytes + 64 KiB) always admits it, and at
 * about one TLS record a batch spans at most two reads. */
#define FED_BATCH_MAX 16384

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
	int batch;	    /* hello: the sender reads batch frames. */
	json_t *msgs;	    /* batch (the general decoder): its elements. */
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

/* Reads the msg frames of a batch frame, {"op":"batch","msgs":[…]}, one
 * at a time: the frames fedcodec_msg writes, joined by the sender's
 * queue (outq_set_batch). Written in that layout, the elements are read
 * in place by the layout decoder; anything unusual hands the rest of the
 * frame to Jansson, which re-reads it and skips the elements already
 * read. */
typedef struct fed_batch {
	const char *buf; /* The frame's text (borrowed); NULL when the
			    batch came as a tree (fedcodec_batch_tree). */
	size_t len;	 /* Its bytes. */
	size_t pos;	 /* Where the next element starts. */
	json_t *root;	 /* The frame's tree (owned), or NULL. */
	json_t *msgs;	 /* Its elements, in root. */
	size_t index;	 /* Elements read so far. */
	char *scratch;	 /* Strings of the element being read (len + 1
			    bytes, owned): one allocation per batch. */
	int state;	 /* 0 reading, 1 after the last element, -1 the
			    rest is not a batch (see fedcodec_batch_next). */
} fed_batch_t;

/* Starts reading buf (len bytes) when it is a batch frame in the layout
 * a parleyd sends and returns 1; else returns 0 (b untouched): decode
 * the frame with fedcodec_decode, which reports a batch of any other
 * layout as FED_BATCH, to be read with fedcodec_batch_tree. */
int fedcodec_batch_begin(fed_batch_t *b, const char *buf, size_t len);

/* Starts reading the batch frame fedcodec_decode gave as in (op
 * FED_BATCH); takes its tree over. */
void fedcodec_batch_tree(fed_batch_t *b, fed_in_t *in);

/* Decodes the next element into in, which then borrows from b and the
 * frame. Returns 1 and sets *rc to 0 or to a PE_ code with *reason, as
 * fedcodec_decode does (an element that is not a msg is PE_BAD_REQUEST):
 * call fedcodec_free on in then, whatever *rc says. Returns 0 after the
 * last element, and -1 with *reason when the rest of the frame is not a
 * batch (what came before it stays read). */
int fedcodec_batch_next(fed_batch_t *b, fed_in_t *in, int *rc,
			const char **reason);

/* Where the mid of the next element is (fedcodec_peek_mid), or NULL. */
const char *fedcodec_batch_peek_mid(const fed_batch_t *b, size_t *n);

/* Frees what b holds. */
void fedcodec_batch_end(fed_batch_t *b);

/* The envelope of a batch frame: what outq_set_batch joins msg frames
 * with. */
#define FED_BATCH_OPEN	"{\"op\":\"batch\",\"msgs\":["
#define FED_BATCH_CLOSE "]}"

/* {"op":"hello","node":…,"cursor":… or null,"batch":true}: batch says
 * that this node reads batch frames. New frame. */
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
