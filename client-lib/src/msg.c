/* msg.c: the accessors of parley_msg (see parley.h). */
#include <stdlib.h>

#include "msg.h"
#include "parley.h"

const char *parley_msg_topic(const parley_msg *m)
{
	return m->f->topic;
}

const char *parley_msg_mid(const parley_msg *m)
{
	return m->f->mid;
}

const char *parley_msg_origin(const parley_msg *m)
{
	return m->f->origin;
}

const char *parley_msg_from(const parley_msg *m)
{
	return m->f->from;
}

const char *parley_msg_cursor(const parley_msg *m)
{
	return m->f->cursor;
}

int64_t parley_msg_ts(const parley_msg *m)
{
	return m->f->ts;
}

const char *parley_msg_body(const parley_msg *m, size_t *len)
{
	/* The message is the library's; only the caches change. */
	struct parley_msg *w = (struct parley_msg *)m;

	if (!w->body)
		w->body = parley__codec_body_text(m->f, &w->body_len);
	if (len)
		*len = w->body ? w->body_len : 0;
	return w->body;
}

const char *parley_msg_body_string(const parley_msg *m, size_t *len)
{
	return parley__codec_body_string(m->f, len);
}

const char *parley_msg_json(const parley_msg *m)
{
	struct parley_msg *w = (struct parley_msg *)m;

	if (!w->json)
		w->json = parley__codec_msg_json(m->f);
	return w->json;
}

void parley__msg_done(struct parley_msg *m)
{
	free(m->body);
	free(m->json);
	m->body = m->json = NULL;
}
