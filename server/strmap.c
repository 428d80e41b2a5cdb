/* strmap.c: an open-addressing string-to-pointer map (linear probing,
 * tombstones) with a keyed hash, so clients cannot choose colliding keys. */
#include "strmap.h"

#include <assert.h>
#include <endian.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MIN_CAP 8

/* Marks a deleted slot; never compared by content. Deleted slots are
 * tombstones rather than back-shifted so that deleting the entry just
 * returned by strmap_next never moves another entry across the cursor. */
static char tombstone[1];

struct slot {
	char *key;   /* Owned copy, NULL when empty, tombstone when deleted. */
	void *value; /* Borrowed; never NULL in a live slot. */
	size_t hash; /* strmap_hash(key), to skip most string compares. */
};

struct strmap {
	struct slot *slots; /* cap entries. */
	size_t cap;	    /* A power of two, at least MIN_CAP. */
	size_t count;	    /* Live keys. */
	size_t tombs;	    /* Deleted slots, which lengthen probes. */
};

/* SipHash key, drawn once per process. */
static uint64_t sip_k0, sip_k1;
static bool sip_keyed;

static void sip_key_init(void)
{
	uint64_t k[2];

	if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
		/* Early boot without entropy: still unpredictable enough
		 * from outside, and the map works with any key. */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15u ^
		       (uint64_t)ts.tv_sec;
		k[1] = (uint64_t)getpid() * 0xbf58476d1ce4e5b9u ^
		       (uint64_t)(uintptr_t)&ts;
	}
	sip_k0 = k[0];
	sip_k1 = k[1];
	sip_keyed = true;
}

static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                               \
	do {                                                                   \
		v0 += v1;                                                      \
		v1 = rotl(v1, 13);                                             \
		v1 ^= v0;                                                      \
		v0 = rotl(v0, 32);                                             \
		v2 += v3;                                                      \
		v3 = rotl(v3, 16);                                             \
		v3 ^= v2;                                                      \
		v0 += v3;                                                      \
		v3 = rotl(v3, 21);                                             \
		v3 ^= v0;                                                      \
		v2 += v1;                                                      \
		v1 = rotl(v1, 17);                                             \
		v1 ^= v2;                                                      \
		v2 = rotl(v2, 32);                                             \
	} while (0)

/* The 8 bytes at p as a little-endian word. One load: gcc 12 does not
 * merge the shift-and-or of eight byte loads, which cost the hash about
 * 56 instructions a word. */
static inline uint64_t load_le64(const unsigned char *p)
{
	uint64_t m;

	memcpy(&m, p, sizeof m);
	return le64toh(m);
}

/* The last n (0 to 7) bytes at p as a little-endian word, the rest zero:
 * at most three loads, none past p + n. */
static inline uint64_t load_le_tail(const unsigned char *p, size_t n)
{
	uint64_t m = 0;
	uint32_t w;
	uint16_t h;

	if (n & 4) {
		memcpy(&w, p, sizeof w);
		m = le32toh(w);
	}
	if (n & 2) {
		memcpy(&h, p + (n & 4), sizeof h);
		m |= (uint64_t)le16toh(h) << (8 * (n & 4));
	}
	if (n & 1)
		m |= (uint64_t)p[n - 1] << (8 * (n - 1));
	return m;
}

uint64_t strmap_siphash13(uint64_t k0, uint64_t k1, const void *data,
			  size_t len)
{
	const unsigned char *p = data;
	uint64_t v0, v1, v2, v3, b = (uint64_t)len << 56, m;

	v0 = k0 ^ 0x736f6d6570736575u;
	v1 = k1 ^ 0x646f72616e646f6du;
	v2 = k0 ^ 0x6c7967656e657261u;
	v3 = k1 ^ 0x7465646279746573u;
	for (; len >= 8; len -= 8, p += 8) {
		m = load_le64(p);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	b |= load_le_tail(p, len);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* SipHash-1-3 under the process's key: keyed, so a client cannot
 * precompute topics that collide, and fast on the short strings used as
 * keys here. */
size_t strmap_hash_len(const char *s, size_t len)
{
	if (!sip_keyed)
		sip_key_init();
	return (size_t)strmap_siphash13(sip_k0, sip_k1, s, len);
}

size_t strmap_hash(const char *s)
{
	return strmap_hash_len(s, strlen(s));
}

static struct slot *slots_new(size_t cap)
{
	struct slot *s = calloc(cap, sizeof *s);

	if (!s)
		abort();
	return s;
}

strmap_t *strmap_new(void)
{
	strmap_t *m = malloc(sizeof *m);

	if (!m)
		abort();
	m->cap = MIN_CAP;
	m->slots = slots_new(m->cap);
	m->count = 0;
	m->tombs = 0;
	return m;
}

void strmap_free(strmap_t *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key && m->slots[i].key != tombstone)
			free(m->slots[i].key);
	free(m->slots);
	free(m);
}

/* Returns the slot holding key, or NULL. */
static struct slot *find(const strmap_t *m, const char *key, size_t hash)
{
	size_t mask = m->cap - 1;

	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		struct slot *s = &m->slots[i];

		if (!s->key)
			return NULL;
		if (s->key != tombstone && s->hash == hash &&
		    !strcmp(s->key, key))
			return s;
	}
}

/* Moves every live entry into a fresh table of new_cap slots, dropping the
 * tombstones. */
static void rehash(strmap_t *m, size_t new_cap)
{
	struct slot *old = m->slots;
	size_t old_cap = m->cap, mask = new_cap - 1;

	m->slots = slots_new(new_cap);
	m->cap = new_cap;
	m->tombs = 0;
	for (size_t j = 0; j < old_cap; j++) {
		size_t i;

		if (!old[j].key || old[j].key == tombstone)
			continue;
		for (i = old[j].hash & mask; m->slots[i].key;
		     i = (i + 1) & mask)
			;
		m->slots[i] = old[j];
	}
	free(old);
}

void *strmap_get(const strmap_t *m, const char *key)
{
	return strmap_get_hashed(m, key, strmap_hash(key));
}

void *strmap_get_hashed(const strmap_t *m, const char *key, size_t hash)
{
	struct slot *s = find(m, key, hash);

	return s ? s->value : NULL;
}

void strmap_put(strmap_t *m, const char *key, void *value, void **old)
{
	size_t hash = strmap_hash(key), mask, i;
	struct slot *s = find(m, key, hash);

	assert(value);
	if (old)
		*old = s ? s->value : NULL;
	if (s) {
		s->value = value;
		return;
	}
	/* Resize only here, never in strmap_del, so that iteration with
	 * deletion stays valid. Keep live + tombstones at most 3/4 full;
	 * size the new table so the live keys fill at most 3/8, shrinking
	 * a table that deletions have left mostly empty. */
	if ((m->count + m->tombs + 1) * 4 > m->cap * 3 ||
	    (m->cap > MIN_CAP && (m->count + 1) * 16 < m->cap)) {
		size_t cap = MIN_CAP;

		while ((m->count + 1) * 8 > cap * 3)
			cap *= 2;
		rehash(m, cap);
	}
	/* key is absent, so the first free or deleted slot will do. */
	mask = m->cap - 1;
	for (i = hash & mask; m->slots[i].key && m->slots[i].key != tombstone;
	     i = (i + 1) & mask)
		;
	s = &m->slots[i];
	if (s->key == tombstone)
		m->tombs--;
	s->key = strdup(key);
	if (!s->key)
		abort();
	s->value = value;
	s->hash = hash;
	m->count++;
}

void *strmap_del(strmap_t *m, const char *key)
{
	struct slot *s = find(m, key, strmap_hash(key));
	void *value;

	if (!s)
		return NULL;
	value = s->value;
	free(s->key);
	s->key = tombstone;
	s->value = NULL;
	m->count--;
	m->tombs++;
	if (m->count == 0) {
		/* Nothing live is left to skip over, so the tombstones can
		 * go without moving any entry. */
		memset(m->slots, 0, m->cap * sizeof *m->slots);
		m->tombs = 0;
	}
	return value;
}

size_t strmap_count(const strmap_t *m)
{
	return m->count;
}

int strmap_next(const strmap_t *m, size_t *iter, const char **key, void **value)
{
	for (size_t i = *iter; i < m->cap; i++) {
		const struct slot *s = &m->slots[i];

		if (s->key && s->key != tombstone) {
			*iter = i + 1;
			*key = s->key;
			*value = s->value;
			return 1;
		}
	}
	*iter = m->cap;
	return 0;
}
