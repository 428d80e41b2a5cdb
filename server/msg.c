/* msg.c: refcounted messages and their encode-once WebSocket frames. */
#include "msg.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

/* Worst-case WebSocket header for a server frame: 1 + 1 + 8 bytes. */
#define WS_HDR_MAX 10

frame_t *frame_new_text(const char *payload, size_t len)
{
	/* One allocation: the struct, LWS_PRE headroom, the header and the
	 * payload, so a frame costs one malloc and is freed in one go. */
	size_t hdr = len < 126 ? 2 : len <= 0xffff ? 4 : 10;
	frame_t *f = malloc(sizeof *f + LWS_PRE + WS_HDR_MAX + len);
	unsigned char *p;

	if (!f)
		abort();
	p = (unsigned char *)(f + 1) + LWS_PRE + WS_HDR_MAX - hdr;
	f->refs = 1;
	f->len = (uint32_t)(hdr + len);
	f->data = p;
	f->payload_len = len;
	p[0] = 0x81; /* FIN + text opcode; server frames are unmasked. */
	if (hdr == 2) {
		p[1] = (unsigned char)len;
	} else if (hdr == 4) {
		p[1] = 126;
		p[2] = (unsigned char)(len >> 8);
		p[3] = (unsigned char)len;
	} else {
		p[1] = 127;
		for (int i = 0; i < 8; i++)
			p[2 + i] =
			    (unsigned char)((uint64_t)len >> (56 - 8 * i));
	}
	memcpy(p + hdr, payload, len);
	return f;
}

frame_t *frame_new_close(int code, const char *reason)
{
	size_t rl = strlen(reason);
	char payload[125];
	frame_t *f;

	if (rl > sizeof payload - 2)
		rl = sizeof payload - 2;
	payload[0] = (char)((code >> 8) & 0xff);
	payload[1] = (char)(code & 0xff);
	memcpy(payload + 2, reason, rl);
	f = frame_new_text(payload, rl + 2);
	f->data[0] = 0x88; /* FIN + close opcode. */
	return f;
}

frame_t *frame_ref(frame_t *f)
{
	f->refs++;
	return f;
}

void frame_unref(frame_t *f)
{
	if (f && --f->refs == 0)
		free(f);
}

const char *frame_payload(const frame_t *f)
{
	return (const char *)f->data + (f->len - f->payload_len);
}

msg_t *msg_new(const char *topic, const char *mid, const char *origin,
	       const char *from, int64_t ts, const char *body, size_t body_len)
{
	size_t lt = strlen(topic) + 1, lm = strlen(mid) + 1;
	size_t lo = strlen(origin) + 1, lf = strlen(from) + 1;
	msg_t *m = malloc(sizeof *m + lt + lm + lo + lf + body_len + 1);
	char *p;

	if (!m)
		abort();
	p = (char *)(m + 1);
	m->refs = 1;
	m->seq = 0;
	m->ts = ts;
	m->frame = NULL;
	m->topic = memcpy(p, topic, lt);
	p += lt;
	m->mid = memcpy(p, mid, lm);
	p += lm;
	m->origin = memcpy(p, origin, lo);
	p += lo;
	m->from = memcpy(p, from, lf);
	p += lf;
	memcpy(p, body, body_len);
	p[body_len] = 0;
	m->body = p;
	m->body_len = body_len;
	return m;
}

msg_t *msg_ref(msg_t *m)
{
	m->refs++;
	return m;
}

void msg_unref(msg_t *m)
{
	if (m && --m->refs == 0) {
		frame_unref(m->frame);
		free(m);
	}
}
