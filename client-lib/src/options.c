/* options.c: one table of client options with bounds and defaults. */
#include "parley.h"

#include "options.h"

/* One option: its number, bounds and default. */
static const struct option_def {
	int option;
	long min, max, def;
} options[] = {
    {PARLEY_OPT_MAX_FRAME_BYTES, 1024, 1L << 30, 1L << 20},
    {PARLEY_OPT_MAX_QUEUED, 1, 1000000, 1000},
    {PARLEY_OPT_BACKOFF_MIN_MS, 1, 3600000, 250},
    {PARLEY_OPT_BACKOFF_MAX_MS, 1, 3600000, 30000},
    {PARLEY_OPT_CONNECT_ATTEMPTS, -1, 1000000, -1},
    {PARLEY_OPT_RECONNECT, 0, 1, 1},
    {PARLEY_OPT_RESEND_UNACKED, 0, 1, 1},
    {PARLEY_OPT_REQUEST_TIMEOUT_MS, 100, 3600000, 30000},
    {PARLEY_OPT_CONNECT_TIMEOUT_S, 1, 3600, 10},
    {PARLEY_OPT_KEEPALIVE_S, 0, 3600, 30},
    {PARLEY_OPT_RETRY_THROTTLED, 0, 1, 1},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

void parley__options_defaults(long *opt)
{
	for (unsigned i = 0; i < N_OPTIONS; i++)
		opt[options[i].option] = options[i].def;
}

int parley__options_check(int option, long value)
{
	for (unsigned i = 0; i < N_OPTIONS; i++)
		if (options[i].option == option)
			return value >= options[i].min &&
				       value <= options[i].max &&
				       (option != PARLEY_OPT_CONNECT_ATTEMPTS ||
					value != 0)
				   ? 0
				   : PARLEY_EINVAL;
	return PARLEY_EINVAL;
}
