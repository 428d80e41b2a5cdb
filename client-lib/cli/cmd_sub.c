/* cmd_sub.c: `parley sub`: subscribes to topics and prints each message,
 * one per line, until interrupted. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "common.h"

static const char sub_usage[] =
    "usage: parley sub [options] TOPIC...\n"
    "\n"
    "Subscribe to each TOPIC (a topic or a pattern with + and #) and print\n"
    "every message as \"time origin from topic: body\", or as one JSON\n"
    "object per line with --json. Runs until interrupted; reconnects and\n"
    "resumes by itself.\n"
    "\n"
    "options:\n"
    "  -n, --last N       first print the N most recent stored messages\n"
    "      --since CURSOR first print every message after CURSOR\n"
    "  -j, --json         print one JSON object per message\n";

/* One run of `parley sub`. */
struct sub_run {
	uv_loop_t loop;	    /* The command's loop. */
	parley_client *c;   /* The client. */
	uv_signal_t sigint; /* SIGINT / SIGTERM: stop. */
	uv_signal_t sigterm;
	int json;      /* --json. */
	int verbose;   /* -v. */
	int finished;  /* finish() ran. */
	int exit_code; /* Exit code. */
};

static void finish(struct sub_run *r, int code)
{
	if (r->finished)
		return;
	r->finished = 1;
	r->exit_code = code;
	uv_close((uv_handle_t *)&r->sigint, NULL);
	uv_close((uv_handle_t *)&r->sigterm, NULL);
	parley_client_free(r->c);
	r->c = NULL;
}

/* Writes s (n bytes) with control characters escaped, so that one message
 * stays one line and cannot drive the terminal. */
static void put_clean(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '\n')
			fputs("\\n", stdout);
		else if (ch == '\t')
			fputs("\\t", stdout);
		else if (ch == '\\')
			fputs("\\\\", stdout);
		else if (ch < 0x20 || ch == 0x7f)
			printf("\\x%02x", ch);
		else
			putchar(ch);
	}
}

static void on_msg(parley_client *c, const parley_msg *m, void *ud)
{
	struct sub_run *r = ud;
	const char *body;
	size_t len;

	(void)c;
	if (r->json) {
		const char *j = parley_msg_json(m);

		if (!j) {
			cli_error("out of memory");
			return;
		}
		fputs(j, stdout);
	} else {
		time_t t = (time_t)(parley_msg_ts(m) / 1000);
		struct tm tm;
		char when[32] = "?";
		const char *origin = parley_msg_origin(m);
		const char *from = parley_msg_from(m);
		const char *topic = parley_msg_topic(m);

		if (localtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		fputs(when, stdout);
		putchar(' ');
		put_clean(origin, strlen(origin));
		putchar(' ');
		put_clean(from, strlen(from));
		putchar(' ');
		put_clean(topic, strlen(topic));
		fputs(": ", stdout);
		body = parley_msg_body_string(m, &len);
		if (!body)
			body = parley_msg_body(m, &len);
		if (body)
			put_clean(body, len);
	}
	putchar('\n');
	if (fflush(stdout) == EOF) /* The reader went away (EPIPE). */
		finish(r, errno == EPIPE ? CLI_EXIT_OK : CLI_EXIT_OTHER);
}

static void on_sub(parley_client *c, const char *filter, int err,
		   const char *text, void *ud)
{
	struct sub_run *r = ud;

	(void)c;
	if (!err) {
		if (r->verbose)
			cli_error("subscribed to %s", filter);
		return;
	}
	cli_error("cannot subscribe to %s: %s", filter, text);
	finish(r, cli_exit_code(err));
}

static void on_state(parley_client *c, int state, void *ud)
{
	struct sub_run *r = ud;

	if (r->verbose > 1)
		cli_error("%s", parley_state_name(state));
	if (state == PARLEY_STATE_CLOSED)
		finish(r, cli_exit_code(parley_last_error(c)));
}

static void on_error(parley_client *c, int err, const char *text,
		     const char *topic, void *ud)
{
	struct sub_run *r = ud;

	if (err == PARLEY_EHISTORYGAP) {
		cli_error("warning: %s: messages may be missing (%s)", topic,
			  text);
		return;
	}
	if (parley_state(c) == PARLEY_STATE_CONNECTING ||
	    parley_state(c) == PARLEY_STATE_AUTHENTICATING ||
	    err == PARLEY_EAUTH) {
		cli_error("%s: %s", parley_strerror(err), text);
		return;
	}
	if (r->verbose || err != PARLEY_ECLOSED)
		cli_error("%s%s%s%s", topic ? topic : "", topic ? ": " : "",
			  text, err == PARLEY_ECLOSED ? "; reconnecting" : "");
}

static void on_signal(uv_signal_t *s, int signum)
{
	(void)signum;
	finish(s->data, CLI_EXIT_OK);
}

int cmd_sub(int argc, char **argv)
{
	enum { OPT_SINCE = CLI_OPT_FIRST_FREE };
	static const struct option longopts[] = {
	    CLI_CONN_LONGOPTS,
	    {"last", required_argument, NULL, 'n'},
	    {"since", required_argument, NULL, OPT_SINCE},
	    {"json", no_argument, NULL, 'j'},
	    {NULL, 0, NULL, 0},
	};
	struct cli_conn o = {0};
	struct sub_run r;
	const char *since = NULL;
	long last = -1;
	int opt, rc, i;
	char *end;

	memset(&r, 0, sizeof(r));
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+u:T:vhn:j", longopts, NULL)) !=
	       -1) {
		if (cli_conn_option(&o, opt, optarg))
			continue;
		switch (opt) {
		case 'n':
			errno = 0;
			last = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || last < 0 ||
			    last > INT_MAX) {
				cli_error("--last needs a number >= 0");
				return CLI_EXIT_USAGE;
			}
			break;
		case OPT_SINCE:
			since = optarg;
			break;
		case 'j':
			r.json = 1;
			break;
		case 'h':
			printf("%s%s", sub_usage, cli_conn_help);
			return CLI_EXIT_OK;
		default:
			fprintf(stderr, "%s", sub_usage);
			return CLI_EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "%s", sub_usage);
		return CLI_EXIT_USAGE;
	}
	if (since && last >= 0) {
		cli_error("--last and --since exclude each other");
		return CLI_EXIT_USAGE;
	}
	for (i = optind; i < argc; i++)
		if (parley_topic_check(argv[i], 1)) {
			cli_error("invalid topic or pattern '%s'", argv[i]);
			return CLI_EXIT_USAGE;
		}
	r.verbose = o.verbose;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (uv_loop_init(&r.loop)) {
		cli_error("cannot create an event loop");
		return CLI_EXIT_OTHER;
	}
	rc = cli_client_start(&r.loop, &o, &r.c);
	if (rc)
		return rc;
	parley_set_callbacks(r.c, on_state, on_error, &r);
	parley_set_sub_callback(r.c, on_sub, &r);
	uv_signal_init(&r.loop, &r.sigint);
	uv_signal_init(&r.loop, &r.sigterm);
	r.sigint.data = r.sigterm.data = &r;
	uv_signal_start(&r.sigint, on_signal, SIGINT);
	uv_signal_start(&r.sigterm, on_signal, SIGTERM);
	for (i = optind; i < argc && !r.finished; i++) {
		rc = parley_subscribe(r.c, argv[i], (int)last, since, on_msg,
				      &r);
		if (rc == PARLEY_EEXIST)
			continue; /* The same filter twice. */
		if (rc) {
			cli_error("cannot subscribe to %s: %s", argv[i],
				  parley_strerror(rc));
			finish(&r, CLI_EXIT_OTHER);
		}
	}
	cli_loop_finish(&r.loop);
	return r.exit_code;
}
