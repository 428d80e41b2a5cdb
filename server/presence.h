/* presence.h: who is present on which topic. An identity ("user@node")
 * counts once however many of its sessions (or peer announcements) hold
 * it; presence_join / presence_leave say when that count crosses zero. */
#ifndef PARLEY_PRESENCE_H
#define PARLEY_PRESENCE_H

#include <stddef.h>

typedef struct presence presence_t;

/* Called once per identity present on a topic. */
typedef void (*presence_visit_fn)(const char *ident, void *ud);

/* Returns a new empty table. Aborts on out-of-memory. */
presence_t *presence_new(void);

/* Frees the table. NULL is a no-op. */
void presence_free(presence_t *p);

/* Counts one more holder of ident on topic. Returns 1 when ident was not
 * present before (it joined), else 0. */
int presence_join(presence_t *p, const char *topic, const char *ident);

/* Counts one holder less. Returns 1 when that was the last one (ident
 * left), 0 when others remain or it was not present. */
int presence_leave(presence_t *p, const char *topic, const char *ident);

/* Visits the identities present on topic. Returns how many. */
size_t presence_list(const presence_t *p, const char *topic,
		     presence_visit_fn fn, void *ud);

/* Called once per (topic, identity) present. */
typedef void (*presence_each_fn)(const char *topic, const char *ident,
				 void *ud);

/* Visits every (topic, identity) pair. The table must not change while
 * visiting. */
void presence_each(const presence_t *p, presence_each_fn fn, void *ud);

/* Returns the number of topics with anyone present. */
size_t presence_topic_count(const presence_t *p);

#endif
