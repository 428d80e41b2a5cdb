/* errors.h: internal side of the error table: the hub's wire words. */
#ifndef PARLEY_ERRORS_H
#define PARLEY_ERRORS_H

#include "parley.h"

/* Returns the library code for a hub error word ("forbidden" ->
 * PARLEY_EFORBIDDEN); unknown words and NULL give PARLEY_EHUB. */
int parley__err_from_wire(const char *word);

#endif
