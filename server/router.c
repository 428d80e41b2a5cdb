/* router.c: the subscription index: exact topics in a hash map, patterns in
 * a trie of segments, and a hash set of every subscription keyed by (owner,
 * list) that finds duplicates in O(1). */
#include "router.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "strmap.h"
#include "topic.h"

/* The most segments a filter of TOPIC_MAX_BYTES can have ("a/a/.../a"). */
#define MAX_SEGS ((TOPIC_MAX_BYTES + 1) / 2)

#define SET_MIN_CAP 16

/* The subscriptions of one filter. A filter has exactly one list, so the
 * list's address stands for the filter in the duplicate set. */
struct sub_list {
	router_sub_t *head; /* Doubly linked through prev/next; NULL: empty. */
};

struct router_sub {
	router_sub_t *prev;    /* Neighbours in list, for O(1) removal. */
	router_sub_t *next;    /* Next in list, or NULL. */
	struct sub_list *list; /* The list of this filter. */
	struct node *node;     /* Trie node owning list; NULL for a topic. */
	void *owner;	       /* Borrowed from the caller. */
	char filter[];	       /* The filter text, NUL-terminated. */
};

/* One trie node per distinct pattern prefix. A node lives while it holds a
 * subscription or a child, so removing the last subscription returns the
 * memory of its whole branch. */
struct node {
	struct node *parent;  /* NULL at the root. */
	strmap_t *children;   /* Literal segment to node; NULL when none. */
	struct node *plus;    /* The "+" child, or NULL. */
	struct sub_list hash; /* Filters that are this prefix then "#". */
	struct sub_list end;  /* Filters that end at this prefix. */
};

/* Open-addressing set of subscriptions keyed by (owner, list), with
 * backward-shift deletion; it is never iterated, so entries may move. */
struct sub_set {
	router_sub_t **slots; /* cap entries, NULL when free. */
	size_t cap;	      /* 0 (no table) or a power of two. */
	size_t count;	      /* Entries held. */
};

struct router {
	strmap_t *exact;      /* Topic to struct sub_list; NULL when none. */
	struct node root;     /* The empty prefix: "#", and parent of all. */
	struct sub_set owned; /* Every subscription, to refuse duplicates. */
	size_t count;	      /* Subscriptions held. */
};

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (!p)
		abort();
	return p;
}

/* Pointers are not chosen by clients, so a fixed mix suffices. */
static size_t pair_hash(const void *owner, const struct sub_list *list)
{
	uint64_t x = (uint64_t)(uintptr_t)owner * 0x9e3779b97f4a7c15u ^
		     (uint64_t)(uintptr_t)list;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdu;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53u;
	x ^= x >> 33;
	return (size_t)x;
}

static void set_insert_slot(struct sub_set *set, router_sub_t *s)
{
	size_t mask = set->cap - 1, i;

	for (i = pair_hash(s->owner, s->list) & mask; set->slots[i];
	     i = (i + 1) & mask)
		;
	set->slots[i] = s;
}

static void set_resize(struct sub_set *set, size_t cap)
{
	router_sub_t **old = set->slots;
	size_t old_cap = set->cap;

	set->slots = cap ? xcalloc(cap, sizeof *set->slots) : NULL;
	set->cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i])
			set_insert_slot(set, old[i]);
	free(old);
}

static router_sub_t *set_find(const struct sub_set *set, const void *owner,
			      const struct sub_list *list)
{
	size_t mask = set->cap - 1;

	if (!set->cap)
		return NULL;
	for (size_t i = pair_hash(owner, list) & mask; set->slots[i];
	     i = (i + 1) & mask)
		if (set->slots[i]->owner == owner &&
		    set->slots[i]->list == list)
			return set->slots[i];
	return NULL;
}

static void set_add(struct sub_set *set, router_sub_t *s)
{
	/* At most half full keeps linear probes short. */
	if ((set->count + 1) * 2 > set->cap)
		set_resize(set, set->cap ? set->cap * 2 : SET_MIN_CAP);
	set_insert_slot(set, s);
	set->count++;
}

static void set_del(struct sub_set *set, router_sub_t *s)
{
	size_t mask = set->cap - 1, i, j;

	for (i = pair_hash(s->owner, s->list) & mask; set->slots[i] != s;
	     i = (i + 1) & mask)
		;
	/* Backward shift: pull later entries of the probe run into the hole
	 * unless their home slot lies cyclically in (hole, entry]. */
	for (j = i;;) {
		size_t home;

		j = (j + 1) & mask;
		if (!set->slots[j])
			break;
		home =
		    pair_hash(set->slots[j]->owner, set->slots[j]->list) & mask;
		if (i <= j ? (home <= i || home > j)
			   : (home <= i && home > j)) {
			set->slots[i] = set->slots[j];
			i = j;
		}
	}
	set->slots[i] = NULL;
	set->count--;
	if (set->count == 0)
		set_resize(set, 0);
	else if (set->cap > SET_MIN_CAP && set->count * 8 < set->cap)
		set_resize(set, set->cap / 2);
}

/* Copies the filter or topic s into buf (TOPIC_MAX_BYTES + 1 bytes) with
 * each '/' replaced by NUL, and points seg[] (MAX_SEGS entries) at the
 * segments. Returns their number, or 0 when s is empty, too long or has an
 * empty segment (callers validate; this only keeps a bad caller inside the
 * buffers). */
static size_t split(const char *s, char *buf, char **seg)
{
	size_t len = strnlen(s, TOPIC_MAX_BYTES + 1), n = 0, start = 0;

	if (len == 0 || len > TOPIC_MAX_BYTES)
		return 0;
	memcpy(buf, s, len + 1);
	for (size_t i = 0; i <= len; i++) {
		if (buf[i] == '/' || buf[i] == 0) {
			if (i == start)
				return 0;
			buf[i] = 0;
			seg[n++] = buf + start;
			start = i + 1;
		}
	}
	return n;
}

static bool is_seg(const char *seg, char w)
{
	return seg[0] == w && seg[1] == 0;
}

router_t *router_new(void)
{
	return xcalloc(1, sizeof(router_t));
}

static void free_list(struct sub_list *l)
{
	router_sub_t *s, *next;

	for (s = l->head; s; s = next) {
		next = s->next;
		free(s);
	}
}

/* Frees the subscriptions and descendants of n, not n itself. */
static void free_node_contents(struct node *n)
{
	if (n->children) {
		size_t iter = 0;
		const char *key;
		void *child;

		while (strmap_next(n->children, &iter, &key, &child)) {
			free_node_contents(child);
			free(child);
		}
		strmap_free(n->children);
	}
	if (n->plus) {
		free_node_contents(n->plus);
		free(n->plus);
	}
	free_list(&n->hash);
	free_list(&n->end);
}

void router_free(router_t *r)
{
	if (!r)
		return;
	if (r->exact) {
		size_t iter = 0;
		const char *key;
		void *list;

		while (strmap_next(r->exact, &iter, &key, &list)) {
			free_list(list);
			free(list);
		}
		strmap_free(r->exact);
	}
	free_node_contents(&r->root);
	free(r->owned.slots);
	free(r);
}

/* Returns the list of the exact topic, creating it when absent. */
static struct sub_list *exact_list(router_t *r, const char *topic)
{
	struct sub_list *l;

	if (!r->exact)
		r->exact = strmap_new();
	l = strmap_get(r->exact, topic);
	if (!l) {
		l = xcalloc(1, sizeof *l);
		strmap_put(r->exact, topic, l, NULL);
	}
	return l;
}

/* Returns the list of the pattern, creating its trie path when absent, and
 * its node in *node; NULL when the pattern is too long to be valid. */
static struct sub_list *pattern_list(router_t *r, const char *filter,
				     struct node **node)
{
	char buf[TOPIC_MAX_BYTES + 1], *seg[MAX_SEGS];
	size_t n = split(filter, buf, seg);
	bool hash = n && is_seg(seg[n - 1], '#');
	struct node *at = &r->root;

	if (!n)
		return NULL;
	for (size_t i = 0; i < n - hash; i++) {
		struct node *next;

		if (is_seg(seg[i], '+')) {
			next = at->plus;
		} else {
			if (!at->children)
				at->children = strmap_new();
			next = strmap_get(at->children, seg[i]);
		}
		if (!next) {
			next = xcalloc(1, sizeof *next);
			next->parent = at;
			if (is_seg(seg[i], '+'))
				at->plus = next;
			else
				strmap_put(at->children, seg[i], next, NULL);
		}
		at = next;
	}
	*node = at;
	return hash ? &at->hash : &at->end;
}

int router_add(router_t *r, const char *filter, void *owner, router_sub_t **out)
{
	struct node *node = NULL;
	struct sub_list *list;
	router_sub_t *s;
	size_t len = strlen(filter);

	/* The filter is valid, so any '+' or '#' is a wildcard segment. */
	if (strpbrk(filter, "+#")) {
		list = pattern_list(r, filter, &node);
		if (!list)
			return PE_BAD_PATTERN;
	} else {
		list = exact_list(r, filter);
	}
	/* A duplicate implies the list was not empty, so nothing was just
	 * created for it that would now need pruning. */
	if (set_find(&r->owned, owner, list))
		return PE_EXISTS;
	s = malloc(sizeof *s + len + 1);
	if (!s)
		abort();
	memcpy(s->filter, filter, len + 1);
	s->owner = owner;
	s->list = list;
	s->node = node;
	s->prev = NULL;
	s->next = list->head;
	if (list->head)
		list->head->prev = s;
	list->head = s;
	set_add(&r->owned, s);
	r->count++;
	*out = s;
	return 0;
}

static bool node_is_empty(const struct node *n)
{
	return !n->children && !n->plus && !n->hash.head && !n->end.head;
}

/* Frees the empty nodes from s's node up towards the root. The filter
 * names the segment under which each node hangs in its parent. */
static void prune(router_t *r, const router_sub_t *s)
{
	char buf[TOPIC_MAX_BYTES + 1], *seg[MAX_SEGS];
	size_t n = split(s->filter, buf, seg);
	size_t depth = n - (s->list == &s->node->hash);
	struct node *at = s->node;

	while (at != &r->root && node_is_empty(at)) {
		struct node *parent = at->parent;
		const char *name = seg[--depth];

		if (is_seg(name, '+')) {
			parent->plus = NULL;
		} else {
			strmap_del(parent->children, name);
			if (!strmap_count(parent->children)) {
				strmap_free(parent->children);
				parent->children = NULL;
			}
		}
		free(at);
		at = parent;
	}
}

void router_remove(router_t *r, router_sub_t *s)
{
	struct sub_list *list = s->list;

	if (s->prev)
		s->prev->next = s->next;
	else
		list->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	set_del(&r->owned, s);
	r->count--;
	if (!list->head) {
		if (s->node) {
			prune(r, s);
		} else {
			strmap_del(r->exact, s->filter);
			free(list);
			if (!strmap_count(r->exact)) {
				strmap_free(r->exact);
				r->exact = NULL;
			}
		}
	}
	free(s);
}

const char *router_sub_filter(const router_sub_t *s)
{
	return s->filter;
}

static void call_list(const struct sub_list *l, router_match_fn fn, void *ud)
{
	router_sub_t *s, *next;

	for (s = l->head; s; s = next) {
		next = s->next;
		fn(s->owner, ud);
	}
}

/* Visits the subscriptions of the trie below n that match segments i..n-1.
 * Only nodes on a matching prefix are visited. */
static void match_node(const struct node *n, char **seg, size_t i, size_t nseg,
		       router_match_fn fn, void *ud)
{
	call_list(&n->hash, fn, ud);
	if (i == nseg) {
		call_list(&n->end, fn, ud);
		return;
	}
	if (n->children) {
		const struct node *c = strmap_get(n->children, seg[i]);

		if (c)
			match_node(c, seg, i + 1, nseg, fn, ud);
	}
	if (n->plus)
		match_node(n->plus, seg, i + 1, nseg, fn, ud);
}

void router_match(const router_t *r, const char *topic, size_t hash,
		  router_match_fn fn, void *ud)
{
	char buf[TOPIC_MAX_BYTES + 1], *seg[MAX_SEGS];
	size_t n;

	if (r->exact) {
		const struct sub_list *l =
		    strmap_get_hashed(r->exact, topic, hash);

		if (l)
			call_list(l, fn, ud);
	}
	if (node_is_empty(&r->root))
		return;
	n = split(topic, buf, seg);
	if (n)
		match_node(&r->root, seg, 0, n, fn, ud);
}

size_t router_count(const router_t *r)
{
	return r->count;
}
