/* fedtls.c: certificate identity for federation links, with OpenSSL
 * directly (lws 4.1 exposes the CN but not the SAN list). */
#include "fedtls.h"

#include <libwebsockets.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* Copies an ASN1 string holding a DNS name if it is printable ASCII with
 * no NUL inside (an embedded NUL is the classic name-spoofing trick). */
static int copy_name(const ASN1_STRING *s, char *buf, size_t len)
{
	const unsigned char *d = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s);

	if (n <= 0 || (size_t)n >= len)
		return -1;
	for (int i = 0; i < n; i++)
		if (d[i] <= 0x20 || d[i] >= 0x7f)
			return -1;
	memcpy(buf, d, (size_t)n);
	buf[n] = 0;
	return 0;
}

int fedtls_peer_identity(struct lws *wsi, char *buf, size_t len)
{
	SSL *ssl = lws_get_ssl(wsi);
	GENERAL_NAMES *sans;
	X509 *cert;
	int rc = -1;

	if (!ssl) {
		snprintf(buf, len, "not a TLS connection");
		return -1;
	}
	cert = SSL_get1_peer_certificate(ssl);
	if (!cert) {
		snprintf(buf, len, "no certificate presented");
		return -1;
	}
	if (SSL_get_verify_result(ssl) != X509_V_OK) {
		snprintf(
		    buf, len, "certificate did not verify: %s",
		    X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
		X509_free(cert);
		return -1;
	}
	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (sans) {
		for (int i = 0; i < sk_GENERAL_NAME_num(sans) && rc; i++) {
			const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);

			if (g->type == GEN_DNS)
				rc = copy_name(g->d.dNSName, buf, len);
		}
		GENERAL_NAMES_free(sans);
	}
	if (rc) {
		X509_NAME *subj = X509_get_subject_name(cert);
		int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);

		if (idx >= 0)
			rc = copy_name(X509_NAME_ENTRY_get_data(
					   X509_NAME_get_entry(subj, idx)),
				       buf, len);
	}
	if (rc)
		snprintf(buf, len, "certificate names no usable node");
	X509_free(cert);
	return rc;
}

/* Logs the fatal alerts we send: a handshake refused by TLS itself (an
 * old protocol version, no shared cipher, a bad certificate) reaches no
 * lws callback, and must still leave a reason in the log. */
static void on_tls_info(const SSL *ssl, int where, int ret)
{
	/* After the handshake a fatal alert is a broken or closing link
	 * (logged as such by the link), not a refusal. */
	if (!(where & SSL_CB_ALERT) || !(where & SSL_CB_WRITE) ||
	    strcmp(SSL_alert_type_string(ret), "F") ||
	    SSL_is_init_finished(ssl))
		return;
	log_warn("fed_refused", "direction=%s reason=%s",
		 SSL_is_server(ssl) ? "in" : "out",
		 log_str(SSL_alert_desc_string_long(ret)));
}

void fedtls_harden_ctx(void *ssl_ctx)
{
	SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_info_callback(ssl_ctx, on_tls_info);
}
