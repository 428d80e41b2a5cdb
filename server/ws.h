/* ws.h: the lws callback of the parley.v1 protocol. */
#ifndef PARLEY_WS_H
#define PARLEY_WS_H

#include <libwebsockets.h>

/* The parley.v1 switchboard: handshake checks (path, token, limits),
 * message reassembly and size limit, and session lifecycle. */
int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		void *in, size_t len);

#endif
