/* pubq.c: the ordered queue of unacknowledged publishes (see pubq.h). */
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "pubq.h"

parley__pub *parley__pubq_push(parley__pubq *q, const char *topic,
			       struct json_t *body, parley_pub_cb cb, void *ud)
{
	parley__pub *p = calloc(1, sizeof(*p));

	if (p)
		p->topic = strdup(topic);
	if (!p || !p->topic) {
		free(p);
		parley__codec_body_free(body);
		return NULL;
	}
	p->body = body;
	p->cb = cb;
	p->ud = ud;
	p->prev = q->tail;
	if (q->tail)
		q->tail->next = p;
	else
		q->head = p;
	q->tail = p;
	q->count++;
	return p;
}

parley__pub *parley__pubq_find_req(const parley__pubq *q, uint64_t id)
{
	/* Answers come in order, so the match is almost always the head. */
	for (parley__pub *p = q->head; p; p = p->next)
		if (p->sent && p->req_id == id)
			return p;
	return NULL;
}

void parley__pubq_remove(parley__pubq *q, parley__pub *p)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		q->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	else
		q->tail = p->prev;
	q->count--;
	free(p->topic);
	parley__codec_body_free(p->body);
	free(p);
}
