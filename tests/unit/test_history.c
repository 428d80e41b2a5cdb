/* test_history.c: unit tests of the message history: sequence numbers,
 * ring wraparound, cursors (round trip, other epoch, hostile strings), gap
 * detection, merging across topics, mid lookup and references. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "history.h"
#include "msg.h"
#include "tap.h"

#define EPOCH 1732838400000u /* Some start time in ms. */

/* What a visit callback records. */
struct seen {
	uint64_t seq[256]; /* Seqs visited, in order. */
	size_t n;	   /* Visits. */
};

static void record(msg_t *m, void *ud)
{
	struct seen *s = ud;

	if (s->n < sizeof s->seq / sizeof s->seq[0])
		s->seq[s->n] = m->seq;
	s->n++;
}

/* Appends a new message on topic with mid "m<k>"; returns it, borrowed
 * (the history holds the only reference). */
static msg_t *post(history_t *h, const char *topic, int k)
{
	char mid[32];
	msg_t *m;

	snprintf(mid, sizeof mid, "m%d", k);
	m = msg_new(topic, mid, "node.example", "alice@node.example", 1, "{}",
		    2);
	history_append(h, m);
	msg_unref(m);
	return m;
}

/* Checks that s holds exactly the seqs of want[] (n entries). */
static void check_seqs(const struct seen *s, const uint64_t *want, size_t n)
{
	CHECK_INT(s->n, n);
	for (size_t i = 0; i < n && i < s->n; i++)
		CHECK_INT(s->seq[i], want[i]);
}

static void test_seq_and_wrap(void)
{
	history_t *h = history_new(3, EPOCH);
	struct seen s = {0};
	msg_t *kept;

	CHECK_INT(history_last_seq(h), 0);
	CHECK_INT(history_last(h, "a", 5, record, &s), 0);
	CHECK_INT(history_since(h, "a", 0, record, &s), 0);
	CHECK_INT(s.n, 0);
	for (int i = 1; i <= 10; i++)
		CHECK_INT(post(h, "a", i)->seq, i);
	CHECK_INT(history_last_seq(h), 10);
	CHECK_INT(history_msg_count(h), 3);
	CHECK_INT(history_topic_count(h), 1);
	CHECK_INT(history_last(h, "a", 10, record, &s), 3);
	check_seqs(&s, (const uint64_t[]){8, 9, 10}, 3);
	s.n = 0;
	CHECK_INT(history_last(h, "a", 2, record, &s), 2);
	check_seqs(&s, (const uint64_t[]){9, 10}, 2);
	s.n = 0;
	CHECK_INT(history_last(h, "a", 0, record, &s), 0);
	CHECK_INT(history_last(h, "b", 3, record, &s), 0);
	CHECK_INT(s.n, 0);

	/* The history holds one reference and drops it on eviction. */
	kept = msg_ref(post(h, "a", 11));
	CHECK_INT(kept->refs, 2);
	for (int i = 12; i <= 14; i++)
		post(h, "a", i);
	CHECK_INT(kept->refs, 1);
	msg_unref(kept);
	history_free(h);
	history_free(NULL);
}

/* Rings grow lazily; growing while the ring has wrapped must keep order. */
static void test_growth(void)
{
	history_t *h = history_new(100, EPOCH);
	struct seen s = {0};
	uint64_t want[100];

	for (int i = 1; i <= 250; i++)
		post(h, "t", i);
	for (int i = 0; i < 100; i++)
		want[i] = 151 + (uint64_t)i;
	CHECK_INT(history_last(h, "t", 1000, record, &s), 100);
	check_seqs(&s, want, 100);
	s.n = 0;
	CHECK_INT(history_since(h, "t", 150, record, &s), 0);
	check_seqs(&s, want, 100);
	history_free(h);

	/* per_topic 1 keeps only the newest. */
	h = history_new(1, EPOCH);
	post(h, "t", 1);
	post(h, "t", 2);
	s.n = 0;
	CHECK_INT(history_last(h, "t", 5, record, &s), 1);
	check_seqs(&s, (const uint64_t[]){2}, 1);
	CHECK_INT(history_since(h, "t", 0, record, &s), PE_HISTORY_GAP);
	history_free(h);
}

static void test_cursor(void)
{
	history_t *h = history_new(4, EPOCH), *zero = history_new(4, 0);
	history_t *big = history_new(4, UINT64_MAX);
	char buf[HISTORY_CURSOR_MAX];
	uint64_t seq = 99;

	history_cursor(zero, 0, buf);
	CHECK_STR(buf, "0-0");
	history_cursor(zero, 35, buf);
	CHECK_STR(buf, "0-z");
	history_cursor(zero, 36, buf);
	CHECK_STR(buf, "0-10");
	history_cursor(big, UINT64_MAX, buf);
	CHECK_STR(buf, "3w5e11264sgsf-3w5e11264sgsf");
	CHECK(strlen(buf) < HISTORY_CURSOR_MAX);

	/* Round trips, including seq 0 (everything) and the last seq. */
	for (int i = 1; i <= 40; i++)
		post(h, i % 2 ? "a" : "b", i);
	for (uint64_t i = 0; i <= 40; i++) {
		history_cursor(h, i, buf);
		CHECK(strspn(buf, "0123456789abcdefghijklmnopqrstuvwxyz-") ==
		      strlen(buf));
		CHECK_INT(history_parse_cursor(h, buf, &seq), 0);
		CHECK_INT(seq, i);
	}
	/* From the future. */
	history_cursor(h, 41, buf);
	CHECK_INT(history_parse_cursor(h, buf, &seq), PE_BAD_CURSOR);
	/* Another epoch: a previous process, whose messages are gone, even
	 * when its seq is in range or beyond. */
	history_cursor(zero, 5, buf);
	CHECK_INT(history_parse_cursor(h, buf, &seq), PE_HISTORY_GAP);
	history_cursor(big, 1000, buf);
	CHECK_INT(history_parse_cursor(h, buf, &seq), PE_HISTORY_GAP);
	history_cursor(h, 0, buf);
	CHECK_INT(history_parse_cursor(zero, buf, &seq), PE_HISTORY_GAP);
	CHECK_INT(history_parse_cursor(zero, "0-0", &seq), 0);
	CHECK_INT(seq, 0);
	history_free(h);
	history_free(zero);
	history_free(big);
}

/* Cursors for a history at epoch 36 ("10") with last seq 5. */
static const char *const hostile[] = {
    "",
    "-",
    "10",
    "10-",
    "-5",
    "10--5",
    "10-5-",
    "10-5-5",
    "+10-5",
    "10-+5",
    "-10-5",
    "10--0",
    " 10-5",
    "10-5 ",
    "10 -5",
    "10- 5",
    "10-5\n",
    "10\t-5",
    "10-5\x01",
    "10-A",
    "1O-5",
    "10_5",
    "10+5",
    "10.5",
    "10:5",
    "10/5",
    "0x10-5",
    "010-5",
    "10-05",
    "10-00",
    "00-5",
    "10-\xc3\xa9",
    "\xef\xbc\x91\xef\xbc\x90-5", /* Fullwidth digits. */
    "10-6",			  /* Beyond the last seq. */
    "10-zzzzzz",
    "10-3w5e11264sgsf",			 /* UINT64_MAX. */
    "10-3w5e11264sgsg",			 /* UINT64_MAX + 1. */
    "3w5e11264sgsg-5",			 /* Overflowing epoch. */
    "10-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", /* Far beyond 64 bits. */
    "10-100000000000000000000000000005",
    "10-18446744073709551621", /* 2^64 + 5 in decimal digits. */
};

static void test_hostile_cursors(void)
{
	history_t *h = history_new(4, 36);
	uint64_t seq = 77;

	for (int i = 1; i <= 5; i++)
		post(h, "a", i);
	CHECK_INT(history_parse_cursor(h, "10-5", &seq), 0);
	CHECK_INT(seq, 5);
	CHECK_INT(history_parse_cursor(h, "10-0", &seq), 0);
	CHECK_INT(seq, 0);
	for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
		int err = history_parse_cursor(h, hostile[i], &seq);

		if (err != PE_BAD_CURSOR)
			fprintf(stderr, "cursor \"%s\" gave %d\n", hostile[i],
				err);
		CHECK_INT(err, PE_BAD_CURSOR);
	}
	CHECK_INT(history_parse_cursor(h, NULL, &seq), PE_BAD_CURSOR);
	/* A well-formed cursor of another epoch is a gap, not malformed. */
	CHECK_INT(history_parse_cursor(h, "11-5", &seq), PE_HISTORY_GAP);
	CHECK_INT(history_parse_cursor(h, "3w5e11264sgsf-0", &seq),
		  PE_HISTORY_GAP);
	history_free(h);
}

static void test_gap_exact(void)
{
	history_t *h = history_new(3, EPOCH);
	struct seen s = {0};

	for (int i = 1; i <= 5; i++) /* Seqs 1-5; 1 and 2 evicted. */
		post(h, "a", i);
	post(h, "b", 6);
	CHECK_INT(history_since(h, "a", 0, record, &s), PE_HISTORY_GAP);
	CHECK_INT(history_since(h, "a", 1, record, &s), PE_HISTORY_GAP);
	CHECK_INT(s.n, 0);
	CHECK_INT(history_since(h, "a", 2, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){3, 4, 5}, 3);
	s.n = 0;
	CHECK_INT(history_since(h, "a", 4, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){5}, 1);
	s.n = 0;
	CHECK_INT(history_since(h, "a", 6, record, &s), 0);
	CHECK_INT(s.n, 0);
	/* Other topics are unaffected by a's evictions. */
	CHECK_INT(history_since(h, "b", 0, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){6}, 1);
	s.n = 0;
	CHECK_INT(history_since(h, "nothing/here", 0, record, &s), 0);
	CHECK_INT(s.n, 0);
	history_free(h);
}

static void test_gap_pattern(void)
{
	history_t *h = history_new(2, EPOCH);
	struct seen s = {0};

	/* x/a: 1, 3, 5 (1 evicted); x/b: 2, 4; y/a: 6, 7, 8 (6 evicted). */
	post(h, "x/a", 1);
	post(h, "x/b", 2);
	post(h, "x/a", 3);
	post(h, "x/b", 4);
	post(h, "x/a", 5);
	post(h, "y/a", 6);
	post(h, "y/a", 7);
	post(h, "y/a", 8);
	CHECK_INT(history_since(h, "x/+", 0, record, &s), PE_HISTORY_GAP);
	CHECK_INT(history_since(h, "#", 5, record, &s), PE_HISTORY_GAP);
	CHECK_INT(history_since(h, "+/a", 0, record, &s), PE_HISTORY_GAP);
	CHECK_INT(s.n, 0);
	CHECK_INT(history_since(h, "x/+", 1, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){2, 3, 4, 5}, 4);
	s.n = 0;
	CHECK_INT(history_since(h, "x/#", 3, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){4, 5}, 2);
	s.n = 0;
	CHECK_INT(history_since(h, "#", 6, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){7, 8}, 2);
	s.n = 0;
	CHECK_INT(history_since(h, "x/b", 0, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){2, 4}, 2);
	s.n = 0;
	CHECK_INT(history_since(h, "z/+", 0, record, &s), 0);
	CHECK_INT(history_since(h, "#", 8, record, &s), 0);
	CHECK_INT(s.n, 0);
	history_free(h);
}

static void test_last_across_topics(void)
{
	history_t *h = history_new(4, EPOCH);
	static const char *const topics[] = {"f/a", "f/b", "f/c/d", "g"};
	struct seen s = {0};

	/* Seqs 1-20 round-robin over four topics: f/a 1,5,9..; f/b 2,6,..;
	 * f/c/d 3,7,..; g 4,8,..; each keeps its last four. */
	for (int i = 1; i <= 20; i++)
		post(h, topics[(i - 1) % 4], i);
	CHECK_INT(history_topic_count(h), 4);
	CHECK_INT(history_msg_count(h), 16);
	CHECK_INT(history_has_topic(h, "f/c/d"), 1);
	CHECK_INT(history_has_topic(h, "f/c"), 0);
	CHECK_INT(history_has_topic(h, "f/+"), 0);
	CHECK_INT(history_last(h, "#", 5, record, &s), 5);
	check_seqs(&s, (const uint64_t[]){16, 17, 18, 19, 20}, 5);
	s.n = 0;
	CHECK_INT(history_last(h, "f/#", 4, record, &s), 4);
	check_seqs(&s, (const uint64_t[]){15, 17, 18, 19}, 4);
	s.n = 0;
	CHECK_INT(history_last(h, "f/+", 100, record, &s), 8);
	check_seqs(&s, (const uint64_t[]){5, 6, 9, 10, 13, 14, 17, 18}, 8);
	s.n = 0;
	CHECK_INT(history_last(h, "#", 1000, record, &s), 16);
	for (size_t i = 0; i < 16; i++)
		CHECK_INT(s.seq[i], 5 + i);
	s.n = 0;
	CHECK_INT(history_last(h, "f/+/d", 2, record, &s), 2);
	check_seqs(&s, (const uint64_t[]){15, 19}, 2);
	s.n = 0;
	CHECK_INT(history_last(h, "nope/#", 3, record, &s), 0);
	/* Since across topics merges by seq. */
	CHECK_INT(history_since(h, "+", 12, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){16, 20}, 2);
	s.n = 0;
	CHECK_INT(history_since(h, "f/#", 12, record, &s), 0);
	check_seqs(&s, (const uint64_t[]){13, 14, 15, 17, 18, 19}, 6);
	history_free(h);
}

/* A visitor that appends while visiting: the backlog must be unaffected,
 * even though the appends evict the messages being visited. */
struct appender {
	history_t *h;  /* The history visited. */
	struct seen s; /* What was visited. */
	int next;      /* mid number of the next append. */
};

static void append_on_visit(msg_t *m, void *ud)
{
	struct appender *a = ud;

	record(m, &a->s);
	/* Still readable although evicted (ASan would see it otherwise). */
	CHECK(m->mid[0] == 'm');
	post(a->h, "a", a->next++);
	post(a->h, "a", a->next++);
}

static void test_reentrant_visit(void)
{
	struct appender a = {.h = history_new(3, EPOCH), .next = 100};

	for (int i = 1; i <= 3; i++)
		post(a.h, "a", i);
	CHECK_INT(history_since(a.h, "a", 0, append_on_visit, &a), 0);
	check_seqs(&a.s, (const uint64_t[]){1, 2, 3}, 3);
	a.s.n = 0;
	CHECK_INT(history_last(a.h, "#", 3, append_on_visit, &a), 3);
	check_seqs(&a.s, (const uint64_t[]){7, 8, 9}, 3);
	CHECK_INT(history_msg_count(a.h), 3);
	history_free(a.h);
}

int main(void)
{
	test_seq_and_wrap();
	test_growth();
	test_cursor();
	test_hostile_cursors();
	test_gap_exact();
	test_gap_pattern();
	test_last_across_topics();
	test_reentrant_visit();
	return tap_done();
}
