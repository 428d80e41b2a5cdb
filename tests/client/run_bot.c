/* run_bot.c: a bot on the client's own loop (parley_run), for the client
 * tests: run_bot URL TOPIC. It subscribes to TOPIC, publishes to it once
 * subscribed, and stops parley_run from the message callback; then it
 * does it again and frees the client from inside the callback (the
 * release must complete before parley_run returns). Prints "ok" and
 * exits 0 when both rounds behaved. */
#include <parley.h>
#include <stdio.h>
#include <string.h>

static int phase, got, subscribed;

static void on_sub(parley_client *c, const char *filter, int err,
		   const char *text, void *ud)
{
	(void)filter;
	if (err) {
		fprintf(stderr, "run_bot: subscribe: %s\n", text);
		parley_stop(c);
		return;
	}
	subscribed = 1;
	if (parley_publish(c, (const char *)ud, "\"hi\"", 4, PARLEY_BODY_JSON,
			   NULL, NULL))
		parley_stop(c);
}

static void on_msg(parley_client *c, const parley_msg *m, void *ud)
{
	(void)ud;
	got++;
	if (phase == 0)
		parley_stop(c);
	else
		parley_client_free(c); /* Completes inside parley_run. */
	(void)m;
}

/* Runs one round. Returns 0 when the message arrived. */
static int round_trip(const char *url, const char *topic)
{
	parley_client *c;
	int rc;

	got = subscribed = 0;
	if (parley_client_new(&c, NULL) ||
	    parley_set_sub_callback(c, on_sub, (void *)topic) ||
	    parley_subscribe(c, topic, -1, NULL, on_msg, NULL) ||
	    parley_connect(c, url))
		return 1;
	rc = parley_run(c);
	if (rc)
		fprintf(stderr, "run_bot: parley_run: %s\n",
			parley_strerror(rc));
	if (phase == 0) {
		if (parley_state(c) != PARLEY_STATE_CONNECTED)
			rc = 1;
		parley_client_free(c);
	}
	return rc || got != 1 || !subscribed;
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	if (round_trip(argv[1], argv[2]))
		return 1;
	phase = 1;
	if (round_trip(argv[1], argv[2]))
		return 1;
	printf("ok\n");
	return 0;
}
