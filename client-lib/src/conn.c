/* conn.c: the libwebsockets side of a client: the lws context on the
 * client's libuv loop, the parley.v1 protocol callback (a flat
 * switchboard), the send queue written one buffer per WRITEABLE, and the
 * reassembly of fragmented messages under the max_frame_bytes bound. */
#include <libwebsockets.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"

/* Copies n bytes of hub- or lws-supplied text into dst (size dstlen),
 * replacing anything but printable ASCII, always NUL-terminated. */
static void copy_clean(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t i;

	if (!dstlen)
		return;
	for (i = 0; src && i < n && i + 1 < dstlen && src[i]; i++)
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	dst[i] = 0;
}

void parley__conn_reset(parley_client *c)
{
	parley__conn *k = &c->conn;

	while (k->tx_head) {
		parley__txbuf *b = k->tx_head;

		k->tx_head = b->next;
		free(b);
	}
	free(k->rx);
	memset(k, 0, sizeof(*k));
}

/* The connection is over (failed or closed): forget it and tell the
 * client. */
static void conn_ended(parley_client *c, int err, const char *text)
{
	char buf[160];

	snprintf(buf, sizeof(buf), "%s", text ? text : "");
	parley__conn_reset(c);
	c->conn_ends++;
	parley__on_closed(c, err, buf);
}

/* Classifies a failed handshake from lws's description (in, len bytes,
 * may be NULL) and reports it. */
static void connection_error(parley_client *c, struct lws *wsi, const char *in,
			     size_t len)
{
	char why[120], text[160];
	unsigned status = lws_http_client_http_response(wsi);
	int err = PARLEY_ECONNECT;

	if (c->conn.closing) { /* We killed it before it was up. */
		snprintf(text, sizeof(text), "%s", c->conn.close_text);
		conn_ended(c, c->conn.close_err, text);
		return;
	}
	copy_clean(why, sizeof(why), in ? in : "connection failed",
		   in ? len : 17);
	if (status == 401 || strstr(why, "unauthorized"))
		err = PARLEY_EAUTH;
	else if (c->url.tls && (strstr(why, "SSL") || strstr(why, "ssl") ||
				strstr(why, "cert") || strstr(why, "tls")))
		err = PARLEY_ETLS;
	if (status && status != 101)
		snprintf(text, sizeof(text), "%s:%d: %s (HTTP %u)", c->url.host,
			 c->url.port, why, status);
	else
		snprintf(text, sizeof(text), "%s:%d: %s", c->url.host,
			 c->url.port, why);
	conn_ended(c, err, text);
}

/* Appends one received fragment; delivers the message when complete. */
static void receive(parley_client *c, struct lws *wsi, const char *in,
		    size_t len)
{
	parley__conn *k = &c->conn;
	size_t max = (size_t)c->opt[PARLEY_OPT_MAX_FRAME_BYTES];

	if (k->rx_len == 0 && !k->rx_discard && lws_frame_is_binary(wsi))
		k->rx_discard = k->rx_binary = 1;
	if (!k->rx_discard && len > max - k->rx_len) {
		k->rx_discard = 1;
		free(k->rx);
		k->rx = NULL;
		k->rx_cap = 0;
	}
	if (!k->rx_discard && len) {
		if (k->rx_len + len > k->rx_cap) {
			size_t cap = k->rx_cap ? k->rx_cap : 4096;
			char *p;

			while (cap < k->rx_len + len)
				cap *= 2;
			if (cap > max)
				cap = max;
			p = realloc(k->rx, cap);
			if (!p) {
				k->rx_discard = 1;
				parley__report(c, PARLEY_ENOMEM,
					       "no memory for a received frame",
					       NULL);
			} else {
				k->rx = p;
				k->rx_cap = cap;
			}
		}
		if (!k->rx_discard) {
			memcpy(k->rx + k->rx_len, in, len);
			k->rx_len += len;
		}
	}
	if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
		return;
	if (k->rx_discard) {
		int binary = k->rx_binary;

		k->rx_discard = k->rx_binary = 0;
		k->rx_len = 0;
		if (binary)
			parley__report(c, PARLEY_EPROTO,
				       "binary frame from the hub ignored",
				       NULL);
		else
			parley__report(c, PARLEY_EMSGSIZE,
				       "frame from the hub over "
				       "max_frame_bytes dropped",
				       NULL);
		return;
	}
	len = k->rx_len;
	k->rx_len = 0;
	parley__on_message(c, k->rx ? k->rx : "", len);
}

/* Writes the oldest queued buffer, or the close frame. Returns -1 to make
 * lws close the connection. */
static int writeable(parley_client *c, struct lws *wsi)
{
	parley__conn *k = &c->conn;
	parley__txbuf *b = k->tx_head;

	if (k->closing) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL,
				 (unsigned char *)"bye", 3);
		return -1;
	}
	if (!b)
		return 0;
	if (lws_write(wsi, PARLEY__TXBUF_PAYLOAD(b), b->len, LWS_WRITE_TEXT) <
	    (int)b->len) {
		k->closing = 1;
		k->close_err = PARLEY_ECLOSED;
		snprintf(k->close_text, sizeof(k->close_text),
			 "write to the hub failed");
		return -1;
	}
	k->tx_head = b->next;
	if (!k->tx_head)
		k->tx_tail = NULL;
	free(b);
	if (k->tx_head)
		lws_callback_on_writable(wsi);
	return 0;
}

/* The parley.v1 client protocol callback: a switchboard. The client is
 * the connection's opaque user data (not `user`, which some reasons, such
 * as the TLS verification ones, use for something else). */
static int callback(struct lws *wsi, enum lws_callback_reasons reason,
		    void *user, void *in, size_t len)
{
	parley_client *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;

	(void)user;
	if (!c || wsi != c->conn.wsi)
		return 0; /* Not (or no longer) our connection. */
	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		connection_error(c, wsi, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH: {
		char proto[32];

		/* A server that did not pick parley.v1 is not a hub. */
		if (lws_hdr_copy(wsi, proto, sizeof(proto),
				 WSI_TOKEN_PROTOCOL) > 0 &&
		    !strcmp(proto, PARLEY_SUBPROTOCOL))
			return 0;
		c->conn.closing = 1;
		c->conn.close_err = PARLEY_ECONNECT;
		snprintf(c->conn.close_text, sizeof(c->conn.close_text),
			 "%s:%d: the server did not accept the "
			 "subprotocol " PARLEY_SUBPROTOCOL,
			 c->url.host, c->url.port);
		return 1;
	}
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		c->conn.established = 1;
		if (c->conn.closing) {
			lws_callback_on_writable(wsi);
			return 0;
		}
		parley__on_established(c);
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (!c->conn.closing)
			receive(c, wsi, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return writeable(c, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (in && len >= 2) {
			const unsigned char *p = in;

			c->conn.peer_close_code = p[0] << 8 | p[1];
			copy_clean(c->conn.peer_close_text,
				   sizeof(c->conn.peer_close_text),
				   (const char *)p + 2, len - 2);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED: {
		char text[160];
		int err = c->conn.closing ? c->conn.close_err : PARLEY_ECLOSED;

		if (c->conn.closing)
			snprintf(text, sizeof(text), "%s", c->conn.close_text);
		else if (c->conn.peer_close_code)
			snprintf(text, sizeof(text),
				 "the hub closed the connection (%d%s%s)",
				 c->conn.peer_close_code,
				 c->conn.peer_close_text[0] ? ": " : "",
				 c->conn.peer_close_text);
		else
			snprintf(text, sizeof(text), "connection to %s:%d lost",
				 c->url.host, c->url.port);
		conn_ended(c, err, text);
		return 0;
	}
	case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
		/* lws 4.1 reports a close while waiting for the handshake
		 * reply this way, not as CLIENT_CONNECTION_ERROR. */
		connection_error(c, wsi, "closed during the handshake", 27);
		return 0;
	case LWS_CALLBACK_WSI_DESTROY:
		/* The last word on a connection: if nothing ended it yet,
		 * end it now, so that a state never waits forever. */
		if (c->conn.established)
			conn_ended(c, PARLEY_ECLOSED, "connection lost");
		else
			connection_error(c, wsi, "connection closed", 17);
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
    {PARLEY_SUBPROTOCOL, callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* Returns 1 when path names a readable file. */
static int readable(const char *path)
{
	return !path || access(path, R_OK) == 0;
}

/* Loads c's TLS files into a scratch OpenSSL context, so that a bad file
 * fails parley_connect with PARLEY_ETLS instead of every handshake later
 * (lws only logs such problems). Returns 0 or PARLEY_ETLS. */
static int check_tls_files(const parley_client *c)
{
	SSL_CTX *t;
	int ok = 1;

	if (!c->ca_file && !c->cert_file)
		return 0;
	t = SSL_CTX_new(TLS_client_method());
	if (!t)
		return PARLEY_ENOMEM;
	if (c->ca_file)
		ok = SSL_CTX_load_verify_locations(t, c->ca_file, NULL) == 1;
	if (ok && c->cert_file)
		ok = SSL_CTX_use_certificate_chain_file(t, c->cert_file) == 1 &&
		     SSL_CTX_use_PrivateKey_file(t, c->key_file,
						 SSL_FILETYPE_PEM) == 1 &&
		     SSL_CTX_check_private_key(t) == 1;
	SSL_CTX_free(t);
	ERR_clear_error();
	return ok ? 0 : PARLEY_ETLS;
}

int parley__conn_context(parley_client *c)
{
	struct lws_context_creation_info info;
	void *loops[1] = {c->loop};
	int rc;

	if (!readable(c->ca_file) || !readable(c->cert_file) ||
	    !readable(c->key_file))
		return PARLEY_ETLS;
	rc = check_tls_files(c);
	if (rc)
		return rc;
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options =
	    LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.foreign_loops = loops;
	info.client_ssl_ca_filepath = c->ca_file;
	info.client_ssl_cert_filepath = c->cert_file;
	info.client_ssl_private_key_filepath = c->key_file;
	info.timeout_secs = (unsigned)c->opt[PARLEY_OPT_CONNECT_TIMEOUT_S];
	info.connect_timeout_secs = info.timeout_secs;
	info.user = c;
	if (!c->retry) {
		lws_retry_bo_t *r = calloc(1, sizeof(*r));
		long ka = c->opt[PARLEY_OPT_KEEPALIVE_S];

		if (!r)
			return PARLEY_ENOMEM;
		r->secs_since_valid_ping = (uint16_t)ka;
		r->secs_since_valid_hangup = (uint16_t)(2 * ka);
		c->retry = r;
	}
	c->ctx = lws_create_context(&info);
	return c->ctx
		   ? 0
		   : (c->cert_file || c->ca_file ? PARLEY_ETLS : PARLEY_ENOMEM);
}

int parley__conn_open(parley_client *c)
{
	struct lws_client_connect_info i;
	unsigned ends = c->conn_ends;

	parley__conn_reset(c);
	memset(&i, 0, sizeof(i));
	i.context = c->ctx;
	i.address = c->url.host;
	i.port = c->url.port;
	i.ssl_connection = c->url.tls ? LCCSCF_USE_SSL : 0;
	i.path = c->url.path;
	i.host = c->url.host_header;
	i.origin = c->url.host_header;
	i.protocol = PARLEY_SUBPROTOCOL;
	i.userdata = c;
	i.opaque_user_data = c;
	i.pwsi = &c->conn.wsi; /* Known to the callback from the start. */
	i.alpn = "http/1.1";
	if (c->opt[PARLEY_OPT_KEEPALIVE_S] > 0)
		i.retry_and_idle_policy = c->retry;
	if (lws_client_connect_via_info(&i))
		return 0;
	if (c->conn_ends != ends)
		return 0; /* CLIENT_CONNECTION_ERROR already reported it. */
	c->conn.wsi = NULL;
	return PARLEY_ECONNECT;
}

int parley__conn_send(parley_client *c, parley__txbuf *buf)
{
	parley__conn *k = &c->conn;

	if (!buf)
		return PARLEY_ENOMEM;
	if (!k->wsi || !k->established || k->closing) {
		free(buf);
		return PARLEY_ESTATE;
	}
	buf->next = NULL;
	if (k->tx_tail)
		k->tx_tail->next = buf;
	else
		k->tx_head = buf;
	k->tx_tail = buf;
	lws_callback_on_writable(k->wsi);
	return 0;
}

void parley__conn_close(parley_client *c, int err, const char *text)
{
	parley__conn *k = &c->conn;

	if (!k->wsi || k->closing)
		return;
	k->closing = 1;
	k->close_err = err;
	snprintf(k->close_text, sizeof(k->close_text), "%s", text);
	if (k->established)
		lws_callback_on_writable(k->wsi);
	/* Also a deadline, for a hub that never lets us write. */
	lws_set_timeout(k->wsi, PENDING_TIMEOUT_USER_OK,
			k->established ? 2 : LWS_TO_KILL_ASYNC);
}
