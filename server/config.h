/* config.h: parleyd's configuration, loaded from one JSON file (DESIGN.md
 * "Configuration"). One table of keys drives parsing, bounds, defaults,
 * `--check` and the documentation in config/. */
#ifndef PARLEY_CONFIG_H
#define PARLEY_CONFIG_H

#include <stddef.h>

/* A list of validated topic filters (topics or patterns). */
typedef struct config_patterns {
	char **v; /* Owned strings. */
	size_t n; /* Count. */
} config_patterns_t;

/* One entry of auth.tokens. */
typedef struct config_token {
	char *user;		     /* User name, without "@node". */
	unsigned char sha256[32];    /* SHA-256 of the token. */
	config_patterns_t subscribe; /* Filters this user may subscribe to. */
	config_patterns_t publish;   /* Filters this user may publish to. */
} config_token_t;

/* One entry of federation.peers. */
typedef struct config_peer {
	char *name;		   /* Node name, the certificate identity. */
	char *url;		   /* wss:// URL we dial. */
	config_patterns_t export_; /* What we send them. */
	config_patterns_t import_; /* What we accept from them. */
	int relay;		   /* May send messages of other origins. */
} config_peer_t;

typedef struct config {
	char *node;			   /* This node's DNS-style name. */
	char *listen_host;		   /* Client listener address. */
	int listen_port;		   /* Client listener port. */
	char *ws_path;			   /* WebSocket path, default "/ws". */
	config_patterns_t allowed_origins; /* Web origins allowed to open
					      sessions (strings). */
	char *log_level;		   /* debug, info, warn or error. */
	size_t history_length;		   /* Messages kept per topic. */
	char *http_root; /* Web page directory, or NULL for the
			    installed or source-tree default. */
	config_patterns_t presence_topics; /* Topics with presence. */

	config_patterns_t anon_subscribe; /* auth.anonymous.subscribe. */
	config_patterns_t anon_publish;	  /* auth.anonymous.publish. */
	config_token_t *tokens;		  /* auth.tokens. */
	size_t n_tokens;

	int fed_enabled;      /* A "federation" section is present. */
	char *fed_host;	      /* federation.listen.host. */
	int fed_port;	      /* federation.listen.port. */
	char *fed_ca;	      /* CA file (PEM). */
	char *fed_cert;	      /* This node's certificate (PEM). */
	char *fed_key;	      /* This node's key (PEM). */
	config_peer_t *peers; /* federation.peers. */
	size_t n_peers;
	char *fed_state_file;	    /* Where per-peer cursors are saved, or NULL
				       for "<config dir>/<node>.fedstate". */
	int fed_ping_ms;	    /* Ping interval on links. */
	int fed_dead_ms;	    /* Silence after which a link is dead. */
	int fed_backoff_min_ms;	    /* First redial delay. */
	int fed_backoff_max_ms;	    /* Largest redial delay. */
	size_t fed_dedup_window;    /* Mids remembered for dedup. */
	size_t fed_max_queue_bytes; /* Bytes queued per link. */

	int redis_enabled;  /* A "redis" section is present. */
	char *redis_host;   /* redis.host. */
	int redis_port;	    /* redis.port. */
	char *redis_prefix; /* Prefix of every Redis key and channel. */

	struct {
		size_t max_frame_bytes;	   /* Largest client frame accepted. */
		size_t max_subscriptions;  /* Per connection. */
		size_t max_queue_bytes;	   /* Outgoing bytes queued per
					      connection before it is cut. */
		double publish_per_second; /* Per connection. */
		double publish_burst;	   /* Bucket size per connection. */
		double token_publish_per_second; /* Per token, all its
						    connections and HTTP. */
		size_t max_connections; /* Client connections per instance. */
		size_t max_errors;	/* Bad requests in a row before a
					   connection is closed (1008). */
		size_t max_topics;	/* Topics held in history. */
		size_t max_connections_per_ip; /* Sessions per client IP. */
		int handshake_timeout_s;       /* Bound on request/handshake. */
		int ping_interval_s;	       /* Ping a silent client after. */
		int idle_timeout_s;	       /* Drop a silent client after. */
		size_t max_memory_mb; /* RSS high-water mark; 0: off. */
	} limits;
} config_t;

/* Loads and validates the file at path. Returns 0 and a new config in
 * *out, or a negative code with a message naming the key and line (e.g.
 * "config.json:12: limits.max_frame_bytes: must be between 256 and
 * 16777216") in err. Never aborts on bad input. */
int config_load(const char *path, config_t **out, char *err, size_t errlen);

/* Same as config_load, from a string (name is used in messages). */
int config_parse(const char *text, size_t len, const char *name, config_t **out,
		 char *err, size_t errlen);

/* Checks what the table cannot: that the federation's CA, certificate
 * and key files are readable and hold PEM data (relative paths are
 * relative to the working directory, as parleyd opens them). Returns 0,
 * or PE_CONFIG with the key and the reason in err. Used at start, by
 * --check and on reload (a reload naming broken files is refused whole,
 * never half applied). */
int config_check_files(const config_t *c, char *err, size_t errlen);

/* Frees a config. NULL is a no-op. */
void config_free(config_t *c);

/* Writes the documentation of every key (from the table) as Markdown to
 * the stream (a FILE *). Used to generate config/README.md's key list. */
void config_write_docs(void *stream);

/* Readies next, freshly loaded on SIGHUP, to replace cur: every key the
 * table marks as not reloadable gets cur's value back, so that only
 * reloadable keys change. Returns how many such keys differed; their names
 * are written, comma-separated, into changed (for a "restart needed" log
 * line). */
int config_keep_fixed(config_t *next, const config_t *cur, char *changed,
		      size_t len);

#endif
