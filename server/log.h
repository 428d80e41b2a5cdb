/* log.h: structured log lines ("ts=… level=… event=… key=value …") to stderr.
 * Single-threaded like the rest of parleyd. */
#ifndef PARLEY_LOG_H
#define PARLEY_LOG_H

enum log_level { PLOG_DEBUG = 0, PLOG_INFO, PLOG_WARN, PLOG_ERROR };

/* Sets the lowest level that is written. */
void log_set_level(enum log_level lvl);

/* Parses "debug", "info", "warn" or "error". Returns 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);

/* Returns non-zero when lines of this level are written. */
int log_enabled(enum log_level lvl);

/* Writes one line: the event name then the caller's "key=value" pairs
 * formatted by fmt (may be NULL). */
void log_event(enum log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Returns s as a quoted, escaped log value, truncated to about 200 bytes.
 * The result lives in one of 8 rotating static buffers: use it within the
 * same log_event call. NULL gives "-". */
const char *log_str(const char *s);

#define log_debug(ev, ...)                                                     \
	do {                                                                   \
		if (log_enabled(PLOG_DEBUG))                                   \
			log_event(PLOG_DEBUG, ev, __VA_ARGS__);                \
	} while (0)
#define log_info(ev, ...)  log_event(PLOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...)  log_event(PLOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) log_event(PLOG_ERROR, ev, __VA_ARGS__)

#endif
