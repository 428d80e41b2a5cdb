/* log.c: the structured stderr logger declared in log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level min_level = PLOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level lvl)
{
	min_level = lvl;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (!strcmp(s, level_names[i])) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_enabled(enum log_level lvl)
{
	return lvl >= min_level;
}

void log_event(enum log_level lvl, const char *event, const char *fmt, ...)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int r;

	if (lvl < min_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof line - n, ".%03dZ level=%s event=%s",
		     (int)(tv.tv_usec / 1000), level_names[lvl], event);
	if (r > 0)
		n += (size_t)r < sizeof line - n ? (size_t)r
						 : sizeof line - n - 1;
	if (fmt && *fmt && n < sizeof line - 2) {
		va_list ap;

		line[n++] = ' ';
		va_start(ap, fmt);
		r = vsnprintf(line + n, sizeof line - n, fmt, ap);
		va_end(ap);
		if (r > 0)
			n += (size_t)r < sizeof line - n ? (size_t)r
							 : sizeof line - n - 1;
	}
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}

const char *log_str(const char *s)
{
	static char bufs[8][256];
	static unsigned next;
	char *b = bufs[next++ & 7];
	size_t o = 0;

	if (!s)
		return "-";
	b[o++] = '"';
	for (; *s && o < 240; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\') {
			b[o++] = '\\';
			b[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(b + o, 8, "\\x%02x", c);
		} else {
			b[o++] = (char)c;
		}
	}
	if (*s) {
		memcpy(b + o, "...", 3);
		o += 3;
	}
	b[o++] = '"';
	b[o] = 0;
	return b;
}
