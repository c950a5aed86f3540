/*  bm_broker_config.c - the broker's settings from the environment.  */
#include "bm_broker_internal.h"

extern char **environ;

//  Every broker-wide variable: name, type, default, range, help once;
//  --help and --print-env are written from this table.  The per-type
//  variables (MAX_<TYPE>_BOTS, MAX_QUEUE_<TYPE>) are read at start below.
#define ROW_INT(n, f, d, lo, hi, h) BM_SETTING_INT (n, bm_broker_config_t, f, d, lo, hi, h)
const bm_setting_t bm_broker_settings [] = {
    BM_SETTING_STR ("BROKER_ENDPOINT", bm_broker_config_t, endpoint, "tcp://*:5555", 512,
                    "ROUTER endpoint to bind (--endpoint)"),
    ROW_INT ("BROKER_METRICS_PORT", metrics_port, 9555, -1, 65535,
             "HTTP port of GET /metrics and /health, 0 = off, -1 = any free port"),
    BM_SETTING_STR ("BROKER_METRICS_ADDR", bm_broker_config_t, metrics_addr, "0.0.0.0", 64,
                    "address of the metrics server"),
    BM_SETTING_REDIS_PREFIX (bm_broker_config_t, redis_prefix),
    BM_SETTING_REDIS_SENTINELS (bm_broker_config_t, redis_sentinels),
    BM_SETTING_REDIS_MASTER_NAME (bm_broker_config_t, redis_master_name),
    BM_SETTING_MAX_BOTS_DEFAULT (bm_broker_config_t, default_limit),
    ROW_INT ("MAX_QUEUE", max_queue, 100000, 1, 100000000, "queued jobs per bot type before queue_full"),
    ROW_INT ("JOB_TIMEOUT_MS", job_timeout_ms, 300000, 1, BM_MAX_TIMEOUT_MS,
             "default run-time limit of an attempt, in ms"),
    ROW_INT ("JOB_MAX_ATTEMPTS", job_max_attempts, 3, 1, 100, "default dispatches before worker_lost"),
    BM_SETTING_HEARTBEAT_INTERVAL_MS (bm_broker_config_t, heartbeat_ms),
    BM_SETTING_HEARTBEAT_LIVENESS (bm_broker_config_t, liveness),
    BM_SETTING_MAX_FRAME_BYTES (bm_broker_config_t, max_frame),
    BM_SETTING_MAX_PAYLOAD_BYTES (bm_broker_config_t, max_payload),
    ROW_INT ("COMPLETED_JOB_TTL", completed_ttl_s, 86400, 1, 31536000,
             "seconds a completed job's record stays in Redis"),
    ROW_INT ("FAILED_JOB_TTL", failed_ttl_s, 604800, 1, 31536000,
             "seconds a failed or cancelled job's record stays in Redis"),
    ROW_INT ("IDEMPOTENCY_TTL_MS", idempotency_ttl_ms, 86400000, 1, 2592000000LL,
             "window of an idempotencyKey, in ms"),
    ROW_INT ("KEEP_FINISHED_JOBS", keep_finished, 10000, 1, 10000000,
             "finished jobs kept in memory for LIST/STATUS"),
    ROW_INT ("METRICS_SNAPSHOT_INTERVAL", snapshot_interval_s, 10, 0, 86400,
             "seconds between metric snapshots in Redis, 0 = off"),
    ROW_INT ("METRICS_SNAPSHOT_HISTORY", snapshot_history, 8640, 1, 1000000, "snapshots kept (8640: 24 h at 10 s)"),
    ROW_INT ("STORE_BUFFER_MAX", store_buffer, 1000000, 1000, 100000000,
             "state changes buffered while Redis is away"),
    ROW_INT ("WEBHOOK_JOB_TIMEOUT_MS", webhook_timeout_ms, 3600000, 1000, BM_MAX_TIMEOUT_MS,
             "run-time limit of one webhook delivery job, in ms"),
    ROW_INT ("WEBHOOK_JOB_MAX_ATTEMPTS", webhook_attempts, 10, 1, 100, "delivery job dispatches before it fails"),
    ROW_INT ("BROKER_SHUTDOWN_MS", shutdown_ms, 5000, 0, 600000, "time allowed to flush Redis writes on SIGTERM"),
    ROW_INT ("BROKER_PEER_HWM", peer_hwm, 10000, 10, 10000000,
             "messages queued for one peer before sends to it fail (a client's answers are dropped; "
             "a worker gets no more jobs until it reads)"),
    ROW_INT ("BROKER_SAVE_RUNNING_MS", save_running_ms, 500, 0, 3600000,
             "an attempt's running state goes to Redis once it has run this long; shorter ones are "
             "saved only with their outcome (0 = at dispatch)"),
    BM_SETTING_STR ("BROKER_HA", bm_broker_config_t, ha, "off", 16,
                    "off: this broker runs alone; redis: brokers on the same Redis elect a leader "
                    "through a lease, the others stand by and answer not_leader"),
    ROW_INT ("BROKER_LEASE_MS", lease_ms, 2000, 200, 600000,
             "BROKER_HA=redis: the leader's lease, renewed every quarter of it; a standby takes "
             "over within about this long after the leader is gone"),
    BM_SETTING_STR ("BROKER_ADVERTISE_ENDPOINT", bm_broker_config_t, advertise, NULL, 512,
                    "BROKER_HA=redis: the endpoint peers reach this broker at, named by standbys "
                    "in not_leader (default: BROKER_ENDPOINT with * as this host's name)"),
    BM_SETTINGS_END
};

int
bm_broker_config_load (bm_broker_config_t *c)
{
    memset (c, 0, sizeof *c);
    int rc = bm_settings_load (bm_broker_settings, c);
    static char redis_url [1024];
    const char *prefix;
    rc |= bm_redis_env_load (true, redis_url, sizeof redis_url, &prefix);
    c->redis_url = streq (redis_url, "none") ? NULL : redis_url;
    if (rc == 0 && c->redis_sentinels && *c->redis_sentinels
    &&  !bm_sentinel_list_valid (c->redis_sentinels)) {
        bm_error (NULL, "configuration: REDIS_SENTINELS must be host:port[,host:port...], got '%s'",
                  c->redis_sentinels);
        rc = -1;
    }
    if (c->redis_sentinels && !*c->redis_sentinels)
        c->redis_sentinels = NULL;
    if (rc == 0 && !streq (c->ha, "off") && !streq (c->ha, "redis")) {
        bm_error (NULL, "configuration: BROKER_HA must be off or redis, got '%s'", c->ha);
        rc = -1;
    }
    return rc ? -1 : 0;
}

//  MAX_<TYPE>_BOTS and MAX_QUEUE_<TYPE> for any type, from the environment.
int
bm_broker_config_load_types (bm_broker_t *self)
{
    int rc = 0;
    //  The seed's three types are always configured.
    const char *seed [] = { "python", "node", "java" };
    const int64_t seed_limits [] = { 5, 10, 3 };
    for (int i = 0; i < 3; i++) {
        bm_service_t *service = bm_service_require (self, seed [i]);
        service->limit = seed_limits [i];
        service->configured = true;
        bm_series_set (service->m_limit, (double) service->limit);
    }
    bm_service_t *webhook = bm_service_require (self, BM_WEBHOOK_TYPE);
    webhook->limit = 10000;
    webhook->configured = true;
    bm_series_set (webhook->m_limit, (double) webhook->limit);
    for (char **env = environ; *env; env++) {
        const char *entry = *env;
        const char *eq = strchr (entry, '=');
        if (!eq)
            continue;
        size_t name_len = eq - entry;
        bool is_bots = name_len > 9 && strncmp (entry, "MAX_", 4) == 0
                    && strncmp (eq - 5, "_BOTS", 5) == 0 && strncmp (entry, "MAX_BOTS_DEFAULT", 16) != 0;
        bool is_queue = name_len > 10 && strncmp (entry, "MAX_QUEUE_", 10) == 0;
        if (!is_bots && !is_queue)
            continue;
        char name [128];
        if (name_len >= sizeof name)
            continue;
        memcpy (name, entry, name_len);
        name [name_len] = 0;
        const char *type_start = is_bots ? name + 4 : name + 10;
        size_t type_len = is_bots ? name_len - 9 : name_len - 10;
        char type [BM_MAX_BOT_TYPE_LEN + 1];
        if (type_len == 0 || type_len > BM_MAX_BOT_TYPE_LEN) {
            bm_error (NULL, "configuration: %s names a bot type longer than 32 characters", name);
            rc = -1;
            continue;
        }
        for (size_t i = 0; i < type_len; i++)
            type [i] = (char) tolower ((unsigned char) type_start [i]);
        type [type_len] = 0;
        if (!bm_valid_bot_type (type, type_len)) {
            bm_error (NULL, "configuration: %s: '%s' is not a valid bot type "
                      "(a-z, 0-9, _ and -)", name, type);
            rc = -1;
            continue;
        }
        int64_t value;
        if (bm_env_int (name, 0, 1, 100000000, &value)) {
            rc = -1;
            continue;
        }
        bm_service_t *service = bm_service_require (self, type);
        if (is_bots) {
            service->limit = value;
            service->configured = true;
            bm_series_set (service->m_limit, (double) value);
        }
        else
            service->max_queue = value;
    }
    return rc;
}
