/* presence.c: per-topic reference counts of identities (see presence.h). */
#include "presence.h"

#include <stdint.h>
#include <stdlib.h>

#include "strmap.h"

struct presence {
	strmap_t *topics; /* Topic to strmap of ident to count (uintptr_t). */
};

presence_t *presence_new(void)
{
	presence_t *p = malloc(sizeof *p);

	if (!p)
		abort();
	p->topics = strmap_new();
	return p;
}

void presence_free(presence_t *p)
{
	size_t it = 0;
	const char *k;
	void *v;

	if (!p)
		return;
	while (strmap_next(p->topics, &it, &k, &v))
		strmap_free(v);
	strmap_free(p->topics);
	free(p);
}

int presence_join(presence_t *p, const char *topic, const char *ident)
{
	strmap_t *who = strmap_get(p->topics, topic);
	uintptr_t n;

	if (!who) {
		who = strmap_new();
		strmap_put(p->topics, topic, who, NULL);
	}
	/* Counts are stored as pointer-sized integers; 0 never appears. */
	n = (uintptr_t)strmap_get(who, ident);
	strmap_put(who, ident, (void *)(n + 1), NULL);
	return n == 0;
}

int presence_leave(presence_t *p, const char *topic, const char *ident)
{
	strmap_t *who = strmap_get(p->topics, topic);
	uintptr_t n;

	if (!who)
		return 0;
	n = (uintptr_t)strmap_get(who, ident);
	if (n == 0)
		return 0;
	if (n > 1) {
		strmap_put(who, ident, (void *)(n - 1), NULL);
		return 0;
	}
	strmap_del(who, ident);
	if (!strmap_count(who)) {
		strmap_del(p->topics, topic);
		strmap_free(who);
	}
	return 1;
}

size_t presence_list(const presence_t *p, const char *topic,
		     presence_visit_fn fn, void *ud)
{
	strmap_t *who = strmap_get(p->topics, topic);
	size_t it = 0, n = 0;
	const char *k;
	void *v;

	if (!who)
		return 0;
	while (strmap_next(who, &it, &k, &v)) {
		fn(k, ud);
		n++;
	}
	return n;
}

void presence_each(const presence_t *p, presence_each_fn fn, void *ud)
{
	size_t it = 0, jt;
	const char *topic, *ident;
	void *who, *v;

	while (strmap_next(p->topics, &it, &topic, &who))
		for (jt = 0; strmap_next(who, &jt, &ident, &v);)
			fn(topic, ident, ud);
}

size_t presence_topic_count(const presence_t *p)
{
	return strmap_count(p->topics);
}
