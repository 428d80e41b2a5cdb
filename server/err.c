/* err.c: texts and wire words of the error table in err.h. */
#include "err.h"

struct err_row {
	const char *wire; /* Stable protocol word. */
	const char *text; /* Human-readable text. */
};

static const struct err_row rows[] = {
#define PE_ROW_(name, wire, text) {wire, text},
    PARLEY_ERRORS(PE_ROW_)
#undef PE_ROW_
};

static const struct err_row *row_of(int err)
{
	if (err <= PE__FIRST || err >= PE__LAST)
		return 0;
	return &rows[err - PE__FIRST - 1];
}

const char *parley_strerror(int err)
{
	const struct err_row *r;

	if (err == PE_OK)
		return "success";
	r = row_of(err);
	return r ? r->text : "unknown error";
}

const char *parley_errcode(int err)
{
	const struct err_row *r = row_of(err);

	return r ? r->wire : "internal";
}
