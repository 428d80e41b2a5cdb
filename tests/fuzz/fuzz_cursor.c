/* fuzz_cursor.c: cursor parsing (client-controlled "since" values). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static history_t *h;
	char *s = malloc(size + 1);
	uint64_t seq;

	if (!s)
		abort();
	if (!h) {
		msg_t *m = msg_new("t", "m1", "n", "u@n", 0, "1", 1);

		h = history_new(4, 12345);
		history_append(h, m);
		msg_unref(m);
	}
	memcpy(s, data, size);
	s[size] = 0;
	history_parse_cursor(h, s, &seq);
	free(s);
	return 0;
}
