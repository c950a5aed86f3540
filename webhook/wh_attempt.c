/*  wh_attempt.c - one HTTP attempt of a delivery (see wh_attempt.h).  */
#include "wh_attempt.h"
#include "wh_retry_after.h"
#include "bm_ssrf.h"
#include "bm_config.h"
#include "bm_log.h"

#include <strings.h>
#include <sys/socket.h>
#include <arpa/inet.h>

//  --------------------------------------------------------------------------
//  Lifecycle

void
wh_attempt_free (wh_engine_t *self, attempt_t **attempt_p)
{
    attempt_t *attempt = *attempt_p;
    if (!attempt)
        return;
    if (attempt->easy) {
        curl_multi_remove_handle (self->multi, attempt->easy);
        curl_easy_cleanup (attempt->easy);
    }
    if (attempt->resolving && !attempt->resolved) {
        attempt->resolved = true;
        wh_engine_dns_ended (self, attempt->host, !attempt->resolve_failed);
    }
    curl_slist_free_all (attempt->headers);
    free (attempt);
    *attempt_p = NULL;
}

//  --------------------------------------------------------------------------
//  libcurl callbacks (never call curl_multi_* or report events from these)

//  Open the socket for an address libcurl resolved, unless the SSRF guard
//  refuses the address: then libcurl tries the next one or fails with
//  CURLE_COULDNT_CONNECT, and we report the refusal as a permanent failure.
static curl_socket_t
s_opensocket (void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
    delivery_t *d = (delivery_t *) clientp;
    attempt_t *attempt = d->attempt;
    if (attempt && attempt->resolving && !attempt->resolved) {
        attempt->resolved = true;           //  An address: the lookup answered
        wh_engine_dns_ended (d->engine, attempt->host, false);
        attempt->host = NULL;
    }
    if (purpose == CURLSOCKTYPE_IPCXN && !d->ssrf_exempt) {
        bm_addr_class_t cls = bm_ssrf_classify (&address->addr, address->addrlen);
        if (cls != BM_ADDR_PUBLIC) {
            char text [INET6_ADDRSTRLEN] = "?";
            struct sockaddr_storage ss;
            memset (&ss, 0, sizeof ss);
            memcpy (&ss, &address->addr,
                    address->addrlen < sizeof ss? address->addrlen: sizeof ss);
            if (address->family == AF_INET)
                inet_ntop (AF_INET, &((struct sockaddr_in *) &ss)->sin_addr, text, sizeof text);
            else
            if (address->family == AF_INET6)
                inet_ntop (AF_INET6, &((struct sockaddr_in6 *) &ss)->sin6_addr, text, sizeof text);
            if (attempt)
                snprintf (attempt->refused, sizeof attempt->refused,
                          "refused by the SSRF guard: %s is %s (set WEBHOOK_ALLOW_PRIVATE=1 "
                          "or list the host in WEBHOOK_ALLOWED_HOSTS)", text, bm_addr_class_name (cls));
            return CURL_SOCKET_BAD;
        }
    }
    curl_socket_t fd = socket (address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd != CURL_SOCKET_BAD && attempt)
        attempt->opened = true;
    return fd;
}

//  A lookup is about to start (no cached address, no connection to
//  reuse).  While a DNS server does not answer, lookups pile up, each a
//  thread.  Per name: past WEBHOOK_MAX_RESOLVING_PER_HOST pending, the
//  attempt is not made; once one of them was abandoned (the sign of a
//  server that does not answer for it) it fails, retryable, else it waits
//  for one of them to end (parked, not counted as an attempt).  In all:
//  past WEBHOOK_MAX_RESOLVING pending, once one was abandoned, a name is
//  not looked up and the attempt fails, retryable.  So one name whose DNS
//  hangs holds at most WEBHOOK_MAX_RESOLVING_PER_HOST lookups, and the
//  other names go on.  An IP address or localhost needs no lookup (libcurl
//  still calls this for them): not counted.
static int
s_resolver_start (void *resolver_state, void *reserved, void *userdata)
{
    (void) resolver_state;
    (void) reserved;
    delivery_t *d = (delivery_t *) userdata;
    attempt_t *attempt = d->attempt;
    wh_engine_t *self = d->engine;
    if (!attempt || !d->lookup_host || attempt->resolving)
        return 0;
    size_t pending = wh_engine_dns_pending (self);
    dns_host_t *host = (dns_host_t *) zhashx_lookup (self->dns_hosts, d->lookup_host);
    if (host && host->resolving + host->abandoned >= (size_t) self->config->max_resolving_per_host) {
        if (host->abandoned) {
            attempt->dns_refused = true;
            attempt->dns_refused_host = true;
            attempt->dns_refused_pending = host->resolving + host->abandoned;
        }
        else
            attempt->dns_deferred = true;
        return 1;                           //  The transfer fails: not looked up
    }
    if ((pending > self->resolving && pending >= (size_t) self->config->max_resolving)
    ||  !(host = wh_engine_dns_host (self, d->lookup_host))) {
        attempt->dns_refused = true;
        attempt->dns_refused_pending = pending;
        return 1;
    }
    attempt->resolving = true;
    attempt->host = host;
    host->resolving++;
    self->resolving++;
    return 0;
}

//  Response headers: remember Retry-After of the final response, note
//  when its headers have all arrived, and stop past WH_HEADERS_MAX.
static size_t
s_header (char *buffer, size_t size, size_t count, void *userdata)
{
    attempt_t *attempt = (attempt_t *) userdata;
    size_t len = size * count;
    attempt->header_bytes += len;
    if (attempt->header_bytes > WH_HEADERS_MAX) {
        attempt->headers_too_large = true;
        return 0;                           //  Stops the transfer
    }
    if (len >= 5 && strncmp (buffer, "HTTP/", 5) == 0) {
        attempt->retry_after_ms = -1;       //  A new response (after a 1xx)
        attempt->status_line = true;
    }
    else
    if ((len == 2 && buffer [0] == '\r' && buffer [1] == '\n') || (len == 1 && buffer [0] == '\n')) {
        //  The end of a response's headers: the final one's status is the
        //  outcome, whatever happens to its body.
        long status = 0;
        curl_easy_getinfo (attempt->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200) {
            attempt->answered = true;
            //  A body longer than we read: no use reading any of it.
            curl_off_t length = -1;
            curl_easy_getinfo (attempt->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
            if (length > WH_BODY_READ_MAX && status >= 200 && status <= 299) {
                attempt->body_cut = true;
                return 0;
            }
        }
    }
    else
    if (len > 12 && strncasecmp (buffer, "Retry-After:", 12) == 0) {
        size_t value_len = len - 12;
        const char *value = buffer + 12;
        while (value_len && (value [value_len - 1] == '\r' || value [value_len - 1] == '\n'))
            value_len--;
        int64_t delay;
        if (wh_retry_after_parse (value, value_len, bm_now_ms (), &delay) == 0)
            attempt->retry_after_ms = delay;
    }
    return len;
}

//  Response bodies: the first bytes kept, read up to WH_BODY_READ_MAX
//  (so that a small answer leaves the connection reusable), then stopped.
static size_t
s_body (char *buffer, size_t size, size_t count, void *userdata)
{
    attempt_t *attempt = (attempt_t *) userdata;
    size_t len = size * count;
    if (attempt->body_kept < WH_BODY_KEEP) {
        size_t take = WH_BODY_KEEP - attempt->body_kept;
        if (take > len)
            take = len;
        memcpy (attempt->body_head + attempt->body_kept, buffer, take);
        attempt->body_kept += take;
    }
    attempt->body_read += len;
    if (attempt->body_read > WH_BODY_READ_MAX) {
        attempt->body_cut = true;
        return 0;                           //  Stops the transfer
    }
    return len;
}

//  The length of the job id in a webhook-id: the broker's are the job id
//  for its first outcome and "<jobId>.whN" for one after a RETRY.
static size_t
s_job_id_len (const char *webhook_id)
{
    const char *dot = strrchr (webhook_id, '.');
    if (dot && dot > webhook_id && strncmp (dot, ".wh", 3) == 0 && dot [3]
    &&  strspn (dot + 3, "0123456789") == strlen (dot + 3))
        return (size_t) (dot - webhook_id);
    return strlen (webhook_id);
}

//  Build and start one attempt.  Returns 0, or -1 (d is untouched).
int
wh_attempt_start (wh_engine_t *self, delivery_t *d)
{
    attempt_t *attempt = (attempt_t *) calloc (1, sizeof (attempt_t));
    if (!attempt)
        return -1;
    attempt->retry_after_ms = -1;
    attempt->started_mono = bm_mono_ms ();
    CURL *easy = curl_easy_init ();
    if (!easy) {
        free (attempt);
        return -1;
    }
    attempt->easy = easy;

    //  Headers: a fresh timestamp and signature on every attempt.
    char line [512];
    struct curl_slist *headers = NULL, *next;
    #define S_ADD(text) do { \
        next = curl_slist_append (headers, text); \
        if (!next) \
            goto fail; \
        headers = next; \
    } while (0)
    S_ADD ("Content-Type: application/json");
    S_ADD ("Expect:");          //  No 100-continue round trip
    snprintf (line, sizeof line, "webhook-id: %s", d->webhook_id);
    S_ADD (line);
    //  The job id and the attempt number (1 on the first), as receivers of
    //  BullMQ-based bot systems read them.
    snprintf (line, sizeof line, "X-Bot-Job-Id: %.*s", (int) s_job_id_len (d->webhook_id),
              d->webhook_id);
    S_ADD (line);
    snprintf (line, sizeof line, "X-Delivery-Attempt: %" PRId64, d->status.attempts + 1);
    S_ADD (line);
    //  Standard Webhooks: webhook-id and webhook-timestamp on every
    //  delivery; only the signature needs the secret.
    char timestamp [24];
    snprintf (timestamp, sizeof timestamp, "%" PRId64, bm_now_ms () / 1000);
    snprintf (line, sizeof line, "webhook-timestamp: %s", timestamp);
    S_ADD (line);
    if (self->signer) {
        char signature [WH_SIGNATURE_SIZE];
        if (wh_signer_sign (self->signer, d->webhook_id, timestamp, d->body, d->body_len,
                            signature, sizeof signature))
            goto fail;
        snprintf (line, sizeof line, "webhook-signature: %s", signature);
        S_ADD (line);
    }
    #undef S_ADD
    attempt->headers = headers;

    const wh_config_t *config = self->config;
    curl_easy_setopt (easy, CURLOPT_URL, d->url);
    curl_easy_setopt (easy, CURLOPT_POST, 1L);
    curl_easy_setopt (easy, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt (easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) d->body_len);
    curl_easy_setopt (easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt (easy, CURLOPT_USERAGENT, config->user_agent);
    curl_easy_setopt (easy, CURLOPT_TIMEOUT_MS, (long) config->timeout_ms);
    curl_easy_setopt (easy, CURLOPT_CONNECTTIMEOUT_MS, (long) config->connect_timeout_ms);
    curl_easy_setopt (easy, CURLOPT_NOSIGNAL, 1L);
    //  An attempt that ends (timeout, cancel, shutdown) while its host name
    //  is still being looked up leaves the resolver thread to finish on its
    //  own: without this, libcurl waits for it, and a DNS server that does
    //  not answer would stop the whole loop for as long (10-30 s).
    curl_easy_setopt (easy, CURLOPT_QUICK_EXIT, 1L);
    curl_easy_setopt (easy, CURLOPT_RESOLVER_START_FUNCTION, s_resolver_start);
    curl_easy_setopt (easy, CURLOPT_RESOLVER_START_DATA, d);
    curl_easy_setopt (easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt (easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt (easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    //  No proxy from the environment: the SSRF guard must see the target.
    curl_easy_setopt (easy, CURLOPT_PROXY, "");
    curl_easy_setopt (easy, CURLOPT_OPENSOCKETFUNCTION, s_opensocket);
    curl_easy_setopt (easy, CURLOPT_OPENSOCKETDATA, d);
    curl_easy_setopt (easy, CURLOPT_HEADERFUNCTION, s_header);
    curl_easy_setopt (easy, CURLOPT_HEADERDATA, attempt);
    curl_easy_setopt (easy, CURLOPT_WRITEFUNCTION, s_body);
    curl_easy_setopt (easy, CURLOPT_WRITEDATA, attempt);
    curl_easy_setopt (easy, CURLOPT_ERRORBUFFER, attempt->errbuf);
    curl_easy_setopt (easy, CURLOPT_PRIVATE, d);
    if (config->connect_to)
        curl_easy_setopt (easy, CURLOPT_CONNECT_TO, config->connect_to);
    //  The last attempt failed on a connection an earlier delivery left
    //  open (a receiver that wrote past its Content-Length leaves bytes
    //  that read as the next answer): this one starts clean.
    if (d->fresh_connect)
        curl_easy_setopt (easy, CURLOPT_FRESH_CONNECT, 1L);
    if (config->ca_file)
        curl_easy_setopt (easy, CURLOPT_CAINFO, config->ca_file);

    d->attempt = attempt;
    if (curl_multi_add_handle (self->multi, easy) != CURLM_OK) {
        d->attempt = NULL;
        goto fail;
    }
    d->where = WHERE_INFLIGHT;
    self->inflight++;
    bm_debug (d->job_id, "attempt %" PRId64 " to %s", d->status.attempts + 1, d->url_shown);
    return 0;

fail:
    curl_slist_free_all (headers);
    attempt->headers = NULL;
    curl_easy_cleanup (easy);
    free (attempt);
    return -1;
}
