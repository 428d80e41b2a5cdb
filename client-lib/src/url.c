/* url.c: a strict parser for the hub URLs the library connects to. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley.h"
#include "url.h"

/* Returns a NUL-terminated copy of the n bytes at s, or NULL. */
static char *dup_n(const char *s, size_t n)
{
	char *p = malloc(n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

void parley__url_free(parley__url *u)
{
	free(u->host);
	free(u->path);
	free(u->host_header);
	memset(u, 0, sizeof(*u));
}

int parley__url_parse(const char *text, parley__url *u)
{
	const char *p, *host, *host_end, *rest;
	size_t hlen;
	long port = -1;
	int v6 = 0;

	memset(u, 0, sizeof(*u));
	if (!text)
		return PARLEY_EINVAL;
	for (p = text; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '#')
			return PARLEY_EINVAL;
	if (!strncmp(text, "ws://", 5)) {
		p = text + 5;
	} else if (!strncmp(text, "wss://", 6)) {
		u->tls = 1;
		p = text + 6;
	} else {
		return PARLEY_EINVAL;
	}
	host = p;
	if (*p == '[') {
		v6 = 1;
		host = ++p;
		while (*p && *p != ']')
			p++;
		if (*p != ']')
			return PARLEY_EINVAL;
		host_end = p++;
	} else {
		while (*p && *p != ':' && *p != '/' && *p != '?')
			if (*p++ == '@')
				return PARLEY_EINVAL;
		host_end = p;
	}
	hlen = (size_t)(host_end - host);
	if (hlen == 0 || hlen > 253)
		return PARLEY_EINVAL;
	if (*p == ':') {
		char *end;

		p++;
		if (*p < '0' || *p > '9')
			return PARLEY_EINVAL;
		port = strtol(p, &end, 10);
		if (port < 1 || port > 65535)
			return PARLEY_EINVAL;
		p = end;
	}
	if (*p && *p != '/' && *p != '?')
		return PARLEY_EINVAL;
	rest = p;
	u->port = port > 0 ? (int)port : u->tls ? 443 : 80;
	u->host = dup_n(host, hlen);
	if (!*rest)
		u->path = dup_n("/ws", 3);
	else if (*rest == '?') {
		size_t n = strlen(rest);

		u->path = malloc(n + 4);
		if (u->path)
			snprintf(u->path, n + 4, "/ws%s", rest);
	} else
		u->path = dup_n(rest, strlen(rest));
	u->host_header = malloc(hlen + 16);
	if (!u->host || !u->path || !u->host_header) {
		parley__url_free(u);
		return PARLEY_ENOMEM;
	}
	if (port > 0)
		snprintf(u->host_header, hlen + 16, v6 ? "[%s]:%ld" : "%s:%ld",
			 u->host, port);
	else
		snprintf(u->host_header, hlen + 16, v6 ? "[%s]" : "%s",
			 u->host);
	return 0;
}
