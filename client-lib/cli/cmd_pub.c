/* cmd_pub.c: `parley pub`: publishes one message given on the command
 * line, or one message per line of standard input, and waits for the
 * hub's acknowledgements. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common.h"
#include "lines.h"

/* Longest stdin line published (the hub has its own, smaller limit). */
#define MAX_LINE (1 << 20)

static const char pub_usage[] =
    "usage: parley pub [options] TOPIC [BODY]\n"
    "\n"
    "Publish BODY to TOPIC, or with no BODY one message per line of\n"
    "standard input (empty lines are skipped). BODY (or a line) is sent\n"
    "as JSON when it parses as JSON, else as a JSON string.\n"
    "\n"
    "options:\n"
    "  -s, --string       always send the body as a JSON string\n";

/* One run of `parley pub`. */
struct pub_run {
	uv_loop_t loop;	    /* The command's loop. */
	parley_client *c;   /* The client. */
	cli_lines *lines;   /* stdin reader, or NULL. */
	uv_signal_t sigint; /* SIGINT / SIGTERM: stop. */
	uv_signal_t sigterm;
	const char *topic;	/* Where to publish. */
	int kind;		/* enum parley_body for bodies. */
	int verbose;		/* -v. */
	int input_done;		/* No more bodies will come. */
	int finished;		/* finish() ran. */
	int exit_code;		/* First failure's exit code. */
	unsigned long sent, ok; /* Publishes made and acknowledged. */
	unsigned long line_no;	/* Lines read. */
};

/* Ends the run: frees the client and closes every handle. */
static void finish(struct pub_run *r)
{
	if (r->finished)
		return;
	r->finished = 1;
	if (r->lines) {
		cli_lines_close(r->lines);
		r->lines = NULL;
	}
	uv_close((uv_handle_t *)&r->sigint, NULL);
	uv_close((uv_handle_t *)&r->sigterm, NULL);
	parley_client_free(r->c);
	r->c = NULL;
}

/* Records a failure's exit code (the first one wins). */
static void fail(struct pub_run *r, int code)
{
	if (!r->exit_code)
		r->exit_code = code;
}

static void maybe_done(struct pub_run *r)
{
	if (r->input_done && r->c && parley_pending(r->c) == 0)
		finish(r);
}

static void on_pub(parley_client *c, int err, const char *mid, const char *text,
		   void *ud)
{
	struct pub_run *r = ud;

	(void)c;
	if (err) {
		/* Connection-level failures were already reported once. */
		if (err != PARLEY_ECANCELED && err != PARLEY_ECONNECT &&
		    err != PARLEY_ETLS && err != PARLEY_EAUTH &&
		    err != PARLEY_ECLOSED)
			cli_error("publish to %s failed: %s", r->topic, text);
		fail(r, cli_exit_code(err));
	} else {
		r->ok++;
		if (r->verbose)
			printf("%s\n", mid);
	}
	if (r->lines)
		cli_lines_resume(r->lines);
	maybe_done(r);
}

/* Publishes one body. Returns 0, or PARLEY_EQUEUEFULL (retry later). */
static int publish(struct pub_run *r, const char *body, size_t len)
{
	int rc = parley_publish(r->c, r->topic, body, len, r->kind, on_pub, r);

	if (rc == PARLEY_EQUEUEFULL)
		return rc;
	if (rc) {
		cli_error("cannot publish%s: %s",
			  r->line_no ? " this line" : "", parley_strerror(rc));
		fail(r,
		     rc == PARLEY_EINVAL ? CLI_EXIT_OTHER : cli_exit_code(rc));
	} else {
		r->sent++;
	}
	return 0;
}

static void on_line(cli_lines *l, const char *line, size_t len, void *ud)
{
	struct pub_run *r = ud;

	r->line_no++;
	if (!line) {
		cli_error("line %lu is longer than %d bytes: skipped",
			  r->line_no, MAX_LINE);
		fail(r, CLI_EXIT_OTHER);
		return;
	}
	if (!len || r->finished)
		return;
	if (publish(r, line, len) == PARLEY_EQUEUEFULL) {
		/* Back-pressure: wait for acknowledgements, then retry. */
		r->line_no--;
		cli_lines_pause(l);
		cli_lines_requeue(l);
	}
}

static void on_eof(cli_lines *l, int err, void *ud)
{
	struct pub_run *r = ud;

	(void)l;
	if (err) {
		cli_error("reading standard input: %s", uv_strerror(err));
		fail(r, CLI_EXIT_OTHER);
	}
	r->input_done = 1;
	maybe_done(r);
}

static void on_state(parley_client *c, int state, void *ud)
{
	struct pub_run *r = ud;
	int err = parley_last_error(c);

	if (r->verbose > 1)
		cli_error("%s", parley_state_name(state));
	if (state == PARLEY_STATE_CLOSED) {
		if (err)
			fail(r, cli_exit_code(err));
		finish(r);
	}
}

static void on_error(parley_client *c, int err, const char *text,
		     const char *topic, void *ud)
{
	struct pub_run *r = ud;

	(void)topic;
	if (parley_state(c) == PARLEY_STATE_CONNECTING ||
	    parley_state(c) == PARLEY_STATE_AUTHENTICATING ||
	    err == PARLEY_EAUTH) {
		cli_error("%s: %s", parley_strerror(err), text);
		return;
	}
	if (r->verbose || err != PARLEY_ECLOSED)
		cli_error("%s%s", text,
			  err == PARLEY_ECLOSED ? "; reconnecting" : "");
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct pub_run *r = s->data;

	(void)signum;
	if (r->c && parley_pending(r->c))
		cli_error("interrupted with %zu message(s) unacknowledged",
			  parley_pending(r->c));
	fail(r, CLI_EXIT_OTHER);
	finish(r);
}

int cmd_pub(int argc, char **argv)
{
	static const struct option longopts[] = {
	    CLI_CONN_LONGOPTS,
	    {"string", no_argument, NULL, 's'},
	    {NULL, 0, NULL, 0},
	};
	struct cli_conn o = {0};
	struct pub_run r;
	int opt, rc;

	memset(&r, 0, sizeof(r));
	r.kind = PARLEY_BODY_AUTO;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+u:T:vhs", longopts, NULL)) !=
	       -1) {
		if (cli_conn_option(&o, opt, optarg))
			continue;
		switch (opt) {
		case 's':
			r.kind = PARLEY_BODY_STRING;
			break;
		case 'h':
			printf("%s%s", pub_usage, cli_conn_help);
			return CLI_EXIT_OK;
		default:
			fprintf(stderr, "%s", pub_usage);
			return CLI_EXIT_USAGE;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		fprintf(stderr, "%s", pub_usage);
		return CLI_EXIT_USAGE;
	}
	r.topic = argv[optind];
	r.verbose = o.verbose;
	if (parley_topic_check(r.topic, 0)) {
		cli_error("invalid topic '%s'", r.topic);
		return CLI_EXIT_USAGE;
	}
	if (uv_loop_init(&r.loop)) {
		cli_error("cannot create an event loop");
		return CLI_EXIT_OTHER;
	}
	rc = cli_client_start(&r.loop, &o, &r.c);
	if (rc)
		return rc;
	parley_set_callbacks(r.c, on_state, on_error, &r);
	uv_signal_init(&r.loop, &r.sigint);
	uv_signal_init(&r.loop, &r.sigterm);
	r.sigint.data = r.sigterm.data = &r;
	uv_signal_start(&r.sigint, on_signal, SIGINT);
	uv_signal_start(&r.sigterm, on_signal, SIGTERM);
	if (argc - optind == 2) {
		publish(&r, argv[optind + 1], strlen(argv[optind + 1]));
		r.input_done = 1;
		maybe_done(&r);
	} else {
		rc = cli_lines_start(&r.loop, 0, MAX_LINE, on_line, on_eof, &r,
				     &r.lines);
		if (rc) {
			cli_error("cannot read standard input: %s",
				  uv_strerror(rc));
			fail(&r, CLI_EXIT_OTHER);
			finish(&r);
		}
	}
	cli_loop_finish(&r.loop);
	if (r.verbose)
		cli_error("%lu of %lu message(s) acknowledged", r.ok, r.sent);
	fflush(stdout);
	return r.exit_code;
}
