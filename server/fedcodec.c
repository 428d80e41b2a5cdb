/* fedcodec.c: parley.fed.v1 JSON decoding and encoding (see fedcodec.h). */
#include "fedcodec.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "err.h"
#include "jscan.h"
#include "jwrite.h"
#include "topic.h"

#define PATH_MAX_NODES FED_PATH_MAX_NODES
/* Longest mid and node name accepted. */
#define MID_MAX	 FED_MID_MAX
#define NODE_MAX 253

static frame_t *dump_frame(json_t *j, int masked)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	frame_t *f;

	json_decref(j);
	if (!s)
		abort(); /* The daemon may abort on out-of-memory. */
	f = masked ? frame_new_text_masked(s, strlen(s))
		   : frame_new_text(s, strlen(s));
	free(s);
	return f;
}

/* Which bytes node names and mids may hold: one table lookup per byte
 * (every msg from a peer checks its mid, origin and path). */
enum { C_NODE = 1, C_MID = 2 };
#define NODE_MID (C_NODE | C_MID)
/* One row per kind of byte. */
/* clang-format off */
static const unsigned char char_class[256] = {
    ['-'] = NODE_MID, ['.'] = C_NODE, ['_'] = C_MID,
    ['0'] = NODE_MID, ['1'] = NODE_MID, ['2'] = NODE_MID, ['3'] = NODE_MID,
    ['4'] = NODE_MID, ['5'] = NODE_MID, ['6'] = NODE_MID, ['7'] = NODE_MID,
    ['8'] = NODE_MID, ['9'] = NODE_MID,
    ['a'] = NODE_MID, ['b'] = NODE_MID, ['c'] = NODE_MID, ['d'] = NODE_MID,
    ['e'] = NODE_MID, ['f'] = NODE_MID, ['g'] = NODE_MID, ['h'] = NODE_MID,
    ['i'] = NODE_MID, ['j'] = NODE_MID, ['k'] = NODE_MID, ['l'] = NODE_MID,
    ['m'] = NODE_MID, ['n'] = NODE_MID, ['o'] = NODE_MID, ['p'] = NODE_MID,
    ['q'] = NODE_MID, ['r'] = NODE_MID, ['s'] = NODE_MID, ['t'] = NODE_MID,
    ['u'] = NODE_MID, ['v'] = NODE_MID, ['w'] = NODE_MID, ['x'] = NODE_MID,
    ['y'] = NODE_MID, ['z'] = NODE_MID,
    ['A'] = C_MID, ['B'] = C_MID, ['C'] = C_MID, ['D'] = C_MID,
    ['E'] = C_MID, ['F'] = C_MID, ['G'] = C_MID, ['H'] = C_MID,
    ['I'] = C_MID, ['J'] = C_MID, ['K'] = C_MID, ['L'] = C_MID,
    ['M'] = C_MID, ['N'] = C_MID, ['O'] = C_MID, ['P'] = C_MID,
    ['Q'] = C_MID, ['R'] = C_MID, ['S'] = C_MID, ['T'] = C_MID,
    ['U'] = C_MID, ['V'] = C_MID, ['W'] = C_MID, ['X'] = C_MID,
    ['Y'] = C_MID, ['Z'] = C_MID,
};
/* clang-format on */
#undef NODE_MID

/* 1 when s, of n bytes, is 1 to max bytes, each of class c. The classes
 * are and-ed without a branch per byte (every msg from a peer checks a
 * mid and a few node names: about 60 bytes). */
static int name_ok(const char *s, size_t n, size_t max, unsigned char c)
{
	const unsigned char *p = (const unsigned char *)s;
	unsigned char all = c;

	if (n < 1 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++)
		all &= char_class[p[i]];
	return all == c;
}

static int node_ok(const char *s, size_t n)
{
	return name_ok(s, n, NODE_MAX, C_NODE);
}

static int mid_ok(const char *s, size_t n)
{
	return name_ok(s, n, MID_MAX, C_MID);
}

static const char *get_str(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The checks of a decoded msg, whichever decoder read it. */
static int check_msg(const fed_in_t *in, const char **reason)
{
	if (topic_validate(in->topic, in->topic_len)) {
		*reason = "invalid topic";
		return PE_BAD_TOPIC;
	}
	if (!mid_ok(in->mid, in->mid_len) ||
	    !node_ok(in->origin, in->origin_len) || in->from_len > 512 ||
	    in->cursor_len > 64) {
		*reason = "invalid mid, origin, from or cursor";
		return PE_BAD_REQUEST;
	}
	if (!in->n_path || in->n_path > PATH_MAX_NODES) {
		*reason = "path must hold 1 to 64 nodes";
		return PE_BAD_REQUEST;
	}
	for (size_t i = 0; i < in->n_path; i++) {
		if (!in->path[i] || !node_ok(in->path[i], in->path_len[i])) {
			*reason = "path holds an invalid node name";
			return PE_BAD_REQUEST;
		}
	}
	return 0;
}

static int decode_msg(fed_in_t *in, const char **reason)
{
	json_t *r = in->root, *ts, *path, *v;
	size_t i;

	in->topic = get_str(r, "topic");
	in->mid = get_str(r, "mid");
	in->origin = get_str(r, "origin");
	in->from = get_str(r, "from");
	in->cursor = get_str(r, "cursor");
	in->body = json_object_get(r, "body");
	ts = json_object_get(r, "ts");
	path = json_object_get(r, "path");
	if (!in->topic || !in->mid || !in->origin || !in->from || !in->cursor ||
	    !in->body || !json_is_integer(ts) || !json_is_array(path)) {
		*reason = "msg lacks a field or has one of the wrong type";
		return PE_BAD_REQUEST;
	}
	in->topic_len = strlen(in->topic);
	in->mid_len = strlen(in->mid);
	in->origin_len = strlen(in->origin);
	in->from_len = strlen(in->from);
	in->cursor_len = strlen(in->cursor);
	in->ts = json_integer_value(ts);
	in->n_path = json_array_size(path);
	/* check_msg words a bad count or a non-string node (NULL). */
	if (in->n_path && in->n_path <= PATH_MAX_NODES) {
		in->path = malloc(in->n_path * sizeof *in->path);
		if (!in->path)
			abort();
		json_array_foreach(path, i, v)
		{
			in->path[i] =
			    json_is_string(v) ? json_string_value(v) : NULL;
			in->path_len[i] = in->path[i] ? strlen(in->path[i]) : 0;
		}
	}
	return check_msg(in, reason);
}

/* Copies the n bytes at s, NUL-terminated, to *dst as *out (of *out_len
 * bytes) and advances *dst: the decoded strings of a frame share one
 * buffer. */
static void put_str(char **dst, const char *s, size_t n, const char **out,
		    size_t *out_len)
{
	memcpy(*dst, s, n);
	(*dst)[n] = 0;
	*out = *dst;
	*out_len = n;
	*dst += n + 1;
}

/* Returns 1 when s[vs..end) is a JSON string without escapes; copies it
 * (without quotes) with put_str. */
static int take_plain(const char *s, size_t vs, size_t end, char **dst,
		      const char **out, size_t *out_len)
{
	size_t n;

	if (s[vs] != '"' || end - vs < 2)
		return 0;
	n = end - vs - 2;
	if (memchr(s + vs + 1, '\\', n))
		return 0;
	put_str(dst, s + vs + 1, n, out, out_len);
	return 1;
}

/* Parses an integer the scanner accepted (at most 15 digits). */
static int take_int(const char *s, size_t vs, size_t end, int64_t *out)
{
	int neg = s[vs] == '-';
	int64_t v = 0;

	for (size_t i = vs + (size_t)neg; i < end; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		v = v * 10 + (s[i] - '0');
	}
	*out = neg ? -v : v;
	return end > vs + (size_t)neg;
}

/* Splits the path array s[vs..end) (already validated JSON) into plain
 * strings. */
static int take_path(const char *s, size_t vs, size_t end, char **dst,
		     fed_in_t *in)
{
	size_t p = vs + 1, n = 0, ss;
	const char *v[PATH_MAX_NODES];
	int esc;

	if (s[vs] != '[')
		return 0;
	for (;;) {
		jscan_ws(s, end, &p);
		if (p < end && s[p] == ']' && n == 0)
			break;
		if (n == PATH_MAX_NODES || p >= end || s[p] != '"')
			return 0;
		ss = p;
		if (jscan_string(s, end, &p, &esc) || esc ||
		    !take_plain(s, ss, p, dst, &v[n], &in->path_len[n]))
			return 0;
		n++;
		jscan_ws(s, end, &p);
		if (p < end && s[p] == ']')
			break;
		if (p >= end || s[p] != ',')
			return 0;
		p++;
	}
	in->path = malloc((n ? n : 1) * sizeof *in->path);
	if (!in->path)
		abort();
	memcpy(in->path, v, n * sizeof *v);
	in->n_path = n;
	return 1;
}

/* Which msg fields were seen, as bits. */
enum {
	F_OP = 1,
	F_TOPIC = 2,
	F_MID = 4,
	F_ORIGIN = 8,
	F_FROM = 16,
	F_TS = 32,
	F_BODY = 64,
	F_PATH = 128,
	F_CURSOR = 256,
	F_ALL = 511
};

/* The bit of a msg frame's key k (kl bytes), or 0 for any other key.
 * By length first: the compares are then of constant size, which the
 * compiler does inline. */
static unsigned msg_key_bit(const char *k, size_t kl)
{
	switch (kl) {
	case 2:
		return !memcmp(k, "op", 2)   ? F_OP
		       : !memcmp(k, "ts", 2) ? F_TS
					     : 0;
	case 3:
		return !memcmp(k, "mid", 3) ? F_MID : 0;
	case 4:
		return !memcmp(k, "from", 4)   ? F_FROM
		       : !memcmp(k, "body", 4) ? F_BODY
		       : !memcmp(k, "path", 4) ? F_PATH
					       : 0;
	case 5:
		return !memcmp(k, "topic", 5) ? F_TOPIC : 0;
	case 6:
		return !memcmp(k, "origin", 6)	 ? F_ORIGIN
		       : !memcmp(k, "cursor", 6) ? F_CURSOR
						 : 0;
	}
	return 0;
}

/* Decodes a plain msg frame (what fedcodec_msg writes) with the scanner.
 * Returns 1 with in filled, or 0 for anything else or anything unusual
 * (escaped strings, duplicate keys, a field failing its check): the
 * caller then uses the full decoder, which words every error. */
static int fast_msg(const char *buf, size_t len, fed_in_t *in)
{
	size_t ks, kl, vs, end;
	unsigned seen = 0;
	const char *why;
	jscan_obj_t o;
	char *dst;
	int rc;

	if (jscan_obj_begin(&o, buf, len))
		return 0;
	/* Unescaped strings shrink when copied (quotes become one NUL). */
	in->strings = dst = malloc(len + 1);
	if (!dst)
		abort();
	while ((rc = jscan_obj_next(&o, &ks, &kl, &vs, &end)) == 1) {
		unsigned bit = msg_key_bit(buf + ks, kl);

		if (seen & bit)
			return 0;
		seen |= bit;
		switch (bit) {
		case F_OP:
			if (end - vs != 5 || memcmp(buf + vs, "\"msg\"", 5))
				return 0;
			break;
		case F_TOPIC:
			if (!take_plain(buf, vs, end, &dst, &in->topic,
					&in->topic_len))
				return 0;
			break;
		case F_MID:
			if (!take_plain(buf, vs, end, &dst, &in->mid,
					&in->mid_len))
				return 0;
			break;
		case F_ORIGIN:
			if (!take_plain(buf, vs, end, &dst, &in->origin,
					&in->origin_len))
				return 0;
			break;
		case F_FROM:
			if (!take_plain(buf, vs, end, &dst, &in->from,
					&in->from_len))
				return 0;
			break;
		case F_CURSOR:
			if (!take_plain(buf, vs, end, &dst, &in->cursor,
					&in->cursor_len))
				return 0;
			break;
		case F_TS:
			if (!take_int(buf, vs, end, &in->ts))
				return 0;
			break;
		case F_BODY:
			in->body_text = buf + vs;
			in->body_len = end - vs;
			break;
		case F_PATH:
			if (!take_path(buf, vs, end, &dst, in))
				return 0;
			break;
		}
	}
	if (rc || seen != F_ALL)
		return 0;
	in->op = FED_MSG;
	return check_msg(in, &why) == 0;
}

/* Clears in up to its path storage, which needs no clearing. */
static void in_reset(fed_in_t *in)
{
	memset(in, 0, offsetof(fed_in_t, path_buf));
}

/* The plain string whose contents start at s[*p] (see
 * jscan_plain_string): copied with put_str. */
static int lay_str(const char *s, size_t len, size_t *p, char **dst,
		   const char **out, size_t *out_len)
{
	size_t start = *p, n = jscan_plain_string(s, len, p);

	if (n == (size_t)-1)
		return 0;
	put_str(dst, s + start, n, out, out_len);
	return 1;
}

/* The layout's first members, up to the topic's and the mid's values. */
#define LAYOUT_HEAD "{\"op\":\"msg\",\"topic\":\""
#define LAYOUT_MID  ",\"mid\":\""

/* Decodes a msg frame laid out exactly as fedcodec_msg writes it (members
 * in its order, no whitespace, plain strings) by comparing literals:
 * this is every frame a parleyd peer sends, and it costs a fraction of
 * walking the object member by member. Returns 1 with in filled, or 0
 * for anything else: the member walk (fast_msg) and then the full
 * decoder take it from the start. The strings go to dst (len + 1
 * bytes), or to in->strings when dst is NULL. With used, the object may
 * end before len (an element of a batch): *used is where it ends. */
static int layout_msg(const char *buf, size_t len, fed_in_t *in, char *dst,
		      size_t *used)
{
	size_t p = 0;
	const char *why;

	if (!JSCAN_LIT(buf, len, &p, LAYOUT_HEAD))
		return 0;
	/* Unescaped strings shrink when copied (quotes become one NUL). */
	if (!dst) {
		in->strings = dst = malloc(len + 1);
		if (!dst)
			abort();
	}
	if (!lay_str(buf, len, &p, &dst, &in->topic, &in->topic_len) ||
	    !JSCAN_LIT(buf, len, &p, LAYOUT_MID) ||
	    !lay_str(buf, len, &p, &dst, &in->mid, &in->mid_len) ||
	    !JSCAN_LIT(buf, len, &p, ",\"origin\":\"") ||
	    !lay_str(buf, len, &p, &dst, &in->origin, &in->origin_len) ||
	    !JSCAN_LIT(buf, len, &p, ",\"from\":\"") ||
	    !lay_str(buf, len, &p, &dst, &in->from, &in->from_len) ||
	    !JSCAN_LIT(buf, len, &p, ",\"ts\":") ||
	    !jscan_small_int(buf, len, &p, &in->ts) ||
	    !JSCAN_LIT(buf, len, &p, ",\"cursor\":\"") ||
	    !lay_str(buf, len, &p, &dst, &in->cursor, &in->cursor_len) ||
	    !JSCAN_LIT(buf, len, &p, ",\"body\":"))
		return 0;
	in->body_text = buf + p;
	/* Leading whitespace would be kept with the body: not this path. */
	if (p >= len || (unsigned char)buf[p] <= ' ' ||
	    jscan_value(buf, len, &p))
		return 0;
	in->body_len = (size_t)(buf + p - in->body_text);
	if (!JSCAN_LIT(buf, len, &p, ",\"path\":[\""))
		return 0;
	in->path = in->path_buf;
	do {
		if (in->n_path == PATH_MAX_NODES ||
		    !lay_str(buf, len, &p, &dst, &in->path[in->n_path],
			     &in->path_len[in->n_path]))
			return 0;
		in->n_path++;
	} while (JSCAN_LIT(buf, len, &p, ",\""));
	if (!JSCAN_LIT(buf, len, &p, "]}") || (used ? 0 : p != len))
		return 0;
	if (used)
		*used = p;
	in->op = FED_MSG;
	return check_msg(in, &why) == 0;
}

const char *fedcodec_peek_mid(const char *buf, size_t len, size_t *n)
{
	size_t p = 0;

	if (!JSCAN_LIT(buf, len, &p, LAYOUT_HEAD) ||
	    jscan_plain_string(buf, len, &p) == (size_t)-1 ||
	    !JSCAN_LIT(buf, len, &p, LAYOUT_MID) ||
	    (*n = jscan_plain_string(buf, len, &p)) == (size_t)-1)
		return NULL;
	return buf + p - *n - 1;
}

int fedcodec_decode(const char *buf, size_t len, fed_in_t *in,
		    const char **reason)
{
	in_reset(in);
	if (layout_msg(buf, len, in, NULL, NULL))
		return 0;
	fedcodec_free(in);
	in_reset(in);
	if (fast_msg(buf, len, in))
		return 0;
	fedcodec_free(in);
	return fedcodec_decode_json(buf, len, in, reason);
}

/* Decodes the frame in->root. */
static int decode_tree(fed_in_t *in, const char **reason)
{
	const char *op;
	json_t *v;

	if (!json_is_object(in->root)) {
		*reason = "frame is not a JSON object";
		return PE_BAD_JSON;
	}
	op = get_str(in->root, "op");
	if (!op) {
		*reason = "op must be a string";
		return PE_UNKNOWN_OP;
	}
	if (!strcmp(op, "msg")) {
		in->op = FED_MSG;
		return decode_msg(in, reason);
	}
	if (!strcmp(op, "hello")) {
		in->op = FED_HELLO;
		in->node = get_str(in->root, "node");
		v = json_object_get(in->root, "cursor");
		in->cursor = get_str(in->root, "cursor");
		if (!in->node || !node_ok(in->node, strlen(in->node)) ||
		    (v && !json_is_null(v) && !in->cursor)) {
			*reason =
			    "hello needs a node name and a cursor or null";
			return PE_BAD_REQUEST;
		}
		in->batch = json_is_true(json_object_get(in->root, "batch"));
		return 0;
	}
	if (!strcmp(op, "batch")) {
		in->op = FED_BATCH;
		in->msgs = json_object_get(in->root, "msgs");
		if (!json_is_array(in->msgs)) {
			*reason = "batch needs a msgs array";
			return PE_BAD_REQUEST;
		}
		return 0;
	}
	if (!strcmp(op, "presence")) {
		in->op = FED_PRESENCE;
		in->topic = get_str(in->root, "topic");
		in->joined = json_object_get(in->root, "joined");
		in->left = json_object_get(in->root, "left");
		if (!in->topic ||
		    topic_validate(in->topic, strlen(in->topic)) ||
		    (in->joined && !json_is_array(in->joined)) ||
		    (in->left && !json_is_array(in->left))) {
			*reason = "presence needs a topic and identity arrays";
			return PE_BAD_REQUEST;
		}
		return 0;
	}
	if (!strcmp(op, "gap")) {
		in->op = FED_GAP;
		in->after = get_str(in->root, "after");
		return 0;
	}
	if (!strcmp(op, "live")) {
		in->op = FED_LIVE;
		return 0;
	}
	if (!strcmp(op, "ping") || !strcmp(op, "pong")) {
		in->op = op[1] == 'i' ? FED_PING : FED_PONG;
		v = json_object_get(in->root, "t");
		in->t = json_is_integer(v) ? json_integer_value(v) : 0;
		return 0;
	}
	*reason = "unknown op";
	return PE_UNKNOWN_OP;
}

int fedcodec_decode_json(const char *buf, size_t len, fed_in_t *in,
			 const char **reason)
{
	json_error_t jerr;

	in_reset(in);
	in->root = json_loadb(buf, len, 0, &jerr);
	return decode_tree(in, reason);
}

void fedcodec_free(fed_in_t *in)
{
	if (in->path != in->path_buf)
		free(in->path);
	in->path = NULL;
	in->n_path = 0;
	free(in->strings);
	in->strings = NULL;
	json_decref(in->root);
	in->root = NULL;
}

/* ---- batch frames ---- */

int fedcodec_batch_begin(fed_batch_t *b, const char *buf, size_t len)
{
	size_t p = 0;

	if (!JSCAN_LIT(buf, len, &p, FED_BATCH_OPEN))
		return 0;
	memset(b, 0, sizeof *b);
	b->buf = buf;
	b->len = len;
	b->pos = p;
	/* Unescaped strings shrink when copied: no element's exceed the
	 * frame's bytes. */
	b->scratch = malloc(len + 1);
	if (!b->scratch)
		abort();
	return 1;
}

void fedcodec_batch_tree(fed_batch_t *b, fed_in_t *in)
{
	memset(b, 0, sizeof *b);
	b->root = in->root;
	b->msgs = in->msgs;
	in->root = NULL;
	in->msgs = NULL;
}

/* What follows an element in the layout: a comma before the next one,
 * or the end of the frame. Anything else (state 2) hands the rest to
 * the tree. */
static void batch_after(fed_batch_t *b)
{
	const char *s = b->buf;
	size_t p = b->pos, n = b->len;

	jscan_ws(s, n, &p);
	if (p < n && s[p] == ',') {
		b->pos = p + 1;
		return;
	}
	b->state = 2;
	if (p < n && s[p] == ']') {
		p++;
		jscan_ws(s, n, &p);
		if (p < n && s[p] == '}') {
			p++;
			jscan_ws(s, n, &p);
			if (p == n)
				b->state = 1;
		}
	}
}

/* An element that decoded must be a msg. */
static int only_msg(const fed_in_t *in, int rc, const char **reason)
{
	if (!rc && in->op != FED_MSG) {
		*reason = "a batch holds only msg frames";
		return PE_BAD_REQUEST;
	}
	return rc;
}

/* Reads the element at b->pos in place. Returns 1, or 0 when it is not
 * one the scanner is sure of (the tree takes over). */
static int batch_layout_next(fed_batch_t *b, fed_in_t *in, int *rc,
			     const char **reason)
{
	size_t used, end = b->pos;

	in_reset(in);
	if (layout_msg(b->buf + b->pos, b->len - b->pos, in, b->scratch,
		       &used)) {
		*rc = 0;
		b->pos += used;
	} else {
		/* Another layout, or a msg failing a check: the element's
		 * extent, then the general decoders word it. */
		fedcodec_free(in);
		if (jscan_value(b->buf, b->len, &end) != JSCAN_OK)
			return 0;
		*rc = only_msg(
		    in,
		    fedcodec_decode(b->buf + b->pos, end - b->pos, in, reason),
		    reason);
		b->pos = end;
	}
	b->index++;
	batch_after(b);
	return 1;
}

static const char not_a_batch[] =
    "batch frame is not valid JSON or has no msgs array";

/* Parses the whole frame with Jansson, to read on from b->index. */
static int batch_to_tree(fed_batch_t *b, const char **reason)
{
	json_error_t jerr;
	json_t *op;

	/* A second msgs member would replace the array the layout read
	 * from: refused, as is anything else Jansson would read otherwise. */
	b->root = json_loadb(b->buf, b->len, JSON_REJECT_DUPLICATES, &jerr);
	op = json_object_get(b->root, "op");
	b->msgs = json_object_get(b->root, "msgs");
	if (!json_is_string(op) || strcmp(json_string_value(op), "batch") ||
	    !json_is_array(b->msgs)) {
		json_decref(b->root);
		b->root = b->msgs = NULL;
		b->state = -1;
		*reason = not_a_batch;
		return -1;
	}
	b->state = 0;
	return 0;
}

int fedcodec_batch_next(fed_batch_t *b, fed_in_t *in, int *rc,
			const char **reason)
{
	if (b->state == 1)
		return 0;
	if (b->state == -1) {
		*reason = not_a_batch;
		return -1;
	}
	if (!b->root) {
		if (b->state == 0 && batch_layout_next(b, in, rc, reason))
			return 1;
		if (batch_to_tree(b, reason))
			return -1;
	}
	if (b->index >= json_array_size(b->msgs)) {
		b->state = 1;
		return 0;
	}
	in_reset(in);
	in->root = json_incref(json_array_get(b->msgs, b->index++));
	*rc = only_msg(in, decode_tree(in, reason), reason);
	return 1;
}

const char *fedcodec_batch_peek_mid(const fed_batch_t *b, size_t *n)
{
	if (b->root || b->state)
		return NULL;
	return fedcodec_peek_mid(b->buf + b->pos, b->len - b->pos, n);
}

void fedcodec_batch_end(fed_batch_t *b)
{
	free(b->scratch);
	b->scratch = NULL;
	json_decref(b->root);
	b->root = b->msgs = NULL;
}

frame_t *fedcodec_hello(const char *node, const char *cursor, int masked)
{
	return dump_frame(json_pack("{s:s, s:s, s:s?, s:b}", "op", "hello",
				    "node", node, "cursor", cursor, "batch", 1),
			  masked);
}

frame_t *fedcodec_msg(const msg_t *m, const char *cursor, int masked)
{
	/* A peer's msg frame is the client's (same members, same cursor:
	 * both are this node's position of the message) plus the path. The
	 * client frame exists for whatever this node stored itself; one is
	 * encoded for messages rebuilt from Redis records. */
	frame_t *cf = m->frame ? frame_ref(m->frame) : codec_msg(m, cursor);
	const char *cp = frame_payload(cf);
	size_t cl = cf->payload_len - 1; /* Without its closing brace. */
	const char *const *path = (const char *const *)m->path;
	/* A message this node accepted from a client has the path [origin],
	 * and the message has measured its origin already. */
	int own = m->plain && m->n_path == 1 && path[0] == m->origin;
	size_t total =
	    cl + sizeof ",\"path\":}" - 1 +
	    (own ? m->slen[2] + 4u : codec_path_len(path, m->n_path));
	char *p, *d;
	frame_t *f = frame_alloc_text(total, masked, &p);

	if (cf->payload_len < 2 || cp[cl] != '}')
		abort(); /* codec_msg writes an object. */
	memcpy(p, cp, cl);
	d = p + cl;
	JW_LIT(d, ",\"path\":");
	if (own) {
		JW_LIT(d, "[\"");
		memcpy(d, m->origin, m->slen[2]);
		d += m->slen[2];
		JW_LIT(d, "\"]");
	} else {
		d = codec_path_put(d, path, m->n_path);
	}
	*d++ = '}';
	if (d != p + total)
		abort(); /* Measured and written lengths disagree: a bug. */
	frame_unref(cf);
	f->batch = 1;
	return f;
}

frame_t *fedcodec_gap(const char *after, const char *reason, int masked)
{
	return dump_frame(json_pack("{s:s, s:s?, s:s}", "op", "gap", "after",
				    after, "reason", reason),
			  masked);
}

frame_t *fedcodec_presence(const char *topic, const char *ident, int joined,
			   int masked)
{
	return dump_frame(json_pack("{s:s, s:s, s:[s]}", "op", "presence",
				    "topic", topic, joined ? "joined" : "left",
				    ident),
			  masked);
}

frame_t *fedcodec_simple(enum fed_op op, int64_t t, int masked)
{
	if (op == FED_LIVE)
		return dump_frame(json_pack("{s:s}", "op", "live"), masked);
	return dump_frame(json_pack("{s:s, s:I}", "op",
				    op == FED_PING ? "ping" : "pong", "t",
				    (json_int_t)t),
			  masked);
}
