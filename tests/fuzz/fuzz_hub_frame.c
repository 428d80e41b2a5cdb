/* fuzz_hub_frame.c: libparley's decoder of frames from the hub (what a
 * hostile or broken hub controls), with the accessors a bot then uses. */
#include <stdint.h>
#include <stdlib.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parley__frame f = {0};
	char why[256];

	if (!parley__codec_decode((const char *)data, size, &f, why,
				  sizeof why) &&
	    f.op == PARLEY__OP_MSG) {
		size_t n;
		char *body = parley__codec_body_text(&f, &n);

		free(body);
	}
	parley__codec_frame_free(&f);
	return 0;
}
