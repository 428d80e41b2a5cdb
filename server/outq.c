/* outq.c: bounded queues of shared frames and the batched end-of-pass
 * flush (see outq.h). */
#include "outq.h"

#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"

static void idle_noop(uv_idle_t *i)
{
	(void)i;
}

static void dirty_add(outq_t *q)
{
	hub_t *h = q->hub;

	if (q->dirty)
		return;
	q->dirty = 1;
	q->dirty_next = h->dirty;
	if (h->dirty)
		h->dirty->dirty_pprev = &q->dirty_next;
	q->dirty_pprev = &h->dirty;
	h->dirty = q;
	/* An idle handle makes the loop poll without blocking, so frames
	 * queued from a timer callback are flushed in this pass too. */
	if (!uv_is_active((uv_handle_t *)&h->flush_idle))
		uv_idle_start(&h->flush_idle, idle_noop);
}

static void dirty_remove(outq_t *q)
{
	if (!q->dirty)
		return;
	*q->dirty_pprev = q->dirty_next;
	if (q->dirty_next)
		q->dirty_next->dirty_pprev = q->dirty_pprev;
	q->dirty = 0;
	q->dirty_next = NULL;
	q->dirty_pprev = NULL;
}

void outq_init(outq_t *q, struct hub *h, struct lws *wsi, size_t max_bytes,
	       uint64_t *bytes_out, uint64_t *writes)
{
	q->wsi = wsi;
	q->hub = h;
	q->max_bytes = max_bytes;
	q->bytes_out = bytes_out;
	q->writes = writes;
}

void outq_set_batch(outq_t *q, const char *open, const char *close, size_t max)
{
	q->batch_open = open;
	q->batch_close = close;
	q->batch_open_len = strlen(open);
	q->batch_close_len = strlen(close);
	q->batch_max = max;
}

void outq_push_force(outq_t *q, frame_t *f)
{
	if (q->len == q->cap) {
		uint32_t ncap = q->cap ? q->cap * 2 : 16;
		frame_t **n = malloc(ncap * sizeof *n);

		if (!n)
			abort();
		/* Unwrap the ring into the new array. */
		for (uint32_t i = 0; i < q->len; i++)
			n[i] = q->ring[(q->head + i) & (q->cap - 1)];
		free(q->ring);
		q->ring = n;
		q->cap = ncap;
		q->head = 0;
	}
	q->ring[(q->head + q->len) & (q->cap - 1)] = frame_ref(f);
	q->len++;
	q->bytes += f->len;
	dirty_add(q);
}

/* Capacity of the first buffer of small frames, and of any one. */
#define TEXT_CAP_MIN 1024
#define TEXT_CAP_MAX HUB_GATHER

/* Returns 0 when need more bytes fit under max_bytes, else -1. Over the
 * bound, what is queued is first handed to the socket: a burst that one
 * loop pass brings (a publisher's whole window, a batch from Redis) may
 * pass the bound before the end-of-pass flush, and a client that reads
 * is not a slow consumer. Only what the socket cannot take counts. Not
 * for queues with on_drain: the drain would queue its next batch ahead
 * of the frame being pushed. */
static int make_room(outq_t *q, size_t need)
{
	if (q->failed)
		return -1;
	if (q->bytes - q->exempt_bytes + need <= q->max_bytes)
		return 0;
	if (q->on_drain || !q->wsi || outq_flush(q) < 0)
		return -1;
	return q->bytes - q->exempt_bytes + need <= q->max_bytes ? 0 : -1;
}

char *outq_push_text(outq_t *q, size_t len)
{
	size_t need = frame_text_size(len);
	frame_t *f;
	char *p;

	if (make_room(q, need))
		return NULL;
	f = q->open;
	/* Appending is only safe to a buffer nobody else holds, still last
	 * in the ring (so nothing queued after it is overtaken). */
	if (f && q->len &&
	    q->ring[(q->head + q->len - 1) & (q->cap - 1)] == f &&
	    f->refs == 1) {
		if ((p = frame_append_text(f, q->open_cap, len))) {
			q->bytes += need;
			dirty_add(q);
			return p;
		}
		if (q->text_cap < TEXT_CAP_MAX)
			q->text_cap *= 2; /* It filled up within one pass. */
	}
	if (q->text_cap < TEXT_CAP_MIN)
		q->text_cap = TEXT_CAP_MIN;
	q->open_cap = need > q->text_cap ? need : q->text_cap;
	f = frame_alloc_buf(q->open_cap);
	p = frame_append_text(f, q->open_cap, len);
	outq_push_force(q, f);
	frame_unref(f); /* The ring's reference remains. */
	q->open = f;
	return p;
}

void outq_push_exempt(outq_t *q, frame_t *f)
{
	outq_push_force(q, f);
	q->exempt_bytes += f->len;
	q->exempt_end = q->head_abs + q->len;
}

int outq_push(outq_t *q, frame_t *f)
{
	if (make_room(q, f->len))
		return -1;
	outq_push_force(q, f);
	return 0;
}

static void pop(outq_t *q, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		frame_t *f = q->ring[q->head];

		q->bytes -= f->len;
		/* Frames ahead of the last backlog frame leave the exempt
		 * count first; it only ever over-counts live frames queued
		 * before a backlog, which were admitted under the bound. */
		if (q->head_abs < q->exempt_end)
			q->exempt_bytes -=
			    q->exempt_bytes < f->len ? q->exempt_bytes : f->len;
		q->head_abs++;
		if (f == q->open)
			q->open = NULL;
		frame_unref(f);
		q->head = (q->head + 1) & (q->cap - 1);
	}
	q->len -= n;
	if (!q->len)
		q->head = 0;
}

uint32_t outq_clear(outq_t *q)
{
	uint32_t n = q->len;

	pop(q, n);
	return n;
}

/* The frame k places after the oldest. */
static frame_t *at(const outq_t *q, uint32_t k)
{
	return q->ring[(q->head + k) & (q->cap - 1)];
}

/* How many batch frames from the k-th on make one batch frame within
 * batch_max and, header included, within room bytes; *payload is its
 * payload's bytes. */
static uint32_t batch_run(const outq_t *q, uint32_t k, size_t room,
			  size_t *payload)
{
	/* The first element has no comma before it. */
	size_t n = q->batch_open_len + q->batch_close_len - 1;
	uint32_t r = 0;

	for (; k + r < q->len; r++) {
		const frame_t *g = at(q, k + r);
		size_t next = n + 1 + g->payload_len;

		if (!g->batch || next > q->batch_max ||
		    next + FRAME_HDR_MAX > room)
			break;
		n = next;
	}
	*payload = n;
	return r;
}

/* Writes the batch frame of the r frames from the k-th on (payload bytes
 * of payload, from batch_run) at out; returns its bytes. It is masked
 * when they are: a link's frames all are, or none. */
static size_t batch_put(outq_t *q, uint32_t k, uint32_t r, size_t payload,
			unsigned char *out)
{
	int masked = (at(q, k)->data[1] & 0x80) != 0;
	unsigned char *p = out + frame_text_header(out, payload, masked);

	memcpy(p, q->batch_open, q->batch_open_len);
	p += q->batch_open_len;
	for (uint32_t i = 0; i < r; i++) {
		const frame_t *g = at(q, k + i);

		if (i)
			*p++ = ',';
		memcpy(p, frame_payload(g), g->payload_len);
		p += g->payload_len;
	}
	memcpy(p, q->batch_close, q->batch_close_len);
	p += q->batch_close_len;
	if (q->batches)
		(*q->batches)++;
	return (size_t)(p - out);
}

/* Copies frames from the oldest on into buf (HUB_GATHER bytes), joining
 * runs of batch frames when batching is on; *taken is how many. */
static size_t gather(outq_t *q, unsigned char *buf, uint32_t *taken)
{
	size_t len = 0, payload;
	uint32_t k = 0, r;

	while (k < q->len) {
		const frame_t *g = at(q, k);

		r = q->batch_max && g->batch
			? batch_run(q, k, HUB_GATHER - len, &payload)
			: 0;
		if (r >= 2) {
			len += batch_put(q, k, r, payload, buf + len);
			k += r;
			continue;
		}
		if (len + g->len > HUB_GATHER)
			break;
		memcpy(buf + len, g->data, g->len);
		len += g->len;
		k++;
	}
	*taken = k;
	return len;
}

int outq_flush(outq_t *q)
{
	hub_t *h = q->hub;

	while (q->len) {
		frame_t *f = q->ring[q->head];
		unsigned char *buf;
		size_t len;
		uint32_t k;
		int n;

		/* lws still holds part of an earlier write: writing now would
		 * queue behind it and misreport the count. Wait for it to
		 * drain; WRITEABLE brings us back. */
		if (lws_partial_buffered(q->wsi)) {
			if (!q->want_writable) {
				q->want_writable = 1;
				lws_callback_on_writable(q->wsi);
			}
			return 0;
		}
		if (q->len == 1 || f->len >= HUB_GATHER) {
			/* One frame: written in place, it has LWS_PRE
			 * headroom of its own. */
			buf = f->data;
			len = f->len;
			k = 1;
		} else {
			buf = h->gather + LWS_PRE;
			len = gather(q, buf, &k);
		}
		n = lws_write(q->wsi, buf, len, LWS_WRITE_RAW);
		if (q->writes)
			(*q->writes)++;
		if (n < (int)len) {
			outq_clear(q);
			q->failed = 1;
			return -1;
		}
		if (q->bytes_out)
			*q->bytes_out += len;
		pop(q, k);
		if (!q->len && q->on_drain)
			q->on_drain(q);
	}
	return 0;
}

void outq_flush_all(struct hub *h)
{
	while (h->dirty) {
		outq_t *q = h->dirty;

		dirty_remove(q);
		if (outq_flush(q) < 0) {
			lws_set_timeout(q->wsi, PENDING_TIMEOUT_USER_OK,
					LWS_TO_KILL_ASYNC);
			/* Wake lws so it acts on the kill even when idle. */
			lws_cancel_service(lws_get_context(q->wsi));
		}
	}
	if (uv_is_active((uv_handle_t *)&h->flush_idle))
		uv_idle_stop(&h->flush_idle);
}

int outq_writeable(outq_t *q)
{
	q->want_writable = 0;
	if (q->failed)
		return -1;
	return outq_flush(q);
}

void outq_release(outq_t *q)
{
	dirty_remove(q);
	outq_clear(q);
	free(q->ring);
	q->ring = NULL;
	q->cap = 0;
}
