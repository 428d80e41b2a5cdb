/* server.c: process wiring: lws as a foreign-loop guest of libuv, the
 * client vhost, signals, the uv_check flush, and a graceful shutdown that
 * sends close frames before the context goes. */
#include "server.h"

#include <libwebsockets.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "cluster.h"
#include "fed.h"
#include "http.h"
#include "log.h"
#include "outq.h"
#include "ws.h"

/* Milliseconds sessions get to close before the context is destroyed. */
#define SHUTDOWN_GRACE_MS 3000

static const struct lws_protocols protocols[] = {
    /* protocols[0] serves HTTP and refuses subprotocol-less upgrades. */
    {"http", http_callback, sizeof(http_session_t), 0, 0, NULL, 0},
    /* tx_packet_size lets one batched write carry a whole gather buffer
     * (PERFORMANCE.md); rx_buffer_size: see HUB_RX_BUF. */
    {"parley.v1", ws_callback, sizeof(conn_t), HUB_RX_BUF, 0, NULL,
     HUB_GATHER + 64},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static void lws_log_emit(int level, const char *line)
{
	char buf[512];
	size_t n = strlen(line);

	/* lws lines start with its own timestamp and end with a newline. */
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	snprintf(buf, sizeof buf, "%.*s", (int)n, line);
	log_event(level & LLL_ERR ? PLOG_ERROR : PLOG_WARN, "lws", "msg=%s",
		  log_str(buf));
}

/* Samples resident memory once a second for the high-water mark. */
static void on_mem_timer(uv_timer_t *t)
{
	hub_t *h = t->data;
	unsigned long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f) {
		if (fscanf(f, "%lu %lu", &pages, &rss) == 2)
			h->rss_bytes =
			    (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
		fclose(f);
	}
}

/* Passes a flush may wait for more input from peer links. */
#define MAX_FLUSH_DEFER 8

static void on_check(uv_check_t *t)
{
	hub_t *h = t->data;

	/* A peer's messages arrive one TLS record (~16 KiB) per pass. While
	 * a link has more waiting, the next pass adds its messages to the
	 * same writes: fan-out from a peer then costs about what fan-out
	 * from a local publisher does. The loop does not sleep meanwhile
	 * (the input is readable), and a few passes add well under 1 ms. */
	if (h->dirty && h->fed && h->flush_deferred < MAX_FLUSH_DEFER &&
	    fed_input_pending(h->fed)) {
		h->flush_deferred++;
		return;
	}
	h->flush_deferred = 0;
	outq_flush_all(h);
}

static void close_handle(uv_handle_t *hd)
{
	if (!uv_is_closing(hd))
		uv_close(hd, NULL);
}

/* Tears down the lws context and our own handles; uv_run returns once
 * every handle is closed. */
static void finish(hub_t *h)
{
	log_info("shutdown", "step=destroy connections_left=%zu", h->n_conns);
	if (h->fed)
		fed_stop(h->fed);
	if (h->cluster) {
		/* Freed by the link's close callback, as the loop winds down.
		 */
		cluster_stop(h->cluster);
		h->cluster = NULL;
	}
	uv_timer_stop(&h->shutdown_timer);
	if (h->lws)
		lws_context_destroy(h->lws);
	close_handle((uv_handle_t *)&h->shutdown_timer);
	close_handle((uv_handle_t *)&h->mem_timer);
	close_handle((uv_handle_t *)&h->flush_check);
	close_handle((uv_handle_t *)&h->flush_idle);
	close_handle((uv_handle_t *)&h->sig_term);
	close_handle((uv_handle_t *)&h->sig_int);
	close_handle((uv_handle_t *)&h->sig_hup);
}

static void on_shutdown_tick(uv_timer_t *t)
{
	hub_t *h = t->data;

	if (!h->n_conns ||
	    uv_now(h->loop) - h->shutdown_start >= SHUTDOWN_GRACE_MS)
		finish(h);
}

static void on_signal(uv_signal_t *s, int signum)
{
	hub_t *h = s->data;

	if (signum == SIGHUP) {
		hub_reload(h);
		return;
	}
	if (h->shutting_down) {
		log_warn("shutdown", "step=forced signal=%d", signum);
		finish(h);
		return;
	}
	h->shutting_down = 1;
	h->shutdown_start = uv_now(h->loop);
	if (h->fed)
		fed_stop(h->fed);
	log_info("shutdown", "step=closing signal=%d connections=%zu", signum,
		 h->n_conns);
	for (conn_t *c = h->conns; c; c = c->next)
		conn_close(c, LWS_CLOSE_STATUS_GOINGAWAY,
			   "server shutting down", 0);
	uv_timer_start(&h->shutdown_timer, on_shutdown_tick, 0, 50);
}

static int start_lws(hub_t *h)
{
	struct lws_context_creation_info ci, vi;
	void *loops[1] = {h->loop};
	const char *host = h->cfg->listen_host;

	memset(&ci, 0, sizeof ci);
	/* No LWS_SERVER_OPTION_VALIDATE_UTF8 here or on any vhost: lws
	 * checks text byte by byte (~8% of a busy hub); ws.c and fed.c
	 * check each whole message with jscan_utf8_valid instead. */
	ci.options = LWS_SERVER_OPTION_LIBUV |
		     LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (h->cfg->fed_enabled)
		ci.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	ci.foreign_loops = loops;
	ci.user = h;
	ci.pcontext = &h->lws;
	ci.count_threads = 1;
	/* Reads are min(rx_buffer_size, pt_serv_buf_size): 4 KiB by default
	 * would split a batch of small frames over many callbacks. */
	ci.pt_serv_buf_size = HUB_RX_BUF;
	ci.port = CONTEXT_PORT_NO_LISTEN;
	h->lws = lws_create_context(&ci);
	if (!h->lws) {
		log_error("start_failed",
			  "reason=\"lws_create_context failed\"");
		return -1;
	}

	memset(&vi, 0, sizeof vi);
	vi.vhost_name = "clients";
	vi.port = h->cfg->listen_port;
	/* lws takes NULL for every address; a literal binds that address. */
	vi.iface = (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") ||
		    !strcmp(host, "*"))
		       ? NULL
		       : host;
	vi.protocols = protocols;
	vi.extensions = NULL; /* No permessage-deflate: frames are raw. */
	vi.alpn = "http/1.1"; /* Never WebSocket over HTTP/2. */
	vi.timeout_secs = (unsigned)h->cfg->limits.handshake_timeout_s;
	/* A connection that holds request-header space without finishing
	 * its request (a dribbled handshake) is bounded by this one. */
	vi.timeout_secs_ah_idle = (unsigned)h->cfg->limits.handshake_timeout_s;
	vi.keepalive_timeout = 15;
	/* lws pings a silent client and drops one that stays silent. */
	h->idle_policy.secs_since_valid_ping =
	    (uint16_t)h->cfg->limits.ping_interval_s;
	h->idle_policy.secs_since_valid_hangup =
	    (uint16_t)h->cfg->limits.idle_timeout_s;
	vi.retry_and_idle_policy = &h->idle_policy;
	h->vhost = lws_create_vhost(h->lws, &vi);
	if (!h->vhost) {
		log_error("start_failed",
			  "reason=\"cannot listen\" host=%s "
			  "port=%d",
			  log_str(host), h->cfg->listen_port);
		return -1;
	}
	if (h->cfg->redis_enabled)
		h->cluster = cluster_new(h);
	if (h->cfg->fed_enabled) {
		h->fed = fed_new(h);
		if (!h->fed || fed_start(h->fed))
			return -1;
	}
	log_info("listening", "node=%s host=%s port=%d path=%s",
		 log_str(h->cfg->node), log_str(host),
		 lws_get_vhost_listen_port(h->vhost), log_str(h->cfg->ws_path));
	return 0;
}

int server_run(hub_t *h)
{
	int rc = 0;

	signal(SIGPIPE, SIG_IGN);
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);

	uv_check_init(h->loop, &h->flush_check);
	uv_idle_init(h->loop, &h->flush_idle);
	uv_timer_init(h->loop, &h->shutdown_timer);
	uv_timer_init(h->loop, &h->mem_timer);
	h->mem_timer.data = h;
	uv_signal_init(h->loop, &h->sig_term);
	uv_signal_init(h->loop, &h->sig_int);
	uv_signal_init(h->loop, &h->sig_hup);
	h->flush_check.data = h->shutdown_timer.data = h;
	h->sig_term.data = h->sig_int.data = h->sig_hup.data = h;

	if (start_lws(h)) {
		rc = 1;
		finish(h);
	} else {
		uv_check_start(&h->flush_check, on_check);
		on_mem_timer(&h->mem_timer);
		uv_timer_start(&h->mem_timer, on_mem_timer, 1000, 1000);
		uv_signal_start(&h->sig_term, on_signal, SIGTERM);
		uv_signal_start(&h->sig_int, on_signal, SIGINT);
		uv_signal_start(&h->sig_hup, on_signal, SIGHUP);
	}
	uv_run(h->loop, UV_RUN_DEFAULT);
	/* Should lws still hold handles, let it finish closing them. */
	if (h->lws) {
		lws_context_destroy(h->lws);
		uv_run(h->loop, UV_RUN_DEFAULT);
	}
	log_info("stopped", "exit_code=%d", rc);
	return rc;
}
