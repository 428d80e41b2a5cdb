/* cluster.c: cluster mode on Redis (see cluster.h). Keys, all under the
 * configured prefix P:
 *   P:seq          node-wide sequence number (INCR)
 *   P:mid:<mid>    dedup marker (federation on only), expires after a day
 *   P:last         hash: topic -> seq of its newest message
 *   P:t:<topic>    stream per topic, ids "<seq>-1", fields p (seq of the
 *                  topic's previous message, to detect trimmed history
 *                  exactly), h and t (the client frame's JSON before and
 *                  after its cursor's base-36 seq digits); entries from
 *                  before that split hold the whole frame in m
 *   P:log          stream of every message, for federation replay and
 *                  catch-up: one entry per stored batch, id "<its last
 *                  seq>-1", fields t <topic> m <run payload> per run of
 *                  the batch (see P:c:), trimmed by seq (MINID)
 *   P:topics       set of topics
 *   P:c:<topic>    pub/sub channel: records "<seq>\n<path JSON>\n<client
 *                  JSON>", one per message of a run of consecutive
 *                  messages to the topic, separated by NUL bytes (which
 *                  JSON text never holds raw)
 * The client JSON already carries its cursor, so an instance turns a
 * pub/sub message into WebSocket frames without parsing it. */
#include "cluster.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "codec.h"
#include "err.h"
#include "fed.h"
#include "history.h"
#include "hub.h"
#include "log.h"
#include "rlink.h"
#include "strmap.h"
#include "topic.h"

/* How long a backlog waits for its subscriptions to be live. */
#define PROBE_RETRY_MS	 50
#define PROBE_GIVE_UP_MS 3000
/* Messages of the node-wide log kept for federation replay. */
#define LOG_LEN 100000
/* Messages read per catch-up batch (about: see log_entries), and live
 * bytes held meanwhile. */
#define CATCH_UP_BATCH	    1000
#define CATCH_UP_HOLD_BYTES (64 * 1024 * 1024)
/* Seconds a stored mid is remembered for dedup. */
#define MID_TTL_S 86400

/* Messages stored by one script call: what one loop pass accepted, up to
 * these bounds. */
#define BATCH_MAX   64
#define BATCH_BYTES (1024 * 1024)
/* Script arguments before the messages (EVALSHA sha 0 prefix hlen loglen
 * ttl epoch mark count), and per message (topic mid head tail path peer
 * peer_cursor). */
#define BATCH_FIXED 10
#define PER_MSG	    7

/* Stores a batch of messages atomically, in order; see the comment at the
 * top. ARGV: prefix, history length, log length, mid TTL, epoch, whether
 * every mid gets a dedup marker ('1': federation is on), count, then per
 * message topic, mid, the client frame around its cursor's seq
 * digits (head, tail), path JSON, and the peer and its cursor ('' when
 * not from a peer). Returns one integer per message: its seq, or 0 when
 * the mid was already stored. One call per batch rather than per message:
 * the call itself cost Redis about as much as the stores in it; for the
 * same reason the batch takes its seqs with one INCRBY, and reads and
 * writes each topic's newest seq (P:last) once, not per message, and
 * publishes each run of consecutive messages to one topic once: only
 * consecutive ones, since an instance drops a seq not above the last one
 * it saw, so its channels must carry the seqs in order. */
static const char store_script[] =
    "local p, n = ARGV[1], tonumber(ARGV[7])\n"
    "if redis.call('GET', p..':epoch') ~= ARGV[5] then "
    "return redis.error_reply('EPOCH changed') end\n"
    "local out, keep, cur = {}, 0, {}\n"
    /* Without federation every mid is this node's own, unique by
     * construction and stored once: no marker key is needed. With it,
     * a peer's message can arrive twice (two routes, a gateway taking
     * over), and must not reuse one of ours. */
    "for i = 1, n do\n"
    "local a = 7 + (i - 1) * 7\n"
    "local peer = ARGV[a + 6]\n"
    "if peer ~= '' then cur[peer] = ARGV[a + 7] end\n"
    "if (ARGV[6] == '1' or peer ~= '') and not redis.call('SET', "
    "p..':mid:'..ARGV[a + 2], '1', 'NX', 'EX', ARGV[4]) then out[i] = 0 "
    "else keep = keep + 1 end\n"
    "end\n"
    "for peer, c in pairs(cur) do "
    "redis.call('HSET', p..':fedcursor', peer, c) end\n"
    "if keep == 0 then return out end\n"
    "local seq = redis.call('INCRBY', p..':seq', keep) - keep\n"
    "local last, order, b = {}, {}, {}\n"
    /* The seq in base 36, as the byte codes of its digits, most
     * significant first: counted up by one per message rather than
     * converted each time (a division and a new string per digit). */
    "do local v = seq; repeat local r = v % 36; "
    "table.insert(b, 1, r < 10 and 48 + r or 87 + r); "
    "v = math.floor(v / 36) until v == 0 end\n"
    "local hl = ARGV[2]\n"
    /* The run being gathered for one PUBLISH: its topic and pieces; and
     * the batch's log entry: its id, then t <topic> m <run> per run. */
    "local rt, run, lg = nil, {}, {''}\n"
    "local function flush() if rt then local s = table.concat(run)\n"
    "redis.call('PUBLISH', p..':c:'..rt, s)\n"
    "lg[#lg + 1] = 't'; lg[#lg + 1] = rt; lg[#lg + 1] = 'm'; "
    "lg[#lg + 1] = s; run = {} end end\n"
    /* Lua turns a number into a string with sprintf, and Redis's Lua
     * hashes every byte of every string it makes: a message's own
     * frame is never built here. Its stream entry keeps the frame's
     * two halves as they came, and only a run's payload is joined. */
    "for i = 1, n do if not out[i] then\n"
    "local a = 7 + (i - 1) * 7\n"
    "local topic, head, tail = ARGV[a + 1], ARGV[a + 3], ARGV[a + 4]\n"
    "seq = seq + 1\n"
    "local sd = tostring(seq)\n"
    "local k = #b\n"
    "while true do local c = b[k]\n"
    "if c == 57 then b[k] = 97; break elseif c ~= 122 then b[k] = c + 1; break end\n"
    "b[k] = 48; k = k - 1\n"
    "if k == 0 then table.insert(b, 1, 49); break end end\n"
    "local prev = last[topic]\n"
    "if not prev then\n"
    "prev = redis.call('HGET', p..':last', topic) or '0'\n"
    "order[#order + 1] = topic\n"
    /* A topic enters P:last and P:topics in the same script, so only
     * its first message needs the SADD. */
    "if prev == '0' then redis.call('SADD', p..':topics', topic) end\n"
    "end\n"
    "last[topic] = sd\n"
    "redis.call('XADD', p..':t:'..topic, 'MAXLEN', '~', hl, sd..'-1', "
    "'p', prev, 'h', head, 't', tail)\n"
    "if topic ~= rt then flush(); rt = topic "
    "else run[#run + 1] = '\\0' end\n"
    "local r = #run\n"
    "run[r + 1] = sd; run[r + 2] = '\\n'; run[r + 3] = ARGV[a + 5]\n"
    "run[r + 4] = '\\n'; run[r + 5] = head; "
    "run[r + 6] = string.char(unpack(b)); run[r + 7] = tail\n"
    "out[i] = seq\n"
    "end end\n"
    "flush()\n"
    /* The log keeps the newest ARGV[3] seqs: every seq is in it. */
    "lg[1] = tostring(seq)..'-1'\n"
    "redis.call('XADD', p..':log', 'MINID', '~', "
    "math.max(seq - tonumber(ARGV[3]), 0), unpack(lg))\n"
    "local h = {}\n"
    "for _, t in ipairs(order) do h[#h + 1] = t; h[#h + 1] = last[t] end\n"
    "redis.call('HSET', p..':last', unpack(h))\n"
    "return out\n";

/* One message of a batch: whom to tell. */
struct store_op {
	cluster_store_fn cb; /* Caller's callback. */
	void *ud;	     /* Caller's data. */
};

/* Arguments of a batch at most. */
#define BATCH_ARGS (BATCH_FIXED + PER_MSG * BATCH_MAX)

/* The messages of one script call. Their arguments are written one after
 * another into one buffer, not allocated one by one (seven per message),
 * and kept until the reply for a NOSCRIPT retry. */
struct store_batch {
	cluster_t *c;		       /* Owner. */
	struct store_batch *next;      /* Next batch waiting to be sent. */
	size_t n;		       /* Messages. */
	struct store_op op[BATCH_MAX]; /* Per message. */
	int argc;		       /* Arguments, the two set when sent
					  (command, script) included. */
	size_t off[BATCH_ARGS];	       /* Where each argument starts in buf. */
	size_t argl[BATCH_ARGS];       /* Its length. */
	const char *argv[BATCH_ARGS];  /* Pointers into buf, made when sent
					  (buf may move until then). */
	char *buf;		       /* The arguments' bytes. */
	size_t len;		       /* Bytes used. */
	size_t cap;		       /* Bytes allocated. */
};

struct cluster {
	struct hub *hub;       /* Owner. */
	rlink_t *link;	       /* The Redis link. */
	char *prefix;	       /* Key prefix (owned). */
	char sha[41];	       /* SHA1 of store_script once loaded. */
	int epoch_ok;	       /* epoch read since the link came up. */
	int epoch_known;       /* epoch was read at least once. */
	int was_down;	       /* The link was down since the last catch-up. */
	int catching_up;       /* Reading the log after an outage. */
	int catch_up_seen;     /* The catch-up read a record. */
	uint64_t catch_up_at;  /* The catch-up's next read starts after. */
	unsigned catch_up_reads; /* Log reads of the catch-up. */
	struct held_rec *held; /* Live messages held while catching up. */
	size_t n_held;	       /* Count. */
	size_t cap_held;       /* Capacity. */
	size_t held_bytes;     /* Bytes held. */
	enum rlink_state st;   /* Last state reported. */
	uint64_t last_seen;    /* Highest seq received from pub/sub. */
	uint64_t epoch;	       /* Names this Redis data set (P:epoch): it
				  changes when Redis lost its data, and
				  cursors of another epoch are gaps. */
	strmap_t *probes;      /* Nonce to struct bl_job awaiting it. */
	uint64_t nonce;	       /* Next probe nonce. */
	int stopping;	       /* cluster_stop was called. */
	struct store_batch *filling; /* Gathering this pass's stores. */
	struct store_batch *full;    /* Filled batches not sent yet, oldest
					first (sent before filling). */
	struct store_batch *spare;   /* A sent batch kept for reuse. */
	cluster_stats_t s;	     /* Counters. */
};

/* ---- cursors ---- */

static char *put36(uint64_t v, char *out)
{
	char tmp[16];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdefghijklmnopqrstuvwxyz"[v % 36];
		v /= 36;
	} while (v);
	while (n)
		*out++ = tmp[--n];
	*out = 0;
	return out;
}

/* Parses canonical base 36 (no leading zero) up to the end or '-'. */
static const char *get36(const char *p, uint64_t *v)
{
	const char *start = p;

	*v = 0;
	for (; *p && *p != '-'; p++) {
		int d = *p >= '0' && *p <= '9'	 ? *p - '0'
			: *p >= 'a' && *p <= 'z' ? *p - 'a' + 10
						 : -1;

		if (d < 0 || p - start >= 12)
			return NULL;
		*v = *v * 36 + (uint64_t)d;
	}
	if (p == start || (*start == '0' && p - start > 1))
		return NULL;
	return p;
}

void cluster_cursor(const cluster_t *c, uint64_t seq, char *buf)
{
	char *p = put36(c->epoch, buf);

	*p++ = '-';
	put36(seq, p);
}

int cluster_parse_cursor(const cluster_t *c, const char *cursor, uint64_t *seq)
{
	uint64_t e, v;
	const char *p;

	if (!cursor || !(p = get36(cursor, &e)) || *p != '-' ||
	    !(p = get36(p + 1, &v)) || *p)
		return PE_BAD_CURSOR;
	/* Before the epoch is read (an instance just started, Redis just
	 * back) a cursor cannot be judged: it is not a gap. */
	if (!c->epoch_ok)
		return PE_UNAVAILABLE;
	if (e != c->epoch)
		return PE_HISTORY_GAP;
	*seq = v;
	return 0;
}

/* ---- keys and channels ---- */

static char *keyf(const cluster_t *c, const char *kind, const char *name)
{
	size_t n = strlen(c->prefix) + strlen(kind) + strlen(name) + 3;
	char *k = malloc(n);

	if (!k)
		abort();
	snprintf(k, n, "%s:%s%s%s", c->prefix, kind, *name ? ":" : "", name);
	return k;
}

/* Appends s to out with Redis glob specials escaped. */
static size_t glob_escape(char *out, const char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		if (strchr("*?[]\\", s[i]))
			out[o++] = '\\';
		out[o++] = s[i];
	}
	return o;
}

/* The Redis interests of an MQTT filter: an exact topic is one channel; a
 * pattern is a glob in which "+" and a final "#" become "*" (wider than
 * the filter: messages are matched again locally), and "a/#" also needs
 * the channel "a" (MQTT's "#" matches the parent). Calls fn for each with
 * a probe channel that the interest receives. */
typedef void (*interest_fn)(cluster_t *c, const char *name, int is_pattern,
			    const char *probe, void *ud);

static void interests(cluster_t *c, const char *filter, interest_fn fn,
		      void *ud)
{
	size_t n = strlen(filter), cap = 2 * n + strlen(c->prefix) + 16;
	char *glob = malloc(cap), *probe = malloc(cap + 16);
	size_t g, pr;
	bool is_pattern = false;

	if (!glob || !probe)
		abort();
	topic_validate_filter(filter, n, &is_pattern);
	g = (size_t)snprintf(glob, cap, "%s:c:", c->prefix);
	memcpy(probe, glob, g);
	pr = g;
	if (!is_pattern) {
		memcpy(glob + g, filter, n + 1);
		fn(c, glob, 0, glob, ud);
		goto out;
	}
	for (const char *s = filter; *s;) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);

		if (len == 1 && (*s == '+' || *s == '#')) {
			glob[g++] = '*';
			memcpy(probe + pr, "\x01probe", 6);
			pr += 6;
		} else {
			g += glob_escape(glob + g, s, len);
			memcpy(probe + pr, s, len);
			pr += len;
		}
		if (!e)
			break;
		glob[g++] = '/';
		probe[pr++] = '/';
		s = e + 1;
	}
	glob[g] = 0;
	probe[pr] = 0;
	fn(c, glob, 1, probe, ud);
	if (n >= 2 && !strcmp(filter + n - 2, "/#")) {
		/* The parent topic, as an exact channel. */
		g = (size_t)snprintf(glob, cap, "%s:c:%.*s", c->prefix,
				     (int)(n - 2), filter);
		(void)g;
		fn(c, glob, 0, glob, ud);
	}
out:
	free(glob);
	free(probe);
}

static void want_one(cluster_t *c, const char *name, int is_pattern,
		     const char *probe, void *ud)
{
	rlink_subscribe(c->link, name, is_pattern);
}

static void unwant_one(cluster_t *c, const char *name, int is_pattern,
		       const char *probe, void *ud)
{
	rlink_unsubscribe(c->link, name, is_pattern);
}

void cluster_want(cluster_t *c, const char *filter)
{
	interests(c, filter, want_one, NULL);
}

void cluster_unwant(cluster_t *c, const char *filter)
{
	interests(c, filter, unwant_one, NULL);
}

static void catch_up_start(cluster_t *c);

/* ---- the data set's epoch ---- */

static void on_epoch(rlink_t *l, redisReply *r, void *ud)
{
	cluster_t *c = ud;

	(void)l;
	if (r && r->type == REDIS_REPLY_STRING) {
		uint64_t e = strtoull(r->str, NULL, 10);

		if (c->epoch_known && e != c->epoch)
			log_warn("cluster_epoch_changed",
				 "old=%llu new=%llu note=\"Redis lost its "
				 "data: older cursors are gaps\"",
				 (unsigned long long)c->epoch,
				 (unsigned long long)e);
		if (c->epoch_known && e != c->epoch)
			c->last_seen = 0; /* Numbers restart with the data. */
		c->epoch = e;
		c->epoch_ok = 1;
		c->epoch_known = 1;
		/* Back after an outage with the same data: messages other
		 * instances stored meanwhile are in the log. */
		if (c->last_seen && c->was_down)
			catch_up_start(c);
		c->was_down = 0;
	}
}

/* Creates the epoch if the data set has none, then reads it. */
static void read_epoch(cluster_t *c)
{
	char key[256], val[32];
	uint32_t r = 0;
	const char *set[5] = {"SET", key, val, "NX", NULL};
	const char *get[2] = {"GET", key};

	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint32_t)uv_now(c->hub->loop);
	snprintf(key, sizeof key, "%s:epoch", c->prefix);
	/* Millisecond time and a random part: distinct for every data set. */
	snprintf(
	    val, sizeof val, "%llu",
	    (unsigned long long)((uint64_t)hub_now_ms() * 1000 + r % 1000));
	rlink_commandv(c->link, NULL, NULL, 4, set, NULL);
	rlink_commandv(c->link, on_epoch, c, 2, get, NULL);
}

/* ---- storing ---- */

/* Makes room for n more bytes at the end of b's buffer; returns where
 * they go. Aborts on out-of-memory, as the daemon may. */
static char *batch_grow(struct store_batch *b, size_t n)
{
	char *d;

	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 16384;
		char *p;

		while (cap - b->len < n)
			cap *= 2;
		p = realloc(b->buf, cap);
		if (!p)
			abort();
		b->buf = p;
		b->cap = cap;
	}
	d = b->buf + b->len;
	b->len += n;
	return d;
}

/* Makes the bytes from off to the end of the buffer argument i. */
static void batch_arg_at(struct store_batch *b, int i, size_t off)
{
	b->off[i] = off;
	b->argl[i] = b->len - off;
}

/* Appends the next argument: n bytes of s. */
static void batch_arg(struct store_batch *b, const char *s, size_t n)
{
	size_t off = b->len;

	memcpy(batch_grow(b, n), s, n);
	batch_arg_at(b, b->argc++, off);
}

static void batch_arg_u64(struct store_batch *b, unsigned long long v)
{
	char num[24];

	batch_arg(b, num, (size_t)snprintf(num, sizeof num, "%llu", v));
}

/* Returns an empty batch: the spare one when there is one, so that its
 * buffer (and the struct, ~12 KiB of argument slots) is not allocated and
 * grown again for every loop pass. */
static struct store_batch *batch_new(cluster_t *c)
{
	struct store_batch *b = c->spare;

	if (b) {
		c->spare = NULL;
		b->next = NULL;
		b->n = 0;
		b->argc = 0;
		b->len = 0;
		return b;
	}
	b = calloc(1, sizeof *b);
	if (!b)
		abort();
	b->c = c;
	return b;
}

static void batch_free(struct store_batch *b)
{
	cluster_t *c = b->c;

	if (!c->spare && !c->stopping) {
		c->spare = b;
		return;
	}
	free(b->buf);
	free(b);
}

static void on_stored(rlink_t *l, redisReply *r, void *ud);

/* Queues the batch as cmd (EVALSHA or EVAL) with script (its sha or its
 * text). Returns what rlink_commandv does. */
static int batch_command(struct store_batch *b, const char *cmd,
			 const char *script)
{
	b->argv[0] = cmd;
	b->argl[0] = strlen(cmd);
	b->argv[1] = script;
	b->argl[1] = strlen(script);
	for (int i = 2; i < b->argc; i++)
		b->argv[i] = b->buf + b->off[i];
	return rlink_commandv(b->c->link, on_stored, b, b->argc, b->argv,
			      b->argl);
}

/* Tells every message of the batch: rc, and seq[i] (0: a duplicate). */
static void batch_done(struct store_batch *b, int rc, const redisReply *r)
{
	cluster_t *c = b->c;

	for (size_t i = 0; i < b->n; i++) {
		uint64_t seq = rc ? 0 : (uint64_t)r->element[i]->integer;

		if (rc)
			c->s.store_errors++;
		else if (seq)
			c->s.stored++;
		else
			c->s.duplicates++;
		b->op[i].cb(c->hub, rc, seq, b->op[i].ud);
	}
	batch_free(b);
}

static void on_stored(rlink_t *l, redisReply *r, void *ud)
{
	struct store_batch *b = ud;
	cluster_t *c = b->c;
	int ok;

	(void)l;
	if (r && r->type == REDIS_REPLY_ERROR &&
	    !strncmp(r->str, "NOSCRIPT", 8)) {
		/* Redis restarted and lost its script cache: send the script
		 * itself this time (EVAL also caches it again). */
		if (!batch_command(b, "EVAL", store_script))
			return;
		r = NULL;
	}
	ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == b->n;
	for (size_t i = 0; ok && i < b->n; i++)
		ok = r->element[i] &&
		     r->element[i]->type == REDIS_REPLY_INTEGER &&
		     r->element[i]->integer >= 0;
	if (!ok && r && r->type == REDIS_REPLY_ERROR) {
		log_error("cluster_store_failed", "error=%s", log_str(r->str));
		if (strstr(r->str, "EPOCH"))
			read_epoch(c);
	} else if (!ok && r) {
		log_error("cluster_store_failed",
			  "error=\"unexpected reply of type %d\"", r->type);
	}
	batch_done(b, ok ? 0 : PE_UNAVAILABLE, r);
}

/* Sends one batch; when the link cannot take it, its messages fail. */
static void batch_send(struct store_batch *b)
{
	char num[24];
	int n = snprintf(num, sizeof num, "%zu", b->n);
	size_t off = b->len;

	memcpy(batch_grow(b, (size_t)n), num, (size_t)n);
	batch_arg_at(b, BATCH_FIXED - 1, off);
	if (batch_command(b, "EVALSHA", b->c->sha))
		batch_done(b, PE_UNAVAILABLE, NULL);
}

/* Sends what this pass gathered, oldest batch first. */
static void batches_send(cluster_t *c)
{
	struct store_batch *b = c->full, *open = c->filling;

	c->full = NULL;
	c->filling = NULL;
	while (b) {
		struct store_batch *next = b->next;

		batch_send(b);
		b = next;
	}
	if (open)
		batch_send(open);
}

static void on_flush(rlink_t *l, void *ud)
{
	(void)l;
	batches_send(ud);
}

/* Returns a NUL-terminated copy of n bytes (which need not be
 * terminated). Aborts on out-of-memory, as the daemon may. */
static char *dup_bytes(const char *p, size_t n)
{
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, p, n);
	s[n] = 0;
	return s;
}

int cluster_store(cluster_t *c, const msg_t *m, const char *peer,
		  const char *peer_cursor, cluster_store_fn cb, void *ud)
{
	struct store_batch *b = c->filling;
	char num[32], *end;
	size_t off, cut;

	if (!cluster_up(c) || c->stopping)
		return PE_UNAVAILABLE;
	if (b && (b->n == BATCH_MAX || b->len >= BATCH_BYTES)) {
		/* Full: it goes out first at the end of the pass. */
		struct store_batch **tailp = &c->full;

		while (*tailp)
			tailp = &(*tailp)->next;
		*tailp = b;
		b = c->filling = NULL;
	}
	if (!b) {
		b = c->filling = batch_new(c);
		b->argc = 2; /* Command and script: set when sent. */
		batch_arg(b, "0", 1);
		batch_arg(b, c->prefix, strlen(c->prefix));
		batch_arg_u64(b, c->hub->cfg->history_length);
		batch_arg_u64(b, LOG_LEN);
		batch_arg_u64(b, MID_TTL_S);
		batch_arg_u64(b, c->epoch);
		batch_arg(b, c->hub->cfg->fed_enabled ? "1" : "0", 1);
		b->argc++; /* The count, set when sent. */
		rlink_want_flush(c->link, on_flush, c);
	}
	/* The client frame around the cursor's seq digits, which the
	 * script writes in once it knows them. */
	end = put36(c->epoch, num);
	end[0] = '-';
	end[1] = 0;
	batch_arg(b, m->topic, strlen(m->topic));
	batch_arg(b, m->mid, strlen(m->mid));
	off = b->len;
	cut = codec_msg_split(m, num, &b->buf, &b->len, &b->cap);
	b->off[b->argc] = off;
	b->argl[b->argc++] = cut - off;
	batch_arg_at(b, b->argc++, cut);
	off = b->len;
	codec_path_put(batch_grow(b, codec_path_len((const char *const *)m->path,
						     m->n_path)),
		       (const char *const *)m->path, m->n_path);
	batch_arg_at(b, b->argc++, off);
	batch_arg(b, peer ? peer : "", peer ? strlen(peer) : 0);
	batch_arg(b, peer_cursor ? peer_cursor : "",
		  peer_cursor ? strlen(peer_cursor) : 0);
	b->op[b->n].cb = cb;
	b->op[b->n].ud = ud;
	b->n++;
	return 0;
}

/* ---- reading Redis replies ---- */

/* Returns the string of a reply element, or NULL for any other type. */
static const char *reply_str(const redisReply *r, size_t *len)
{
	if (!r ||
	    (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) ||
	    !r->str)
		return NULL;
	if (len)
		*len = r->len;
	return r->str;
}

/* The [id, [name, value, ...]] of one stream entry, or NULL when it is
 * not shaped so (with a string id). */
static const redisReply *entry_fields(const redisReply *e, const char **id)
{
	const redisReply *f;

	if (!e || e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    !(*id = reply_str(e->element[0], NULL)))
		return NULL;
	f = e->element[1];
	return f && f->type == REDIS_REPLY_ARRAY ? f : NULL;
}

int cluster_stream_walk(const redisReply *r, cluster_entry_fn fn, void *ud)
{
	int n = 0;

	if (!r || r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *f;
		cluster_entry_t en = {0};
		const char *id, *m = NULL;
		size_t mlen = 0;

		/* Anything not shaped like [id, [name, value, ...]] with
		 * string ids, names and values is skipped: a broken or
		 * hostile server must not crash the hub. */
		if (!(f = entry_fields(r->element[i], &id)))
			continue;
		en.seq = strtoull(id, NULL, 10);
		en.index = i;
		for (size_t k = 0; k + 1 < f->elements; k += 2) {
			const char *name = reply_str(f->element[k], NULL);
			size_t vlen = 0;
			const char *v = reply_str(f->element[k + 1], &vlen);

			if (!name || !v)
				continue;
			if (!strcmp(name, "h")) {
				en.head = v;
				en.hlen = vlen;
			} else if (!strcmp(name, "t")) {
				en.tail = v;
				en.tlen = vlen;
			} else if (!strcmp(name, "m")) {
				m = v;
				mlen = vlen;
			} else if (!strcmp(name, "p")) {
				en.prev = strtoull(v, NULL, 10);
			}
		}
		if (!en.head || !en.tail) {
			en.head = m;
			en.hlen = mlen;
			en.tail = NULL;
			en.tlen = 0;
		}
		if (!en.head)
			continue;
		fn(&en, ud);
		n++;
	}
	return n;
}

char *cluster_entry_json(const cluster_entry_t *e, size_t *len)
{
	char digits[16], *out, *p;
	size_t dl = e->tail ? (size_t)(put36(e->seq, digits) - digits) : 0;

	out = malloc(e->hlen + dl + e->tlen + 1);
	if (!out)
		abort();
	p = out;
	memcpy(p, e->head, e->hlen);
	p += e->hlen;
	if (e->tail) {
		memcpy(p, digits, dl);
		p += dl;
		memcpy(p, e->tail, e->tlen);
		p += e->tlen;
	}
	*p = 0;
	*len = (size_t)(p - out);
	return out;
}

/* Splits one record "<seq>\n<path JSON>\n<client JSON>". Returns 0
 * with the parts (borrowed from data), or -1 when malformed. */
static int parse_record(const char *data, size_t len, uint64_t *seq,
			const char **path, size_t *plen, const char **json,
			size_t *jlen)
{
	const char *nl1 = memchr(data, '\n', len), *nl2;
	char num[24];
	size_t dl;

	if (!nl1)
		return -1;
	nl2 = memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - data));
	dl = (size_t)(nl1 - data);
	if (!nl2 || !dl || dl >= sizeof num)
		return -1;
	for (size_t i = 0; i < dl; i++)
		if (data[i] < '0' || data[i] > '9')
			return -1;
	memcpy(num, data, dl);
	num[dl] = 0;
	*seq = strtoull(num, NULL, 10);
	*path = nl1 + 1;
	*plen = (size_t)(nl2 - nl1 - 1);
	*json = nl2 + 1;
	*jlen = len - (size_t)(nl2 + 1 - data);
	return 0;
}

void cluster_each_record(const char *data, size_t len, cluster_record_fn fn,
			 void *ud)
{
	while (len) {
		const char *nul = memchr(data, 0, len);
		size_t rl = nul ? (size_t)(nul - data) : len, pl, jl;
		const char *path, *json;
		uint64_t seq;

		if (!parse_record(data, rl, &seq, &path, &pl, &json, &jl))
			fn(seq, path, pl, json, jl, ud);
		if (!nul)
			break;
		data += rl + 1;
		len -= rl + 1;
	}
}

/* The topic of a log entry's run being walked, for its records. */
struct log_run {
	const char *topic; /* Topic (borrowed from the reply). */
	cluster_log_fn fn; /* Caller's callback. */
	void *ud;	   /* Caller's data. */
};

static void log_record(uint64_t seq, const char *path, size_t plen,
		       const char *json, size_t jlen, void *ud)
{
	struct log_run *lr = ud;

	lr->fn(lr->topic, seq, path, plen, json, jlen, lr->ud);
}

int cluster_log_walk(const redisReply *r, cluster_log_fn fn, void *ud)
{
	struct log_run lr = {NULL, fn, ud};
	int n = 0;

	if (!r || r->type != REDIS_REPLY_ARRAY)
		return -1;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *f;
		const char *id;

		if (!(f = entry_fields(r->element[i], &id)))
			continue;
		/* t <topic> m <records>, repeated: a run without its topic
		 * just before it is skipped. */
		lr.topic = NULL;
		for (size_t k = 0; k + 1 < f->elements; k += 2) {
			const char *name = reply_str(f->element[k], NULL);
			size_t vlen = 0;
			const char *v = reply_str(f->element[k + 1], &vlen);

			if (!name || !v) {
				lr.topic = NULL;
			} else if (!strcmp(name, "t")) {
				lr.topic = v;
			} else if (!strcmp(name, "m") && lr.topic) {
				cluster_each_record(v, vlen, log_record, &lr);
				lr.topic = NULL;
			} else {
				lr.topic = NULL;
			}
		}
		n++;
	}
	return n;
}

/* ---- backlog ---- */

enum bl_stage { BL_PROBE, BL_TOPICS, BL_READ, BL_DONE };

/* One backlog read in progress. */
struct bl_job {
	cluster_t *c;	       /* Owner. */
	char *filter;	       /* Topic or pattern (owned). */
	int since_mode;	       /* since (1) or last (0). */
	uint64_t since;	       /* Cursor seq. */
	size_t last;	       /* How many, in last mode. */
	cluster_backlog_fn cb; /* Caller's callback. */
	void *ud;	       /* Caller's data. */
	enum bl_stage stage;   /* Where it is. */
	unsigned probes_due;   /* Probe messages not yet seen. */
	char **nonces;	       /* Probe nonces (owned). */
	unsigned n_nonces;     /* Count. */
	uv_timer_t timer;      /* Probe retries and give-up. */
	uint64_t started;      /* uv_now at the start. */
	unsigned replies_due;  /* Reads not yet answered. */
	int rc;		       /* First error. */
	cluster_item_t *items; /* Collected messages. */
	size_t n;	       /* Count. */
	size_t cap;	       /* Capacity. */
};

static void job_timer_closed(uv_handle_t *h)
{
	struct bl_job *j = h->data;

	for (size_t i = 0; i < j->n; i++) {
		frame_unref(j->items[i].frame);
		free(j->items[i].topic);
	}
	free(j->items);
	free(j->filter);
	free(j);
}

static void job_finish(struct bl_job *j, int rc)
{
	cluster_t *c = j->c;

	if (j->stage == BL_DONE)
		return;
	j->stage = BL_DONE;
	for (unsigned i = 0; i < j->n_nonces; i++) {
		if (strmap_get(c->probes, j->nonces[i]) == j)
			strmap_del(c->probes, j->nonces[i]);
		free(j->nonces[i]);
	}
	free(j->nonces);
	j->nonces = NULL;
	j->n_nonces = 0;
	uv_timer_stop(&j->timer);
	j->cb(c->hub, rc, rc ? NULL : j->items, rc ? 0 : j->n, j->ud);
	uv_close((uv_handle_t *)&j->timer, job_timer_closed);
}

static int item_cmp(const void *a, const void *b)
{
	const cluster_item_t *x = a, *y = b;

	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All reads are in: order by seq, keep the last N in last mode. */
static void job_complete(struct bl_job *j)
{
	if (j->rc) {
		job_finish(j, j->rc);
		return;
	}
	if (j->n)
		qsort(j->items, j->n, sizeof *j->items, item_cmp);
	if (!j->since_mode && j->n > j->last) {
		size_t drop = j->n - j->last;

		for (size_t i = 0; i < drop; i++) {
			frame_unref(j->items[i].frame);
			free(j->items[i].topic);
		}
		memmove(j->items, j->items + drop, j->last * sizeof *j->items);
		j->n = j->last;
	}
	job_finish(j, 0);
}

static void job_add(struct bl_job *j, const char *topic, uint64_t seq,
		    const char *json, size_t len)
{
	if (j->n == j->cap) {
		size_t ncap = j->cap ? j->cap * 2 : 64;
		cluster_item_t *n = realloc(j->items, ncap * sizeof *n);

		if (!n)
			abort();
		j->items = n;
		j->cap = ncap;
	}
	j->items[j->n].seq = seq;
	j->items[j->n].frame = frame_new_text(json, len);
	j->items[j->n].topic = strdup(topic);
	if (!j->items[j->n].topic)
		abort();
	j->n++;
}

/* Context of one stream read: the job and the topic read. */
struct read_ctx {
	struct bl_job *j; /* Job. */
	char *topic;	  /* Topic (owned). */
};

/* One entry of a backlog read. */
static void read_entry(const cluster_entry_t *e, void *ud)
{
	struct read_ctx *rc = ud;
	struct bl_job *j = rc->j;
	size_t len;
	char *json;

	/* The first message after the cursor must follow it directly in
	 * its topic, or some were trimmed. */
	if (j->since_mode && e->index == 0 && e->prev > j->since && !j->rc)
		j->rc = PE_HISTORY_GAP;
	json = cluster_entry_json(e, &len);
	job_add(j, rc->topic, e->seq, json, len);
	free(json);
}

static void on_read(rlink_t *l, redisReply *r, void *ud)
{
	struct read_ctx *rc = ud;
	struct bl_job *j = rc->j;

	(void)l;
	if (cluster_stream_walk(r, read_entry, rc) < 0 && !j->rc)
		j->rc = PE_UNAVAILABLE;
	free(rc->topic);
	free(rc);
	if (--j->replies_due == 0 && j->stage == BL_READ)
		job_complete(j);
}

static void read_topic(struct bl_job *j, const char *topic)
{
	cluster_t *c = j->c;
	struct read_ctx *rc = malloc(sizeof *rc);
	char *key = keyf(c, "t", topic), from[48], count[32];
	const char *argv[6];

	if (!rc)
		abort();
	rc->j = j;
	rc->topic = strdup(topic);
	if (!rc->topic)
		abort();
	if (j->since_mode) {
		/* Everything after the cursor: streams are trimmed only
		 * approximately (MAXLEN ~), so a COUNT of history.length
		 * could cut off the newest messages without any gap. */
		snprintf(from, sizeof from, "(%llu-1",
			 (unsigned long long)j->since);
		snprintf(count, sizeof count, "%zu",
			 2 * c->hub->cfg->history_length + 1000);
		argv[0] = "XRANGE";
		argv[2] = from;
		argv[3] = "+";
	} else {
		snprintf(count, sizeof count, "%zu", j->last);
		argv[0] = "XREVRANGE";
		argv[2] = "+";
		argv[3] = "-";
	}
	argv[1] = key;
	argv[4] = "COUNT";
	argv[5] = count;
	if (rlink_commandv(c->link, on_read, rc, 6, argv, NULL)) {
		free(rc->topic);
		free(rc);
		j->rc = PE_UNAVAILABLE;
	} else {
		j->replies_due++;
	}
	free(key);
}

static void on_topics(rlink_t *l, redisReply *r, void *ud)
{
	struct bl_job *j = ud;

	(void)l;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		job_finish(j, PE_UNAVAILABLE);
		return;
	}
	j->stage = BL_READ;
	j->replies_due = 1; /* Held until every read is queued. */
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING &&
		    topic_match(j->filter, r->element[i]->str))
			read_topic(j, r->element[i]->str);
	if (--j->replies_due == 0)
		job_complete(j);
}

/* The subscriptions are live: read the history. */
static void job_read(struct bl_job *j)
{
	cluster_t *c = j->c;
	bool pattern = false;

	uv_timer_stop(&j->timer);
	if (!j->since_mode && !j->last) {
		job_finish(j, 0); /* Only the barrier was wanted. */
		return;
	}
	topic_validate_filter(j->filter, strlen(j->filter), &pattern);
	if (!pattern) {
		j->stage = BL_READ;
		j->replies_due = 1;
		read_topic(j, j->filter);
		if (--j->replies_due == 0)
			job_complete(j);
		return;
	}
	j->stage = BL_TOPICS;
	char *k = keyf(c, "topics", "");
	const char *argv[2] = {"SMEMBERS", k};

	if (rlink_commandv(c->link, on_topics, j, 2, argv, NULL))
		job_finish(j, PE_UNAVAILABLE);
	free(k);
}

/* Publishes a probe on a channel the interest receives: seeing it come
 * back proves the subscription is live in Redis. */
static void send_probe(cluster_t *c, const char *name, int is_pattern,
		       const char *probe, void *ud)
{
	struct bl_job *j = ud;
	char nonce[64];
	const char *argv[3];

	snprintf(nonce, sizeof nonce, "probe:%llx",
		 (unsigned long long)c->nonce++);
	argv[0] = "PUBLISH";
	argv[1] = probe;
	argv[2] = nonce;
	if (rlink_commandv(c->link, NULL, NULL, 3, argv, NULL))
		return;
	char **nn = realloc(j->nonces, (j->n_nonces + 1) * sizeof *nn);

	if (!nn)
		abort();
	j->nonces = nn;
	j->nonces[j->n_nonces] = strdup(nonce);
	if (!j->nonces[j->n_nonces])
		abort();
	strmap_put(c->probes, nonce, j, NULL);
	j->n_nonces++;
	j->probes_due++;
}

static void probe_all(struct bl_job *j)
{
	cluster_t *c = j->c;

	/* Forget the probes of an earlier round: only a full round counts. */
	for (unsigned i = 0; i < j->n_nonces; i++) {
		if (strmap_get(c->probes, j->nonces[i]) == j)
			strmap_del(c->probes, j->nonces[i]);
		free(j->nonces[i]);
	}
	j->n_nonces = 0;
	j->probes_due = 0;
	interests(c, j->filter, send_probe, j);
}

static void on_probe_timer(uv_timer_t *t)
{
	struct bl_job *j = t->data;

	if (j->stage != BL_PROBE)
		return;
	if (uv_now(j->c->hub->loop) - j->started > PROBE_GIVE_UP_MS) {
		job_finish(j, PE_UNAVAILABLE);
		return;
	}
	probe_all(j);
}

int cluster_backlog(cluster_t *c, const char *filter, int barrier,
		    int since_mode, uint64_t since, size_t last,
		    cluster_backlog_fn cb, void *ud)
{
	struct bl_job *j;

	if (!cluster_up(c))
		return PE_UNAVAILABLE;
	j = calloc(1, sizeof *j);
	if (!j)
		abort();
	j->c = c;
	j->filter = strdup(filter);
	if (!j->filter)
		abort();
	j->since_mode = since_mode;
	j->since = since;
	j->last = last;
	j->cb = cb;
	j->ud = ud;
	j->stage = BL_PROBE;
	j->started = uv_now(c->hub->loop);
	uv_timer_init(c->hub->loop, &j->timer);
	j->timer.data = j;
	c->s.backlogs++;
	if (!barrier) {
		job_read(j);
		return 0;
	}
	probe_all(j);
	uv_timer_start(&j->timer, on_probe_timer, PROBE_RETRY_MS,
		       PROBE_RETRY_MS);
	return 0;
}

/* Rebuilds a message from its stored record: the client frame's JSON and
 * the path (which already ends with this node). Used only where
 * federation needs the fields. Returns a new message, or NULL (logged)
 * for a record that does not parse. */
msg_t *cluster_record_msg(const char *node, uint64_t seq, const char *path,
			  size_t plen, const char *json, size_t jlen)
{
	json_error_t jerr;
	json_t *j = json_loadb(json, jlen, 0, &jerr);
	json_t *pj = json_loadb(path, plen, 0, &jerr), *v;
	const char **nodes = NULL;
	msg_t *m = NULL;
	size_t n = 0, i, blen;
	char *body;

	if (!json_is_object(j) || !json_is_array(pj) ||
	    !json_is_string(json_object_get(j, "topic")) ||
	    !json_is_string(json_object_get(j, "mid")) ||
	    !json_is_string(json_object_get(j, "origin")) ||
	    !json_is_string(json_object_get(j, "from")) ||
	    !json_is_integer(json_object_get(j, "ts")) ||
	    !json_object_get(j, "body")) {
		log_error("cluster_bad_record", "seq=%llu",
			  (unsigned long long)seq);
		goto out;
	}
	body = codec_dump_body(json_object_get(j, "body"), &blen);
	if (!body)
		abort();
	m = msg_new(json_string_value(json_object_get(j, "topic")),
		    json_string_value(json_object_get(j, "mid")),
		    json_string_value(json_object_get(j, "origin")),
		    json_string_value(json_object_get(j, "from")),
		    json_integer_value(json_object_get(j, "ts")), body, blen);
	free(body);
	m->seq = seq;
	nodes = calloc(json_array_size(pj) + 1, sizeof *nodes);
	if (!nodes)
		abort();
	json_array_foreach(pj, i, v)
	{
		if (json_is_string(v))
			nodes[n++] = json_string_value(v);
	}
	if (n)
		msg_set_path(m, nodes, n - 1, nodes[n - 1]);
	else
		msg_set_path(m, NULL, 0, node);
	free(nodes);
out:
	json_decref(j);
	json_decref(pj);
	return m;
}

/* ---- federation support ---- */

/* One replay read. */
struct replay_op {
	cluster_t *c;	      /* Owner. */
	uint64_t after;	      /* Asked for messages after this seq. */
	cluster_replay_fn cb; /* Caller's callback. */
	void *ud;	      /* Caller's data. */
};

/* What a replay read collects. */
struct replay_acc {
	struct replay_op *op; /* The read. */
	msg_t **v;	      /* Messages (references). */
	size_t n;	      /* Count. */
	size_t cap;	      /* Capacity. */
	int seen;	      /* A record was seen. */
	int gap;	      /* Older entries were trimmed. */
};

static void replay_record(const char *topic, uint64_t seq, const char *path,
			  size_t plen, const char *json, size_t jlen, void *ud)
{
	struct replay_acc *a = ud;
	msg_t *m;

	(void)topic;
	/* Every stored seq is in the log: a jump means older entries were
	 * trimmed. The first entry can begin before the asked seq. */
	if (!a->seen && seq > a->op->after + 1)
		a->gap = 1;
	a->seen = 1;
	if (seq <= a->op->after)
		return;
	m = cluster_record_msg(a->op->c->hub->cfg->node, seq, path, plen, json,
			       jlen);
	if (m)
		a->v = msg_array_push(a->v, &a->n, &a->cap, m);
}

static void on_replay(rlink_t *l, redisReply *r, void *ud)
{
	struct replay_op *op = ud;
	cluster_t *c = op->c;
	struct replay_acc a = {.op = op};

	(void)l;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		op->cb(c->hub, PE_UNAVAILABLE, NULL, 0, 0, op->ud);
		free(op);
		return;
	}
	cluster_log_walk(r, replay_record, &a);
	op->cb(c->hub, 0, a.v, a.n, a.gap, op->ud);
	for (size_t i = 0; i < a.n; i++)
		msg_unref(a.v[i]);
	free(a.v);
	free(op);
}

/* Log entries to read for about max messages: an entry is a stored
 * batch, up to BATCH_MAX messages and about BATCH_BYTES, so a read's
 * size stays near what max messages would take. */
static size_t log_entries(size_t max)
{
	return max > BATCH_MAX ? (max + BATCH_MAX - 1) / BATCH_MAX : 1;
}

int cluster_replay(cluster_t *c, uint64_t after, size_t max,
		   cluster_replay_fn cb, void *ud)
{
	struct replay_op *op;
	char *key = keyf(c, "log", ""), from[48], count[32];
	const char *argv[6] = {"XRANGE", key, from, "+", "COUNT", count};
	int rc;

	if (!cluster_up(c)) {
		free(key);
		return PE_UNAVAILABLE;
	}
	op = malloc(sizeof *op);
	if (!op)
		abort();
	op->c = c;
	op->after = after;
	op->cb = cb;
	op->ud = ud;
	snprintf(from, sizeof from, "(%llu-1", (unsigned long long)after);
	snprintf(count, sizeof count, "%zu", log_entries(max));
	rc = rlink_commandv(c->link, on_replay, op, 6, argv, NULL);
	free(key);
	if (rc) {
		free(op);
		return PE_UNAVAILABLE;
	}
	return 0;
}

/* Takes the federation gateway lock for this instance, or renews it. */
static const char lock_script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) "
    "return 1 end\n"
    "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
    "return 1 end\n"
    "return 0\n";

/* A lock or cursor request in flight. */
struct flag_op {
	cluster_t *c;		/* Owner. */
	cluster_flag_fn cb;	/* Lock: caller's callback. */
	cluster_cursors_fn ccb; /* Cursors: caller's callback. */
	void *ud;		/* Caller's data. */
};

static void on_lock(rlink_t *l, redisReply *r, void *ud)
{
	struct flag_op *op = ud;

	(void)l;
	op->cb(op->c->hub,
	       r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, op->ud);
	free(op);
}

/* Sends a lock or cursor request; exactly one of cb and ccb is set. */
static int flag_request(cluster_t *c, rlink_reply_fn fn, cluster_flag_fn cb,
			cluster_cursors_fn ccb, void *ud, int argc,
			const char **argv)
{
	struct flag_op *op;

	if (!cluster_up(c))
		return PE_UNAVAILABLE;
	op = calloc(1, sizeof *op);
	if (!op)
		abort();
	op->c = c;
	op->cb = cb;
	op->ccb = ccb;
	op->ud = ud;
	if (rlink_commandv(c->link, fn, op, argc, argv, NULL)) {
		free(op);
		return PE_UNAVAILABLE;
	}
	return 0;
}

int cluster_gateway_lock(cluster_t *c, const char *me, unsigned ttl_ms,
			 cluster_flag_fn cb, void *ud)
{
	char *key = keyf(c, "fedlock", ""), ttl[16];
	const char *argv[6] = {"EVAL", lock_script, "1", key, me, ttl};
	int rc;

	snprintf(ttl, sizeof ttl, "%u", ttl_ms);
	rc = flag_request(c, on_lock, cb, NULL, ud, 6, argv);
	free(key);
	return rc;
}

static void on_cursors(rlink_t *l, redisReply *r, void *ud)
{
	struct flag_op *op = ud;
	const char **kv;
	size_t n = 0;

	(void)l;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		op->ccb(op->c->hub, PE_UNAVAILABLE, NULL, 0, op->ud);
		free(op);
		return;
	}
	kv = calloc(r->elements + 1, sizeof *kv);
	if (!kv)
		abort();
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		if (r->element[i]->type != REDIS_REPLY_STRING ||
		    r->element[i + 1]->type != REDIS_REPLY_STRING)
			continue;
		kv[n++] = r->element[i]->str;
		kv[n++] = r->element[i + 1]->str;
	}
	op->ccb(op->c->hub, 0, kv, n / 2, op->ud);
	free(kv);
	free(op);
}

int cluster_peer_cursors(cluster_t *c, cluster_cursors_fn cb, void *ud)
{
	char *key = keyf(c, "fedcursor", "");
	const char *argv[2] = {"HGETALL", key};
	int rc = flag_request(c, on_cursors, NULL, cb, ud, 2, argv);

	free(key);
	return rc;
}

/* ---- delivery, and catching up after an outage ---- */

/* Delivers one stored message to this instance's sessions (and to peers
 * when this instance is the federation gateway). */
static void deliver_record(cluster_t *c, uint64_t seq, const char *topic,
			   const char *path, size_t plen, const char *json,
			   size_t jlen)
{
	frame_t *f;

	/* One connection receives in Redis's order: anything not newer is
	 * the second copy of a channel + pattern match (or already
	 * delivered by a catch-up). */
	if (seq <= c->last_seen) {
		c->s.redelivered++;
		return;
	}
	c->last_seen = seq;
	f = frame_new_text(json, jlen);
	hub_deliver(c->hub, topic, strmap_hash(topic), seq, f);
	frame_unref(f);
	if (c->hub->fed && fed_wants_live(c->hub->fed)) {
		msg_t *m = cluster_record_msg(c->hub->cfg->node, seq, path,
					      plen, json, jlen);

		if (m) {
			fed_forward(c->hub->fed, m);
			msg_unref(m);
		}
	}
}

/* A live message held while catching up. */
struct held_rec {
	uint64_t seq; /* Its seq. */
	char *topic;  /* Topic (owned). */
	char *path;   /* Path JSON (owned). */
	size_t plen;  /* Its length. */
	char *json;   /* Client frame JSON (owned). */
	size_t jlen;  /* Its length. */
};

static void held_free(cluster_t *c)
{
	for (size_t i = 0; i < c->n_held; i++) {
		free(c->held[i].topic);
		free(c->held[i].path);
		free(c->held[i].json);
	}
	free(c->held);
	c->held = NULL;
	c->n_held = c->cap_held = 0;
	c->held_bytes = 0;
}

/* Ends a catch-up: the live messages held meanwhile are delivered in
 * order, then forgotten. */
static void held_release(cluster_t *c)
{
	c->catching_up = 0;
	for (size_t i = 0; i < c->n_held; i++)
		deliver_record(c, c->held[i].seq, c->held[i].topic,
			       c->held[i].path, c->held[i].plen,
			       c->held[i].json, c->held[i].jlen);
	held_free(c);
}

static void catch_up_hold(cluster_t *c, uint64_t seq, const char *topic,
			  const char *path, size_t plen, const char *json,
			  size_t jlen)
{
	if (c->held_bytes + jlen > CATCH_UP_HOLD_BYTES) {
		/* Too much live traffic to hold: stop catching up and go on
		 * live; what the log read did not reach is lost here. */
		log_error("cluster_catchup_abandoned",
			  "held_bytes=%zu note=\"sessions may miss messages "
			  "stored during the outage\"",
			  c->held_bytes);
		held_release(c);
		deliver_record(c, seq, topic, path, plen, json, jlen);
		return;
	}
	if (c->n_held == c->cap_held) {
		size_t ncap = c->cap_held ? c->cap_held * 2 : 64;
		struct held_rec *n = realloc(c->held, ncap * sizeof *n);

		if (!n)
			abort();
		c->held = n;
		c->cap_held = ncap;
	}
	c->held[c->n_held].seq = seq;
	c->held[c->n_held].topic = dup_bytes(topic, strlen(topic));
	c->held[c->n_held].path = dup_bytes(path, plen);
	c->held[c->n_held].plen = plen;
	c->held[c->n_held].json = dup_bytes(json, jlen);
	c->held[c->n_held].jlen = jlen;
	c->held_bytes += jlen + plen;
	c->n_held++;
}

static void catch_up_read(cluster_t *c);

static void catch_up_record(const char *topic, uint64_t seq, const char *path,
			    size_t plen, const char *json, size_t jlen,
			    void *ud)
{
	cluster_t *c = ud;

	/* The first entry can begin before what this instance saw. */
	if (seq <= c->last_seen)
		return;
	if (!c->catch_up_seen && seq > c->last_seen + 1)
		log_warn("cluster_catchup_gap",
			 "from=%llu to=%llu note=\"the log was trimmed past "
			 "what this instance had\"",
			 (unsigned long long)c->last_seen + 1,
			 (unsigned long long)seq - 1);
	c->catch_up_seen = 1;
	deliver_record(c, seq, topic, path, plen, json, jlen);
}

static void on_catch_up(rlink_t *l, redisReply *r, void *ud)
{
	cluster_t *c = ud;
	const char *id;

	(void)l;
	if (!c->catching_up)
		return;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		/* The link went down again: the next UP starts over. */
		c->catching_up = 0;
		c->was_down = 1;
		held_free(c);
		return;
	}
	cluster_log_walk(r, catch_up_record, c);
	/* The next read starts after the last entry, even when none of its
	 * records was delivered (malformed): it must not read it again. */
	c->catch_up_at = c->last_seen;
	if (r->elements &&
	    entry_fields(r->element[r->elements - 1], &id)) {
		uint64_t last = strtoull(id, NULL, 10);

		if (last > c->catch_up_at)
			c->catch_up_at = last;
	}
	if (r->elements == log_entries(CATCH_UP_BATCH)) {
		catch_up_read(c);
		return;
	}
	/* Caught up: what was held and is newer follows, in order. */
	held_release(c);
	log_info("cluster_caught_up", "last_seq=%llu reads=%u",
		 (unsigned long long)c->last_seen, c->catch_up_reads);
}

static void catch_up_read(cluster_t *c)
{
	char *key = keyf(c, "log", ""), from[48], count[16];
	const char *argv[6] = {"XRANGE", key, from, "+", "COUNT", count};

	snprintf(from, sizeof from, "(%llu-1",
		 (unsigned long long)c->catch_up_at);
	snprintf(count, sizeof count, "%zu", log_entries(CATCH_UP_BATCH));
	c->catch_up_reads++;
	if (rlink_commandv(c->link, on_catch_up, c, 6, argv, NULL)) {
		c->catching_up = 0;
		c->was_down = 1;
		held_free(c);
	}
	free(key);
}

/* Reads, from the node-wide log, what was stored while this instance's
 * link was down, holding live messages back until it has. */
static void catch_up_start(cluster_t *c)
{
	log_info("cluster_catchup", "after=%llu",
		 (unsigned long long)c->last_seen);
	c->catching_up = 1;
	c->catch_up_seen = 0;
	c->catch_up_at = c->last_seen;
	c->catch_up_reads = 0;
	catch_up_read(c);
}

/* ---- pub/sub and link state ---- */

/* Where a pub/sub message's records go. */
struct live_record {
	cluster_t *c;	   /* The receiving instance. */
	const char *topic; /* The topic its channel names. */
};

static void on_live_record(uint64_t seq, const char *path, size_t plen,
			   const char *json, size_t jlen, void *ud)
{
	struct live_record *lr = ud;

	lr->c->s.received++;
	if (lr->c->catching_up)
		catch_up_hold(lr->c, seq, lr->topic, path, plen, json, jlen);
	else
		deliver_record(lr->c, seq, lr->topic, path, plen, json, jlen);
}

static void on_message(rlink_t *l, const char *channel, const char *pattern,
		       const char *data, size_t len, void *ud)
{
	cluster_t *c = ud;
	size_t plen = strlen(c->prefix);
	struct live_record lr;

	(void)l;
	(void)pattern;
	if (len > 6 && !memcmp(data, "probe:", 6)) {
		char nonce[64];
		struct bl_job *j;

		snprintf(nonce, sizeof nonce, "%.*s",
			 (int)(len < 63 ? len : 63), data);
		j = strmap_get(c->probes, nonce);
		if (j && j->stage == BL_PROBE) {
			strmap_del(c->probes, nonce);
			if (--j->probes_due == 0)
				job_read(j);
		}
		return;
	}
	if (strncmp(channel, c->prefix, plen) ||
	    strncmp(channel + plen, ":c:", 3))
		return;
	lr.c = c;
	lr.topic = channel + plen + 3;
	cluster_each_record(data, len, on_live_record, &lr);
}

static void on_script(rlink_t *l, redisReply *r, void *ud)
{
	cluster_t *c = ud;

	(void)l;
	if (r && r->type == REDIS_REPLY_STRING && r->len == 40) {
		memcpy(c->sha, r->str, 40);
		c->sha[40] = 0;
		log_info("cluster_ready", "script=%s", c->sha);
	} else {
		log_error("cluster_script_failed", "error=%s",
			  log_str(r && r->type == REDIS_REPLY_ERROR
				      ? r->str
				      : "no reply"));
	}
}

static void on_state(rlink_t *l, enum rlink_state s, void *ud)
{
	cluster_t *c = ud;

	c->st = s;
	if (s == RLINK_UP) {
		const char *argv[3] = {"SCRIPT", "LOAD", store_script};

		c->epoch_ok = 0;
		read_epoch(c);
		rlink_commandv(l, on_script, c, 3, argv, NULL);
	} else if (s == RLINK_DOWN) {
		c->s.outages++;
		c->was_down = 1;
		c->catching_up = 0;
		held_free(c);
		log_warn("cluster_down",
			 "error=%s note=\"publishes are refused until Redis "
			 "is back\"",
			 log_str(rlink_last_error(l)));
	}
}

cluster_t *cluster_new(struct hub *h)
{
	cluster_t *c = calloc(1, sizeof *c);

	if (!c)
		abort();
	c->hub = h;
	c->prefix = strdup(h->cfg->redis_prefix);
	if (!c->prefix)
		abort();
	c->probes = strmap_new();
	c->st = RLINK_CONNECTING;
	c->link = rlink_new(h->loop, h->cfg->redis_host, h->cfg->redis_port,
			    NULL, on_state, on_message, c);
	return c;
}

static void on_link_closed(void *ud)
{
	cluster_t *c = ud;

	strmap_free(c->probes);
	held_free(c);
	if (c->spare) {
		free(c->spare->buf);
		free(c->spare);
	}
	free(c->prefix);
	free(c);
}

void cluster_stop(cluster_t *c)
{
	size_t it = 0;
	const char *k;
	void *v;

	if (c->stopping)
		return;
	c->stopping = 1;
	c->st = RLINK_DOWN;
	/* Stores gathered this pass go out now; rlink_close fails whatever
	 * has no reply yet. */
	batches_send(c);
	/* Backlogs still probing fail now (reads fail via rlink_close). */
	while (strmap_next(c->probes, &it, &k, &v)) {
		job_finish(v, PE_UNAVAILABLE);
		it = 0;
	}
	rlink_close(c->link, on_link_closed, c);
}

int cluster_up(const cluster_t *c)
{
	return c->st == RLINK_UP && c->sha[0] && c->epoch_ok;
}

const char *cluster_state(const cluster_t *c)
{
	if (c->st == RLINK_UP && !cluster_up(c))
		return "connecting";
	return rlink_state_name(c->st);
}

void cluster_stats(const cluster_t *c, cluster_stats_t *out)
{
	struct rlink_stats rs;

	*out = c->s;
	rlink_stats(c->link, &rs);
	out->commands = rs.commands;
	out->writes = rs.writes;
	out->pending = rs.pending;
}

uint64_t cluster_last_seq(const cluster_t *c)
{
	return c->last_seen;
}
