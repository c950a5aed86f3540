/*  wh_manager.c - botmesh-webhook: a BMW01 worker that delivers webhooks.  */
#include "wh_manager.h"
#include "wh_engine.h"
#include "wh_http.h"
#include "bm_worker_link.h"
#include "bm_codec.h"
#include "bm_done_replay.h"
#include "bm_config.h"
#include "bm_http.h"
#include "bm_log.h"
#include "bm_main.h"
#include "bm_metrics.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define WH_DONE_REPLAY_MAX  10000   //  Recent DONEs kept for a reconnect
#define WH_SETTLE_MS        200     //  After READY credit 0 at SIGTERM, this long
                                    //  (or a heartbeat interval if shorter) for
                                    //  JOBs the broker sent before it read it,
                                    //  as botmesh-worker waits

typedef struct {
    const wh_config_t *config;  //  Borrowed
    zloop_t *loop;              //  The one event loop
    bm_metrics_t *metrics;      //  Registry for /metrics
    wh_engine_t *engine;        //  Deliveries
    bm_worker_link_t *link;     //  Broker connection
    int signal_fd;              //  SIGTERM / SIGINT
    bool draining;              //  Shutting down
    int grace_timer;            //  Grace period timer, -1 if none
    bool finishing;             //  DISCONNECT sent, loop about to end
    int64_t drain_started;      //  Monotonic ms of the shutdown signal
    int settle_timer;           //  Waits out the settle period, -1 if none
    bm_series_t *m_bad_jobs;    //  JOBs refused as invalid
    bm_done_replay_t *recent_done;  //  DONEs to send again after a reconnect
    bm_series_t *m_credit;      //  webhook_credit: the credit announced
    bool full;                  //  WEBHOOK_MAX_HELD_BYTES reached: credit 0
    size_t room_wanted;         //  Largest delivery handed back for lack of room
} s_manager_t;

//  --------------------------------------------------------------------------
//  Messages to the broker

//  webhook: {state, attempts, lastStatus, lastError, nextAttemptAt}, nil
//  for what is not known.
static void
s_webhook_state (const wh_status_t *status, bm_codec_webhook_t *webhook)
{
    memset (webhook, 0, sizeof *webhook);
    snprintf (webhook->state, sizeof webhook->state, "%s", wh_state_name (status->state));
    webhook->attempts = status->attempts;
    webhook->last_status = status->last_status;
    if (status->last_error [0])
        webhook->last_error = (bm_codec_str_t) { status->last_error, strlen (status->last_error) };
    webhook->next_attempt_at = status->next_attempt_at;
}

//  Send a body the codec packed; one that found no memory is not sent
//  (the broker's timeout re-dispatches the delivery).
static void
s_send (s_manager_t *self, int command, bm_packer_t *packer, const char *job_id)
{
    if (bm_packer_failed (packer))
        bm_error (job_id, "no memory to build %s: not sent",
                  bm_command_name (BM_PEER_WORKER, command));
    else
        bm_worker_link_send (self->link, command, packer->sbuf.data, packer->sbuf.size, job_id);
    bm_packer_destroy (packer);
}

//  RELEASE {jobId}
static void
s_send_release (s_manager_t *self, const char *job_id)
{
    bm_codec_job_notice_t release = { .reason = { NULL, 0 } };
    snprintf (release.job_id, sizeof release.job_id, "%s", job_id);
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_job_notice_encode (&release, &packer);
    s_send (self, BM_RELEASE, &packer, job_id);
}

//  DONE {jobId, ok, webhook, result: {status, attempts} | error: {code,
//  message}, finishedAt}: ok when code is NULL.  A copy is kept to send
//  again after a reconnect (the broker may have gone before it got it);
//  final: the delivery's own outcome (delivered, or failed for good), then
//  also the answer to a JOB that dispatches the delivery again.
static void
s_send_done (s_manager_t *self, const char *job_id, const wh_status_t *status,
             const char *code, const char *message, bool final)
{
    bm_codec_done_t done = { .ok = code == NULL, .finished_at = bm_now_ms (),
                             .has_webhook = true };
    snprintf (done.job_id, sizeof done.job_id, "%s", job_id);
    s_webhook_state (status, &done.webhook);
    bm_packer_t result;
    bm_packer_init (&result);
    if (done.ok) {
        msgpack_pack_map (&result.pk, 2);
        bm_pack_kv_int (&result.pk, "status", status->last_status);
        bm_pack_kv_int (&result.pk, "attempts", status->attempts);
        done.result.data = result.sbuf.data;
        done.result.size = result.sbuf.size;
    }
    else {
        snprintf (done.error.code, sizeof done.error.code, "%s", code);
        done.error.message = (bm_codec_str_t) { message, strlen (message) };
    }
    bm_packer_t packer;
    bm_packer_init (&packer);
    if (bm_packer_failed (&result))
        packer.failed = true;
    else
        bm_codec_done_encode (&done, &packer);
    bm_packer_destroy (&result);
    if (!bm_packer_failed (&packer)) {
        bm_done_replay_heard (self->recent_done, bm_worker_link_heard (self->link));
        bm_done_replay_remember (self->recent_done, packer.sbuf.data, packer.sbuf.size, job_id,
                                 final, bm_mono_ms ());
    }
    s_send (self, BM_DONE, &packer, job_id);
}

//  Announce the credit we have now: WEBHOOK_CONCURRENCY, or 0 while
//  draining or while the deliveries held reach WEBHOOK_MAX_HELD_BYTES
//  (wh_engine_cost).  Once full, the manager takes deliveries again when
//  there is room for the largest it handed back (the whole budget for one
//  larger than it: nothing else held) and a quarter of the budget at
//  least, so that the credit does not flap with every delivery that ends.
static void
s_update_credit (s_manager_t *self)
{
    size_t budget = (size_t) self->config->max_held_bytes;
    size_t bytes = wh_engine_held_bytes (self->engine);
    if (!self->full && bytes >= budget)
        self->full = true;
    else
    if (self->full) {
        size_t room = self->room_wanted > budget / 4? self->room_wanted: budget / 4;
        if (room > budget)
            room = budget;
        if (bytes + room <= budget) {
            self->full = false;
            self->room_wanted = 0;
        }
    }
    int64_t credit = self->draining || self->full? 0: self->config->credit;
    if (credit != bm_worker_link_credit (self->link)) {
        if (!self->draining)
            bm_info (NULL, "%zu bytes held (WEBHOOK_MAX_HELD_BYTES %zu): credit %" PRId64,
                     bytes, budget, credit);
        bm_worker_link_set_credit (self->link, credit);
    }
    bm_series_set (self->m_credit, (double) credit);
}

static int s_end_loop (zloop_t *loop, int timer_id, void *arg);
static int s_settled (zloop_t *loop, int timer_id, void *arg);

//  Shutdown, last step: DISCONNECT and leave the loop.  Not before one
//  heartbeat interval after READY credit 0: JOBs the broker sent before it
//  saw the new credit are still arriving, and each gets a RELEASE (after a
//  DISCONNECT the broker would count them as lost attempts).
static void
s_finish (s_manager_t *self)
{
    if (self->finishing || self->settle_timer != -1)
        return;
    int64_t settle = self->drain_started
                   + (self->config->heartbeat_ms < WH_SETTLE_MS ? self->config->heartbeat_ms
                                                                : WH_SETTLE_MS)
                   - bm_mono_ms ();
    if (settle > 0) {
        self->settle_timer = zloop_timer (self->loop, (size_t) settle, 1, s_settled, self);
        return;
    }
    self->finishing = true;
    bm_codec_disconnect_t bye = { .reason = { "shutdown", 8 } };
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_disconnect_encode (&bye, &packer);
    s_send (self, BM_DISCONNECT, &packer, NULL);
    bm_info (NULL, "every delivery finished or released; disconnected");
    //  Leave from a timer, not from inside whatever handler we are in.
    zloop_timer (self->loop, 0, 1, s_end_loop, self);
}

static int
s_settled (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_manager_t *self = (s_manager_t *) arg;
    self->settle_timer = -1;
    s_finish (self);
    return 0;
}

static int
s_end_loop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;
}

//  --------------------------------------------------------------------------
//  Engine events

static void
s_on_event (void *arg, wh_event_t event, const char *job_id, const wh_status_t *status)
{
    s_manager_t *self = (s_manager_t *) arg;
    if (event == WH_EVENT_PROGRESS) {
        //  PROGRESS {jobId, webhook}
        bm_codec_progress_t progress = { .has_webhook = true };
        snprintf (progress.job_id, sizeof progress.job_id, "%s", job_id);
        s_webhook_state (status, &progress.webhook);
        bm_packer_t packer;
        bm_packer_init (&packer);
        bm_codec_progress_encode (&progress, &packer);
        s_send (self, BM_PROGRESS, &packer, job_id);
    }
    else
    if (event == WH_EVENT_DONE && status->state == WH_STATE_DELIVERED)
        s_send_done (self, job_id, status, NULL, NULL, true);
    else
    if (event == WH_EVENT_DONE)
        s_send_done (self, job_id, status, "webhook_failed", status->last_error, true);
    else
        s_send_release (self, job_id);
    if (event != WH_EVENT_PROGRESS && self->link)
        s_update_credit (self);
    if (self->draining && event != WH_EVENT_PROGRESS && wh_engine_inflight (self->engine) == 0)
        s_finish (self);
}

//  --------------------------------------------------------------------------
//  Messages from the broker

//  The state last reported for a delivery (JOB's optional "webhook", as
//  the codec decoded it); false if its state is not one we know.
static bool
s_prior (const bm_codec_webhook_t *wh, wh_status_t *prior)
{
    memset (prior, 0, sizeof *prior);
    int parsed = wh_state_parse (wh->state, strlen (wh->state));
    if (parsed < 0)
        return false;
    prior->state = (wh_state_t) parsed;
    if (wh->attempts < 1000000)
        prior->attempts = wh->attempts;
    if (wh->last_status > 0 && wh->last_status < 1000)
        prior->last_status = (int) wh->last_status;
    if (wh->next_attempt_at > 0)
        prior->next_attempt_at = wh->next_attempt_at;
    if (wh->last_error.ptr) {
        size_t len = wh->last_error.len;
        if (len >= sizeof prior->last_error)
            len = sizeof prior->last_error - 1;
        memcpy (prior->last_error, wh->last_error.ptr, len);
        prior->last_error [len] = 0;
    }
    return true;
}

//  The delivery a JOB's payload describes: {url, webhookId, body}.  Returns
//  NULL and sets *body/*body_size, or the reason the payload is refused.
static const char *
s_delivery_parse (const msgpack_object *payload, char *url, size_t url_size,
                  char *webhook_id, size_t id_size, const char **body, size_t *body_size)
{
    if (!payload || payload->type != MSGPACK_OBJECT_MAP)
        return "payload must be a map {url, webhookId, body}";
    if (!bm_obj_strcpy (payload, "url", url, url_size))
        return "payload.url must be a string of at most 2048 bytes";
    if (!bm_obj_strcpy (payload, "webhookId", webhook_id, id_size))
        return "payload.webhookId must be a string of at most 128 bytes";
    const msgpack_object *text = bm_obj_get (payload, "body");
    if (!text || (text->type != MSGPACK_OBJECT_STR && text->type != MSGPACK_OBJECT_BIN))
        return "payload.body must be a string";
    *body = text->type == MSGPACK_OBJECT_STR? text->via.str.ptr: text->via.bin.ptr;
    *body_size = text->type == MSGPACK_OBJECT_STR? text->via.str.size: text->via.bin.size;
    return NULL;
}

//  A JOB whose delivery is invalid: DONE webhook_failed, counted among the
//  bad JOBs and the failed deliveries.
static void
s_refuse_job (s_manager_t *self, const char *job_id, const char *reason)
{
    wh_status_t failed;
    memset (&failed, 0, sizeof failed);
    failed.state = WH_STATE_FAILED;
    snprintf (failed.last_error, sizeof failed.last_error, "invalid delivery: %s", reason);
    bm_warn (job_id, "%s", failed.last_error);
    bm_series_inc (self->m_bad_jobs);
    wh_engine_count_failed (self->engine);
    s_send_done (self, job_id, &failed, "webhook_failed", failed.last_error, false);
}

//  JOB, decoded and checked by the codec (a JOB that does not decode is
//  answered by the link itself, DONE bad_request).
static int
s_on_job (void *arg, const bm_codec_job_t *job)
{
    s_manager_t *self = (s_manager_t *) arg;
    const char *job_id = job->job_id;
    //  A delivery that ended here moments ago: the broker lost our DONE
    //  (it restarted, or took us for lost) and dispatched it again.  Our
    //  DONE answers for it; the receiver is not sent the webhook again.
    size_t kept_size;
    const char *kept = bm_done_replay_completed (self->recent_done, job_id, &kept_size);
    if (kept) {
        bm_info (job_id, "dispatched again after it ended here: our DONE answers for it, "
                 "not sent again");
        bm_worker_link_send (self->link, BM_DONE, kept, kept_size, job_id);
        return 0;
    }
    if (self->draining) {
        //  Raced with our READY credit 0: give it straight back.
        s_send_release (self, job_id);
        return 0;
    }
    char url [BM_MAX_URL_LEN + 1];
    char webhook_id [BM_MAX_ID_LEN + 1];
    const char *data = NULL;
    size_t size = 0;
    const char *reason = s_delivery_parse (job->payload.obj, url, sizeof url,
                                           webhook_id, sizeof webhook_id, &data, &size);
    if (reason) {
        s_refuse_job (self, job_id, reason);
        return 0;
    }
    //  No room for it under WEBHOOK_MAX_HELD_BYTES (JOBs the broker sent
    //  before it saw our credit 0): give it back; one larger than the
    //  whole budget is taken when nothing else is held.
    size_t held_bytes = wh_engine_held_bytes (self->engine);
    if (wh_engine_held (self->engine) > 0 && !wh_engine_holds (self->engine, job_id)) {
        size_t cost = wh_engine_cost (self->engine, job_id, url, webhook_id, size);
        if (held_bytes + cost > (size_t) self->config->max_held_bytes) {
            bm_debug (job_id, "released: its %zu bytes do not fit (%zu bytes held, "
                      "WEBHOOK_MAX_HELD_BYTES %" PRId64 ")", cost, held_bytes,
                      self->config->max_held_bytes);
            if (cost > self->room_wanted)
                self->room_wanted = cost;
            self->full = true;
            s_send_release (self, job_id);
            s_update_credit (self);
            return 0;
        }
    }
    wh_status_t prior;
    bool has_prior = job->has_webhook && s_prior (&job->webhook, &prior);
    char error [200];
    int rc = wh_engine_add (self->engine, job_id, url, webhook_id, data, size,
                            has_prior? &prior: NULL, job->deadline > 0? job->deadline: 0,
                            error, sizeof error);
    if (rc == 0)
        s_update_credit (self);
    else
    if (rc == 1)
        bm_info (job_id, "JOB for a delivery already in progress here: carrying on with it");
    else
    if (rc == -1)
        s_refuse_job (self, job_id, error);
    return 0;
}

//  CANCEL {jobId, reason}, decoded and checked.
static int
s_on_cancel (void *arg, const bm_codec_job_notice_t *cancel)
{
    s_manager_t *self = (s_manager_t *) arg;
    const char *job_id = cancel->job_id;
    char reason [64] = "cancelled";
    if (cancel->reason.ptr && cancel->reason.len > 0) {
        size_t len = cancel->reason.len < sizeof reason - 1? cancel->reason.len: sizeof reason - 1;
        memcpy (reason, cancel->reason.ptr, len);
        reason [len] = 0;
    }
    if (wh_engine_cancel (self->engine, job_id)) {
        if (bm_done_replay_discard (self->recent_done, job_id))
            //  The CANCEL crossed our DONE: the broker did not take it, so
            //  it is neither sent again nor the answer to a later JOB.
            bm_warn (job_id, "CANCEL from the broker (%s) for the delivery that ended here: "
                     "its outcome is discarded", reason);
        else
            bm_debug (job_id, "CANCEL (%s) for a delivery not held here", reason);
        return 0;
    }
    bm_info (job_id, "delivery stopped: the broker cancelled it (%s)", reason);
    //  The broker keeps our credit until it hears DONE for the job.
    wh_status_t status;
    memset (&status, 0, sizeof status);
    status.state = WH_STATE_FAILED;
    snprintf (status.last_error, sizeof status.last_error, "stopped by the broker (%s)", reason);
    s_send_done (self, job_id, &status, reason, status.last_error, false);
    if (self->draining && wh_engine_inflight (self->engine) == 0)
        s_finish (self);
    return 0;
}

//  --------------------------------------------------------------------------
//  Connection to the broker (docs/protocol.md section 5: READY running,
//  DONEs sent again after a reconnect)

//  The connection was lost: the DONEs kept do not age until the next one.
static void
s_on_link_lost (void *arg)
{
    s_manager_t *self = (s_manager_t *) arg;
    bm_done_replay_link_down (self->recent_done);
}

//  READY running: every delivery held (waiting for a retry, due or in
//  flight), so that a broker that restarted or took over adopts them
//  instead of dispatching them again (to us or to another manager).
static int
s_on_link_running (void *arg, const char **ids, int max)
{
    s_manager_t *self = (s_manager_t *) arg;
    return wh_engine_held_ids (self->engine, ids, max);
}

//  The new connection said READY: send again the DONEs the old one may
//  have dropped (one the broker already has is answered NACK not_owner).
static void
s_on_link_reconnected (void *arg)
{
    s_manager_t *self = (s_manager_t *) arg;
    bm_done_replay_link_up (self->recent_done, bm_mono_ms ());
    bm_done_replay_send (self->recent_done, self->link);
}

//  Every heartbeat interval: forget the DONEs older than twice the time a
//  broker holds a lost worker's jobs (2 x heartbeat x liveness) before it
//  dispatches them again; they age only while a connection is up.
static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_manager_t *self = (s_manager_t *) arg;
    bm_done_replay_heard (self->recent_done, bm_worker_link_heard (self->link));
    bm_done_replay_prune (self->recent_done, bm_mono_ms (),
                          2 * 2 * self->config->heartbeat_ms * self->config->liveness);
    return 0;
}

//  --------------------------------------------------------------------------
//  Shutdown

static int
s_grace_over (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_manager_t *self = (s_manager_t *) arg;
    self->grace_timer = -1;
    bm_warn (NULL, "grace period over: aborting %zu request(s) in flight",
             wh_engine_inflight (self->engine));
    wh_engine_abort (self->engine);
    s_finish (self);
    return 0;
}

static int
s_on_signal (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    (void) item;
    s_manager_t *self = (s_manager_t *) arg;
    struct signalfd_siginfo info;
    if (read (self->signal_fd, &info, sizeof info) != sizeof info)
        return 0;
    const char *name = info.ssi_signo == SIGTERM? "SIGTERM": "SIGINT";
    if (self->draining) {
        bm_warn (NULL, "%s again: aborting what is in flight", name);
        if (self->grace_timer != -1)
            zloop_timer_end (self->loop, self->grace_timer);
        self->grace_timer = -1;
        wh_engine_abort (self->engine);
        s_finish (self);
        return 0;
    }
    self->draining = true;
    self->drain_started = bm_mono_ms ();
    bm_info (NULL, "%s: draining (credit 0; %zu delivery(ies) held, %zu in flight, grace %" PRId64 " ms)",
             name, wh_engine_held (self->engine), wh_engine_inflight (self->engine),
             self->config->grace_ms);
    bm_worker_link_stopping (self->link);       //  Replaced now: gone for good
    s_update_credit (self);                     //  0 from now on
    wh_engine_drain (self->engine);
    if (wh_engine_inflight (self->engine) == 0)
        s_finish (self);
    else
        self->grace_timer = zloop_timer (self->loop, (size_t) self->config->grace_ms, 1,
                                         s_grace_over, self);
    return 0;
}

//  --------------------------------------------------------------------------
//  Run

int
wh_manager_run (const wh_config_t *config)
{
    s_manager_t manager;
    s_manager_t *self = &manager;
    memset (self, 0, sizeof *self);
    self->config = config;
    self->grace_timer = -1;
    self->settle_timer = -1;
    int code = 1;
    wh_http_t *http = NULL;
    char error [256];

    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGTERM);
    sigaddset (&signals, SIGINT);
    self->signal_fd = signalfd (-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);
    self->loop = zloop_new ();
    self->metrics = bm_metrics_new ();
    self->recent_done = bm_done_replay_new (WH_DONE_REPLAY_MAX, BM_DONE_REPLAY_BYTES);
    if (self->signal_fd < 0 || !self->loop || !self->metrics) {
        bm_error (NULL, "cannot start: out of resources");
        goto done;
    }
    self->m_bad_jobs = bm_metric_series (bm_metrics_counter (self->metrics, "webhook_bad_jobs_total",
        "JOB messages refused as invalid (bad url, webhookId or body)", NULL));
    self->m_credit = bm_metric_series (bm_metrics_gauge (self->metrics, WH_CREDIT_METRIC,
                                                         WH_CREDIT_HELP, NULL));
    bm_series_set (self->m_credit, (double) config->credit);
    self->engine = wh_engine_new (self->loop, config, self->metrics, s_on_event, self,
                                  error, sizeof error);
    if (!self->engine) {
        bm_error (NULL, "cannot start: %s", error);
        goto done;
    }
    //  The port first: one that cannot be bound stops the manager before
    //  it ever spoke to the broker.
    http = wh_http_new (config, self->metrics, self->engine, error, sizeof error);
    if (!http) {
        bm_http_start_failed (error, "WEBHOOK_MANAGER_PORT");
        goto done;
    }
    const char *types [] = { BM_WEBHOOK_TYPE };
    bm_worker_link_config_t link_config = {
        .endpoint = config->broker_endpoint, .name = config->name, .name_setting = "WEBHOOK_NAME",
        .types = types, .type_count = 1, .credit = config->credit,
        .heartbeat_ms = config->heartbeat_ms, .liveness = config->liveness,
        //  Enough room for every report of a full credit, and then some.
        .hwm = 200000,
        //  JOB_MANY in, DONE_MANY out: the outcomes one pass over libcurl's
        //  finished transfers reports go together.
        .batch = true,
        //  Its reports are replayed after each new READY (s_on_link_reconnected)
        .dones_kept = true };
    bm_worker_link_handlers_t handlers = {
        .job_decoded = s_on_job, .cancel_decoded = s_on_cancel, .lost = s_on_link_lost,
        .reconnected = s_on_link_reconnected, .running = s_on_link_running };
    self->link = bm_worker_link_new (&link_config, self->loop, &handlers, self);
    if (!self->link)
        goto done;
    wh_http_serve (http, self->link);
    zmq_pollitem_t item = { NULL, self->signal_fd, ZMQ_POLLIN, 0 };
    zloop_poller (self->loop, &item, s_on_signal, self);
    zloop_timer (self->loop, (size_t) config->heartbeat_ms, 0, s_on_tick, self);

    //  Before the listening line, which tests and scripts wait for.
    bm_http_warn_open (config->listen_addr, wh_http_port (http), config->api_keys,
                       "WEBHOOK_LISTEN_ADDR", "read the deliveries' stats and have any job's "
                       "webhook sent again (POST /deliveries/{jobId}/retry)");
    bm_main_listening ("http", config->listen_addr, wh_http_port (http));
    bm_info (NULL, "%s: broker %s, credit %" PRId64 ", up to %" PRId64 " attempts "
             "(retry delay %" PRId64 " ms, cap %" PRId64 " ms, jitter %s), timeout %" PRId64 " ms, "
             "%s, %s", config->name, config->broker_endpoint, config->credit,
             config->max_retries + 1, config->retry_delay_ms,
             config->max_delay_ms, wh_jitter_name (config->jitter), config->timeout_ms,
             config->secret? "signed": "unsigned",
             config->allow_private? "private targets allowed": "private targets refused");
    zloop_start (self->loop);
    code = 0;

done:
    //  The HTTP threads read the engine and the link: stop them first.
    wh_http_destroy (&http);
    //  Reports queued for the broker get a moment to leave.
    bm_worker_link_destroy (&self->link, 2000);
    wh_engine_destroy (&self->engine);
    bm_done_replay_destroy (&self->recent_done);
    zloop_destroy (&self->loop);
    bm_metrics_destroy (&self->metrics);
    if (self->signal_fd >= 0)
        close (self->signal_fd);
    if (code == 0)
        bm_info (NULL, "stopped");
    return code;
}
