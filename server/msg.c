/* msg.c: refcounted messages and their encode-once WebSocket frames. */
#include "msg.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "jwrite.h"
#include "strmap.h"

/* Worst-case WebSocket header for a server frame: 1 + 1 + 8 bytes. */
#define WS_HDR_MAX 10

static size_t ws_hdr_len(size_t len, int masked)
{
	return (len < 126 ? 2 : len <= 0xffff ? 4 : 10) + (masked ? 4 : 0);
}

/* Writes the header of a text frame of len payload bytes at p. */
static void ws_hdr_put(unsigned char *p, size_t hdr, size_t len, int masked)
{
	p[0] = 0x81; /* FIN + text opcode. */
	if (len < 126) {
		p[1] = (unsigned char)len;
	} else if (len <= 0xffff) {
		p[1] = 126;
		p[2] = (unsigned char)(len >> 8);
		p[3] = (unsigned char)len;
	} else {
		p[1] = 127;
		for (int i = 0; i < 8; i++)
			p[2 + i] =
			    (unsigned char)((uint64_t)len >> (56 - 8 * i));
	}
	if (masked) {
		p[1] |= 0x80;
		memset(p + hdr - 4, 0, 4); /* Zero key: see msg.h. */
	}
}

/* Sets up f (one reference) over the len bytes at data, the last
 * payload_len of them the payload, inside the allocation block. */
static void frame_init(frame_t *f, unsigned char *data, size_t len,
		       size_t payload_len, void *block)
{
	f->refs = 1;
	f->len = (uint32_t)len;
	f->data = data;
	f->payload_len = (uint32_t)payload_len;
	f->batch = 0;
	f->block = block;
}

static frame_t *frame_build(size_t len, int masked)
{
	/* One allocation: the struct, LWS_PRE headroom, the header and the
	 * payload, so a frame costs one malloc and is freed in one go. */
	size_t hdr = ws_hdr_len(len, masked);
	frame_t *f = malloc(sizeof *f + LWS_PRE + WS_HDR_MAX + 4 + len);
	unsigned char *p;

	if (!f)
		abort();
	p = (unsigned char *)(f + 1) + LWS_PRE + WS_HDR_MAX + 4 - hdr;
	frame_init(f, p, hdr + len, len, f);
	ws_hdr_put(p, hdr, len, masked);
	return f;
}

frame_t *frame_alloc_text(size_t len, int masked, char **payload)
{
	frame_t *f = frame_build(len, masked);

	*payload = (char *)f->data + (f->len - len);
	return f;
}

size_t frame_text_size(size_t len)
{
	return ws_hdr_len(len, 0) + len;
}

size_t frame_text_header(unsigned char *p, size_t len, int masked)
{
	size_t hdr = ws_hdr_len(len, masked);

	ws_hdr_put(p, hdr, len, masked);
	return hdr;
}

frame_t *frame_alloc_buf(size_t cap)
{
	frame_t *f = malloc(sizeof *f + LWS_PRE + cap);

	if (!f)
		abort();
	frame_init(f, (unsigned char *)(f + 1) + LWS_PRE, 0, 0, f);
	return f;
}

char *frame_append_text(frame_t *f, size_t cap, size_t len)
{
	size_t hdr = ws_hdr_len(len, 0);
	unsigned char *p = f->data + f->len;

	if (hdr + len > cap - f->len)
		return NULL;
	ws_hdr_put(p, hdr, len, 0);
	f->len += (uint32_t)(hdr + len);
	/* Several frames: "payload" is the last one's. */
	f->payload_len = (uint32_t)len;
	return (char *)p + hdr;
}

static frame_t *frame_copy(const char *payload, size_t len, int masked)
{
	frame_t *f = frame_build(len, masked);

	memcpy(f->data + (f->len - len), payload, len);
	return f;
}

frame_t *frame_new_text(const char *payload, size_t len)
{
	return frame_copy(payload, len, 0);
}

frame_t *frame_new_text_masked(const char *payload, size_t len)
{
	return frame_copy(payload, len, 1);
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
		free(f->block);
}

const char *frame_payload(const frame_t *f)
{
	return (const char *)f->data + (f->len - f->payload_len);
}

/* The length of path entry i of prev (n nodes) + self: from lens when
 * the caller measured them (lens[n] is never read: self_len is). */
static size_t path_len_at(const char *const *prev, const size_t *lens, size_t n,
			  const char *self, size_t self_len, size_t i)
{
	if (i == n)
		return self_len;
	return lens ? lens[i] : strlen(prev[i]);
}

/* Bytes the names of the path prev (n nodes) + self take, NULs included. */
static size_t path_names_len(const char *const *prev, const size_t *lens,
			     size_t n, const char *self, size_t self_len)
{
	size_t bytes = 0;

	for (size_t i = 0; i <= n; i++)
		bytes += path_len_at(prev, lens, n, self, self_len, i) + 1;
	return bytes;
}

/* Writes the path prev (n nodes) + self: its n + 1 pointers at pv, the
 * names they point to at d. */
static void path_put(char **pv, char *d, const char *const *prev,
		     const size_t *lens, size_t n, const char *self,
		     size_t self_len)
{
	for (size_t i = 0; i <= n; i++) {
		const char *s = i < n ? prev[i] : self;
		size_t l = path_len_at(prev, lens, n, self, self_len, i) + 1;

		pv[i] = memcpy(d, s, l);
		d += l;
	}
}

msg_t *msg_new_fields(const msg_fields_t *f, const char *const *prev,
		      const size_t *prev_len, size_t n, const char *self,
		      size_t self_len)
{
	/* One allocation: the struct, the path's pointers, the strings and
	 * the path's names, then the client frame's struct, LWS_PRE
	 * headroom, room for its header and JSON head, and the body with the
	 * payload's closing brace. The body is copied once, and neither the
	 * path nor the frame costs an allocation of its own. */
	size_t lt = f->topic_len + 1, lm = f->mid_len + 1;
	size_t lo = f->origin_len + 1, lf = f->from_len + 1;
	/* This node's own message has the path [origin]: own_path. */
	int own = self && !n && self_len == f->origin_len &&
		  !memcmp(self, f->origin, self_len);
	size_t np = self && !own ? n + 1 : 0, names = 0;
	size_t strs, at, room = MSG_HEAD_ROOM + lt + lm + lo + lf;
	char **pv, *p;
	msg_t *m;

	if (np)
		names = path_names_len(prev, prev_len, n, self, self_len);
	strs = sizeof(msg_t) + np * sizeof(char *) + lt + lm + lo + lf + names;
	at = (strs + _Alignof(frame_t) - 1) & ~(_Alignof(frame_t) - 1);
	m = malloc(at + sizeof(frame_t) + LWS_PRE + room + f->body_len + 1);
	if (!m)
		abort();
	pv = (char **)(m + 1);
	p = (char *)(pv + np);
	m->refs = 1;
	m->seq = 0;
	m->ts = f->ts;
	m->frame = NULL;
	m->fed_frame[0] = m->fed_frame[1] = NULL;
	/* Each string with its NUL: the caller vouches for it. */
	m->topic = memcpy(p, f->topic, lt);
	m->topic_hash = strmap_hash_len(m->topic, lt - 1);
	p += lt;
	m->mid = memcpy(p, f->mid, lm);
	p += lm;
	m->origin = memcpy(p, f->origin, lo);
	p += lo;
	m->from = memcpy(p, f->from, lf);
	/* The four strings lie back to back: one scan finds whether any of
	 * them needs escaping. */
	m->plain = lt <= UINT16_MAX && lm <= UINT16_MAX && lo <= UINT16_MAX &&
		   lf <= UINT16_MAX &&
		   jw_plain_nul(m->topic, lt + lm + lo + lf);
	m->slen[0] = (uint16_t)(lt - 1);
	m->slen[1] = (uint16_t)(lm - 1);
	m->slen[2] = (uint16_t)(lo - 1);
	m->slen[3] = (uint16_t)(lf - 1);
	if (np)
		path_put(pv, p + lf, prev, prev_len, n, self, self_len);
	m->path_alloc = 0;
	m->path = own ? m->own_path : np ? pv : NULL;
	m->n_path = own ? 1 : np;
	m->own_path[0] = (char *)m->origin;
	m->own = (frame_t *)((char *)m + at);
	frame_init(m->own, NULL, 0, 0, m);
	p = (char *)(m->own + 1) + LWS_PRE + room;
	memcpy(p, f->body, f->body_len);
	p[f->body_len] = '}';
	m->body = p;
	m->body_len = f->body_len;
	return m;
}

msg_t *msg_new_path(const char *topic, const char *mid, const char *origin,
		    const char *from, int64_t ts, const char *body,
		    size_t body_len, const char *const *prev, size_t n,
		    const char *self)
{
	msg_fields_t f = {
	    .topic = topic,
	    .mid = mid,
	    .origin = origin,
	    .from = from,
	    .topic_len = strlen(topic),
	    .mid_len = strlen(mid),
	    .origin_len = strlen(origin),
	    .from_len = strlen(from),
	    .ts = ts,
	    .body = body,
	    .body_len = body_len,
	};

	return msg_new_fields(&f, prev, NULL, n, self, self ? strlen(self) : 0);
}

msg_t *msg_new(const char *topic, const char *mid, const char *origin,
	       const char *from, int64_t ts, const char *body, size_t body_len)
{
	return msg_new_path(topic, mid, origin, from, ts, body, body_len, NULL,
			    0, NULL);
}

frame_t *msg_frame_place(msg_t *m, size_t len)
{
	frame_t *f = m->own;
	size_t hdr = ws_hdr_len(len, 0);
	unsigned char *room = (unsigned char *)(f + 1) + LWS_PRE;
	unsigned char *end = (unsigned char *)m->body + m->body_len + 1;

	if (f->data || len < m->body_len + 1 ||
	    (size_t)(end - room) < hdr + len)
		return NULL;
	f->data = end - len - hdr;
	f->len = (uint32_t)(hdr + len);
	f->payload_len = (uint32_t)len;
	ws_hdr_put(f->data, hdr, len, 0);
	return frame_ref(f);
}

msg_t *msg_ref(msg_t *m)
{
	m->refs++;
	return m;
}

msg_t **msg_array_push(msg_t **v, size_t *n, size_t *cap, msg_t *m)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;

		v = realloc(v, ncap * sizeof *v);
		if (!v)
			abort();
		*cap = ncap;
	}
	v[(*n)++] = m;
	return v;
}

void msg_set_path(msg_t *m, const char *const *prev, size_t n, const char *self)
{
	/* One allocation: the pointer array, then the names. */
	size_t self_len = strlen(self);
	char **p;

	if (!n && !strcmp(self, m->origin)) {
		if (m->path_alloc)
			free(m->path);
		m->path_alloc = 0;
		m->path = m->own_path;
		m->n_path = 1;
		return;
	}

	p = malloc((n + 1) * sizeof(char *) +
		   path_names_len(prev, NULL, n, self, self_len));
	if (!p)
		abort();
	path_put(p, (char *)(p + n + 1), prev, NULL, n, self, self_len);
	if (m->path_alloc)
		free(m->path);
	m->path_alloc = 1;
	m->path = p;
	m->n_path = n + 1;
}

int msg_on_path(const msg_t *m, const char *node)
{
	for (size_t i = 0; i < m->n_path; i++)
		if (!strcmp(m->path[i], node))
			return 1;
	return 0;
}

void msg_unref(msg_t *m)
{
	if (m && --m->refs == 0) {
		frame_unref(m->frame);
		frame_unref(m->fed_frame[0]);
		frame_unref(m->fed_frame[1]);
		if (m->path_alloc)
			free(m->path);
		frame_unref(m->own); /* Frees m unless a queue holds it. */
	}
}
