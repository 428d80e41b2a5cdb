/* bench.c: `parley bench` (and the stand-alone parley-loadgen built from
 * the same file for tests/bench/run.sh): a single-threaded epoll
 * WebSocket load generator for the parley.v1 hub and for NATS over
 * WebSocket, and an MQTT 3.1.1 client over plain TCP for Mosquitto (whose
 * Debian build has no WebSocket listener). It measures fan-out
 * throughput, publish-to-receive latency, lost and duplicated messages,
 * and the server's CPU time and memory.
 *
 * It is a lean purpose-built client, not libparley: the library's
 * per-message callbacks and JSON decoding would be measured instead of
 * the hub (the bench must saturate a hub from one core).
 *
 * Raw sockets and a hand-written RFC 6455 client (handshake, masking,
 * framing): no TLS, loopback addresses only. Every phase has a deadline, so
 * a dead or stuck server ends the run instead of hanging it.
 *
 * Each publish carries "LG1 <run> <publisher> <seq> <CLOCK_MONOTONIC ns> "
 * followed by padding up to --size bytes; subscribers track every
 * (publisher, seq) in a bitmap to count losses and duplicates, and put
 * receive time minus send time into a log-linear histogram. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

/* The name in messages: a subcommand of parley, or its own program. */
#ifdef PARLEY_BENCH_COMMAND
#define BENCH_NAME "parley bench"
#else
#define BENCH_NAME "parley-loadgen"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS	    512
#define SCRATCH_SIZE	    (1024 * 1024) /* Shared read buffer. */
#define READ_RESERVE	    (64 * 1024)	  /* Free space for a carried read. */
#define MAX_MESSAGE	    (16u << 20)	  /* Largest server message taken. */
#define MAX_HANDSHAKE	    8192	  /* Largest HTTP answer taken. */
#define CONNECT_CONCURRENCY 128		  /* Handshakes in flight at once. */
#define NATS_FRAME_MAX	    65536	  /* Largest frame we send (NATS). */
#define PING_RING	    64		  /* NATS barrier PINGs in flight. */
#define HIST_SUB	    128		  /* Histogram sub-buckets (<1%). */
#define HIST_BUCKETS	    (2 * HIST_SUB + 56 * HIST_SUB)
#define SETUP_ID	    0 /* Request id of a sub (or a publisher's ping). */
#define MAX_ERRORS_KEPT	    6
#define MAX_SUB_URLS	    8 /* --sub-url given at most this often. */
#define NS		    1000000000LL

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char MAGIC[] = "LG1 ";

enum proto { PROTO_PARLEY, PROTO_NATS, PROTO_MQTT };
enum role { ROLE_IDLE, ROLE_SUB, ROLE_PUB };
enum cstate {
	CS_NEW,	       /* Not connected yet. */
	CS_CONNECTING, /* connect() in progress. */
	CS_HANDSHAKE,  /* Upgrade request sent, waiting for 101. */
	CS_SETUP,      /* WebSocket open; sub / CONNECT not yet confirmed. */
	CS_READY,      /* Confirmed: may publish or receive. */
	CS_CLOSED,     /* Gone (failed or closed); fd closed. */
};
enum phase { PH_SETUP, PH_HOLD, PH_RUN, PH_DRAIN };

/* A growable byte buffer. */
struct buf {
	uint8_t *p; /* Bytes. */
	size_t len; /* Used. */
	size_t cap; /* Allocated. */
};

/* A growable bitmap indexed by sequence number. */
struct bitmap {
	uint64_t *w; /* Words. */
	size_t n;    /* Count of words. */
};

/* One WebSocket connection of any role. */
struct conn {
	int fd;		     /* Socket, or -1. */
	enum role role;	     /* What it is for. */
	enum cstate state;   /* Lifecycle. */
	int idx;	     /* Index among the connections of its role. */
	uint32_t events;     /* Events registered with epoll. */
	bool dirty;	     /* On the list of connections to flush. */
	bool nats_connected; /* NATS: CONNECT sent (after INFO). */
	char ws_key[32];     /* Sec-WebSocket-Key we sent. */
	struct buf in;	     /* Received bytes not parsed yet (a partial
				header or frame). */
	struct buf out;	     /* Framed bytes not written yet. */
	size_t out_off;	     /* Bytes of out already written. */
	struct buf app;	     /* NATS: protocol bytes not framed yet;
				parley --batch: the batch being joined. */
	size_t app_n;	     /* parley --batch: publishes in app. */
	struct buf nin;	     /* NATS: an incomplete protocol command. */
	struct buf frag;     /* A fragmented message being reassembled. */
	int frag_op;	     /* Opcode of the fragmented message. */
	uint64_t ws_rem;     /* NATS: payload bytes of the current data frame
				still to come (streamed to the parser). */

	/* Subscriber. */
	struct bitmap *seen; /* Per publisher: sequence numbers received. */
	uint64_t *last_seq;  /* Per publisher: highest seq received. */
	uint64_t unique;     /* Distinct messages received. */

	/* Publisher. */
	uint64_t seq;	     /* Last sequence number published (from 1). */
	uint64_t n_acked;    /* parley: publishes answered ok; NATS: sent;
				MQTT: PUBACKs. */
	uint64_t n_failed;   /* parley: publishes answered with an error. */
	uint64_t acked_upto; /* NATS: publishes covered by a PONG. */
	struct bitmap acked; /* Seqs acknowledged (NATS: published). */
	uint64_t ping_mark[PING_RING]; /* NATS: publish count at each of our
					  PINGs in flight. */
	unsigned ping_head;	       /* Oldest entry of ping_mark. */
	unsigned ping_len;	       /* Entries in ping_mark. */
	uint64_t since_ping;	       /* NATS: publishes since our PING. */
};

/* Where connections go: the hub of --url, or of --sub-url for the
 * subscribers (federated and cluster workloads: publish on one hub or
 * instance, receive on another). */
struct endpoint {
	char url[512];
	char host[128]; /* Host as given (for the Host header). */
	char path[256]; /* Request path with query. */
	int port;
	struct sockaddr_storage addr;
	socklen_t addr_len;
};

/* Command-line options. */
struct opts {
	enum proto proto;
	struct endpoint ep; /* --url: publishers (and all, by default). */
	struct endpoint sub_ep[MAX_SUB_URLS]; /* --sub-url (repeatable), or a
						 copy of ep. */
	int n_sub_ep;			      /* Entries in sub_ep. */
	int subs, pubs, idle;
	bool pubs_given;
	int topics; /* --topics N: topic/0 .. topic/N-1, else 1. */
	char topic[256];
	char subject[256]; /* NATS subject (topic with '/' turned to '.'). */
	size_t size;
	double rate;
	double duration;
	uint64_t count;
	double drain;
	double settle; /* --settle: pause between setup and run. */
	uint64_t window;
	size_t batch; /* parley: --batch cap in bytes, 0 = off. */
	bool json, check;
	const char *token;
	const char *label;
	pid_t pids[8];
	int n_pids;
};

/* The whole run: one of these per process. */
struct lg {
	struct opts o;
	int ep, tfd;
	uint8_t *scratch;
	uint8_t *pubbuf;
	size_t pubbuf_cap;
	uint64_t rng;
	uint32_t run_id;

	struct conn *conns; /* idle, then subs, then pubs. */
	int n_conns;
	struct conn *subs, *pubs;
	struct conn **dirty;
	int n_dirty;
	int connect_next;  /* Next connection to start. */
	int connect_limit; /* Connections allowed to start in this phase. */
	int in_progress;   /* Connections started and not ready/closed. */
	int n_ready, n_failed;

	enum phase phase;
	volatile sig_atomic_t *stop;
	int64_t run_end, drain_end;
	int64_t next_due, interval_ns;
	int rr;
	int64_t timer_armed;
	uint64_t e2e_window;
	int live_pubs;

	/* Results. */
	uint64_t published, delivered, dups, reordered, foreign, lost,
	    unexpected, acked, expected, pub_errors, closed_in_run;
	uint64_t hist[HIST_BUCKETS];
	uint64_t lat_max, lat_n;
	int64_t rx_ns, t_start, t_last_pub, t_last_rx, t_end;
	double srv_cpu0, srv_cpu1, self_cpu0, self_cpu1;
	long rss_before, rss_idle, peak_rss;
	double idle_cpu0, idle_cpu1;
	int64_t idle_t0, idle_t1;
	int idle_ready;
	uint64_t n_errors;
	char errors[MAX_ERRORS_KEPT][200];
	int n_errors_kept;
	bool setup_failed;
};

static volatile sig_atomic_t interrupted;

/* ---- small helpers ---- */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs(BENCH_NAME ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static void buf_reserve(struct buf *b, size_t more)
{
	size_t ncap;

	if (b->len + more <= b->cap)
		return;
	ncap = b->cap ? b->cap : 1024;
	while (ncap < b->len + more)
		ncap *= 2;
	b->p = xrealloc(b->p, ncap);
	b->cap = ncap;
}

static void buf_put(struct buf *b, const void *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Drops the first n bytes. */
static void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Sets bit i; returns whether it was already set. */
static bool bitmap_test_set(struct bitmap *m, uint64_t i)
{
	size_t w = (size_t)(i >> 6);
	uint64_t bit = 1ULL << (i & 63);
	bool was;

	if (w >= m->n) {
		size_t nn = m->n ? m->n : 1024;

		while (nn <= w)
			nn *= 2;
		m->w = xrealloc(m->w, nn * sizeof *m->w);
		memset(m->w + m->n, 0, (nn - m->n) * sizeof *m->w);
		m->n = nn;
	}
	was = (m->w[w] & bit) != 0;
	m->w[w] |= bit;
	return was;
}

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* Writes v in decimal at p; returns the count of digits. */
static size_t u64_dec(uint8_t *p, uint64_t v)
{
	uint8_t t[20];
	size_t n = 0, i;

	do {
		t[n++] = (uint8_t)('0' + v % 10);
		v /= 10;
	} while (v);
	for (i = 0; i < n; i++)
		p[i] = t[n - 1 - i];
	return n;
}

/* Parses a decimal number at *p (optionally negative); advances *p. Returns
 * false when there is no digit. */
static bool parse_i64(const uint8_t **p, const uint8_t *end, int64_t *out)
{
	const uint8_t *q = *p;
	bool neg = false;
	uint64_t v = 0;

	if (q < end && *q == '-') {
		neg = true;
		q++;
	}
	if (q >= end || *q < '0' || *q > '9')
		return false;
	while (q < end && *q >= '0' && *q <= '9')
		v = v * 10 + (uint64_t)(*q++ - '0');
	*p = q;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

static bool parse_u64_sp(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	int64_t v;

	if (!parse_i64(p, end, &v) || v < 0 || *p >= end || **p != ' ')
		return false;
	(*p)++;
	*out = (uint64_t)v;
	return true;
}

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept ---- */

static uint32_t rol32(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static void sha1(const uint8_t *msg, size_t len, uint8_t out[20])
{
	uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476,
			 0xC3D2E1F0};
	uint64_t bits = (uint64_t)len * 8;
	size_t total = ((len + 8) / 64 + 1) * 64;

	for (size_t off = 0; off < total; off += 64) {
		uint32_t w[80], a, b, c, d, e;

		for (int i = 0; i < 16; i++) {
			uint32_t v = 0;

			for (int j = 0; j < 4; j++) {
				size_t k = off + (size_t)(4 * i + j);
				uint8_t byte;

				if (k < len)
					byte = msg[k];
				else if (k == len)
					byte = 0x80;
				else if (k >= total - 8)
					byte = (uint8_t)(bits >>
							 (8 * (total - 1 - k)));
				else
					byte = 0;
				v = (v << 8) | byte;
			}
			w[i] = v;
		}
		for (int i = 16; i < 80; i++)
			w[i] = rol32(
			    w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
		a = h[0];
		b = h[1];
		c = h[2];
		d = h[3];
		e = h[4];
		for (int i = 0; i < 80; i++) {
			uint32_t f, k, t;

			if (i < 20) {
				f = (b & c) | (~b & d);
				k = 0x5A827999;
			} else if (i < 40) {
				f = b ^ c ^ d;
				k = 0x6ED9EBA1;
			} else if (i < 60) {
				f = (b & c) | (b & d) | (c & d);
				k = 0x8F1BBCDC;
			} else {
				f = b ^ c ^ d;
				k = 0xCA62C1D6;
			}
			t = rol32(a, 5) + f + e + k + w[i];
			e = d;
			d = c;
			c = rol32(b, 30);
			b = a;
			a = t;
		}
		h[0] += a;
		h[1] += b;
		h[2] += c;
		h[3] += d;
		h[4] += e;
	}
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}

static void base64(const uint8_t *in, size_t n, char *out)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
	    "tuvwxyz0123456789+/";
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];

		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = tab[(v >> 6) & 63];
		out[o++] = tab[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		out[o++] = tab[v >> 18];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = '=';
	}
	out[o] = 0;
}

/* ---- /proc sampling of the server ---- */

/* Returns the summed utime+stime (seconds) of the --pid processes, or -1. */
static double pids_cpu(const struct lg *g)
{
	double total = 0;
	long tck = sysconf(_SC_CLK_TCK);

	if (!g->o.n_pids)
		return -1;
	for (int i = 0; i < g->o.n_pids; i++) {
		char path[64], line[2048];
		unsigned long long ut, st;
		FILE *f;
		char *p;
		size_t n;

		snprintf(path, sizeof path, "/proc/%d/stat", (int)g->o.pids[i]);
		f = fopen(path, "r");
		if (!f)
			return -1;
		n = fread(line, 1, sizeof line - 1, f);
		fclose(f);
		line[n] = 0;
		p = strrchr(line, ')');
		/* After ")": state is field 3; utime and stime are 14, 15. */
		if (!p || sscanf(p + 1,
				 " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
				 "%*u %llu %llu",
				 &ut, &st) != 2)
			return -1;
		total += (double)(ut + st) / (double)tck;
	}
	return total;
}

/* Returns the summed value (kB) of a /proc/PID/status field such as
 * "VmRSS:", or -1. */
static long pids_status(const struct lg *g, const char *field)
{
	long total = 0;

	if (!g->o.n_pids)
		return -1;
	for (int i = 0; i < g->o.n_pids; i++) {
		char path[64], line[256];
		size_t fl = strlen(field);
		long v = -1;
		FILE *f;

		snprintf(path, sizeof path, "/proc/%d/status",
			 (int)g->o.pids[i]);
		f = fopen(path, "r");
		if (!f)
			return -1;
		while (fgets(line, sizeof line, f))
			if (!strncmp(line, field, fl)) {
				v = strtol(line + fl, NULL, 10);
				break;
			}
		fclose(f);
		if (v < 0)
			return -1;
		total += v;
	}
	return total;
}

static double self_cpu(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* ---- errors ---- */

static void note_error(struct lg *g, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	g->n_errors++;
	for (int i = 0; i < g->n_errors_kept; i++)
		if (!strcmp(g->errors[i], msg))
			return;
	if (g->n_errors_kept < MAX_ERRORS_KEPT)
		snprintf(g->errors[g->n_errors_kept++], sizeof g->errors[0],
			 "%s", msg);
}

static const char *proto_name(enum proto p)
{
	return p == PROTO_NATS ? "nats" : p == PROTO_MQTT ? "mqtt" : "parley";
}

static const char *role_name(enum role r)
{
	return r == ROLE_PUB   ? "publisher"
	       : r == ROLE_SUB ? "subscriber"
			       : "idle";
}

/* ---- connections ---- */

static void set_events(struct lg *g, struct conn *c, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.ptr = c};

	if (c->events == ev)
		return;
	if (epoll_ctl(g->ep, EPOLL_CTL_MOD, c->fd, &e))
		die("epoll_ctl: %s", strerror(errno));
	c->events = ev;
}

static void dirty_add(struct lg *g, struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	g->dirty[g->n_dirty++] = c;
}

/* Closes c and counts it: a failure during setup, a loss afterwards. The
 * message says why (printf format). */
static void conn_close(struct lg *g, struct conn *c, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	if (c->state == CS_CLOSED)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	if (c->state != CS_READY) {
		g->in_progress--;
		g->n_failed++;
		note_error(g, "%s connection failed during setup: %s",
			   role_name(c->role), why);
	} else {
		g->n_ready--;
		if (g->phase == PH_RUN || g->phase == PH_DRAIN)
			g->closed_in_run++;
		note_error(g, "%s connection closed: %s", role_name(c->role),
			   why);
	}
	if (c->role == ROLE_PUB && c->state == CS_READY)
		g->live_pubs--;
	close(c->fd);
	c->fd = -1;
	c->state = CS_CLOSED;
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->app);
	buf_free(&c->nin);
	buf_free(&c->frag);
}

static void conn_set_ready(struct lg *g, struct conn *c)
{
	if (c->state == CS_READY || c->state == CS_CLOSED)
		return;
	c->state = CS_READY;
	g->in_progress--;
	g->n_ready++;
	if (c->role == ROLE_PUB)
		g->live_pubs++;
}

/* XORs n bytes of src with the 4-byte mask into dst (dst may be src). */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
		      const uint8_t m[4])
{
	uint8_t pat[8] = {m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]};
	uint64_t k, v;
	size_t i = 0;

	memcpy(&k, pat, 8);
	for (; i + 8 <= n; i += 8) {
		memcpy(&v, src + i, 8);
		v ^= k;
		memcpy(dst + i, &v, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ m[i & 3];
}

/* Appends one masked client frame to c's output and marks c dirty. */
static void ws_append(struct lg *g, struct conn *c, int opcode,
		      const uint8_t *pl, size_t n)
{
	uint64_t r = rng_next(&g->rng);
	uint8_t *h, mask[4];
	size_t hl;

	buf_reserve(&c->out, n + 14);
	h = c->out.p + c->out.len;
	h[0] = (uint8_t)(0x80 | opcode);
	if (n < 126) {
		h[1] = (uint8_t)(0x80 | n);
		hl = 2;
	} else if (n < 65536) {
		h[1] = 0x80 | 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	} else {
		h[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(mask, &r, 4);
	memcpy(h + hl, mask, 4);
	hl += 4;
	mask_copy(h + hl, pl, n, mask);
	c->out.len += hl + n;
	dirty_add(g, c);
}

/* Queues NATS protocol text; it is framed at the next flush. */
static void nats_send(struct lg *g, struct conn *c, const void *s, size_t n)
{
	buf_put(&c->app, s, n);
	dirty_add(g, c);
}

/* parley --batch: frames the publishes joined in c->app, a lone one as
 * the plain pub frame it is. */
static const char batch_head[] = "{\"op\":\"batch\",\"msgs\":[";

static void batch_frame(struct lg *g, struct conn *c)
{
	const size_t hl = sizeof batch_head - 1;

	if (c->app_n == 1) {
		ws_append(g, c, 0x1, c->app.p + hl, c->app.len - hl);
	} else if (c->app_n) {
		buf_put(&c->app, "]}", 2);
		ws_append(g, c, 0x1, c->app.p, c->app.len);
	}
	c->app.len = 0;
	c->app_n = 0;
}

/* parley: queues one publish's frame text, joined into a batch with
 * --batch. */
static void parley_send(struct lg *g, struct conn *c, const uint8_t *s,
			size_t n)
{
	if (!g->o.batch) {
		ws_append(g, c, 0x1, s, n);
		return;
	}
	if (c->app_n && c->app.len + 1 + n + 2 > g->o.batch)
		batch_frame(g, c);
	if (c->app_n)
		buf_put(&c->app, ",", 1);
	else
		buf_put(&c->app, batch_head, sizeof batch_head - 1);
	buf_put(&c->app, s, n);
	c->app_n++;
	dirty_add(g, c);
}

/* Writes what c has queued; on a short write, waits for EPOLLOUT. */
static void conn_write(struct lg *g, struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = write(c->fd, c->out.p + c->out_off,
				  c->out.len - c->out_off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				buf_consume(&c->out, c->out_off);
				c->out_off = 0;
				set_events(g, c, EPOLLIN | EPOLLOUT);
				return;
			}
			conn_close(g, c, "write: %s", strerror(errno));
			return;
		}
		c->out_off += (size_t)n;
	}
	c->out.len = 0;
	c->out_off = 0;
	if (c->state != CS_CONNECTING)
		set_events(g, c, EPOLLIN);
}

static void flush_dirty(struct lg *g)
{
	for (int i = 0; i < g->n_dirty; i++) {
		struct conn *c = g->dirty[i];

		if (c->state == CS_CLOSED) {
			c->dirty = false;
			continue;
		}
		/* Still marked dirty here, so ws_append does not add c to the
		 * list again. */
		if (g->o.proto == PROTO_PARLEY)
			batch_frame(g, c);
		for (size_t off = 0; off < c->app.len;) {
			size_t n = c->app.len - off;

			if (n > NATS_FRAME_MAX)
				n = NATS_FRAME_MAX;
			ws_append(g, c, 0x2, c->app.p + off, n);
			off += n;
		}
		c->app.len = 0;
		c->dirty = false;
		if (c->state != CS_CONNECTING && !(c->events & EPOLLOUT))
			conn_write(g, c);
	}
	g->n_dirty = 0;
}

static const struct endpoint *endpoint_of(const struct lg *g,
					  const struct conn *c)
{
	/* Subscribers go round robin over the --sub-url hubs. */
	return c->role == ROLE_SUB ? &g->o.sub_ep[c->idx % g->o.n_sub_ep]
				   : &g->o.ep;
}

static void conn_start(struct lg *g, struct conn *c)
{
	struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
	const struct endpoint *ep = endpoint_of(g, c);
	int one = 1;

	c->fd = socket(ep->addr.ss_family,
		       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		die("socket: %s (raise ulimit -n?)", strerror(errno));
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	g->in_progress++;
	c->state = CS_CONNECTING;
	if (epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &e))
		die("epoll_ctl: %s", strerror(errno));
	c->events = EPOLLOUT;
	if (connect(c->fd, (const struct sockaddr *)&ep->addr, ep->addr_len) &&
	    errno != EINPROGRESS)
		conn_close(g, c, "connect: %s", strerror(errno));
}

static void connect_more(struct lg *g)
{
	while (g->connect_next < g->connect_limit &&
	       g->in_progress < CONNECT_CONCURRENCY)
		conn_start(g, &g->conns[g->connect_next++]);
}

static void mqtt_connect(struct lg *g, struct conn *c);

/* Connected: sends the upgrade request (MQTT: CONNECT). */
static void on_connected(struct lg *g, struct conn *c)
{
	const struct endpoint *ep = endpoint_of(g, c);
	uint8_t key[16];
	char req[1024];
	int n;

	if (g->o.proto == PROTO_MQTT) {
		mqtt_connect(g, c);
		return;
	}
	for (int i = 0; i < 16; i += 8) {
		uint64_t r = rng_next(&g->rng);

		memcpy(key + i, &r, 8);
	}
	base64(key, 16, c->ws_key);
	n = snprintf(
	    req, sizeof req,
	    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n%s%s%s%s\r\n",
	    ep->path, ep->host, ep->port, c->ws_key,
	    g->o.proto == PROTO_PARLEY ? "Sec-WebSocket-Protocol: parley.v1\r\n"
				       : "",
	    g->o.token && g->o.proto == PROTO_PARLEY ? "Authorization: Bearer "
						     : "",
	    g->o.token && g->o.proto == PROTO_PARLEY ? g->o.token : "",
	    g->o.token && g->o.proto == PROTO_PARLEY ? "\r\n" : "");
	c->state = CS_HANDSHAKE;
	buf_put(&c->out, req, (size_t)n);
	set_events(g, c, EPOLLIN);
	dirty_add(g, c);
}

/* Finds header name (case-insensitive) in the HTTP answer; copies its
 * trimmed value. Returns false when absent. */
static bool http_header(const char *h, size_t len, const char *name, char *val,
			size_t vlen)
{
	size_t nl = strlen(name);
	const char *p = memchr(h, '\n', len), *end = h + len;

	while (p && p + 1 < end) {
		const char *line = p + 1, *eol = memchr(line, '\n', end - line);

		if (!eol)
			break;
		if ((size_t)(eol - line) > nl && line[nl] == ':' &&
		    !strncasecmp(line, name, nl)) {
			const char *v = line + nl + 1, *ve = eol;
			size_t n;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			n = (size_t)(ve - v) < vlen - 1 ? (size_t)(ve - v)
							: vlen - 1;
			memcpy(val, v, n);
			val[n] = 0;
			return true;
		}
		p = eol;
	}
	return false;
}

static void send_setup(struct lg *g, struct conn *c);

/* Checks the 101 answer; returns false (and closes c) when it is wrong. */
static bool handshake_check(struct lg *g, struct conn *c, const char *h,
			    size_t len)
{
	char want[64], got[128], cat[128];
	uint8_t dig[20];
	int n;

	if (len < 12 || memcmp(h, "HTTP/1.1 101", 12)) {
		const char *eol = memchr(h, '\r', len);

		conn_close(g, c, "upgrade refused: %.*s",
			   (int)(eol ? eol - h : (len > 60 ? 60 : (long)len)),
			   h);
		return false;
	}
	n = snprintf(cat, sizeof cat, "%s%s", c->ws_key, WS_GUID);
	sha1((const uint8_t *)cat, (size_t)n, dig);
	base64(dig, 20, want);
	if (!http_header(h, len, "Sec-WebSocket-Accept", got, sizeof got) ||
	    strcmp(got, want)) {
		conn_close(g, c, "bad Sec-WebSocket-Accept");
		return false;
	}
	if (g->o.proto == PROTO_PARLEY &&
	    (!http_header(h, len, "Sec-WebSocket-Protocol", got, sizeof got) ||
	     strcmp(got, "parley.v1"))) {
		conn_close(g, c, "subprotocol parley.v1 not accepted");
		return false;
	}
	c->state = CS_SETUP;
	send_setup(g, c);
	return true;
}

/* ---- latency histogram ---- */

static unsigned hist_index(uint64_t v)
{
	int msb, shift;

	if (v < 2 * HIST_SUB)
		return (unsigned)v;
	msb = 63 - __builtin_clzll(v);
	shift = msb - 7; /* v >> shift is in [128, 256). */
	return (unsigned)(2 * HIST_SUB + (shift - 1) * HIST_SUB +
			  (int)((v >> shift) - HIST_SUB));
}

static uint64_t hist_value(unsigned i)
{
	unsigned shift, m;

	if (i < 2 * HIST_SUB)
		return i;
	shift = (i - 2 * HIST_SUB) / HIST_SUB + 1;
	m = (i - 2 * HIST_SUB) % HIST_SUB + HIST_SUB;
	return ((uint64_t)m << shift) + ((1ULL << shift) >> 1);
}

/* Returns the q-quantile in ns (0 when empty). */
static uint64_t hist_quantile(const struct lg *g, double q)
{
	uint64_t want, acc = 0;

	if (!g->lat_n)
		return 0;
	want = (uint64_t)(q * (double)g->lat_n);
	if (want < 1)
		want = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		acc += g->hist[i];
		if (acc >= want) {
			uint64_t v = hist_value(i);

			return v > g->lat_max ? g->lat_max : v;
		}
	}
	return g->lat_max;
}

/* many-topics: publisher p's message seq goes to topic (p + seq) % N and
 * subscriber j holds topic j % N, so every subscriber expects a known
 * share of every publisher's sequence. */
static int topic_of_pub(const struct lg *g, int pub, uint64_t seq)
{
	return (int)(((uint64_t)pub + seq) % (uint64_t)g->o.topics);
}

/* Writes the topic (NATS: subject) of index i into out; returns its
 * length. */
static size_t topic_name(const struct lg *g, int i, char *out)
{
	const char *base = g->o.proto == PROTO_NATS ? g->o.subject : g->o.topic;
	size_t n = strlen(base);

	memcpy(out, base, n);
	if (g->o.topics > 1) {
		out[n++] = g->o.proto == PROTO_NATS ? '.' : '/';
		n += u64_dec((uint8_t *)out + n, (uint64_t)i);
	}
	out[n] = 0;
	return n;
}

/* The first of publisher pub's sequence numbers (from 1) that goes to
 * the topic of subscriber sub; the next ones follow every N. */
static uint64_t first_share(const struct lg *g, int sub, int pub)
{
	uint64_t n = (uint64_t)g->o.topics, t = (uint64_t)(sub % g->o.topics);
	uint64_t r = (t + n - (uint64_t)pub % n) % n;

	return r ? r : n;
}

/* How many of publisher pub's sequence numbers 1..upto go to the topic
 * of subscriber sub. */
static uint64_t share_of(const struct lg *g, int sub, int pub, uint64_t upto)
{
	uint64_t r = first_share(g, sub, pub);

	if (g->o.topics == 1)
		return upto;
	return upto >= r ? (upto - r) / (uint64_t)g->o.topics + 1 : 0;
}

/* ---- receiving ---- */

/* Records one delivery of (pub, seq) sent at ts to subscriber c. */
static void on_delivery(struct lg *g, struct conn *c, const uint8_t *p,
			const uint8_t *end)
{
	uint64_t run, pub, seq, ts, lat;
	struct conn *pc;

	p += 4; /* MAGIC */
	if (!parse_u64_sp(&p, end, &run) || !parse_u64_sp(&p, end, &pub) ||
	    !parse_u64_sp(&p, end, &seq) || !parse_u64_sp(&p, end, &ts) ||
	    run != g->run_id || c->role != ROLE_SUB ||
	    pub >= (uint64_t)g->o.pubs) {
		g->foreign++;
		return;
	}
	pc = &g->pubs[pub];
	if (seq == 0 || seq > pc->seq ||
	    topic_of_pub(g, (int)pub, seq) != c->idx % g->o.topics) {
		g->foreign++; /* Not ours, or routed to the wrong topic. */
		return;
	}
	if (bitmap_test_set(&c->seen[pub], seq)) {
		g->dups++;
		return;
	}
	if (seq < c->last_seq[pub])
		g->reordered++;
	else
		c->last_seq[pub] = seq;
	c->unique++;
	g->delivered++;
	lat = g->rx_ns > (int64_t)ts ? (uint64_t)g->rx_ns - ts : 0;
	g->hist[hist_index(lat)]++;
	g->lat_n++;
	if (lat > g->lat_max)
		g->lat_max = lat;
	g->t_last_rx = g->rx_ns;
}

/* Finds MAGIC in a message: usually the last 'L' (the padding follows the
 * numbers), else anywhere. */
static const uint8_t *find_magic(const uint8_t *m, size_t len)
{
	const uint8_t *q = memrchr(m, 'L', len);

	if (q && (size_t)(m + len - q) >= 4 && !memcmp(q, MAGIC, 4))
		return q;
	return memmem(m, len, MAGIC, 4);
}

/* Returns the integer after "key": in a JSON text, or false. */
static bool json_int(const uint8_t *m, size_t len, const char *key, int64_t *v)
{
	const uint8_t *q = memmem(m, len, key, strlen(key));
	const uint8_t *end = m + len;

	if (!q)
		return false;
	q += strlen(key);
	while (q < end && *q == ' ')
		q++;
	return parse_i64(&q, end, v);
}

/* Copies the string value after "key": (without escapes handling). */
static void json_str(const uint8_t *m, size_t len, const char *key, char *out,
		     size_t olen)
{
	const uint8_t *q = memmem(m, len, key, strlen(key));
	const uint8_t *end = m + len;
	size_t n = 0;

	out[0] = 0;
	if (!q)
		return;
	q += strlen(key);
	while (q < end && (*q == ' ' || *q == '"'))
		q++;
	while (q < end && *q != '"' && n + 1 < olen)
		out[n++] = (char)*q++;
	out[n] = 0;
}

static void on_ok(struct lg *g, struct conn *c, int64_t id)
{
	if (c->state == CS_SETUP && id == SETUP_ID) {
		conn_set_ready(g, c);
		return;
	}
	if (c->role != ROLE_PUB || id < 1 || (uint64_t)id > c->seq)
		return;
	if (!bitmap_test_set(&c->acked, (uint64_t)id))
		c->n_acked++;
}

static void on_error_frame(struct lg *g, struct conn *c, const uint8_t *m,
			   size_t len)
{
	char code[64];
	int64_t id = -1;

	json_str(m, len, "\"code\":", code, sizeof code);
	json_int(m, len, "\"id\":", &id);
	if (c->state == CS_SETUP) {
		conn_close(g, c, "setup refused: %s", code);
		return;
	}
	note_error(g, "%s got error %s", role_name(c->role), code);
	if (c->role == ROLE_PUB && id >= 1 && (uint64_t)id <= c->seq) {
		c->n_failed++;
		g->pub_errors++;
	}
}

/* Handles one complete parley.v1 message. */
static void parley_message(struct lg *g, struct conn *c, const uint8_t *m,
			   size_t len)
{
	static const char msg_pfx[] = "{\"op\":\"msg\"";
	static const char ok_pfx[] = "{\"op\":\"ok\",\"id\":";
	char op[32];
	int64_t id;

	if (len > sizeof msg_pfx && !memcmp(m, msg_pfx, sizeof msg_pfx - 1)) {
		const uint8_t *q = find_magic(m, len);

		if (q)
			on_delivery(g, c, q, m + len);
		else
			g->foreign++;
		return;
	}
	if (len > sizeof ok_pfx && !memcmp(m, ok_pfx, sizeof ok_pfx - 1)) {
		const uint8_t *q = m + sizeof ok_pfx - 1;

		if (parse_i64(&q, m + len, &id))
			on_ok(g, c, id);
		return;
	}
	/* The general path: fields in any order. */
	json_str(m, len, "\"op\":", op, sizeof op);
	if (!strcmp(op, "msg")) {
		const uint8_t *q = find_magic(m, len);

		if (q)
			on_delivery(g, c, q, m + len);
		else
			g->foreign++;
	} else if (!strcmp(op, "ok") || !strcmp(op, "pong")) {
		if (json_int(m, len, "\"id\":", &id))
			on_ok(g, c, id);
	} else if (!strcmp(op, "error")) {
		on_error_frame(g, c, m, len);
	}
	/* presence and anything else: ignored. */
}

static void on_pong(struct lg *g, struct conn *c)
{
	if (!c->ping_len)
		return;
	c->acked_upto = c->ping_mark[c->ping_head];
	c->ping_head = (c->ping_head + 1) % PING_RING;
	c->ping_len--;
	if (c->state == CS_SETUP)
		conn_set_ready(g, c);
}

/* Sends a PING whose PONG confirms everything published before it. */
static void nats_barrier(struct lg *g, struct conn *c)
{
	if (c->ping_len == PING_RING)
		return;
	c->ping_mark[(c->ping_head + c->ping_len) % PING_RING] = c->seq;
	c->ping_len++;
	c->since_ping = 0;
	nats_send(g, c, "PING\r\n", 6);
}

static void on_info(struct lg *g, struct conn *c)
{
	char cmd[600];
	int n;

	if (c->nats_connected)
		return;
	c->nats_connected = true;
	if (g->o.token)
		n = snprintf(cmd, sizeof cmd,
			     "CONNECT {\"verbose\":false,\"pedantic\":false,"
			     "\"protocol\":1,\"auth_token\":\"%s\"}\r\n",
			     g->o.token);
	else
		n = snprintf(cmd, sizeof cmd,
			     "CONNECT {\"verbose\":false,\"pedantic\":false,"
			     "\"protocol\":1}\r\n");
	nats_send(g, c, cmd, (size_t)n);
	if (c->role == ROLE_SUB) {
		char t[300];

		topic_name(g, c->idx, t);
		n = snprintf(cmd, sizeof cmd, "SUB %s 1\r\n", t);
		nats_send(g, c, cmd, (size_t)n);
	}
	nats_barrier(g, c);
}

/* Parses NATS protocol commands in p; returns the bytes consumed (a
 * partial command is left), or (size_t)-1 when c was closed. */
static size_t nats_parse(struct lg *g, struct conn *c, const uint8_t *p,
			 size_t n)
{
	size_t off = 0;

	while (off < n && c->state != CS_CLOSED) {
		const uint8_t *l = p + off;
		const uint8_t *nl = memchr(l, '\n', n - off);
		size_t ll;

		if (!nl) {
			if (n - off > 4096) {
				conn_close(g, c, "NATS protocol line too long");
				return (size_t)-1;
			}
			break;
		}
		ll = (size_t)(nl - l);
		if (ll >= 4 && !memcmp(l, "MSG ", 4)) {
			const uint8_t *e = nl, *d;
			uint64_t nb = 0;
			size_t need;

			if (e > l && e[-1] == '\r')
				e--;
			d = e;
			while (d > l && d[-1] >= '0' && d[-1] <= '9')
				d--;
			for (const uint8_t *q = d; q < e; q++)
				nb = nb * 10 + (uint64_t)(*q - '0');
			if (d == e || nb > MAX_MESSAGE) {
				conn_close(g, c, "bad NATS MSG line");
				return (size_t)-1;
			}
			need = (size_t)(nl + 1 - p) + nb + 2;
			if (need > n)
				break;
			if (nb >= 4 && !memcmp(nl + 1, MAGIC, 4))
				on_delivery(g, c, nl + 1, nl + 1 + nb);
			else {
				const uint8_t *q = memmem(nl + 1, nb, MAGIC, 4);

				if (q)
					on_delivery(g, c, q, nl + 1 + nb);
				else
					g->foreign++;
			}
			off = need;
			continue;
		}
		if (ll >= 4 && !memcmp(l, "PING", 4))
			nats_send(g, c, "PONG\r\n", 6);
		else if (ll >= 4 && !memcmp(l, "PONG", 4))
			on_pong(g, c);
		else if (ll >= 4 && !memcmp(l, "INFO", 4))
			on_info(g, c);
		else if (ll >= 4 && !memcmp(l, "-ERR", 4)) {
			int sl = (int)(ll > 100 ? 100 : ll);

			if (sl && l[sl - 1] == '\r')
				sl--;
			if (c->state == CS_SETUP) {
				conn_close(g, c, "%.*s", sl, l);
				return (size_t)-1;
			}
			note_error(g, "%s got %.*s", role_name(c->role), sl, l);
		}
		/* +OK and anything else: ignored. */
		off = (size_t)(nl + 1 - p);
	}
	return c->state == CS_CLOSED ? (size_t)-1 : off;
}

/* Streams a chunk of NATS payload into the protocol parser. Returns -1
 * when c was closed. */
static int nats_feed(struct lg *g, struct conn *c, const uint8_t *p, size_t n)
{
	size_t used;

	if (!c->nin.len) {
		used = nats_parse(g, c, p, n);
		if (used == (size_t)-1)
			return -1;
		if (used < n)
			buf_put(&c->nin, p + used, n - used);
	} else {
		buf_put(&c->nin, p, n);
		used = nats_parse(g, c, c->nin.p, c->nin.len);
		if (used == (size_t)-1)
			return -1;
		buf_consume(&c->nin, used);
	}
	return 0;
}

/* ---- MQTT 3.1.1 over TCP (Mosquitto) ---- */

/* MQTT control packet types (the high nibble of the first byte). */
enum {
	MQ_CONNECT = 1,
	MQ_CONNACK = 2,
	MQ_PUBLISH = 3,
	MQ_PUBACK = 4,
	MQ_SUBSCRIBE = 8,
	MQ_SUBACK = 9,
};
#define MQTT_PID_SPAN 65535 /* Packet ids 1..65535. */

/* Queues raw protocol bytes: MQTT has no WebSocket framing here. */
static void mqtt_send(struct lg *g, struct conn *c, const void *s, size_t n)
{
	buf_put(&c->out, s, n);
	dirty_add(g, c);
}

/* Writes an MQTT "remaining length" at w; returns its size (1..4). */
static size_t mqtt_len(uint8_t *w, size_t n)
{
	size_t k = 0;

	do {
		uint8_t b = n & 0x7f;

		n >>= 7;
		w[k++] = (uint8_t)(n ? b | 0x80 : b);
	} while (n && k < 4);
	return k;
}

/* Writes a 2-byte length and the string; returns the bytes written. */
static size_t mqtt_str(uint8_t *w, const char *s, size_t n)
{
	w[0] = (uint8_t)(n >> 8);
	w[1] = (uint8_t)n;
	memcpy(w + 2, s, n);
	return n + 2;
}

/* The packet id a publisher uses for its seq (QoS 1). */
static unsigned mqtt_pid(uint64_t seq)
{
	return (unsigned)((seq - 1) % MQTT_PID_SPAN) + 1;
}

/* Connected: CONNECT with a clean session and no keepalive (the run is
 * bounded in time). */
static void mqtt_connect(struct lg *g, struct conn *c)
{
	uint8_t pkt[128], body[96], *w = body;
	char id[48];
	int il = snprintf(id, sizeof id, "lg%08x-%c%d", g->run_id,
			  role_name(c->role)[0], c->idx);
	size_t n;

	w += mqtt_str(w, "MQTT", 4);
	*w++ = 4;    /* protocol level: 3.1.1 */
	*w++ = 0x02; /* clean session */
	*w++ = 0;
	*w++ = 0; /* keepalive off */
	w += mqtt_str(w, id, (size_t)il);
	pkt[0] = MQ_CONNECT << 4;
	n = 1 + mqtt_len(pkt + 1, (size_t)(w - body));
	memcpy(pkt + n, body, (size_t)(w - body));
	mqtt_send(g, c, pkt, n + (size_t)(w - body));
	c->state = CS_SETUP;
	set_events(g, c, EPOLLIN);
}

/* Subscribes at QoS 0: like NATS core and parley's live delivery, the
 * broker does not wait for the subscriber's acknowledgements. */
static void mqtt_subscribe(struct lg *g, struct conn *c)
{
	uint8_t pkt[320], *w;
	char t[300];
	size_t tl = topic_name(g, c->idx, t);

	pkt[0] = MQ_SUBSCRIBE << 4 | 0x2;
	w = pkt + 1 + mqtt_len(pkt + 1, 2 + 2 + tl + 1);
	*w++ = 0;
	*w++ = 1; /* packet id */
	w += mqtt_str(w, t, tl);
	*w++ = 0; /* QoS 0 */
	mqtt_send(g, c, pkt, (size_t)(w - pkt));
}

/* A PUBACK for packet id pid: marks the publish it answers. Ids repeat
 * every 65,535 publishes; the window keeps fewer than that in flight, so
 * the newest publish with that id is the one. */
static void mqtt_puback(struct conn *c, unsigned pid)
{
	uint64_t back;

	if (c->role != ROLE_PUB || !c->seq || !pid)
		return;
	back = (mqtt_pid(c->seq) + MQTT_PID_SPAN - pid) % MQTT_PID_SPAN;
	if (back >= c->seq)
		return;
	if (!bitmap_test_set(&c->acked, c->seq - back))
		c->n_acked++;
}

/* One complete packet of type t (flags fl) with body b of n bytes. */
static void mqtt_packet(struct lg *g, struct conn *c, int t, int fl,
			const uint8_t *b, size_t n)
{
	if (t == MQ_CONNACK) {
		if (n < 2 || b[1]) {
			conn_close(g, c, "CONNACK refused (code %d)",
				   n < 2 ? -1 : b[1]);
			return;
		}
		if (c->role == ROLE_SUB)
			mqtt_subscribe(g, c);
		else
			conn_set_ready(g, c);
	} else if (t == MQ_SUBACK) {
		if (n < 3 || b[2] == 0x80) {
			conn_close(g, c, "SUBACK refused");
			return;
		}
		conn_set_ready(g, c);
	} else if (t == MQ_PUBACK && n >= 2) {
		mqtt_puback(c, (unsigned)(b[0] << 8 | b[1]));
	} else if (t == MQ_PUBLISH && n >= 2) {
		size_t off = 2 + (size_t)(b[0] << 8 | b[1]);
		int qos = fl >> 1 & 3;

		if (qos) {
			uint8_t ack[4] = {MQ_PUBACK << 4, 2, 0, 0};

			if (off + 2 > n)
				return;
			memcpy(ack + 2, b + off, 2);
			mqtt_send(g, c, ack, 4);
			off += 2;
		}
		if (off <= n && n - off >= 4 && !memcmp(b + off, MAGIC, 4))
			on_delivery(g, c, b + off, b + n);
		else
			g->foreign++;
	}
	/* PINGRESP and the rest: nothing to do. */
}

/* Parses MQTT packets in p; returns the bytes consumed (a partial packet
 * is left), or -1 when c was closed. */
static long mqtt_parse(struct lg *g, struct conn *c, const uint8_t *p,
		       size_t n)
{
	size_t off = 0;

	while (off < n && c->state != CS_CLOSED) {
		size_t len = 0, k = 1;
		int more = 1;

		for (unsigned sh = 0; more && k < 5; sh += 7, k++) {
			if (off + k >= n)
				return (long)off;
			len |= (size_t)(p[off + k] & 0x7f) << sh;
			more = p[off + k] & 0x80;
		}
		if (more || len > MAX_MESSAGE) {
			conn_close(g, c, "bad MQTT packet length");
			return -1;
		}
		if (n - off - k < len)
			break;
		mqtt_packet(g, c, p[off] >> 4, p[off] & 0xf, p + off + k, len);
		off += k + len;
	}
	return c->state == CS_CLOSED ? -1 : (long)off;
}

/* Handles a complete control frame. Returns -1 when c was closed. */
static int ws_control(struct lg *g, struct conn *c, int op, const uint8_t *pl,
		      size_t n)
{
	if (op == 0x9) { /* ping */
		ws_append(g, c, 0xA, pl, n);
		return 0;
	}
	if (op == 0x8) { /* close */
		int code = n >= 2 ? pl[0] << 8 | pl[1] : 1005;
		int rl = n > 2 ? (int)(n - 2) : 0;

		ws_append(g, c, 0x8, pl, n >= 2 ? 2 : 0);
		conn_write(g, c);
		conn_close(g, c, "close frame %d %.*s", code, rl,
			   (const char *)pl + 2);
		return -1;
	}
	return 0; /* pong */
}

/* Parses WebSocket frames from p; returns the bytes consumed (a partial
 * frame is left for later), or -1 when c was closed. The buffer is
 * writable: masked frames (not expected from a server) are unmasked in
 * place. */
static long ws_parse(struct lg *g, struct conn *c, uint8_t *p, size_t n)
{
	size_t off = 0;

	while (off < n) {
		uint8_t *f = p + off;
		size_t avail = n - off, hl, take;
		uint64_t plen;
		int fin, op, masked;

		if (c->ws_rem) { /* NATS: the rest of a streamed frame */
			take = avail < c->ws_rem ? avail : (size_t)c->ws_rem;
			if (nats_feed(g, c, f, take))
				return -1;
			c->ws_rem -= take;
			off += take;
			continue;
		}
		if (avail < 2)
			break;
		fin = f[0] & 0x80;
		op = f[0] & 0x0f;
		masked = f[1] & 0x80;
		plen = f[1] & 0x7f;
		hl = 2 +
		     (plen == 126   ? 2
		      : plen == 127 ? 8
				    : 0) +
		     (masked ? 4 : 0);
		if (avail < hl)
			break;
		if (plen == 126)
			plen = (uint64_t)f[2] << 8 | f[3];
		else if (plen == 127) {
			plen = 0;
			for (int i = 0; i < 8; i++)
				plen = plen << 8 | f[2 + i];
		}
		if (f[0] & 0x70) {
			conn_close(g, c, "reserved bits set in a frame");
			return -1;
		}
		if (plen > MAX_MESSAGE) {
			conn_close(g, c, "frame of %" PRIu64 " bytes", plen);
			return -1;
		}
		if (op & 0x8) {
			if (plen > 125 || !fin) {
				conn_close(g, c, "bad control frame");
				return -1;
			}
			if (avail < hl + plen)
				break;
			if (masked)
				mask_copy(f + hl, f + hl, plen, f + hl - 4);
			if (ws_control(g, c, op, f + hl, plen))
				return -1;
			off += hl + plen;
			continue;
		}
		if (g->o.proto == PROTO_NATS && !masked) {
			off += hl;
			c->ws_rem = plen;
			continue;
		}
		if (avail < hl + plen)
			break;
		if (masked)
			mask_copy(f + hl, f + hl, plen, f + hl - 4);
		if (op == 0 || !fin) { /* fragmented */
			if (op)
				c->frag_op = op;
			buf_put(&c->frag, f + hl, plen);
			if (c->frag.len > MAX_MESSAGE) {
				conn_close(g, c, "message too large");
				return -1;
			}
			if (fin) {
				if (g->o.proto == PROTO_NATS) {
					if (nats_feed(g, c, c->frag.p,
						      c->frag.len))
						return -1;
				} else {
					parley_message(g, c, c->frag.p,
						       c->frag.len);
				}
				c->frag.len = 0;
			}
		} else if (g->o.proto == PROTO_NATS) {
			if (nats_feed(g, c, f + hl, plen))
				return -1;
		} else {
			parley_message(g, c, f + hl, plen);
		}
		if (c->state == CS_CLOSED)
			return -1;
		off += hl + plen;
	}
	return (long)off;
}

/* Parses received bytes: the HTTP answer first, then frames. Returns the
 * bytes consumed or -1 when c was closed. */
static long conn_parse(struct lg *g, struct conn *c, uint8_t *p, size_t n)
{
	size_t off = 0;
	long r;

	if (g->o.proto == PROTO_MQTT)
		return mqtt_parse(g, c, p, n);
	if (c->state == CS_HANDSHAKE) {
		const uint8_t *e = memmem(p, n, "\r\n\r\n", 4);

		if (!e) {
			if (n > MAX_HANDSHAKE) {
				conn_close(g, c, "HTTP answer too long");
				return -1;
			}
			return 0;
		}
		off = (size_t)(e + 4 - p);
		if (!handshake_check(g, c, (const char *)p, off))
			return -1;
	}
	r = ws_parse(g, c, p + off, n - off);
	return r < 0 ? -1 : (long)off + r;
}

static void conn_read(struct lg *g, struct conn *c)
{
	bool carried = c->in.len > 0;
	uint8_t *p;
	ssize_t n;
	long used;

	if (carried) {
		buf_reserve(&c->in, READ_RESERVE);
		p = c->in.p;
		n = read(c->fd, p + c->in.len, c->in.cap - c->in.len);
	} else {
		p = g->scratch;
		n = read(c->fd, p, SCRATCH_SIZE);
	}
	if (n == 0) {
		conn_close(g, c, "closed by the server");
		return;
	}
	if (n < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			conn_close(g, c, "read: %s", strerror(errno));
		return;
	}
	g->rx_ns = mono_ns();
	if (carried) {
		c->in.len += (size_t)n;
		used = conn_parse(g, c, p, c->in.len);
		if (used >= 0)
			buf_consume(&c->in, (size_t)used);
	} else {
		used = conn_parse(g, c, p, (size_t)n);
		if (used >= 0 && (size_t)used < (size_t)n)
			buf_put(&c->in, p + used, (size_t)n - (size_t)used);
	}
}

static void on_event(struct lg *g, struct conn *c, uint32_t ev)
{
	if (c->state == CS_CLOSED)
		return;
	if (c->state == CS_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof err;

		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err || (ev & (EPOLLERR | EPOLLHUP)))
			conn_close(g, c, "connect: %s",
				   strerror(err ? err : ECONNREFUSED));
		else
			on_connected(g, c);
		return;
	}
	if (ev & EPOLLOUT)
		conn_write(g, c);
	if (c->state != CS_CLOSED && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		conn_read(g, c);
}

/* ---- setup and publishing ---- */

/* The WebSocket is open: subscribes, or confirms the session. */
static void send_setup(struct lg *g, struct conn *c)
{
	char req[400];
	int n;

	if (g->o.proto == PROTO_NATS)
		return; /* CONNECT goes out when INFO arrives. */
	if (c->role == ROLE_IDLE) {
		conn_set_ready(g, c);
		return;
	}
	if (c->role == ROLE_SUB) {
		char t[300];

		topic_name(g, c->idx, t);
		n = snprintf(req, sizeof req,
			     "{\"op\":\"sub\",\"topic\":\"%s\",\"id\":%d}", t,
			     SETUP_ID);
	} else
		n = snprintf(req, sizeof req, "{\"op\":\"ping\",\"id\":%d}",
			     SETUP_ID);
	ws_append(g, c, 0x1, (const uint8_t *)req, (size_t)n);
}

static uint64_t pub_inflight(const struct lg *g, const struct conn *c)
{
	if (g->o.proto == PROTO_NATS)
		return c->seq - c->acked_upto;
	return c->seq - c->n_acked - c->n_failed; /* MQTT: n_failed is 0 */
}

/* Writes a message body at w: the stamp (ml bytes of meta), then pad
 * bytes of padding. Returns the end. */
static uint8_t *put_body(uint8_t *w, const uint8_t *meta, size_t ml,
			 size_t pad)
{
	memcpy(w, meta, ml);
	memset(w + ml, 'x', pad);
	return w + ml + pad;
}

/* Publishes one message on c, stamped now. */
static void publish_one(struct lg *g, struct conn *c, int64_t now)
{
	uint8_t meta[96], *w = g->pubbuf;
	size_t ml = 0, pad, body, tl;
	char topic[300];

	c->seq++;
	tl = topic_name(g, topic_of_pub(g, c->idx, c->seq), topic);
	g->published++;
	g->t_last_pub = now;
	memcpy(meta, MAGIC, 4);
	ml = 4;
	ml += u64_dec(meta + ml, g->run_id);
	meta[ml++] = ' ';
	ml += u64_dec(meta + ml, (uint64_t)c->idx);
	meta[ml++] = ' ';
	ml += u64_dec(meta + ml, c->seq);
	meta[ml++] = ' ';
	ml += u64_dec(meta + ml, (uint64_t)now);
	meta[ml++] = ' ';
	if (g->o.proto == PROTO_PARLEY) {
		static const char pfx[] = "{\"op\":\"pub\",\"topic\":\"";

		/* body: "<meta><pad>" including both quotes is --size. */
		pad = g->o.size > ml + 2 ? g->o.size - ml - 2 : 0;
		memcpy(w, pfx, sizeof pfx - 1);
		w += sizeof pfx - 1;
		memcpy(w, topic, tl);
		w += tl;
		memcpy(w, "\",\"id\":", 7);
		w += 7;
		w += u64_dec(w, c->seq);
		memcpy(w, ",\"body\":\"", 9);
		w += 9;
		w = put_body(w, meta, ml, pad);
		*w++ = '"';
		*w++ = '}';
		parley_send(g, c, g->pubbuf, (size_t)(w - g->pubbuf));
		return;
	}
	pad = g->o.size > ml ? g->o.size - ml : 0;
	body = ml + pad;
	if (g->o.proto == PROTO_MQTT) {
		unsigned pid = mqtt_pid(c->seq);

		*w++ = MQ_PUBLISH << 4 | 0x2; /* QoS 1: answered by PUBACK */
		w += mqtt_len(w, 2 + tl + 2 + body);
		w += mqtt_str(w, topic, tl);
		*w++ = (uint8_t)(pid >> 8);
		*w++ = (uint8_t)pid;
		w = put_body(w, meta, ml, pad);
		mqtt_send(g, c, g->pubbuf, (size_t)(w - g->pubbuf));
		return;
	}
	memcpy(w, "PUB ", 4);
	w += 4;
	memcpy(w, topic, tl);
	w += tl;
	*w++ = ' ';
	w += u64_dec(w, body);
	*w++ = '\r';
	*w++ = '\n';
	w = put_body(w, meta, ml, pad);
	*w++ = '\r';
	*w++ = '\n';
	nats_send(g, c, g->pubbuf, (size_t)(w - g->pubbuf));
	bitmap_test_set(&c->acked, c->seq);
	c->n_acked++;
	if (++c->since_ping >= (g->o.window / 4 ? g->o.window / 4 : 1))
		nats_barrier(g, c);
}

/* Messages subscriber sub should have by now (of those published). */
static uint64_t sub_expects(const struct lg *g, int sub)
{
	uint64_t e = 0;

	for (int p = 0; p < g->o.pubs; p++)
		e += share_of(g, sub, p, g->pubs[p].seq);
	return e;
}

/* The largest count of published messages a ready subscriber has yet to
 * receive: bounds what the hub holds in flight. */
static uint64_t max_lag(const struct lg *g)
{
	uint64_t lag = 0, minrx = UINT64_MAX;

	if (g->o.topics == 1) {
		for (int i = 0; i < g->o.subs; i++)
			if (g->subs[i].state == CS_READY &&
			    g->subs[i].unique < minrx)
				minrx = g->subs[i].unique;
		return minrx == UINT64_MAX || minrx > g->published
			   ? 0
			   : g->published - minrx;
	}
	for (int i = 0; i < g->o.subs; i++) {
		uint64_t e;

		if (g->subs[i].state != CS_READY)
			continue;
		e = sub_expects(g, i);
		if (e > g->subs[i].unique && e - g->subs[i].unique > lag)
			lag = e - g->subs[i].unique;
	}
	return lag;
}

static void end_run(struct lg *g, int64_t now)
{
	g->phase = PH_DRAIN;
	g->drain_end = now + (int64_t)(g->o.drain * NS);
	if (!g->t_last_pub)
		g->t_last_pub = now;
	if (g->o.proto == PROTO_NATS)
		for (int i = 0; i < g->o.pubs; i++)
			if (g->pubs[i].state == CS_READY)
				nats_barrier(g, &g->pubs[i]);
}

static bool count_reached(const struct lg *g)
{
	return g->o.count && g->published >= g->o.count;
}

/* Publishes what is due: the whole window with an open throttle, the
 * schedule with --rate. Ends the run at its bounds. */
static void publish_tick(struct lg *g, int64_t now)
{
	uint64_t lag;

	if (now >= g->run_end || interrupted || count_reached(g) ||
	    !g->live_pubs) {
		end_run(g, now);
		return;
	}
	lag = max_lag(g);
	if (g->o.rate <= 0) {
		for (int k = 0; k < g->o.pubs; k++) {
			struct conn *c = &g->pubs[(g->rr + k) % g->o.pubs];

			while (c->state == CS_READY &&
			       pub_inflight(g, c) < g->o.window &&
			       lag < g->e2e_window && !count_reached(g)) {
				publish_one(g, c, now);
				lag++;
			}
		}
		g->rr = (g->rr + 1) % g->o.pubs;
		return;
	}
	while (g->next_due <= now && !count_reached(g)) {
		struct conn *c = &g->pubs[g->rr];

		if (c->state != CS_READY) {
			g->rr = (g->rr + 1) % g->o.pubs;
			continue; /* live_pubs > 0: another one is. */
		}
		if (pub_inflight(g, c) >= g->o.window || lag >= g->e2e_window)
			break; /* Behind schedule: catch up later. */
		publish_one(g, c, now);
		lag++;
		g->rr = (g->rr + 1) % g->o.pubs;
		g->next_due += g->interval_ns;
	}
}

/* ---- the loop ---- */

static bool setup_done(struct lg *g)
{
	return g->connect_next == g->connect_limit && g->in_progress == 0;
}

static bool never(struct lg *g)
{
	(void)g;
	return false;
}

static bool run_over(struct lg *g)
{
	return g->phase != PH_RUN;
}

static bool drained(struct lg *g)
{
	uint64_t expect = 0;

	if (interrupted > 1)
		return true;
	for (int i = 0; i < g->o.pubs; i++) {
		struct conn *c = &g->pubs[i];

		if (c->state == CS_READY && pub_inflight(g, c))
			return false;
		expect += c->n_acked;
	}
	for (int i = 0; i < g->o.subs; i++)
		if (g->subs[i].state == CS_READY &&
		    g->subs[i].unique <
			(g->o.topics == 1 ? expect : sub_expects(g, i)))
			return false;
	return true;
}

static void arm_timer(struct lg *g, int64_t when)
{
	struct itimerspec its = {0};

	if (when == g->timer_armed)
		return;
	g->timer_armed = when;
	its.it_value.tv_sec = when / NS;
	its.it_value.tv_nsec = when % NS;
	timerfd_settime(g->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Runs the event loop until done(g) or the deadline. */
static void run_loop(struct lg *g, int64_t deadline, bool (*done)(struct lg *))
{
	struct epoll_event evs[MAX_EVENTS];

	for (;;) {
		int64_t now = mono_ns(), wake = deadline;
		int n;

		if (g->phase == PH_RUN)
			publish_tick(g, now);
		connect_more(g);
		flush_dirty(g);
		if (done(g) || now >= deadline ||
		    (interrupted && g->phase == PH_SETUP))
			return;
		if (g->phase == PH_RUN) {
			if (g->run_end < wake)
				wake = g->run_end;
			if (g->o.rate > 0 && g->next_due < wake)
				wake = g->next_due;
		}
		if (g->phase == PH_DRAIN && g->drain_end < wake)
			wake = g->drain_end;
		arm_timer(g, wake > now ? wake : now + 1000);
		n = epoll_wait(g->ep, evs, MAX_EVENTS, 1000);
		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < n; i++) {
			if (!evs[i].data.ptr) {
				uint64_t x;

				if (read(g->tfd, &x, sizeof x) < 0)
					(void)0;
				g->timer_armed = 0;
				continue;
			}
			on_event(g, evs[i].data.ptr, evs[i].events);
		}
	}
}

/* ---- results ---- */

static bool bit_of(const struct bitmap *b, uint64_t i)
{
	return i / 64 < b->n && (b->w[i / 64] >> (i % 64) & 1);
}

static void count_losses(struct lg *g)
{
	for (int p = 0; p < g->o.pubs; p++)
		g->acked += g->pubs[p].n_acked;
	g->expected = g->acked * (uint64_t)g->o.subs;
	if (g->o.topics > 1)
		g->expected = 0;
	for (int s = 0; s < g->o.subs; s++) {
		struct conn *c = &g->subs[s];

		for (int p = 0; p < g->o.pubs; p++) {
			const struct bitmap *a = &g->pubs[p].acked;
			const struct bitmap *r = &c->seen[p];
			size_t nw = a->n > r->n ? a->n : r->n;

			if (g->o.topics > 1) {
				/* Only this subscriber's share: walk it. */
				for (uint64_t seq = first_share(g, s, p);
				     seq <= g->pubs[p].seq;
				     seq += (uint64_t)g->o.topics) {
					if (!bit_of(a, seq))
						continue;
					g->expected++;
					g->lost += !bit_of(r, seq);
				}
				for (size_t i = 0; i < r->n; i++)
					g->unexpected +=
					    (uint64_t)__builtin_popcountll(
						r->w[i] &
						~(i < a->n ? a->w[i] : 0));
				continue;
			}

			for (size_t i = 0; i < nw; i++) {
				uint64_t aw = i < a->n ? a->w[i] : 0;
				uint64_t rw = i < r->n ? r->w[i] : 0;

				g->lost +=
				    (uint64_t)__builtin_popcountll(aw & ~rw);
				g->unexpected +=
				    (uint64_t)__builtin_popcountll(rw & ~aw);
			}
		}
	}
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void report(struct lg *g)
{
	double el = g->t_start ? (double)(g->t_end - g->t_start) / NS : 0;
	double pub_el = g->t_start && g->t_last_pub > g->t_start
			    ? (double)(g->t_last_pub - g->t_start) / NS
			    : 0;
	int64_t last =
	    g->t_last_rx > g->t_last_pub ? g->t_last_rx : g->t_last_pub;
	double del_el = g->t_start && last > g->t_start
			    ? (double)(last - g->t_start) / NS
			    : 0;
	double pub_rate = pub_el > 0 ? (double)g->published / pub_el : 0;
	double del_rate = del_el > 0 ? (double)g->delivered / del_el : 0;
	double cpu = g->srv_cpu0 >= 0 && g->srv_cpu1 >= 0
			 ? g->srv_cpu1 - g->srv_cpu0
			 : -1;
	double cpu_m =
	    cpu >= 0 && g->delivered ? cpu / ((double)g->delivered / 1e6) : -1;
	double cpu_util = cpu >= 0 && el > 0 ? cpu / el : -1;
	double self_util = el > 0 ? (g->self_cpu1 - g->self_cpu0) / el : -1;
	double idle_el = (double)(g->idle_t1 - g->idle_t0) / NS;
	double idle_cpu = g->idle_cpu0 >= 0 && g->idle_cpu1 >= 0 && idle_el > 0
			      ? (g->idle_cpu1 - g->idle_cpu0) / idle_el
			      : -1;
	double per_conn =
	    g->o.idle && g->rss_before >= 0 && g->rss_idle >= 0 && g->idle_ready
		? (double)(g->rss_idle - g->rss_before) * 1024.0 / g->idle_ready
		: -1;
	double q[5] = {hist_quantile(g, 0.5) / 1e3, hist_quantile(g, 0.9) / 1e3,
		       hist_quantile(g, 0.99) / 1e3,
		       hist_quantile(g, 0.999) / 1e3, g->lat_max / 1e3};
	FILE *f = stdout;

	if (g->o.json) {
		fprintf(f, "{\"label\":");
		json_string(f, g->o.label ? g->o.label : "");
		fprintf(f, ",\"proto\":\"%s\",\"url\":",
			proto_name(g->o.proto));
		json_string(f, g->o.ep.url);
		fputs(",\"sub_urls\":[", f);
		for (int i = 0; i < g->o.n_sub_ep; i++) {
			if (i)
				fputc(',', f);
			json_string(f, g->o.sub_ep[i].url);
		}
		fputc(']', f);
		fprintf(
		    f,
		    ",\"subs\":%d,\"pubs\":%d,\"idle\":%d,\"topics\":%d,"
		    "\"size\":%zu,\"rate\":%.0f,\"window\":%" PRIu64
		    ",\"batch\":%zu,\"elapsed_s\":%.3f,\"published\":%" PRIu64
		    ",\"acked\":%" PRIu64 ",\"pub_errors\":%" PRIu64
		    ",\"delivered\":%" PRIu64 ",\"expected\":%" PRIu64
		    ",\"lost\":%" PRIu64 ",\"duplicated\":%" PRIu64
		    ",\"reordered\":%" PRIu64 ",\"unexpected\":%" PRIu64
		    ",\"foreign\":%" PRIu64
		    ",\"published_per_s\":%.0f,\"delivered_per_s\":%.0f,",
		    g->o.subs, g->o.pubs, g->o.idle, g->o.topics, g->o.size,
		    g->o.rate, g->o.window, g->o.batch, el, g->published,
		    g->acked, g->pub_errors, g->delivered, g->expected, g->lost,
		    g->dups, g->reordered, g->unexpected, g->foreign, pub_rate,
		    del_rate);
		fprintf(f,
			"\"latency_us\":{\"n\":%" PRIu64
			",\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,"
			"\"p999\":%.1f,\"max\":%.1f},",
			g->lat_n, q[0], q[1], q[2], q[3], q[4]);
		fprintf(
		    f,
		    "\"server_cpu_s\":%.2f,\"server_cpu_util\":%.3f,"
		    "\"server_cpu_s_per_M\":%.3f,\"server_peak_rss_kb\":%ld,"
		    "\"loadgen_cpu_util\":%.3f,",
		    cpu, cpu_util, cpu_m, g->peak_rss, self_util);
		fprintf(f,
			"\"idle_ready\":%d,\"idle_rss_before_kb\":%ld,"
			"\"idle_rss_after_kb\":%ld,\"idle_rss_per_conn_bytes\":"
			"%.0f,\"idle_server_cpu_util\":%.4f,",
			g->idle_ready, g->rss_before, g->rss_idle, per_conn,
			idle_cpu);
		fprintf(f,
			"\"closed_during_run\":%" PRIu64
			",\"setup_failed\":%s,\"errors\":%" PRIu64
			",\"error_samples\":[",
			g->closed_in_run, g->setup_failed ? "true" : "false",
			g->n_errors);
		for (int i = 0; i < g->n_errors_kept; i++) {
			if (i)
				fputc(',', f);
			json_string(f, g->errors[i]);
		}
		fprintf(f, "]}\n");
		return;
	}
	fprintf(f, "parley-loadgen %s %s subs=%d pubs=%d idle=%d size=%zu",
		proto_name(g->o.proto), g->o.ep.url,
		g->o.subs, g->o.pubs, g->o.idle, g->o.size);
	if (g->o.topics > 1)
		fprintf(f, " topics=%d", g->o.topics);
	if (g->o.rate > 0)
		fprintf(f, " rate=%.0f/s", g->o.rate);
	else
		fprintf(f, " rate=open window=%" PRIu64, g->o.window);
	if (g->o.batch)
		fprintf(f, " batch=%zu", g->o.batch);
	fprintf(f, " elapsed=%.2fs\n", el);
	if (g->o.subs || g->o.pubs) {
		fprintf(f,
			"  published   %12" PRIu64
			"  %12.0f /s   acked %" PRIu64 "  errors %" PRIu64 "\n",
			g->published, pub_rate, g->acked, g->pub_errors);
		fprintf(f,
			"  delivered   %12" PRIu64
			"  %12.0f /s   expected %" PRIu64 "\n",
			g->delivered, del_rate, g->expected);
		fprintf(f,
			"  lost %" PRIu64 "  duplicated %" PRIu64
			"  reordered %" PRIu64 "  unexpected %" PRIu64
			"  foreign %" PRIu64 "\n",
			g->lost, g->dups, g->reordered, g->unexpected,
			g->foreign);
		fprintf(
		    f,
		    "  latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
		    "max %.1f  (n=%" PRIu64 ")\n",
		    q[0], q[1], q[2], q[3], q[4], g->lat_n);
	}
	if (cpu >= 0)
		fprintf(f,
			"  server      cpu %.2fs (%.0f%%)  %.3f cpu-s per 1M "
			"deliveries  peak rss %ld kB\n",
			cpu, cpu_util * 100, cpu_m, g->peak_rss);
	if (self_util >= 0)
		fprintf(f, "  loadgen     cpu %.0f%%\n", self_util * 100);
	if (g->o.idle) {
		fprintf(f, "  idle        %d/%d conns held", g->idle_ready,
			g->o.idle);
		if (per_conn >= 0)
			fprintf(
			    f,
			    "  server rss %ld -> %ld kB (%.0f bytes per conn)",
			    g->rss_before, g->rss_idle, per_conn);
		if (idle_cpu >= 0)
			fprintf(f, "  server cpu while idle %.2f%%",
				idle_cpu * 100);
		fputc('\n', f);
	}
	if (g->n_errors) {
		fprintf(f,
			"  errors %" PRIu64 " (closed during run %" PRIu64
			"):\n",
			g->n_errors, g->closed_in_run);
		for (int i = 0; i < g->n_errors_kept; i++)
			fprintf(f, "    %s\n", g->errors[i]);
	}
}

/* ---- options ---- */

static void usage(FILE *f)
{
	fputs(
	    "usage: " BENCH_NAME " [options]\n"
	    "  --proto parley|nats|mqtt  protocol (default parley; mqtt: "
	    "3.1.1\n"
	    "                        over TCP, QoS 1 publishes, QoS 0 subs)\n"
	    "  --url ws://127.0.0.1:PORT/ws   loopback only "
	    "(mqtt://HOST:PORT)\n"
	    "  --sub-url URL         subscribers connect here instead (a\n"
	    "                        federated peer, another instance);\n"
	    "                        repeated: round robin over them\n"
	    "  --subs K              subscribers (default 1)\n"
	    "  --pubs P              publishers (default 1, 0 with --subs 0)\n"
	    "  --topic T             topic (default bench/t; NATS: / -> .)\n"
	    "  --topics N            many-topics: T/0 .. T/N-1; subscriber j\n"
	    "                        holds T/(j mod N), publishers spread\n"
	    "                        their messages over all N\n"
	    "  --size BYTES          body size (default 200)\n"
	    "  --rate N              publishes/s in total, 0 = open (default)\n"
	    "  --duration S          publishing time bound (default 5)\n"
	    "  --count N             publish count bound (default none)\n"
	    "  --window W            un-acked publishes per publisher "
	    "(default 1000)\n"
	    "  --batch BYTES         parley: join the publishes of one loop\n"
	    "                        pass into batch frames of at most BYTES\n"
	    "                        (default 0: one frame per publish)\n"
	    "  --drain S             wait for deliveries after (default 2)\n"
	    "  --settle S            wait after setup before publishing\n"
	    "                        (subscriptions crossing links; default "
	    "0)\n"
	    "  --idle N              hold N idle connections open\n"
	    "  --token TOKEN         parley: Bearer token; NATS: auth_token;\n"
	    "                        MQTT: not sent (anonymous)\n"
	    "  --pid PID[,PID]       server processes to sample in /proc\n"
	    "  --label TEXT          name carried into the JSON\n"
	    "  --json                one JSON object instead of the table\n"
	    "  --check               exit 1 on lost or duplicated messages\n",
	    f);
}

/* Accepts ws://HOST:PORT/PATH (MQTT: mqtt://HOST:PORT) with a loopback
 * HOST only. */
static void parse_url(struct endpoint *o, enum proto proto)
{
	const char *p = o->url, *hs, *he, *ps;
	char host[128];
	struct sockaddr_in *a4 = (struct sockaddr_in *)&o->addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&o->addr;

	if (proto == PROTO_MQTT) {
		if (strncmp(p, "mqtt://", 7))
			die("--url must start with mqtt:// with --proto mqtt");
		p += 2; /* "mqtt://" and "ws://" end alike from here */
	} else if (strncmp(p, "ws://", 5))
		die("--url must start with ws:// (no TLS here)");
	hs = p + 5;
	if (*hs == '[') {
		he = strchr(hs, ']');
		if (!he)
			die("bad --url");
		ps = he + 1;
		hs++;
	} else {
		he = hs + strcspn(hs, ":/?");
		ps = he;
	}
	if ((size_t)(he - hs) >= sizeof host)
		die("bad --url host");
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = 0;
	o->port = proto == PROTO_NATS ? 80 : proto == PROTO_MQTT ? 1883 : 8080;
	if (*ps == ':') {
		o->port = atoi(ps + 1);
		ps += 1 + strspn(ps + 1, "0123456789");
	}
	if (o->port < 1 || o->port > 65535)
		die("bad --url port");
	snprintf(o->path, sizeof o->path, "%s", *ps ? ps : "/");
	if (o->path[0] != '/')
		die("bad --url path");
	snprintf(o->host, sizeof o->host, "%s", p[5] == '[' ? "[::1]" : host);
	memset(&o->addr, 0, sizeof o->addr);
	if (!strcmp(host, "localhost"))
		snprintf(host, sizeof host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
			die("only loopback addresses: %s", host);
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)o->port);
		o->addr_len = sizeof *a4;
	} else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
			die("only loopback addresses: %s", host);
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)o->port);
		o->addr_len = sizeof *a6;
	} else {
		die("--url host must be a loopback address, not %s", host);
	}
}

static double num_arg(const char *name, const char *s, double lo, double hi)
{
	char *e;
	double v = strtod(s, &e);

	if (!*s || *e || v < lo || v > hi)
		die("%s must be a number in [%g, %g]", name, lo, hi);
	return v;
}

static void parse_opts(struct opts *o, int argc, char **argv)
{
	static const struct option lo[] = {{"proto", 1, 0, 'P'},
					   {"url", 1, 0, 'u'},
					   {"sub-url", 1, 0, 'U'},
					   {"subs", 1, 0, 'k'},
					   {"pubs", 1, 0, 'p'},
					   {"topic", 1, 0, 't'},
					   {"size", 1, 0, 's'},
					   {"rate", 1, 0, 'r'},
					   {"duration", 1, 0, 'd'},
					   {"count", 1, 0, 'n'},
					   {"window", 1, 0, 'w'},
					   {"drain", 1, 0, 'D'},
					   {"batch", 1, 0, 'B'},
					   {"idle", 1, 0, 'i'},
					   {"token", 1, 0, 'T'},
					   {"topics", 1, 0, 'N'},
					   {"settle", 1, 0, 'S'},
					   {"pid", 1, 0, 'x'},
					   {"label", 1, 0, 'l'},
					   {"json", 0, 0, 'j'},
					   {"check", 0, 0, 'c'},
					   {"help", 0, 0, 'h'},
					   {0, 0, 0, 0}};
	int ch;

	snprintf(o->ep.url, sizeof o->ep.url, "ws://127.0.0.1:8080/ws");
	snprintf(o->topic, sizeof o->topic, "bench/t");
	o->subs = 1;
	o->pubs = 1;
	o->topics = 1;
	o->size = 200;
	o->duration = 5;
	o->drain = 2;
	o->window = 1000;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'P':
			if (!strcmp(optarg, "parley"))
				o->proto = PROTO_PARLEY;
			else if (!strcmp(optarg, "nats"))
				o->proto = PROTO_NATS;
			else if (!strcmp(optarg, "mqtt"))
				o->proto = PROTO_MQTT;
			else
				die("--proto is parley, nats or mqtt");
			break;
		case 'u':
			snprintf(o->ep.url, sizeof o->ep.url, "%s", optarg);
			break;
		case 'U':
			if (o->n_sub_ep == MAX_SUB_URLS)
				die("at most %d --sub-url", MAX_SUB_URLS);
			snprintf(o->sub_ep[o->n_sub_ep].url,
				 sizeof o->sub_ep[0].url, "%s", optarg);
			o->n_sub_ep++;
			break;
		case 'k':
			o->subs = (int)num_arg("--subs", optarg, 0, 100000);
			break;
		case 'p':
			o->pubs = (int)num_arg("--pubs", optarg, 0, 1000);
			o->pubs_given = true;
			break;
		case 't':
			if (strlen(optarg) >= 200 ||
			    strpbrk(optarg, "\"\\ \r\n"))
				die("--topic: at most 200 bytes, no quotes, "
				    "spaces or backslashes");
			snprintf(o->topic, sizeof o->topic, "%s", optarg);
			break;
		case 's':
			o->size = (size_t)num_arg("--size", optarg, 1, 1 << 20);
			break;
		case 'N':
			o->topics = (int)num_arg("--topics", optarg, 1, 100000);
			break;
		case 'S':
			o->settle = num_arg("--settle", optarg, 0, 60);
			break;
		case 'r':
			o->rate = num_arg("--rate", optarg, 0, 1e8);
			break;
		case 'd':
			o->duration = num_arg("--duration", optarg, 0.01, 3600);
			break;
		case 'n':
			o->count =
			    (uint64_t)num_arg("--count", optarg, 0, 1e12);
			break;
		case 'w':
			o->window =
			    (uint64_t)num_arg("--window", optarg, 1, 1e7);
			break;
		case 'D':
			o->drain = num_arg("--drain", optarg, 0, 600);
			break;
		case 'B':
			o->batch =
			    (size_t)num_arg("--batch", optarg, 0, 1 << 24);
			break;
		case 'i':
			o->idle = (int)num_arg("--idle", optarg, 0, 1000000);
			break;
		case 'T':
			if (strpbrk(optarg, "\"\\\r\n") || strlen(optarg) > 400)
				die("--token: no quotes, backslashes or "
				    "newlines, at most 400 bytes");
			o->token = optarg;
			break;
		case 'x':
			for (char *s = optarg; *s;) {
				char *e;
				long v = strtol(s, &e, 10);

				if (e == s || v <= 0 || o->n_pids == 8)
					die("--pid PID[,PID...] (at most 8)");
				o->pids[o->n_pids++] = (pid_t)v;
				s = *e == ',' ? e + 1 : e;
				if (*e && *e != ',')
					die("--pid PID[,PID...]");
			}
			break;
		case 'l':
			o->label = optarg;
			break;
		case 'j':
			o->json = true;
			break;
		case 'c':
			o->check = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(64);
		}
	}
	if (optind < argc)
		die("unexpected argument %s", argv[optind]);
	if (!o->subs && !o->pubs_given)
		o->pubs = 0;
	if (o->subs && !o->pubs)
		die("--subs needs at least one publisher");
	if (!o->subs && !o->pubs && !o->idle)
		die("nothing to do: give --subs, --pubs or --idle");
	if (o->proto == PROTO_MQTT && o->window >= MQTT_PID_SPAN)
		die("--window must be below %d with --proto mqtt (packet ids)",
		    MQTT_PID_SPAN);
	if (o->batch && o->proto != PROTO_PARLEY)
		die("--batch is for --proto parley (NATS frames its stream "
		    "itself)");
	if (o->batch && o->batch < 256)
		die("--batch: at least 256 bytes, or 0");
	parse_url(&o->ep, o->proto);
	for (int i = 0; i < o->n_sub_ep; i++)
		parse_url(&o->sub_ep[i], o->proto);
	if (!o->n_sub_ep) {
		o->sub_ep[0] = o->ep;
		o->n_sub_ep = 1;
	}
	snprintf(o->subject, sizeof o->subject, "%s", o->topic);
	for (char *s = o->subject; *s; s++)
		if (*s == '/')
			*s = '.';
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted++;
}

static void setup(struct lg *g)
{
	struct rlimit rl;
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
	struct sigaction sa = {0};
	int n = g->o.idle + g->o.subs + g->o.pubs;

	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)n + 16 > rl.rlim_cur)
		die("%d connections need a higher ulimit -n (now %lu)", n,
		    (unsigned long)rl.rlim_cur);
	signal(SIGPIPE, SIG_IGN);
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	g->ep = epoll_create1(EPOLL_CLOEXEC);
	g->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (g->ep < 0 || g->tfd < 0)
		die("epoll/timerfd: %s", strerror(errno));
	if (epoll_ctl(g->ep, EPOLL_CTL_ADD, g->tfd, &e))
		die("epoll_ctl: %s", strerror(errno));
	g->scratch = xrealloc(NULL, SCRATCH_SIZE);
	g->pubbuf_cap = g->o.size + strlen(g->o.topic) + 256;
	g->pubbuf = xrealloc(NULL, g->pubbuf_cap);
	g->rng = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32) ^
		 0x9E3779B97F4A7C15ULL;
	if (!g->rng)
		g->rng = 1;
	g->run_id = (uint32_t)rng_next(&g->rng);
	g->conns = calloc((size_t)n, sizeof *g->conns);
	g->dirty = calloc((size_t)n + 1, sizeof *g->dirty);
	if (!g->conns || !g->dirty)
		die("out of memory");
	g->n_conns = n;
	for (int i = 0; i < n; i++) {
		struct conn *c = &g->conns[i];

		c->fd = -1;
		if (i < g->o.idle) {
			c->role = ROLE_IDLE;
			c->idx = i;
		} else if (i < g->o.idle + g->o.subs) {
			c->role = ROLE_SUB;
			c->idx = i - g->o.idle;
			c->seen =
			    calloc((size_t)g->o.pubs + 1, sizeof *c->seen);
			c->last_seq =
			    calloc((size_t)g->o.pubs + 1, sizeof *c->last_seq);
			if (!c->seen || !c->last_seq)
				die("out of memory");
		} else {
			c->role = ROLE_PUB;
			c->idx = i - g->o.idle - g->o.subs;
		}
	}
	g->subs = g->conns + g->o.idle;
	g->pubs = g->conns + g->o.idle + g->o.subs;
	g->e2e_window = 4 * g->o.window * (uint64_t)(g->o.pubs ? g->o.pubs : 1);
	g->srv_cpu0 = g->srv_cpu1 = g->idle_cpu0 = g->idle_cpu1 = -1;
	g->rss_before = g->rss_idle = g->peak_rss = -1;
}

/* Connects connections [connect_next, limit) and waits for them; returns
 * false when one failed or the deadline passed. */
static bool connect_phase(struct lg *g, int limit)
{
	int64_t deadline =
	    mono_ns() + 10 * NS + (int64_t)(limit - g->connect_next) * NS / 200;

	g->phase = PH_SETUP;
	g->connect_limit = limit;
	run_loop(g, deadline, setup_done);
	if (!setup_done(g) && !g->n_failed)
		note_error(g, "setup timed out (%d of %d connections ready)",
			   g->n_ready, limit);
	if (interrupted)
		note_error(g, "interrupted during setup");
	return setup_done(g) && !g->n_failed && !interrupted;
}

/* The whole measurement. Returns the exit status. */
static int bench(struct lg *g)
{
	int64_t now;

	if (g->o.idle) {
		g->rss_before = pids_status(g, "VmRSS:");
		if (!connect_phase(g, g->o.idle)) {
			g->setup_failed = true;
			return 2;
		}
		g->idle_ready = g->n_ready;
		/* Let the server settle before sampling its memory. */
		g->phase = PH_HOLD;
		run_loop(g, mono_ns() + NS / 2, never);
		g->rss_idle = pids_status(g, "VmRSS:");
	}
	if (!connect_phase(g, g->n_conns)) {
		g->setup_failed = true;
		return 2;
	}
	if (g->o.settle > 0) {
		/* Subscriptions travel over federation and leaf links after
		 * they are confirmed: let them arrive before publishing. */
		g->phase = PH_HOLD;
		run_loop(g, mono_ns() + (int64_t)(g->o.settle * NS), never);
	}
	now = mono_ns();
	g->t_start = now;
	g->srv_cpu0 = pids_cpu(g);
	g->self_cpu0 = self_cpu();
	if (g->o.subs || g->o.pubs) {
		g->phase = PH_RUN;
		g->run_end = now + (int64_t)(g->o.duration * NS);
		g->next_due = now;
		if (g->o.rate > 0)
			g->interval_ns = (int64_t)(NS / g->o.rate);
		if (g->interval_ns < 1)
			g->interval_ns = 1;
		run_loop(g, g->run_end + NS, run_over);
		if (g->phase == PH_RUN)
			end_run(g, mono_ns());
		run_loop(g, g->drain_end, drained);
		if (!drained(g))
			note_error(g,
				   "drain window of %.1fs ended with "
				   "deliveries missing",
				   g->o.drain);
	} else {
		/* Idle connections only: measure what holding them costs. */
		g->idle_t0 = now;
		g->idle_cpu0 = g->srv_cpu0;
		g->phase = PH_HOLD;
		run_loop(g, now + (int64_t)(g->o.duration * NS), never);
		g->idle_t1 = mono_ns();
		g->idle_cpu1 = pids_cpu(g);
	}
	g->t_end = mono_ns();
	g->srv_cpu1 = pids_cpu(g);
	g->self_cpu1 = self_cpu();
	g->peak_rss = pids_status(g, "VmHWM:");
	count_losses(g);
	if (g->o.check &&
	    (g->lost || g->dups || (g->o.subs && g->o.pubs && !g->acked)))
		return 1;
	return 0;
}

#ifdef PARLEY_BENCH_COMMAND
int cmd_bench(int argc, char **argv)
#else
int main(int argc, char **argv)
#endif
{
	static struct lg lg;
	struct lg *g = &lg;
	int rc;

	parse_opts(&g->o, argc, argv);
	setup(g);
	rc = bench(g);
	if (rc == 2 && g->n_errors_kept)
		fprintf(stderr, BENCH_NAME ": %s\n", g->errors[0]);
	report(g);
	return rc;
}
