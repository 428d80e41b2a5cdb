/* strmap.h: a hash map from NUL-terminated strings to pointers. Open
 * addressing, grows by doubling; keys are copied and owned by the map,
 * values are borrowed (the map never frees them). Aborts on out-of-memory,
 * as the daemon may. */
#ifndef PARLEY_STRMAP_H
#define PARLEY_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap strmap_t;

/* Returns a new empty map. */
strmap_t *strmap_new(void);

/* Frees the map and its key copies, not the values. NULL is a no-op. */
void strmap_free(strmap_t *m);

/* Returns the value stored for key, or NULL. */
void *strmap_get(const strmap_t *m, const char *key);

/* strmap_get with key's strmap_hash computed by the caller (one hash for
 * several maps: the hash key is the same for every map). */
void *strmap_get_hashed(const strmap_t *m, const char *key, size_t hash);

/* Stores value for key, replacing any previous value (which is returned
 * through *old when old is not NULL, else NULL there). value must not be
 * NULL. */
void strmap_put(strmap_t *m, const char *key, void *value, void **old);

/* Removes key; returns its value or NULL when absent. */
void *strmap_del(strmap_t *m, const char *key);

/* Returns the number of keys. */
size_t strmap_count(const strmap_t *m);

/* Iteration: *iter starts at 0; returns 1 and sets *key / *value for the
 * next entry, or 0 when done. The map must not be modified while
 * iterating, except by strmap_del of the entry just returned. */
int strmap_next(const strmap_t *m, size_t *iter, const char **key,
		void **value);

/* Returns a hash of the string (also useful to callers): SipHash-1-3
 * under a key drawn once per process. */
size_t strmap_hash(const char *s);

/* strmap_hash of the len bytes at s, for callers that know the length. */
size_t strmap_hash_len(const char *s, size_t len);

/* Returns SipHash-1-3 of the len bytes at data under the key (k0, k1);
 * strmap_hash is this under the process's key. Declared for the unit
 * test, which checks it against a byte-at-a-time reference. */
uint64_t strmap_siphash13(uint64_t k0, uint64_t k1, const void *data,
			  size_t len);

#endif
