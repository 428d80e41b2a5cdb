/* fuzz_fed_frame.c: the parley.fed.v1 frame decoder (what a hostile peer
 * controls). */
#include <stdint.h>
#include <string.h>

#include "fedcodec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *reason = NULL;
	fed_in_t in;
	size_t total = 0;

	if (!fedcodec_decode((const char *)data, size, &in, &reason) &&
	    in.op == FED_MSG)
		for (size_t i = 0; i < in.n_path; i++)
			total += strlen(in.path[i]);
	(void)total;
	fedcodec_free(&in);
	return 0;
}
