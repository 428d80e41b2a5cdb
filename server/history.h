/* history.h: the in-memory message history of a standalone instance: one
 * bounded ring per topic, a node-wide sequence number that orders every
 * stored message, and cursors that stay valid and ordered for the life of
 * the process. */
#ifndef PARLEY_HISTORY_H
#define PARLEY_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* Enough for any cursor string this module formats, with its NUL. */
#define HISTORY_CURSOR_MAX 48

typedef struct history history_t;

/* Called for each message of a backlog, oldest first. The message is
 * borrowed: take a reference to keep it. */
typedef void (*history_visit_fn)(msg_t *m, void *ud);

/* Returns a new history keeping at most per_topic (>= 1) messages per
 * topic. epoch identifies this process's cursors (e.g. the start time in
 * ms): a cursor from another epoch is reported as a gap. */
history_t *history_new(size_t per_topic, uint64_t epoch);

/* Frees the history, dropping its references to messages. */
void history_free(history_t *h);

/* Stores m, taking a reference, and assigns m->seq (last seq + 1). Evicts
 * the topic's oldest message when its ring is full. */
void history_append(history_t *h, msg_t *m);

/* Returns the sequence number the next append will get minus one (the last
 * assigned), 0 before the first. */
uint64_t history_last_seq(const history_t *h);

/* Formats the cursor for seq into buf (at least HISTORY_CURSOR_MAX bytes)
 * and returns its length. Cursors are short strings of [0-9a-z-] (safe in
 * URLs and in JSON strings as they are). */
size_t history_cursor(const history_t *h, uint64_t seq, char *buf);

/* Parses a cursor. Returns 0 and *seq; PE_BAD_CURSOR when malformed or
 * beyond the last assigned seq; PE_HISTORY_GAP when it comes from another
 * epoch (a previous process), whose messages are gone. */
int history_parse_cursor(const history_t *h, const char *cursor, uint64_t *seq);

/* Visits the n most recent messages (in total, not per topic) of all
 * topics matching filter (a topic or a pattern), oldest first. Returns
 * the number visited. */
size_t history_last(const history_t *h, const char *filter, size_t n,
		    history_visit_fn fn, void *ud);

/* Visits every stored message after seq on topics matching filter, oldest
 * first. Returns 0, or PE_HISTORY_GAP without visiting anything when a
 * message after seq on a matching topic has already been evicted. */
int history_since(const history_t *h, const char *filter, uint64_t seq,
		  history_visit_fn fn, void *ud);

/* Visits at most max stored messages after seq, of every topic, oldest
 * first (a replay batch). Sets *gap when a message after seq was already
 * evicted from some topic. Returns the number visited. */
size_t history_range(const history_t *h, uint64_t seq, size_t max, int *gap,
		     history_visit_fn fn, void *ud);

/* Returns 1 when the history holds a ring for this exact topic, else 0. */
int history_has_topic(const history_t *h, const char *topic);

/* Returns the number of topics and of messages held. */
size_t history_topic_count(const history_t *h);
size_t history_msg_count(const history_t *h);

#endif
