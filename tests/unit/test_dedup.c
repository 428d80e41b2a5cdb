/* test_dedup.c: the id window forgets the oldest ids first, checked
 * against a plain model under churn (evictions, repeats, probe runs that
 * wrap around the table). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedup.h"
#include "tap.h"

/* Adds and looks up ids at random against a list model of a window of
 * cap ids. Returns the mismatches. */
static int churn(size_t cap, int rounds, unsigned seed)
{
	dedup_t *d = dedup_new(cap, 31);
	int *model = calloc(cap, sizeof *model), bad = 0;
	size_t head = 0, len = 0;
	char id[32];

	srand(seed);
	for (int i = 0; i < rounds; i++) {
		/* Mostly new ids, sometimes a recent one again. */
		int v = rand() % 4 ? i : i - rand() % (int)(2 * cap + 1);
		int in = 0;

		if (v < 0)
			v = 0;
		for (size_t k = 0; k < len; k++)
			in |= model[(head + k) % cap] == v;
		snprintf(id, sizeof id, "m-%d", v);
		bad += dedup_seen(d, id, dedup_hash(id)) != in;
		dedup_add(d, id, dedup_hash(id));
		if (!in) {
			if (len == cap) {
				head = (head + 1) % cap;
				len--;
			}
			model[(head + len++) % cap] = v;
		}
		bad += dedup_count(d) != len;
		/* Every id of the model is found; the one before is not. */
		if (i % 97 == 0) {
			for (size_t k = 0; k < len; k++) {
				snprintf(id, sizeof id, "m-%d",
					 model[(head + k) % cap]);
				bad += !dedup_seen(d, id, dedup_hash(id));
			}
		}
	}
	free(model);
	dedup_free(d);
	return bad;
}

int main(void)
{
	dedup_t *d = dedup_new(3, 1);
	char id[16], a[66], b[66];

	CHECK_INT(dedup_seen(d, "a", dedup_hash("a")), 0);
	dedup_add(d, "a", dedup_hash("a"));
	dedup_add(d, "b", dedup_hash("b"));
	dedup_add(d, "a", dedup_hash("a")); /* Already there: no second slot. */
	dedup_add(d, "c", dedup_hash("c"));
	CHECK_INT(dedup_count(d), 3);
	CHECK_INT(dedup_seen(d, "a", dedup_hash("a")), 1);
	dedup_add(d, "d", dedup_hash("d")); /* Evicts "a", the oldest. */
	CHECK_INT(dedup_seen(d, "a", dedup_hash("a")), 0);
	CHECK_INT(dedup_seen(d, "b", dedup_hash("b")), 1);
	CHECK_INT(dedup_seen(d, "d", dedup_hash("d")), 1);
	dedup_free(d);

	d = dedup_new(1000, 15);
	for (int i = 0; i < 5000; i++) {
		snprintf(id, sizeof id, "m%d", i);
		dedup_add(d, id, dedup_hash(id));
	}
	CHECK_INT(dedup_count(d), 1000);
	CHECK_INT(dedup_seen(d, "m3999", dedup_hash("m3999")), 0);
	CHECK_INT(dedup_seen(d, "m4000", dedup_hash("m4000")), 1);
	CHECK_INT(dedup_seen(d, "m4999", dedup_hash("m4999")), 1);
	dedup_free(d);
	dedup_free(NULL);

	/* Ids of the longest length, alike but for their last byte, are
	 * kept whole side by side; a longer one is simply not there. */
	d = dedup_new(4, 64);
	memset(a, 'x', 64);
	a[64] = 0;
	memcpy(b, a, sizeof a);
	b[63] = 'y';
	dedup_add(d, a, dedup_hash(a));
	CHECK_INT(dedup_seen(d, b, dedup_hash(b)), 0);
	dedup_add(d, b, dedup_hash(b));
	CHECK_INT(dedup_seen(d, a, dedup_hash(a)), 1);
	CHECK_INT(dedup_seen(d, b, dedup_hash(b)), 1);
	a[64] = 'x';
	a[65] = 0;
	CHECK_INT(dedup_seen(d, a, dedup_hash(a)), 0);
	CHECK_INT(dedup_count(d), 2);
	dedup_free(d);

	CHECK_INT(churn(1, 2000, 1), 0);
	CHECK_INT(churn(3, 5000, 2), 0);
	CHECK_INT(churn(37, 20000, 3), 0);
	CHECK_INT(churn(1000, 20000, 4), 0);
	return tap_done();
}
