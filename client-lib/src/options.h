/* options.h: the table of client options (enum parley_option): bounds and
 * defaults in one place, used by parley_set_option and the defaults. */
#ifndef PARLEY_OPTIONS_H
#define PARLEY_OPTIONS_H

#include "parley.h"

/* Highest option number + 1 (index space of parley_client.opt). */
#define PARLEY__OPT_COUNT (PARLEY_OPT_RETRY_THROTTLED + 1)

/* Fills opt[] with every option's default. */
void parley__options_defaults(long *opt);

/* Checks value against option's bounds. Returns 0 or PARLEY_EINVAL. */
int parley__options_check(int option, long value);

#endif
