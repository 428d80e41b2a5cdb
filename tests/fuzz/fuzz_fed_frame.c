/* fuzz_fed_frame.c: the parley.fed.v1 frame decoder (what a hostile peer
 * controls). Besides surviving any input, the fast msg decoder must agree
 * with the full one: what it accepts, Jansson accepts too, with the same
 * fields, the same lengths and an equal body. A batch frame read in place
 * must give what Jansson reads from it: the same elements, in order, each
 * accepted or refused alike. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fedcodec.h"

static void check_fast(const char *data, size_t size, const fed_in_t *in)
{
	const char *reason = NULL;
	json_error_t jerr;
	json_t *body;
	fed_in_t full;

	if (fedcodec_decode_json(data, size, &full, &reason) ||
	    full.op != FED_MSG || strcmp(full.topic, in->topic) ||
	    strcmp(full.mid, in->mid) || strcmp(full.origin, in->origin) ||
	    strcmp(full.from, in->from) || strcmp(full.cursor, in->cursor) ||
	    full.ts != in->ts || full.n_path != in->n_path)
		abort();
	for (size_t i = 0; i < in->n_path; i++)
		if (strcmp(full.path[i], in->path[i]) ||
		    full.path_len[i] != in->path_len[i])
			abort();
	if (full.topic_len != in->topic_len || full.mid_len != in->mid_len ||
	    full.origin_len != in->origin_len ||
	    full.from_len != in->from_len || full.cursor_len != in->cursor_len)
		abort();
	if (!in->body_len || (unsigned char)in->body_text[0] <= ' ' ||
	    (unsigned char)in->body_text[in->body_len - 1] <= ' ')
		abort(); /* The value's own bytes, nothing around them. */
	body = json_loadb(in->body_text, in->body_len, JSON_DECODE_ANY, &jerr);
	if (!body || !json_equal(body, full.body))
		abort();
	json_decref(body);
	fedcodec_free(&full);
}

/* Up to this many elements of a batch are compared. */
#define BATCH_CHECK 64

/* Reads data as a receiving node reads a batch frame, then compares what
 * it read with Jansson's reading of the same frame, when Jansson reads it
 * as a batch (without duplicate members). */
static void check_batch(const char *data, size_t size)
{
	const char *reason = NULL;
	char *mids[BATCH_CHECK];
	size_t n = 0, i;
	json_error_t jerr;
	json_t *root, *msgs;
	fed_batch_t b;
	fed_in_t in;
	int r, rc;

	if (!fedcodec_batch_begin(&b, data, size)) {
		if (fedcodec_decode(data, size, &in, &reason) ||
		    in.op != FED_BATCH) {
			fedcodec_free(&in);
			return;
		}
		fedcodec_batch_tree(&b, &in);
		fedcodec_free(&in);
	}
	while ((r = fedcodec_batch_next(&b, &in, &rc, &reason)) == 1) {
		if (!rc && (in.op != FED_MSG || in.mid_len != strlen(in.mid) ||
			    in.topic_len != strlen(in.topic)))
			abort();
		if (n < BATCH_CHECK)
			mids[n] = rc ? NULL : strdup(in.mid);
		n++;
		fedcodec_free(&in);
	}
	if (r < 0 && !reason)
		abort();
	fedcodec_batch_end(&b);
	root = json_loadb(data, size, JSON_REJECT_DUPLICATES, &jerr);
	msgs = json_object_get(root, "msgs");
	if (json_is_array(msgs) &&
	    json_is_string(json_object_get(root, "op")) &&
	    !strcmp(json_string_value(json_object_get(root, "op")), "batch")) {
		if (r != 0 || n != json_array_size(msgs))
			abort();
		for (i = 0; i < n && i < BATCH_CHECK; i++) {
			char *t = json_dumps(json_array_get(msgs, i),
					     JSON_COMPACT | JSON_ENCODE_ANY);
			int ok =
			    t &&
			    !fedcodec_decode_json(t, strlen(t), &in, &reason) &&
			    in.op == FED_MSG;

			if (ok != (mids[i] != NULL) ||
			    (ok && strcmp(mids[i], in.mid)))
				abort();
			if (t)
				fedcodec_free(&in);
			free(t);
		}
	}
	json_decref(root);
	for (i = 0; i < n && i < BATCH_CHECK; i++)
		free(mids[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *reason = NULL;
	fed_in_t in;
	size_t total = 0;

	if (!fedcodec_decode((const char *)data, size, &in, &reason) &&
	    in.op == FED_MSG) {
		/* Every decoder measures what it decoded. */
		if (in.topic_len != strlen(in.topic) ||
		    in.mid_len != strlen(in.mid) ||
		    in.origin_len != strlen(in.origin) ||
		    in.from_len != strlen(in.from) ||
		    in.cursor_len != strlen(in.cursor))
			abort();
		for (size_t i = 0; i < in.n_path; i++) {
			if (in.path_len[i] != strlen(in.path[i]))
				abort();
			total += in.path_len[i];
		}
		if (in.body_text)
			check_fast((const char *)data, size, &in);
	}
	(void)total;
	fedcodec_free(&in);
	check_batch((const char *)data, size);
	return 0;
}
