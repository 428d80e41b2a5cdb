/* dedup.c: a FIFO window of ids with its own hash index (see dedup.h).
 *
 * Every message a federated node stores passes through here twice (a
 * lookup, then an insert that evicts the oldest id), so the index is
 * built for that: linear probing over a table at most half full whose
 * 8-byte slots hold the FIFO position and 32 bits of the hash (a probe
 * reads nothing else until the hash matches: about one cache miss per
 * lookup), and deletion by backward shift. A general map with tombstones
 * degraded to long probe runs under this steady churn and cost 10-14% of a
 * federated node's time. The ids themselves sit in one array of fixed-size
 * records in FIFO order: a copy of each in its own allocation cost a
 * malloc, and a free whose cache miss on the oldest id's chunk was ~4% of
 * a federated receiving node's time. */
#include "dedup.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strmap.h"

/* One index slot. */
struct slot {
	uint32_t pos; /* fifo slot + 1, or 0 when empty. */
	uint32_t h;   /* Low 32 bits of the id's hash (its home slot and a
			 filter before the string compare). */
};

struct dedup {
	char *ids;	    /* Ids in arrival order: cap records of width. */
	size_t width;	    /* Bytes per record: max_len + 1, rounded up. */
	size_t max_len;	    /* Longest id accepted. */
	uint32_t *hash;	    /* The h of each fifo slot's id. */
	struct slot *table; /* The index. */
	size_t mask;	    /* Table size - 1 (a power of two >= 2 * cap). */
	size_t cap;	    /* Records in ids (the window). */
	size_t head;	    /* Oldest entry. */
	size_t len;	    /* Entries held. */
};

dedup_t *dedup_new(size_t cap, size_t max_len)
{
	dedup_t *d = calloc(1, sizeof *d);
	size_t size = 8;

	if (!d)
		abort();
	d->cap = cap ? cap : 1;
	if (d->cap > UINT32_MAX / 4 || max_len > 4096)
		abort(); /* The config bounds the window far below this. */
	while (size < 2 * d->cap)
		size *= 2;
	d->mask = size - 1;
	d->max_len = max_len;
	d->width = (max_len + 1 + 7) & ~(size_t)7;
	d->ids = calloc(d->cap, d->width);
	d->hash = calloc(d->cap, sizeof *d->hash);
	d->table = calloc(size, sizeof *d->table);
	if (!d->ids || !d->hash || !d->table)
		abort();
	return d;
}

void dedup_free(dedup_t *d)
{
	if (!d)
		return;
	free(d->ids);
	free(d->hash);
	free(d->table);
	free(d);
}

/* The record of fifo slot i. */
static char *id_at(const dedup_t *d, size_t i)
{
	return d->ids + i * d->width;
}

/* Returns the table slot holding id (hash h), or the empty slot that
 * ends its probe run; *found says which. */
static size_t probe(const dedup_t *d, const char *id, uint32_t h, int *found)
{
	size_t i = h & d->mask;

	for (; d->table[i].pos; i = (i + 1) & d->mask) {
		if (d->table[i].h == h &&
		    !strcmp(id_at(d, d->table[i].pos - 1), id)) {
			*found = 1;
			return i;
		}
	}
	*found = 0;
	return i;
}

/* Empties table slot i, moving later entries of the probe run back so
 * that no lookup stops early (no tombstones). */
static void unindex(dedup_t *d, size_t i)
{
	size_t j = i;

	for (;;) {
		size_t k;

		j = (j + 1) & d->mask;
		if (!d->table[j].pos)
			break;
		k = d->table[j].h & d->mask;
		/* The entry at j stays when its home k lies cyclically in
		 * (i, j]: moving it before its home would hide it. */
		if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
			continue;
		d->table[i] = d->table[j];
		i = j;
	}
	d->table[i].pos = 0;
}

uint32_t dedup_hash(const char *id)
{
	return (uint32_t)strmap_hash(id);
}

uint32_t dedup_hash_len(const char *id, size_t n)
{
	return (uint32_t)strmap_hash_len(id, n);
}

int dedup_seen(const dedup_t *d, const char *id, uint32_t h)
{
	int found;

	probe(d, id, h, &found);
	return found;
}

void dedup_add(dedup_t *d, const char *id, uint32_t h)
{
	size_t slot, at, len = strlen(id);
	int found;

	if (len > d->max_len)
		abort(); /* The caller bounds its ids (dedup_new). */
	probe(d, id, h, &found);
	if (found)
		return;
	if (d->len == d->cap) {
		/* Forget the oldest: find its slot by its position. */
		size_t i = d->hash[d->head] & d->mask;

		while (d->table[i].pos != d->head + 1)
			i = (i + 1) & d->mask;
		unindex(d, i);
		d->head = (d->head + 1) % d->cap;
		d->len--;
	}
	at = (d->head + d->len) % d->cap;
	memcpy(id_at(d, at), id, len + 1);
	d->hash[at] = h;
	d->len++;
	/* The eviction may have moved entries: probe again for the hole. */
	slot = probe(d, id, h, &found);
	d->table[slot].pos = (uint32_t)(at + 1);
	d->table[slot].h = h;
	/* The next add evicts the id now oldest: start loading its slot
	 * (a cache miss in a table this size) while other work runs. */
	if (d->len == d->cap)
		__builtin_prefetch(&d->table[d->hash[d->head] & d->mask]);
}

void dedup_prefetch(const dedup_t *d, uint32_t h)
{
	__builtin_prefetch(&d->table[h & d->mask]);
}

size_t dedup_count(const dedup_t *d)
{
	return d->len;
}
