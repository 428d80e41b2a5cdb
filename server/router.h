/* router.h: the subscription index. Maps filters (topics and patterns) to
 * opaque owners (client connections, later peer links) so that matching a
 * topic costs about the number of matching subscriptions, not the number
 * of subscriptions held: exact topics by hash, patterns in a trie of
 * segments. */
#ifndef PARLEY_ROUTER_H
#define PARLEY_ROUTER_H

#include <stddef.h>

typedef struct router router_t;
typedef struct router_sub router_sub_t;

/* Called once per matching subscription; an owner with several matching
 * filters is called once per filter (callers dedup, e.g. by a per-owner
 * message stamp). Must not add or remove subscriptions. */
typedef void (*router_match_fn)(void *owner, void *ud);

/* Returns a new empty router. */
router_t *router_new(void);

/* Frees the router and every subscription handle still in it. */
void router_free(router_t *r);

/* Adds a subscription of owner to filter, which the caller has validated
 * with topic_validate_filter. The same owner may hold the same filter only
 * once: adding it again returns PE_EXISTS. Returns 0 and a handle in *out
 * (owned by the router until router_remove). */
int router_add(router_t *r, const char *filter, void *owner,
	       router_sub_t **out);

/* Removes and frees one subscription. */
void router_remove(router_t *r, router_sub_t *s);

/* Returns the filter text of a subscription (owned by the handle). */
const char *router_sub_filter(const router_sub_t *s);

/* Calls fn(owner, ud) for each subscription whose filter matches the valid
 * topic, whose strmap_hash is hash. */
void router_match(const router_t *r, const char *topic, size_t hash,
		  router_match_fn fn, void *ud);

/* Returns the number of subscriptions held. */
size_t router_count(const router_t *r);

#endif
