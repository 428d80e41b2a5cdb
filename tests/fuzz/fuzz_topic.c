/* fuzz_topic.c: topic and pattern syntax, matching and coverage. The
 * input is split at its first NUL into a filter and a topic. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t la = nul ? (size_t)(nul - data) : size;
	size_t lb = nul ? size - la - 1 : 0;
	char *a = malloc(la + 1), *b = malloc(lb + 1);
	bool pa = false, pb = false;

	if (!a || !b)
		abort();
	memcpy(a, data, la);
	a[la] = 0;
	memcpy(b, nul ? nul + 1 : data, lb);
	b[lb] = 0;
	int va = topic_validate_filter(a, la, &pa) == 0;
	int vb = topic_validate_filter(b, lb, &pb) == 0;

	topic_validate(a, la);
	if (va && vb) {
		bool covers = topic_covers(a, b);

		/* A concrete topic the inner filter matches must then also
		 * match the outer one. */
		if (!pb && covers && !topic_match(a, b))
			abort();
		if (!pb)
			topic_match(a, b);
	}
	free(a);
	free(b);
	return 0;
}
