/* tls.h -- a listener's certificate and key files, checked at start-up so
 * that a daemon refuses to start with a clear message (unreadable file, not
 * PEM, encrypted key, key not matching the certificate) instead of a TLS
 * library's generic failure. Main thread, start-up only; the caller owns the
 * returned PEM texts. */
#ifndef TLS_H
#define TLS_H

#include <stddef.h>

#define TLS_FILE_MAX (1024 * 1024) /* largest certificate chain or key file */

/* The files named by settings `cert_key`/`key_key` (for messages, e.g.
 * "collector.tls_cert"). Both empty: *on = 0, TLS off. One empty, or a
 * problem with either file: -1 with err. Otherwise *on = 1 and, when
 * cert_pem/key_pem are not NULL, they receive the files' contents (malloc'd,
 * NUL-terminated; free the key with tls_pem_free). `warn` (may be NULL)
 * receives a warning, e.g. an expired certificate, or "". */
int tls_load(const char *cert_key, const char *cert, const char *key_key, const char *key, int *on,
             char **cert_pem, char **key_pem, char *warn, size_t warnlen, char *err, size_t errlen);

/* Wipe and free a PEM text (NULL: no-op). */
void tls_pem_free(char *pem);

#endif
