/* subs.c: the subscription list and its per-subscription duplicate
 * memory (see subs.h). */
#include <stdlib.h>
#include <string.h>

#include "subs.h"

parley__sub *parley__subs_add(parley__subs *l, const char *filter, long last,
			      const char *since, parley_msg_cb cb, void *ud)
{
	parley__sub *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->filter = strdup(filter);
	s->want_since = since ? strdup(since) : NULL;
	if (!s->filter || (since && !s->want_since)) {
		free(s->filter);
		free(s->want_since);
		free(s);
		return NULL;
	}
	s->want_last = since ? -1 : last;
	s->cb = cb;
	s->ud = ud;
	s->prev = l->tail;
	if (l->tail)
		l->tail->next = s;
	else
		l->head = s;
	l->tail = s;
	l->count++;
	return s;
}

parley__sub *parley__subs_find(const parley__subs *l, const char *filter)
{
	for (parley__sub *s = l->head; s; s = s->next)
		if (!s->dead && !strcmp(s->filter, filter))
			return s;
	return NULL;
}

parley__sub *parley__subs_find_req(const parley__subs *l, uint64_t id)
{
	for (parley__sub *s = l->head; s; s = s->next)
		if (!s->dead && s->state == PARLEY__SUB_SENT && s->req_id == id)
			return s;
	return NULL;
}

void parley__subs_remove(parley__subs *l, parley__sub *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		l->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->tail = s->prev;
	l->count--;
	free(s->filter);
	free(s->want_since);
	free(s->cursor);
	free(s);
}

void parley__subs_sweep(parley__subs *l)
{
	parley__sub *s = l->head, *next;

	for (; s; s = next) {
		next = s->next;
		if (s->dead)
			parley__subs_remove(l, s);
	}
}

void parley__subs_clear(parley__subs *l)
{
	while (l->head)
		parley__subs_remove(l, l->head);
}

int parley__sub_set_cursor(parley__sub *s, const char *cursor)
{
	char *c = strdup(cursor);

	if (!c)
		return PARLEY_ENOMEM;
	free(s->cursor);
	s->cursor = c;
	return 0;
}

/* Returns the 64-bit FNV-1a hash of s. */
static uint64_t hash_mid(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h;
}

int parley__sub_seen(parley__sub *s, const char *mid)
{
	uint64_t h = hash_mid(mid);

	for (unsigned i = 0; i < s->seen_len; i++)
		if (s->seen[i] == h)
			return 1;
	s->seen[s->seen_pos] = h;
	s->seen_pos = (s->seen_pos + 1) % PARLEY__SEEN_MAX;
	if (s->seen_len < PARLEY__SEEN_MAX)
		s->seen_len++;
	return 0;
}
