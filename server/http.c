/* http.c: the HTTP switchboard of the client listener: operator endpoints
 * (/healthz, /metrics), the bot API (POST /v1/publish, GET /v1/history)
 * sharing the WebSocket path's checks, and refusal of WebSocket upgrades
 * that name no subprotocol. */
#include "http.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "cluster.h"
#include "codec.h"
#include "err.h"
#include "hub.h"
#include "log.h"
#include "strmap.h"
#include "stats.h"
#include "topic.h"

enum route { R_NONE, R_PUBLISH };

/* Default and largest backlog of GET /v1/history without "last". */
#define HISTORY_DEFAULT_LAST 100

static hub_t *hub_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

/* Starts a response: writes the headers now and the body from
 * HTTP_WRITEABLE. Takes ownership of body (malloc'd). Returns 0, or -1
 * when the connection must be closed. */
/* Numbers a request and makes it findable by answers that come later. */
static void session_register(struct lws *wsi, http_session_t *s)
{
	hub_t *h = hub_of(wsi);
	char key[24];

	s->wsi = wsi;
	s->id = ++h->next_http_id;
	snprintf(key, sizeof key, "%llu", (unsigned long long)s->id);
	strmap_put(h->http_ids, key, s, NULL);
}

/* Returns the request numbered id if its connection is still there. */
static http_session_t *session_find(hub_t *h, uint64_t id)
{
	char key[24];

	snprintf(key, sizeof key, "%llu", (unsigned long long)id);
	return strmap_get(h->http_ids, key);
}

/* Decides the response; WRITEABLE writes it (so an answer that comes
 * later, from Redis, goes out the same way). Takes ownership of body
 * (malloc'd). Returns 0. */
static int respond(struct lws *wsi, http_session_t *s, unsigned status,
		   const char *ctype, char *body, size_t len)
{
	free(s->resp);
	s->resp = body;
	s->resp_len = len;
	s->resp_off = 0;
	s->status = status;
	s->ctype = ctype;
	s->headers_sent = 0;
	lws_callback_on_writable(wsi);
	return 0;
}

static int http_status_of(int err)
{
	const char *w = parley_errcode(err);

	if (!strcmp(w, "bad_json") || !strcmp(w, "bad_request"))
		return 400;
	if (!strcmp(w, "unauthorized"))
		return 401;
	if (!strcmp(w, "forbidden"))
		return 403;
	if (!strcmp(w, "not_found"))
		return 404;
	if (!strcmp(w, "history_gap"))
		return 410;
	if (!strcmp(w, "too_large"))
		return 413;
	if (!strcmp(w, "rate_limited"))
		return 429;
	if (!strcmp(w, "unavailable"))
		return 503;
	return 500;
}

/* Answers {"code":…,"reason":…} with the status matching err. */
static int respond_error(struct lws *wsi, http_session_t *s, int err,
			 const char *reason)
{
	json_t *j = json_pack("{s:s, s:s}", "code", parley_errcode(err),
			      "reason", reason ? reason : parley_strerror(err));
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (!body)
		return -1;
	hub_count_error(hub_of(wsi), err);
	return respond(wsi, s, (unsigned)http_status_of(err),
		       "application/json", body, strlen(body));
}

/* Resolves the Bearer token of the request. Returns 0 with *user (the
 * anonymous user when no token was given; *had_token says which), or
 * PE_UNAUTHORIZED for an unknown token or a malformed header. */
static int bearer_user(struct lws *wsi, hub_t *h, auth_user_t **user,
		       int *had_token)
{
	char hdr[512];
	int n =
	    lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION);

	*had_token = 0;
	if (n <= 0) {
		*user = auth_anonymous(h->auth);
		return lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION)
			   ? PE_UNAUTHORIZED
			   : 0;
	}
	if (n < 7 || strncasecmp(hdr, "Bearer ", 7))
		return PE_UNAUTHORIZED;
	*had_token = 1;
	*user = auth_lookup(h->auth, hdr + 7, (size_t)n - 7);
	return *user ? 0 : PE_UNAUTHORIZED;
}

static void http_pub_done(hub_t *h, int rc, const char *mid, const char *reason,
			  void *ud)
{
	http_session_t *s = session_find(h, (uint64_t)(uintptr_t)ud);
	json_t *j;
	char *out;

	if (!s)
		return; /* The client went away. */
	if (rc) {
		respond_error(s->wsi, s, rc, reason);
		return;
	}
	h->m.messages_in_http++;
	j = json_pack("{s:s}", "mid", mid);
	out = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!out)
		abort();
	respond(s->wsi, s, 200, "application/json", out, strlen(out));
}

static int do_publish(struct lws *wsi, http_session_t *s)
{
	hub_t *h = hub_of(wsi);
	const char *reason = NULL;
	auth_user_t *user;
	const char *topic;
	json_t *req, *body;
	int had_token, rc;

	rc = bearer_user(wsi, h, &user, &had_token);
	if (rc)
		return respond_error(wsi, s, rc, "unknown or malformed token");
	rc = codec_decode_publish(s->req ? s->req : "", s->req_len, &req,
				  &topic, &body, &reason);
	if (rc)
		return respond_error(wsi, s, rc, reason);
	rc = client_publish(h, user, topic, body, http_pub_done,
			    (void *)(uintptr_t)s->id, &reason);
	if (rc == PE_FORBIDDEN && !had_token)
		rc = PE_UNAUTHORIZED, reason = "a bearer token is required";
	json_decref(req);
	if (rc)
		return respond_error(wsi, s, rc, reason);
	return 0;
}

/* Collects history into a JSON array text. */
struct hist_out {
	hub_t *h;   /* For cursors. */
	char *buf;  /* "[{…},{…}" so far. */
	size_t len; /* Used. */
	size_t cap; /* Allocated. */
	int oom;    /* An allocation failed. */
};

static void hist_visit(msg_t *m, void *ud)
{
	struct hist_out *o = ud;
	char cursor[HISTORY_CURSOR_MAX];

	if (o->oom)
		return;
	history_cursor(o->h->history, m->seq, cursor);
	if (o->len + 2 > o->cap) {
		char *n = realloc(o->buf, o->cap * 2 + 2);

		if (!n) {
			o->oom = 1;
			return;
		}
		o->buf = n;
		o->cap = o->cap * 2 + 2;
	}
	o->buf[o->len] = o->len ? ',' : '[';
	o->len++;
	if (codec_msg_json(m, cursor, &o->buf, &o->len, &o->cap))
		o->oom = 1;
}

/* Builds {"topic":…,"messages":[…]} from message JSON texts. */
static char *history_body(const char *topic, const char *const *msgs,
			  const size_t *lens, size_t n, size_t *out_len)
{
	json_t *jt = json_string(topic);
	char *tj = jt ? json_dumps(jt, JSON_ENCODE_ANY) : NULL;
	size_t len = (tj ? strlen(tj) : 0) + 32, o;
	char *body;

	json_decref(jt);
	for (size_t i = 0; i < n; i++)
		len += lens[i] + 1;
	body = tj ? malloc(len) : NULL;
	if (!body) {
		free(tj);
		return NULL;
	}
	o = (size_t)snprintf(body, len, "{\"topic\":%s,\"messages\":[", tj);
	for (size_t i = 0; i < n; i++) {
		if (i)
			body[o++] = ',';
		memcpy(body + o, msgs[i], lens[i]);
		o += lens[i];
	}
	memcpy(body + o, "]}", 3);
	*out_len = o + 2;
	free(tj);
	return body;
}

static void http_hist_done(hub_t *h, int rc, const cluster_item_t *items,
			   size_t n, void *ud)
{
	http_session_t *s = session_find(h, (uint64_t)(uintptr_t)ud);
	const char **msgs;
	size_t *lens, len;
	char *body;

	if (!s)
		return;
	if (rc) {
		respond_error(s->wsi, s, rc,
			      rc == PE_UNAVAILABLE
				  ? "the cluster's Redis is unreachable"
				  : NULL);
		return;
	}
	msgs = malloc((n + 1) * sizeof *msgs);
	lens = malloc((n + 1) * sizeof *lens);
	if (!msgs || !lens)
		abort();
	for (size_t i = 0; i < n; i++) {
		msgs[i] = frame_payload(items[i].frame);
		lens[i] = items[i].frame->payload_len;
	}
	body = history_body(s->topic_req, msgs, lens, n, &len);
	free(msgs);
	free(lens);
	if (!body)
		abort();
	respond(s->wsi, s, 200, "application/json", body, len);
}

static int do_history(struct lws *wsi, http_session_t *s)
{
	hub_t *h = hub_of(wsi);
	char tbuf[600], lbuf[64], cbuf[128];
	const char *topic, *last, *since;
	struct hist_out o = {h, NULL, 0, 0, 0};
	auth_user_t *user;
	int had_token, rc = 0;
	uint64_t seq;
	bool pattern;
	size_t n = HISTORY_DEFAULT_LAST;
	char *end, *body;

	rc = bearer_user(wsi, h, &user, &had_token);
	if (rc)
		return respond_error(wsi, s, rc, "unknown or malformed token");
	topic = lws_get_urlarg_by_name(wsi, "topic=", tbuf, sizeof tbuf);
	last = lws_get_urlarg_by_name(wsi, "last=", lbuf, sizeof lbuf);
	since = lws_get_urlarg_by_name(wsi, "since=", cbuf, sizeof cbuf);
	if (!topic || topic_validate_filter(topic, strlen(topic), &pattern))
		return respond_error(wsi, s, PE_BAD_PATTERN,
				     "need a valid topic or pattern");
	if (last && since)
		return respond_error(wsi, s, PE_BAD_REQUEST,
				     "give last or since, not both");
	if (!auth_can_subscribe(user, topic))
		return respond_error(wsi, s,
				     had_token ? PE_FORBIDDEN : PE_UNAUTHORIZED,
				     "not permitted to read this topic");
	if (last) {
		unsigned long long v = strtoull(last, &end, 10);

		if (!*last || *end || *last == '-' || *last == '+')
			return respond_error(wsi, s, PE_BAD_REQUEST,
					     "last must be a number");
		n = v > h->cfg->history_length ? h->cfg->history_length
					       : (size_t)v;
	}
	if (h->cluster) {
		int since_mode = since != NULL;

		seq = 0;
		if (since) {
			rc = cluster_parse_cursor(h->cluster, since, &seq);
			if (rc)
				return respond_error(wsi, s, rc, NULL);
		}
		snprintf(s->topic_req, sizeof s->topic_req, "%s", topic);
		if (cluster_backlog(h->cluster, topic, 0, since_mode, seq, n,
				    http_hist_done, (void *)(uintptr_t)s->id))
			return respond_error(wsi, s, PE_UNAVAILABLE,
					     "the cluster's Redis is "
					     "unreachable");
		return 0;
	}
	o.cap = 4096;
	o.buf = malloc(o.cap);
	if (!o.buf)
		return -1;
	if (since) {
		rc = history_parse_cursor(h->history, since, &seq);
		if (!rc)
			rc = history_since(h->history, topic, seq, hist_visit,
					   &o);
	} else {
		history_last(h->history, topic, n, hist_visit, &o);
	}
	if (rc || o.oom) {
		free(o.buf);
		return respond_error(wsi, s, rc ? rc : PE_NOMEM, NULL);
	}
	if (!o.len)
		o.buf[o.len++] = '[';
	json_t *jt = json_string(topic);
	char *tj = jt ? json_dumps(jt, JSON_ENCODE_ANY) : NULL;

	json_decref(jt);
	size_t blen = o.len + (tj ? strlen(tj) : 0) + 32;

	body = tj ? malloc(blen) : NULL;
	if (!body) {
		free(tj);
		free(o.buf);
		return -1;
	}
	blen = (size_t)snprintf(body, blen, "{\"topic\":%s,\"messages\":", tj);
	memcpy(body + blen, o.buf, o.len);
	blen += o.len;
	memcpy(body + blen, "]}", 3);
	blen += 2;
	free(tj);
	free(o.buf);
	return respond(wsi, s, 200, "application/json", body, blen);
}

static int do_static_text(struct lws *wsi, http_session_t *s, char *body,
			  size_t len, int status, const char *ctype)
{
	if (!body)
		return -1;
	return respond(wsi, s, (unsigned)status, ctype, body, len);
}

/* Returns the MIME type for a file name, or NULL for types not served. */
static const char *mime_of(const char *path)
{
	static const char *const map[][2] = {
	    {".html", "text/html; charset=utf-8"},
	    {".js", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".ico", "image/x-icon"},
	    {".json", "application/json"},
	    {".txt", "text/plain; charset=utf-8"}};
	const char *dot = strrchr(path, '.');

	if (!dot)
		return NULL;
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strcmp(dot, map[i][0]))
			return map[i][1];
	return NULL;
}

/* Serves a file of the web root. Only plain names are accepted (letters,
 * digits, '-', '_', '.', '/' without ".." or hidden files), so a request
 * can never leave the root. */
static int serve_file(struct lws *wsi, http_session_t *s, const char *path)
{
	/* The page talks to this hub only and never runs inline script. */
	static const char headers[] =
	    "content-security-policy: default-src 'self'; connect-src 'self' "
	    "ws: wss:; img-src 'self' data:; style-src 'self'; "
	    "script-src 'self'; frame-ancestors 'none'\r\n"
	    "x-content-type-options: nosniff\r\n"
	    "referrer-policy: no-referrer\r\n";
	hub_t *h = hub_of(wsi);
	char full[1024];
	const char *mime;
	int n;

	if (!strcmp(path, "/"))
		path = "/index.html";
	for (const char *p = path; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		      *p == '.' || *p == '/'))
			return respond_error(wsi, s, PE_NOT_FOUND,
					     "no such resource");
		if (*p == '.' && p[-1] == '/')
			return respond_error(wsi, s, PE_NOT_FOUND,
					     "no such resource");
	}
	mime = mime_of(path);
	if (!mime || !h->webroot ||
	    snprintf(full, sizeof full, "%s%s", h->webroot, path) >=
		(int)sizeof full)
		return respond_error(wsi, s, PE_NOT_FOUND, "no such resource");
	n = lws_serve_http_file(wsi, full, mime, headers, sizeof headers - 1);
	if (n < 0)
		return -1;
	if (n > 0 && lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}

static int on_request(struct lws *wsi, http_session_t *s, const char *path)
{
	hub_t *h = hub_of(wsi);
	char *uri;
	int ulen, meth = lws_http_get_uri_and_method(wsi, &uri, &ulen);
	size_t len = 0;
	int status = 200;
	char *body;

	if (!strcmp(path, "/v1/publish")) {
		if (meth != LWSHUMETH_POST)
			return respond_error(wsi, s, PE_BAD_REQUEST,
					     "use POST");
		s->route = R_PUBLISH;
		char cl[32];

		if (lws_hdr_copy(wsi, cl, sizeof cl,
				 WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
		    strtoull(cl, NULL, 10) >
			h->live->limits.max_frame_bytes + 1024) {
			s->refused = 1;
			return respond_error(wsi, s, PE_TOO_LARGE,
					     "request body too large");
		}
		return 0; /* The body arrives in HTTP_BODY. */
	}
	if (meth != LWSHUMETH_GET && meth != LWSHUMETH_HEAD)
		return respond_error(wsi, s, PE_BAD_REQUEST,
				     "method not allowed");
	if (!strcmp(path, "/healthz")) {
		body = stats_health(h, &len, &status);
		return do_static_text(wsi, s, body, len, status,
				      "application/json");
	}
	if (!strcmp(path, "/metrics")) {
		body = stats_metrics(h, &len);
		return do_static_text(wsi, s, body, len, 200,
				      "text/plain; version=0.0.4");
	}
	if (!strcmp(path, "/v1/history"))
		return do_history(wsi, s);
	return serve_file(wsi, s, path);
}

static int on_body(struct lws *wsi, http_session_t *s, const void *in,
		   size_t len)
{
	hub_t *h = hub_of(wsi);
	char *n;

	if (s->refused || !len)
		return 0;
	if (s->req_len + len > h->live->limits.max_frame_bytes + 1024) {
		s->refused = 1;
		return respond_error(wsi, s, PE_TOO_LARGE,
				     "request body too large");
	}
	n = realloc(s->req, s->req_len + len + 1);
	if (!n)
		return -1;
	s->req = n;
	memcpy(s->req + s->req_len, in, len);
	s->req_len += len;
	return 0;
}

static int write_headers(struct lws *wsi, http_session_t *s)
{
	unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start;
	unsigned char *end = buf + sizeof buf - 1;

	s->headers_sent = 1;
	if (lws_add_http_common_headers(wsi, s->status, s->ctype, s->resp_len,
					&p, end) ||
	    lws_add_http_header_by_name(
		wsi, (const unsigned char *)"cache-control:",
		(const unsigned char *)"no-store", 8, &p, end) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	if (!s->resp_len)
		return lws_http_transaction_completed(wsi) ? -1 : 0;
	lws_callback_on_writable(wsi);
	return 0;
}

static int on_writeable(struct lws *wsi, http_session_t *s)
{
	size_t chunk = s->resp_len - s->resp_off;
	unsigned char *buf;
	int final, n;

	if (!s->status)
		return 0; /* Still waiting for the answer (cluster). */
	if (!s->headers_sent)
		return write_headers(wsi, s);
	if (!s->resp)
		return 0;
	if (chunk > 32768)
		chunk = 32768;
	final = s->resp_off + chunk == s->resp_len;
	/* lws needs LWS_PRE writable bytes before what it sends. */
	buf = malloc(LWS_PRE + chunk);
	if (!buf)
		return -1;
	memcpy(buf + LWS_PRE, s->resp + s->resp_off, chunk);
	n = lws_write(wsi, buf + LWS_PRE, chunk,
		      final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
	free(buf);
	if (n < (int)chunk)
		return -1;
	s->resp_off += chunk;
	if (!final) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	free(s->resp);
	s->resp = NULL;
	if (s->refused)
		return -1; /* The unread body makes the connection unusable. */
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void session_reset(struct lws *wsi, http_session_t *s)
{
	if (s->id) {
		char key[24];

		snprintf(key, sizeof key, "%llu", (unsigned long long)s->id);
		strmap_del(hub_of(wsi)->http_ids, key);
	}
	free(s->req);
	free(s->resp);
	memset(s, 0, sizeof *s);
}

int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		  void *in, size_t len)
{
	http_session_t *s = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		session_reset(wsi, s);
		session_register(wsi, s);
		return on_request(wsi, s, in ? (const char *)in : "/");
	case LWS_CALLBACK_HTTP_BODY:
		return on_body(wsi, s, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (s->refused || s->route != R_PUBLISH)
			return 0;
		return do_publish(wsi, s);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return on_writeable(wsi, s);
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		/* A WebSocket upgrade without the parley.v1 subprotocol; the
		 * role is already ws, so the answer is written raw. */
		static const char resp[] =
		    "HTTP/1.1 400 Bad Request\r\nContent-Type: "
		    "application/json\r\nContent-Length: 65\r\nConnection: "
		    "close\r\n\r\n{\"code\":\"bad_request\",\"reason\":\"offer "
		    "the parley.v1 subprotocol\"}";
		unsigned char buf[LWS_PRE + sizeof resp];

		hub_of(wsi)->m.connections_rejected++;
		log_info("ws_refused", "reason=\"no parley.v1 subprotocol\"");
		memcpy(buf + LWS_PRE, resp, sizeof resp - 1);
		lws_write(wsi, buf + LWS_PRE, sizeof resp - 1, LWS_WRITE_RAW);
		return 1;
	}
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (s)
			session_reset(wsi, s);
		break;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}
