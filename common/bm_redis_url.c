/*  bm_redis_url.c - where Redis is: one parser and one reading of the
    environment for every service.  */
#include "bm_redis_url.h"
#include "bm_config.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int
bm_redis_url_parse (const char *url, bm_redis_url_t *out)
{
    memset (out, 0, sizeof *out);
    out->port = 6379;
    if (!url || strncasecmp (url, "redis://", 8) != 0)
        return -1;
    const char *p = url + 8;
    const char *at = strrchr (p, '@');
    const char *slash = strchr (at ? at : p, '/');
    if (at && (!slash || at < slash)) {
        //  [user]:password@
        const char *colon = memchr (p, ':', (size_t) (at - p));
        const char *pass = colon ? colon + 1 : p;
        size_t len = (size_t) (at - pass);
        if (len >= sizeof out->password)
            return -1;
        memcpy (out->password, pass, len);
        out->password [len] = 0;
        p = at + 1;
    }
    const char *end = p + strcspn (p, ":/");
    size_t host_len = (size_t) (end - p);
    if (host_len == 0 || host_len >= sizeof out->host)
        return -1;
    memcpy (out->host, p, host_len);
    out->host [host_len] = 0;
    p = end;
    if (*p == ':') {
        char port [8];
        size_t len = strcspn (p + 1, "/");
        if (len == 0 || len >= sizeof port)
            return -1;
        memcpy (port, p + 1, len);
        port [len] = 0;
        int64_t value;
        if (bm_parse_int (port, 1, 65535, &value))
            return -1;
        out->port = (int) value;
        p += 1 + len;
    }
    if (*p == '/' && p [1]) {
        int64_t value;
        if (bm_parse_int (p + 1, 0, BM_REDIS_MAX_DB, &value))
            return -1;
        out->db = (int) value;
    }
    else
    if (*p && strcmp (p, "/") != 0)
        return -1;
    return 0;
}

const char *
bm_redis_url_masked (const char *url, char *buf, size_t size)
{
    if (!size)
        return buf;
    if (!url) {
        snprintf (buf, size, "(none)");
        return buf;
    }
    //  The same reading as bm_redis_url_parse: the credentials run from
    //  after the scheme to the last '@'.
    const char *at = strncasecmp (url, "redis://", 8) == 0 ? strrchr (url + 8, '@') : NULL;
    if (!at) {
        snprintf (buf, size, "%s", url);
        return buf;
    }
    const char *p = url + 8;
    const char *colon = memchr (p, ':', (size_t) (at - p));
    //  "user:" is kept (it names no secret); the password becomes ***.
    int user_len = colon ? (int) (colon - p + 1) : 0;
    snprintf (buf, size, "%.8s%.*s***%s", url, user_len, p, at);
    return buf;
}

int
bm_redis_url_from_env (bool allow_none, char *buf, size_t size, char *error, size_t error_size)
{
    const char *url = getenv ("REDIS_URL");
    if (url && *url) {
        if (allow_none && strcmp (url, "none") == 0) {
            snprintf (buf, size, "none");
            return 0;
        }
        bm_redis_url_t parsed;
        if (bm_redis_url_parse (url, &parsed) || strlen (url) >= size) {
            char masked [1024];
            snprintf (error, error_size, "REDIS_URL must be redis://[:password@]host[:port][/db]%s "
                      "(got '%s')", allow_none ? " or none" : "",
                      bm_redis_url_masked (url, masked, sizeof masked));
            return -1;
        }
        snprintf (buf, size, "%s", url);
        return 0;
    }
    const char *host = getenv ("REDIS_HOST");
    const char *port = getenv ("REDIS_PORT");
    const char *password = getenv ("REDIS_PASSWORD");
    const char *db = getenv ("REDIS_DB");
    if ((!host || !*host) && (!port || !*port)) {
        snprintf (buf, size, "%s", BM_REDIS_DEFAULT_URL);
        return 0;
    }
    int64_t port_value = 6379, db_value = 0;
    if (port && *port && bm_parse_int (port, 1, 65535, &port_value)) {
        snprintf (error, error_size, "REDIS_PORT must be an integer from 1 to 65535 (got '%s')", port);
        return -1;
    }
    if (db && *db && bm_parse_int (db, 0, BM_REDIS_MAX_DB, &db_value)) {
        snprintf (error, error_size, "REDIS_DB must be an integer from 0 to %d (got '%s')",
                  BM_REDIS_MAX_DB, db);
        return -1;
    }
    if (!host || !*host)
        host = "127.0.0.1";
    int n = snprintf (buf, size, "redis://%s%s%s%s:%lld/%lld",
                      password && *password ? ":" : "", password && *password ? password : "",
                      password && *password ? "@" : "", host,
                      (long long) port_value, (long long) db_value);
    bm_redis_url_t parsed;
    if (n < 0 || (size_t) n >= size || bm_redis_url_parse (buf, &parsed)) {
        snprintf (error, error_size, "REDIS_HOST must be a host name or address (got '%s')", host);
        return -1;
    }
    return 0;
}

int
bm_redis_env_load (bool allow_none, char *url, size_t url_size, const char **prefix)
{
    int rc = 0;
    char error [512];
    if (bm_redis_url_from_env (allow_none, url, url_size, error, sizeof error)) {
        bm_error (NULL, "configuration: %s", error);
        rc = -1;
    }
    *prefix = getenv ("REDIS_PREFIX");
    if (!*prefix || !**prefix)
        *prefix = BM_REDIS_DEFAULT_PREFIX;
    if (strlen (*prefix) > BM_REDIS_MAX_PREFIX) {
        bm_error (NULL, "configuration: REDIS_PREFIX must be at most %d bytes long (got %zu)",
                  BM_REDIS_MAX_PREFIX, strlen (*prefix));
        rc = -1;
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Self test

void
bm_redis_url_test (bool verbose)
{
    if (verbose)
        printf (" * bm_redis_url: ");
    bm_redis_url_t url;
    BM_CHECK (bm_redis_url_parse ("redis://127.0.0.1:6380/2", &url) == 0);
    BM_CHECK (!strcmp (url.host, "127.0.0.1") && url.port == 6380 && url.db == 2 && !*url.password);
    BM_CHECK (bm_redis_url_parse ("redis://redis", &url) == 0);
    BM_CHECK (!strcmp (url.host, "redis") && url.port == 6379 && url.db == 0);
    BM_CHECK (bm_redis_url_parse ("REDIS://Redis:7000", &url) == 0 && url.port == 7000);
    BM_CHECK (bm_redis_url_parse ("redis://:s3cret@host:1/", &url) == 0);
    BM_CHECK (!strcmp (url.password, "s3cret") && !strcmp (url.host, "host") && url.port == 1);
    BM_CHECK (bm_redis_url_parse ("redis://user:pw@host", &url) == 0 && !strcmp (url.password, "pw"));
    BM_CHECK (bm_redis_url_parse ("http://host", &url) == -1);
    BM_CHECK (bm_redis_url_parse ("redis://", &url) == -1);
    BM_CHECK (bm_redis_url_parse ("redis://host:0", &url) == -1);
    BM_CHECK (bm_redis_url_parse ("redis://host:99999", &url) == -1);
    BM_CHECK (bm_redis_url_parse ("redis://host:12x", &url) == -1);
    BM_CHECK (bm_redis_url_parse ("redis://host/abc", &url) == -1);
    BM_CHECK (bm_redis_url_parse ("redis://host/1001", &url) == -1);
    BM_CHECK (bm_redis_url_parse (NULL, &url) == -1);

    //  The environment: REDIS_URL wins; REDIS_HOST/PORT otherwise.
    char buf [600], error [300];
    const char *vars [] = { "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_DB" };
    for (size_t i = 0; i < sizeof vars / sizeof vars [0]; i++)
        unsetenv (vars [i]);
    BM_CHECK (bm_redis_url_from_env (false, buf, sizeof buf, error, sizeof error) == 0);
    BM_CHECK (!strcmp (buf, BM_REDIS_DEFAULT_URL));
    setenv ("REDIS_HOST", "redis", 1);
    BM_CHECK (bm_redis_url_from_env (false, buf, sizeof buf, error, sizeof error) == 0);
    BM_CHECK (!strcmp (buf, "redis://redis:6379/0"));
    setenv ("REDIS_PORT", "6390", 1);
    setenv ("REDIS_PASSWORD", "pw", 1);
    setenv ("REDIS_DB", "3", 1);
    BM_CHECK (bm_redis_url_from_env (false, buf, sizeof buf, error, sizeof error) == 0);
    BM_CHECK (!strcmp (buf, "redis://:pw@redis:6390/3"));
    setenv ("REDIS_PORT", "70000", 1);
    BM_CHECK (bm_redis_url_from_env (false, buf, sizeof buf, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "REDIS_PORT"));
    setenv ("REDIS_URL", "redis://other:1/1", 1);
    BM_CHECK (bm_redis_url_from_env (false, buf, sizeof buf, error, sizeof error) == 0);
    BM_CHECK (!strcmp (buf, "redis://other:1/1"));
    setenv ("REDIS_URL", "none", 1);
    BM_CHECK (bm_redis_url_from_env (true, buf, sizeof buf, error, sizeof error) == 0);
    BM_CHECK (!strcmp (buf, "none"));
    BM_CHECK (bm_redis_url_from_env (false, buf, sizeof buf, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "REDIS_URL"));
    //  A bad REDIS_URL is named in the error without its password.
    setenv ("REDIS_URL", "redis://default:S3cretPw@host:99999/0", 1);
    BM_CHECK (bm_redis_url_from_env (false, buf, sizeof buf, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "redis://default:***@host:99999/0") && !strstr (error, "S3cretPw"));
    for (size_t i = 0; i < sizeof vars / sizeof vars [0]; i++)
        unsetenv (vars [i]);

    //  Masking: the password never shows, the rest does.
    char masked [128];
    BM_CHECK (!strcmp (bm_redis_url_masked ("redis://default:S3cretRedisPw@127.0.0.1:13179/0",
                                            masked, sizeof masked),
                       "redis://default:***@127.0.0.1:13179/0"));
    BM_CHECK (!strcmp (bm_redis_url_masked ("redis://:pw@redis:6390/3", masked, sizeof masked),
                       "redis://:***@redis:6390/3"));
    BM_CHECK (!strcmp (bm_redis_url_masked ("REDIS://secret@x", masked, sizeof masked),
                       "REDIS://***@x"));
    BM_CHECK (!strcmp (bm_redis_url_masked ("redis://:p@ss@host/1", masked, sizeof masked),
                       "redis://:***@host/1"));
    BM_CHECK (!strcmp (bm_redis_url_masked ("redis://127.0.0.1:6379/0", masked, sizeof masked),
                       "redis://127.0.0.1:6379/0"));
    BM_CHECK (!strcmp (bm_redis_url_masked ("none", masked, sizeof masked), "none"));
    BM_CHECK (!strcmp (bm_redis_url_masked (NULL, masked, sizeof masked), "(none)"));
    char small [12];
    bm_redis_url_masked ("redis://:longpassword@h", small, sizeof small);
    BM_CHECK (!strstr (small, "longpass") && strlen (small) == sizeof small - 1);
    if (verbose)
        printf ("OK\n");
}
