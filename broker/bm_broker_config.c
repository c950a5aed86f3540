/*  bm_broker_config.c - the broker's settings from the environment.  */
#include "bm_broker_internal.h"

extern char **environ;

int
bm_broker_config_load (bm_broker_config_t *c)
{
    memset (c, 0, sizeof *c);
    c->endpoint = bm_env_str ("BROKER_ENDPOINT", "tcp://*:5555");
    static char redis_url [1024];
    int rc = bm_redis_env_load (true, redis_url, sizeof redis_url, &c->redis_prefix) ? 1 : 0;
    c->redis_url = streq (redis_url, "none") ? NULL : redis_url;
    c->metrics_addr = bm_env_str ("BROKER_METRICS_ADDR", "0.0.0.0");
    rc |= bm_env_int ("BROKER_METRICS_PORT", 9555, 0, 65535, &c->metrics_port);
    rc |= bm_env_int ("HEARTBEAT_INTERVAL_MS", 1000, 10, 60000, &c->heartbeat_ms);
    rc |= bm_env_int ("HEARTBEAT_LIVENESS", 3, 1, 100, &c->liveness);
    rc |= bm_env_int ("MAX_BOTS_DEFAULT", 10, 1, 1000000, &c->default_limit);
    rc |= bm_env_int ("MAX_QUEUE", 100000, 1, 100000000, &c->max_queue);
    rc |= bm_env_int ("JOB_TIMEOUT_MS", 300000, 1, 86400000, &c->job_timeout_ms);
    rc |= bm_env_int ("JOB_MAX_ATTEMPTS", 3, 1, 100, &c->job_max_attempts);
    rc |= bm_env_int ("MAX_FRAME_BYTES", BM_MAX_FRAME_BYTES, 1024, 256 * 1024 * 1024, &c->max_frame);
    rc |= bm_env_int ("MAX_PAYLOAD_BYTES", BM_MAX_PAYLOAD_BYTES, 16, 256 * 1024 * 1024, &c->max_payload);
    rc |= bm_env_int ("COMPLETED_JOB_TTL", 86400, 1, 365 * 86400, &c->completed_ttl_s);
    rc |= bm_env_int ("FAILED_JOB_TTL", 7 * 86400, 1, 365 * 86400, &c->failed_ttl_s);
    rc |= bm_env_int ("IDEMPOTENCY_TTL_MS", 86400000, 1, 30LL * 86400000, &c->idempotency_ttl_ms);
    rc |= bm_env_int ("KEEP_FINISHED_JOBS", 10000, 1, 10000000, &c->keep_finished);
    rc |= bm_env_int ("METRICS_SNAPSHOT_INTERVAL", 10, 0, 86400, &c->snapshot_interval_s);
    rc |= bm_env_int ("METRICS_SNAPSHOT_HISTORY", 8640, 1, 1000000, &c->snapshot_history);
    rc |= bm_env_int ("STORE_BUFFER_MAX", 1000000, 1000, 100000000, &c->store_buffer);
    rc |= bm_env_int ("WEBHOOK_JOB_TIMEOUT_MS", 3600000, 1000, 86400000, &c->webhook_timeout_ms);
    rc |= bm_env_int ("WEBHOOK_JOB_MAX_ATTEMPTS", 10, 1, 100, &c->webhook_attempts);
    rc |= bm_env_int ("BROKER_SHUTDOWN_MS", 5000, 0, 600000, &c->shutdown_ms);
    rc |= bm_env_int ("BROKER_PEER_HWM", 10000, 10, 10000000, &c->peer_hwm);
    rc |= bm_env_int ("BROKER_SAVE_RUNNING_MS", 500, 0, 3600000, &c->save_running_ms);
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
