/* line-bot.c: an example parley bot. It posts each line of its standard
 * input to one topic and prints the messages of another (or the same)
 * topic, reconnecting by itself when the hub goes away.
 *
 *   line-bot [-u URL] OUT_TOPIC IN_FILTER      (token from $PARLEY_TOKEN)
 *
 * It runs the client on its own libuv loop together with a reader for
 * stdin (the attached-loop mode of libparley). Build it against an
 * installed libparley with the Makefile or CMakeLists.txt beside it. */
#include <parley.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static uv_loop_t loop;
static uv_pipe_t in;
static parley_client *client;
static const char *out_topic;
static char line[65536];
static size_t line_len;
static int input_done; /* stdin ended: leave once every post is acked. */

static void on_message(parley_client *c, const parley_msg *m, void *ud)
{
	size_t len;
	const char *text = parley_msg_body_string(m, &len);

	if (!text)
		text = parley_msg_body(m, &len);
	printf("%s <%s> %.*s\n", parley_msg_topic(m), parley_msg_from(m),
	       (int)len, text ? text : "");
	fflush(stdout);
}

static void finish(void);

static void on_published(parley_client *c, int err, const char *mid,
			 const char *text, void *ud)
{
	if (err)
		fprintf(stderr, "line-bot: not posted: %s\n", text);
	if (input_done && parley_pending(c) == 0)
		finish();
}

static void on_error(parley_client *c, int err, const char *text,
		     const char *topic, void *ud)
{
	fprintf(stderr, "line-bot: %s (%s)\n", text, parley_errname(err));
}

/* Stops reading and releases the client; uv_run then returns once the
 * client has closed everything. */
static void finish(void)
{
	if (!client)
		return;
	uv_close((uv_handle_t *)&in, NULL);
	parley_client_free(client); /* Completes on the loop. */
	client = NULL;
}

static void on_state(parley_client *c, int state, void *ud)
{
	fprintf(stderr, "line-bot: %s\n", parley_state_name(state));
	if (state == PARLEY_STATE_CLOSED) /* Gave up (e.g. bad token). */
		finish();
}

static void post_line(void)
{
	int rc;

	if (!line_len || !client)
		return;
	rc = parley_publish(client, out_topic, line, line_len,
			    PARLEY_BODY_STRING, on_published, NULL);
	if (rc)
		fprintf(stderr, "line-bot: cannot post: %s\n",
			parley_strerror(rc));
	line_len = 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char buf[4096];

	b->base = buf;
	b->len = sizeof(buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	if (n < 0) { /* End of input: post what is left, then leave. */
		post_line();
		input_done = 1;
		uv_read_stop(s);
		if (client && parley_pending(client) == 0)
			finish();
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		if (b->base[i] == '\n')
			post_line();
		else if (line_len < sizeof(line))
			line[line_len++] = b->base[i];
	}
}

int main(int argc, char **argv)
{
	const char *url = "ws://127.0.0.1:8080/ws";
	const char *token = getenv("PARLEY_TOKEN");
	int opt, rc;

	while ((opt = getopt(argc, argv, "u:")) != -1)
		if (opt == 'u')
			url = optarg;
	if (argc - optind != 2) {
		fprintf(stderr, "usage: line-bot [-u URL] OUT_TOPIC "
				"IN_FILTER\n");
		return 2;
	}
	out_topic = argv[optind];
	uv_loop_init(&loop);
	if ((rc = parley_client_new(&client, &loop)) ||
	    (token && (rc = parley_set_token(client, token))) ||
	    (rc = parley_set_callbacks(client, on_state, on_error, NULL)) ||
	    (rc = parley_subscribe(client, argv[optind + 1], -1, NULL,
				   on_message, NULL)) ||
	    (rc = parley_connect(client, url))) {
		fprintf(stderr, "line-bot: %s\n", parley_strerror(rc));
		parley_client_free(client);
		uv_run(&loop, UV_RUN_DEFAULT);
		return 1;
	}
	uv_pipe_init(&loop, &in, 0);
	uv_pipe_open(&in, 0);
	uv_read_start((uv_stream_t *)&in, on_alloc, on_read);
	uv_run(&loop, UV_RUN_DEFAULT); /* Returns once everything closed. */
	uv_loop_close(&loop);
	return 0;
}
