/* codec.c: parley.v1 JSON decoding and encoding (see codec.h). Hub frames
 * are written by hand into one buffer: they are small, their fields are
 * already validated, and the msg frame is on the hot path. */
#include "codec.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "jscan.h"
#include "jwrite.h"

/* Longest request id echoed back. */
#define ID_MAX 128

/* A growable byte buffer. */
struct sb {
	char *p;    /* Bytes. */
	size_t len; /* Used. */
	size_t cap; /* Allocated. */
	int oom;    /* An allocation failed; the content is incomplete. */
};

static void sb_reserve(struct sb *b, size_t more)
{
	size_t ncap;
	char *n;

	if (b->oom || b->len + more <= b->cap)
		return;
	ncap = b->cap ? b->cap : 256;
	while (ncap < b->len + more)
		ncap *= 2;
	n = realloc(b->p, ncap);
	if (!n) {
		b->oom = 1;
		return;
	}
	b->p = n;
	b->cap = ncap;
}

static void sb_put(struct sb *b, const char *s, size_t n)
{
	sb_reserve(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void sb_puts(struct sb *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

/* Appends s as a JSON string. */
static void sb_str(struct sb *b, const char *s)
{
	size_t raw, n = jw_str_len(s, &raw);

	sb_reserve(b, n);
	if (b->oom)
		return;
	b->len = (size_t)(jw_str_put(b->p + b->len, s, raw, n) - b->p);
}

static void sb_id(struct sb *b, const json_t *id)
{
	char num[32];

	if (!id)
		return;
	sb_puts(b, ",\"id\":");
	if (json_is_string(id)) {
		sb_str(b, json_string_value(id));
	} else {
		snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT,
			 json_integer_value(id));
		sb_puts(b, num);
	}
}

static frame_t *sb_frame(struct sb *b)
{
	frame_t *f;

	if (b->oom)
		abort(); /* The daemon may abort on out-of-memory. */
	f = frame_new_text(b->p, b->len);
	free(b->p);
	return f;
}

static const char *str_field(json_t *o, const char *key, int *bad)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return NULL;
	if (!json_is_string(v)) {
		*bad = 1;
		return NULL;
	}
	return json_string_value(v);
}

int codec_decode(const char *buf, size_t len, req_t *r, const char **reason)
{
	json_error_t jerr;
	json_t *op, *id, *v;
	const char *ops;
	int bad = 0;

	memset(r, 0, sizeof *r);
	/* Any value, so that a number or a string is told it is not an
	 * object rather than not JSON. */
	r->root = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
	if (!r->root || !json_is_object(r->root)) {
		*reason = r->root ? "frame must be a JSON object"
				  : "frame is not valid JSON";
		return PE_BAD_JSON;
	}
	id = json_object_get(r->root, "id");
	if (id) {
		if (json_is_integer(id) ||
		    (json_is_string(id) && json_string_length(id) <= ID_MAX)) {
			r->id = id;
		} else {
			*reason = "id must be an integer or a string of at "
				  "most 128 bytes";
			return PE_BAD_REQUEST;
		}
	}
	op = json_object_get(r->root, "op");
	if (!op || !json_is_string(op)) {
		*reason = "op must be a string";
		return op ? PE_BAD_REQUEST : PE_UNKNOWN_OP;
	}
	ops = json_string_value(op);
	if (!strcmp(ops, "pub"))
		r->op = REQ_PUB;
	else if (!strcmp(ops, "sub"))
		r->op = REQ_SUB;
	else if (!strcmp(ops, "unsub"))
		r->op = REQ_UNSUB;
	else if (!strcmp(ops, "ping"))
		r->op = REQ_PING;
	else if (!strcmp(ops, "auth"))
		r->op = REQ_AUTH;
	else if (!strcmp(ops, "batch"))
		r->op = REQ_BATCH;
	else {
		*reason = "unknown op";
		return PE_UNKNOWN_OP;
	}

	switch (r->op) {
	case REQ_AUTH:
		v = json_object_get(r->root, "token");
		if (!v || !json_is_string(v)) {
			*reason = "auth needs a string token";
			return PE_BAD_REQUEST;
		}
		r->token = json_string_value(v);
		r->token_len = json_string_length(v);
		break;
	case REQ_PUB:
		r->body = json_object_get(r->root, "body");
		if (!r->body) {
			*reason = "pub needs a body";
			return PE_BAD_REQUEST;
		}
		/* fallthrough */
	case REQ_SUB:
	case REQ_UNSUB:
		r->topic = str_field(r->root, "topic", &bad);
		if (!r->topic) {
			*reason = "topic must be a string";
			return PE_BAD_REQUEST;
		}
		if (r->op != REQ_SUB)
			break;
		r->since = str_field(r->root, "since", &bad);
		if (bad) {
			*reason = "since must be a cursor string";
			return PE_BAD_REQUEST;
		}
		v = json_object_get(r->root, "last");
		if (v) {
			if (!json_is_integer(v) || json_integer_value(v) < 0) {
				*reason = "last must be a non-negative integer";
				return PE_BAD_REQUEST;
			}
			r->has_last = 1;
			r->last = json_integer_value(v);
		}
		if (r->has_last && r->since) {
			*reason = "give last or since, not both";
			return PE_BAD_REQUEST;
		}
		break;
	case REQ_PING:
		break;
	case REQ_BATCH:
		r->msgs = json_object_get(r->root, "msgs");
		if (!json_is_array(r->msgs)) {
			r->msgs = NULL;
			*reason = "batch needs msgs, an array of requests";
			return PE_BAD_REQUEST;
		}
		break;
	}
	return 0;
}

int codec_decode_publish(const char *buf, size_t len, json_t **root,
			 const char **topic, json_t **body, const char **reason)
{
	json_error_t jerr;
	json_t *t;

	*root = json_loadb(buf, len, 0, &jerr);
	if (!json_is_object(*root)) {
		json_decref(*root);
		*root = NULL;
		*reason = "body must be a JSON object";
		return PE_BAD_JSON;
	}
	t = json_object_get(*root, "topic");
	*body = json_object_get(*root, "body");
	if (!json_is_string(t) || !*body) {
		json_decref(*root);
		*root = NULL;
		*reason = "need a string topic and a body";
		return PE_BAD_REQUEST;
	}
	*topic = json_string_value(t);
	return 0;
}

/* Compares the key of kl bytes at s + ks with word. */
static int key_is(const char *s, size_t ks, size_t kl, const char *word)
{
	size_t n = strlen(word);

	return kl == n && !memcmp(s + ks, word, n);
}

/* Everything but the topic's bytes: they are written with their NUL. */
static void fast_pub_reset(fast_pub_t *out)
{
	out->topic[0] = 0;
	out->body = out->id = NULL;
	out->body_len = out->id_len = 0;
}

/* Reads a publish laid out as parley's clients write it: "op" first, then
 * topic, id and body in any order, no whitespace, a plain topic and a
 * plain or integer id (libparley, the chat page and parley-loadgen each
 * use one of those orders). Compares literals instead of walking members.
 * Returns 1 with *out set, or 0 for anything else: the member walk then
 * reads the frame from the start. With end NULL the publish must be all
 * of buf; else it may be followed by anything, and *end is set past it
 * (a request inside a batch). */
static int pub_layout(const char *buf, size_t len, fast_pub_t *out, size_t *end)
{
	size_t p = 0, start, n;
	int seen_topic = 0;
	int64_t v;

	if (!JSCAN_LIT(buf, len, &p, "{\"op\":\"pub\""))
		return 0;
	while (JSCAN_LIT(buf, len, &p, ",\"")) {
		if (JSCAN_LIT(buf, len, &p, "topic\":\"")) {
			start = p;
			n = jscan_plain_string(buf, len, &p);
			if (seen_topic++ || n >= sizeof out->topic)
				return 0; /* (size_t)-1 included. */
			memcpy(out->topic, buf + start, n);
			out->topic[n] = 0;
		} else if (JSCAN_LIT(buf, len, &p, "id\":")) {
			if (out->id)
				return 0;
			out->id = buf + p;
			if (p < len && buf[p] == '"') {
				p++;
				n = jscan_plain_string(buf, len, &p);
				if (n > 128)
					return 0; /* (size_t)-1 included. */
			} else if (!jscan_small_int(buf, len, &p, &v)) {
				return 0;
			}
			out->id_len = (size_t)(buf + p - out->id);
		} else if (JSCAN_LIT(buf, len, &p, "body\":")) {
			/* Leading whitespace would be kept with the body. */
			if (out->body || p >= len ||
			    (unsigned char)buf[p] <= ' ')
				return 0;
			out->body = buf + p;
			if (jscan_value(buf, len, &p))
				return 0;
			out->body_len = (size_t)(buf + p - out->body);
		} else {
			return 0;
		}
	}
	if (!JSCAN_LIT(buf, len, &p, "}") || !seen_topic || !out->body)
		return 0;
	if (end)
		*end = p;
	return end || p == len;
}

int codec_fast_pub(const char *buf, size_t len, fast_pub_t *out)
{
	size_t ks, kl, vs, p;
	int rc, seen_op = 0, seen_topic = 0;
	jscan_obj_t o;

	fast_pub_reset(out);
	if (pub_layout(buf, len, out, NULL))
		return 1;
	fast_pub_reset(out);
	if (jscan_obj_begin(&o, buf, len))
		return 0;
	/* p: the end of each value. */
	while ((rc = jscan_obj_next(&o, &ks, &kl, &vs, &p)) == 1) {
		if (key_is(buf, ks, kl, "op")) {
			if (seen_op++ || p - vs != 5 ||
			    memcmp(buf + vs, "\"pub\"", 5))
				return 0;
		} else if (key_is(buf, ks, kl, "topic")) {
			size_t tl = p - vs - 2;

			/* Escaped or overlong topics take the slow path. */
			if (seen_topic++ || buf[vs] != '"' ||
			    tl >= sizeof out->topic ||
			    memchr(buf + vs + 1, '\\', tl))
				return 0;
			memcpy(out->topic, buf + vs + 1, tl);
			out->topic[tl] = 0;
		} else if (key_is(buf, ks, kl, "body")) {
			if (out->body)
				return 0;
			out->body = buf + vs;
			out->body_len = p - vs;
		} else if (key_is(buf, ks, kl, "id")) {
			/* An integer or a string of at most 128 bytes; an
			 * escaped string's length is checked by the slow
			 * path. */
			if (out->id ||
			    (buf[vs] == '"' &&
			     (p - vs - 2 > 128 ||
			      memchr(buf + vs, '\\', p - vs))) ||
			    (buf[vs] != '"' && buf[vs] != '-' &&
			     (buf[vs] < '0' || buf[vs] > '9')) ||
			    memchr(buf + vs, '.', p - vs))
				return 0;
			out->id = buf + vs;
			out->id_len = p - vs;
		}
	}
	return rc == 0 && seen_op && seen_topic && out->body;
}

/* The start of a batch as parley's clients write it. */
static const char batch_head[] = "{\"op\":\"batch\",\"msgs\":[";

int codec_batch_begin(codec_batch_t *b, const char *buf, size_t len)
{
	size_t p = 0;

	if (!JSCAN_LIT(buf, len, &p, batch_head))
		return 0;
	memset(b, 0, sizeof *b);
	b->buf = buf;
	b->len = len;
	b->pos = p;
	return 1;
}

void codec_batch_tree(codec_batch_t *b, json_t *msgs)
{
	memset(b, 0, sizeof *b);
	b->msgs = json_incref(msgs);
}

/* Hands the rest of an in-place batch to Jansson: the whole frame is
 * parsed and the requests already read are skipped. Duplicate members are
 * refused, or a second "msgs" would silently replace the first. Returns
 * 0, or PE_BAD_JSON / PE_BAD_REQUEST with *reason. */
static int batch_to_tree(codec_batch_t *b, const char **reason)
{
	json_error_t jerr;
	json_t *root =
	    json_loadb(b->buf, b->len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *op = json_object_get(root, "op");
	json_t *msgs = json_object_get(root, "msgs");

	b->buf = NULL;
	if (!root) {
		*reason = "batch is not valid JSON or repeats a member";
		return PE_BAD_JSON;
	}
	/* The head was read as a literal, so these hold unless the frame
	 * repeats a member. */
	if (!json_is_string(op) || strcmp(json_string_value(op), "batch") ||
	    !json_is_array(msgs) || json_array_size(msgs) < b->index) {
		json_decref(root);
		*reason = "batch needs msgs, an array of requests";
		return PE_BAD_REQUEST;
	}
	b->msgs = json_incref(msgs);
	json_decref(root);
	return 0;
}

int codec_batch_next(codec_batch_t *b, fast_pub_t *fp, const char **req,
		     size_t *req_len, const char **reason)
{
	const char *s = b->buf;
	size_t p = b->pos, e;
	int rc;

	free(b->text);
	b->text = NULL;
	if (!s)
		goto tree;
	jscan_ws(s, b->len, &p);
	if (b->index && p < b->len && s[p] == ',') {
		p++;
		jscan_ws(s, b->len, &p);
	} else if (p < b->len && s[p] == ']') {
		p++;
		jscan_ws(s, b->len, &p);
		if (p < b->len && s[p] == '}') {
			p++;
			jscan_ws(s, b->len, &p);
			if (p == b->len)
				return CB_END;
		}
		goto fallback; /* More members, or trailing bytes. */
	} else if (b->index) {
		goto fallback;
	}
	fast_pub_reset(fp);
	if (pub_layout(s + p, b->len - p, fp, &e)) {
		b->pos = p + e;
		b->index++;
		return CB_PUB;
	}
	e = p;
	if (jscan_value(s, b->len, &e) == JSCAN_OK) {
		*req = s + p;
		*req_len = e - p;
		b->pos = e;
		b->index++;
		return CB_REQ;
	}
fallback:
	rc = batch_to_tree(b, reason);
	if (rc)
		return rc;
tree:
	if (b->index >= json_array_size(b->msgs))
		return CB_END;
	b->text = json_dumps(json_array_get(b->msgs, b->index),
			     JSON_COMPACT | JSON_ENCODE_ANY);
	if (!b->text) {
		*reason = "request cannot be encoded";
		return PE_BAD_REQUEST;
	}
	*req = b->text;
	*req_len = strlen(b->text);
	b->index++;
	return CB_REQ;
}

void codec_batch_end(codec_batch_t *b)
{
	free(b->text);
	json_decref(b->msgs);
	memset(b, 0, sizeof *b);
}

size_t codec_ok_mid_len(const char *id, size_t id_len, size_t mid_json)
{
	return sizeof "{\"op\":\"ok\",\"mid\":}" - 1 + mid_json +
	       (id ? sizeof ",\"id\":" - 1 + id_len : 0);
}

char *codec_ok_mid_put(char *d, const char *id, size_t id_len, const char *mid,
		       size_t mid_raw, size_t mid_json)
{
	/* Sent for every publish: written in place, no intermediate buffer. */
	JW_LIT(d, "{\"op\":\"ok\"");
	if (id) {
		JW_LIT(d, ",\"id\":");
		memcpy(d, id, id_len);
		d += id_len;
	}
	JW_LIT(d, ",\"mid\":");
	d = jw_str_put(d, mid, mid_raw, mid_json);
	*d++ = '}';
	return d;
}

json_t *codec_id_value(const char *id, size_t id_len)
{
	json_error_t jerr;

	return id ? json_loadb(id, id_len, JSON_DECODE_ANY, &jerr) : NULL;
}

void req_free(req_t *r)
{
	json_decref(r->root);
	r->root = NULL;
}

char *codec_dump_body(const json_t *body, size_t *len)
{
	char *s = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s)
		*len = strlen(s);
	return s;
}

frame_t *codec_ok(const json_t *id, const char *key, const char *val)
{
	struct sb b = {0};

	sb_puts(&b, "{\"op\":\"ok\"");
	sb_id(&b, id);
	if (key) {
		sb_puts(&b, ",\"");
		sb_puts(&b, key);
		sb_puts(&b, "\":");
		sb_str(&b, val);
	}
	sb_puts(&b, "}");
	return sb_frame(&b);
}

frame_t *codec_pong(const json_t *id)
{
	struct sb b = {0};

	sb_puts(&b, "{\"op\":\"pong\"");
	sb_id(&b, id);
	sb_puts(&b, "}");
	return sb_frame(&b);
}

frame_t *codec_error(const json_t *id, int err, const char *reason,
		     const char *topic)
{
	struct sb b = {0};

	sb_puts(&b, "{\"op\":\"error\",\"code\":");
	sb_str(&b, parley_errcode(err));
	sb_puts(&b, ",\"reason\":");
	sb_str(&b, reason ? reason : parley_strerror(err));
	sb_id(&b, id);
	if (topic) {
		sb_puts(&b, ",\"topic\":");
		sb_str(&b, topic);
	}
	sb_puts(&b, "}");
	return sb_frame(&b);
}

static void sb_str_array(struct sb *b, const char *const *v, size_t n)
{
	sb_puts(b, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_puts(b, ",");
		sb_str(b, v[i]);
	}
	sb_puts(b, "]");
}

frame_t *codec_presence(const char *topic, const char *const *joined,
			size_t n_joined, const char *const *left, size_t n_left)
{
	struct sb b = {0};

	sb_puts(&b, "{\"op\":\"presence\",\"topic\":");
	sb_str(&b, topic);
	sb_puts(&b, ",\"joined\":");
	sb_str_array(&b, joined, n_joined);
	sb_puts(&b, ",\"left\":");
	sb_str_array(&b, left, n_left);
	sb_puts(&b, "}");
	return sb_frame(&b);
}

/* The measured fields of a msg frame. */
struct msg_enc {
	const char *s[5]; /* topic, mid, origin, from, cursor. */
	size_t raw[5];	  /* Their lengths. */
	size_t esc[5];	  /* Their lengths as JSON strings. */
	char ts[24];	  /* ts in decimal. */
	size_t ts_len;	  /* Its length. */
	size_t total;	  /* Length of the whole payload. */
};

/* cursor_len is the cursor's length when the caller knows it has no byte
 * JSON escapes, else CURSOR_MEASURE. */
#define CURSOR_MEASURE ((size_t)-1)

static void msg_measure(struct msg_enc *e, const msg_t *m, const char *cursor,
			size_t cursor_len)
{
	e->s[0] = m->topic;
	e->s[1] = m->mid;
	e->s[2] = m->origin;
	e->s[3] = m->from;
	e->s[4] = cursor;
	e->ts_len = jw_i64(m->ts, e->ts);
	e->total = sizeof "{\"op\":\"msg\",\"topic\":,\"mid\":,\"origin\":,"
			  "\"from\":,\"ts\":,\"cursor\":,\"body\":}" -
		   1 + e->ts_len + m->body_len;
	for (int i = 0; i < 5; i++) {
		if (i < 4 && m->plain) {
			e->raw[i] = m->slen[i];
			e->esc[i] = m->slen[i] + 2;
		} else if (i == 4 && cursor_len != CURSOR_MEASURE) {
			assert(strlen(cursor) == cursor_len &&
			       jw_plain_nul(cursor, cursor_len));
			e->raw[i] = cursor_len;
			e->esc[i] = cursor_len + 2;
		} else {
			e->esc[i] = jw_str_len(e->s[i], &e->raw[i]);
		}
		e->total += e->esc[i];
	}
}

/* Writes the payload measured into e at d up to the body; returns the
 * end. */
static char *msg_write_head(char *d, const struct msg_enc *e, const msg_t *m)
{
#define FIELD(i) (d = jw_str_put(d, e->s[i], e->raw[i], e->esc[i]))
	JW_LIT(d, "{\"op\":\"msg\",\"topic\":");
	FIELD(0);
	JW_LIT(d, ",\"mid\":");
	FIELD(1);
	JW_LIT(d, ",\"origin\":");
	FIELD(2);
	JW_LIT(d, ",\"from\":");
	FIELD(3);
	JW_LIT(d, ",\"ts\":");
	memcpy(d, e->ts, e->ts_len);
	d += e->ts_len;
	JW_LIT(d, ",\"cursor\":");
	FIELD(4);
	JW_LIT(d, ",\"body\":");
	return d;
#undef FIELD
}

/* Writes the whole payload measured into e at d; returns the end. */
static char *msg_write(char *d, const struct msg_enc *e, const msg_t *m)
{
	d = msg_write_head(d, e, m);
	memcpy(d, m->body, m->body_len);
	d += m->body_len;
	*d++ = '}';
	return d;
}

frame_t *codec_msg(const msg_t *m, const char *cursor)
{
	struct msg_enc e;
	char *p;
	frame_t *f;

	msg_measure(&e, m, cursor, CURSOR_MEASURE);
	f = frame_alloc_text(e.total, 0, &p);
	if (msg_write(p, &e, m) != p + e.total)
		abort(); /* msg_measure and msg_write disagree: a bug. */
	return f;
}

frame_t *codec_msg_place(msg_t *m, const char *cursor, size_t cursor_len)
{
	struct msg_enc e;
	frame_t *f;

	msg_measure(&e, m, cursor, cursor_len);
	f = msg_frame_place(m, e.total);
	if (!f)
		return codec_msg(m, cursor);
	if (msg_write_head((char *)frame_payload(f), &e, m) != m->body)
		abort(); /* msg_measure and msg_write disagree: a bug. */
	return f;
}

size_t codec_msg_split(const msg_t *m, const char *cursor_head, char **buf,
		       size_t *len, size_t *cap)
{
	if (codec_msg_json(m, cursor_head, buf, len, cap))
		abort(); /* The daemon may abort on out-of-memory. */
	/* The cursor is the only field followed by ",\"body\":"; the cut
	 * goes just before its closing quote. */
	return *len - m->body_len - (sizeof "\",\"body\":}" - 1);
}

size_t codec_path_len(const char *const *path, size_t n)
{
	size_t len = 2, r;

	for (size_t i = 0; i < n; i++)
		len += jw_str_len(path[i], &r) + (i > 0);
	return len;
}

char *codec_path_put(char *d, const char *const *path, size_t n)
{
	size_t r, l;

	*d++ = '[';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*d++ = ',';
		l = jw_str_len(path[i], &r);
		d = jw_str_put(d, path[i], r, l);
	}
	*d++ = ']';
	return d;
}

int codec_msg_json(const msg_t *m, const char *cursor, char **buf, size_t *len,
		   size_t *cap)
{
	struct sb b = {*buf, *len, *cap, 0};
	struct msg_enc e;

	msg_measure(&e, m, cursor, CURSOR_MEASURE);
	sb_reserve(&b, e.total);
	if (!b.oom)
		b.len = (size_t)(msg_write(b.p + b.len, &e, m) - b.p);
	*buf = b.p;
	*len = b.len;
	*cap = b.cap;
	return b.oom ? PE_NOMEM : 0;
}
