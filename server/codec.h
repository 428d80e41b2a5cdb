/* codec.h: the parley.v1 wire format: decoding client requests and
 * encoding hub frames. All JSON handling of the client protocol lives
 * here. */
#ifndef PARLEY_CODEC_H
#define PARLEY_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "msg.h"

enum req_op { REQ_AUTH, REQ_SUB, REQ_UNSUB, REQ_PUB, REQ_PING, REQ_BATCH };

/* One decoded client request. Pointers borrow from root. */
typedef struct req {
	json_t *root;	   /* The parsed frame (owned; req_free drops). */
	enum req_op op;	   /* Operation. */
	json_t *id;	   /* Request id to echo, or NULL. */
	const char *topic; /* sub/unsub/pub: topic or filter. */
	json_t *body;	   /* pub: the body value. */
	const char *token; /* auth: the token. */
	size_t token_len;  /* auth: its length. */
	const char *since; /* sub: cursor, or NULL. */
	long long last;	   /* sub: backlog count when has_last. */
	int has_last;	   /* sub: "last" was given. */
	json_t *msgs;	   /* batch: the array of requests. */
} req_t;

/* Decodes one client frame of len bytes. Returns 0, or a negative code
 * (PE_BAD_JSON, PE_BAD_REQUEST, PE_UNKNOWN_OP, PE_BAD_TOPIC …) with
 * *reason set to a static human text. In both cases r->id is set when the
 * frame carried a valid id, and the caller must call req_free. Topics are
 * checked for type and length only; syntax is checked by the caller. */
int codec_decode(const char *buf, size_t len, req_t *r, const char **reason);

/* A publish request decoded without building a JSON tree (the fast
 * path): pointers into the frame, which must outlive it. */
typedef struct fast_pub {
	char topic[256];  /* Topic (not yet checked for syntax). */
	const char *body; /* The body's JSON text, validated. */
	size_t body_len;  /* Its length. */
	const char *id;	  /* The id's JSON text (a string or an integer),
			     or NULL. */
	size_t id_len;	  /* Its length. */
} fast_pub_t;

/* Recognises a plain publish request ({"op":"pub","topic":…,"body":…,
 * "id":…}, keys without escapes, any order, other keys ignored) and
 * decodes it with a validating scanner. Returns 1 with *out set, or 0
 * when the frame is anything else or anything unusual: the caller then
 * uses codec_decode, which also words every error. */
int codec_fast_pub(const char *buf, size_t len, fast_pub_t *out);

/* A batch frame, {"op":"batch","msgs":[R1,R2,…]}: requests that the hub
 * handles in order, each as if it had come in a frame of its own
 * (docs/protocol.md). The requests are read one at a time, in place when
 * the frame starts as parley's clients write it (codec_batch_begin), else
 * from the tree codec_decode made (codec_batch_tree). Anything unusual
 * part way (trailing members, a value jscan is unsure of, broken JSON)
 * hands the rest of the frame to Jansson, which skips the requests
 * already read. */
typedef struct codec_batch {
	const char *buf; /* In place: the frame, or NULL once on the tree. */
	size_t len;	 /* Its length. */
	size_t pos;	 /* Where the in-place reading stands. */
	json_t *msgs;	 /* The tree's array of requests (owned), or NULL. */
	char *text;	 /* The last request taken from the tree, dumped. */
	size_t index;	 /* Requests handed out so far. */
} codec_batch_t;

#define CB_END 0 /* No request is left. */
#define CB_PUB 1 /* A publish in parley's layout, decoded into *fp. */
#define CB_REQ 2 /* Another request, as the text of a frame of its own. */

/* Returns 1 and starts b when buf begins {"op":"batch","msgs":[, else 0
 * (the frame goes to codec_decode, which may still find a batch). */
int codec_batch_begin(codec_batch_t *b, const char *buf, size_t len);

/* Starts b on the msgs array of a REQ_BATCH request (a reference is
 * taken: req_free may come first). */
void codec_batch_tree(codec_batch_t *b, json_t *msgs);

/* The next request: CB_PUB with *fp, CB_REQ with its text at *req (valid
 * until the next call), CB_END, or PE_BAD_JSON / PE_BAD_REQUEST with
 * *reason when the frame breaks here (the requests before were good;
 * nothing from here on can be read). */
int codec_batch_next(codec_batch_t *b, fast_pub_t *fp, const char **req,
		     size_t *req_len, const char **reason);

/* Frees what b holds. */
void codec_batch_end(codec_batch_t *b);

/* {"op":"ok","id":<id JSON text>,"mid":…}: the id is echoed byte for
 * byte (id may be NULL); mid_json is jw_str_len(mid, &mid_raw), measured
 * once for both calls. Returns the payload's length; codec_ok_mid_put
 * writes it at d and returns its end. */
size_t codec_ok_mid_len(const char *id, size_t id_len, size_t mid_json);
char *codec_ok_mid_put(char *d, const char *id, size_t id_len, const char *mid,
		       size_t mid_raw, size_t mid_json);

/* Returns the JSON value of an id's text (a new reference), or NULL. */
json_t *codec_id_value(const char *id, size_t id_len);

/* Frees what codec_decode allocated. */
void req_free(req_t *r);

/* Decodes the body of POST /v1/publish: {"topic": string, "body": any}.
 * Returns 0 with *root (owned: json_decref it), *topic and *body
 * (borrowed from root), or PE_BAD_JSON / PE_BAD_REQUEST with *reason; on
 * error *root is NULL. */
int codec_decode_publish(const char *buf, size_t len, json_t **root,
			 const char **topic, json_t **body,
			 const char **reason);

/* Encodes the body value compactly. Returns a malloc'd NUL-terminated
 * string and its length in *len, or NULL on failure. */
char *codec_dump_body(const json_t *body, size_t *len);

/* {"op":"ok","id":…} plus an optional string field key:val. New frame. */
frame_t *codec_ok(const json_t *id, const char *key, const char *val);

/* {"op":"pong","id":…}. New frame. */
frame_t *codec_pong(const json_t *id);

/* {"op":"error","code":…,"reason":…,"id":…,"topic":…}; id and topic may
 * be NULL, reason NULL uses parley_strerror(err). New frame. */
frame_t *codec_error(const json_t *id, int err, const char *reason,
		     const char *topic);

/* {"op":"presence","topic":…,"joined":[…],"left":[…]}. New frame. */
frame_t *codec_presence(const char *topic, const char *const *joined,
			size_t n_joined, const char *const *left,
			size_t n_left);

/* The "msg" frame of a stored message. New frame. */
frame_t *codec_msg(const msg_t *m, const char *cursor);

/* The same frame, written inside m's own allocation around its body
 * (msg_frame_place) when it fits there, else like codec_msg. cursor_len
 * is strlen(cursor), and the cursor must have no byte JSON escapes
 * (history_cursor's never do): it is not measured again. New
 * reference. */
frame_t *codec_msg_place(msg_t *m, const char *cursor, size_t cursor_len);

/* Appends, like codec_msg_json, the msg frame's payload of m with a
 * cursor that is only cursor_head, and returns the offset in *buf where
 * the cursor's last part goes: what comes before ends with the cursor's
 * opening quote and cursor_head, what follows starts with its closing
 * quote (the cluster's store script puts the seq in between). Aborts on
 * out-of-memory. */
size_t codec_msg_split(const msg_t *m, const char *cursor_head, char **buf,
		       size_t *len, size_t *cap);

/* The length of the JSON array of the n strings of path, which
 * codec_path_put writes at d (no NUL), returning its end. */
size_t codec_path_len(const char *const *path, size_t n);
char *codec_path_put(char *d, const char *const *path, size_t n);

/* Appends the JSON object text of a message (the msg frame's payload) to
 * a growing buffer (*buf, *len, *cap; realloc'd). Returns 0 or PE_NOMEM.
 * Used by the HTTP history answer. */
int codec_msg_json(const msg_t *m, const char *cursor, char **buf, size_t *len,
		   size_t *cap);

#endif
