/* codec.h: every JSON encoding and decoding of the parley.v1 protocol.
 * Outgoing requests become ready-to-send buffers; incoming frames are
 * parsed and validated into a parley__frame so that no other module
 * touches JSON or trusts the hub's input. */
#ifndef PARLEY_CODEC_H
#define PARLEY_CODEC_H

#include <stddef.h>
#include <stdint.h>

struct json_t;

/* One outgoing WebSocket text message, with the headroom lws needs before
 * the payload. Owned by whoever holds it; freed with free(). */
typedef struct parley__txbuf {
	struct parley__txbuf *next; /* Next in the connection's send queue. */
	size_t len;		    /* Payload bytes. */
	unsigned char data[];	    /* PARLEY__HEADROOM bytes, then payload. */
} parley__txbuf;

/* Headroom before the payload in parley__txbuf.data (lws's LWS_PRE). */
extern const size_t parley__headroom;

/* Returns the payload of a buffer. */
#define PARLEY__TXBUF_PAYLOAD(b) ((b)->data + parley__headroom)

/* Hub frame kinds the library knows. */
enum parley__op {
	PARLEY__OP_MSG = 1,
	PARLEY__OP_OK,
	PARLEY__OP_ERROR,
	PARLEY__OP_PONG,
	PARLEY__OP_PRESENCE,
};

/* One validated frame from the hub. Every string is borrowed from root,
 * non-NULL when the op requires it, and free of NUL bytes. */
typedef struct parley__frame {
	struct json_t *root; /* The parsed object; owns the strings. */
	int op;		     /* enum parley__op. */
	int has_id;	     /* 1 when id is an integer the library may have
				sent (>= 1); string ids are never ours. */
	uint64_t id;	     /* Request id answered, when has_id. */
	const char *topic;   /* msg, presence; error: optional filter. */
	const char *mid;     /* msg; ok to a publish (optional). */
	const char *origin;  /* msg. */
	const char *from;    /* msg. */
	const char *cursor;  /* msg. */
	int64_t ts;	     /* msg. */
	struct json_t *body; /* msg: any JSON value (borrowed). */
	const char *user;    /* ok to auth (optional). */
	const char *code;    /* error: the wire word. */
	const char *reason;  /* error: human text ("" when absent). */
} parley__frame;

/* Parses and validates len bytes from the hub into *f. Returns 0 (free f
 * with parley__codec_frame_free); PARLEY_EPROTO with a description in why
 * (whylen bytes, always NUL-terminated) for invalid JSON, a non-object,
 * missing or mistyped fields, or an unknown op; PARLEY_ENOMEM. */
int parley__codec_decode(const char *buf, size_t len, parley__frame *f,
			 char *why, size_t whylen);

/* Releases what a decoded frame holds; safe on a zeroed frame. */
void parley__codec_frame_free(parley__frame *f);

/* Returns the msg body as compact JSON text (malloc'd, NUL-terminated;
 * *len its length), or NULL when out of memory. */
char *parley__codec_body_text(const parley__frame *f, size_t *len);

/* Returns the msg body's characters when it is a JSON string (borrowed
 * from the frame; *len its length), else NULL. */
const char *parley__codec_body_string(const parley__frame *f, size_t *len);

/* Returns the msg as one compact JSON object (topic, mid, origin, from, ts,
 * cursor, body), malloc'd, or NULL when out of memory. */
char *parley__codec_msg_json(const parley__frame *f);

/* Makes a publish body from len bytes of text read as kind (enum
 * parley_body) into *out. Returns 0; PARLEY_EINVAL for invalid JSON or
 * UTF-8, or an unknown kind; PARLEY_ENOMEM. */
int parley__codec_body_new(const char *text, size_t len, int kind,
			   struct json_t **out);

/* Drops a body made by parley__codec_body_new; NULL is a no-op. */
void parley__codec_body_free(struct json_t *body);

/* Request encoders. Each returns a new buffer, or NULL when out of memory.
 * last < 0 and since NULL mean "no backlog". */
parley__txbuf *parley__codec_auth(uint64_t id, const char *token);
parley__txbuf *parley__codec_sub(uint64_t id, const char *filter, long last,
				 const char *since);
parley__txbuf *parley__codec_unsub(uint64_t id, const char *filter);
parley__txbuf *parley__codec_pub(uint64_t id, const char *topic,
				 struct json_t *body);

#endif
