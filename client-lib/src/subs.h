/* subs.h: the client's subscriptions: one entry per filter with its
 * callback, what to ask the hub for on the next (re)subscribe, the cursor
 * to resume from, and a short memory of delivered message ids so that a
 * message is never handed to the same subscription twice. */
#ifndef PARLEY_SUBS_H
#define PARLEY_SUBS_H

#include <stddef.h>
#include <stdint.h>

#include "parley.h"

/* Message ids remembered per subscription for duplicate suppression. */
#define PARLEY__SEEN_MAX 256

/* Where a subscription stands on the current connection. */
enum parley__sub_state {
	PARLEY__SUB_UNSENT = 0, /* Not yet requested on this connection. */
	PARLEY__SUB_SENT,	/* Requested, waiting for the hub's answer. */
	PARLEY__SUB_ACTIVE,	/* The hub confirmed it. */
};

/* One subscription (one per filter), owned by the client's list. */
typedef struct parley__sub {
	struct parley__sub *next; /* Next in subscription order. */
	struct parley__sub *prev; /* Previous in subscription order. */
	char *filter;		  /* Topic or pattern, as given. */
	parley_msg_cb cb;	  /* Message callback. */
	void *ud;		  /* Its user data. */
	int state;		  /* enum parley__sub_state. */
	int dead;		  /* Unsubscribed while callbacks ran: freed
				     by parley__subs_sweep. */
	long want_last;		  /* The application's initial "last"
				     request, until answered; -1 none. */
	char *want_since;	  /* Its initial "since", until answered. */
	int probing;		  /* The pending request is "last":1 only to
				     learn a cursor: its backlog is not
				     delivered. */
	int empty;		  /* No matching message was stored when
				     subscribed and none arrived since: a
				     resume asks for every stored one. */
	char *cursor;		  /* Resume point: cursor of the last
				     message delivered, or NULL. */
	int retry;		  /* The hub answered "unavailable" (its
				     Redis not reached yet): asked again by
				     the next tick. */
	uint64_t req_id;	  /* Id of the pending request (SENT). */
	uint64_t sent_ms;	  /* When it was sent (loop time). */
	uint64_t seen[PARLEY__SEEN_MAX]; /* Hashes of recent mids. */
	unsigned seen_len;		 /* Entries used in seen. */
	unsigned seen_pos;		 /* Next slot to overwrite. */
} parley__sub;

/* The list of subscriptions. */
typedef struct parley__subs {
	parley__sub *head; /* Oldest subscription. */
	parley__sub *tail; /* Newest subscription. */
	size_t count;	   /* Entries, dead ones included. */
} parley__subs;

/* Creates a subscription at the tail. Returns it, or NULL when out of
 * memory. Strings are copied. */
parley__sub *parley__subs_add(parley__subs *l, const char *filter, long last,
			      const char *since, parley_msg_cb cb, void *ud);

/* Returns the live subscription with exactly this filter, or NULL. */
parley__sub *parley__subs_find(const parley__subs *l, const char *filter);

/* Returns the subscription waiting for the answer to request id, or NULL. */
parley__sub *parley__subs_find_req(const parley__subs *l, uint64_t id);

/* Unlinks and frees s. */
void parley__subs_remove(parley__subs *l, parley__sub *s);

/* Frees every dead subscription. */
void parley__subs_sweep(parley__subs *l);

/* Frees every subscription. */
void parley__subs_clear(parley__subs *l);

/* Sets s's resume cursor to a copy of cursor. Returns 0 or PARLEY_ENOMEM
 * (the old cursor is kept). */
int parley__sub_set_cursor(parley__sub *s, const char *cursor);

/* Records mid as delivered to s. Returns 1 when it already was (a
 * duplicate), else 0. */
int parley__sub_seen(parley__sub *s, const char *mid);

#endif
