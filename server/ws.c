/* ws.c: the parley.v1 lws callback: a flat switchboard whose cases call
 * the conn_ and client_ modules. */
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "conn.h"
#include "err.h"
#include "hub.h"
#include "jscan.h"
#include "log.h"
#include "strmap.h"

static hub_t *hub_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

/* Refuses a handshake with an HTTP status: the role is already ws here,
 * so the answer is written raw before lws drops the connection. */
static int refuse(struct lws *wsi, hub_t *h, int status, const char *text,
		  const char *why)
{
	unsigned char buf[LWS_PRE + 512];
	const char *code = status == 401   ? "unauthorized"
			   : status == 403 ? "forbidden"
			   : status == 429 ? "rate_limited"
			   : status == 503 ? "unavailable"
					   : "bad_request";
	char body[160];
	int bl, n;

	h->m.connections_rejected++;
	log_info("ws_refused", "status=%d reason=%s", status, log_str(why));
	bl = snprintf(body, sizeof body, "{\"code\":\"%s\",\"reason\":\"%s\"}",
		      code, why);
	n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %d\r\nConnection: close\r\n\r\n%s",
		     status, text, bl, body);
	lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_RAW);
	return 1;
}

/* Returns 1 when a browser page from origin may open a session: it is
 * listed (or "*" is), or it is this hub's own page (same host). */
static int origin_allowed(struct lws *wsi, const hub_t *h, const char *origin)
{
	const config_patterns_t *ok = &h->live->allowed_origins;
	const char *host = strstr(origin, "://");
	char want[256];

	for (size_t i = 0; i < ok->n; i++)
		if (!strcmp(ok->v[i], "*") || !strcmp(ok->v[i], origin))
			return 1;
	return host &&
	       lws_hdr_copy(wsi, want, sizeof want, WSI_TOKEN_HOST) > 0 &&
	       !strcasecmp(host + 3, want);
}

/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: decides whether to accept the
 * upgrade and resolves the token given on it. */
static int on_filter(struct lws *wsi, conn_t *c)
{
	hub_t *h = hub_of(wsi);
	char path[256], tok[512];
	const char *t = NULL;
	size_t tlen = 0;
	int n;

	if (h->shutting_down)
		return refuse(wsi, h, 503, "Service Unavailable",
			      "shutting down");
	if (lws_get_network_wsi(wsi) != wsi)
		return refuse(wsi, h, 400, "Bad Request",
			      "WebSocket over HTTP/2 is not supported");
	if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
	    strcmp(path, h->cfg->ws_path))
		return refuse(wsi, h, 400, "Bad Request",
			      "no WebSocket endpoint at this path");
	if (h->n_conns >= h->live->limits.max_connections)
		return refuse(wsi, h, 503, "Service Unavailable",
			      "connection limit reached");
	lws_get_peer_simple(wsi, path, sizeof path);
	if ((uintptr_t)strmap_get(h->per_ip, path) >=
	    h->live->limits.max_connections_per_ip)
		return refuse(wsi, h, 429, "Too Many Requests",
			      "too many connections from this address");
	n = lws_hdr_copy(wsi, tok, sizeof tok, WSI_TOKEN_ORIGIN);
	if (n > 0 && !origin_allowed(wsi, h, tok))
		return refuse(wsi, h, 403, "Forbidden",
			      "origin not allowed (listen.allowed_origins)");
	n = lws_hdr_copy(wsi, tok, sizeof tok, WSI_TOKEN_HTTP_AUTHORIZATION);
	if (n > 0) {
		if (n < 7 || strncasecmp(tok, "Bearer ", 7))
			return refuse(wsi, h, 401, "Unauthorized",
				      "malformed authorization header");
		t = tok + 7;
		tlen = (size_t)n - 7;
	} else if ((t = lws_get_urlarg_by_name(wsi, "token=", tok,
					       sizeof tok))) {
		tlen = strlen(t);
	}
	if (t) {
		c->user = auth_lookup(h->auth, t, tlen);
		if (!c->user)
			return refuse(wsi, h, 401, "Unauthorized",
				      "unknown token");
		c->has_token = 1;
	} else {
		c->user = auth_anonymous(h->auth);
	}
	return 0;
}

/* A complete message: binary is refused, text must be UTF-8 (RFC 6455:
 * close with 1007; lws's byte-by-byte check is off, see server.c).
 * Returns -1 to close. */
static int on_message(struct lws *wsi, conn_t *c, const char *m, size_t len)
{
	if (c->rx_binary) {
		client_reject_binary(c);
		return 0;
	}
	if (!jscan_utf8_valid(m, len)) {
		log_info("invalid_utf8", "conn=%llu peer=%s",
			 (unsigned long long)c->id, c->peer);
		lws_close_reason(wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD,
				 (unsigned char *)"invalid UTF-8", 13);
		return -1;
	}
	client_handle(c, m, len);
	return 0;
}

/* LWS_CALLBACK_RECEIVE: reassembles a message within max_frame_bytes and
 * hands complete messages to on_message. Returns -1 to close. */
static int on_receive(struct lws *wsi, conn_t *c, const char *in, size_t len)
{
	hub_t *h = c->hub;
	size_t max = h->live->limits.max_frame_bytes;
	size_t rest = lws_remaining_packet_payload(wsi);
	int first = lws_is_first_fragment(wsi);
	int final = lws_is_final_fragment(wsi);

	h->m.bytes_in += len;
	if (first) {
		c->rx_len = 0;
		c->rx_binary = lws_frame_is_binary(wsi);
	}
	if (c->state != CONN_OPEN)
		return 0;
	/* lws 4.1 does not bound message size: the hub does, counting what
	 * the frame header announces, before buffering any of it. */
	if (c->rx_len + len + rest > max) {
		log_info("message_too_big", "conn=%llu peer=%s limit=%zu",
			 (unsigned long long)c->id, c->peer, max);
		hub_count_error(h, PE_TOO_LARGE);
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
				 (unsigned char *)"message too big", 15);
		return -1;
	}
	if (final && !c->rx_len)
		return on_message(wsi, c, in, len);
	if (c->rx_len + len > c->rx_cap) {
		size_t ncap = c->rx_cap ? c->rx_cap : 1024;
		char *n;

		while (ncap < c->rx_len + len)
			ncap *= 2;
		if (ncap > max)
			ncap = max;
		n = realloc(c->rx, ncap);
		if (!n)
			abort();
		c->rx = n;
		c->rx_cap = ncap;
	}
	memcpy(c->rx + c->rx_len, in, len);
	c->rx_len += len;
	if (final) {
		int rc = on_message(wsi, c, c->rx, c->rx_len);

		c->rx_len = 0;
		/* Give back a large reassembly buffer at once. */
		if (c->rx_cap > 16384) {
			free(c->rx);
			c->rx = NULL;
			c->rx_cap = 0;
		}
		return rc;
	}
	return 0;
}

int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		void *in, size_t len)
{
	conn_t *c = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return on_filter(wsi, c);
	case LWS_CALLBACK_ESTABLISHED:
		if (conn_open(c, hub_of(wsi), wsi, c->user, c->has_token))
			return -1;
		log_info("conn_open", "conn=%llu peer=%s user=%s",
			 (unsigned long long)c->id, c->peer,
			 log_str(c->user->name));
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (!c->hub)
			return -1;
		return on_receive(wsi, c, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		if (!c->hub)
			return -1;
		return conn_writeable(c);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (!c->hub)
			return 1;
		/* The answer to our own close frame: nothing to echo. */
		if (c->close_queued)
			return 1;
		/* lws echoes the peer's close; we only stop writing. */
		conn_set_state(c, CONN_CLOSING);
		return 0;
	case LWS_CALLBACK_CLOSED:
		if (c->hub)
			log_info("conn_closed", "conn=%llu peer=%s",
				 (unsigned long long)c->id, c->peer);
		client_release(c);
		return 0;
	default:
		return 0;
	}
}
