/* history.c: per-topic bounded rings of messages, node-wide sequence
 * numbers, mid lookup, cursors and gap detection for a standalone hub. */
#include "history.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "strmap.h"
#include "topic.h"

/* Rings start this small and double up to per_topic, so that a hub with
 * many quiet topics does not reserve per_topic slots for each. */
#define RING_MIN_CAP 4

/* The stored messages of one topic, oldest first, in increasing seq. */
struct ring {
	msg_t **slots;	  /* cap entries; each holds one reference. */
	size_t cap;	  /* Slots allocated, at most per_topic. */
	size_t head;	  /* Index of the oldest message. */
	size_t len;	  /* Messages held. */
	uint64_t evicted; /* Highest seq evicted from this topic; 0: none. */
};

struct history {
	size_t per_topic;  /* Most messages kept per topic, >= 1. */
	uint64_t epoch;	   /* Names this process's cursors. */
	char prefix[16];   /* "<epoch in base 36>-", written once: every
			    * message's cursor starts with it. */
	size_t prefix_len; /* Its length. */
	uint64_t last_seq; /* Last seq assigned; 0 before the first. */
	strmap_t *topics;  /* Topic to struct ring (owned). Never shrinks:
			    * a topic's ring also remembers its evictions. */
	size_t nmsgs;	   /* Messages held over all topics. */
};

/* One ring's part of a backlog: indices [pos, end) still to merge. */
struct run {
	const struct ring *t; /* The ring read. */
	size_t pos;	      /* Oldest index not yet taken. */
	size_t end;	      /* One past the newest index not yet taken. */
};

static void *xmalloc(size_t size)
{
	void *p = malloc(size);

	if (!p)
		abort();
	return p;
}

static msg_t *at(const struct ring *t, size_t i)
{
	size_t idx = t->head + i;

	return t->slots[idx < t->cap ? idx : idx - t->cap];
}

static char *put36(uint64_t v, char *p);

history_t *history_new(size_t per_topic, uint64_t epoch)
{
	history_t *h = xmalloc(sizeof *h);
	char *p = put36(epoch, h->prefix);

	*p++ = '-';
	h->prefix_len = (size_t)(p - h->prefix);
	h->per_topic = per_topic ? per_topic : 1;
	h->epoch = epoch;
	h->last_seq = 0;
	h->topics = strmap_new();
	h->nmsgs = 0;
	return h;
}

void history_free(history_t *h)
{
	size_t iter = 0;
	const char *key;
	void *value;

	if (!h)
		return;
	while (strmap_next(h->topics, &iter, &key, &value)) {
		struct ring *t = value;

		for (size_t i = 0; i < t->len; i++)
			msg_unref(at(t, i));
		free(t->slots);
		free(t);
	}
	strmap_free(h->topics);
	free(h);
}

static struct ring *ring_get(history_t *h, const char *topic, size_t hash)
{
	struct ring *t = strmap_get_hashed(h->topics, topic, hash);

	if (!t) {
		t = xmalloc(sizeof *t);
		t->cap =
		    h->per_topic < RING_MIN_CAP ? h->per_topic : RING_MIN_CAP;
		t->slots = xmalloc(t->cap * sizeof *t->slots);
		t->head = 0;
		t->len = 0;
		t->evicted = 0;
		strmap_put(h->topics, topic, t, NULL);
	}
	return t;
}

static void ring_grow(struct ring *t, size_t per_topic)
{
	size_t cap = t->cap * 2 < per_topic ? t->cap * 2 : per_topic;
	msg_t **slots = xmalloc(cap * sizeof *slots);

	for (size_t i = 0; i < t->len; i++)
		slots[i] = at(t, i);
	free(t->slots);
	t->slots = slots;
	t->cap = cap;
	t->head = 0;
}

static void evict_oldest(history_t *h, struct ring *t)
{
	msg_t *old = t->slots[t->head];

	t->evicted = old->seq;

	t->head = t->head + 1 < t->cap ? t->head + 1 : 0;
	t->len--;
	h->nmsgs--;
	msg_unref(old);
}

void history_append(history_t *h, msg_t *m)
{
	struct ring *t = ring_get(h, m->topic, m->topic_hash);
	size_t idx;

	m->seq = ++h->last_seq;
	if (t->len == h->per_topic)
		evict_oldest(h, t);
	else if (t->len == t->cap)
		ring_grow(t, h->per_topic);
	idx = t->head + t->len;
	t->slots[idx < t->cap ? idx : idx - t->cap] = msg_ref(m);
	t->len++;
	h->nmsgs++;
}

uint64_t history_last_seq(const history_t *h)
{
	return h->last_seq;
}

static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";

/* Writes v in lowercase base 36 at p; returns the end. */
static char *put36(uint64_t v, char *p)
{
	char tmp[16]; /* UINT64_MAX has 13 base-36 digits. */
	size_t n = 0;

	do {
		tmp[n++] = digits[v % 36];
		v /= 36;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static int digit36(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 10;
	return -1;
}

/* Parses the canonical base-36 number at p (no sign, no leading zero, no
 * overflow) into *v; returns the end, or NULL. Canonical only, so that
 * each position has exactly one cursor. */
static const char *get36(const char *p, uint64_t *v)
{
	uint64_t x = 0;
	int d;

	if (digit36(*p) < 0 || (p[0] == '0' && digit36(p[1]) >= 0))
		return NULL;
	for (; (d = digit36(*p)) >= 0; p++) {
		if (x > (UINT64_MAX - (uint64_t)d) / 36)
			return NULL;
		x = x * 36 + (uint64_t)d;
	}
	*v = x;
	return p;
}

size_t history_cursor(const history_t *h, uint64_t seq, char *buf)
{
	char *end;

	memcpy(buf, h->prefix, h->prefix_len);
	end = put36(seq, buf + h->prefix_len);
	*end = 0;
	return (size_t)(end - buf);
}

int history_parse_cursor(const history_t *h, const char *cursor, uint64_t *seq)
{
	uint64_t epoch, s;
	const char *p;

	if (!cursor)
		return PE_BAD_CURSOR;
	p = get36(cursor, &epoch);
	if (!p || *p != '-')
		return PE_BAD_CURSOR;
	p = get36(p + 1, &s);
	if (!p || *p)
		return PE_BAD_CURSOR;
	if (epoch != h->epoch)
		return PE_HISTORY_GAP;
	if (s > h->last_seq)
		return PE_BAD_CURSOR;
	*seq = s;
	return 0;
}

static bool is_pattern(const char *filter)
{
	/* The filter is valid, so any '+' or '#' is a wildcard segment. */
	return strpbrk(filter, "+#") != NULL;
}

/* Returns the index of the first message of t with seq > since. */
static size_t first_after(const struct ring *t, uint64_t since)
{
	size_t lo = 0, hi = t->len;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (at(t, mid)->seq > since)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Orders runs in the merge heap: by their oldest remaining seq, or with
 * back by their newest one, newest first. */
static bool run_before(const struct run *a, const struct run *b, bool back)
{
	if (back)
		return at(a->t, a->end - 1)->seq > at(b->t, b->end - 1)->seq;
	return at(a->t, a->pos)->seq < at(b->t, b->pos)->seq;
}

static void sift_down(struct run *heap, size_t n, size_t i, bool back)
{
	for (;;) {
		size_t best = i, l = 2 * i + 1, r = l + 1;
		struct run tmp;

		if (l < n && run_before(&heap[l], &heap[best], back))
			best = l;
		if (r < n && run_before(&heap[r], &heap[best], back))
			best = r;
		if (best == i)
			return;
		tmp = heap[i];
		heap[i] = heap[best];
		heap[best] = tmp;
		i = best;
	}
}

/* Merges the runs by seq into out (want entries, taking a reference on
 * each): the oldest first, or with back the newest first. */
static void merge(struct run *runs, size_t n, bool back, msg_t **out,
		  size_t want)
{
	for (size_t i = n / 2; i-- > 0;)
		sift_down(runs, n, i, back);
	for (size_t k = 0; k < want && n; k++) {
		struct run *r = &runs[0];

		out[k] = msg_ref(at(r->t, back ? --r->end : r->pos++));
		if (r->pos == r->end)
			runs[0] = runs[--n];
		sift_down(runs, n, 0, back);
	}
}

/* Visits and releases msgs[0..n). The backlog is collected, with
 * references, before fn runs, so fn may even append to this history. */
static void visit_all(msg_t **msgs, size_t n, history_visit_fn fn, void *ud)
{
	for (size_t i = 0; i < n; i++) {
		fn(msgs[i], ud);
		msg_unref(msgs[i]);
	}
	free(msgs);
}

/* Collects the rings of topics matching the pattern that hold messages
 * after since into a new array (*n runs, *total messages). With gaps set,
 * returns PE_HISTORY_GAP (and no array) when one of them has evicted a
 * message after since. */
static int matching_runs(const history_t *h, const char *filter, uint64_t since,
			 bool gaps, struct run **out, size_t *n, size_t *total)
{
	struct run *runs = NULL;
	size_t iter = 0, cap = 0;
	const char *key;
	void *value;

	*n = 0;
	*total = 0;
	while (strmap_next(h->topics, &iter, &key, &value)) {
		const struct ring *t = value;
		size_t pos;

		if (!topic_match(filter, key))
			continue;
		if (gaps && t->evicted > since) {
			free(runs);
			return PE_HISTORY_GAP;
		}
		pos = first_after(t, since);
		if (pos == t->len)
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			runs = realloc(runs, cap * sizeof *runs);
			if (!runs)
				abort();
		}
		runs[*n] = (struct run){t, pos, t->len};
		(*n)++;
		*total += t->len - pos;
	}
	*out = runs;
	return 0;
}

size_t history_last(const history_t *h, const char *filter, size_t n,
		    history_visit_fn fn, void *ud)
{
	msg_t **msgs;
	size_t k;

	if (n == 0)
		return 0;
	if (!is_pattern(filter)) {
		const struct ring *t = strmap_get(h->topics, filter);

		if (!t || !t->len)
			return 0;
		k = n < t->len ? n : t->len;
		msgs = xmalloc(k * sizeof *msgs);
		for (size_t i = 0; i < k; i++)
			msgs[i] = msg_ref(at(t, t->len - k + i));
	} else {
		struct run *runs;
		size_t nruns, total;

		matching_runs(h, filter, 0, false, &runs, &nruns, &total);
		k = n < total ? n : total;
		msgs = xmalloc((k ? k : 1) * sizeof *msgs);
		merge(runs, nruns, true, msgs, k);
		free(runs);
		/* The merge gave the newest first; visit oldest first. */
		for (size_t i = 0; i < k / 2; i++) {
			msg_t *tmp = msgs[i];

			msgs[i] = msgs[k - 1 - i];
			msgs[k - 1 - i] = tmp;
		}
	}
	visit_all(msgs, k, fn, ud);
	return k;
}

int history_since(const history_t *h, const char *filter, uint64_t seq,
		  history_visit_fn fn, void *ud)
{
	msg_t **msgs;
	size_t k;

	if (!is_pattern(filter)) {
		const struct ring *t = strmap_get(h->topics, filter);
		size_t pos;

		if (!t)
			return 0;
		if (t->evicted > seq)
			return PE_HISTORY_GAP;
		pos = first_after(t, seq);
		k = t->len - pos;
		msgs = xmalloc((k ? k : 1) * sizeof *msgs);
		for (size_t i = 0; i < k; i++)
			msgs[i] = msg_ref(at(t, pos + i));
	} else {
		struct run *runs;
		size_t nruns;
		int err =
		    matching_runs(h, filter, seq, true, &runs, &nruns, &k);

		if (err)
			return err;
		msgs = xmalloc((k ? k : 1) * sizeof *msgs);
		merge(runs, nruns, false, msgs, k);
		free(runs);
	}
	visit_all(msgs, k, fn, ud);
	return 0;
}

size_t history_range(const history_t *h, uint64_t seq, size_t max, int *gap,
		     history_visit_fn fn, void *ud)
{
	struct run *runs;
	size_t nruns, total, k, iter = 0;
	const char *key;
	void *value;
	msg_t **msgs;

	*gap = 0;
	while (strmap_next(h->topics, &iter, &key, &value))
		if (((const struct ring *)value)->evicted > seq)
			*gap = 1;
	matching_runs(h, "#", seq, false, &runs, &nruns, &total);
	k = max < total ? max : total;
	msgs = xmalloc((k ? k : 1) * sizeof *msgs);
	merge(runs, nruns, false, msgs, k);
	free(runs);
	visit_all(msgs, k, fn, ud);
	return k;
}

size_t history_topic_count(const history_t *h)
{
	return strmap_count(h->topics);
}

size_t history_msg_count(const history_t *h)
{
	return h->nmsgs;
}

int history_has_topic(const history_t *h, const char *topic)
{
	return strmap_get(h->topics, topic) != NULL;
}
