/* fuzz_client_frame.c: the parley.v1 request decoders. Besides surviving
 * any input, the fast publish decoder must agree with the full one: what
 * it accepts, Jansson accepts too, with the same topic, body and id. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	return 0;
}
