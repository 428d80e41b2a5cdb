/* commands.h: the subcommands of `parley`, each a main-like function
 * returning an exit code (common.h). */
#ifndef PARLEY_CLI_COMMANDS_H
#define PARLEY_CLI_COMMANDS_H

int cmd_pub(int argc, char **argv);
int cmd_sub(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
