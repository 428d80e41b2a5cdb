/* fuzz_http_publish.c: the body of POST /v1/publish. */
#include <stdint.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *topic, *reason;
	json_t *root, *body;

	if (!codec_decode_publish((const char *)data, size, &root, &topic,
				  &body, &reason))
		json_decref(root);
	return 0;
}
