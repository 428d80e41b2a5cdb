/* err.h: the one error convention of parleyd: 0 or a negative code from one
 * table that also gives the wire word sent to clients and a human text. */
#ifndef PARLEY_ERR_H
#define PARLEY_ERR_H

/* X(name, wire code, human text). The wire codes are the stable machine
 * words of the parley.v1 protocol (DESIGN.md); several internal codes may
 * share one wire word. */
#define PARLEY_ERRORS(X)                                                       \
	X(PE_NOMEM, "internal", "out of memory")                               \
	X(PE_INTERNAL, "internal", "internal error")                           \
	X(PE_BAD_JSON, "bad_json", "frame is not a valid JSON object")         \
	X(PE_BAD_REQUEST, "bad_request", "malformed request")                  \
	X(PE_BAD_TOPIC, "bad_request", "invalid topic")                        \
	X(PE_BAD_PATTERN, "bad_request", "invalid topic pattern")              \
	X(PE_BAD_CURSOR, "bad_request", "invalid cursor")                      \
	X(PE_UNAUTHORIZED, "unauthorized", "unknown or invalid token")         \
	X(PE_FORBIDDEN, "forbidden", "not permitted")                          \
	X(PE_TOO_LARGE, "too_large", "too large")                              \
	X(PE_TOO_MANY, "too_large", "limit reached")                           \
	X(PE_RATE_LIMITED, "rate_limited", "rate limit exceeded")              \
	X(PE_UNKNOWN_OP, "unknown_op", "unknown op")                           \
	X(PE_HISTORY_GAP, "history_gap",                                       \
	  "history no longer holds messages after that cursor")                \
	X(PE_UNAVAILABLE, "unavailable", "service temporarily unavailable")    \
	X(PE_NOT_FOUND, "not_found", "not found")                              \
	X(PE_EXISTS, "internal", "already exists")                             \
	X(PE_IO, "internal", "input/output error")                             \
	X(PE_CONFIG, "internal", "invalid configuration")

enum parley_err {
	PE_OK = 0,
	PE__FIRST = -1000,
#define PE_ENUM_(name, wire, text) name,
	PARLEY_ERRORS(PE_ENUM_)
#undef PE_ENUM_
	    PE__LAST
};

/* Returns the human text of an error code (static storage, never NULL). */
const char *parley_strerror(int err);

/* Returns the stable wire word for an error code (static storage, never
 * NULL); unknown codes map to "internal". */
const char *parley_errcode(int err);

#endif
