/* lines.h: reads a file descriptor (stdin) line by line on a libuv loop,
 * whatever it is (pipe, terminal, regular file), with pause/resume for
 * back-pressure. */
#ifndef PARLEY_CLI_LINES_H
#define PARLEY_CLI_LINES_H

#include <stddef.h>
#include <uv.h>

typedef struct cli_lines cli_lines;

/* Called for each line, without its "\n" (or "\r\n"); line is
 * NUL-terminated and borrowed. A line longer than the limit is skipped
 * and reported with line NULL. */
typedef void (*cli_line_cb)(cli_lines *l, const char *line, size_t len,
			    void *ud);

/* Called once at the end of input: err 0 at end of file, else a libuv
 * error code. No line callback follows. */
typedef void (*cli_eof_cb)(cli_lines *l, int err, void *ud);

/* Starts reading fd on loop. Returns 0 and *out, or a libuv error code. */
int cli_lines_start(uv_loop_t *loop, int fd, size_t max_line,
		    cli_line_cb on_line, cli_eof_cb on_eof, void *ud,
		    cli_lines **out);

/* Stops delivering lines until cli_lines_resume. */
void cli_lines_pause(cli_lines *l);
void cli_lines_resume(cli_lines *l);

/* From inside the line callback: hand the same line again after the next
 * resume (use with cli_lines_pause). */
void cli_lines_requeue(cli_lines *l);

/* Stops reading and frees l once its handle is closed (asynchronous). */
void cli_lines_close(cli_lines *l);

#endif
