/* dedup.c: a FIFO window of ids backed by a hash set (see dedup.h). */
#include "dedup.h"

#include <stdlib.h>
#include <string.h>

#include "strmap.h"

struct dedup {
	strmap_t *set; /* Ids held (values unused). */
	char **fifo;   /* Ids in arrival order (owned copies). */
	size_t cap;    /* Capacity of fifo. */
	size_t head;   /* Oldest entry. */
	size_t len;    /* Entries held. */
};

dedup_t *dedup_new(size_t cap)
{
	dedup_t *d = calloc(1, sizeof *d);

	if (!d)
		abort();
	d->cap = cap ? cap : 1;
	d->fifo = calloc(d->cap, sizeof *d->fifo);
	if (!d->fifo)
		abort();
	d->set = strmap_new();
	return d;
}

void dedup_free(dedup_t *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->len; i++)
		free(d->fifo[(d->head + i) % d->cap]);
	free(d->fifo);
	strmap_free(d->set);
	free(d);
}

int dedup_seen(const dedup_t *d, const char *id)
{
	return strmap_get(d->set, id) != NULL;
}

void dedup_add(dedup_t *d, const char *id)
{
	char *copy;

	if (dedup_seen(d, id))
		return;
	if (d->len == d->cap) {
		char *old = d->fifo[d->head];

		strmap_del(d->set, old);
		free(old);
		d->head = (d->head + 1) % d->cap;
		d->len--;
	}
	copy = strdup(id);
	if (!copy)
		abort();
	d->fifo[(d->head + d->len) % d->cap] = copy;
	d->len++;
	strmap_put(d->set, id, d, NULL);
}

size_t dedup_count(const dedup_t *d)
{
	return d->len;
}
