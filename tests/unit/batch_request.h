/* batch_request.h: a request that codec_batch_next handed out, as a JSON
 * value, for the checks that compare a batch's reading with Jansson's
 * (test_codec and fuzz_client_frame). */
#ifndef PARLEY_TEST_BATCH_REQUEST_H
#define PARLEY_TEST_BATCH_REQUEST_H

#include <jansson.h>

#include "codec.h"

/* The request at text (CB_REQ) or in *fp (CB_PUB). New reference. */
static inline json_t *batch_request(int rc, const fast_pub_t *fp,
				    const char *text, size_t len)
{
	json_error_t jerr;
	json_t *o;

	if (rc == CB_REQ)
		return json_loadb(text, len, JSON_DECODE_ANY, &jerr);
	o = json_pack(
	    "{s:s, s:s, s:o}", "op", "pub", "topic", fp->topic, "body",
	    json_loadb(fp->body, fp->body_len, JSON_DECODE_ANY, &jerr));
	if (o && fp->id)
		json_object_set_new(o, "id",
				    codec_id_value(fp->id, fp->id_len));
	return o;
}

#endif
