/* session.h: the parley.v1 conversation on one connection: auth,
 * (re)subscribing with resume cursors, publishing, matching answers to
 * requests, routing messages to subscriptions, and request timeouts. */
#ifndef PARLEY_SESSION_H
#define PARLEY_SESSION_H

#include "client.h"

/* After a connection ends: every subscription must be requested again,
 * and sent publishes are either re-queued or failed with
 * PARLEY_EUNACKED (PARLEY_OPT_RESEND_UNACKED). May call back. */
void parley__session_reset(parley_client *c);

/* Completes publish p: unlinks and frees it, then calls its callback with
 * err, mid and text. */
void parley__pub_done(parley_client *c, parley__pub *p, int err,
		      const char *mid, const char *text);

#endif
