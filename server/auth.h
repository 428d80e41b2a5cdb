/* auth.h: tokens and permissions. Built from a config_t (and rebuilt on
 * SIGHUP); maps a presented token to a user and decides what that user may
 * publish and subscribe. */
#ifndef PARLEY_AUTH_H
#define PARLEY_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct auth auth_t;

/* One identity: a token entry of the config, or the anonymous user. */
typedef struct auth_user {
	const char *name;	  /* "alice"; "anonymous". */
	char *ident;		  /* "alice@node", as messages carry it
				     (owned by the table). */
	int anonymous;		  /* 1 for the anonymous user. */
	unsigned char sha256[32]; /* Token hash (zero if anonymous). */
	const config_patterns_t *subscribe; /* Borrowed from the config. */
	const config_patterns_t *publish;   /* Borrowed from the config. */
	double bucket;	    /* Per-token publish bucket level. */
	uint64_t bucket_ms; /* Last refill time of bucket. */
} auth_user_t;

/* Returns a new auth table for cfg, which it borrows: cfg must outlive it. */
auth_t *auth_new(const config_t *cfg);

/* Frees the table. NULL is a no-op. */
void auth_free(auth_t *a);

/* Returns the user of a presented token (hashed with SHA-256 and compared
 * in constant time against every entry), or NULL when unknown. */
auth_user_t *auth_lookup(auth_t *a, const char *token, size_t len);

/* Returns the user whose token hash is sha256, or NULL (used to carry
 * connections over a reload). */
auth_user_t *auth_lookup_hash(auth_t *a, const unsigned char sha256[32]);

/* Returns the anonymous user (never NULL). */
auth_user_t *auth_anonymous(auth_t *a);

/* Returns 1 when user may publish to the valid topic, else 0. */
int auth_can_publish(const auth_user_t *u, const char *topic);

/* Returns 1 when every topic the valid filter matches is covered by one of
 * the user's subscribe patterns, else 0. */
int auth_can_subscribe(const auth_user_t *u, const char *filter);

/* Writes the lowercase hex SHA-256 of the token into out (65 bytes). */
void auth_hash_hex(const char *token, size_t len, char out[65]);

/* Parses 64 hex digits into 32 bytes. Returns 0 or -1. */
int auth_parse_hex(const char *hex, unsigned char out[32]);

#endif
