/* common.c: shared pieces of the `parley` subcommands (see common.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

const char cli_conn_help[] =
    "  -u, --url URL      hub URL (default " CLI_DEFAULT_URL ")\n"
    "  -T, --token TOKEN  token to authenticate with (default: "
    "$PARLEY_TOKEN)\n"
    "      --ca FILE      CA certificates (PEM) to verify a wss:// hub\n"
    "      --cert FILE    client certificate (PEM) for wss://\n"
    "      --key FILE     its private key (PEM)\n"
    "  -v, --verbose      say more\n"
    "  -h, --help         show this help\n";

int cli_conn_option(struct cli_conn *o, int opt, const char *arg)
{
	switch (opt) {
	case 'u':
		o->url = arg;
		return 1;
	case 'T':
		o->token = arg;
		return 1;
	case CLI_OPT_CA:
		o->ca = arg;
		return 1;
	case CLI_OPT_CERT:
		o->cert = arg;
		return 1;
	case CLI_OPT_KEY:
		o->key = arg;
		return 1;
	case 'v':
		o->verbose++;
		return 1;
	default:
		return 0;
	}
}

int cli_exit_code(int err)
{
	switch (err) {
	case 0:
		return CLI_EXIT_OK;
	case PARLEY_ECONNECT:
	case PARLEY_ETLS:
		return CLI_EXIT_CONNECT;
	case PARLEY_EAUTH:
		return CLI_EXIT_AUTH;
	case PARLEY_EFORBIDDEN:
		return CLI_EXIT_FORBIDDEN;
	default:
		return CLI_EXIT_OTHER;
	}
}

void cli_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("parley: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_client_start(uv_loop_t *loop, const struct cli_conn *o,
		     parley_client **out)
{
	const char *token = o->token ? o->token : getenv("PARLEY_TOKEN");
	const char *url = o->url ? o->url : CLI_DEFAULT_URL;
	parley_client *c;
	int rc;

	*out = NULL;
	if (!o->cert != !o->key) {
		cli_error("--cert and --key go together");
		cli_loop_finish(loop);
		return CLI_EXIT_USAGE;
	}
	rc = parley_client_new(&c, loop);
	if (rc) {
		cli_error("%s", parley_strerror(rc));
		return CLI_EXIT_OTHER;
	}
	parley_set_option(c, PARLEY_OPT_CONNECT_ATTEMPTS, 1);
	if (token && *token && (rc = parley_set_token(c, token))) {
		cli_error("token: %s", parley_strerror(rc));
		goto fail;
	}
	if ((o->ca || o->cert) &&
	    (rc = parley_set_tls(c, o->ca, o->cert, o->key))) {
		cli_error("cannot read the TLS files (%s%s%s%s%s): %s",
			  o->ca ? o->ca : "", o->ca && o->cert ? ", " : "",
			  o->cert ? o->cert : "", o->key ? ", " : "",
			  o->key ? o->key : "", parley_strerror(rc));
		rc = PARLEY_ETLS;
		goto fail;
	}
	rc = parley_connect(c, url);
	if (rc == PARLEY_EINVAL) {
		cli_error("invalid URL '%s' (expected ws://HOST[:PORT]/PATH "
			  "or wss://...)",
			  url);
		parley_client_free(c);
		cli_loop_finish(loop);
		return CLI_EXIT_USAGE;
	}
	if (rc) {
		cli_error("%s: %s", url, parley_strerror(rc));
		goto fail;
	}
	*out = c;
	return 0;
fail:
	parley_client_free(c);
	cli_loop_finish(loop);
	return cli_exit_code(rc);
}

void cli_loop_finish(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
}
