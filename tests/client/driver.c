/* driver.c: a scriptable libparley client for the client tests. It prints
 * every library event as one JSON object per line on stdout and takes
 * commands, one per line, on stdin:
 *
 *   sub FILTER [last N | since CURSOR]   unsub FILTER
 *   pub TAG TOPIC BODY...                 (BODY read as JSON, else string)
 *   connect | disconnect | pending | quit
 *
 * Options: -u URL, -T TOKEN, --ca/--cert/--key FILE, --attach (run on the
 * driver's own uv loop instead of the client's), --opt NAME=VALUE (a
 * parley_set_option), --exit-on-closed, --no-connect.
 * Uses only the public API (plus Jansson to print, libuv for stdin). */
#include <getopt.h>
#include <jansson.h>
#include <parley.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lines.h"

struct driver {
	uv_loop_t loop;	    /* --attach: the loop the client joins. */
	int attach;	    /* --attach given. */
	parley_client *c;   /* The client, NULL once freed. */
	cli_lines *lines;   /* stdin commands. */
	const char *url;    /* -u. */
	int exit_on_closed; /* --exit-on-closed. */
	int quit;	    /* Leaving. */
	int exit_code;	    /* Process exit code. */
};

/* Prints o (stolen) as one line. */
static void emit(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

	if (s) {
		printf("%s\n", s);
		fflush(stdout);
		free(s);
	}
	json_decref(o);
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static void on_state(parley_client *c, int state, void *ud)
{
	struct driver *d = ud;

	emit(json_pack("{s:s,s:s,s:s,s:o}", "ev", "state", "state",
		       parley_state_name(state), "last_error",
		       parley_errname(parley_last_error(c)), "user",
		       str_or_null(parley_user(c))));
	if (state == PARLEY_STATE_CLOSED && d->exit_on_closed && !d->quit) {
		d->exit_code = parley_last_error(c) ? 1 : 0;
		d->quit = 1;
		if (d->lines)
			cli_lines_close(d->lines);
		d->lines = NULL;
		parley_client_free(c);
		d->c = NULL;
	}
}

static void on_error(parley_client *c, int err, const char *text,
		     const char *topic, void *ud)
{
	(void)c;
	(void)ud;
	emit(json_pack("{s:s,s:s,s:s,s:o}", "ev", "error", "code",
		       parley_errname(err), "text", text, "topic",
		       str_or_null(topic)));
}

static void on_sub(parley_client *c, const char *filter, int err,
		   const char *text, void *ud)
{
	(void)c;
	(void)ud;
	emit(json_pack("{s:s,s:s,s:s,s:s}", "ev", "sub", "filter", filter,
		       "code", parley_errname(err), "text", text));
}

static void on_msg(parley_client *c, const parley_msg *m, void *ud)
{
	const char *filter = ud;
	const char *j = parley_msg_json(m);
	json_t *msg = j ? json_loads(j, 0, NULL) : NULL;
	size_t blen = 0;
	const char *body = parley_msg_body(m, &blen);

	(void)c;
	emit(json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:o}", "ev", "msg", "sub", filter,
	    "topic", parley_msg_topic(m), "mid", parley_msg_mid(m), "cursor",
	    parley_msg_cursor(m), "from", parley_msg_from(m), "ts",
	    (json_int_t)parley_msg_ts(m), "body",
	    body ? json_loadb(body, blen, JSON_DECODE_ANY, NULL) : json_null(),
	    "json_ok", json_boolean(msg != NULL)));
	json_decref(msg);
}

static void on_pub(parley_client *c, int err, const char *mid, const char *text,
		   void *ud)
{
	char *tag = ud;

	(void)c;
	emit(json_pack("{s:s,s:s,s:s,s:o,s:o}", "ev", "pub", "tag", tag, "code",
		       parley_errname(err), "mid", str_or_null(mid), "text",
		       str_or_null(text)));
	free(tag);
}

/* Prints the immediate result of a command. */
static void result(const char *cmd, int rc)
{
	emit(json_pack("{s:s,s:s,s:s}", "ev", "result", "cmd", cmd, "code",
		       parley_errname(rc)));
}

/* Returns the next space-separated word of *p (NUL-terminated in place). */
static char *word(char **p)
{
	char *w = *p, *e;

	while (*w == ' ')
		w++;
	if (!*w)
		return NULL;
	e = strchr(w, ' ');
	if (e) {
		*e = 0;
		*p = e + 1;
	} else {
		*p = w + strlen(w);
	}
	return w;
}

static void quit(struct driver *d)
{
	if (d->quit)
		return;
	d->quit = 1;
	if (d->lines)
		cli_lines_close(d->lines);
	d->lines = NULL;
	if (d->c)
		emit(json_pack("{s:s,s:I}", "ev", "exit", "pending",
			       (json_int_t)parley_pending(d->c)));
	parley_client_free(d->c);
	d->c = NULL;
}

static void on_line(cli_lines *l, const char *line, size_t len, void *ud)
{
	struct driver *d = ud;
	char *copy, *p, *cmd;

	(void)l;
	if (!line || !len || d->quit || !d->c)
		return;
	copy = strdup(line);
	if (!copy)
		return;
	p = copy;
	cmd = word(&p);
	if (!cmd) {
	} else if (!strcmp(cmd, "sub")) {
		char *filter = word(&p), *kind = word(&p), *arg = word(&p);
		static char filters[64][256];
		static int nf;
		int last = -1;
		const char *since = NULL;
		char *keep;

		if (kind && !strcmp(kind, "last") && arg)
			last = atoi(arg);
		else if (kind && !strcmp(kind, "since") && arg)
			since = arg;
		/* The filter text outlives the subscription (user data). */
		keep = filters[nf++ % 64];
		snprintf(keep, 256, "%s", filter ? filter : "");
		result("sub", parley_subscribe(d->c, filter, last, since,
					       on_msg, keep));
	} else if (!strcmp(cmd, "unsub")) {
		result("unsub", parley_unsubscribe(d->c, word(&p)));
	} else if (!strcmp(cmd, "pub")) {
		char *tag = word(&p), *topic = word(&p), *t;
		int rc;

		t = strdup(tag ? tag : "");
		rc = parley_publish(d->c, topic, p, strlen(p), PARLEY_BODY_AUTO,
				    on_pub, t);
		if (rc)
			free(t);
		result("pub", rc);
	} else if (!strcmp(cmd, "connect")) {
		result("connect", parley_connect(d->c, d->url));
	} else if (!strcmp(cmd, "disconnect")) {
		result("disconnect", parley_disconnect(d->c));
	} else if (!strcmp(cmd, "pending")) {
		emit(json_pack("{s:s,s:I}", "ev", "pending", "n",
			       (json_int_t)parley_pending(d->c)));
	} else if (!strcmp(cmd, "quit")) {
		quit(d);
	} else {
		result(cmd, PARLEY_EINVAL);
	}
	free(copy);
}

static void on_eof(cli_lines *l, int err, void *ud)
{
	(void)l;
	(void)err;
	quit(ud);
}

/* Maps an option name to its number. */
static int option_number(const char *name)
{
	static const struct {
		const char *name;
		int opt;
	} t[] = {
	    {"max_frame_bytes", PARLEY_OPT_MAX_FRAME_BYTES},
	    {"max_queued", PARLEY_OPT_MAX_QUEUED},
	    {"backoff_min_ms", PARLEY_OPT_BACKOFF_MIN_MS},
	    {"backoff_max_ms", PARLEY_OPT_BACKOFF_MAX_MS},
	    {"connect_attempts", PARLEY_OPT_CONNECT_ATTEMPTS},
	    {"reconnect", PARLEY_OPT_RECONNECT},
	    {"resend_unacked", PARLEY_OPT_RESEND_UNACKED},
	    {"request_timeout_ms", PARLEY_OPT_REQUEST_TIMEOUT_MS},
	    {"connect_timeout_s", PARLEY_OPT_CONNECT_TIMEOUT_S},
	    {"keepalive_s", PARLEY_OPT_KEEPALIVE_S},
	    {"retry_throttled", PARLEY_OPT_RETRY_THROTTLED},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (!strcmp(name, t[i].name))
			return t[i].opt;
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"ca", required_argument, NULL, 1},
	    {"cert", required_argument, NULL, 2},
	    {"key", required_argument, NULL, 3},
	    {"attach", no_argument, NULL, 4},
	    {"opt", required_argument, NULL, 5},
	    {"exit-on-closed", no_argument, NULL, 6},
	    {"no-connect", no_argument, NULL, 7},
	    {NULL, 0, NULL, 0},
	};
	struct driver d;
	const char *token = NULL, *ca = NULL, *cert = NULL, *key = NULL;
	char *opts[32];
	int nopts = 0, opt, rc, connect = 1;
	uv_loop_t *loop;

	memset(&d, 0, sizeof(d));
	d.url = "ws://127.0.0.1:8080/ws";
	while ((opt = getopt_long(argc, argv, "u:T:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'u':
			d.url = optarg;
			break;
		case 'T':
			token = optarg;
			break;
		case 1:
			ca = optarg;
			break;
		case 2:
			cert = optarg;
			break;
		case 3:
			key = optarg;
			break;
		case 4:
			d.attach = 1;
			break;
		case 5:
			if (nopts < 32)
				opts[nopts++] = optarg;
			break;
		case 6:
			d.exit_on_closed = 1;
			break;
		case 7:
			connect = 0;
			break;
		default:
			return 2;
		}
	}
	if (d.attach)
		uv_loop_init(&d.loop);
	rc = parley_client_new(&d.c, d.attach ? &d.loop : NULL);
	if (rc) {
		fprintf(stderr, "driver: %s\n", parley_strerror(rc));
		return 1;
	}
	for (int i = 0; i < nopts; i++) {
		char *eq = strchr(opts[i], '=');

		if (eq)
			*eq = 0;
		rc = eq ? parley_set_option(d.c, option_number(opts[i]),
					    atol(eq + 1))
			: PARLEY_EINVAL;
		result("opt", rc);
	}
	if (token)
		result("token", parley_set_token(d.c, token));
	if (ca || cert)
		result("tls", parley_set_tls(d.c, ca, cert, key));
	parley_set_callbacks(d.c, on_state, on_error, &d);
	parley_set_sub_callback(d.c, on_sub, &d);
	if (connect)
		result("connect", parley_connect(d.c, d.url));
	loop = parley_client_loop(d.c);
	if (cli_lines_start(loop, 0, 1 << 20, on_line, on_eof, &d, &d.lines)) {
		fprintf(stderr, "driver: cannot read stdin\n");
		parley_client_free(d.c);
		return 1;
	}
	if (d.attach) {
		uv_run(&d.loop, UV_RUN_DEFAULT);
		rc = uv_loop_close(&d.loop);
		if (rc)
			fprintf(stderr, "driver: loop not empty: %s\n",
				uv_strerror(rc));
	} else {
		/* The client's own loop, driven by parley_run_once. */
		while (!d.quit)
			parley_run_once(d.c, 200);
	}
	emit(json_pack("{s:s,s:i}", "ev", "done", "code", d.exit_code));
	return d.exit_code;
}
