/*  broker_main.c - botmesh-broker: parse flags, load settings, run.  */
#include "bm_http.h"
#include "bm_broker.h"
#include "bm_config.h"
#include "bm_settings.h"
#include "bm_log.h"

#include <czmq.h>
#include <pthread.h>
#include <signal.h>

static void
s_usage (void)
{
    printf (
"usage: botmesh-broker [--endpoint ENDPOINT] [--help]\n"
"\n"
"The botmesh broker: owns the job queues, the per-bot-type semaphores and\n"
"the workers; clients and workers connect to its ROUTER socket (see\n"
"docs/protocol.md).  Job records are written to Redis before a submission is\n"
"acknowledged; on start the broker rebuilds its queues from Redis.\n"
"\n"
"Flags:\n"
"  --endpoint ENDPOINT   ZeroMQ endpoint to bind (BROKER_ENDPOINT)\n"
"  --help                this text\n"
"\n"
"Environment (default):\n"
"  BROKER_ENDPOINT           ROUTER endpoint to bind (tcp://*:5555)\n"
"  BROKER_METRICS_PORT       HTTP port of GET /metrics and /health, 0 = off (9555)\n"
"  BROKER_METRICS_ADDR       address of the metrics server (0.0.0.0)\n"
"  REDIS_URL                 job store, redis://[:password@]host[:port][/db], or none\n"
"                            (when unset: REDIS_HOST, REDIS_PORT, REDIS_PASSWORD and\n"
"                            REDIS_DB build it, as in the original system)\n"
"                            to run without durability (redis://127.0.0.1:6379/0)\n"
"  REDIS_PREFIX              prefix of every Redis key (botmesh:, at most 64 bytes)\n"
"  MAX_PYTHON_BOTS           semaphore of bot type python (5)\n"
"  MAX_NODE_BOTS             semaphore of bot type node (10)\n"
"  MAX_JAVA_BOTS             semaphore of bot type java (3)\n"
"  MAX_<TYPE>_BOTS           semaphore of any other bot type; configuring it makes\n"
"                            the type known (MAX_BOTS_DEFAULT otherwise)\n"
"  MAX_WEBHOOK_BOTS          webhook deliveries in flight at once (10000)\n"
"  MAX_BOTS_DEFAULT          semaphore of types with no MAX_<TYPE>_BOTS (10)\n"
"  MAX_QUEUE                 queued jobs per bot type before queue_full (100000)\n"
"  MAX_QUEUE_<TYPE>          the same for one bot type\n"
"  JOB_TIMEOUT_MS            default run-time limit of an attempt (300000)\n"
"  JOB_MAX_ATTEMPTS          default dispatches before worker_lost (3)\n"
"  HEARTBEAT_INTERVAL_MS     heartbeat interval (1000)\n"
"  HEARTBEAT_LIVENESS        silent intervals before a worker is dead (3)\n"
"  MAX_FRAME_BYTES           largest message body accepted (2097152)\n"
"  MAX_PAYLOAD_BYTES         largest payload or result (1048576)\n"
"  COMPLETED_JOB_TTL         seconds a completed job's record stays in Redis (86400)\n"
"  FAILED_JOB_TTL            seconds a failed or cancelled job's record stays (604800)\n"
"  IDEMPOTENCY_TTL_MS        window of an idempotencyKey (86400000)\n"
"  KEEP_FINISHED_JOBS        finished jobs kept in memory for LIST/STATUS (10000)\n"
"  METRICS_SNAPSHOT_INTERVAL seconds between metric snapshots in Redis, 0 = off (10)\n"
"  METRICS_SNAPSHOT_HISTORY  snapshots kept (8640: 24 h at 10 s)\n"
"  STORE_BUFFER_MAX          state changes buffered while Redis is away (1000000)\n"
"  WEBHOOK_JOB_TIMEOUT_MS    run-time limit of one webhook delivery job (3600000)\n"
"  WEBHOOK_JOB_MAX_ATTEMPTS  delivery job dispatches before it fails (10)\n"
"  BROKER_SHUTDOWN_MS        time allowed to flush Redis writes on SIGTERM (5000)\n"
"  BROKER_PEER_HWM           messages queued for one peer before sends to it fail\n"
"                            (a client's answers are dropped; a worker gets no more\n"
"                            jobs until it reads) (10000)\n"
"  BROKER_SAVE_RUNNING_MS    an attempt's running state goes to Redis once it has run\n"
"                            this long; shorter ones are saved only with their outcome\n"
"                            (0 = at dispatch) (500)\n"
"  CURVE_SERVER_CERT         the broker's secret CURVE certificate: encrypt the mesh\n"
"                            and accept only known keys (off)\n"
"  CURVE_CLIENTS_DIR         folder of the public certificates accepted\n"
"  CORS_ORIGINS              origins browsers may call the metrics port from: * (default,\n"
"                            any) or a comma list (https://app.example.com,...)\n"
"  LOG_LEVEL                 debug, info, warn or error (info)\n");
}

int
main (int argc, char *argv [])
{
    if (bm_log_init ("broker"))
        return 2;
    bm_settings_warn_foreign ();
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--help") || streq (argv [i], "-h")) {
            s_usage ();
            return 0;
        }
        else
        if (streq (argv [i], "--endpoint") && i + 1 < argc)
            setenv ("BROKER_ENDPOINT", argv [++i], 1);
        else {
            fprintf (stderr, "botmesh-broker: unknown argument '%s' (see --help)\n", argv [i]);
            return 2;
        }
    }
    //  SIGTERM and SIGINT are blocked in every thread (the actor's and
    //  ZeroMQ's inherit the mask) and taken here with sigwait: no handler,
    //  no flag.  czmq's own handler is off.
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGTERM);
    sigaddset (&signals, SIGINT);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    signal (SIGPIPE, SIG_IGN);
    zsys_handler_set (NULL);
    zsys_init ();

    bm_broker_config_t config;
    if (bm_broker_config_load (&config) || bm_http_cors_from_env ())
        return 2;
    zactor_t *broker = zactor_new (bm_broker_actor, &config);
    if (!broker)
        return 1;
    zstr_sendx (broker, "BIND", config.endpoint, NULL);
    char *reply = zstr_recv (broker);
    bool bound = reply && streq (reply, "0");
    zstr_free (&reply);
    if (bound) {
        int signum = 0;
        sigwait (&signals, &signum);
        bm_info (NULL, "%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    }
    zactor_destroy (&broker);       //  $TERM: flush, then the actor ends
    return bound ? 0 : 1;
}
