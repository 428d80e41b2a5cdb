/* pubq.h: the publishes waiting for the hub's acknowledgement, in the
 * order the application made them (sent or not yet sent on the current
 * connection; a throttled one goes back to unsent in its place). */
#ifndef PARLEY_PUBQ_H
#define PARLEY_PUBQ_H

#include <stddef.h>
#include <stdint.h>

#include "parley.h"

struct json_t;

/* One publish, owned by the queue until its callback has run. */
typedef struct parley__pub {
	struct parley__pub *next; /* Next (younger) publish. */
	struct parley__pub *prev; /* Previous (older) publish. */
	char *topic;		  /* Concrete topic. */
	struct json_t *body;	  /* Body (a codec value). */
	parley_pub_cb cb;	  /* Completion callback, or NULL. */
	void *ud;		  /* Its user data. */
	int sent;		  /* 1 once sent on the current connection. */
	uint64_t req_id;	  /* Request id it was sent with. */
	uint64_t sent_ms;	  /* When (loop time). */
} parley__pub;

/* The queue. */
typedef struct parley__pubq {
	parley__pub *head; /* Oldest publish. */
	parley__pub *tail; /* Youngest publish. */
	size_t count;	   /* Entries. */
} parley__pubq;

/* Appends a publish taking ownership of body (even on failure). Returns it,
 * or NULL when out of memory. */
parley__pub *parley__pubq_push(parley__pubq *q, const char *topic,
			       struct json_t *body, parley_pub_cb cb, void *ud);

/* Returns the sent publish waiting for request id, or NULL. */
parley__pub *parley__pubq_find_req(const parley__pubq *q, uint64_t id);

/* Unlinks p and frees it (its callback is not called). */
void parley__pubq_remove(parley__pubq *q, parley__pub *p);

#endif
