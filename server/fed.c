/* fed.c: federation links (docs/federation.md). Peers are the configured
 * nodes; links are WebSocket connections to them over mutual TLS, dialled
 * by us or accepted on the federation listener. Messages cross links on
 * the same fast path as client deliveries: encoded once, queued by
 * reference, flushed in batches. */
#include "fed.h"

#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "client.h"
#include "cluster.h"
#include "codec.h"
#include "dedup.h"
#include "err.h"
#include "fedcodec.h"
#include "fedtls.h"
#include "history.h"
#include "hub.h"
#include "jscan.h"
#include "log.h"
#include "outq.h"
#include "presence.h"
#include "strmap.h"
#include "topic.h"

/* Messages per replay batch: bounded so a long replay never floods the
 * link's queue; the next batch goes when the queue drains. */
#define REPLAY_BATCH 256
/* Housekeeping period: pings, dead links, state saves. */
#define TICK_MS 250
/* Bad frames in a row before a link is dropped. */
#define MAX_BAD_FRAMES 20
/* (topic, identity) pairs of presence one peer may announce. */
#define FED_MAX_REMOTE_PRESENCE 10000
/* Gateway lock lifetime and renewal period (cluster mode). */
#define GW_LOCK_MS  8000
#define GW_RENEW_MS 2000
/* Path of the federation endpoint. */
#define FED_PATH "/fed"

enum peer_state {
	PEER_IDLE = 0,	 /* Not dialling (an inbound link may come). */
	PEER_CONNECTING, /* Dialling, or a link awaits its hello. */
	PEER_UP,	 /* A link is up. */
	PEER_BACKOFF,	 /* Waiting to redial after a failure. */
	PEER_REFUSED,	 /* Last attempt was refused (see why). */
};

static const char *const peer_state_names[] = {"idle", "connecting", "up",
					       "backoff", "refused"};

typedef struct fed_link fed_link_t;

/* One configured peer. */
typedef struct fed_peer {
	fed_t *fed;		  /* Owner. */
	char *name;		  /* Node name (owned). */
	size_t name_len;	  /* Its bytes. */
	const config_peer_t *cfg; /* Entry in the live configuration. */
	enum peer_state state;	  /* Changed by peer_set_state only. */
	char why[200];		  /* Last error or refusal. */
	fed_link_t *link;	  /* The link that is up, or NULL. */
	struct lws *dial_wsi;	  /* Our dial in progress, or NULL. */
	uint64_t dial_started;	  /* uv_now when it began. */
	uv_timer_t timer;	  /* Redial timer. */
	unsigned attempt;	  /* Failures since the last "up". */
	char rx_cursor[HISTORY_CURSOR_MAX]; /* Last position received from
					       the peer ("" none). */
	int removed;	  /* Dropped by a reload; freed when its
			     timer handle has closed. */
	fed_stats_t st;	  /* Counters. */
	strmap_t *remote; /* Topic to strmap of identities the peer announced
			     as present. */
	size_t n_remote;  /* (topic, identity) pairs held in remote. */
	struct fed_peer *next; /* Next in fed->peers. */
} fed_peer_t;

enum link_state {
	LINK_HELLO = 0, /* Waiting for the peer's hello. */
	LINK_UP,	/* Exchanging messages. */
	LINK_DEAD,	/* Being closed; ignore everything. */
};

/* One of these per federation WebSocket (lws per-session data of
 * parley.fed.v1, in either direction). */
struct fed_link {
	struct lws *wsi;       /* The connection. */
	fed_t *fed;	       /* Owner; NULL until initialised. */
	fed_peer_t *peer;      /* Peer it belongs to, or NULL once detached
				  (duplicate, removed peer). */
	int outgoing;	       /* 1 when we dialled (frames are masked). */
	enum link_state state; /* Changed by link_set_state only. */
	outq_t out;	       /* Outgoing frames. */
	int replaying;	       /* Sending stored messages; live waits. */
	int gap_sent;	       /* A gap was reported in this replay. */
	uint64_t replay_seq;   /* Last seq considered by the replay. */
	uint64_t last_rx;      /* uv_now of the last frame received. */
	uint64_t created;      /* uv_now when the link was set up. */
	uint64_t last_ping;    /* uv_now of the last ping sent. */
	unsigned bad_frames;   /* Bad frames in a row. */
	char *rx;	       /* Reassembly buffer. */
	size_t rx_len;	       /* Bytes in rx. */
	size_t rx_cap;	       /* Capacity of rx. */
	char who[256];	       /* Identity of the peer's certificate. */
	uint64_t id;	       /* Number, for replies that come later. */
	int replay_busy;       /* A replay read from Redis is out. */
	msg_t **held;	       /* Cluster: live messages held during replay
				  (references), in order. */
	size_t n_held;	       /* Count. */
	size_t cap_held;       /* Capacity. */
	fed_link_t *next;      /* Next in fed->links. */
	fed_link_t **pprev;    /* Link pointing at this one. */
};

struct fed {
	struct hub *hub;	     /* Owner. */
	struct lws_vhost *vh_listen; /* Federation listener. */
	struct lws_vhost *vh_client; /* Vhost of our outgoing links. */
	fed_peer_t *peers;	     /* Configured peers. */
	fed_link_t *links;	     /* Every initialised link. */
	dedup_t *dedup;		     /* Recently stored mids. */
	uv_timer_t tick;	     /* Housekeeping. */
	char *state_path;	     /* Where rx cursors are saved. */
	int state_dirty;	     /* Cursors changed since the save. */
	uint64_t last_save;	     /* uv_now of the last save. */
	int stopping;		     /* fed_stop was called. */
	int gateway;	     /* This instance holds the node's links (always in
				standalone mode; by a Redis lock in a cluster). */
	int gw_ready;	     /* Gateway with cursors loaded and a live feed of
				every message: links may run. */
	int electing;	     /* A lock request is out. */
	uint64_t last_elect; /* uv_now of the last lock request. */
	uint64_t next_link_id; /* Numbers links. */
	char instance[96];     /* Name of this instance for the lock. */
};

static const char *const drop_names[FED_DROP__COUNT] = {
    "import", "loop", "duplicate", "invalid", "relay"};

const char *fed_drop_name(enum fed_drop d)
{
	return d < FED_DROP__COUNT ? drop_names[d] : "unknown";
}

static const char *me(const fed_t *f)
{
	return f->hub->cfg->node;
}

static uint64_t now(const fed_t *f)
{
	return uv_now(f->hub->loop);
}

/* While the peer has a link up it stays up: a dial that would replace
 * the link (the duplicate rule), a refused or silent extra connection
 * and their failures change nothing. link_closed clears p->link before it
 * sets the state. */
static void peer_set_state(fed_peer_t *p, enum peer_state s, const char *why)
{
	if (p->link && s != PEER_UP)
		return;
	if (why)
		snprintf(p->why, sizeof p->why, "%s", why);
	if (p->state == s)
		return;
	log_info("fed_peer_state", "peer=%s from=%s to=%s why=%s",
		 log_str(p->name), peer_state_names[p->state],
		 peer_state_names[s], log_str(why ? why : ""));
	p->state = s;
}

static void link_set_state(fed_link_t *l, enum link_state s)
{
	static const char *const names[] = {"hello", "up", "dead"};

	if (l->state == s)
		return;
	log_debug("fed_link_state", "peer=%s from=%s to=%s", log_str(l->who),
		  names[l->state], names[s]);
	l->state = s;
}

static fed_peer_t *find_peer(fed_t *f, const char *name)
{
	for (fed_peer_t *p = f->peers; p; p = p->next)
		if (!p->removed && !strcmp(p->name, name))
			return p;
	return NULL;
}

/* ---- state file: the last position received from each peer ---- */

static char *default_state_path(const hub_t *h)
{
	char *copy = strdup(h->config_path), *dir, *out;
	size_t n;

	if (!copy)
		abort();
	dir = dirname(copy);
	n = strlen(dir) + strlen(h->cfg->node) + 16;
	out = malloc(n);
	if (!out)
		abort();
	snprintf(out, n, "%s/%s.fedstate", dir, h->cfg->node);
	free(copy);
	return out;
}

static int state_load(fed_t *f)
{
	json_error_t jerr;
	json_t *j, *peers, *v;
	const char *k;

	if (access(f->state_path, F_OK))
		return 0; /* First start: nothing received yet. */
	j = json_load_file(f->state_path, 0, &jerr);
	peers = json_object_get(j, "peers");
	if (!json_is_object(peers)) {
		log_error("fed_state_unreadable", "path=%s error=%s",
			  log_str(f->state_path), log_str(jerr.text));
		json_decref(j);
		return -1;
	}
	json_object_foreach(peers, k, v)
	{
		fed_peer_t *p = find_peer(f, k);

		if (p && json_is_string(v) &&
		    json_string_length(v) < sizeof p->rx_cursor)
			snprintf(p->rx_cursor, sizeof p->rx_cursor, "%s",
				 json_string_value(v));
	}
	json_decref(j);
	log_info("fed_state_loaded", "path=%s", log_str(f->state_path));
	return 0;
}

/* Writes the cursors atomically (temporary file, fsync, rename). A small
 * synchronous write once a second at most, off the delivery path. */
static void state_save(fed_t *f)
{
	json_t *j = json_object(), *peers = json_object();
	char tmp[4096];
	FILE *fp;
	int ok;

	for (fed_peer_t *p = f->peers; p; p = p->next)
		if (p->rx_cursor[0])
			json_object_set_new(peers, p->name,
					    json_string(p->rx_cursor));
	json_object_set_new(j, "version", json_integer(1));
	json_object_set_new(j, "peers", peers);
	snprintf(tmp, sizeof tmp, "%s.tmp", f->state_path);
	fp = fopen(tmp, "w");
	ok = fp && json_dumpf(j, fp, JSON_COMPACT) == 0 && fflush(fp) == 0 &&
	     fsync(fileno(fp)) == 0;
	if (fp && fclose(fp))
		ok = 0;
	if (ok && rename(tmp, f->state_path))
		ok = 0;
	if (!ok)
		log_error("fed_state_save_failed", "path=%s error=%s",
			  log_str(f->state_path), log_str(strerror(errno)));
	else
		f->state_dirty = 0;
	f->last_save = now(f);
	json_decref(j);
}

/* ---- sending ---- */

/* Returns the message's federation frame for this link's direction,
 * encoding it on first use. */
static frame_t *fed_frame(fed_t *f, msg_t *m, int masked)
{
	if (!m->fed_frame[masked]) {
		char cursor[HISTORY_CURSOR_MAX] = "";

		/* A stored message's client frame already holds its cursor,
		 * which fedcodec_msg copies: only a message without one
		 * needs it formatted. */
		if (!m->frame) {
			if (f->hub->cluster)
				cluster_cursor(f->hub->cluster, m->seq, cursor);
			else
				history_cursor(f->hub->history, m->seq, cursor);
		}
		m->fed_frame[masked] = fedcodec_msg(m, cursor, masked);
	}
	return m->fed_frame[masked];
}

/* Returns 1 when the message may and should go to the peer. */
static int should_send(const fed_peer_t *p, const msg_t *m)
{
	const config_patterns_t *ex = &p->cfg->export_;

	if (msg_on_path(m, p->name))
		return 0;
	for (size_t i = 0; i < ex->n; i++)
		if (topic_match(ex->v[i], m->topic))
			return 1;
	return 0;
}

static void link_kill(fed_link_t *l, const char *why)
{
	if (l->state == LINK_DEAD)
		return;
	log_info("fed_link_close", "peer=%s direction=%s reason=%s",
		 log_str(l->who), l->outgoing ? "out" : "in", log_str(why));
	link_set_state(l, LINK_DEAD);
	outq_clear(&l->out);
	lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	lws_cancel_service(lws_get_context(l->wsi));
}

/* Queues a control or message frame; a link whose queue overflows is
 * reset (the peer redials and asks for a replay from its cursor, so
 * nothing is lost). Returns 0 or -1. */
static int link_send(fed_link_t *l, frame_t *fr, int force)
{
	if (l->state == LINK_DEAD)
		return -1;
	if (force) {
		outq_push_force(&l->out, fr);
		return 0;
	}
	l->out.max_bytes = l->fed->hub->live->fed_max_queue_bytes;
	if (outq_push(&l->out, fr) == 0)
		return 0;
	log_warn("fed_queue_overflow", "peer=%s queued_bytes=%zu",
		 log_str(l->who), l->out.bytes);
	link_kill(l, "queue overflow");
	return -1;
}

static void send_new(fed_link_t *l, frame_t *fr)
{
	link_send(l, fr, 1);
	frame_unref(fr);
}

static void replay_visit(msg_t *m, void *ud)
{
	fed_link_t *l = ud;

	l->replay_seq = m->seq;
	if (l->state == LINK_DEAD || !l->peer || !should_send(l->peer, m))
		return;
	if (link_send(l, fed_frame(l->fed, m, l->outgoing), 0) == 0) {
		l->peer->st.msgs_out++;
		l->peer->st.replayed++;
	}
}

/* Queues the next replay batch, or ends the replay with "live". */
static fed_link_t *find_link(fed_t *f, uint64_t id)
{
	for (fed_link_t *l = f->links; l; l = l->next)
		if (l->id == id)
			return l;
	return NULL;
}

static void held_clear(fed_link_t *l)
{
	for (size_t i = 0; i < l->n_held; i++)
		msg_unref(l->held[i]);
	free(l->held);
	l->held = NULL;
	l->n_held = l->cap_held = 0;
}

/* The replay caught up: live messages held meanwhile that it did not
 * cover follow, then "live". */
static void replay_done(fed_link_t *l)
{
	l->replaying = 0;
	for (size_t i = 0; i < l->n_held; i++) {
		msg_t *m = l->held[i];

		if (m->seq > l->replay_seq && l->peer &&
		    should_send(l->peer, m) &&
		    link_send(l, fed_frame(l->fed, m, l->outgoing), 0) == 0)
			l->peer->st.msgs_out++;
	}
	held_clear(l);
	send_new(l, fedcodec_simple(FED_LIVE, 0, l->outgoing));
	log_info("fed_replay_done", "peer=%s replayed=%llu", log_str(l->who),
		 (unsigned long long)(l->peer ? l->peer->st.replayed : 0));
}

static void replay_next(fed_link_t *l);

/* A replay batch read from Redis (cluster mode). */
static void on_cluster_replay(hub_t *h, int rc, msg_t *const *msgs, size_t n,
			      int gap, void *ud)
{
	fed_link_t *l =
	    h->fed ? find_link(h->fed, (uint64_t)(uintptr_t)ud) : NULL;
	char cursor[HISTORY_CURSOR_MAX];

	if (!l || l->state != LINK_UP)
		return;
	l->replay_busy = 0;
	if (rc) {
		link_kill(l, "redis unavailable during replay");
		return;
	}
	if (gap && !l->gap_sent) {
		cluster_cursor(h->cluster, l->replay_seq, cursor);
		send_new(l,
			 fedcodec_gap(cursor, "history trimmed", l->outgoing));
		l->gap_sent = 1;
	}
	for (size_t i = 0; i < n; i++)
		replay_visit(msgs[i], l);
	if (n == 0)
		replay_done(l);
	else if (!l->out.len)
		replay_next(l); /* All filtered out: no drain will come. */
}

/* Queues the next replay batch, or ends the replay with "live". */
static void replay_next(fed_link_t *l)
{
	fed_t *f = l->fed;
	char cursor[HISTORY_CURSOR_MAX];
	int gap = 0;
	size_t n;

	if (!l->replaying || l->state != LINK_UP)
		return;
	if (f->hub->cluster) {
		if (l->replay_busy)
			return;
		l->replay_busy = 1;
		if (cluster_replay(f->hub->cluster, l->replay_seq, REPLAY_BATCH,
				   on_cluster_replay,
				   (void *)(uintptr_t)l->id)) {
			l->replay_busy = 0;
			link_kill(l, "redis unavailable during replay");
		}
		return;
	}
	if (!l->gap_sent) {
		/* A gap concerns what precedes the batch: say it first. */
		history_range(f->hub->history, l->replay_seq, 0, &gap,
			      replay_visit, l);
		if (gap) {
			history_cursor(f->hub->history, l->replay_seq, cursor);
			send_new(l, fedcodec_gap(cursor, "history trimmed",
						 l->outgoing));
			l->gap_sent = 1;
		}
	}
	/* Batches whose messages all fall outside the policy queue nothing,
	 * so no drain would bring the next one: go on at once. */
	do {
		n = history_range(f->hub->history, l->replay_seq, REPLAY_BATCH,
				  &gap, replay_visit, l);
	} while (n && !l->out.len && l->state == LINK_UP);
	if (n == 0 && l->state == LINK_UP)
		replay_done(l);
}

static void on_drain(outq_t *q)
{
	fed_link_t *l = (fed_link_t *)((char *)q - offsetof(fed_link_t, out));

	if (l->replaying)
		replay_next(l);
}

/* Starts the replay of what the peer lacks after the cursor in its
 * hello (our position; NULL when it has nothing of ours). */
static void replay_start(fed_link_t *l, const char *cursor)
{
	history_t *hist = l->fed->hub->history;
	cluster_t *cl = l->fed->hub->cluster;
	uint64_t seq = 0;
	int rc;

	l->replaying = 1;
	l->gap_sent = 0;
	if (!cursor) {
		/* The peer has nothing of ours yet: all we hold may be new to
		 * it (it was perhaps down since before our first message).
		 * It drops what it already has by mid. */
		l->replay_seq = 0;
	} else {
		rc = cl ? cluster_parse_cursor(cl, cursor, &seq)
			: history_parse_cursor(hist, cursor, &seq);
		if (rc == PE_UNAVAILABLE) {
			/* Redis not reached yet: the peer redials and asks
			 * again, rather than being told of a gap. */
			l->replaying = 0;
			link_kill(l, "redis unavailable: cannot judge cursor");
			return;
		}
		if (rc) {
			/* Our history restarted (or the cursor is not ours):
			 * everything we still hold may be new to the peer. */
			send_new(l, fedcodec_gap(cursor,
						 rc == PE_HISTORY_GAP
						     ? "history restarted"
						     : "unknown cursor",
						 l->outgoing));
			l->gap_sent = 1;
			seq = 0;
		}
		l->replay_seq = seq;
	}
	log_info("fed_replay_start", "peer=%s after=%s", log_str(l->who),
		 log_str(cursor ? cursor : "(none)"));
	replay_next(l);
}

/* Holds a live message for a link that is replaying from Redis; a link
 * holding more than its queue bound is reset (it replays on return). */
static void link_hold(fed_link_t *l, msg_t *m)
{
	size_t bytes = 0;

	l->held = msg_array_push(l->held, &l->n_held, &l->cap_held, msg_ref(m));
	for (size_t i = 0; i < l->n_held; i++)
		bytes += l->held[i]->body_len + 256;
	if (bytes > l->fed->hub->live->fed_max_queue_bytes)
		link_kill(l, "too much live traffic held during replay");
}

int fed_wants_live(const fed_t *f)
{
	return f->gateway && f->gw_ready && !f->stopping;
}

void fed_forward(fed_t *f, msg_t *m)
{
	for (fed_peer_t *p = f->peers; p; p = p->next) {
		fed_link_t *l = p->link;

		if (!l || l->state != LINK_UP || !should_send(p, m))
			continue;
		if (l->replaying) {
			/* Standalone: the replay reads history, which holds
			 * this message too. Cluster: the replay reads Redis
			 * on another connection than this live feed, so the
			 * message waits until the replay caught up. */
			if (f->hub->cluster)
				link_hold(l, m);
			continue;
		}
		if (link_send(l, fed_frame(f, m, l->outgoing), 0) == 0)
			p->st.msgs_out++;
	}
}

int fed_input_pending(const fed_t *f)
{
	for (const fed_link_t *l = f->links; l; l = l->next) {
		int n = 0, fd;

		if (l->state != LINK_UP || !l->wsi)
			continue;
		fd = lws_get_socket_fd(l->wsi);
		if (fd >= 0 && !ioctl(fd, FIONREAD, &n) && n > 0)
			return 1;
	}
	return 0;
}

/* ---- presence ---- */

static int exported(const fed_peer_t *p, const char *topic)
{
	for (size_t i = 0; i < p->cfg->export_.n; i++)
		if (topic_match(p->cfg->export_.v[i], topic))
			return 1;
	return 0;
}

static int imported(const fed_peer_t *p, const char *topic)
{
	for (size_t i = 0; i < p->cfg->import_.n; i++)
		if (topic_match(p->cfg->import_.v[i], topic))
			return 1;
	return 0;
}

void fed_presence_local(fed_t *f, const char *topic, const char *ident,
			int joined)
{
	for (fed_peer_t *p = f->peers; p; p = p->next)
		if (p->link && p->link->state == LINK_UP && exported(p, topic))
			send_new(p->link,
				 fedcodec_presence(topic, ident, joined,
						   p->link->outgoing));
}

/* presence_each visitor: announces our own identities to a new link. */
static void snapshot_visit(const char *topic, const char *ident, void *ud)
{
	fed_link_t *l = ud;
	const char *at = strrchr(ident, '@');

	if (at && !strcmp(at + 1, me(l->fed)) && exported(l->peer, topic))
		send_new(l, fedcodec_presence(topic, ident, 1, l->outgoing));
}

/* Forgets everything a peer announced, telling local sessions. */
static void remote_clear(fed_peer_t *p)
{
	hub_t *h = p->fed->hub;
	size_t it = 0, jt;
	const char *topic, *ident;
	void *who, *v;

	if (!p->remote)
		return;
	while (strmap_next(p->remote, &it, &topic, &who)) {
		for (jt = 0; strmap_next(who, &jt, &ident, &v);)
			if (presence_leave(h->presence, topic, ident))
				client_presence_tell(h, topic, ident, 0, NULL);
		strmap_free(who);
	}
	strmap_free(p->remote);
	p->remote = NULL;
	p->n_remote = 0;
}

static void on_presence(fed_link_t *l, const fed_in_t *in)
{
	fed_peer_t *p = l->peer;
	hub_t *h = l->fed->hub;
	size_t plen, i;
	strmap_t *who;
	json_t *v;

	if (!p || !imported(p, in->topic))
		return;
	plen = strlen(p->name);
	if (!p->remote)
		p->remote = strmap_new();
	who = strmap_get(p->remote, in->topic);
	json_array_foreach(in->joined, i, v)
	{
		const char *id = json_string_value(v);
		size_t n = id ? strlen(id) : 0;

		/* A peer speaks only for its own users. */
		if (!id || n <= plen + 1 || n > 256 ||
		    id[n - plen - 1] != '@' || strcmp(id + n - plen, p->name))
			continue;
		if (!who) {
			who = strmap_new();
			strmap_put(p->remote, in->topic, who, NULL);
		}
		if (strmap_get(who, id))
			continue;
		/* Bounded: a peer cannot fill our memory with names. */
		if (p->n_remote >= FED_MAX_REMOTE_PRESENCE) {
			p->st.dropped[FED_DROP_INVALID]++;
			log_warn("fed_presence_limit", "peer=%s limit=%d",
				 log_str(p->name), FED_MAX_REMOTE_PRESENCE);
			break;
		}
		p->n_remote++;
		strmap_put(who, id, p, NULL);
		if (presence_join(h->presence, in->topic, id))
			client_presence_tell(h, in->topic, id, 1, NULL);
	}
	json_array_foreach(in->left, i, v)
	{
		const char *id = json_string_value(v);

		if (!id || !who || !strmap_get(who, id))
			continue;
		strmap_del(who, id);
		p->n_remote--;
		if (presence_leave(h->presence, in->topic, id))
			client_presence_tell(h, in->topic, id, 0, NULL);
	}
	if (who && !strmap_count(who)) {
		strmap_del(p->remote, in->topic);
		strmap_free(who);
	}
}

/* ---- dialling ---- */

static void schedule_dial(fed_peer_t *p);

static void dial(fed_peer_t *p)
{
	fed_t *f = p->fed;
	struct lws_client_connect_info i;
	char url[2048], fullpath[2048];
	const char *prot, *addr, *path;
	struct lws *wsi;
	int port;

	/* The lower-named node keeps its outgoing link to each peer (the
	 * duplicate rule), so it dials even while the peer's link to it is
	 * up; the other side does not dial while any link is up. */
	if (f->stopping || p->removed || p->dial_wsi || !f->gateway ||
	    !f->gw_ready ||
	    (p->link && (p->link->outgoing || strcmp(me(f), p->name) > 0)))
		return;
	snprintf(url, sizeof url, "%s", p->cfg->url);
	if (lws_parse_uri(url, &prot, &addr, &port, &path) ||
	    strcmp(prot, "wss")) {
		peer_set_state(p, PEER_REFUSED, "url is not wss://host:port");
		return;
	}
	memset(&i, 0, sizeof i);
	i.context = f->hub->lws;
	i.vhost = f->vh_client;
	i.address = addr;
	i.port = port;
	/* lws_parse_uri drops the leading '/'. */
	snprintf(fullpath, sizeof fullpath, "/%s", *path ? path : &FED_PATH[1]);
	i.path = fullpath;
	i.host = addr;
	i.origin = addr;
	/* The URL may name an IP address: identity is checked against the
	 * peer's configured name once TLS is up, not against the URL. */
	i.ssl_connection =
	    LCCSCF_USE_SSL | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	i.protocol = "parley.fed.v1";
	i.local_protocol_name = "parley.fed.v1";
	i.alpn = "http/1.1";
	/* No pwsi: lws would write through it after the peer may be gone;
	 * callbacks find the peer through the opaque user data instead. */
	i.opaque_user_data = p;
	peer_set_state(p, PEER_CONNECTING, NULL);
	log_info("fed_dial", "peer=%s url=%s attempt=%u", log_str(p->name),
		 log_str(p->cfg->url), p->attempt);
	wsi = lws_client_connect_via_info(&i);
	if (wsi) {
		p->dial_wsi = wsi;
		p->dial_started = now(f);
	} else if (!p->link && !uv_is_active((uv_handle_t *)&p->timer)) {
		peer_set_state(p, PEER_BACKOFF, "connect failed at once");
		schedule_dial(p);
	}
}

static void on_dial_timer(uv_timer_t *t)
{
	dial(t->data);
}

/* Arms the redial timer with exponential backoff and full jitter. */
static void schedule_dial(fed_peer_t *p)
{
	const config_t *c = p->fed->hub->live;
	uint64_t cap = (uint64_t)c->fed_backoff_min_ms, delay;
	uint32_t r = 0;

	if (p->fed->stopping || p->removed)
		return;
	for (unsigned i = 0;
	     i < p->attempt && cap < (uint64_t)c->fed_backoff_max_ms; i++)
		cap *= 2;
	if (cap > (uint64_t)c->fed_backoff_max_ms)
		cap = (uint64_t)c->fed_backoff_max_ms;
	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint32_t)now(p->fed);
	/* Full jitter, but never faster than the floor. */
	delay = (uint64_t)c->fed_backoff_min_ms;
	if (cap > delay)
		delay += r % (cap - delay + 1);
	p->attempt++;
	if (p->state != PEER_REFUSED)
		peer_set_state(p, PEER_BACKOFF, NULL);
	uv_timer_start(&p->timer, on_dial_timer, delay, 0);
}

/* ---- links ---- */

static void link_init(fed_link_t *l, fed_t *f, struct lws *wsi, int outgoing)
{
	hub_t *h = f->hub;

	l->wsi = wsi;
	l->fed = f;
	l->outgoing = outgoing;
	l->state = LINK_HELLO;
	l->last_rx = l->last_ping = l->created = now(f);
	l->id = ++f->next_link_id;
	outq_init(&l->out, h, wsi, h->live->fed_max_queue_bytes, NULL, NULL);
	l->out.on_drain = on_drain;
	l->next = f->links;
	if (f->links)
		f->links->pprev = &l->next;
	l->pprev = &f->links;
	f->links = l;
}

/* Points the link's counters at its peer (or at nothing). */
static void link_attach(fed_link_t *l, fed_peer_t *p)
{
	l->peer = p;
	l->out.bytes_out = p ? &p->st.bytes_out : NULL;
	l->out.writes = p ? &p->st.writes : NULL;
	l->out.batches = p ? &p->st.batches_out : NULL;
}

/* Sends our hello: our position in the peer's order. */
static void link_hello(fed_link_t *l)
{
	fed_peer_t *p = l->peer;

	send_new(l, fedcodec_hello(me(l->fed),
				   p && p->rx_cursor[0] ? p->rx_cursor : NULL,
				   l->outgoing));
}

/* The peer's hello arrived: the link goes up, unless the pair already has
 * one; then the link dialled by the lower-named node is kept. */
static void on_hello(fed_link_t *l, const fed_in_t *in)
{
	fed_t *f = l->fed;
	fed_peer_t *p = l->peer;

	if (strcmp(in->node, l->who)) {
		log_warn("fed_refused", "peer=%s reason=%s claimed=%s",
			 log_str(l->who),
			 log_str("hello names another node than the "
				 "certificate"),
			 log_str(in->node));
		if (p)
			peer_set_state(p, PEER_REFUSED,
				       "hello names another node");
		link_kill(l, "identity mismatch");
		return;
	}
	if (!p) {
		link_kill(l, "peer no longer configured");
		return;
	}
	if (p->link && p->link != l) {
		/* Both sides apply the same rule, so they agree. */
		int lower_is_me = strcmp(me(f), p->name) < 0;
		int keep_new = lower_is_me ? l->outgoing : !l->outgoing;
		fed_link_t *loser = keep_new ? p->link : l;

		log_info("fed_duplicate_link", "peer=%s kept=%s",
			 log_str(p->name),
			 (keep_new ? l->outgoing : p->link->outgoing) ? "out"
								      : "in");
		link_attach(loser, NULL);
		link_kill(loser, "duplicate link");
		if (!keep_new)
			return;
	}
	p->link = l;
	if (!l->outgoing)
		link_hello(l);
	/* Messages queued together from now on go as one frame. */
	if (in->batch)
		outq_set_batch(&l->out, FED_BATCH_OPEN, FED_BATCH_CLOSE,
			       FED_BATCH_MAX);
	link_set_state(l, LINK_UP);
	p->attempt = 0;
	p->st.connects++;
	/* A pending redial stays when we are the lower name and this link
	 * is the peer's: our own link will replace it (duplicate rule). */
	if (l->outgoing || strcmp(me(f), p->name) > 0)
		uv_timer_stop(&p->timer);
	peer_set_state(p, PEER_UP, "");
	log_info("fed_link_up", "peer=%s direction=%s", log_str(p->name),
		 l->outgoing ? "out" : "in");
	replay_start(l, in->cursor);
	presence_each(f->hub->presence, snapshot_visit, l);
}

/* A message from a peer being stored in Redis (cluster mode). */
struct fed_store {
	uint64_t link_id;		 /* Link it came on. */
	char peer[256];			 /* Peer it came from. */
	char cursor[HISTORY_CURSOR_MAX]; /* Its position at the peer. */
};

/* The peer's message is stored (with our position at the peer, in the
 * same step): only now does the position advance here. On failure the
 * link is reset, and the peer replays from the last stored position. */
static void on_fed_stored(hub_t *h, int rc, uint64_t seq, void *ud)
{
	struct fed_store *st = ud;
	fed_t *f = h->fed;
	fed_peer_t *p = f ? find_peer(f, st->peer) : NULL;
	fed_link_t *l = f ? find_link(f, st->link_id) : NULL;

	if (rc) {
		if (l)
			link_kill(l, "redis unavailable: cannot store");
	} else if (p) {
		snprintf(p->rx_cursor, sizeof p->rx_cursor, "%s", st->cursor);
		if (seq)
			p->st.msgs_in++;
		else
			p->st.dropped[FED_DROP_DUPLICATE]++;
	}
	free(st);
}

/* 1 when the a_len bytes at a are the b_len bytes at b. */
static int same(const char *a, size_t a_len, const char *b, size_t b_len)
{
	return a_len == b_len && !memcmp(a, b, a_len);
}

/* A message from the peer: policy, loop and duplicate checks, then it is
 * stored and handled like any accepted message. mid_hash is in->mid's
 * dedup hash. The decoder measured the strings: nothing here does again. */
static void on_msg(fed_link_t *l, const fed_in_t *in, uint32_t mid_hash)
{
	fed_t *f = l->fed;
	fed_peer_t *p = l->peer;
	const config_patterns_t *im;
	enum fed_drop why = FED_DROP__COUNT;
	size_t flen = in->from_len, olen = in->origin_len;
	const char *self = me(f);
	size_t self_len = strlen(self), last = in->n_path - 1;
	char *body = NULL;
	size_t blen;
	msg_t *m;

	if (!p)
		return;
	/* The position advances even for dropped messages: they were
	 * received, and replay must not send them again. */
	if (!f->hub->cluster) {
		size_t cl = in->cursor_len;

		if (cl >= sizeof p->rx_cursor)
			cl = sizeof p->rx_cursor - 1; /* Decoders allow 64. */
		memcpy(p->rx_cursor, in->cursor, cl);
		p->rx_cursor[cl] = 0;
		f->state_dirty = 1;
	}
	if (same(in->origin, olen, self, self_len))
		why = FED_DROP_LOOP;
	for (size_t i = 0; i < in->n_path && why == FED_DROP__COUNT; i++)
		if (same(in->path[i], in->path_len[i], self, self_len))
			why = FED_DROP_LOOP;
	if (why == FED_DROP__COUNT &&
	    (!same(in->path[0], in->path_len[0], in->origin, olen) ||
	     !same(in->path[last], in->path_len[last], p->name, p->name_len) ||
	     flen <= olen + 1 || in->from[flen - olen - 1] != '@' ||
	     memcmp(in->from + flen - olen, in->origin, olen)))
		why = FED_DROP_INVALID;
	if (why == FED_DROP__COUNT && !p->cfg->relay &&
	    !same(in->origin, olen, p->name, p->name_len))
		why = FED_DROP_RELAY;
	if (why == FED_DROP__COUNT) {
		im = &p->cfg->import_;
		why = FED_DROP_IMPORT;
		for (size_t i = 0; i < im->n; i++)
			if (topic_match(im->v[i], in->topic))
				why = FED_DROP__COUNT;
	}
	/* A peer must not get a message stored under one of our own mids
	 * (hostile/02 tries): they are recognised by the random part every
	 * mid of this process carries, so they need no place in the window
	 * (adding each one cost a publishing node ~10%). */
	if (why == FED_DROP__COUNT &&
	    (hub_mid_is_own(f->hub, in->mid, in->mid_len) ||
	     dedup_seen(f->dedup, in->mid, mid_hash)))
		why = FED_DROP_DUPLICATE;
	if (why != FED_DROP__COUNT) {
		p->st.dropped[why]++;
		if (why == FED_DROP_DUPLICATE)
			log_debug("fed_drop", "peer=%s reason=%s mid=%s",
				  log_str(p->name), drop_names[why],
				  log_str(in->mid));
		else
			log_info("fed_drop",
				 "peer=%s reason=%s mid=%s topic=%s",
				 log_str(p->name), drop_names[why],
				 log_str(in->mid), log_str(in->topic));
		return;
	}
	/* The fast decoder keeps the body as the peer's validated text. */
	if (!in->body_text) {
		body = codec_dump_body(in->body, &blen);
		if (!body)
			abort();
	}
	msg_fields_t mf = {
	    .topic = in->topic,
	    .mid = in->mid,
	    .origin = in->origin,
	    .from = in->from,
	    .topic_len = in->topic_len,
	    .mid_len = in->mid_len,
	    .origin_len = olen,
	    .from_len = flen,
	    .ts = in->ts,
	    .body = body ? body : in->body_text,
	    .body_len = body ? blen : in->body_len,
	};
	m = msg_new_fields(&mf, in->path, in->path_len, in->n_path, self,
			   self_len);
	free(body);
	if (f->hub->cluster) {
		struct fed_store *st = malloc(sizeof *st);

		if (!st)
			abort();
		st->link_id = l->id;
		snprintf(st->peer, sizeof st->peer, "%s", p->name);
		snprintf(st->cursor, sizeof st->cursor, "%s", in->cursor);
		if (cluster_store(f->hub->cluster, m, p->name, in->cursor,
				  on_fed_stored, st)) {
			free(st);
			link_kill(l, "redis unavailable: cannot store");
		}
	} else if (hub_accept(f->hub, m) == 0) {
		/* Copies arriving later, by other routes, are dropped. */
		dedup_add(f->dedup, in->mid, mid_hash);
		p->st.msgs_in++;
	}
	msg_unref(m);
}

/* The mid of a msg frame in the layout, found before it is decoded so
 * that its dedup slot can be loaded early. */
typedef struct peeked {
	char mid[FED_MID_MAX + 1];
	size_t len;
	uint32_t hash;
	int ok; /* 0: nothing peeked. */
} peeked_t;

static void peek_at(fed_link_t *l, const char *mid, size_t n, peeked_t *pk)
{
	pk->ok = 0;
	/* A message's dedup slot is a cache miss in a table of megabytes
	 * (about 7% of a receiving node's time when it was loaded just
	 * before the lookup): start loading it before the frame is decoded
	 * and checked, which hides most of the wait. */
	if (l->state != LINK_UP || !mid || n > FED_MID_MAX)
		return;
	memcpy(pk->mid, mid, n);
	pk->mid[n] = 0;
	pk->len = n;
	pk->hash = dedup_hash_len(pk->mid, n);
	pk->ok = 1;
	dedup_prefetch(l->fed->dedup, pk->hash);
}

/* The hash of a decoded msg's mid: the peeked one when it is that mid. */
static uint32_t mid_hash(const peeked_t *pk, const fed_in_t *in)
{
	return pk->ok && same(pk->mid, pk->len, in->mid, in->mid_len)
		   ? pk->hash
		   : dedup_hash_len(in->mid, in->mid_len);
}

/* A frame (or an element of a batch) that did not decode. */
static void frame_bad(fed_link_t *l, int rc, const char *reason)
{
	if (l->peer)
		l->peer->st.dropped[FED_DROP_INVALID]++;
	log_warn("fed_bad_frame", "peer=%s code=%s reason=%s", log_str(l->who),
		 parley_errcode(rc), log_str(reason));
	if (++l->bad_frames >= MAX_BAD_FRAMES)
		link_kill(l, "too many bad frames");
}

/* The msg frames of a batch, in order, each as if it came alone. */
static void on_batch(fed_link_t *l, fed_batch_t *b)
{
	peeked_t pk, cur;
	size_t n = 0;

	if (l->peer)
		l->peer->st.batches_in++;
	peek_at(l, fedcodec_batch_peek_mid(b, &n), n, &pk);
	while (l->state != LINK_DEAD) {
		const char *reason = NULL;
		fed_in_t in;
		int rc, r = fedcodec_batch_next(b, &in, &rc, &reason);

		if (r < 0)
			frame_bad(l, PE_BAD_JSON, reason);
		if (r <= 0)
			break;
		/* The next element's slot loads while this one is stored. */
		cur = pk;
		peek_at(l, fedcodec_batch_peek_mid(b, &n), n, &pk);
		if (rc) {
			frame_bad(l, rc, reason);
		} else {
			l->bad_frames = 0;
			if (l->state == LINK_UP)
				on_msg(l, &in, mid_hash(&cur, &in));
		}
		fedcodec_free(&in);
	}
	fedcodec_batch_end(b);
}

static void on_frame(fed_link_t *l, const char *buf, size_t len)
{
	const char *reason = NULL, *mid;
	fed_batch_t b;
	peeked_t pk;
	size_t n = 0;
	fed_in_t in;
	int rc;

	l->last_rx = now(l->fed);
	if (l->peer)
		l->peer->st.bytes_in += len;
	if (fedcodec_batch_begin(&b, buf, len)) {
		on_batch(l, &b);
		return;
	}
	mid = fedcodec_peek_mid(buf, len, &n);
	peek_at(l, mid, n, &pk);
	rc = fedcodec_decode(buf, len, &in, &reason);
	if (rc) {
		frame_bad(l, rc, reason);
		fedcodec_free(&in);
		return;
	}
	l->bad_frames = 0;
	switch (in.op) {
	case FED_HELLO:
		if (l->state == LINK_HELLO)
			on_hello(l, &in);
		break;
	case FED_MSG:
		if (l->state == LINK_UP)
			on_msg(l, &in, mid_hash(&pk, &in));
		break;
	case FED_BATCH:
		/* Another layout than ours: read from the tree. */
		fedcodec_batch_tree(&b, &in);
		on_batch(l, &b);
		break;
	case FED_GAP:
		if (l->peer) {
			l->peer->st.gaps++;
			log_warn("fed_gap",
				 "peer=%s after=%s note=\"the peer "
				 "no longer holds every message we "
				 "missed\"",
				 log_str(l->peer->name),
				 log_str(in.after ? in.after : ""));
		}
		break;
	case FED_LIVE:
		log_info("fed_live", "peer=%s", log_str(l->who));
		break;
	case FED_PING:
		send_new(l, fedcodec_simple(FED_PONG, in.t, l->outgoing));
		break;
	case FED_PRESENCE:
		if (l->state == LINK_UP)
			on_presence(l, &in);
		break;
	case FED_PONG:
		break;
	}
	fedcodec_free(&in);
}

/* A complete message: it must be UTF-8 (lws's byte-by-byte check is off,
 * see server.c). */
static void on_text(fed_link_t *l, const char *m, size_t len)
{
	if (!jscan_utf8_valid(m, len)) {
		link_kill(l, "invalid UTF-8");
		return;
	}
	on_frame(l, m, len);
}

/* Reassembles messages within the federation frame bound. */
static int on_receive(fed_link_t *l, const char *in, size_t len)
{
	size_t max = 2 * l->fed->hub->cfg->limits.max_frame_bytes + 65536;
	size_t rest = lws_remaining_packet_payload(l->wsi);
	int final = lws_is_final_fragment(l->wsi);

	if (l->state == LINK_DEAD)
		return 0;
	if (lws_is_first_fragment(l->wsi))
		l->rx_len = 0;
	if (l->rx_len + len + rest > max) {
		link_kill(l, "frame too large");
		return 0;
	}
	if (final && !l->rx_len) {
		on_text(l, in, len);
		return 0;
	}
	if (l->rx_len + len > l->rx_cap) {
		size_t ncap = l->rx_cap ? l->rx_cap : 4096;
		char *n;

		while (ncap < l->rx_len + len)
			ncap *= 2;
		n = realloc(l->rx, ncap);
		if (!n)
			abort();
		l->rx = n;
		l->rx_cap = ncap;
	}
	memcpy(l->rx + l->rx_len, in, len);
	l->rx_len += len;
	if (final) {
		on_text(l, l->rx, l->rx_len);
		l->rx_len = 0;
	}
	return 0;
}

/* A link is gone: detach it and, if it was the peer's, redial. */
static void link_closed(fed_link_t *l)
{
	fed_peer_t *p = l->peer;

	if (!l->fed)
		return;
	if (p && p->link == l) {
		p->link = NULL;
		log_info("fed_link_down", "peer=%s", log_str(p->name));
		remote_clear(p);
		peer_set_state(p, PEER_BACKOFF, "link closed");
	}
	if (p && !p->link && !p->dial_wsi)
		schedule_dial(p);
	outq_release(&l->out);
	held_clear(l);
	free(l->rx);
	l->rx = NULL;
	*l->pprev = l->next;
	if (l->next)
		l->next->pprev = l->pprev;
	l->fed = NULL;
}

/* Refuses an inbound handshake with a status written raw (the role is
 * already ws here), and logs why. */
static int refuse_inbound(struct lws *wsi, const char *who, const char *why)
{
	static const char resp[] = "HTTP/1.1 403 Forbidden\r\n"
				   "Content-Length: 0\r\n"
				   "Connection: close\r\n\r\n";
	unsigned char buf[LWS_PRE + sizeof resp];

	log_warn("fed_refused", "direction=in peer=%s reason=%s", log_str(who),
		 log_str(why));
	memcpy(buf + LWS_PRE, resp, sizeof resp - 1);
	lws_write(wsi, buf + LWS_PRE, sizeof resp - 1, LWS_WRITE_RAW);
	return 1;
}

static int on_filter(fed_t *f, struct lws *wsi, fed_link_t *l)
{
	char path[64];

	if (f->stopping)
		return refuse_inbound(wsi, "-", "shutting down");
	if (!f->gateway || !f->gw_ready)
		return refuse_inbound(wsi, "-",
				      "this instance is not the node's "
				      "federation gateway right now");
	if (fedtls_peer_identity(wsi, l->who, sizeof l->who)) {
		char why[256];

		snprintf(why, sizeof why, "%s", l->who);
		return refuse_inbound(wsi, "-", why);
	}
	if (!find_peer(f, l->who))
		return refuse_inbound(wsi, l->who,
				      "certificate names no configured peer");
	if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
	    strcmp(path, FED_PATH))
		return refuse_inbound(wsi, l->who, "wrong path");
	return 0;
}

static void on_client_established(fed_t *f, struct lws *wsi, fed_link_t *l)
{
	fed_peer_t *p = lws_get_opaque_user_data(wsi);
	char who[256];

	/* The dial is over: the wsi must not point at the peer any longer
	 * (a reload may free the peer while the link lives on). */
	lws_set_opaque_user_data(wsi, NULL);
	if (p)
		p->dial_wsi = NULL;
	link_init(l, f, wsi, 1);
	if (!p || p->removed) {
		link_kill(l, "peer no longer configured");
		return;
	}
	if (fedtls_peer_identity(wsi, who, sizeof who) ||
	    strcmp(who, p->name)) {
		char why[400];

		if (!strcmp(who, p->name))
			snprintf(why, sizeof why, "%s", who);
		else
			snprintf(why, sizeof why,
				 "server certificate names %s, not the peer",
				 who);
		log_warn("fed_refused", "direction=out peer=%s reason=%s",
			 log_str(p->name), log_str(why));
		snprintf(l->who, sizeof l->who, "%s", p->name);
		peer_set_state(p, PEER_REFUSED, why);
		link_attach(l, p); /* So its close schedules the redial. */
		link_kill(l, "identity mismatch");
		return;
	}
	snprintf(l->who, sizeof l->who, "%s", who);
	link_attach(l, p);
	link_hello(l);
}

static int fed_ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
			   void *user, void *in, size_t len)
{
	hub_t *h = lws_context_user(lws_get_context(wsi));
	fed_link_t *l = user;
	fed_t *f = h ? h->fed : NULL;
	fed_peer_t *p;

	if (!f)
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return on_filter(f, wsi, l);
	case LWS_CALLBACK_ESTABLISHED:
		/* The dialling side speaks first: ours goes only once its
		 * hello has been checked, so a refused dialler never sees
		 * the link up. */
		link_init(l, f, wsi, 0);
		link_attach(l, find_peer(f, l->who));
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		on_client_established(f, wsi, l);
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		p = lws_get_opaque_user_data(wsi);
		lws_set_opaque_user_data(wsi, NULL);
		if (p) {
			char why[256];

			snprintf(why, sizeof why, "connect failed: %s",
				 in ? (const char *)in : "unknown");
			p->dial_wsi = NULL;
			log_warn("fed_dial_failed", "peer=%s reason=%s",
				 log_str(p->name), log_str(why));
			if (in && (strstr((const char *)in, "verif") ||
				   strstr((const char *)in, "certificate") ||
				   strstr((const char *)in, "SSL")))
				log_warn("fed_refused",
					 "direction=out peer=%s reason=%s",
					 log_str(p->name), log_str(why));
			/* A TLS verification failure is a refusal. A link
			 * the peer dialled may be up meanwhile: then this
			 * failed dial changes nothing. */
			if (!p->link)
				peer_set_state(
				    p,
				    in && strstr((const char *)in, "verif")
					? PEER_REFUSED
					: PEER_BACKOFF,
				    why);
			if (!p->link)
				schedule_dial(p);
		}
		return 0;
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (!l || !l->fed)
			return -1;
		return on_receive(l, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (!l || !l->fed || l->state == LINK_DEAD)
			return l && l->fed ? 0 : -1;
		return outq_writeable(&l->out);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		return 1;
	case LWS_CALLBACK_WSI_DESTROY:
		/* Every wsi ends here, also a dial that lws dropped without
		 * a connection-error callback (e.g. killed while in TLS). */
		p = lws_get_opaque_user_data(wsi);
		lws_set_opaque_user_data(wsi, NULL);
		if (p && p->dial_wsi == wsi) {
			p->dial_wsi = NULL;
			if (!p->link) {
				peer_set_state(p, PEER_BACKOFF,
					       "dial abandoned");
				schedule_dial(p);
			}
		}
		return 0;
	case LWS_CALLBACK_CLOSED:
	case LWS_CALLBACK_CLIENT_CLOSED:
		if (l)
			link_closed(l);
		return 0;
	default:
		return 0;
	}
}

/* protocols[0] of both federation vhosts: no HTTP is served there, and
 * the OpenSSL hooks enforce the TLS floor and log verification
 * failures. */
static int fed_http_callback(struct lws *wsi, enum lws_callback_reasons reason,
			     void *user, void *in, size_t len)
{
	switch (reason) {
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
	case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_SERVER_VERIFY_CERTS:
		fedtls_harden_ctx(user);
		return 0;
	case LWS_CALLBACK_OPENSSL_PERFORM_CLIENT_CERT_VERIFICATION:
		if (!len) {
			X509_STORE_CTX *x = user;

			log_warn("fed_refused",
				 "direction=in reason=%s depth=%d",
				 log_str(X509_verify_cert_error_string(
				     X509_STORE_CTX_get_error(x))),
				 X509_STORE_CTX_get_error_depth(x));
		}
		return 0;
	case LWS_CALLBACK_HTTP:
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
		return -1;
	case LWS_CALLBACK_WSI_DESTROY:
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		/* A dial that ends before its protocol is bound reports here
		 * (protocols[0]); settle the peer the same way. */
		return fed_ws_callback(wsi, reason, NULL, in, len);
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		log_warn("fed_refused", "direction=in reason=%s",
			 log_str("no parley.fed.v1 subprotocol"));
		return 1;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols fed_protocols[] = {
    {"fed-http", fed_http_callback, 0, 0, 0, NULL, 0},
    {"parley.fed.v1", fed_ws_callback, sizeof(fed_link_t), HUB_RX_BUF, 0, NULL,
     HUB_GATHER + 64},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

/* ---- the gateway of a cluster ---- */

/* This instance stops holding the node's links. */
static void gw_lose(fed_t *f, const char *why)
{
	if (!f->gateway)
		return;
	log_warn("fed_gateway_lost", "reason=%s", log_str(why));
	f->gateway = 0;
	f->gw_ready = 0;
	for (fed_link_t *l = f->links; l; l = l->next)
		link_kill(l, why);
	if (f->hub->cluster)
		cluster_unwant(f->hub->cluster, "#");
}

static void on_gw_cursors(hub_t *h, int rc, const char **kv, size_t n, void *ud)
{
	fed_t *f = h->fed;

	(void)ud;
	if (!f || !f->gateway || f->gw_ready || f->stopping)
		return;
	if (rc) {
		gw_lose(f, "cannot read the saved positions");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		fed_peer_t *p = find_peer(f, kv[2 * i]);

		if (p)
			snprintf(p->rx_cursor, sizeof p->rx_cursor, "%s",
				 kv[2 * i + 1]);
	}
	f->gw_ready = 1;
	log_info("fed_gateway", "instance=%s peers=%zu", log_str(f->instance),
		 f->hub->live->n_peers);
	for (fed_peer_t *p = f->peers; p; p = p->next) {
		p->attempt = 0;
		dial(p);
	}
}

/* The feed of every message is live in Redis: read the positions. */
static void on_gw_barrier(hub_t *h, int rc, const cluster_item_t *items,
			  size_t n, void *ud)
{
	fed_t *f = h->fed;

	(void)items;
	(void)n;
	(void)ud;
	if (!f || !f->gateway || f->stopping)
		return;
	if (rc || cluster_peer_cursors(h->cluster, on_gw_cursors, NULL))
		gw_lose(f, "redis unavailable");
}

static void on_lock_result(hub_t *h, int yes, void *ud)
{
	fed_t *f = h->fed;

	(void)ud;
	if (!f || f->stopping)
		return;
	f->electing = 0;
	if (yes && !f->gateway) {
		/* Every message of the node must reach this instance now,
		 * to go to peers: subscribe to all, and wait until that is
		 * live before anything is replayed. */
		f->gateway = 1;
		f->gw_ready = 0;
		log_info("fed_gateway_won", "instance=%s",
			 log_str(f->instance));
		cluster_want(h->cluster, "#");
		if (cluster_backlog(h->cluster, "#", 1, 0, 0, 0, on_gw_barrier,
				    NULL))
			gw_lose(f, "redis unavailable");
	} else if (!yes && f->gateway) {
		gw_lose(f, "another instance holds the gateway lock");
	}
}

/* ---- housekeeping ---- */

static void on_tick(uv_timer_t *t)
{
	fed_t *f = t->data;
	const config_t *c = f->hub->live;
	uint64_t n = now(f);

	for (fed_link_t *l = f->links; l; l = l->next) {
		if (l->state == LINK_DEAD)
			continue;
		if (n - l->last_rx > (uint64_t)c->fed_dead_ms) {
			log_warn("fed_link_dead", "peer=%s silent_ms=%llu",
				 log_str(l->who),
				 (unsigned long long)(n - l->last_rx));
			if (l->peer && l->peer->link != l)
				peer_set_state(l->peer, PEER_BACKOFF,
					       "no hello in time");
			link_kill(l, "peer silent");
			continue;
		}
		/* Pings answered do not make a link: one that has not said
		 * hello within the bound goes, whatever else it sends. */
		if (l->state == LINK_HELLO &&
		    n - l->created > (uint64_t)c->fed_dead_ms) {
			log_warn("fed_link_dead", "peer=%s reason=%s",
				 log_str(l->who), log_str("no hello in time"));
			link_kill(l, "no hello in time");
			continue;
		}
		if (n - l->last_ping >= (uint64_t)c->fed_ping_ms) {
			l->last_ping = n;
			send_new(l, fedcodec_simple(FED_PING,
						    (int64_t)hub_now_ms(),
						    l->outgoing));
		}
	}
	/* A dial that never completes (a peer that accepts TCP, then stays
	 * silent) is bounded like a silent link. */
	for (fed_peer_t *p = f->peers; p; p = p->next)
		if (p->dial_wsi &&
		    n - p->dial_started > (uint64_t)c->fed_dead_ms) {
			log_warn("fed_link_dead",
				 "peer=%s silent_ms=%llu note=\"dial never "
				 "completed\"",
				 log_str(p->name),
				 (unsigned long long)(n - p->dial_started));
			p->dial_started = n; /* Log once per dial. */
			/* lws re-arms its own timeouts while connecting, which
			 * would override an asynchronous kill: close it now
			 * (this timer runs outside any lws callback). */
			lws_set_timeout(p->dial_wsi, PENDING_TIMEOUT_USER_OK,
					LWS_TO_KILL_SYNC);
		}
	if (f->state_dirty && n - f->last_save >= 1000 && !f->hub->cluster)
		state_save(f);
	/* In a cluster, one instance holds the links: take or renew the
	 * lock well within its lifetime. */
	if (f->hub->cluster && !f->electing &&
	    n - f->last_elect >= GW_RENEW_MS) {
		f->last_elect = n;
		f->electing = 1;
		if (cluster_gateway_lock(f->hub->cluster, f->instance,
					 GW_LOCK_MS, on_lock_result, NULL)) {
			f->electing = 0;
			gw_lose(f, "redis unavailable");
		}
	}
}

/* ---- lifecycle ---- */

static fed_peer_t *peer_new(fed_t *f, const config_peer_t *pc)
{
	fed_peer_t *p = calloc(1, sizeof *p);

	if (!p)
		abort();
	p->fed = f;
	p->name = strdup(pc->name);
	if (!p->name)
		abort();
	p->name_len = strlen(p->name);
	p->cfg = pc;
	uv_timer_init(f->hub->loop, &p->timer);
	p->timer.data = p;
	p->next = f->peers;
	f->peers = p;
	return p;
}

fed_t *fed_new(struct hub *h)
{
	fed_t *f = calloc(1, sizeof *f);

	if (!f)
		abort();
	f->hub = h;
	f->dedup = dedup_new(h->cfg->fed_dedup_window, FED_MID_MAX);
	f->state_path = h->cfg->fed_state_file ? strdup(h->cfg->fed_state_file)
					       : default_state_path(h);
	if (!f->state_path)
		abort();
	for (size_t i = h->live->n_peers; i-- > 0;)
		peer_new(f, &h->live->peers[i]);
	uv_timer_init(h->loop, &f->tick);
	f->tick.data = f;
	if (h->cfg->redis_enabled) {
		char host[64] = "host";
		uint32_t r = 0;

		/* Positions live in Redis; the gateway is elected. */
		gethostname(host, sizeof host - 1);
		if (getrandom(&r, sizeof r, 0) != sizeof r)
			r = (uint32_t)hub_now_ms();
		snprintf(f->instance, sizeof f->instance, "%s-%d-%08x", host,
			 (int)getpid(), r);
		return f;
	}
	f->gateway = f->gw_ready = 1;
	if (state_load(f)) {
		fed_stop(f);
		return NULL;
	}
	return f;
}

int fed_start(fed_t *f)
{
	hub_t *h = f->hub;
	struct lws_context_creation_info vi;

	memset(&vi, 0, sizeof vi);
	vi.vhost_name = "federation";
	vi.port = h->cfg->fed_port;
	vi.iface = h->cfg->fed_host;
	vi.protocols = fed_protocols;
	/* A client certificate is asked for and verified when presented,
	 * but its absence does not abort TLS: the handshake filter then
	 * refuses the peer with a logged reason, like any other identity
	 * failure, instead of a silent TLS alert. */
	vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
		     LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT |
		     LWS_SERVER_OPTION_PEER_CERT_NOT_REQUIRED;
	vi.ssl_cert_filepath = h->cfg->fed_cert;
	vi.ssl_private_key_filepath = h->cfg->fed_key;
	vi.ssl_ca_filepath = h->cfg->fed_ca;
	vi.ssl_options_set =
	    (long)(SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1);
	vi.alpn = "http/1.1";
	vi.extensions = NULL;
	vi.timeout_secs = 10;
	f->vh_listen = lws_create_vhost(h->lws, &vi);
	if (!f->vh_listen) {
		log_error("start_failed",
			  "reason=\"cannot start the federation listener\" "
			  "host=%s port=%d cert=%s key=%s ca=%s",
			  log_str(h->cfg->fed_host), h->cfg->fed_port,
			  log_str(h->cfg->fed_cert), log_str(h->cfg->fed_key),
			  log_str(h->cfg->fed_ca));
		return -1;
	}

	memset(&vi, 0, sizeof vi);
	vi.vhost_name = "federation-client";
	vi.port = CONTEXT_PORT_NO_LISTEN;
	vi.protocols = fed_protocols;
	vi.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	vi.client_ssl_cert_filepath = h->cfg->fed_cert;
	vi.client_ssl_private_key_filepath = h->cfg->fed_key;
	vi.client_ssl_ca_filepath = h->cfg->fed_ca;
	vi.alpn = "http/1.1";
	vi.timeout_secs = 10;
	vi.connect_timeout_secs = 10;
	f->vh_client = lws_create_vhost(h->lws, &vi);
	if (!f->vh_client) {
		log_error("start_failed",
			  "reason=\"cannot set up federation client TLS\"");
		return -1;
	}
	log_info("fed_listening", "host=%s port=%d peers=%zu",
		 log_str(h->cfg->fed_host),
		 lws_get_vhost_listen_port(f->vh_listen), h->live->n_peers);
	uv_timer_start(&f->tick, on_tick, TICK_MS, TICK_MS);
	for (fed_peer_t *p = f->peers; p; p = p->next)
		dial(p);
	return 0;
}

static void peer_timer_closed(uv_handle_t *hd)
{
	fed_peer_t *p = hd->data;

	remote_clear(p);
	free(p->name);
	free(p);
}

/* Detaches a peer from every link and dial and frees it once its timer
 * handle has closed. */
static void peer_remove(fed_t *f, fed_peer_t *p)
{
	fed_peer_t **pp = &f->peers;

	p->removed = 1;
	remote_clear(p);
	for (fed_link_t *l = f->links; l; l = l->next)
		if (l->peer == p) {
			link_attach(l, NULL);
			link_kill(l, "peer removed");
		}
	if (p->dial_wsi) {
		lws_set_opaque_user_data(p->dial_wsi, NULL);
		lws_set_timeout(p->dial_wsi, PENDING_TIMEOUT_USER_OK,
				LWS_TO_KILL_ASYNC);
		lws_cancel_service(lws_get_context(p->dial_wsi));
		p->dial_wsi = NULL;
	}
	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, peer_timer_closed);
}

void fed_reload(fed_t *f, const config_t *next)
{
	fed_peer_t *p, *nx;

	for (p = f->peers; p; p = nx) {
		const config_peer_t *pc = NULL;

		nx = p->next;
		for (size_t i = 0; i < next->n_peers; i++)
			if (!strcmp(next->peers[i].name, p->name))
				pc = &next->peers[i];
		if (!pc) {
			log_info("fed_peer_removed", "peer=%s",
				 log_str(p->name));
			peer_remove(f, p);
			continue;
		}
		if (strcmp(pc->url, p->cfg->url)) {
			log_info("fed_peer_changed", "peer=%s url=%s",
				 log_str(p->name), log_str(pc->url));
			p->cfg = pc;
			if (p->link && p->link->outgoing)
				link_kill(p->link, "url changed");
			if (p->dial_wsi) {
				/* A dial to the old address is dropped. */
				lws_set_opaque_user_data(p->dial_wsi, NULL);
				lws_set_timeout(p->dial_wsi,
						PENDING_TIMEOUT_USER_OK,
						LWS_TO_KILL_ASYNC);
				lws_cancel_service(
				    lws_get_context(p->dial_wsi));
				p->dial_wsi = NULL;
			}
			/* Dial the new address (dial() itself decides whether
			 * a link the peer made to us stands instead). */
			p->attempt = 0;
			schedule_dial(p);
		}
		/* Export and import changes apply from the next message. */
		p->cfg = pc;
	}
	for (size_t i = 0; i < next->n_peers; i++) {
		if (find_peer(f, next->peers[i].name))
			continue;
		log_info("fed_peer_added", "peer=%s",
			 log_str(next->peers[i].name));
		dial(peer_new(f, &next->peers[i]));
	}
}

void fed_stop(fed_t *f)
{
	if (f->stopping)
		return;
	f->stopping = 1;
	for (fed_link_t *l = f->links; l; l = l->next)
		link_kill(l, "shutting down");
	for (fed_peer_t *p = f->peers; p; p = p->next) {
		if (p->dial_wsi) {
			lws_set_opaque_user_data(p->dial_wsi, NULL);
			p->dial_wsi = NULL;
		}
		uv_timer_stop(&p->timer);
		uv_close((uv_handle_t *)&p->timer, NULL);
	}
	uv_timer_stop(&f->tick);
	uv_close((uv_handle_t *)&f->tick, NULL);
	if (f->state_dirty && !f->hub->cluster)
		state_save(f);
}

void fed_free(fed_t *f)
{
	fed_peer_t *p, *nx;

	if (!f)
		return;
	for (p = f->peers; p; p = nx) {
		nx = p->next;
		remote_clear(p);
		free(p->name);
		free(p);
	}
	dedup_free(f->dedup);
	free(f->state_path);
	free(f);
}

size_t fed_peers_view(const fed_t *f, fed_peer_view_t *out, size_t max)
{
	size_t n = 0;

	for (const fed_peer_t *p = f->peers; p; p = p->next, n++) {
		const fed_link_t *l = p->link;

		if (n >= max)
			continue;
		out[n].name = p->name;
		out[n].state = peer_state_names[p->state];
		out[n].why = p->why;
		out[n].direction = l ? (l->outgoing ? "out" : "in") : "";
		out[n].replaying = l ? l->replaying : 0;
		out[n].queue_bytes = l ? l->out.bytes : 0;
		out[n].rx_cursor = p->rx_cursor;
		out[n].stats = &p->st;
	}
	return n;
}

int fed_is_gateway(const fed_t *f)
{
	return f->gateway && f->gw_ready;
}
