/* main.c: parleyd's command line: parse arguments, build the hub, run it,
 * free it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth.h"
#include "config.h"
#include "hub.h"
#include "log.h"
#include "server.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: parleyd -c FILE          run a hub\n"
		   "       parleyd --check -c FILE  validate FILE and exit\n"
		   "       parleyd --hash-token [TOKEN]\n"
		   "                                print the token_sha256 of "
		   "TOKEN\n"
		   "                                (read from stdin when "
		   "omitted)\n"
		   "       parleyd --config-docs    print the table of "
		   "configuration keys\n"
		   "       parleyd --version\n");
}

static int hash_token(const char *arg)
{
	char line[4096], hex[65];
	size_t n;

	if (!arg) {
		if (!fgets(line, sizeof line, stdin)) {
			fprintf(stderr, "parleyd: no token on stdin\n");
			return 1;
		}
		n = strcspn(line, "\r\n");
		line[n] = 0;
		arg = line;
	}
	if (!*arg) {
		fprintf(stderr, "parleyd: empty token\n");
		return 1;
	}
	auth_hash_hex(arg, strlen(arg), hex);
	printf("%s\n", hex);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'k'},
	    {"hash-token", no_argument, NULL, 't'},
	    {"version", no_argument, NULL, 'V'},
	    {"config-docs", no_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0}};
	const char *path = NULL;
	int check = 0, hash = 0, o, rc;
	char err[1024];
	config_t *cfg = NULL;
	uv_loop_t loop;
	hub_t *h;

	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = 1;
			break;
		case 't':
			hash = 1;
			break;
		case 'D':
			config_write_docs(stdout);
			return 0;
		case 'V':
			printf("parleyd %s\n", PARLEY_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (hash)
		return hash_token(optind < argc ? argv[optind] : NULL);
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_load(path, &cfg, err, sizeof err) ||
	    config_check_files(cfg, err, sizeof err)) {
		fprintf(stderr, "parleyd: %s\n", err);
		config_free(cfg);
		return 1;
	}
	if (check) {
		printf("%s: ok\n", path);
		config_free(cfg);
		return 0;
	}
	if (uv_loop_init(&loop)) {
		fprintf(stderr, "parleyd: cannot create the event loop\n");
		config_free(cfg);
		return 1;
	}
	h = hub_new(&loop, cfg, path);
	rc = server_run(h);
	hub_free(h);
	if (uv_loop_close(&loop))
		log_warn("loop_close", "reason=\"handles still open\"");
	return rc;
}
