/* hub.h: the state of one parleyd instance and its publish path: a message
 * accepted from any source is stored in history, encoded once and queued on
 * every matching local subscriber. */
#ifndef PARLEY_HUB_H
#define PARLEY_HUB_H

#include <stdint.h>
#include <libwebsockets.h>
#include <uv.h>

#include "auth.h"
#include "config.h"
#include "history.h"
#include "msg.h"
#include "router.h"

/* The first field of every router owner, so a match callback can tell a
 * client session from a peer link. */
enum owner_kind { OWNER_CONN = 1, OWNER_PEER = 2 };

struct lws_context;
struct lws_vhost;
struct conn;

/* Counters exported by /metrics. Monotonic unless noted. */
typedef struct hub_metrics {
	uint64_t connections_total;    /* Client sessions opened. */
	uint64_t connections_rejected; /* Handshakes refused. */
	uint64_t messages_in_ws;       /* Publishes accepted over parley.v1. */
	uint64_t messages_in_http;     /* Publishes accepted over HTTP. */
	uint64_t batches_in;	       /* Batch frames from clients. */
	uint64_t messages_out;	       /* Deliveries queued to clients. */
	uint64_t bytes_in;	       /* Client frame bytes received. */
	uint64_t bytes_out;	       /* Bytes handed to lws_write. */
	uint64_t writes;	       /* lws_write calls on the fast path. */
	uint64_t backlog_messages;     /* Messages sent as sub backlog. */
	uint64_t slow_consumers;       /* Connections cut for a full queue. */
	uint64_t dropped_messages;     /* Deliveries dropped (closing or
					  cut-off receivers). */
	uint64_t errors[32];	       /* Error frames sent, by err code
					  index (err - PE__FIRST - 1). */
	uint64_t memory_refusals;      /* Publishes refused above the memory
					 high-water mark. */
	uint64_t reloads;	       /* Successful SIGHUP reloads. */
	uint64_t reload_failures;      /* Rejected SIGHUP reloads. */
} hub_metrics_t;

typedef struct hub {
	uv_loop_t *loop;	   /* The one loop of this process. */
	config_t *cfg;		   /* Configuration loaded at start; its
				      non-reloadable keys are the ones used. */
	config_t *live;		   /* Latest loaded configuration (== cfg
				      until the first reload); reloadable keys
				      (auth, limits) come from here. */
	char *config_path;	   /* File reloaded on SIGHUP. */
	auth_t *auth;		   /* Built from live. */
	router_t *router;	   /* Local client subscriptions. */
	history_t *history;	   /* Stored messages. */
	struct presence *presence; /* Who is on which topic. */
	struct fed *fed;	   /* Federation, or NULL when off. */
	struct cluster *cluster;   /* Redis cluster mode, or NULL. */
	struct strmap *conn_ids; /* Session id (decimal) to conn_t, for replies
				    that arrive after a session may be gone. */
	struct strmap *http_ids; /* Same for HTTP requests. */
	uint64_t next_http_id;	 /* Numbers HTTP requests. */
	char *webroot;		 /* Directory of the web page files. */
	struct lws_context *lws; /* NULL once destroyed. */
	struct lws_vhost *vhost; /* Client listener. */
	lws_retry_bo_t idle_policy; /* Ping and idle bounds of sessions. */

	struct conn *conns;    /* Every open client session (list). */
	size_t n_conns;	       /* Length of conns. */
	struct outq *dirty;    /* Queues with frames to flush. */
	unsigned char *gather; /* Batch buffer (LWS_PRE + HUB_GATHER). */

	uv_check_t flush_check;	   /* End-of-pass flush of dirty sessions. */
	unsigned flush_deferred;   /* Passes the flush waited for more
				      input from a peer link. */
	uv_idle_t flush_idle;	   /* Keeps the loop from sleeping while
				      frames wait (only while dirty). */
	uv_signal_t sig_term;	   /* Graceful shutdown. */
	uv_signal_t sig_int;	   /* Graceful shutdown. */
	uv_signal_t sig_hup;	   /* Reload. */
	uv_timer_t shutdown_timer; /* Waits for sessions to close. */
	uv_timer_t mem_timer;	   /* Samples resident memory. */
	size_t rss_bytes;	   /* Last sampled resident memory. */
	struct strmap *per_ip;	   /* Client IP to open session count. */
	int shutting_down;	   /* 1 once SIGTERM/SIGINT arrived. */
	uint64_t shutdown_start;   /* uv_now when shutdown began. */
	int exit_code;		   /* Returned by hub_run. */

	uint64_t mid_rand;    /* Random part of this process's mids. */
	char mid_rand32[9];   /* The same as it stands in them. */
	uint64_t mid_counter; /* Increments per mid. */
	char mid_last[27];    /* The last mid made (make_mid). */
	int64_t mid_last_ms;  /* Its milliseconds. */
	uint64_t mid_last_hi; /* Its counter but the last digit. */
	uint64_t started_ms;  /* Wall clock at start. */
	hub_metrics_t m;      /* Counters. */
} hub_t;

/* Largest batch gathered into one write. */
#define HUB_GATHER (64 * 1024)

/* rx_buffer_size of the WebSocket protocols, and the context's
 * pt_serv_buf_size. lws reads at most this much per readable event, so it
 * sets how many frames one loop pass takes in, and so how many deliveries
 * one write to a subscriber carries (8 KiB: ~40 publishes a pass; 64 KiB:
 * ~300; 128 KiB: ~600, and 1,000 topics with one subscriber each went
 * from ~105k to ~125k deliveries/s). 256 KiB took a whole window of 1,000
 * publishes in one pass, and such a publisher then waited on the hub
 * every pass: K=1 fell from ~1.4M to ~1.25M deliveries/s. lws mallocs it
 * per connection, but touches only what one frame's payload fills (at most
 * max_frame_bytes): RSS per idle connection did not change. */
#define HUB_RX_BUF (128 * 1024)

/* Returns a hub for cfg (ownership moves to the hub; config_path is
 * copied) on loop, with its router, history and auth built, but nothing
 * listening yet. Aborts on out-of-memory. */
hub_t *hub_new(uv_loop_t *loop, config_t *cfg, const char *config_path);

/* Frees the hub and everything it owns. Sessions must be gone. */
void hub_free(hub_t *h);

/* Returns the current wall-clock time in milliseconds. */
int64_t hub_now_ms(void);

/* Builds a new message on topic (topic_len bytes) authored by from on
 * this node (mid, ts and path set; nothing stored): checks nothing about
 * the author (callers check permissions and limits) but refuses while
 * shutting down or above the memory high-water mark (PE_UNAVAILABLE), and
 * a new topic beyond limits.max_topics (PE_TOO_MANY). Returns 0 and *out
 * (a reference). */
int hub_new_msg(hub_t *h, const char *topic, size_t topic_len, const char *from,
		const char *body, size_t body_len, msg_t **out);

/* Returns 1 when mid (len bytes) was made by this process (by
 * hub_new_msg). */
int hub_mid_is_own(const hub_t *h, const char *mid, size_t len);

/* Queues a live message's frame to every local session subscribed to
 * topic (once per session); hash is strmap_hash(topic). */
void hub_deliver(hub_t *h, const char *topic, size_t hash, uint64_t seq,
		 frame_t *f);

/* Stores a complete message (mid, origin, from, ts and path set; from a
 * peer, or built by hub_new_msg), taking its own references:
 * history, one encoding for local sessions, delivery, then forwarding to
 * peers. Returns 0 or PE_UNAVAILABLE while shutting down. */
int hub_accept(hub_t *h, msg_t *m);

/* Re-reads the configuration file and applies its reloadable keys. On any
 * error the running configuration stays. Returns 0 or a negative code. */
int hub_reload(hub_t *h);

/* Returns 1 when resident memory is above limits.max_memory_mb. */
int hub_memory_high(const hub_t *h);

/* Counts one error frame of code err. */
void hub_count_error(hub_t *h, int err);

#endif
