/* test_rlink.c: tests of the Redis link against a real redis-server that
 * the test starts on a free loopback port (and kills, and restarts): PING,
 * pipelining, pub/sub, failure and recovery, timeouts, close. With --bench
 * [WINDOW] it measures pipelined PUBLISH/s and our CPU per PUBLISH
 * instead, against hiredis's stock libuv adapter too. Every wait is bounded by
 * a uv timer. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "err.h"
#include "log.h"
#include "rlink.h"
#include "tap.h"

#define HOST "127.0.0.1"

static uv_loop_t *loop;
static int port;
static pid_t redis_pid;
static char tmpdir[] = "/tmp/test_rlink.XXXXXX";
static char logpath[128];

/* ---- redis-server ---- */

/* Returns a loopback port that was free a moment ago. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), p;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
	    getsockname(fd, (struct sockaddr *)&a, &len)) {
		perror("free_port");
		exit(1);
	}
	p = ntohs(a.sin_port);
	close(fd);
	return p;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Answers PING with a blocking connection: the readiness probe. */
static int redis_ready(void)
{
	struct timeval tv = {0, 200000};
	redisContext *c = redisConnectWithTimeout(HOST, port, tv);
	redisReply *r;
	int ok = 0;

	if (c && !c->err) {
		r = redisCommand(c, "PING");
		ok = r && r->type == REDIS_REPLY_STATUS &&
		     !strcmp(r->str, "PONG");
		freeReplyObject(r);
	}
	redisFree(c);
	return ok;
}

static void redis_dump_log(void)
{
	char line[512];
	FILE *f = fopen(logpath, "r");

	if (!f)
		return;
	fprintf(stderr, "--- %s ---\n", logpath);
	while (fgets(line, sizeof line, f))
		fputs(line, stderr);
	fclose(f);
}

/* Starts redis-server on port and waits until it answers (up to 5 s). */
static void redis_start(void)
{
	char portstr[16];
	int status;

	snprintf(portstr, sizeof portstr, "%d", port);
	redis_pid = fork();
	if (redis_pid < 0) {
		perror("fork");
		exit(1);
	}
	if (redis_pid == 0) {
		/* Dies with us, whatever happens to the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("redis-server", "redis-server", "--port", portstr,
		       "--bind", HOST, "--save", "", "--appendonly", "no",
		       "--dir", tmpdir, "--logfile", logpath, "--daemonize",
		       "no", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		if (redis_ready())
			return;
		if (waitpid(redis_pid, &status, WNOHANG) == redis_pid) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
				fputs("redis-server not found\n", stderr);
			else
				fputs("redis-server exited\n", stderr);
			redis_pid = 0;
			redis_dump_log();
			exit(1);
		}
		sleep_ms(20);
	}
	fprintf(stderr, "redis-server not ready on port %d\n", port);
	redis_dump_log();
	kill(redis_pid, SIGKILL);
	exit(1);
}

static void redis_kill(void)
{
	if (redis_pid <= 0)
		return;
	kill(redis_pid, SIGKILL);
	waitpid(redis_pid, NULL, 0);
	redis_pid = 0;
}

static void cleanup_at_exit(void)
{
	redis_kill();
	unlink(logpath);
	rmdir(tmpdir);
}

/* ---- bounded waits ---- */

static uv_timer_t deadline;
static int timed_out;

static void on_deadline(uv_timer_t *t)
{
	timed_out = 1;
}

/* Runs the loop until cond holds or ms have passed. */
#define WAIT(cond, ms)                                                         \
	do {                                                                   \
		timed_out = 0;                                                 \
		uv_timer_start(&deadline, on_deadline, (ms), 0);               \
		while (!(cond) && !timed_out)                                  \
			uv_run(loop, UV_RUN_ONCE);                             \
		uv_timer_stop(&deadline);                                      \
	} while (0)

/* Runs the loop for ms. */
#define SPIN(ms) WAIT(0, ms)

/* ---- callbacks ---- */

/* What the link told us, for the checks. */
static struct {
	enum rlink_state states[256]; /* on_state calls, in order. */
	int nstates;		      /* Entries in states. */
	int downs;		      /* DOWN notifications. */
	int msgs;		      /* on_message calls. */
	char channel[64];	      /* Last message's channel. */
	char pattern[64];	      /* Its pattern, "" for none. */
	char data[64];		      /* Its payload (truncated). */
	size_t len;		      /* Its full length. */
	int closed;		      /* rlink_close's done calls. */
} T;

static void on_state(rlink_t *l, enum rlink_state s, void *ud)
{
	if (T.nstates < 256)
		T.states[T.nstates++] = s;
	if (s == RLINK_DOWN)
		T.downs++;
}

static void on_message(rlink_t *l, const char *channel, const char *pattern,
		       const char *data, size_t len, void *ud)
{
	T.msgs++;
	snprintf(T.channel, sizeof T.channel, "%s", channel);
	snprintf(T.pattern, sizeof T.pattern, "%s", pattern ? pattern : "");
	memcpy(T.data, data, len < sizeof T.data ? len : sizeof T.data);
	T.len = len;
}

static void on_closed(void *ud)
{
	T.closed++;
}

/* A copy of one reply. */
struct got {
	int calls;	/* Callback calls. */
	int null;	/* Calls with NULL. */
	int type;	/* Reply type. */
	long long num;	/* Integer reply. */
	char str[64];	/* String, status or error reply. */
	int downs_seen; /* T.downs when called. */
};

static void on_got(rlink_t *l, redisReply *r, void *ud)
{
	struct got *g = ud;

	g->calls++;
	g->downs_seen = T.downs;
	if (!r) {
		g->null++;
		return;
	}
	g->type = r->type;
	g->num = r->integer;
	if (r->str)
		snprintf(g->str, sizeof g->str, "%s", r->str);
}

static int cmd(rlink_t *l, struct got *g, const char *a0, const char *a1,
	       const char *a2)
{
	const char *argv[3] = {a0, a1, a2};

	memset(g, 0, sizeof *g);
	return rlink_commandv(l, on_got, g, a2 ? 3 : a1 ? 2 : 1, argv, NULL);
}

/* Sends a command and waits for its reply (up to 3 s). */
static void roundtrip(rlink_t *l, struct got *g, const char *a0, const char *a1,
		      const char *a2)
{
	CHECK_INT(cmd(l, g, a0, a1, a2), 0);
	WAIT(g->calls, 3000);
	CHECK_INT(g->calls, 1);
}

/* A sequence of INCR replies checked for order. */
struct seq {
	long long next; /* Value the next reply must carry. */
	int count;	/* Replies. */
	int bad;	/* Replies out of order or not integers. */
	int null;	/* NULL replies. */
};

static void on_incr(rlink_t *l, redisReply *r, void *ud)
{
	struct seq *s = ud;

	if (!r) {
		s->null++;
		return;
	}
	if (r->type != REDIS_REPLY_INTEGER || r->integer != s->next)
		s->bad++;
	s->next++;
	s->count++;
}

static int incr(rlink_t *l, struct seq *s)
{
	const char *argv[2] = {"INCR", "counter"};

	return rlink_commandv(l, on_incr, s, 2, argv, NULL);
}

static const struct rlink_opts fast = {.backoff_min_ms = 50,
				       .backoff_max_ms = 400,
				       .connect_timeout_ms = 1000,
				       .max_pending = 10001};

/* ---- tests ---- */

static void test_connect_ping(rlink_t *l)
{
	struct got g;
	const char *sub[2] = {"SUBSCRIBE", "x"};

	CHECK_INT(rlink_state(l), RLINK_CONNECTING);
	CHECK_INT(T.nstates, 0);
	CHECK_INT(cmd(l, &g, "PING", NULL, NULL), PE_UNAVAILABLE);
	WAIT(rlink_state(l) == RLINK_UP, 5000);
	CHECK_INT(rlink_state(l), RLINK_UP);
	CHECK_INT(T.nstates, 1);
	CHECK_INT(T.states[0], RLINK_UP);
	CHECK_STR(rlink_state_name(RLINK_UP), "up");
	CHECK_STR(rlink_last_error(l), "");

	roundtrip(l, &g, "PING", NULL, NULL);
	CHECK_INT(g.type, REDIS_REPLY_STATUS);
	CHECK_STR(g.str, "PONG");
	roundtrip(l, &g, "NOSUCHCOMMAND", NULL, NULL);
	CHECK_INT(g.type, REDIS_REPLY_ERROR);
	/* Mode-switching commands would break the reply order. */
	CHECK_INT(rlink_commandv(l, on_got, &g, 2, sub, NULL), PE_BAD_REQUEST);
	CHECK_INT(rlink_commandv(l, on_got, &g, 0, sub, NULL), PE_BAD_REQUEST);
}

/* Issues n INCR from a PING reply callback, i.e. in the poll phase. */
struct burst {
	struct seq *s; /* Where replies go. */
	int n;	       /* How many. */
};

static void on_burst(rlink_t *l, redisReply *r, void *ud)
{
	struct burst *b = ud;

	for (int i = 0; i < b->n; i++)
		if (incr(l, b->s))
			b->s->bad++;
}

static void test_pipelining(rlink_t *l)
{
	const int n = 10000;
	struct rlink_stats a, b;
	struct seq s = {.next = 1};
	struct burst bu = {&s, n};
	const char *ping[1] = {"PING"};
	struct got g, g2;

	roundtrip(l, &g, "DEL", "counter", NULL);
	rlink_stats(l, &a);
	/* Issued outside the loop: flushed before the loop blocks. */
	for (int i = 0; i < n; i++)
		CHECK_INT(incr(l, &s), 0);
	rlink_stats(l, &b);
	CHECK_INT(b.pending - a.pending, n);
	CHECK_INT(b.writes, a.writes); /* Nothing written yet. */
	/* The bound on pending commands (max_pending 10001). */
	CHECK_INT(cmd(l, &g, "GET", "counter", NULL), 0);
	CHECK_INT(cmd(l, &g2, "GET", "counter", NULL), PE_TOO_MANY);
	WAIT(s.count == n && g.calls, 10000);
	CHECK_INT(g.num, 0);
	CHECK_STR(g.str, "10000");
	rlink_stats(l, &b);
	CHECK_INT(s.count, n);
	CHECK_INT(s.bad, 0);
	CHECK_INT(s.null, 0);
	CHECK_INT(b.pending, 0);
	printf("# %d INCR issued in one pass: %llu write(s), %llu poll "
	       "restart(s)\n",
	       n, (unsigned long long)(b.writes - a.writes),
	       (unsigned long long)(b.poll_restarts - a.poll_restarts));
	CHECK(b.writes - a.writes <= 20);
	CHECK(b.writes - a.writes >= 1);
	CHECK(b.poll_restarts - a.poll_restarts <= 4);

	/* Issued from a reply callback: flushed by the end-of-pass check. */
	rlink_stats(l, &a);
	CHECK_INT(rlink_commandv(l, on_burst, &bu, 1, ping, NULL), 0);
	WAIT(s.count == 2 * n, 10000);
	rlink_stats(l, &b);
	CHECK_INT(s.count, 2 * n);
	CHECK_INT(s.bad, 0);
	printf("# %d INCR issued from a callback: %llu write(s), %llu poll "
	       "restart(s)\n",
	       n, (unsigned long long)(b.writes - a.writes),
	       (unsigned long long)(b.poll_restarts - a.poll_restarts));
	CHECK(b.writes - a.writes <= 21);
	CHECK(b.poll_restarts - a.poll_restarts <= 4);
}

/* rlink_want_flush: the hook runs once per request, at the end of the
 * pass, and what it queues goes out in the same write as the rest. */
struct hook {
	struct seq *s; /* Where its INCR replies go. */
	int calls;     /* Times the hook ran. */
	int queued;    /* Commands queued before the hook ran. */
};

static void on_hook(rlink_t *l, void *ud)
{
	struct hook *h = ud;

	h->calls++;
	h->queued = h->s->count;
	if (incr(l, h->s))
		h->s->bad++;
}

static void test_flush_hook(rlink_t *l)
{
	struct seq s = {.next = 1};
	struct hook h = {&s, 0, -1};
	struct rlink_stats a, b;
	struct got g;

	roundtrip(l, &g, "DEL", "counter", NULL);
	rlink_stats(l, &a);
	CHECK_INT(incr(l, &s), 0);
	rlink_want_flush(l, on_hook, &h);
	rlink_want_flush(l, on_hook, &h); /* Asked twice: runs once. */
	CHECK_INT(h.calls, 0);		  /* Never from inside the call. */
	WAIT(s.count == 2, 5000);
	rlink_stats(l, &b);
	CHECK_INT(h.calls, 1);
	CHECK_INT(h.queued, 0); /* Before any reply came. */
	CHECK_INT(s.count, 2);
	CHECK_INT(s.bad, 0);
	CHECK_INT(b.writes - a.writes, 1);
	/* Nothing asked: the hook stays quiet. */
	roundtrip(l, &g, "PING", NULL, NULL);
	CHECK_INT(h.calls, 1);
}

/* Replies to the SETs of test_backpressure. */
struct big {
	int ok;	 /* "OK" replies. */
	int bad; /* Anything else. */
};

static void on_big(rlink_t *l, redisReply *r, void *ud)
{
	struct big *b = ud;

	if (r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "OK"))
		b->ok++;
	else
		b->bad++;
}

/* More bytes than the socket takes at once: the link waits for
 * UV_WRITABLE, then goes back to end-of-pass writes. */
static void test_backpressure(rlink_t *l)
{
	enum { N = 16, SIZE = 1 << 20 };
	char *val = malloc(SIZE);
	const char *argv[3] = {"SET", "big", val};
	const size_t len[3] = {3, 3, SIZE};
	struct rlink_stats a, b;
	struct big big = {0, 0};
	struct seq s = {.next = 1};
	struct got g;

	memset(val, 'v', SIZE);
	roundtrip(l, &g, "DEL", "counter", NULL);
	rlink_stats(l, &a);
	for (int i = 0; i < N; i++) {
		CHECK_INT(rlink_commandv(l, on_big, &big, 3, argv, len), 0);
		CHECK_INT(incr(l, &s), 0);
	}
	free(val);
	WAIT(big.ok + big.bad == N && s.count == N, 10000);
	rlink_stats(l, &b);
	CHECK_INT(big.ok, N);
	CHECK_INT(s.count, N);
	CHECK_INT(s.bad, 0);
	printf("# %d MiB in one pass: %llu write(s), %llu poll restart(s)\n", N,
	       (unsigned long long)(b.writes - a.writes),
	       (unsigned long long)(b.poll_restarts - a.poll_restarts));
	CHECK(b.writes - a.writes > 1);
	CHECK(b.poll_restarts - a.poll_restarts >= 2);
	/* Back to end-of-pass writes. */
	rlink_stats(l, &a);
	roundtrip(l, &g, "STRLEN", "big", NULL);
	CHECK_INT(g.num, SIZE);
	rlink_stats(l, &b);
	CHECK_INT(b.poll_restarts, a.poll_restarts);
	roundtrip(l, &g, "DEL", "big", NULL);
}

static int server_subs(rlink_t *l)
{
	struct rlink_stats st;

	rlink_stats(l, &st);
	return (int)st.server_subs;
}

static void test_pubsub(rlink_t *l)
{
	struct got g;
	const char *bin[3] = {"PUBLISH", "pat.x", "bi\0n"};
	const size_t binlen[3] = {7, 5, 4};
	int msgs;

	CHECK_INT(rlink_subscribe(l, "", 0), PE_BAD_REQUEST);
	CHECK_INT(rlink_subscribe(l, NULL, 1), PE_BAD_REQUEST);
	rlink_unsubscribe(l, "never", 0); /* Ignored. */
	CHECK_INT(rlink_subscribe(l, "chan.a", 0), 0);
	CHECK_INT(rlink_subscribe(l, "chan.a", 0), 0); /* Second ref. */
	CHECK_INT(rlink_subscribe(l, "pat.*", 1), 0);
	WAIT(server_subs(l) == 2, 3000);
	CHECK_INT(server_subs(l), 2);

	T.msgs = 0;
	roundtrip(l, &g, "PUBLISH", "chan.a", "hello");
	CHECK_INT(g.num, 1);
	WAIT(T.msgs == 1, 3000);
	CHECK_INT(T.msgs, 1);
	CHECK_STR(T.channel, "chan.a");
	CHECK_STR(T.pattern, "");
	CHECK_INT(T.len, 5);
	CHECK(!memcmp(T.data, "hello", 5));

	memset(&g, 0, sizeof g);
	CHECK_INT(rlink_commandv(l, on_got, &g, 3, bin, binlen), 0);
	WAIT(T.msgs == 2, 3000);
	CHECK_INT(T.msgs, 2);
	CHECK_STR(T.channel, "pat.x");
	CHECK_STR(T.pattern, "pat.*");
	CHECK_INT(T.len, 4);
	CHECK(!memcmp(T.data, "bi\0n", 4));

	/* One reference left: still delivered. */
	rlink_unsubscribe(l, "chan.a", 0);
	roundtrip(l, &g, "PUBLISH", "chan.a", "again");
	CHECK_INT(g.num, 1);
	WAIT(T.msgs == 3, 3000);
	CHECK_INT(T.msgs, 3);

	/* The last reference: nothing more, at once and after Redis
	 * confirms. */
	rlink_unsubscribe(l, "chan.a", 0);
	msgs = T.msgs;
	roundtrip(l, &g, "PUBLISH", "chan.a", "racing");
	WAIT(server_subs(l) == 1, 3000);
	CHECK_INT(server_subs(l), 1);
	roundtrip(l, &g, "PUBLISH", "chan.a", "gone");
	CHECK_INT(g.num, 0);
	SPIN(100);
	CHECK_INT(T.msgs, msgs);

	/* The pattern still works. */
	roundtrip(l, &g, "PUBLISH", "pat.z", "z");
	CHECK_INT(g.num, 1);
	WAIT(T.msgs == msgs + 1, 3000);
	CHECK_STR(T.channel, "pat.z");
}

static void test_kill_and_restart(rlink_t *l)
{
	enum { N = 5000 };
	struct seq s = {.next = 1};
	struct got blpop, g;
	struct rlink_stats a, b;
	int downs = T.downs;

	rlink_stats(l, &a);
	/* BLPOP blocks this connection in Redis, so everything after it
	 * stays pending until the server dies. */
	CHECK_INT(cmd(l, &blpop, "BLPOP", "nolist", "0"), 0);
	for (int i = 0; i < N; i++)
		CHECK_INT(incr(l, &s), 0);
	SPIN(200);
	rlink_stats(l, &b);
	CHECK_INT(b.pending, N + 1);
	CHECK_INT(blpop.calls, 0);

	redis_kill();
	WAIT(T.downs > downs, 3000);
	CHECK_INT(T.downs, downs + 1);
	CHECK(rlink_state(l) != RLINK_UP);
	CHECK(strlen(rlink_last_error(l)) > 0);
	printf("# after SIGKILL: %s\n", rlink_last_error(l));
	CHECK_INT(blpop.calls, 1);
	CHECK_INT(blpop.null, 1);
	/* on_state(DOWN) came before the NULL replies. */
	CHECK_INT(blpop.downs_seen, downs + 1);
	CHECK_INT(s.null, N);
	CHECK_INT(s.count, 0);
	rlink_stats(l, &b);
	CHECK_INT(b.pending, 0);
	CHECK_INT(b.failed - a.failed, N + 1);
	CHECK_INT(cmd(l, &g, "PING", NULL, NULL), PE_UNAVAILABLE);

	/* Interest taken while down is sent after the reconnect. */
	CHECK_INT(rlink_subscribe(l, "chan.b", 0), 0);
	/* The link keeps trying on its own. */
	SPIN(700);
	rlink_stats(l, &b);
	CHECK(b.reconnects - a.reconnects >= 2);
	CHECK(rlink_state(l) != RLINK_UP);
	CHECK_INT(s.null, N); /* Still exactly once. */
	printf("# while down: %llu reconnect attempt(s), %d DOWN "
	       "notification(s)\n",
	       (unsigned long long)(b.reconnects - a.reconnects),
	       T.downs - downs);

	redis_start();
	WAIT(rlink_state(l) == RLINK_UP, 5000);
	CHECK_INT(rlink_state(l), RLINK_UP);
	CHECK_INT(T.states[T.nstates - 1], RLINK_UP);
	/* UP waits for the confirmations: both interests are live. */
	CHECK_INT(server_subs(l), 2);
	T.msgs = 0;
	roundtrip(l, &g, "PUBLISH", "chan.b", "back");
	CHECK_INT(g.num, 1);
	roundtrip(l, &g, "PUBLISH", "pat.q", "also");
	CHECK_INT(g.num, 1);
	WAIT(T.msgs == 2, 3000);
	CHECK_INT(T.msgs, 2);
	CHECK_STR(T.channel, "pat.q");
	CHECK_STR(T.pattern, "pat.*");
	roundtrip(l, &g, "PUBLISH", "chan.a", "still gone");
	CHECK_INT(g.num, 0);
}

/* Redis drops only the pub/sub connection: the whole link goes down,
 * fails what is pending and comes back by itself. */
static void test_sub_killed(rlink_t *l)
{
	struct got g, blpop;
	int downs = T.downs;

	CHECK_INT(cmd(l, &blpop, "BLPOP", "nolist2", "0"), 0);
	/* A second connection does the kill: ours is blocked. */
	{
		struct timeval tv = {1, 0};
		redisContext *c = redisConnectWithTimeout(HOST, port, tv);
		redisReply *r = c && !c->err ? redisCommand(c, "CLIENT KILL "
							       "TYPE pubsub")
					     : NULL;

		CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
		freeReplyObject(r);
		redisFree(c);
	}
	WAIT(T.downs > downs, 3000);
	CHECK_INT(T.downs, downs + 1);
	CHECK(strstr(rlink_last_error(l), "sub:") != NULL);
	CHECK_INT(blpop.null, 1);
	WAIT(rlink_state(l) == RLINK_UP, 5000);
	CHECK_INT(rlink_state(l), RLINK_UP);
	CHECK_INT(server_subs(l), 2);
	T.msgs = 0;
	roundtrip(l, &g, "PUBLISH", "chan.b", "after kill");
	CHECK_INT(g.num, 1);
	WAIT(T.msgs == 1, 3000);
	CHECK_INT(T.msgs, 1);
}

/* Counts the DOWN notifications of one link. */
static void count_downs(rlink_t *l, enum rlink_state st, void *ud)
{
	if (st == RLINK_DOWN)
		++*(int *)ud;
}

/* The reply watchdog, on a link of its own: an idle link PINGs now and
 * then and stays up; a server that stops answering without closing
 * anything (SIGSTOP) takes it DOWN; SIGCONT brings it back. */
static void test_watchdog(void)
{
	const struct rlink_opts o = {.backoff_min_ms = 50,
				     .backoff_max_ms = 200,
				     .connect_timeout_ms = 1000,
				     .reply_timeout_ms = 1000};
	int downs = 0;
	rlink_t *l = rlink_new(loop, HOST, port, &o, count_downs, NULL, &downs);
	struct rlink_stats a, b;
	struct got g;
	uint64_t t0;

	WAIT(rlink_state(l) == RLINK_UP, 5000);
	CHECK_INT(rlink_state(l), RLINK_UP);
	rlink_stats(l, &a);
	SPIN(1100);
	rlink_stats(l, &b);
	CHECK(b.writes - a.writes >= 2);   /* A probe every 250 ms. */
	CHECK_INT(b.commands, a.commands); /* Probes are not counted. */
	CHECK_INT(b.pending, 0);
	CHECK_INT(downs, 0);

	roundtrip(l, &g, "PING", NULL, NULL);
	kill(redis_pid, SIGSTOP);
	uv_update_time(loop);
	t0 = uv_now(loop);
	CHECK_INT(cmd(l, &g, "PING", NULL, NULL), 0);
	WAIT(downs, 5000);
	CHECK_INT(downs, 1);
	CHECK_INT(g.null, 1);
	CHECK(strstr(rlink_last_error(l), "no reply") != NULL);
	printf("# frozen server: down after %llu ms: %s\n",
	       (unsigned long long)(uv_now(loop) - t0), rlink_last_error(l));
	CHECK(uv_now(loop) - t0 >= 1000);
	kill(redis_pid, SIGCONT);
	WAIT(rlink_state(l) == RLINK_UP, 8000);
	CHECK_INT(rlink_state(l), RLINK_UP);
	roundtrip(l, &g, "PING", NULL, NULL);
	CHECK_STR(g.str, "PONG");
	T.closed = 0;
	rlink_close(l, on_closed, NULL);
	WAIT(T.closed, 3000);
	CHECK_INT(T.closed, 1);
}

/* Closes the link from inside a reply callback. */
static void on_ping_close(rlink_t *l, redisReply *r, void *ud)
{
	struct got *g = ud;

	on_got(l, r, ud);
	rlink_close(l, on_closed, NULL);
	rlink_close(l, on_closed, NULL); /* No-op. */
	/* Closed links take nothing. */
	g->num =
	    rlink_commandv(l, NULL, NULL, 1, (const char *[]){"PING"}, NULL);
}

static void test_close_in_callback(rlink_t *l)
{
	struct got ping, blpop, after;
	int nstates = T.nstates;
	const char *argv[1] = {"PING"};

	memset(&ping, 0, sizeof ping);
	CHECK_INT(rlink_commandv(l, on_ping_close, &ping, 1, argv, NULL), 0);
	CHECK_INT(cmd(l, &blpop, "BLPOP", "nolist", "0"), 0);
	CHECK_INT(cmd(l, &after, "INCR", "counter", NULL), 0);
	T.closed = 0;
	WAIT(T.closed, 3000);
	CHECK_INT(T.closed, 1);
	CHECK_INT(ping.calls, 1);
	CHECK_STR(ping.str, "PONG");
	CHECK_INT(ping.num, PE_UNAVAILABLE);
	CHECK_INT(blpop.calls, 1);
	CHECK_INT(blpop.null, 1);
	CHECK_INT(after.calls, 1);
	CHECK_INT(after.null, 1);
	CHECK_INT(T.nstates, nstates); /* No state callback after close. */
}

/* Closes its link from on_state(DOWN) or from on_message. */
static void close_on_down(rlink_t *l, enum rlink_state s, void *ud)
{
	int *downs = ud;

	if (s == RLINK_DOWN) {
		++*downs;
		rlink_close(l, on_closed, NULL);
	}
}

static void close_on_message(rlink_t *l, const char *channel,
			     const char *pattern, const char *data, size_t len,
			     void *ud)
{
	int *msgs = ud;

	++*msgs;
	rlink_close(l, on_closed, NULL);
}

/* rlink_close from the callbacks where hiredis is mid-free or
 * mid-dispatch. */
static void test_close_paths(void)
{
	struct got g, blpop;
	int downs = 0, msgs = 0;
	rlink_t *l;

	/* From on_state(DOWN), reached from hiredis freeing the pub/sub
	 * connection. */
	l = rlink_new(loop, HOST, port, &fast, close_on_down, NULL, &downs);
	rlink_subscribe(l, "kill.me", 0);
	WAIT(rlink_state(l) == RLINK_UP, 5000);
	CHECK_INT(rlink_state(l), RLINK_UP);
	CHECK_INT(cmd(l, &blpop, "BLPOP", "nolist3", "0"), 0);
	SPIN(50);
	{
		struct timeval tv = {1, 0};
		redisContext *c = redisConnectWithTimeout(HOST, port, tv);
		redisReply *r = c && !c->err ? redisCommand(c, "CLIENT KILL "
							       "TYPE pubsub")
					     : NULL;

		CHECK(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
		freeReplyObject(r);
		redisFree(c);
	}
	T.closed = 0;
	WAIT(T.closed, 3000);
	CHECK_INT(T.closed, 1);
	CHECK_INT(downs, 1);
	CHECK_INT(blpop.calls, 1);
	CHECK_INT(blpop.null, 1);

	/* From on_message, with more messages and a command behind it. */
	l = rlink_new(loop, HOST, port, &fast, NULL, close_on_message, &msgs);
	rlink_subscribe(l, "closer", 0);
	WAIT(rlink_state(l) == RLINK_UP, 5000);
	CHECK_INT(rlink_state(l), RLINK_UP);
	for (int i = 0; i < 3; i++)
		CHECK_INT(cmd(l, &g, "PUBLISH", "closer", "bye"), 0);
	CHECK_INT(cmd(l, &blpop, "BLPOP", "nolist3", "0"), 0);
	T.closed = 0;
	WAIT(T.closed, 3000);
	CHECK_INT(T.closed, 1);
	CHECK_INT(msgs, 1); /* Nothing after the close. */
	CHECK_INT(blpop.calls, 1);
	CHECK_INT(blpop.null, 1);
}

static void test_refused_and_close(void)
{
	int p = free_port(), n0 = T.nstates, d0 = T.downs;
	rlink_t *l = rlink_new(loop, HOST, p, &fast, on_state, NULL, NULL);

	/* Nothing listens: down, and down again after each retry. */
	WAIT(T.downs >= d0 + 2, 3000);
	CHECK(T.downs >= d0 + 2);
	CHECK(T.nstates > n0);
	printf("# refused: %s\n", rlink_last_error(l));
	CHECK(strstr(rlink_last_error(l), "refused") != NULL);
	T.closed = 0;
	rlink_close(l, on_closed, NULL);
	WAIT(T.closed, 3000);
	CHECK_INT(T.closed, 1);

	/* Closed while connecting. */
	l = rlink_new(loop, HOST, p, NULL, on_state, NULL, NULL);
	n0 = T.nstates;
	rlink_close(l, on_closed, NULL);
	WAIT(T.closed == 2, 3000);
	CHECK_INT(T.closed, 2);
	CHECK_INT(T.nstates, n0);
}

static void test_connect_timeout(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	struct rlink_opts o = {.backoff_min_ms = 50,
			       .backoff_max_ms = 100,
			       .connect_timeout_ms = 300};
	int fd = socket(AF_INET, SOCK_STREAM, 0), d0 = T.downs;
	int p = free_port();
	uint64_t t0;
	rlink_t *l;

	/* A listener that never accepts nor answers: TCP connects, the
	 * server never says PONG. */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)p);
	CHECK(fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
	      !listen(fd, 16));
	uv_update_time(loop);
	t0 = uv_now(loop);
	l = rlink_new(loop, HOST, p, &o, on_state, NULL, NULL);
	WAIT(T.downs > d0, 3000);
	CHECK_INT(T.downs, d0 + 1);
	CHECK(uv_now(loop) - t0 >= 290);
	CHECK_STR(rlink_last_error(l), "connect timed out");
	printf("# black hole: down after %llu ms: %s\n",
	       (unsigned long long)(uv_now(loop) - t0), rlink_last_error(l));
	T.closed = 0;
	rlink_close(l, on_closed, NULL);
	WAIT(T.closed, 3000);
	CHECK_INT(T.closed, 1);
	close(fd);
}

/* ---- benchmark ---- */

#define BENCH_MS 2000

/* PUBLISH kept in flight (--bench [WINDOW]). */
static int bench_window = 1000;

/* One benchmark run: a window of PUBLISH kept in flight. */
static struct {
	int stop;	       /* The time is up. */
	uint64_t replies;      /* Replies within the time. */
	uint64_t inflight;     /* Commands without reply. */
	uint64_t msgs;	       /* Messages received back. */
	char payload[200];     /* Message body. */
	uint64_t cpu0;	       /* Our CPU time at the start, in us. */
	redisAsyncContext *ac; /* Stock adapter run only. */
	int stock_up;	       /* Its connect completed. */
} B;

/* Returns the user plus system CPU time of this process, in us. */
static uint64_t cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void bench_deadline(uv_timer_t *t)
{
	B.stop = 1;
}

static void bench_msg(rlink_t *l, const char *channel, const char *pattern,
		      const char *data, size_t len, void *ud)
{
	B.msgs++;
}

static void bench_publish_rlink(rlink_t *l);

static void bench_reply_rlink(rlink_t *l, redisReply *r, void *ud)
{
	B.inflight--;
	if (!r || B.stop)
		return;
	B.replies++;
	bench_publish_rlink(l);
}

static void bench_publish_rlink(rlink_t *l)
{
	const char *argv[3] = {"PUBLISH", "bench", B.payload};
	const size_t len[3] = {7, 5, sizeof B.payload};

	if (rlink_commandv(l, bench_reply_rlink, NULL, 3, argv, len) == 0)
		B.inflight++;
}

static void bench_start(uv_timer_t *t)
{
	memset(B.payload, 'x', sizeof B.payload);
	B.stop = 0;
	B.replies = B.inflight = B.msgs = 0;
	uv_update_time(loop);
	uv_timer_start(t, bench_deadline, BENCH_MS, 0);
	B.cpu0 = cpu_us();
}

/* Our CPU per PUBLISH: what the adapter changes, whatever the load on
 * the machine or the speed of redis-server. */
static double bench_cpu_per_cmd(void)
{
	return (double)(cpu_us() - B.cpu0) /
	       (double)(B.replies ? B.replies : 1);
}

struct bench_result {
	double rate;   /* PUBLISH replies per second. */
	double cpu_us; /* Our CPU us per PUBLISH. */
};

static struct bench_result bench_rlink(int subscribed)
{
	rlink_t *l = rlink_new(loop, HOST, port, NULL, NULL, bench_msg, NULL);
	struct rlink_stats st;
	uv_timer_t t;
	uint64_t t0, ms;
	struct bench_result res;

	if (subscribed)
		rlink_subscribe(l, "bench", 0);
	WAIT(rlink_state(l) == RLINK_UP, 5000);
	uv_timer_init(loop, &t);
	bench_start(&t);
	t0 = uv_hrtime();
	for (int i = 0; i < bench_window; i++)
		bench_publish_rlink(l);
	WAIT(B.stop, BENCH_MS + 1000);
	ms = (uv_hrtime() - t0) / 1000000;
	res.cpu_us = bench_cpu_per_cmd();
	WAIT(B.inflight == 0, 5000);
	rlink_stats(l, &st);
	res.rate = B.replies * 1000.0 / (double)ms;
	printf(
	    "rlink%s: %.0f PUBLISH/s (%llu in %llu ms), %.2f CPU-us per "
	    "PUBLISH, %.1f commands per write, %llu poll restarts, %llu "
	    "messages back\n",
	    subscribed ? " (subscribed)" : "", res.rate,
	    (unsigned long long)B.replies, (unsigned long long)ms, res.cpu_us,
	    (double)st.commands / (double)(st.writes ? st.writes : 1),
	    (unsigned long long)st.poll_restarts, (unsigned long long)B.msgs);
	T.closed = 0;
	rlink_close(l, on_closed, NULL);
	uv_close((uv_handle_t *)&t, NULL);
	WAIT(T.closed, 3000);
	return res;
}

static void bench_publish_stock(void);

static void bench_reply_stock(redisAsyncContext *ac, void *r, void *ud)
{
	B.inflight--;
	if (!r || B.stop)
		return;
	B.replies++;
	bench_publish_stock();
}

static void bench_publish_stock(void)
{
	const char *argv[3] = {"PUBLISH", "bench", B.payload};
	const size_t len[3] = {7, 5, sizeof B.payload};

	if (redisAsyncCommandArgv(B.ac, bench_reply_stock, NULL, 3, argv,
				  len) == REDIS_OK)
		B.inflight++;
}

static void bench_stock_connected(const redisAsyncContext *ac, int status)
{
	B.stock_up = status == REDIS_OK ? 1 : -1;
}

static void bench_stock_disconnected(const redisAsyncContext *ac, int status)
{
	B.stock_up = 0;
}

/* The same run through hiredis's own libuv adapter. */
static struct bench_result bench_stock(void)
{
	uv_timer_t t;
	uint64_t t0, ms;
	struct bench_result res = {0, 0};

	B.stock_up = 0;
	B.ac = redisAsyncConnect(HOST, port);
	if (!B.ac || B.ac->err || redisLibuvAttach(B.ac, loop) != REDIS_OK) {
		fprintf(stderr, "stock adapter: cannot connect\n");
		return res;
	}
	redisAsyncSetConnectCallback(B.ac, bench_stock_connected);
	redisAsyncSetDisconnectCallback(B.ac, bench_stock_disconnected);
	WAIT(B.stock_up, 5000);
	uv_timer_init(loop, &t);
	bench_start(&t);
	t0 = uv_hrtime();
	for (int i = 0; i < bench_window; i++)
		bench_publish_stock();
	WAIT(B.stop, BENCH_MS + 1000);
	ms = (uv_hrtime() - t0) / 1000000;
	res.cpu_us = bench_cpu_per_cmd();
	WAIT(B.inflight == 0, 5000);
	res.rate = B.replies * 1000.0 / (double)ms;
	printf("stock adapter: %.0f PUBLISH/s (%llu in %llu ms), %.2f CPU-us "
	       "per PUBLISH\n",
	       res.rate, (unsigned long long)B.replies, (unsigned long long)ms,
	       res.cpu_us);
	redisAsyncDisconnect(B.ac);
	uv_close((uv_handle_t *)&t, NULL);
	WAIT(B.stock_up == 0, 3000);
	SPIN(50); /* Lets the adapter's poll handle close. */
	return res;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Three interleaved rounds of: rlink, rlink receiving its own
 * messages, the stock adapter; prints the medians. */
static int bench(void)
{
	static const char *const names[3] = {"rlink", "rlink subscribed",
					     "stock adapter"};
	double rate[3][3], cpu[3][3];
	struct bench_result r;

	log_set_level(PLOG_WARN);
	for (int round = 0; round < 3; round++) {
		for (int k = 0; k < 3; k++) {
			r = k < 2 ? bench_rlink(k) : bench_stock();
			rate[k][round] = r.rate;
			cpu[k][round] = r.cpu_us;
		}
	}
	printf("median of 3 (window %d, %d-byte payload):\n", bench_window,
	       (int)sizeof B.payload);
	for (int k = 0; k < 3; k++) {
		qsort(rate[k], 3, sizeof rate[k][0], cmp_double);
		qsort(cpu[k], 3, sizeof cpu[k][0], cmp_double);
		printf("  %-17s %8.0f PUBLISH/s  %5.2f CPU-us/PUBLISH\n",
		       names[k], rate[k][1], cpu[k][1]);
	}
	return 0;
}

int main(int argc, char **argv)
{
	uv_loop_t the_loop;
	rlink_t *l;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(logpath, sizeof logpath, "%s/redis.log", tmpdir);
	atexit(cleanup_at_exit);
	loop = &the_loop;
	uv_loop_init(loop);
	uv_timer_init(loop, &deadline);
	port = free_port();
	redis_start();

	if (argc > 1 && !strcmp(argv[1], "--bench")) {
		if (argc > 2 && atoi(argv[2]) > 0)
			bench_window = atoi(argv[2]);
		rc = bench();
	} else {
		l = rlink_new(loop, HOST, port, &fast, on_state, on_message,
			      NULL);
		test_connect_ping(l);
		test_pipelining(l);
		test_flush_hook(l);
		test_backpressure(l);
		test_pubsub(l);
		test_kill_and_restart(l);
		test_sub_killed(l);
		test_close_in_callback(l);
		test_close_paths();
		test_watchdog();
		test_refused_and_close();
		test_connect_timeout();
	}

	uv_close((uv_handle_t *)&deadline, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	/* Every handle of every link was closed. */
	CHECK_INT(uv_loop_close(loop), 0);
	if (argc > 1 && !strcmp(argv[1], "--bench"))
		return rc;
	rc = tap_done();
	if (rc)
		redis_dump_log();
	return rc;
}
