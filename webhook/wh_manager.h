/*  wh_manager.h - botmesh-webhook: a BMW01 worker of the built-in bot type
    "webhook" that delivers each delivery job it is given (protocol.md
    section 6).

    It wires the pieces together on one zloop: the link to the broker
    (bm_worker_link), the delivery engine (wh_engine), the HTTP API (wh_http, in
    civetweb's threads) and the signals.

        JOB      {jobId, payload: {url, webhookId, body}, deadline, webhook?}
                 -> wh_engine_add (webhook: the state last reported, so
                    attempts keep counting after a crash)
        CANCEL   -> wh_engine_cancel, then DONE {ok: false, error: {code: reason}}
        engine PROGRESS -> PROGRESS {jobId, webhook: {state: "retrying", attempts,
                           lastStatus, lastError, nextAttemptAt}}
        engine DONE     -> DONE {jobId, ok, webhook, result | error: {code:
                           "webhook_failed", message}}
        engine RELEASE  -> RELEASE {jobId}

    SIGTERM or SIGINT: READY with credit 0, RELEASE every delivery waiting
    for a retry, let in-flight requests finish for WEBHOOK_SHUTDOWN_GRACE_MS
    (then abort and RELEASE them), DISCONNECT, exit 0.  A second signal
    skips the grace period.  */
#ifndef WH_MANAGER_H
#define WH_MANAGER_H

#include "wh_config.h"

//  Run until a signal; returns the process exit code.  The caller has
//  blocked SIGTERM and SIGINT in every thread (the manager reads them from
//  a signalfd).
int wh_manager_run (const wh_config_t *config);

#endif
