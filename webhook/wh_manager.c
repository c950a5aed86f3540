/*  wh_manager.c - botmesh-webhook: a BMW01 worker that delivers webhooks.  */
#include "wh_manager.h"
#include "wh_engine.h"
#include "wh_http.h"
#include "bm_worker_link.h"
#include "bm_codec.h"
#include "bm_config.h"
#include "bm_log.h"
#include "bm_main.h"
#include "bm_metrics.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

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
        bm_worker_link_send (self->link, command, packer->sbuf.data, packer->sbuf.size, NULL);
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
//  message}, finishedAt}: ok when code is NULL.
static void
s_send_done (s_manager_t *self, const char *job_id, const wh_status_t *status,
             const char *code, const char *message)
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
    s_send (self, BM_DONE, &packer, job_id);
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
    int64_t settle = self->drain_started + self->config->heartbeat_ms - bm_mono_ms ();
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
        s_send_done (self, job_id, status, NULL, NULL);
    else
    if (event == WH_EVENT_DONE)
        s_send_done (self, job_id, status, "webhook_failed", status->last_error);
    else
        s_send_release (self, job_id);
    if (self->draining && event != WH_EVENT_PROGRESS && wh_engine_inflight (self->engine) == 0)
        s_finish (self);
}

//  --------------------------------------------------------------------------
//  Messages from the broker

//  A string field copied into buf; false if absent, not a string, too long
//  or holding NUL.
static bool
s_copy_str (const msgpack_object *map, const char *key, char *buf, size_t size)
{
    return bm_obj_strcpy (map, key, buf, size);
}

//  The state last reported for a delivery, from JOB's optional "webhook".
static bool
s_prior (const msgpack_object *body, wh_status_t *prior)
{
    const msgpack_object *wh = bm_obj_get (body, "webhook");
    if (!wh || wh->type != MSGPACK_OBJECT_MAP)
        return false;
    memset (prior, 0, sizeof *prior);
    const char *state;
    size_t state_len;
    if (!bm_obj_str (wh, "state", &state, &state_len))
        return false;
    int parsed = wh_state_parse (state, state_len);
    if (parsed < 0)
        return false;
    prior->state = (wh_state_t) parsed;
    int64_t value;
    if (bm_obj_int (wh, "attempts", &value) && value >= 0 && value < 1000000)
        prior->attempts = value;
    if (bm_obj_int (wh, "lastStatus", &value) && value > 0 && value < 1000)
        prior->last_status = (int) value;
    if (bm_obj_int (wh, "nextAttemptAt", &value) && value > 0)
        prior->next_attempt_at = value;
    const char *error;
    size_t error_len;
    if (bm_obj_str (wh, "lastError", &error, &error_len)) {
        if (error_len >= sizeof prior->last_error)
            error_len = sizeof prior->last_error - 1;
        memcpy (prior->last_error, error, error_len);
        prior->last_error [error_len] = 0;
    }
    return true;
}

static int
s_on_job (void *arg, const msgpack_object *body)
{
    s_manager_t *self = (s_manager_t *) arg;
    char job_id [BM_MAX_ID_LEN + 32];
    if (!s_copy_str (body, "jobId", job_id, sizeof job_id)) {
        bm_warn (NULL, "JOB without a usable jobId: ignored");
        bm_series_inc (self->m_bad_jobs);
        return 0;
    }
    if (self->draining) {
        //  Raced with our READY credit 0: give it straight back.
        s_send_release (self, job_id);
        return 0;
    }
    wh_status_t failed;
    memset (&failed, 0, sizeof failed);
    failed.state = WH_STATE_FAILED;
    const msgpack_object *payload = bm_obj_get (body, "payload");
    char url [BM_MAX_URL_LEN + 1];
    char webhook_id [BM_MAX_ID_LEN + 1];
    const msgpack_object *text = payload && payload->type == MSGPACK_OBJECT_MAP?
                                 bm_obj_get (payload, "body"): NULL;
    const char *reason = NULL;
    if (!payload || payload->type != MSGPACK_OBJECT_MAP)
        reason = "payload must be a map {url, webhookId, body}";
    else
    if (!s_copy_str (payload, "url", url, sizeof url))
        reason = "payload.url must be a string of at most 2048 bytes";
    else
    if (!s_copy_str (payload, "webhookId", webhook_id, sizeof webhook_id))
        reason = "payload.webhookId must be a string of at most 128 bytes";
    else
    if (!text || (text->type != MSGPACK_OBJECT_STR && text->type != MSGPACK_OBJECT_BIN))
        reason = "payload.body must be a string";
    if (reason) {
        bm_series_inc (self->m_bad_jobs);
        snprintf (failed.last_error, sizeof failed.last_error, "invalid delivery: %s", reason);
        bm_warn (job_id, "%s", failed.last_error);
        s_send_done (self, job_id, &failed, "webhook_failed", failed.last_error);
        return 0;
    }
    const char *data = text->type == MSGPACK_OBJECT_STR? text->via.str.ptr: text->via.bin.ptr;
    size_t size = text->type == MSGPACK_OBJECT_STR? text->via.str.size: text->via.bin.size;
    int64_t deadline = 0;
    bm_obj_int (body, "deadline", &deadline);
    wh_status_t prior;
    bool has_prior = s_prior (body, &prior);
    char error [200];
    int rc = wh_engine_add (self->engine, job_id, url, webhook_id, data, size,
                            has_prior? &prior: NULL, deadline > 0? deadline: 0,
                            error, sizeof error);
    if (rc == 1)
        bm_info (job_id, "JOB for a delivery already in progress here: carrying on with it");
    else
    if (rc == -1) {
        bm_series_inc (self->m_bad_jobs);
        snprintf (failed.last_error, sizeof failed.last_error, "invalid delivery: %s", error);
        bm_warn (job_id, "%s", failed.last_error);
        s_send_done (self, job_id, &failed, "webhook_failed", failed.last_error);
    }
    return 0;
}

static int
s_on_cancel (void *arg, const msgpack_object *body)
{
    s_manager_t *self = (s_manager_t *) arg;
    char job_id [BM_MAX_ID_LEN + 32];
    char reason [64] = "cancelled";
    if (!s_copy_str (body, "jobId", job_id, sizeof job_id))
        return 0;
    s_copy_str (body, "reason", reason, sizeof reason);
    if (wh_engine_cancel (self->engine, job_id)) {
        bm_debug (job_id, "CANCEL (%s) for a delivery not held here", reason);
        return 0;
    }
    bm_info (job_id, "delivery stopped: the broker cancelled it (%s)", reason);
    //  The broker keeps our credit until it hears DONE for the job.
    wh_status_t status;
    memset (&status, 0, sizeof status);
    status.state = WH_STATE_FAILED;
    snprintf (status.last_error, sizeof status.last_error, "stopped by the broker (%s)", reason);
    s_send_done (self, job_id, &status, reason, status.last_error);
    if (self->draining && wh_engine_inflight (self->engine) == 0)
        s_finish (self);
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
    bm_worker_link_set_credit (self->link, 0);
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
    if (self->signal_fd < 0 || !self->loop || !self->metrics) {
        bm_error (NULL, "cannot start: out of resources");
        goto done;
    }
    self->m_bad_jobs = bm_metric_series (bm_metrics_counter (self->metrics, "webhook_bad_jobs_total",
        "JOB messages refused as invalid (bad url, webhookId or body)", NULL));
    bm_series_set (bm_metric_series (bm_metrics_gauge (self->metrics, "webhook_credit",
        "Deliveries this manager may hold at once (WEBHOOK_CONCURRENCY)", NULL)),
        (double) config->credit);
    self->engine = wh_engine_new (self->loop, config, self->metrics, s_on_event, self,
                                  error, sizeof error);
    if (!self->engine) {
        bm_error (NULL, "cannot start: %s", error);
        goto done;
    }
    const char *types [] = { BM_WEBHOOK_TYPE };
    bm_worker_link_config_t link_config = {
        .endpoint = config->broker_endpoint, .name = config->name,
        .types = types, .type_count = 1, .credit = config->credit,
        .heartbeat_ms = config->heartbeat_ms, .liveness = config->liveness,
        //  Enough room for every report of a full credit, and then some.
        .hwm = 200000 };
    bm_worker_link_handlers_t handlers = { .job = s_on_job, .cancel = s_on_cancel };
    self->link = bm_worker_link_new (&link_config, self->loop, &handlers, self);
    if (!self->link)
        goto done;
    http = wh_http_new (config, self->metrics, self->engine, self->link, error, sizeof error);
    if (!http) {
        bm_error (NULL, "cannot start the HTTP server: %s", error);
        goto done;
    }
    zmq_pollitem_t item = { NULL, self->signal_fd, ZMQ_POLLIN, 0 };
    zloop_poller (self->loop, &item, s_on_signal, self);

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
    zloop_destroy (&self->loop);
    bm_metrics_destroy (&self->metrics);
    if (self->signal_fd >= 0)
        close (self->signal_fd);
    if (code == 0)
        bm_info (NULL, "stopped");
    return code;
}
