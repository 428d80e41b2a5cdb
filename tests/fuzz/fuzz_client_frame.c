/* fuzz_client_frame.c: the parley.v1 request decoders. Besides surviving
 * any input, the fast publish decoder must agree with the full one: what
 * it accepts, Jansson accepts too, with the same topic, body and id. And
 * a batch read in place must be Jansson's reading of the whole frame. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch_request.h"
#include "codec.h"

static void check_fast(const uint8_t *data, size_t size)
{
	const char *reason = NULL;
	json_error_t jerr;
	json_t *body, *id;
	fast_pub_t fp;
	req_t r;

	if (!codec_fast_pub((const char *)data, size, &fp))
		return;
	if (codec_decode((const char *)data, size, &r, &reason) ||
	    r.op != REQ_PUB || strcmp(r.topic, fp.topic))
		abort();
	/* The body is the value's own bytes, without whitespace around. */
	if (!fp.body_len || (unsigned char)fp.body[0] <= ' ' ||
	    (unsigned char)fp.body[fp.body_len - 1] <= ' ')
		abort();
	body = json_loadb(fp.body, fp.body_len, JSON_DECODE_ANY, &jerr);
	if (!body || !json_equal(body, r.body))
		abort();
	id = codec_id_value(fp.id, fp.id_len);
	if ((id == NULL) != (r.id == NULL) || (id && !json_equal(id, r.id)))
		abort();
	json_decref(id);
	json_decref(body);
	req_free(&r);
}

/* Whether Jansson (with flags) reads the frame as a batch; *msgs then
 * borrows its array from *all (json_decref *all in any case). */
static int jansson_batch(const char *s, size_t size, size_t flags, json_t **all,
			 json_t **msgs)
{
	json_error_t jerr;
	json_t *op;

	*all = json_loadb(s, size, flags, &jerr);
	*msgs = json_object_get(*all, "msgs");
	op = json_object_get(*all, "op");
	return json_is_array(*msgs) && json_is_string(op) &&
	       !strcmp(json_string_value(op), "batch");
}

/* A batch read in place hands out Jansson's elements and ends cleanly
 * only where Jansson reads the frame as a batch; it must end cleanly
 * wherever Jansson does with duplicate members refused (inside a request,
 * duplicates are the request's business, as in a frame of its own). */
static void check_batch(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *text, *reason;
	json_t *strict, *loose, *msgs, *smsgs;
	codec_batch_t b;
	fast_pub_t fp;
	size_t n = 0, tl;
	int rc, is_strict, is_loose;

	if (!codec_batch_begin(&b, s, size))
		return;
	is_strict =
	    jansson_batch(s, size, JSON_REJECT_DUPLICATES, &strict, &smsgs);
	is_loose = jansson_batch(s, size, 0, &loose, &msgs);
	while ((rc = codec_batch_next(&b, &fp, &text, &tl, &reason)) > 0) {
		json_t *v = batch_request(rc, &fp, text, tl);

		if (!v ||
		    (is_strict && !json_equal(v, json_array_get(msgs, n))))
			abort();
		json_decref(v);
		n++;
	}
	if (rc == CB_END && (!is_loose || n != json_array_size(msgs)))
		abort();
	if (is_strict && rc != CB_END)
		abort();
	codec_batch_end(&b);
	json_decref(strict);
	json_decref(loose);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *reason = NULL;
	req_t r;
	int rc = codec_decode((const char *)data, size, &r, &reason);

	/* Echoing the id and topic back must be safe for anything decoded. */
	frame_unref(codec_error(r.id, rc ? rc : -1, reason, r.topic));
	if (!rc && r.op == REQ_PUB) {
		size_t n;
		char *b = codec_dump_body(r.body, &n);

		free(b);
	}
	req_free(&r);
	check_fast(data, size);
	check_batch(data, size);
	return 0;
}
