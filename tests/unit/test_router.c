/* test_router.c: unit tests of the subscription index: a table of cases,
 * duplicates, removal, pruning (memory returns) and a random stress test
 * against a brute-force topic_match oracle. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "router.h"
#include "strmap.h"
#include "tap.h"
#include "topic.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#ifdef HAVE_ASAN
/* From <sanitizer/allocator_interface.h>, which GCC does not install. */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* Bytes currently allocated by the process, or 0 when unknown; pruning is
 * checked by comparing it before and after. Only ASan counts exactly:
 * glibc's mallinfo2 counts chunks cached in its tcache as in use. */
static size_t heap_bytes(void)
{
#ifdef HAVE_ASAN
	return __sanitizer_get_current_allocated_bytes();
#else
	return 0;
#endif
}

#define NOWNERS 64

/* A test owner: counts the calls it receives. */
struct owner {
	int id;	   /* Index in owners[]. */
	int calls; /* Matches reported since the last reset. */
};

static struct owner owners[NOWNERS];

static void count_call(void *owner, void *ud)
{
	int *total = ud;

	((struct owner *)owner)->calls++;
	(*total)++;
}

/* Runs router_match on topic; returns the total number of calls. */
static int match(const router_t *r, const char *topic)
{
	int total = 0;

	for (int i = 0; i < NOWNERS; i++)
		owners[i].calls = 0;
	router_match(r, topic, strmap_hash(topic), count_call, &total);
	return total;
}

/* One subscription of the table test. */
struct tsub {
	int owner;	    /* Index in owners[]. */
	const char *filter; /* Valid filter. */
};

static const struct tsub tsubs[] = {
    {0, "a/b"},	  /* 0 */
    {0, "a/+"},	  /* 1 */
    {0, "#"},	  /* 2 */
    {0, "a/#"},	  /* 3 */
    {1, "a/b"},	  /* 4 */
    {1, "+/b"},	  /* 5 */
    {1, "a/+/c"}, /* 6 */
    {1, "+"},	  /* 7 */
    {2, "a/b/c"}, /* 8 */
    {2, "a/#"},	  /* 9 */
    {2, "x"},	  /* 10 */
    {2, "+/+/+"}, /* 11 */
    {2, "+/b/#"}, /* 12 */
    {3, "x/y"},	  /* 13 */
};

/* One topic of the table test and the calls each owner expects. */
struct tcase {
	const char *topic; /* Valid topic. */
	int calls[4];	   /* Expected calls for owners 0..3. */
};

static const struct tcase tcases[] = {
    {"a", {2, 1, 1, 0}},     /* #, a/# | + | a/# */
    {"a/b", {4, 2, 2, 0}},   /* a/b, a/+, #, a/# | a/b, +/b | a/#, +/b/# */
    {"a/c", {3, 0, 1, 0}},   /* a/+, #, a/# | - | a/# */
    {"a/b/c", {2, 1, 4, 0}}, /* #, a/# | a/+/c | a/b/c, a/#, +/+/+, +/b/# */
    {"x", {1, 1, 1, 0}},     /* # | + | x */
    {"x/y", {1, 0, 0, 1}},   /* # | - | - | x/y */
    {"x/b", {1, 1, 1, 0}},   /* # | +/b | +/b/# */
    {"b/a/c", {1, 0, 1, 0}}, /* # | - | +/+/+ */
    {"q/r/s/t", {1, 0, 0, 0}},
};

/* Checks every table topic against the table and the oracle; live[i]
 * says whether tsubs[i] is currently subscribed. */
static void check_table(const router_t *r, const bool *live, bool exact)
{
	for (size_t t = 0; t < sizeof tcases / sizeof tcases[0]; t++) {
		int want[NOWNERS] = {0};

		for (size_t i = 0; i < sizeof tsubs / sizeof tsubs[0]; i++)
			if (live[i] &&
			    topic_match(tsubs[i].filter, tcases[t].topic))
				want[tsubs[i].owner]++;
		match(r, tcases[t].topic);
		for (int o = 0; o < 4; o++) {
			if (exact)
				CHECK_INT(want[o], tcases[t].calls[o]);
			CHECK_INT(owners[o].calls, want[o]);
		}
	}
}

static void test_table(void)
{
	size_t n = sizeof tsubs / sizeof tsubs[0];
	router_sub_t *h[sizeof tsubs / sizeof tsubs[0]], *dup = NULL;
	bool live[sizeof tsubs / sizeof tsubs[0]];
	router_t *r = router_new();

	for (size_t i = 0; i < n; i++) {
		CHECK_INT(router_add(r, tsubs[i].filter,
				     &owners[tsubs[i].owner], &h[i]),
			  0);
		CHECK_STR(router_sub_filter(h[i]), tsubs[i].filter);
		live[i] = true;
	}
	CHECK_INT(router_count(r), n);
	check_table(r, live, true);

	/* The same owner and filter again, exact or pattern: refused, and
	 * nothing changes. Another owner may hold the same filter. */
	CHECK_INT(router_add(r, "a/b", &owners[0], &dup), PE_EXISTS);
	CHECK_INT(router_add(r, "a/#", &owners[0], &dup), PE_EXISTS);
	CHECK_INT(router_add(r, "#", &owners[0], &dup), PE_EXISTS);
	CHECK_INT(router_add(r, "+", &owners[1], &dup), PE_EXISTS);
	CHECK(dup == NULL);
	CHECK_INT(router_count(r), n);
	check_table(r, live, true);
	CHECK_INT(router_add(r, "a/b", &owners[3], &dup), 0);
	CHECK_INT(match(r, "a/b"), 9);
	CHECK_INT(owners[3].calls, 1);
	router_remove(r, dup);
	CHECK_INT(match(r, "a/b"), 8);

	/* "a/#" and "a/+" share the node "a" but are different lists. */
	router_remove(r, h[3]);
	live[3] = false;
	check_table(r, live, false);
	CHECK_INT(router_add(r, "a/#", &owners[0], &h[3]), 0);
	live[3] = true;
	check_table(r, live, true);

	/* Remove in an order that empties shared nodes late. */
	for (size_t i = 0; i < n; i++) {
		size_t k = (i * 5) % n;

		router_remove(r, h[k]);
		live[k] = false;
		CHECK_INT(router_count(r), n - i - 1);
		check_table(r, live, false);
	}
	CHECK_INT(match(r, "a/b"), 0);
	router_free(r);
}

static void test_prune(void)
{
	size_t base, with_root;
	router_t *r;
	router_sub_t *a, *b, *c, *d;

	base = heap_bytes();
	r = router_new();
	with_root = heap_bytes();
	CHECK_INT(router_add(r, "a/b/c/d", &owners[0], &a), 0);
	CHECK_INT(router_add(r, "a/b/+", &owners[0], &b), 0);
	CHECK_INT(router_add(r, "topic/x", &owners[1], &c), 0);
	CHECK_INT(router_add(r, "a/b/c/d/#", &owners[1], &d), 0);
	CHECK_INT(match(r, "a/b/c/d"), 2);
	/* Remove the deep branch: the shared prefix must survive. */
	router_remove(r, a);
	router_remove(r, d);
	CHECK_INT(match(r, "a/b/c/d"), 0);
	CHECK_INT(match(r, "a/b/x"), 1);
	CHECK_INT(match(r, "topic/x"), 1);
	/* Re-adding under pruned nodes rebuilds them. */
	CHECK_INT(router_add(r, "a/b/c/d", &owners[2], &a), 0);
	CHECK_INT(match(r, "a/b/c/d"), 1);
	CHECK_INT(owners[2].calls, 1);
	router_remove(r, a);
	router_remove(r, b);
	router_remove(r, c);
	CHECK_INT(router_count(r), 0);
	CHECK_INT(match(r, "a/b/x"), 0);
	/* Every node, exact entry and set slot has been given back. */
	CHECK_INT(heap_bytes(), with_root);
	router_free(r);
	CHECK_INT(heap_bytes(), base);
}

/* The stress test's random number generator (xorshift64). */
static uint64_t rng = 0x2545f4914f6cdd1du;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)((rng >> 11) % n);
}

/* Writes a random filter (or with topic set, a topic) of 1-4 segments
 * over a small alphabet, so that many subscriptions match each topic. */
static void random_filter(char *buf, bool topic)
{
	static const char *const lits[] = {"s0", "s1", "s2", "s3",
					   "s4", "s5", "s6", "longer-segment"};
	int nseg = 1 + (int)rnd(topic ? 5 : 4);
	char *p = buf;

	for (int i = 0; i < nseg; i++) {
		uint32_t k = rnd(topic ? 8 : 10);
		const char *seg;

		if (i)
			*p++ = '/';
		if (k < 8)
			seg = lits[k];
		else if (k == 8)
			seg = "+";
		else
			seg = i == nseg - 1 ? "#" : "+";
		p += sprintf(p, "%s", seg);
	}
}

#define NSUBS	10000
#define NTOPICS 300

/* A subscription the stress test holds. */
struct ssub {
	router_sub_t *h; /* Handle, NULL once removed. */
	int owner;	 /* Index in owners[]. */
	char filter[64]; /* Its filter. */
};

static struct ssub ssubs[NSUBS];
static char stopics[NTOPICS][64];

/* Compares router_match against topic_match over every live sub. */
static int stress_check(const router_t *r, size_t nsubs)
{
	int bad = 0;

	for (int t = 0; t < NTOPICS; t++) {
		int want[NOWNERS] = {0}, total = 0;

		for (size_t i = 0; i < nsubs; i++)
			if (ssubs[i].h &&
			    topic_match(ssubs[i].filter, stopics[t])) {
				want[ssubs[i].owner]++;
				total++;
			}
		if (match(r, stopics[t]) != total)
			bad++;
		for (int o = 0; o < NOWNERS; o++)
			if (owners[o].calls != want[o])
				bad++;
	}
	return bad;
}

static void test_stress(void)
{
	size_t base = heap_bytes(), nsubs = 0, live = 0, dups = 0;
	router_t *r = router_new();
	size_t with_root = heap_bytes();
	strmap_t *seen = strmap_new(); /* owner:filter pairs held. */
	int bad = 0;
	bool pat;

	for (int t = 0; t < NTOPICS; t++) {
		random_filter(stopics[t], true);
		CHECK_INT(topic_validate(stopics[t], strlen(stopics[t])), 0);
	}
	for (size_t i = 0; i < NSUBS; i++) {
		struct ssub *s = &ssubs[nsubs];
		char key[80];
		int err;

		s->owner = (int)rnd(NOWNERS);
		random_filter(s->filter, false);
		if (topic_validate_filter(s->filter, strlen(s->filter), &pat))
			bad++;
		snprintf(key, sizeof key, "%d:%s", s->owner, s->filter);
		err = router_add(r, s->filter, &owners[s->owner], &s->h);
		if (strmap_get(seen, key)) {
			dups++;
			if (err != PE_EXISTS)
				bad++;
			continue;
		}
		if (err != 0)
			bad++;
		strmap_put(seen, key, s, NULL);
		nsubs++;
		live++;
	}
	CHECK_INT(bad, 0);
	CHECK(dups > 0);
	CHECK_INT(router_count(r), live);
	CHECK_INT(stress_check(r, nsubs), 0);

	/* Remove a random half, in random order. */
	for (size_t k = 0; k < nsubs / 2; k++) {
		struct ssub *s = &ssubs[rnd((uint32_t)nsubs)];

		if (!s->h)
			continue;
		router_remove(r, s->h);
		s->h = NULL;
		live--;
	}
	CHECK_INT(router_count(r), live);
	CHECK_INT(stress_check(r, nsubs), 0);

	/* Re-add some removed ones: handles are fresh, filters the same. */
	for (size_t i = 0; i < nsubs; i += 7) {
		if (!ssubs[i].h) {
			CHECK_INT(router_add(r, ssubs[i].filter,
					     &owners[ssubs[i].owner],
					     &ssubs[i].h),
				  0);
			live++;
		}
	}
	CHECK_INT(router_count(r), live);
	CHECK_INT(stress_check(r, nsubs), 0);

	for (size_t i = 0; i < nsubs; i++) {
		if (ssubs[i].h) {
			router_remove(r, ssubs[i].h);
			ssubs[i].h = NULL;
		}
	}
	CHECK_INT(router_count(r), 0);
	CHECK_INT(stress_check(r, nsubs), 0);
	strmap_free(seen);
	CHECK_INT(heap_bytes(), with_root);
	router_free(r);
	CHECK_INT(heap_bytes(), base);
}

/* router_free releases whatever is still subscribed (LeakSanitizer checks
 * that nothing is lost). */
static void test_free_with_subs(void)
{
	router_t *r = router_new();
	router_sub_t *s;

	CHECK_INT(router_add(r, "a/b", &owners[0], &s), 0);
	CHECK_INT(router_add(r, "a/+/c/#", &owners[0], &s), 0);
	CHECK_INT(router_add(r, "#", &owners[1], &s), 0);
	CHECK_INT(router_add(r, "+", &owners[1], &s), 0);
	router_free(r);
	router_free(NULL);
}

int main(void)
{
	for (int i = 0; i < NOWNERS; i++)
		owners[i].id = i;
	test_table();
	test_prune();
	test_stress();
	test_free_with_subs();
	return tap_done();
}
