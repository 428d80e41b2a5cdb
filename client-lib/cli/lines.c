/* lines.c: line reader for stdin on a libuv loop (see lines.h). Streams
 * (pipes, terminals) are read with uv_read_start; anything else (regular
 * files, /dev/null) with uv_fs_read on the thread pool. */
#include <stdlib.h>
#include <string.h>

#include "lines.h"

#define CHUNK 65536

struct cli_lines {
	uv_loop_t *loop; /* Loop the reader runs on. */
	int fd;		 /* The descriptor read. */
	int is_stream;	 /* 1: stream handle, 0: file reads. */
	union {
		uv_handle_t h;
		uv_stream_t s;
		uv_pipe_t pipe;
		uv_tty_t tty;
	} u;		     /* The stream handle (streams only). */
	uv_fs_t req;	     /* The pending file read (files only). */
	int reading;	     /* A stream read or a file read is active. */
	char *buf;	     /* Bytes received, not yet delivered. */
	size_t len;	     /* Bytes in buf. */
	size_t cap;	     /* Capacity of buf. */
	size_t max_line;     /* Longest line delivered. */
	int skipping;	     /* Dropping an over-long line to its end. */
	int paused;	     /* cli_lines_pause is in force. */
	int eof;	     /* End of input seen (err in eof_err). */
	int eof_err;	     /* Its libuv code (0 for end of file). */
	int done;	     /* on_eof was called. */
	int closing;	     /* cli_lines_close was called. */
	int in_deliver;	     /* deliver() is running. */
	int free_after;	     /* Closed during deliver(): free after it. */
	int requeue;	     /* cli_lines_requeue was called. */
	cli_line_cb on_line; /* Callbacks and their data. */
	cli_eof_cb on_eof;
	void *ud;
	char chunk[CHUNK]; /* File read buffer. */
};

static void start_reading(cli_lines *l);

static void free_lines(cli_lines *l)
{
	free(l->buf);
	free(l);
}

static void closed_cb(uv_handle_t *h)
{
	free_lines(h->data);
}

/* Hands complete lines to the application while not paused; then the end
 * of input once everything is delivered. Returns 1 when l was freed (closed
 * by a callback). */
static int deliver(cli_lines *l)
{
	size_t start = 0;

	if (l->in_deliver)
		return 0;
	l->in_deliver = 1;
	while (!l->paused && !l->closing) {
		char *nl = memchr(l->buf + start, '\n', l->len - start);
		size_t n;

		if (!nl) {
			if (!l->eof || start == l->len)
				break;
			nl = l->buf + l->len; /* Last line without "\n". */
		}
		n = (size_t)(nl - (l->buf + start));
		if (n && l->buf[start + n - 1] == '\r')
			n--;
		if (nl < l->buf + l->len)
			*nl = 0;
		else
			l->buf[l->len] = 0; /* cap keeps one spare byte */
		if (l->skipping) {
			l->skipping = 0;
		} else if (n > l->max_line) {
			l->on_line(l, NULL, n, l->ud);
		} else {
			l->on_line(l, l->buf + start, n, l->ud);
			if (l->requeue) {
				/* Deliver this line again after a resume. */
				l->requeue = 0;
				if (nl < l->buf + l->len)
					*nl = '\n';
				break;
			}
		}
		start =
		    nl < l->buf + l->len ? (size_t)(nl - l->buf) + 1 : l->len;
	}
	if (l->free_after) {
		free_lines(l);
		return 1;
	}
	memmove(l->buf, l->buf + start, l->len - start);
	l->len -= start;
	if (l->len > l->max_line && !l->skipping && !l->closing) {
		/* An over-long line in progress: report it, drop the rest. */
		l->on_line(l, NULL, l->len, l->ud);
		l->skipping = 1;
		l->len = 0;
	} else if (l->skipping) {
		l->len = 0;
	}
	l->in_deliver = 0;
	if (l->eof && !l->len && !l->done && !l->paused && !l->closing) {
		l->done = 1;
		l->in_deliver = 1;
		l->on_eof(l, l->eof_err, l->ud);
		l->in_deliver = 0;
		if (l->free_after) {
			free_lines(l);
			return 1;
		}
	}
	return 0;
}

/* Appends n bytes to buf. Returns 0 or UV_ENOMEM. */
static int append(cli_lines *l, const char *p, size_t n)
{
	if (l->len + n + 1 > l->cap) {
		size_t cap = l->cap ? l->cap : CHUNK;
		char *b;

		while (cap < l->len + n + 1)
			cap *= 2;
		b = realloc(l->buf, cap);
		if (!b)
			return UV_ENOMEM;
		l->buf = b;
		l->cap = cap;
	}
	memcpy(l->buf + l->len, p, n);
	l->len += n;
	return 0;
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	cli_lines *l = h->data;

	(void)hint;
	b->base = l->chunk;
	b->len = sizeof(l->chunk);
}

static void set_eof(cli_lines *l, int err)
{
	l->eof = 1;
	l->eof_err = err;
	if (l->is_stream && l->reading) {
		uv_read_stop(&l->u.s);
		l->reading = 0;
	}
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	cli_lines *l = s->data;

	if (n < 0) {
		set_eof(l, n == UV_EOF ? 0 : (int)n);
	} else if (n > 0 && append(l, b->base, (size_t)n)) {
		set_eof(l, UV_ENOMEM);
	}
	if (deliver(l))
		return;
	if (l->paused && l->reading && !l->closing) {
		uv_read_stop(&l->u.s);
		l->reading = 0;
	}
}

static void fs_read_cb(uv_fs_t *req)
{
	cli_lines *l = req->data;
	ssize_t n = req->result;

	uv_fs_req_cleanup(req);
	l->reading = 0;
	if (l->closing) {
		free_lines(l);
		return;
	}
	if (n <= 0)
		set_eof(l, (int)n);
	else if (append(l, l->chunk, (size_t)n))
		set_eof(l, UV_ENOMEM);
	if (!deliver(l))
		start_reading(l);
}

/* Asks for more input unless paused, finished, or already asking. */
static void start_reading(cli_lines *l)
{
	uv_buf_t b;

	if (l->paused || l->eof || l->closing || l->reading)
		return;
	l->reading = 1;
	if (l->is_stream) {
		if (uv_read_start(&l->u.s, alloc_cb, read_cb))
			set_eof(l, UV_EIO);
		return;
	}
	b = uv_buf_init(l->chunk, sizeof(l->chunk));
	l->req.data = l;
	if (uv_fs_read(l->loop, &l->req, l->fd, &b, 1, -1, fs_read_cb)) {
		l->reading = 0;
		set_eof(l, UV_EIO);
	}
}

int cli_lines_start(uv_loop_t *loop, int fd, size_t max_line,
		    cli_line_cb on_line, cli_eof_cb on_eof, void *ud,
		    cli_lines **out)
{
	cli_lines *l = calloc(1, sizeof(*l));
	uv_handle_type t = uv_guess_handle(fd);
	int rc = 0;

	if (!l)
		return UV_ENOMEM;
	l->loop = loop;
	l->fd = fd;
	l->max_line = max_line;
	l->on_line = on_line;
	l->on_eof = on_eof;
	l->ud = ud;
	if (t == UV_TTY) {
		rc = uv_tty_init(loop, &l->u.tty, fd, 1);
		l->is_stream = !rc;
	} else if (t == UV_NAMED_PIPE || t == UV_TCP) {
		rc = uv_pipe_init(loop, &l->u.pipe, 0);
		if (!rc) {
			l->is_stream = 1;
			rc = uv_pipe_open(&l->u.pipe, fd);
			if (rc) {
				/* Let the close callback free it. */
				l->u.h.data = l;
				uv_close(&l->u.h, closed_cb);
				return rc;
			}
		}
	}
	if (rc) {
		free(l);
		return rc;
	}
	if (l->is_stream)
		l->u.h.data = l;
	*out = l;
	start_reading(l);
	return 0;
}

void cli_lines_pause(cli_lines *l)
{
	l->paused = 1;
}

void cli_lines_resume(cli_lines *l)
{
	if (!l->paused)
		return;
	l->paused = 0;
	if (!deliver(l))
		start_reading(l);
}

void cli_lines_requeue(cli_lines *l)
{
	l->requeue = 1;
}

void cli_lines_close(cli_lines *l)
{
	if (!l || l->closing)
		return;
	l->closing = 1;
	if (l->is_stream) {
		uv_close(&l->u.h, closed_cb);
		return;
	}
	if (l->reading)
		uv_cancel((uv_req_t *)&l->req); /* fs_read_cb frees it. */
	else if (l->in_deliver)
		l->free_after = 1;
	else
		free_lines(l);
}
