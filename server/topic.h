/* topic.h: topic and pattern syntax (DESIGN.md "Words") and MQTT-style
 * matching. Pure functions, no allocation. */
#ifndef PARLEY_TOPIC_H
#define PARLEY_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define TOPIC_MAX_BYTES 255

/* Checks a concrete topic: 1-255 bytes of valid UTF-8 (no overlongs, no
 * surrogates), '/'-separated, no empty segment (so no leading, trailing or
 * double '/'), no '+', no '#', no control characters (C0, DEL, C1).
 * Returns 0 or PE_BAD_TOPIC. */
int topic_validate(const char *s, size_t len);

/* Checks a subscription filter: a topic, or a pattern where a segment may be
 * exactly "+" and the last segment may be exactly "#". Same byte rules as
 * topic_validate. Sets *is_pattern when it holds a wildcard.
 * Returns 0 or PE_BAD_PATTERN. */
int topic_validate_filter(const char *s, size_t len, bool *is_pattern);

/* Returns true when the valid topic matches the valid filter. "+" matches
 * exactly one segment; a final "#" matches the rest, including nothing (so
 * "a/#" matches "a", as in MQTT); "#" alone matches every topic. */
bool topic_match(const char *filter, const char *topic);

/* Returns true when every topic matched by the valid filter `inner` is also
 * matched by the valid filter `outer` (used to check a subscription against
 * granted patterns). */
bool topic_covers(const char *outer, const char *inner);

#endif
