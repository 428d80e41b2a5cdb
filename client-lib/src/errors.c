/* errors.c: the library's one error table (parley.h PARLEY_ERRORS) and the
 * mapping from the hub's wire error words to library codes. */
#include <string.h>

#include "errors.h"

const char *parley_strerror(int err)
{
	switch (err) {
	case PARLEY_OK:
		return "success";
#define PARLEY_TEXT_(name, value, text)                                        \
	case name:                                                             \
		return text;
		PARLEY_ERRORS(PARLEY_TEXT_)
#undef PARLEY_TEXT_
	}
	return "unknown error";
}

const char *parley_errname(int err)
{
	switch (err) {
	case PARLEY_OK:
		return "PARLEY_OK";
#define PARLEY_NAME_(name, value, text)                                        \
	case name:                                                             \
		return #name;
		PARLEY_ERRORS(PARLEY_NAME_)
#undef PARLEY_NAME_
	}
	return "PARLEY_E?";
}

/* The hub's error words (docs/protocol.md) and their library codes. */
static const struct {
	const char *word;
	int err;
} wire_errors[] = {
    {"bad_json", PARLEY_EBADREQUEST},	  {"bad_request", PARLEY_EBADREQUEST},
    {"unauthorized", PARLEY_EAUTH},	  {"forbidden", PARLEY_EFORBIDDEN},
    {"too_large", PARLEY_ETOOLARGE},	  {"rate_limited", PARLEY_ERATELIMITED},
    {"unknown_op", PARLEY_EBADREQUEST},	  {"history_gap", PARLEY_EHISTORYGAP},
    {"unavailable", PARLEY_EUNAVAILABLE}, {"internal", PARLEY_EHUB},
};

int parley__err_from_wire(const char *word)
{
	for (size_t i = 0; i < sizeof(wire_errors) / sizeof(wire_errors[0]);
	     i++)
		if (word && !strcmp(word, wire_errors[i].word))
			return wire_errors[i].err;
	return PARLEY_EHUB;
}
