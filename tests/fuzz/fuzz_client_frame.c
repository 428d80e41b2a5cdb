/* fuzz_client_frame.c: the parley.v1 request decoder and the answers built
 * from what it decoded. */
#include <stdint.h>
#include <stdlib.h>

#include "codec.h"

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
	return 0;
}
