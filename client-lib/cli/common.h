/* common.h: what the `parley` subcommands share: exit codes, the
 * connection options (-u, -T, --ca, --cert, --key), client setup and
 * error messages. Built on parley.h only. */
#ifndef PARLEY_CLI_COMMON_H
#define PARLEY_CLI_COMMON_H

#include <getopt.h>
#include <parley.h>
#include <uv.h>

/* Documented exit codes (docs/parley.1.md). */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_OTHER = 1,	/* Any other failure. */
	CLI_EXIT_USAGE = 2,	/* Bad command line. */
	CLI_EXIT_CONNECT = 3,	/* Cannot connect (network, TLS, HTTP). */
	CLI_EXIT_AUTH = 4,	/* The hub refused the token. */
	CLI_EXIT_FORBIDDEN = 5, /* Not permitted for this identity. */
};

/* Default hub URL. */
#define CLI_DEFAULT_URL "ws://127.0.0.1:8080/ws"

/* Connection options shared by subcommands. */
struct cli_conn {
	const char *url;   /* Hub URL. */
	const char *token; /* Token, or NULL (then $PARLEY_TOKEN). */
	const char *ca;	   /* TLS CA file, or NULL. */
	const char *cert;  /* TLS client certificate, or NULL. */
	const char *key;   /* Its key, or NULL. */
	int verbose;	   /* -v given. */
};

/* getopt_long codes of the long-only shared options. */
enum { CLI_OPT_CA = 1000, CLI_OPT_CERT, CLI_OPT_KEY, CLI_OPT_FIRST_FREE };

/* The shared long options, to copy into a subcommand's table. */
#define CLI_CONN_LONGOPTS                                                      \
	{"url", required_argument, NULL, 'u'},                                 \
	    {"token", required_argument, NULL, 'T'},                           \
	    {"ca", required_argument, NULL, CLI_OPT_CA},                       \
	    {"cert", required_argument, NULL, CLI_OPT_CERT},                   \
	    {"key", required_argument, NULL, CLI_OPT_KEY},                     \
	    {"verbose", no_argument, NULL, 'v'},                               \
	{                                                                      \
		"help", no_argument, NULL, 'h'                                 \
	}

/* The help text of the shared options. */
extern const char cli_conn_help[];

/* Handles a shared option. Returns 1 when opt was one, else 0. */
int cli_conn_option(struct cli_conn *o, int opt, const char *arg);

/* Returns the exit code for a library error. */
int cli_exit_code(int err);

/* Prints "parley: " and the formatted message to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Creates a client on loop with o's settings and starts connecting (one
 * attempt for the first connection; reconnects after that). Prints an
 * error and returns an exit code on failure, else 0 and *out. */
int cli_client_start(uv_loop_t *loop, const struct cli_conn *o,
		     parley_client **out);

/* Runs loop until no handle is left, then closes it. */
void cli_loop_finish(uv_loop_t *loop);

#endif
