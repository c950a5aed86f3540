/*  wh_engine.c - the webhook delivery engine: libcurl multi-socket on zloop.

    This file holds the deliveries (waiting heap -> ready list -> in
    flight), the outcome of each ended attempt and the public interface;
    wh_attempt.c builds and frees one HTTP attempt, wh_multi.c runs
    libcurl's sockets and timer on the zloop.  */
#include "wh_engine_priv.h"
#include "wh_url.h"
#include "wh_attempt.h"
#include "wh_multi.h"
#include "wh_outcome.h"
#include "bm_ssrf.h"
#include "bm_config.h"
#include "bm_log.h"
#include "bm_proto.h"
#include "bm_url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <resolv.h>
#include <stdatomic.h>
#include <stddef.h>
#include <strings.h>

static void s_schedule (wh_engine_t *self, delivery_t *d, int64_t due_mono);
static void s_retry (wh_engine_t *self, delivery_t *d, int64_t retry_after, int64_t min_delay_ms);
static void s_pump (wh_engine_t *self);

//  --------------------------------------------------------------------------
//  Names

const char *
wh_state_name (wh_state_t state)
{
    return (int) state >= 0 && (int) state < BM_WEBHOOK_STATES ? bm_webhook_state_names [state] : "pending";
}

int
wh_state_parse (const char *name, size_t len)
{
    for (int state = 0; state < BM_WEBHOOK_STATES; state++) {
        const char *candidate = bm_webhook_state_names [state];
        if (strlen (candidate) == len && memcmp (candidate, name, len) == 0)
            return state;
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  Host name lookups

dns_host_t *
wh_engine_dns_host (wh_engine_t *self, const char *name)
{
    dns_host_t *host = (dns_host_t *) zhashx_lookup (self->dns_hosts, name);
    if (host)
        return host;
    host = (dns_host_t *) calloc (1, sizeof (dns_host_t));
    if (host) {
        host->name = strdup (name);
        host->parked = zlistx_new ();
    }
    if (!host || !host->name || !host->parked || zhashx_insert (self->dns_hosts, name, host)) {
        if (host) {
            free (host->name);
            zlistx_destroy (&host->parked);
            free (host);
        }
        return NULL;
    }
    return host;
}

//  Forget a name with no lookup pending and nothing parked.
static void
s_dns_host_drop (wh_engine_t *self, dns_host_t *host)
{
    if (host->resolving || host->abandoned || zlistx_size (host->parked))
        return;
    zhashx_delete (self->dns_hosts, host->name);
    free (host->name);
    zlistx_destroy (&host->parked);
    free (host);
}

//  The oldest abandoned lookup is over (or makes room in a full ring).
static void
s_dns_forget_oldest (wh_engine_t *self)
{
    dns_host_t *host = self->abandoned [self->abandoned_first].host;
    self->abandoned_first = (self->abandoned_first + 1) % self->abandoned_max;
    self->abandoned_count--;
    host->abandoned--;
    s_dns_host_drop (self, host);
}

size_t
wh_engine_dns_pending (wh_engine_t *self)
{
    int64_t now = bm_mono_ms ();
    while (self->abandoned_count && self->abandoned [self->abandoned_first].over <= now)
        s_dns_forget_oldest (self);
    return self->resolving + self->abandoned_count;
}

void
wh_engine_dns_ended (wh_engine_t *self, dns_host_t *host, bool abandoned)
{
    self->resolving--;
    host->resolving--;
    if (abandoned) {
        host->abandoned++;          //  Before a full ring drops one: host stays
        if (self->abandoned_count == self->abandoned_max)
            s_dns_forget_oldest (self);     //  The first to end makes room
        size_t slot = (self->abandoned_first + self->abandoned_count) % self->abandoned_max;
        self->abandoned [slot].over = bm_mono_ms () + self->lookup_life_ms;
        self->abandoned [slot].host = host;
        self->abandoned_count++;
        bm_debug (NULL, "a lookup of %s was abandoned (its attempt ended first); %zu pending, "
                  "%zu of it", host->name, self->resolving + self->abandoned_count,
                  host->resolving + host->abandoned);
    }
    //  The deliveries parked on it go first (they were due first); the
    //  loop starts them once libcurl's call returns.
    delivery_t *d;
    while ((d = (delivery_t *) zlistx_last (host->parked))) {
        zlistx_delete (host->parked, d->ready_handle);
        self->parked--;
        d->where = WHERE_READY;
        d->ready_handle = zlistx_add_start (self->ready, d);
        self->unparked = true;
    }
    s_dns_host_drop (self, host);
}

//  The name libcurl looks up to connect to a URL's host and port (host as
//  bm_url_host gives it, [brackets] around IPv6), in lower case: the
//  TO-HOST of the first WEBHOOK_CONNECT_TO entry that maps them, as curl
//  takes it (HOST compared without case, an empty PORT matches any, an
//  entry with neither TO-HOST nor TO-PORT maps nothing), else the host.
//  *name is NULL when no lookup is made: an IP address, or localhost and
//  names under it (libcurl answers them itself).  -1 if out of memory.
static int
s_lookup_host (const struct curl_slist *connect_to, const char *host, int port, char **name)
{
    char target [BM_MAX_URL_LEN + 1];
    snprintf (target, sizeof target, "%s", host);
    for (const struct curl_slist *item = connect_to; item; item = item->next) {
        //  HOST:PORT:TO-HOST:TO-PORT, split at the colons outside brackets
        //  (wh_config checked there are four fields).
        char entry [BM_MAX_URL_LEN + 1];
        snprintf (entry, sizeof entry, "%s", item->data);
        char *field [4] = { entry, NULL, NULL, NULL };
        int fields = 1;
        bool bracket = false;
        for (char *p = entry; *p && fields < 4; p++) {
            if (*p == '[')
                bracket = true;
            else
            if (*p == ']')
                bracket = false;
            else
            if (*p == ':' && !bracket) {
                *p = 0;
                field [fields++] = p + 1;
            }
        }
        if (fields < 4 || strcasecmp (field [0], host) != 0
        ||  (*field [1] && atoi (field [1]) != port))
            continue;
        if (!*field [2] && !*field [3])
            continue;
        if (*field [2])
            snprintf (target, sizeof target, "%s", field [2]);
        break;
    }
    *name = NULL;
    size_t len = strlen (target);
    unsigned char addr [sizeof (struct in6_addr)];
    if (len > 2 && target [0] == '[' && target [len - 1] == ']') {
        target [len - 1] = 0;
        if (inet_pton (AF_INET6, target + 1, addr) == 1)
            return 0;
    }
    if (inet_pton (AF_INET, target, addr) == 1)
        return 0;
    for (char *p = target; *p; p++)
        *p = (char) tolower ((unsigned char) *p);
    len = strlen (target);
    if (strcmp (target, "localhost") == 0
    ||  (len > 10 && strcmp (target + len - 10, ".localhost") == 0))
        return 0;
    *name = strdup (target);
    return *name? 0: -1;
}

//  How long the system resolver may take over a lookup that gets no
//  answer: /etc/resolv.conf's timeout x attempts x name servers, and a
//  second more (glibc's defaults: 5 s x 2 x 1).
static int64_t
s_lookup_life_ms (void)
{
    struct __res_state state;
    memset (&state, 0, sizeof state);
    int64_t life = 5 * 2 * 1000;
    if (res_ninit (&state) == 0) {
        int servers = state.nscount > 0? state.nscount: 1;
        life = (int64_t) (state.retrans > 0? state.retrans: 5) * (state.retry > 0? state.retry: 2)
             * servers * 1000;
        res_nclose (&state);
    }
    life += 1000;
    return life < 300000? life: 300000;
}

//  --------------------------------------------------------------------------
//  Gauges

static void
s_gauges (wh_engine_t *self)
{
    int64_t held = (int64_t) zhashx_size (self->deliveries);
    int64_t waiting = (int64_t) wh_heap_size (self->waiting);
    int64_t ready = (int64_t) (zlistx_size (self->ready) + self->parked);
    int64_t inflight = (int64_t) self->inflight;
    atomic_store (&self->counters.held, held);
    atomic_store (&self->counters.waiting, waiting);
    atomic_store (&self->counters.ready, ready);
    atomic_store (&self->counters.inflight, inflight);
    atomic_store (&self->counters.held_bytes, (int64_t) self->held_bytes);
    int64_t dns_pending = (int64_t) wh_engine_dns_pending (self);
    atomic_store (&self->counters.dns_pending, dns_pending);
    bm_series_set (self->m_dns_pending, (double) dns_pending);
    bm_series_set (self->m_held, (double) held);
    bm_series_set (self->m_waiting, (double) waiting);
    bm_series_set (self->m_ready, (double) ready);
    bm_series_set (self->m_inflight, (double) inflight);
}

//  --------------------------------------------------------------------------
//  Deliveries

//  Take a delivery out of wherever it is (heap, ready list, in flight).
static void
s_unlink (wh_engine_t *self, delivery_t *d)
{
    if (d->where == WHERE_WAITING)
        wh_heap_remove (self->waiting, &d->node);
    else
    if (d->where == WHERE_READY && d->ready_handle) {
        zlistx_delete (self->ready, d->ready_handle);
        d->ready_handle = NULL;
    }
    else
    if (d->where == WHERE_PARKED && d->ready_handle) {
        dns_host_t *host = (dns_host_t *) zhashx_lookup (self->dns_hosts, d->lookup_host);
        zlistx_delete (host->parked, d->ready_handle);
        d->ready_handle = NULL;
        self->parked--;
        s_dns_host_drop (self, host);
    }
    else
    if (d->where == WHERE_INFLIGHT && d->attempt) {
        wh_attempt_free (self, &d->attempt);
        self->inflight--;
    }
}

//  Forget a delivery entirely (after its last event).
static void
s_delivery_destroy (wh_engine_t *self, delivery_t **d_p)
{
    delivery_t *d = *d_p;
    s_unlink (self, d);
    zhashx_delete (self->deliveries, d->job_id);
    self->held_bytes -= d->cost;
    free (d->job_id);
    free (d->url);
    free (d->url_shown);
    free (d->lookup_host);
    free (d->webhook_id);
    free (d->body);
    free (d);
    *d_p = NULL;
}

//  Report an event to the owner.
static void
s_event (wh_engine_t *self, wh_event_t event, delivery_t *d)
{
    self->event_fn (self->event_arg, event, d->job_id, &d->status);
}

//  Report the final outcome and forget the delivery.
static void
s_finish (wh_engine_t *self, delivery_t *d, wh_state_t state)
{
    d->status.state = state;
    d->status.next_attempt_at = 0;
    if (state == WH_STATE_DELIVERED) {
        atomic_fetch_add (&self->counters.delivered, 1);
        bm_series_inc (self->m_delivered);
        bm_series_observe (self->m_time_to_deliver,
                           (bm_mono_ms () - d->received_mono) / 1000.0);
        bm_info (d->job_id, "delivered to %s after %" PRId64 " attempt%s (HTTP %d)",
                 d->url_shown, d->status.attempts, d->status.attempts == 1? "": "s", d->status.last_status);
    }
    else {
        atomic_fetch_add (&self->counters.failed, 1);
        bm_series_inc (self->m_failed);
        bm_warn (d->job_id, "delivery to %s failed after %" PRId64 " attempt%s: %s",
                 d->url_shown, d->status.attempts, d->status.attempts == 1? "": "s", d->status.last_error);
    }
    s_unlink (self, d);
    s_event (self, WH_EVENT_DONE, d);
    s_delivery_destroy (self, &d);
}

//  Give a delivery back to the broker and forget it.
static void
s_release (wh_engine_t *self, delivery_t *d)
{
    atomic_fetch_add (&self->counters.released, 1);
    bm_series_inc (self->m_released);
    bm_debug (d->job_id, "released (%" PRId64 " attempts so far)", d->status.attempts);
    s_unlink (self, d);
    s_event (self, WH_EVENT_RELEASE, d);
    s_delivery_destroy (self, &d);
}


//  --------------------------------------------------------------------------
//  Waiting heap -> ready list -> in flight

static int s_wait_timeout (zloop_t *loop, int timer_id, void *arg);

//  Arm the heap timer for the earliest waiting delivery.
static void
s_arm_wait_timer (wh_engine_t *self)
{
    wh_heap_node_t *head = wh_heap_peek (self->waiting);
    if (!head) {
        if (self->wait_timer != -1) {
            zloop_timer_end (self->loop, self->wait_timer);
            self->wait_timer = -1;
        }
        return;
    }
    if (self->wait_timer != -1 && self->wait_timer_due <= head->key)
        return;                 //  Fires early enough already
    if (self->wait_timer != -1)
        zloop_timer_end (self->loop, self->wait_timer);
    int64_t delay = head->key - bm_mono_ms ();
    if (delay < 0)
        delay = 0;
    self->wait_timer = zloop_timer (self->loop, (size_t) delay, 1, s_wait_timeout, self);
    self->wait_timer_due = head->key;
}

//  The earliest waiting delivery is due: move every due one on.
static int
s_wait_timeout (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    wh_engine_t *self = (wh_engine_t *) arg;
    self->wait_timer = -1;
    int64_t now = bm_mono_ms ();
    wh_heap_node_t *head;
    while ((head = wh_heap_peek (self->waiting)) && head->key <= now) {
        wh_heap_pop (self->waiting);
        delivery_t *d = (delivery_t *) head;     //  node is the first member
        d->where = WHERE_READY;
        d->ready_handle = zlistx_add_end (self->ready, d);
    }
    s_pump (self);
    s_arm_wait_timer (self);
    s_gauges (self);
    return 0;
}

//  Put a delivery in the heap (or straight in the ready list if due).
static void
s_schedule (wh_engine_t *self, delivery_t *d, int64_t due_mono)
{
    if (due_mono <= bm_mono_ms ()) {
        d->where = WHERE_READY;
        d->ready_handle = zlistx_add_end (self->ready, d);
        s_pump (self);
    }
    else {
        d->where = WHERE_WAITING;
        d->node.key = due_mono;
        if (wh_heap_push (self->waiting, &d->node)) {
            //  Out of memory for the heap: try at once instead.
            d->where = WHERE_READY;
            d->ready_handle = zlistx_add_end (self->ready, d);
            s_pump (self);
        }
        else
            s_arm_wait_timer (self);
    }
    s_gauges (self);
}


//  Start ready deliveries while slots are free.
static void
s_pump (wh_engine_t *self)
{
    while (self->inflight < (size_t) self->config->max_inflight && zlistx_size (self->ready)) {
        delivery_t *d = (delivery_t *) zlistx_first (self->ready);
        zlistx_delete (self->ready, d->ready_handle);
        d->ready_handle = NULL;
        if (wh_attempt_start (self, d)) {
            //  Out of memory or libcurl refused: a failed attempt, retried
            //  as any retryable one (1 ms at least: into the waiting heap,
            //  not straight back into this loop).
            d->status.attempts++;
            snprintf (d->status.last_error, sizeof d->status.last_error,
                      "could not start the request (out of memory?)");
            d->status.last_status = 0;
            s_retry (self, d, -1, 1);
        }
    }
}

//  --------------------------------------------------------------------------
//  Outcomes

//  The first bytes of an answer's body as an error message shows them:
//  printable ASCII, runs of white space and control bytes as one space,
//  other bytes as '?', "..." when there was more.
static void
s_excerpt (const char *data, size_t len, bool more, char *out, size_t size)
{
    size_t used = 0;
    bool space = true;              //  No leading space
    for (size_t i = 0; i < len && used + 4 < size; i++) {
        unsigned char c = (unsigned char) data [i];
        if (c <= ' ' || c == 0x7f) {
            if (!space)
                out [used++] = ' ';
            space = true;
            continue;
        }
        out [used++] = c < 0x7f? (char) c: '?';
        space = false;
    }
    while (used > 0 && out [used - 1] == ' ')
        used--;
    if (used > 0 && more && used + 3 < size) {
        memcpy (out + used, "...", 3);
        used += 3;
    }
    out [used] = 0;
}

//  libcurl refused a response header line longer than it takes (100 KiB):
//  it reports that as out of memory, between the status line and the end
//  of the headers.
static bool
s_curl_header_overflow (CURLcode result, const attempt_t *attempt)
{
    return result == CURLE_OUT_OF_MEMORY && attempt->status_line && !attempt->answered;
}

//  The webhook_responses_total series of an HTTP status (0: "none", no
//  answer; WH_RESPONSE_OTHER: "other"), made on first use.  Call from the
//  engine's thread.
static bm_series_t *
s_response_series (wh_engine_t *self, int code)
{
    if (code == WH_RESPONSE_OTHER) {
        if (!self->m_response_series [code])
            self->m_response_series [code] = bm_metric_series (self->m_responses, "other");
        return self->m_response_series [code];
    }
    return bm_metric_series_status (self->m_responses, self->m_response_series,
                                    WH_RESPONSE_OTHER, code, "none");
}

//  An attempt was not made: WEBHOOK_MAX_RESOLVING_PER_HOST lookups of its
//  name are under way and none was abandoned.  Not counted as an attempt:
//  the delivery waits, parked on the name, for one of those lookups to end
//  (answered, failed or abandoned: at most WEBHOOK_TIMEOUT_MS), then goes
//  first in the ready list; if they all ended meanwhile, it goes there now.
static void
s_park (wh_engine_t *self, delivery_t *d)
{
    wh_attempt_free (self, &d->attempt);
    self->inflight--;
    if (self->draining) {
        s_release (self, d);
        return;
    }
    dns_host_t *host = (dns_host_t *) zhashx_lookup (self->dns_hosts, d->lookup_host);
    if (host && host->resolving > 0 && (d->ready_handle = zlistx_add_end (host->parked, d))) {
        d->where = WHERE_PARKED;
        self->parked++;
        bm_debug (d->job_id, "waits for one of the %zu lookups of %s under way "
                  "(WEBHOOK_MAX_RESOLVING_PER_HOST=%" PRId64 ")", host->resolving, host->name,
                  self->config->max_resolving_per_host);
    }
    else {
        d->where = WHERE_READY;
        d->ready_handle = zlistx_add_start (self->ready, d);
    }
}

//  An attempt ended: decide what happens to the delivery.
static void
s_attempt_done (wh_engine_t *self, delivery_t *d, CURLcode result)
{
    attempt_t *attempt = d->attempt;
    if (attempt->dns_deferred) {
        s_park (self, d);
        return;
    }
    long status = 0;
    curl_easy_getinfo (attempt->easy, CURLINFO_RESPONSE_CODE, &status);
    double seconds = (bm_mono_ms () - attempt->started_mono) / 1000.0;
    bm_series_observe (self->m_duration, seconds);

    d->status.attempts++;
    atomic_fetch_add (&self->counters.attempts, 1);
    //  The outcome is the status once a final answer's headers all came,
    //  whatever became of its body (cut short, a timeout, a reset).
    bool answered = (result == CURLE_OK || attempt->answered) && !attempt->headers_too_large;
    d->status.last_status = answered? (int) status: 0;
    d->status.last_error [0] = 0;

    //  Count the answer by status (0: none).
    int code = !answered? 0: status >= 100 && status <= 599? (int) status: WH_RESPONSE_OTHER;
    atomic_fetch_add (&self->counters.responses [code], 1);
    bm_series_inc (s_response_series (self, code));

    wh_verdict_t verdict;
    if (answered) {
        verdict = wh_classify_status (status);
        if (result != CURLE_OK)
            bm_debug (d->job_id, "HTTP %ld: %s after %zu body bytes; the status decides",
                      status, attempt->body_cut? "stopped reading": "the body ended badly",
                      attempt->body_read);
        if (verdict != WH_SUCCESS) {
            char excerpt [WH_BODY_KEEP + 4];
            s_excerpt (attempt->body_head, attempt->body_kept, attempt->body_cut
                       || attempt->body_read > attempt->body_kept, excerpt, sizeof excerpt);
            snprintf (d->status.last_error, sizeof d->status.last_error, "HTTP %ld%s%s%s", status,
                      status >= 300 && status < 400? " (redirects are not followed)": "",
                      *excerpt? ": ": "", excerpt);
        }
    }
    else
    if (attempt->headers_too_large || s_curl_header_overflow (result, attempt)) {
        verdict = WH_RETRYABLE;
        snprintf (d->status.last_error, sizeof d->status.last_error,
                  "the receiver's response headers are too large (over %d KiB)", WH_HEADERS_MAX / 1024);
    }
    else
    if (attempt->dns_refused && attempt->dns_refused_host) {
        verdict = WH_RETRYABLE;
        snprintf (d->status.last_error, sizeof d->status.last_error,
                  "not tried: %zu lookups of %.100s are waiting for a DNS server that does not "
                  "answer (WEBHOOK_MAX_RESOLVING_PER_HOST=%" PRId64 ")", attempt->dns_refused_pending,
                  d->lookup_host, self->config->max_resolving_per_host);
    }
    else
    if (attempt->dns_refused) {
        verdict = WH_RETRYABLE;
        snprintf (d->status.last_error, sizeof d->status.last_error,
                  "not tried: %zu host name lookups are waiting for a DNS server that does not "
                  "answer (WEBHOOK_MAX_RESOLVING=%" PRId64 ")", attempt->dns_refused_pending,
                  self->config->max_resolving);
    }
    else
    if (attempt->refused [0] && !attempt->opened) {
        verdict = WH_PERMANENT;
        snprintf (d->status.last_error, sizeof d->status.last_error, "%s", attempt->refused);
        atomic_fetch_add (&self->counters.refused, 1);
        bm_series_inc (self->m_refused);
    }
    else {
        verdict = wh_classify_curl (result);
        //  No new connection: the request went on one kept from an earlier
        //  transfer.  What came back on it may be the garbage a previous
        //  receiver left ("Received HTTP/0.9 when not allowed", a weird
        //  reply): the next attempt opens a connection of its own.
        long connects = -1;
        curl_easy_getinfo (attempt->easy, CURLINFO_NUM_CONNECTS, &connects);
        if (connects == 0)
            d->fresh_connect = true;
        if (result == CURLE_OPERATION_TIMEDOUT)
            snprintf (d->status.last_error, sizeof d->status.last_error,
                      "timed out after %" PRId64 " ms (%s)", self->config->timeout_ms,
                      attempt->errbuf [0]? attempt->errbuf: "no answer");
        else
            snprintf (d->status.last_error, sizeof d->status.last_error, "%s",
                      attempt->errbuf [0]? attempt->errbuf: curl_easy_strerror (result));
    }
    if (result == CURLE_COULDNT_RESOLVE_HOST)
        attempt->resolve_failed = true;     //  The lookup ended: not abandoned
    int64_t retry_after = attempt->retry_after_ms;

    //  The request is over: free its slot.
    wh_attempt_free (self, &d->attempt);
    self->inflight--;

    if (verdict == WH_SUCCESS) {
        bm_series_inc (self->m_attempt_success);
        s_finish (self, d, WH_STATE_DELIVERED);
        return;
    }
    if (verdict == WH_PERMANENT) {
        bm_series_inc (self->m_attempt_permanent);
        s_finish (self, d, WH_STATE_FAILED);
        return;
    }
    s_retry (self, d, retry_after, 0);
}

//  An attempt failed, retryable (its error in d->status): another after
//  the backoff policy's wait (retry_after_ms: the receiver's Retry-After,
//  -1 if none; at least min_delay_ms), or failed for good past the last
//  attempt or the job's deadline.
static void
s_retry (wh_engine_t *self, delivery_t *d, int64_t retry_after, int64_t min_delay_ms)
{
    bm_series_inc (self->m_attempt_retryable);
    if (d->status.attempts > self->config->max_retries) {
        char last [WH_LAST_ERROR_MAX];
        snprintf (last, sizeof last, "%s", d->status.last_error);
        snprintf (d->status.last_error, sizeof d->status.last_error,
                  "gave up after %" PRId64 " attempts; last: %.200s", d->status.attempts, last);
        s_finish (self, d, WH_STATE_FAILED);
        return;
    }
    int64_t delay = wh_backoff_delay (self->backoff, (int) (d->status.attempts < 1000? d->status.attempts: 1000),
                                      retry_after);
    if (delay < min_delay_ms)
        delay = min_delay_ms;
    int64_t now = bm_now_ms ();
    if (d->deadline_ms && now + delay + self->config->timeout_ms > d->deadline_ms) {
        char last [WH_LAST_ERROR_MAX];
        snprintf (last, sizeof last, "%s", d->status.last_error);
        snprintf (d->status.last_error, sizeof d->status.last_error,
                  "the delivery job's deadline leaves no time for another attempt; last: %.180s", last);
        s_finish (self, d, WH_STATE_FAILED);
        return;
    }
    d->status.state = WH_STATE_RETRYING;
    d->status.next_attempt_at = now + delay;
    atomic_fetch_add (&self->counters.retries, 1);
    bm_series_inc (self->m_retries);
    bm_info (d->job_id, "attempt %" PRId64 " to %s failed (%s); retry in %" PRId64 " ms%s",
             d->status.attempts, d->url_shown, d->status.last_error, delay,
             retry_after >= 0? " (Retry-After)": "");
    s_event (self, WH_EVENT_PROGRESS, d);
    if (self->draining)
        s_release (self, d);
    else
        s_schedule (self, d, bm_mono_ms () + delay);
}

//  Collect finished transfers.
void
wh_engine_check_done (wh_engine_t *self)
{
    CURLMsg *msg;
    int left;
    bool any = false;
    while ((msg = curl_multi_info_read (self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;     //  msg is invalid once removed
        delivery_t *d = NULL;
        curl_easy_getinfo (easy, CURLINFO_PRIVATE, (char **) &d);
        if (!d || !d->attempt || d->attempt->easy != easy) {
            curl_multi_remove_handle (self->multi, easy);
            curl_easy_cleanup (easy);   //  Not ours (cannot happen)
            continue;
        }
        s_attempt_done (self, d, result);
        any = true;
    }
    if (any || self->unparked) {
        self->unparked = false;
        s_pump (self);
        s_gauges (self);
    }
}

//  --------------------------------------------------------------------------
//  Public interface

wh_engine_t *
wh_engine_new (zloop_t *loop, const wh_config_t *config, bm_metrics_t *metrics,
               wh_event_fn *fn, void *arg, char *error, size_t error_size)
{
    wh_engine_t *self = (wh_engine_t *) calloc (1, sizeof (wh_engine_t));
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    self->loop = loop;
    self->config = config;
    self->event_fn = fn;
    self->event_arg = arg;
    self->curl_timer = -1;
    self->curl_due = -1;
    self->wait_timer = -1;
    if (config->secret) {
        char reason [160];
        self->signer = wh_signer_new (config->secret, reason, sizeof reason);
        if (!self->signer) {
            snprintf (error, error_size, "WEBHOOK_SECRET: %s", reason);
            wh_engine_destroy (&self);
            return NULL;
        }
    }
    self->backoff = wh_backoff_new (config->retry_delay_ms, config->max_delay_ms, config->jitter);
    self->deliveries = zhashx_new ();
    self->waiting = wh_heap_new ();
    self->ready = zlistx_new ();
    self->multi = curl_multi_init ();
    //  Abandoned lookups: at most max_inflight while none was (then every
    //  attempt may be looking up), max_resolving after.
    self->abandoned_max = (size_t) (config->max_inflight + config->max_resolving);
    self->abandoned = (abandoned_t *) calloc (self->abandoned_max, sizeof (abandoned_t));
    self->dns_hosts = zhashx_new ();
    self->lookup_life_ms = s_lookup_life_ms ();
    if (!self->backoff || !self->deliveries || !self->waiting || !self->ready || !self->multi
    ||  !self->abandoned || !self->dns_hosts) {
        snprintf (error, error_size, "out of memory or libcurl failed to start");
        wh_engine_destroy (&self);
        return NULL;
    }
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETFUNCTION, wh_multi_socket_cb);
    curl_multi_setopt (self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERFUNCTION, wh_multi_timer_cb);
    curl_multi_setopt (self->multi, CURLMOPT_TIMERDATA, self);
    //  Keep idle connections to receivers for reuse, a few per slot.
    curl_multi_setopt (self->multi, CURLMOPT_MAXCONNECTS, (long) config->max_inflight * 2);

    //  Metrics
    bm_metric_t *deliveries = bm_metrics_counter (metrics, "webhook_deliveries_total",
        "Webhook deliveries that reached a final state: success (delivered) or failed", "status");
    self->m_delivered = bm_metric_series (deliveries, "success");
    self->m_failed = bm_metric_series (deliveries, "failed");
    bm_metric_t *attempts = bm_metrics_counter (metrics, "webhook_attempts_total",
        "HTTP delivery attempts, by verdict (success, retryable, permanent)", "result");
    self->m_attempt_success = bm_metric_series (attempts, "success");
    self->m_attempt_retryable = bm_metric_series (attempts, "retryable");
    self->m_attempt_permanent = bm_metric_series (attempts, "permanent");
    self->m_responses = bm_metrics_counter (metrics, "webhook_responses_total",
        "Answers to delivery attempts by HTTP status (none: no answer)", "code");
    //  At 0 from the start, so rate() and increase() see the first answer
    //  of each: no answer, success, and the statuses a receiver usually
    //  answers when it refuses (permanent) or cannot take a delivery now
    //  (retried).  Others appear with their first answer.
    static const int usual [] = { 0, 200, 201, 202, 204, 400, 401, 403, 404, 408, 410, 413,
                                  429, 500, 502, 503, 504 };
    for (size_t i = 0; i < sizeof usual / sizeof usual [0]; i++)
        s_response_series (self, usual [i]);
    self->m_duration = bm_metric_series (bm_metrics_histogram (metrics,
        "webhook_delivery_duration_seconds",
        "Duration of one HTTP delivery attempt", NULL, NULL, 0));
    self->m_time_to_deliver = bm_metric_series (bm_metrics_histogram (metrics,
        "webhook_delivery_latency_seconds",
        "From taking a delivery to its successful attempt, retries included", NULL,
        bm_buckets_duration, bm_buckets_duration_count));
    self->m_retries = bm_metric_series (bm_metrics_counter (metrics, "webhook_retries_total",
        "Retries scheduled after a retryable failure", NULL));
    self->m_released = bm_metric_series (bm_metrics_counter (metrics, "webhook_released_total",
        "Deliveries given back to the broker unfinished (shutdown)", NULL));
    self->m_cancelled = bm_metric_series (bm_metrics_counter (metrics, "webhook_cancelled_total",
        "Deliveries the broker cancelled (its job timed out)", NULL));
    self->m_refused = bm_metric_series (bm_metrics_counter (metrics, "webhook_ssrf_refused_total",
        "Attempts refused by the SSRF guard (non-public target address)", NULL));
    self->m_held = bm_metric_series (bm_metrics_gauge (metrics, "webhook_deliveries_held",
        "Deliveries held (waiting, queued or in flight)", NULL));
    self->m_waiting = bm_metric_series (bm_metrics_gauge (metrics, "webhook_deliveries_waiting_retry",
        "Deliveries waiting for their next attempt", NULL));
    self->m_ready = bm_metric_series (bm_metrics_gauge (metrics, "webhook_deliveries_queued",
        "Deliveries due, waiting for a free HTTP slot (WEBHOOK_MAX_INFLIGHT) or a lookup of their host", NULL));
    self->m_inflight = bm_metric_series (bm_metrics_gauge (metrics, "webhook_deliveries_in_flight",
        "HTTP delivery attempts in progress", NULL));
    self->m_dns_pending = bm_metric_series (bm_metrics_gauge (metrics, "webhook_dns_lookups_pending",
        "Host name lookups not answered yet, abandoned ones included (WEBHOOK_MAX_RESOLVING)", NULL));
    return self;
}

void
wh_engine_destroy (wh_engine_t **self_p)
{
    if (*self_p) {
        wh_engine_t *self = *self_p;
        if (self->deliveries) {
            delivery_t *d;
            while ((d = (delivery_t *) zhashx_first (self->deliveries)))
                s_delivery_destroy (self, &d);
            zhashx_destroy (&self->deliveries);
        }
        if (self->curl_timer != -1)
            zloop_timer_end (self->loop, self->curl_timer);
        if (self->wait_timer != -1)
            zloop_timer_end (self->loop, self->wait_timer);
        if (self->multi)
            curl_multi_cleanup (self->multi);
        wh_heap_destroy (&self->waiting);
        zlistx_destroy (&self->ready);
        if (self->dns_hosts) {
            //  Names with abandoned lookups (nothing is parked any more)
            while (self->abandoned_count)
                s_dns_forget_oldest (self);
            zhashx_destroy (&self->dns_hosts);
        }
        free (self->abandoned);
        wh_backoff_destroy (&self->backoff);
        wh_signer_destroy (&self->signer);
        free (self);
        *self_p = NULL;
    }
}

//  What a delivery holds while it is held: its record (its reported state,
//  lastError included) and the strings it keeps.  An attempt in flight
//  holds more (libcurl's handle and buffers, the request's headers) for
//  its duration only: WEBHOOK_MAX_INFLIGHT bounds those.
static size_t
s_cost (const delivery_t *d)
{
    return sizeof (delivery_t) + strlen (d->job_id) + 1 + strlen (d->url) + 1
         + strlen (d->url_shown) + 1 + strlen (d->webhook_id) + 1 + d->body_len + 1
         + (d->lookup_host? strlen (d->lookup_host) + 1: 0);
}

size_t
wh_engine_cost (wh_engine_t *self, const char *job_id, const char *url,
                const char *webhook_id, size_t body_len)
{
    char *shown = wh_url_redacted (url);
    char *lookup_host = NULL;
    int port = 0;
    char error [8];
    char *host = bm_url_host (url, "the URL", &port, error, sizeof error);
    if (host && s_lookup_host (self->config->connect_to, host, port, &lookup_host))
        lookup_host = NULL;
    free (host);
    delivery_t d = { .job_id = (char *) job_id, .url = (char *) url,
                     .url_shown = shown? shown: (char *) url, .webhook_id = (char *) webhook_id,
                     .body_len = body_len, .lookup_host = lookup_host };
    size_t cost = s_cost (&d);
    free (shown);
    free (lookup_host);
    return cost;
}

int
wh_engine_add (wh_engine_t *self, const char *job_id, const char *url,
               const char *webhook_id, const char *body, size_t body_len,
               const wh_status_t *prior, int64_t deadline_ms,
               char *error, size_t error_size)
{
    if (zhashx_lookup (self->deliveries, job_id))
        return 1;
    if (!bm_valid_id (webhook_id, strlen (webhook_id))) {
        snprintf (error, error_size, "webhookId must be 1-128 printable characters without spaces");
        return -1;
    }
    int port = 0;
    char *host = bm_url_host (url, "the URL", &port, error, error_size);
    if (!host)
        return -1;
    delivery_t *d = (delivery_t *) calloc (1, sizeof (delivery_t));
    int lookup_rc = -1;
    if (d) {
        d->job_id = strdup (job_id);
        d->url = strdup (url);
        d->url_shown = wh_url_redacted (url);
        d->webhook_id = strdup (webhook_id);
        d->body = (char *) malloc (body_len + 1);
        lookup_rc = s_lookup_host (self->config->connect_to, host, port, &d->lookup_host);
        d->ssrf_exempt = self->config->allow_private
                      || bm_ssrf_target_listed (self->config->allowed_hosts, host, port);
    }
    free (host);
    if (!d || !d->job_id || !d->url || !d->url_shown || !d->webhook_id || !d->body || lookup_rc) {
        if (d) {
            free (d->job_id);
            free (d->url);
            free (d->url_shown);
            free (d->webhook_id);
            free (d->body);
            free (d->lookup_host);
            free (d);
        }
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    memcpy (d->body, body, body_len);
    d->body [body_len] = 0;
    d->body_len = body_len;
    d->engine = self;
    d->cost = s_cost (d);
    d->deadline_ms = deadline_ms;
    d->received_mono = bm_mono_ms ();
    wh_heap_node_init (&d->node);
    d->status.state = WH_STATE_PENDING;
    zhashx_insert (self->deliveries, d->job_id, d);
    self->held_bytes += d->cost;
    atomic_fetch_add (&self->counters.received, 1);

    int64_t due = bm_mono_ms ();
    //  Continue from the state last reported (a crash, a release): count
    //  on from its attempts and wait for its next attempt time, but never
    //  longer than the cap (a clock that jumped must not park it).
    if (prior && (prior->state == WH_STATE_PENDING || prior->state == WH_STATE_RETRYING)) {
        d->status = *prior;
        if (d->status.attempts < 0)
            d->status.attempts = 0;
        int64_t wait = prior->next_attempt_at - bm_now_ms ();
        if (prior->next_attempt_at > 0 && wait > 0)
            due += wait < self->config->max_delay_ms? wait: self->config->max_delay_ms;
        bm_info (job_id, "resuming delivery to %s after %" PRId64 " attempts", d->url_shown,
                 d->status.attempts);
    }
    else
        bm_debug (job_id, "new delivery to %s", d->url_shown);
    if (self->draining) {
        s_release (self, d);
        return 0;
    }
    s_schedule (self, d, due);
    return 0;
}

int
wh_engine_cancel (wh_engine_t *self, const char *job_id)
{
    delivery_t *d = (delivery_t *) zhashx_lookup (self->deliveries, job_id);
    if (!d)
        return -1;
    atomic_fetch_add (&self->counters.cancelled, 1);
    bm_series_inc (self->m_cancelled);
    s_delivery_destroy (self, &d);
    s_pump (self);
    s_arm_wait_timer (self);
    s_gauges (self);
    return 0;
}

void
wh_engine_drain (wh_engine_t *self)
{
    self->draining = true;
    //  Collect first: releasing changes the table we walk.
    zlist_t *out = zlist_new ();
    delivery_t *d = (delivery_t *) zhashx_first (self->deliveries);
    while (d) {
        if (d->where != WHERE_INFLIGHT)
            zlist_append (out, d);
        d = (delivery_t *) zhashx_next (self->deliveries);
    }
    while ((d = (delivery_t *) zlist_pop (out)))
        s_release (self, d);
    zlist_destroy (&out);
    s_arm_wait_timer (self);
    s_gauges (self);
}

void
wh_engine_abort (wh_engine_t *self)
{
    self->draining = true;
    zlist_t *out = zlist_new ();
    delivery_t *d = (delivery_t *) zhashx_first (self->deliveries);
    while (d) {
        zlist_append (out, d);
        d = (delivery_t *) zhashx_next (self->deliveries);
    }
    while ((d = (delivery_t *) zlist_pop (out))) {
        if (d->where == WHERE_INFLIGHT)
            bm_warn (d->job_id, "request to %s aborted at shutdown; the broker will redeliver it", d->url_shown);
        s_release (self, d);
    }
    zlist_destroy (&out);
    s_arm_wait_timer (self);
    s_gauges (self);
}

size_t
wh_engine_held (wh_engine_t *self)
{
    return zhashx_size (self->deliveries);
}

size_t
wh_engine_inflight (wh_engine_t *self)
{
    return self->inflight;
}

void
wh_engine_count_failed (wh_engine_t *self)
{
    atomic_fetch_add (&self->counters.failed, 1);
    bm_series_inc (self->m_failed);
}

size_t
wh_engine_held_bytes (wh_engine_t *self)
{
    return self->held_bytes;
}

bool
wh_engine_holds (wh_engine_t *self, const char *job_id)
{
    return zhashx_lookup (self->deliveries, job_id) != NULL;
}

int
wh_engine_held_ids (wh_engine_t *self, const char **ids, int max)
{
    int count = 0;
    for (delivery_t *d = (delivery_t *) zhashx_first (self->deliveries); d && count < max;
         d = (delivery_t *) zhashx_next (self->deliveries))
        ids [count++] = d->job_id;
    return count;
}

json_t *
wh_engine_stats (wh_engine_t *self)
{
    counters_t *c = &self->counters;
    json_t *responses = json_object ();
    for (int code = 0; code <= WH_RESPONSE_OTHER; code++) {
        uint64_t count = atomic_load (&c->responses [code]);
        if (count) {
            char name [8];
            if (code == 0 || code == WH_RESPONSE_OTHER)
                snprintf (name, sizeof name, "%s", code? "other": "none");
            else
                snprintf (name, sizeof name, "%d", code);
            json_object_set_new (responses, name, json_integer ((json_int_t) count));
        }
    }
    return json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
        "delivered", (json_int_t) atomic_load (&c->delivered),
        "failed", (json_int_t) atomic_load (&c->failed),
        "retrying", (json_int_t) atomic_load (&c->waiting),
        "inFlight", (json_int_t) atomic_load (&c->inflight),
        "queued", (json_int_t) atomic_load (&c->ready),
        "held", (json_int_t) atomic_load (&c->held),
        "heldBytes", (json_int_t) atomic_load (&c->held_bytes),
        "received", (json_int_t) atomic_load (&c->received),
        "attempts", (json_int_t) atomic_load (&c->attempts),
        "retriesScheduled", (json_int_t) atomic_load (&c->retries),
        "released", (json_int_t) atomic_load (&c->released),
        "cancelled", (json_int_t) atomic_load (&c->cancelled),
        "refused", (json_int_t) atomic_load (&c->refused),
        "dnsPending", (json_int_t) atomic_load (&c->dns_pending),
        "responses", responses);
}
