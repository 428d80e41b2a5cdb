/* stats.h: what an operator reads: /healthz JSON and /metrics text. */
#ifndef PARLEY_STATS_H
#define PARLEY_STATS_H

#include <stddef.h>

#include "hub.h"

/* Renders /metrics (Prometheus text format 0.0.4). Returns a new malloc'd
 * string and its length, or NULL on out-of-memory. */
char *stats_metrics(const hub_t *h, size_t *len);

/* Renders /healthz JSON and sets *status (200 serving, 503 stopping).
 * Returns a new malloc'd string, or NULL on out-of-memory. */
char *stats_health(const hub_t *h, size_t *len, int *status);

#endif
