/* url.h: parsing of hub URLs (ws:// and wss://) into what lws needs. */
#ifndef PARLEY_URL_H
#define PARLEY_URL_H

/* One parsed URL; every string is owned by it. */
typedef struct parley__url {
	int tls;    /* 1 for wss://. */
	char *host; /* Host name or address, without IPv6 brackets. */
	int port;   /* 1-65535; 80 or 443 when the URL has none. */
	char *path; /* Path and query, starting with '/'; "/ws" when none. */
	char *host_header; /* "host", "host:port" or "[v6]:port". */
} parley__url;

/* Parses text into *u (zeroed first). Returns 0; PARLEY_EINVAL for a URL
 * that is not ws:// or wss://, has no host, a bad port, user info, a
 * fragment, spaces or control characters; PARLEY_ENOMEM. On error *u holds
 * nothing to free. */
int parley__url_parse(const char *text, parley__url *u);

/* Frees the strings of u and zeroes it. */
void parley__url_free(parley__url *u);

#endif
