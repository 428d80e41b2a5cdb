/* codec.c: the parley.v1 JSON encoding and the validation of every frame
 * the hub sends (see codec.h). The only module that uses Jansson. */
#include <jansson.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "parley.h"

const size_t parley__headroom = LWS_PRE;

/* Longest mid and cursor accepted from the hub: they are stored and sent
 * back, so a hostile hub must not make them huge. */
#define MAX_TOKEN_BYTES 1024

/* Writes a message into why, replacing bytes that are not printable
 * ASCII so that hub-supplied text cannot carry terminal escapes. */
static int fail(char *why, size_t whylen, const char *fmt, const char *arg)
{
	char tmp[96];
	size_t i;

	if (whylen) {
		if (arg) {
			snprintf(tmp, sizeof(tmp), "%.40s", arg);
			for (i = 0; tmp[i]; i++)
				if ((unsigned char)tmp[i] < 0x20 ||
				    (unsigned char)tmp[i] > 0x7e)
					tmp[i] = '?';
			snprintf(why, whylen, fmt, tmp);
		} else {
			snprintf(why, whylen, "%s", fmt);
		}
	}
	return PARLEY_EPROTO;
}

/* Returns the string member key of o, or NULL when it is absent or not a
 * string of 1..max bytes (max 0: any length). */
static const char *get_str(json_t *o, const char *key, size_t max)
{
	json_t *v = json_object_get(o, key);
	size_t n;

	if (!json_is_string(v))
		return NULL;
	n = json_string_length(v);
	if (n == 0 || (max && n > max))
		return NULL;
	return json_string_value(v);
}

/* Validates the fields of a "msg" frame. */
static int decode_msg(json_t *root, parley__frame *f, char *why, size_t wl)
{
	json_t *ts = json_object_get(root, "ts");

	f->topic = get_str(root, "topic", 0);
	if (!f->topic || parley_topic_check(f->topic, 0))
		return fail(why, wl, "msg without a valid 'topic'", NULL);
	f->mid = get_str(root, "mid", MAX_TOKEN_BYTES);
	if (!f->mid)
		return fail(why, wl, "msg without a valid 'mid'", NULL);
	f->cursor = get_str(root, "cursor", MAX_TOKEN_BYTES);
	if (!f->cursor)
		return fail(why, wl, "msg without a valid 'cursor'", NULL);
	f->origin = get_str(root, "origin", 0);
	if (!f->origin)
		return fail(why, wl, "msg without a string 'origin'", NULL);
	f->from = get_str(root, "from", 0);
	if (!f->from)
		return fail(why, wl, "msg without a string 'from'", NULL);
	if (!json_is_integer(ts))
		return fail(why, wl, "msg without an integer 'ts'", NULL);
	f->ts = (int64_t)json_integer_value(ts);
	f->body = json_object_get(root, "body");
	if (!f->body)
		return fail(why, wl, "msg without a 'body'", NULL);
	return 0;
}

/* Validates the fields of an "error" frame. */
static int decode_error(json_t *root, parley__frame *f, char *why, size_t wl)
{
	json_t *reason = json_object_get(root, "reason");
	json_t *topic = json_object_get(root, "topic");

	f->code = get_str(root, "code", 64);
	if (!f->code)
		return fail(why, wl, "error without a string 'code'", NULL);
	f->reason = json_is_string(reason) ? json_string_value(reason) : "";
	if (topic && !json_is_string(topic))
		return fail(why, wl, "error with a non-string 'topic'", NULL);
	f->topic = topic ? json_string_value(topic) : NULL;
	return 0;
}

/* Validates the fields of an "ok" frame. */
static int decode_ok(json_t *root, parley__frame *f, char *why, size_t wl)
{
	json_t *user = json_object_get(root, "user");
	json_t *mid = json_object_get(root, "mid");

	if (user && !json_is_string(user))
		return fail(why, wl, "ok with a non-string 'user'", NULL);
	if (mid && (!json_is_string(mid) || !json_string_length(mid) ||
		    json_string_length(mid) > MAX_TOKEN_BYTES))
		return fail(why, wl, "ok with an invalid 'mid'", NULL);
	f->user = user ? json_string_value(user) : NULL;
	f->mid = mid ? json_string_value(mid) : NULL;
	return 0;
}

int parley__codec_decode(const char *buf, size_t len, parley__frame *f,
			 char *why, size_t whylen)
{
	json_error_t jerr;
	json_t *root, *id;
	const char *op;
	int rc;

	memset(f, 0, sizeof(*f));
	if (whylen)
		why[0] = 0;
	root = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
	if (!root) {
		if (json_error_code(&jerr) == json_error_out_of_memory)
			return PARLEY_ENOMEM;
		return fail(why, whylen, "invalid JSON: %s", jerr.text);
	}
	f->root = root;
	if (!json_is_object(root)) {
		rc = fail(why, whylen, "frame is not a JSON object", NULL);
		goto bad;
	}
	op = get_str(root, "op", 64);
	if (!op) {
		rc = fail(why, whylen, "frame without a string 'op'", NULL);
		goto bad;
	}
	id = json_object_get(root, "id");
	if (json_is_integer(id) && json_integer_value(id) >= 1) {
		f->has_id = 1;
		f->id = (uint64_t)json_integer_value(id);
	}
	if (!strcmp(op, "msg")) {
		f->op = PARLEY__OP_MSG;
		rc = decode_msg(root, f, why, whylen);
	} else if (!strcmp(op, "ok")) {
		f->op = PARLEY__OP_OK;
		rc = decode_ok(root, f, why, whylen);
	} else if (!strcmp(op, "error")) {
		f->op = PARLEY__OP_ERROR;
		rc = decode_error(root, f, why, whylen);
	} else if (!strcmp(op, "pong")) {
		f->op = PARLEY__OP_PONG;
		rc = 0;
	} else if (!strcmp(op, "presence")) {
		f->op = PARLEY__OP_PRESENCE;
		f->topic = get_str(root, "topic", 0);
		rc = f->topic
			 ? 0
			 : fail(why, whylen, "presence without 'topic'", NULL);
	} else {
		rc = fail(why, whylen, "unexpected op '%s'", op);
	}
	if (!rc)
		return 0;
bad:
	parley__codec_frame_free(f);
	return rc;
}

void parley__codec_frame_free(parley__frame *f)
{
	json_decref(f->root);
	memset(f, 0, sizeof(*f));
}

char *parley__codec_body_text(const parley__frame *f, size_t *len)
{
	char *s = json_dumps(f->body, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s && len)
		*len = strlen(s);
	return s;
}

const char *parley__codec_body_string(const parley__frame *f, size_t *len)
{
	if (!json_is_string(f->body))
		return NULL;
	if (len)
		*len = json_string_length(f->body);
	return json_string_value(f->body);
}

char *parley__codec_msg_json(const parley__frame *f)
{
	json_t *o =
	    json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:O}", "topic", f->topic, "mid",
		      f->mid, "origin", f->origin, "from", f->from, "ts",
		      (json_int_t)f->ts, "cursor", f->cursor, "body", f->body);
	char *s;

	if (!o)
		return NULL;
	s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}

/* Returns 1 when the n bytes at s are well-formed UTF-8, else 0. */
static int utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, k, len;

	while (i < n) {
		unsigned char b = s[i];
		unsigned lo = 0x80, hi = 0xbf;

		if (b < 0x80) {
			i++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf)
			len = 2;
		else if (b >= 0xe0 && b <= 0xef)
			len = 3, lo = b == 0xe0 ? 0xa0 : 0x80,
			hi = b == 0xed ? 0x9f : 0xbf;
		else if (b >= 0xf0 && b <= 0xf4)
			len = 4, lo = b == 0xf0 ? 0x90 : 0x80,
			hi = b == 0xf4 ? 0x8f : 0xbf;
		else
			return 0;
		if (n - i < len || s[i + 1] < lo || s[i + 1] > hi)
			return 0;
		for (k = 2; k < len; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
		i += len;
	}
	return 1;
}

int parley__codec_body_new(const char *text, size_t len, int kind, json_t **out)
{
	json_error_t jerr;
	json_t *j = NULL;

	*out = NULL;
	if (!text && len)
		return PARLEY_EINVAL;
	if (!text)
		text = "";
	if (kind != PARLEY_BODY_JSON && kind != PARLEY_BODY_STRING &&
	    kind != PARLEY_BODY_AUTO)
		return PARLEY_EINVAL;
	if (kind != PARLEY_BODY_STRING) {
		j = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
		if (!j && json_error_code(&jerr) == json_error_out_of_memory)
			return PARLEY_ENOMEM;
	}
	if (!j && kind != PARLEY_BODY_JSON) {
		/* A string: AUTO that is not JSON, or STRING. */
		if (memchr(text, 0, len) ||
		    !utf8_valid((const unsigned char *)text, len))
			return PARLEY_EINVAL;
		j = json_stringn(text, len);
		if (!j)
			return PARLEY_ENOMEM;
	}
	if (!j)
		return PARLEY_EINVAL;
	*out = j;
	return 0;
}

void parley__codec_body_free(json_t *body)
{
	json_decref(body);
}

/* Serialises o (stealing the reference) into a new send buffer. */
static parley__txbuf *encode(json_t *o)
{
	parley__txbuf *b;
	size_t n;

	if (!o)
		return NULL;
	n = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
	b = n ? malloc(sizeof(*b) + parley__headroom + n) : NULL;
	if (b) {
		b->next = NULL;
		b->len = json_dumpb(o, (char *)PARLEY__TXBUF_PAYLOAD(b), n,
				    JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (b->len != n) {
			free(b);
			b = NULL;
		}
	}
	json_decref(o);
	return b;
}

parley__txbuf *parley__codec_auth(uint64_t id, const char *token)
{
	return encode(json_pack("{s:s,s:I,s:s}", "op", "auth", "id",
				(json_int_t)id, "token", token));
}

parley__txbuf *parley__codec_sub(uint64_t id, const char *filter, long last,
				 const char *since)
{
	json_t *o = json_pack("{s:s,s:I,s:s}", "op", "sub", "id",
			      (json_int_t)id, "topic", filter);

	if (o && since &&
	    json_object_set_new(o, "since", json_string(since)) < 0) {
		json_decref(o);
		return NULL;
	}
	if (o && !since && last >= 0 &&
	    json_object_set_new(o, "last", json_integer(last)) < 0) {
		json_decref(o);
		return NULL;
	}
	return encode(o);
}

parley__txbuf *parley__codec_unsub(uint64_t id, const char *filter)
{
	return encode(json_pack("{s:s,s:I,s:s}", "op", "unsub", "id",
				(json_int_t)id, "topic", filter));
}

parley__txbuf *parley__codec_pub(uint64_t id, const char *topic, json_t *body)
{
	return encode(json_pack("{s:s,s:I,s:s,s:O}", "op", "pub", "id",
				(json_int_t)id, "topic", topic, "body", body));
}
