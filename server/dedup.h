/* dedup.h: a bounded window of recently seen message ids, so a message
 * reaching a node by two routes (cycles in the federation graph) is stored
 * once. */
#ifndef PARLEY_DEDUP_H
#define PARLEY_DEDUP_H

#include <stddef.h>

typedef struct dedup dedup_t;

/* Returns a window remembering the last cap (>= 1) ids. Aborts on
 * out-of-memory. */
dedup_t *dedup_new(size_t cap);

/* Frees the window. NULL is a no-op. */
void dedup_free(dedup_t *d);

/* Returns 1 when id is in the window, else 0. */
int dedup_seen(const dedup_t *d, const char *id);

/* Remembers id (forgetting the oldest when full). Adding an id already
 * present is a no-op. */
void dedup_add(dedup_t *d, const char *id);

/* Starts loading what dedup_seen(d, id) will read, so that the cache
 * miss overlaps the caller's other checks. */
void dedup_prefetch(const dedup_t *d, const char *id);

/* Returns the number of ids held. */
size_t dedup_count(const dedup_t *d);

#endif
