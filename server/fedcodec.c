/* fedcodec.c: parley.fed.v1 JSON decoding and encoding (see fedcodec.h). */
#include "fedcodec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "topic.h"

/* Longest path accepted: a federation is a few dozen nodes. */
#define PATH_MAX_NODES 64
/* Longest mid and node name accepted. */
#define MID_MAX	 64
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

static int node_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > NODE_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '.'))
			return 0;
	return 1;
}

static int mid_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > MID_MAX)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

static const char *get_str(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_string(v) ? json_string_value(v) : NULL;
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
	in->ts = json_integer_value(ts);
	if (topic_validate(in->topic, strlen(in->topic))) {
		*reason = "invalid topic";
		return PE_BAD_TOPIC;
	}
	if (!mid_ok(in->mid) || !node_ok(in->origin) ||
	    strlen(in->from) > 512 || strlen(in->cursor) > 64) {
		*reason = "invalid mid, origin, from or cursor";
		return PE_BAD_REQUEST;
	}
	in->n_path = json_array_size(path);
	if (!in->n_path || in->n_path > PATH_MAX_NODES) {
		*reason = "path must hold 1 to 64 nodes";
		return PE_BAD_REQUEST;
	}
	in->path = malloc(in->n_path * sizeof *in->path);
	if (!in->path)
		abort();
	json_array_foreach(path, i, v)
	{
		if (!json_is_string(v) || !node_ok(json_string_value(v))) {
			*reason = "path holds an invalid node name";
			return PE_BAD_REQUEST;
		}
		in->path[i] = json_string_value(v);
	}
	return 0;
}

int fedcodec_decode(const char *buf, size_t len, fed_in_t *in,
		    const char **reason)
{
	json_error_t jerr;
	const char *op;
	json_t *v;

	memset(in, 0, sizeof *in);
	in->root = json_loadb(buf, len, 0, &jerr);
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
		if (!in->node || !node_ok(in->node) ||
		    (v && !json_is_null(v) && !in->cursor)) {
			*reason =
			    "hello needs a node name and a cursor or null";
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

void fedcodec_free(fed_in_t *in)
{
	free(in->path);
	in->path = NULL;
	json_decref(in->root);
	in->root = NULL;
}

frame_t *fedcodec_hello(const char *node, const char *cursor, int masked)
{
	return dump_frame(json_pack("{s:s, s:s, s:s?}", "op", "hello", "node",
				    node, "cursor", cursor),
			  masked);
}

frame_t *fedcodec_msg(const msg_t *m, const char *cursor, int masked)
{
	json_error_t jerr;
	json_t *body = json_loads(m->body, JSON_DECODE_ANY, &jerr);
	json_t *path = json_array();
	json_t *j;

	/* The stored body is our own compact encoding: it always parses. */
	if (!body || !path)
		abort();
	for (size_t i = 0; i < m->n_path; i++)
		json_array_append_new(path, json_string(m->path[i]));
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:o, s:s}", "op",
		      "msg", "topic", m->topic, "mid", m->mid, "origin",
		      m->origin, "from", m->from, "ts", (json_int_t)m->ts,
		      "body", body, "path", path, "cursor", cursor);
	if (!j)
		abort();
	return dump_frame(j, masked);
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
