/* tls.c -- certificate/key file checks with OpenSSL (see tls.h). Start-up
 * only, main thread. The PEM texts it returns belong to the caller; key
 * material read here is wiped before it is freed. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

void tls_pem_free(char *pem)
{
	if (!pem)
		return;
	explicit_bzero(pem, strlen(pem));
	free(pem);
}

static int read_file(const char *setting, const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	if (!f) {
		snprintf(err, errlen, "%s: cannot read \"%s\": %s", setting, path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: \"%s\" is not a regular file", setting, path);
		fclose(f);
		return -1;
	}
	if (st.st_size <= 0 || st.st_size > TLS_FILE_MAX) {
		snprintf(err, errlen, "%s: \"%s\" is %s", setting, path,
		         st.st_size <= 0 ? "empty" : "larger than 1 MiB");
		fclose(f);
		return -1;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
	fclose(f);
	if (!buf || n != (size_t)st.st_size) {
		snprintf(err, errlen, "%s: cannot read \"%s\"%s", setting, path, buf ? " (short read)" : ": out of memory");
		if (buf) {
			buf[n] = '\0';
			tls_pem_free(buf);
		}
		return -1;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

/* Never prompt for a pass phrase: an encrypted key is refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return -1;
}

int tls_load(const char *cert_key, const char *cert, const char *key_key, const char *key, int *on,
             char **cert_pem, char **key_pem, char *warn, size_t warnlen, char *err, size_t errlen)
{
	char *cpem = NULL, *kpem = NULL;
	BIO *b = NULL;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;
	int rc = -1;

	*on = 0;
	if (warn && warnlen)
		warn[0] = '\0';
	int have_c = cert && *cert, have_k = key && *key;
	if (!have_c && !have_k)
		return 0;
	if (!have_c || !have_k) {
		snprintf(err, errlen, "%s and %s: set both for TLS, or neither for plain HTTP", cert_key, key_key);
		return -1;
	}
	if (read_file(cert_key, cert, &cpem, err, errlen) || read_file(key_key, key, &kpem, err, errlen))
		goto out;

	b = BIO_new_mem_buf(cpem, -1);
	x = b ? PEM_read_bio_X509(b, NULL, no_passphrase, NULL) : NULL;
	BIO_free(b);
	if (!x) {
		snprintf(err, errlen, "%s: \"%s\" holds no PEM certificate", cert_key, cert);
		goto out;
	}
	b = BIO_new_mem_buf(kpem, -1);
	pk = b ? PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL) : NULL;
	BIO_free(b);
	if (!pk) {
		snprintf(err, errlen, "%s: \"%s\" holds no unencrypted PEM private key", key_key, key);
		goto out;
	}
	if (X509_check_private_key(x, pk) != 1) {
		snprintf(err, errlen, "%s (\"%s\") does not match %s (\"%s\")", key_key, key, cert_key, cert);
		goto out;
	}
	if (warn && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		snprintf(warn, warnlen, "%s: the certificate in \"%s\" has expired", cert_key, cert);
	else if (warn && X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		snprintf(warn, warnlen, "%s: the certificate in \"%s\" is not valid yet", cert_key, cert);
	*on = 1;
	rc = 0;
	if (cert_pem) {
		*cert_pem = cpem;
		cpem = NULL;
	}
	if (key_pem) {
		*key_pem = kpem;
		kpem = NULL;
	}
out:
	ERR_clear_error();
	X509_free(x);
	EVP_PKEY_free(pk);
	free(cpem);
	tls_pem_free(kpem);
	return rc;
}
