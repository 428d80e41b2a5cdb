/* http.h: the HTTP side of the client listener: /healthz, /metrics, the
 * bot API (/v1/publish, /v1/history) and the static web page. */
#ifndef PARLEY_HTTP_H
#define PARLEY_HTTP_H

#include <libwebsockets.h>

/* One of these per HTTP connection (lws per-session data of the "http"
 * protocol): the request being read and the response being written. */
typedef struct http_session {
	char *req;	     /* POST body received so far. */
	size_t req_len;	     /* Bytes in req. */
	int route;	     /* Which handler answers (http.c's enum). */
	int refused;	     /* The POST was answered early (too large). */
	char *resp;	     /* Response body. */
	size_t resp_len;     /* Bytes in resp. */
	size_t resp_off;     /* Bytes of resp written. */
	unsigned status;     /* Response status; 0 until decided. */
	const char *ctype;   /* Response content type (static). */
	int headers_sent;    /* The status line and headers are out. */
	struct lws *wsi;     /* The connection (for answers that come later). */
	uint64_t id;	     /* Number in hub->http_ids while registered. */
	char topic_req[256]; /* Topic of a history request awaiting Redis. */
} http_session_t;

/* The lws callback of the "http" protocol (protocols[0] of the client
 * vhost). A WebSocket upgrade that names no subprotocol lands here and is
 * refused. */
int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		  void *in, size_t len);

#endif
