/* test_dedup.c: the id window forgets the oldest ids first. */
#include <stdio.h>

#include "dedup.h"
#include "tap.h"

int main(void)
{
	dedup_t *d = dedup_new(3);
	char id[16];

	CHECK_INT(dedup_seen(d, "a"), 0);
	dedup_add(d, "a");
	dedup_add(d, "b");
	dedup_add(d, "a"); /* Already there: no second slot. */
	dedup_add(d, "c");
	CHECK_INT(dedup_count(d), 3);
	CHECK_INT(dedup_seen(d, "a"), 1);
	dedup_add(d, "d"); /* Evicts "a", the oldest. */
	CHECK_INT(dedup_seen(d, "a"), 0);
	CHECK_INT(dedup_seen(d, "b"), 1);
	CHECK_INT(dedup_seen(d, "d"), 1);
	dedup_free(d);

	d = dedup_new(1000);
	for (int i = 0; i < 5000; i++) {
		snprintf(id, sizeof id, "m%d", i);
		dedup_add(d, id);
	}
	CHECK_INT(dedup_count(d), 1000);
	CHECK_INT(dedup_seen(d, "m3999"), 0);
	CHECK_INT(dedup_seen(d, "m4000"), 1);
	CHECK_INT(dedup_seen(d, "m4999"), 1);
	dedup_free(d);
	dedup_free(NULL);
	return tap_done();
}
