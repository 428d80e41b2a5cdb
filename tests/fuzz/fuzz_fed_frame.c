/* fuzz_fed_frame.c: the parley.fed.v1 frame decoder (what a hostile peer
 * controls). Besides surviving any input, the fast msg decoder must agree
 * with the full one: what it accepts, Jansson accepts too, with the same
 * fields, the same lengths and an equal body. */
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
	return 0;
}
