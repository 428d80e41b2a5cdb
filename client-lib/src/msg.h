/* msg.h: the parley_msg handed to subscription callbacks: a view of one
 * decoded "msg" frame, with its body text made on first use. */
#ifndef PARLEY_MSG_H
#define PARLEY_MSG_H

#include "codec.h"

struct parley_msg {
	const parley__frame *f; /* The frame (borrowed for the dispatch). */
	char *body;		/* Compact body text, made on first use. */
	size_t body_len;	/* Its length. */
	char *json;		/* Whole message as JSON, on first use. */
};

/* Frees the texts made for m. */
void parley__msg_done(struct parley_msg *m);

#endif
