/* fedtls.h: reading a peer's identity from its verified TLS certificate. */
#ifndef PARLEY_FEDTLS_H
#define PARLEY_FEDTLS_H

#include <stddef.h>

struct lws;

/* Writes the identity of the certificate the peer of wsi presented: its
 * first SAN dNSName, or its subject CN when it has no dNSName SAN. Returns
 * 0, or -1 with a human reason in buf when there is no certificate, it did
 * not verify, or it names nothing usable. */
int fedtls_peer_identity(struct lws *wsi, char *buf, size_t len);

/* Applies the federation's TLS floor (TLS 1.2) to an OpenSSL SSL_CTX
 * passed as void * (from lws's OPENSSL_LOAD_EXTRA_* callbacks). */
void fedtls_harden_ctx(void *ssl_ctx);

#endif
