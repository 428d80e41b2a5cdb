/* dedup.h: a bounded window of recently seen message ids, so a message
 * reaching a node by two routes (cycles in the federation graph) is stored
 * once. */
#ifndef PARLEY_DEDUP_H
#define PARLEY_DEDUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup_t;

/* Returns a window remembering the last cap (>= 1) ids of at most
 * max_len (<= 4096) bytes each: the caller validates its ids, and adding a
 * longer one aborts. Aborts on out-of-memory. */
dedup_t *dedup_new(size_t cap, size_t max_len);

/* Frees the window. NULL is a no-op. */
void dedup_free(dedup_t *d);

/* The hash the window files id under. The calls below take it from the
 * caller, who computes it once per id (it is a SipHash: three per
 * message cost a federated node ~5% of its instructions). */
uint32_t dedup_hash(const char *id);

/* dedup_hash of the n bytes at id (its length, measured already). */
uint32_t dedup_hash_len(const char *id, size_t n);

/* Returns 1 when id (hash h) is in the window, else 0. */
int dedup_seen(const dedup_t *d, const char *id, uint32_t h);

/* Remembers id (hash h), forgetting the oldest when full. Adding an id
 * already present is a no-op. */
void dedup_add(dedup_t *d, const char *id, uint32_t h);

/* Starts loading what dedup_seen for hash h will read, so that the cache
 * miss overlaps the caller's other checks. */
void dedup_prefetch(const dedup_t *d, uint32_t h);

/* Returns the number of ids held. */
size_t dedup_count(const dedup_t *d);

#endif
