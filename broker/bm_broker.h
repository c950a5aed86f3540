/*  bm_broker.h - the botmesh broker: queues, semaphores, workers, jobs.

    One ROUTER socket, one zloop.  Clients (BMC01) submit jobs; workers
    (BMW01) announce bot types and credit and receive jobs.  Per bot type
    the broker keeps a priority queue (lower priority first, FIFO within
    a priority) and a semaphore (MAX_<TYPE>_BOTS): a job is dispatched only
    when its type has a free permit AND a worker of that type has free
    credit.  Job records are written to Redis (when configured) before a
    SUBMIT is acknowledged; on start the broker rebuilds its queues from
    Redis.  See docs/protocol.md and docs/redis.md.  */
#ifndef BM_BROKER_H
#define BM_BROKER_H

#include "bm_settings.h"
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

//  Settings, all from the environment (see broker_main.c and env.example).
typedef struct {
    const char *endpoint;           //  ROUTER bind, BROKER_ENDPOINT
    const char *redis_url;          //  REDIS_URL, or NULL for no Redis
    const char *redis_prefix;       //  REDIS_PREFIX
    const char *metrics_addr;       //  BROKER_METRICS_ADDR
    int64_t metrics_port;           //  BROKER_METRICS_PORT, 0 = off, -1 = any free port
    int64_t heartbeat_ms;           //  HEARTBEAT_INTERVAL_MS
    int64_t liveness;               //  HEARTBEAT_LIVENESS
    int64_t default_limit;          //  MAX_BOTS_DEFAULT
    int64_t max_queue;              //  MAX_QUEUE
    int64_t job_timeout_ms;         //  JOB_TIMEOUT_MS
    int64_t job_max_attempts;       //  JOB_MAX_ATTEMPTS
    int64_t retry_attempts;         //  RETRY_ATTEMPTS
    int64_t retry_backoff_ms;       //  RETRY_BACKOFF_MS
    int64_t max_schedules;          //  MAX_SCHEDULES
    int64_t max_subscriptions;      //  MAX_SUBSCRIPTIONS
    int64_t event_history;          //  BROKER_EVENT_HISTORY
    int64_t max_frame;              //  MAX_FRAME_BYTES
    int64_t max_payload;            //  MAX_PAYLOAD_BYTES
    int64_t completed_ttl_s;        //  COMPLETED_JOB_TTL
    int64_t failed_ttl_s;           //  FAILED_JOB_TTL
    int64_t idempotency_ttl_ms;     //  IDEMPOTENCY_TTL_MS
    int64_t type_ttl_ms;            //  BROKER_TYPE_TTL_MS
    int64_t keep_finished;          //  KEEP_FINISHED_JOBS
    int64_t snapshot_interval_s;    //  METRICS_SNAPSHOT_INTERVAL
    int64_t snapshot_history;       //  METRICS_SNAPSHOT_HISTORY
    int64_t store_buffer;           //  STORE_BUFFER_MAX
    int64_t redis_timeout_ms;       //  REDIS_TIMEOUT_MS
    int64_t webhook_timeout_ms;     //  WEBHOOK_JOB_TIMEOUT_MS
    int64_t webhook_attempts;       //  WEBHOOK_JOB_MAX_ATTEMPTS
    int64_t webhook_withheld_max;   //  WEBHOOK_WITHHELD_MAX
    int64_t shutdown_ms;            //  BROKER_SHUTDOWN_MS
    int64_t peer_hwm;               //  BROKER_PEER_HWM
    int64_t save_running_ms;        //  BROKER_SAVE_RUNNING_MS
    const char *redis_sentinels;    //  REDIS_SENTINELS, or NULL
    const char *redis_master_name;  //  REDIS_MASTER_NAME
    const char *ha;                 //  BROKER_HA: off or redis
    int64_t lease_ms;               //  BROKER_LEASE_MS
    const char *advertise;          //  BROKER_ADVERTISE_ENDPOINT, or NULL
    const char *new_types;          //  BROKER_NEW_TYPES: types one edit from a
                                    //  built-in one, meant as types of their own
    char *const *restart_argv;      //  HA: how to start over as a standby
                                    //  (execv; NULL: the actor ends instead)
} bm_broker_config_t;

typedef struct _bm_broker_t bm_broker_t;

//  Read the configuration from the environment; -1 (logged, naming the
//  variable) on a bad value.  Per-type limits are read when the broker
//  starts.
int bm_broker_config_load (bm_broker_config_t *config);

//  The broker-wide settings table (bm_settings.h), for --help and --print-env.
extern const bm_setting_t bm_broker_settings [];

//  The broker is an actor:
//
//      zactor_t *broker = zactor_new (bm_broker_actor, &config);
//
//  It copies the configuration before zactor_new returns, and runs one
//  loop in its own thread.  Commands on its pipe (strings):
//
//      BIND endpoint   bind the ROUTER socket; answers "0", or "-1" (logged)
//      PORT            answers the TCP port bound last, "0" if none
//      VERBOSE         log every command the actor receives
//      $TERM           graceful shutdown (zactor_destroy sends it): no
//                      new SUBMIT, Redis writes flushed for up to
//                      BROKER_SHUTDOWN_MS, then the actor ends
//
//  A broker whose set-up failed logs why and answers "-2" to every command
//  when a setting was bad (limits, REDIS_URL, CURVE), else "-1" (its
//  metrics port could not be bound).
void bm_broker_actor (zsock_t *pipe, void *args);

//  Self-test: an actor bound to tcp://127.0.0.1:*, driven through real
//  DEALER sockets (a client and a worker).
void bm_broker_test (bool verbose);

#endif
