/* fuzz_config.c: the configuration parser, including its error paths
 * (which locate the offending key's line in the raw text). */
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	config_t *c = NULL;

	if (!config_parse((const char *)data, size, "fuzz.json", &c, err,
			  sizeof err))
		config_free(c);
	return 0;
}
