/* stats.c: /healthz and /metrics rendering from the hub's counters. */
#include "stats.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "conn.h"
#include "err.h"
#include "fed.h"

struct out {
	char *p;    /* Text. */
	size_t len; /* Used. */
	size_t cap; /* Allocated. */
	int oom;    /* An allocation failed. */
};

static void outf(struct out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		if (o->oom)
			return;
		va_start(ap, fmt);
		n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			o->oom = 1;
			return;
		}
		if ((size_t)n < o->cap - o->len) {
			o->len += (size_t)n;
			return;
		}
		char *np = realloc(o->p, o->cap * 2 + (size_t)n);

		if (!np) {
			o->oom = 1;
			return;
		}
		o->p = np;
		o->cap = o->cap * 2 + (size_t)n;
	}
}

static void metric(struct out *o, const char *name, const char *type,
		   const char *help, unsigned long long v)
{
	outf(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type,
	     name, v);
}

/* Writes one per-peer family: name, type, help, then a value per peer. */
static void peer_family(struct out *o, const char *name, const char *type,
			const char *help, const fed_peer_view_t *v, size_t n,
			size_t field)
{
	outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (size_t i = 0; i < n; i++)
		outf(o, "%s{peer=\"%s\"} %llu\n", name, v[i].name,
		     (unsigned long long)*(
			 const uint64_t *)((const char *)v[i].stats + field));
}

static void fed_metrics(struct out *o, const fed_t *f)
{
	fed_peer_view_t v[256];
	size_t n = fed_peers_view(f, v, 256);

	if (n > 256)
		n = 256;
	outf(o, "# HELP parley_fed_link_up 1 when the link to the peer is "
		"up.\n# TYPE parley_fed_link_up gauge\n");
	for (size_t i = 0; i < n; i++)
		outf(o, "parley_fed_link_up{peer=\"%s\",state=\"%s\"} %d\n",
		     v[i].name, v[i].state, !strcmp(v[i].state, "up"));
	outf(o, "# HELP parley_fed_queue_bytes Bytes queued to the peer.\n"
		"# TYPE parley_fed_queue_bytes gauge\n");
	for (size_t i = 0; i < n; i++)
		outf(o, "parley_fed_queue_bytes{peer=\"%s\"} %zu\n", v[i].name,
		     v[i].queue_bytes);
	peer_family(o, "parley_fed_messages_in_total", "counter",
		    "Messages accepted from the peer.", v, n,
		    offsetof(fed_stats_t, msgs_in));
	peer_family(o, "parley_fed_messages_out_total", "counter",
		    "Messages queued to the peer (live and replay).", v, n,
		    offsetof(fed_stats_t, msgs_out));
	peer_family(o, "parley_fed_bytes_in_total", "counter",
		    "Frame bytes received from the peer.", v, n,
		    offsetof(fed_stats_t, bytes_in));
	peer_family(o, "parley_fed_bytes_out_total", "counter",
		    "Bytes written to the peer.", v, n,
		    offsetof(fed_stats_t, bytes_out));
	peer_family(o, "parley_fed_batches_in_total", "counter",
		    "Batch frames (several messages in one frame) received "
		    "from the peer.",
		    v, n, offsetof(fed_stats_t, batches_in));
	peer_family(o, "parley_fed_batches_out_total", "counter",
		    "Batch frames written to the peer.", v, n,
		    offsetof(fed_stats_t, batches_out));
	peer_family(o, "parley_fed_replayed_total", "counter",
		    "Messages sent to the peer as replay after a reconnect.", v,
		    n, offsetof(fed_stats_t, replayed));
	peer_family(o, "parley_fed_gaps_total", "counter",
		    "Gaps the peer reported (it no longer held what we "
		    "missed).",
		    v, n, offsetof(fed_stats_t, gaps));
	peer_family(o, "parley_fed_connects_total", "counter",
		    "Links to the peer that came up.", v, n,
		    offsetof(fed_stats_t, connects));
	outf(o, "# HELP parley_fed_dropped_total Messages from the peer "
		"dropped, by reason.\n# TYPE parley_fed_dropped_total "
		"counter\n");
	for (size_t i = 0; i < n; i++)
		for (int d = 0; d < FED_DROP__COUNT; d++)
			outf(o,
			     "parley_fed_dropped_total{peer=\"%s\",reason="
			     "\"%s\"} %llu\n",
			     v[i].name, fed_drop_name((enum fed_drop)d),
			     (unsigned long long)v[i].stats->dropped[d]);
}

char *stats_metrics(const hub_t *h, size_t *len)
{
	static const char *const codes[] = {
	    "bad_json",	   "bad_request",  "unauthorized", "forbidden",
	    "too_large",   "rate_limited", "unknown_op",   "history_gap",
	    "unavailable", "not_found",	   "internal"};
	const hub_metrics_t *m = &h->m;
	struct out o = {malloc(4096), 0, 4096, 0};
	size_t queued = 0, queued_frames = 0;

	if (!o.p)
		return NULL;
	for (const conn_t *c = h->conns; c; c = c->next) {
		queued += c->out.bytes;
		queued_frames += c->out.len;
	}
	metric(&o, "parley_connections", "gauge",
	       "Open client WebSocket sessions.", h->n_conns);
	metric(&o, "parley_connections_total", "counter",
	       "Client WebSocket sessions opened.", m->connections_total);
	metric(&o, "parley_connections_rejected_total", "counter",
	       "WebSocket handshakes refused.", m->connections_rejected);
	metric(&o, "parley_subscriptions", "gauge",
	       "Client subscriptions held.", router_count(h->router));
	outf(&o,
	     "# HELP parley_messages_in_total Messages accepted, by "
	     "path.\n# TYPE parley_messages_in_total counter\n"
	     "parley_messages_in_total{path=\"ws\"} %llu\n"
	     "parley_messages_in_total{path=\"http\"} %llu\n",
	     (unsigned long long)m->messages_in_ws,
	     (unsigned long long)m->messages_in_http);
	metric(&o, "parley_batches_in_total", "counter",
	       "Batch frames received from client sessions.", m->batches_in);
	metric(&o, "parley_messages_out_total", "counter",
	       "Messages queued to client sessions (live and backlog).",
	       m->messages_out);
	metric(&o, "parley_backlog_messages_total", "counter",
	       "Messages sent as subscription backlog.", m->backlog_messages);
	metric(&o, "parley_bytes_in_total", "counter",
	       "WebSocket payload bytes received from clients.", m->bytes_in);
	metric(&o, "parley_bytes_out_total", "counter",
	       "Bytes written to client sessions.", m->bytes_out);
	metric(&o, "parley_writes_total", "counter",
	       "Batched socket writes to client sessions.", m->writes);
	metric(&o, "parley_queue_bytes", "gauge",
	       "Bytes queued to client sessions, not yet written.", queued);
	metric(&o, "parley_queue_frames", "gauge",
	       "Frames queued to client sessions, not yet written.",
	       queued_frames);
	metric(&o, "parley_slow_consumer_disconnects_total", "counter",
	       "Sessions cut off because their queue exceeded "
	       "limits.max_queue_bytes.",
	       m->slow_consumers);
	metric(&o, "parley_dropped_messages_total", "counter",
	       "Deliveries dropped because the receiving session was "
	       "closing or cut off.",
	       m->dropped_messages);
	metric(&o, "parley_history_messages", "gauge",
	       "Messages held in history.", history_msg_count(h->history));
	metric(&o, "parley_history_topics", "gauge", "Topics held in history.",
	       history_topic_count(h->history));
	metric(&o, "parley_resident_memory_bytes", "gauge",
	       "Resident memory sampled each second.", h->rss_bytes);
	metric(&o, "parley_memory_refusals_total", "counter",
	       "Publishes refused above limits.max_memory_mb.",
	       m->memory_refusals);
	metric(&o, "parley_reloads_total", "counter",
	       "Successful configuration reloads.", m->reloads);
	metric(&o, "parley_reload_failures_total", "counter",
	       "Rejected configuration reloads.", m->reload_failures);
	outf(&o, "# HELP parley_errors_total Error answers sent, by code.\n"
		 "# TYPE parley_errors_total counter\n");
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
		unsigned long long n = 0;

		for (int e = PE__FIRST + 1; e < PE__LAST; e++)
			if (!strcmp(parley_errcode(e), codes[i]))
				n += m->errors[e - PE__FIRST - 1];
		outf(&o, "parley_errors_total{code=\"%s\"} %llu\n", codes[i],
		     n);
	}
	if (h->fed)
		fed_metrics(&o, h->fed);
	if (h->cluster) {
		cluster_stats_t cs;

		cluster_stats(h->cluster, &cs);
		metric(&o, "parley_redis_up", "gauge",
		       "1 when the cluster's Redis link is up.",
		       (unsigned long long)cluster_up(h->cluster));
		metric(&o, "parley_redis_stored_total", "counter",
		       "Messages stored through Redis.", cs.stored);
		metric(&o, "parley_redis_store_errors_total", "counter",
		       "Stores refused or lost with the link (client told).",
		       cs.store_errors);
		metric(&o, "parley_redis_duplicates_total", "counter",
		       "Stores whose mid was already there.", cs.duplicates);
		metric(&o, "parley_redis_received_total", "counter",
		       "Messages received from Redis pub/sub.", cs.received);
		metric(&o, "parley_redis_redelivered_total", "counter",
		       "Second copies from Redis dropped (channel + pattern).",
		       cs.redelivered);
		metric(&o, "parley_redis_backlogs_total", "counter",
		       "Backlog reads from Redis.", cs.backlogs);
		metric(&o, "parley_redis_outages_total", "counter",
		       "Times the Redis link went down.", cs.outages);
		metric(&o, "parley_redis_commands_total", "counter",
		       "Commands sent to Redis.", cs.commands);
		metric(&o, "parley_redis_writes_total", "counter",
		       "Socket writes to Redis (commands are pipelined).",
		       cs.writes);
		metric(&o, "parley_redis_pending", "gauge",
		       "Commands awaiting a reply from Redis.", cs.pending);
	}
	metric(&o, "parley_uptime_seconds", "gauge",
	       "Seconds since this instance started.",
	       (unsigned long long)(hub_now_ms() - (int64_t)h->started_ms) /
		   1000);
	if (o.oom) {
		free(o.p);
		return NULL;
	}
	*len = o.len;
	return o.p;
}

char *stats_health(const hub_t *h, size_t *len, int *status)
{
	json_t *j, *peers = json_array();
	char *s;

	*status = h->shutting_down ? 503 : 200;
	if (h->fed) {
		fed_peer_view_t v[256];
		size_t n = fed_peers_view(h->fed, v, 256);

		for (size_t i = 0; i < n && i < 256; i++)
			json_array_append_new(
			    peers,
			    json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:s}",
				      "name", v[i].name, "state", v[i].state,
				      "why", v[i].why, "direction",
				      v[i].direction, "replaying",
				      v[i].replaying, "queue_bytes",
				      (json_int_t)v[i].queue_bytes, "rx_cursor",
				      v[i].rx_cursor));
	}
	j = json_pack(
	    "{s:s, s:s, s:s, s:I, s:I, s:I, s:{s:I, s:I}, s:{s:s}, s:{s:b, "
	    "s:b, s:o}}",
	    "status", h->shutting_down ? "stopping" : "ok", "node",
	    h->cfg->node, "version", PARLEY_VERSION, "uptime_s",
	    (json_int_t)((hub_now_ms() - (int64_t)h->started_ms) / 1000),
	    "connections", (json_int_t)h->n_conns, "subscriptions",
	    (json_int_t)router_count(h->router), "history", "topics",
	    (json_int_t)history_topic_count(h->history), "messages",
	    (json_int_t)history_msg_count(h->history), "redis", "state",
	    h->cluster		    ? cluster_state(h->cluster)
	    : h->cfg->redis_enabled ? "stopped"
				    : "disabled",
	    "federation", "enabled", h->cfg->fed_enabled, "gateway",
	    h->fed ? fed_is_gateway(h->fed) : 0, "peers", peers);
	if (!j)
		return NULL;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (s)
		*len = strlen(s);
	return s;
}
