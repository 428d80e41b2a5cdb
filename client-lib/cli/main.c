/* main.c: the `parley` command: finds the subcommand in the table and runs
 * it. A new subcommand is one more table row. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common.h"

static const struct command {
	const char *name;		   /* As typed after `parley`. */
	int (*run)(int argc, char **argv); /* Gets argv from the name on. */
	const char *summary;		   /* One line for `parley --help`. */
} commands[] = {
    {"pub", cmd_pub, "publish messages to a topic"},
    {"sub", cmd_sub, "print the messages of topics and patterns"},
    {"bench", cmd_bench, "load a hub: throughput, latency, loss, CPU"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: parley COMMAND [options] [args]\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-6s %s\n", commands[i].name,
			commands[i].summary);
	fprintf(f, "\n`parley COMMAND --help` describes a command. Exit "
		   "codes: 0 ok, 1 error,\n2 usage, 3 cannot connect, 4 "
		   "unauthorized, 5 forbidden.\n");
}

int main(int argc, char **argv)
{
	const char *name = argc > 1 ? argv[1] : NULL;

	if (!name) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(name, "--version")) {
		printf("parley %s (libparley)\n", parley_version());
		return CLI_EXIT_OK;
	}
	if (!strcmp(name, "help") && argc > 2) {
		char *help_argv[] = {argv[2], "--help", NULL};

		for (size_t i = 0; i < N_COMMANDS; i++)
			if (!strcmp(argv[2], commands[i].name))
				return commands[i].run(2, help_argv);
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(name, commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "parley: unknown command '%s'\n\n", name);
	usage(stderr);
	return CLI_EXIT_USAGE;
}
