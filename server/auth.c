/* auth.c: the token table built from a config (SHA-256 lookup in constant
 * time) and the publish and subscribe permission checks. */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

struct auth {
	const config_t *cfg; /* Borrowed; outlives the table. */
	auth_user_t anon;    /* The anonymous user. */
	auth_user_t *users;  /* One per auth.tokens entry, in config order. */
	size_t n;	     /* Count of users. */
};

static const config_patterns_t no_patterns;

/* Returns "name@node": built once per user, as every publish needs it. */
static char *ident_new(const char *name, const char *node)
{
	size_t ln = strlen(name), lo = strlen(node);
	char *s = malloc(ln + lo + 2);

	if (!s)
		abort();
	memcpy(s, name, ln);
	s[ln] = '@';
	memcpy(s + ln + 1, node, lo + 1);
	return s;
}

auth_t *auth_new(const config_t *cfg)
{
	auth_t *a = calloc(1, sizeof *a);

	if (!a)
		abort(); /* The daemon's rule for out-of-memory. */
	a->cfg = cfg;
	a->anon.name = "anonymous";
	a->anon.ident = ident_new(a->anon.name, cfg->node);
	a->anon.anonymous = 1;
	a->anon.subscribe = &cfg->anon_subscribe;
	a->anon.publish = &cfg->anon_publish;
	a->n = cfg->n_tokens;
	a->users = calloc(a->n ? a->n : 1, sizeof *a->users);
	if (!a->users)
		abort();
	for (size_t i = 0; i < a->n; i++) {
		const config_token_t *t = &cfg->tokens[i];
		auth_user_t *u = &a->users[i];

		u->name = t->user;
		u->ident = ident_new(u->name, cfg->node);
		memcpy(u->sha256, t->sha256, sizeof u->sha256);
		u->subscribe = &t->subscribe;
		u->publish = &t->publish;
	}
	return a;
}

void auth_free(auth_t *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->n; i++)
		free(a->users[i].ident);
	free(a->anon.ident);
	free(a->users);
	free(a);
}

/* Compares against every entry whatever matches, and picks the match with
 * masks rather than a branch, so that the time taken says nothing about
 * which entry (if any) matched. Hashes are unique (config checks it). */
auth_user_t *auth_lookup_hash(auth_t *a, const unsigned char sha256[32])
{
	size_t found = 0, idx = 0;

	for (size_t i = 0; i < a->n; i++) {
		size_t hit = (size_t)(CRYPTO_memcmp(a->users[i].sha256, sha256,
						    32) == 0);
		size_t mask = (size_t)0 - hit;

		idx = (idx & ~mask) | (i & mask);
		found |= hit;
	}
	return found ? &a->users[idx] : NULL;
}

static void sha256(const char *data, size_t len, unsigned char out[32])
{
	unsigned int n = 0;

	/* Only fails when OpenSSL cannot allocate or has no SHA-256. */
	if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) || n != 32)
		abort();
}

auth_user_t *auth_lookup(auth_t *a, const char *token, size_t len)
{
	unsigned char h[32];

	sha256(token ? token : "", token ? len : 0, h);
	return auth_lookup_hash(a, h);
}

auth_user_t *auth_anonymous(auth_t *a)
{
	return &a->anon;
}

int auth_can_publish(const auth_user_t *u, const char *topic)
{
	const config_patterns_t *p =
	    u && u->publish ? u->publish : &no_patterns;

	for (size_t i = 0; i < p->n; i++)
		if (topic_match(p->v[i], topic))
			return 1;
	return 0;
}

int auth_can_subscribe(const auth_user_t *u, const char *filter)
{
	const config_patterns_t *p =
	    u && u->subscribe ? u->subscribe : &no_patterns;

	for (size_t i = 0; i < p->n; i++)
		if (topic_covers(p->v[i], filter))
			return 1;
	return 0;
}

void auth_hash_hex(const char *token, size_t len, char out[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char h[32];

	sha256(token ? token : "", token ? len : 0, h);
	for (size_t i = 0; i < 32; i++) {
		out[2 * i] = digits[h[i] >> 4];
		out[2 * i + 1] = digits[h[i] & 15];
	}
	out[64] = 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Accepts either case; anything but exactly 64 digits is refused. */
int auth_parse_hex(const char *hex, unsigned char out[32])
{
	unsigned char tmp[32];

	for (size_t i = 0; i < 32; i++) {
		int hi = hex_digit(hex[2 * i]), lo;

		if (hi < 0)
			return -1;
		lo = hex_digit(hex[2 * i + 1]);
		if (lo < 0)
			return -1;
		tmp[i] = (unsigned char)(hi << 4 | lo);
	}
	if (hex[64])
		return -1;
	memcpy(out, tmp, sizeof tmp);
	return 0;
}
