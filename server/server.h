/* server.h: runs a hub: the libwebsockets context on the hub's libuv loop,
 * the client listener, signals and the end-of-pass flush. */
#ifndef PARLEY_SERVER_H
#define PARLEY_SERVER_H

#include "hub.h"

/* Starts listening and runs the loop until a clean shutdown (SIGTERM or
 * SIGINT) completes. Returns the process exit code: 0 after a clean
 * shutdown, 1 when the listener could not start. */
int server_run(hub_t *h);

#endif
