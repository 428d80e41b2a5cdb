/* test_strmap.c: unit tests of the string map: basics, growth, tombstone
 * churn against a shadow array, and deletion during iteration. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"
#include "tap.h"

#define N 20000

static char keys[N][16];
static int vals[N];

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define REF_ROUND                                                              \
	do {                                                                   \
		v0 += v1;                                                      \
		v1 = ROTL(v1, 13);                                             \
		v1 ^= v0;                                                      \
		v0 = ROTL(v0, 32);                                             \
		v2 += v3;                                                      \
		v3 = ROTL(v3, 16);                                             \
		v3 ^= v2;                                                      \
		v0 += v3;                                                      \
		v3 = ROTL(v3, 21);                                             \
		v3 ^= v0;                                                      \
		v2 += v1;                                                      \
		v1 = ROTL(v1, 17);                                             \
		v1 ^= v2;                                                      \
		v2 = ROTL(v2, 32);                                             \
	} while (0)

/* SipHash-1-3 as the specification reads, a byte at a time: the
 * reference that strmap_siphash13's word loads must agree with. */
static uint64_t ref_siphash13(uint64_t k0, uint64_t k1, const unsigned char *p,
			      size_t len)
{
	uint64_t v0 = k0 ^ 0x736f6d6570736575u, v1 = k1 ^ 0x646f72616e646f6du;
	uint64_t v2 = k0 ^ 0x6c7967656e657261u, v3 = k1 ^ 0x7465646279746573u;
	uint64_t b = (uint64_t)len << 56, m;
	size_t words = len / 8;

	for (size_t w = 0; w < words; w++) {
		m = 0;
		for (int i = 0; i < 8; i++)
			m |= (uint64_t)p[8 * w + i] << (8 * i);
		v3 ^= m;
		REF_ROUND;
		v0 ^= m;
	}
	for (size_t i = 0; i < len % 8; i++)
		b |= (uint64_t)p[8 * words + i] << (8 * i);
	v3 ^= b;
	REF_ROUND;
	v0 ^= b;
	v2 ^= 0xff;
	REF_ROUND;
	REF_ROUND;
	REF_ROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* Every length from 0 to 64, at every alignment of 0 to 7, with bytes
 * that have their high bit set, against the reference; and each input
 * read only within its length (the byte after it differs between two
 * calls that must agree). */
static void test_siphash(void)
{
	unsigned char buf[80];
	uint64_t k0 = 0x0706050403020100u, k1 = 0x0f0e0d0c0b0a0908u;
	int bad = 0;

	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 37 + 0x80);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len + off < 72; len++) {
			uint64_t want = ref_siphash13(k0, k1, buf + off, len);
			unsigned char keep = buf[off + len];

			if (strmap_siphash13(k0, k1, buf + off, len) != want)
				bad++;
			buf[off + len] ^= 0xff;
			if (strmap_siphash13(k0, k1, buf + off, len) != want)
				bad++;
			buf[off + len] = keep;
		}
	CHECK_INT(bad, 0);
	/* Same input, other key: a different hash. */
	CHECK(strmap_siphash13(k0, k1, "forum/zev", 9) !=
	      strmap_siphash13(k0 + 1, k1, "forum/zev", 9));
	CHECK(strmap_hash("forum/zev/heavy-duty") ==
	      strmap_hash("forum/zev/heavy-duty"));
}

static void make_keys(void)
{
	for (int i = 0; i < N; i++) {
		snprintf(keys[i], sizeof keys[i], "k%d", i);
		vals[i] = i;
	}
}

static void test_basics(void)
{
	strmap_t *m = strmap_new();
	int a = 1, b = 2, c = 3;
	void *old = &c;
	char key[8] = "topic";

	CHECK_INT(strmap_count(m), 0);
	CHECK(strmap_get(m, "x") == NULL);
	CHECK(strmap_del(m, "x") == NULL);
	strmap_put(m, key, &a, &old);
	CHECK(old == NULL);
	/* The key is copied: changing the caller's buffer changes nothing. */
	key[0] = 'T';
	CHECK(strmap_get(m, "topic") == &a);
	CHECK(strmap_get(m, "Topic") == NULL);
	strmap_put(m, "topic", &b, &old);
	CHECK(old == &a);
	CHECK_INT(strmap_count(m), 1);
	CHECK(strmap_get(m, "topic") == &b);
	strmap_put(m, "topic", &c, NULL);
	CHECK(strmap_get(m, "topic") == &c);
	/* The empty string and prefixes are distinct keys. */
	strmap_put(m, "", &a, NULL);
	strmap_put(m, "top", &b, NULL);
	CHECK_INT(strmap_count(m), 3);
	CHECK(strmap_get(m, "") == &a);
	CHECK(strmap_get(m, "top") == &b);
	CHECK(strmap_del(m, "topic") == &c);
	CHECK(strmap_del(m, "topic") == NULL);
	CHECK(strmap_get(m, "top") == &b);
	CHECK_INT(strmap_count(m), 2);
	CHECK(strmap_hash("abc") == strmap_hash("abc"));
	CHECK(strmap_hash("abc") != strmap_hash("abd"));
	CHECK(strmap_hash("") != strmap_hash("a"));
	strmap_free(m);
	strmap_free(NULL);
}

static void test_many(void)
{
	strmap_t *m = strmap_new();
	size_t iter = 0, seen = 0;
	const char *key;
	void *value;
	int bad = 0;

	for (int i = 0; i < N; i++)
		strmap_put(m, keys[i], &vals[i], NULL);
	CHECK_INT(strmap_count(m), N);
	for (int i = 0; i < N; i++)
		if (strmap_get(m, keys[i]) != &vals[i])
			bad++;
	CHECK_INT(bad, 0);
	while (strmap_next(m, &iter, &key, &value)) {
		int i = *(int *)value;

		if (strcmp(keys[i], key))
			bad++;
		seen++;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(seen, N);
	/* Finished iteration stays finished. */
	CHECK_INT(strmap_next(m, &iter, &key, &value), 0);
	for (int i = 0; i < N; i += 2)
		CHECK(strmap_del(m, keys[i]) == &vals[i]);
	CHECK_INT(strmap_count(m), N / 2);
	for (int i = 0; i < N; i++)
		if (strmap_get(m, keys[i]) != (i % 2 ? &vals[i] : NULL))
			bad++;
	CHECK_INT(bad, 0);
	strmap_free(m);
}

/* Random puts and deletes over a small key space: lots of tombstones,
 * reuse, growth and shrinking, checked against a shadow array. */
static void test_churn(void)
{
	strmap_t *m = strmap_new();
	static int *shadow[1000];
	uint64_t x = 88172645463325252u;
	size_t count = 0;
	int bad = 0;

	for (int step = 0; step < 200000; step++) {
		int k;

		tap_xorshift(&x);
		/* Phases that favour puts, then deletes, move the count from
		 * empty to full and back, so the table both grows and
		 * shrinks. */
		k = (int)(x % 1000);
		if ((x >> 32) % 100 < ((step / 20000) % 2 ? 30u : 70u)) {
			void *old;

			strmap_put(m, keys[k], &vals[k], &old);
			if (old != shadow[k])
				bad++;
			if (!shadow[k])
				count++;
			shadow[k] = &vals[k];
		} else {
			if (strmap_del(m, keys[k]) != shadow[k])
				bad++;
			if (shadow[k])
				count--;
			shadow[k] = NULL;
		}
		if (strmap_count(m) != count)
			bad++;
		if (step % 997 == 0)
			for (int i = 0; i < 1000; i++)
				if (strmap_get(m, keys[i]) != shadow[i])
					bad++;
	}
	CHECK_INT(bad, 0);
	strmap_free(m);
}

/* Deleting the entry just returned must neither skip nor repeat any
 * other entry. */
static void test_delete_while_iterating(void)
{
	static unsigned char seen[N];
	strmap_t *m = strmap_new();
	size_t iter = 0, visits = 0;
	const char *key;
	void *value;
	int bad = 0;

	for (int i = 0; i < N; i++)
		strmap_put(m, keys[i], &vals[i], NULL);
	/* Delete every third key as it is visited. */
	while (strmap_next(m, &iter, &key, &value)) {
		int i = *(int *)value;

		if (seen[i]++)
			bad++;
		visits++;
		if (i % 3 == 0 && strmap_del(m, key) != &vals[i])
			bad++;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(visits, N);
	CHECK_INT(strmap_count(m), N - (N + 2) / 3);
	/* Then delete everything that is left, the same way. */
	memset(seen, 0, sizeof seen);
	iter = 0;
	visits = 0;
	while (strmap_next(m, &iter, &key, &value)) {
		int i = *(int *)value;

		if (seen[i]++ || i % 3 == 0)
			bad++;
		visits++;
		strmap_del(m, key);
	}
	CHECK_INT(bad, 0);
	CHECK_INT(visits, N - (N + 2) / 3);
	CHECK_INT(strmap_count(m), 0);
	iter = 0;
	CHECK_INT(strmap_next(m, &iter, &key, &value), 0);
	/* The map is still usable afterwards. */
	strmap_put(m, "again", &vals[0], NULL);
	CHECK(strmap_get(m, "again") == &vals[0]);
	strmap_free(m);
}

int main(void)
{
	make_keys();
	test_siphash();
	test_basics();
	test_many();
	test_churn();
	test_delete_while_iterating();
	return tap_done();
}
