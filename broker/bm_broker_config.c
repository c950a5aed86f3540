/*  bm_broker_config.c - the broker's settings from the environment.  */
#include "bm_broker_internal.h"
#include "bm_endpoints.h"
#include "bm_env_check.h"
#include <strings.h>

extern char **environ;

//  Every broker-wide variable: name, type, default, range, help once;
//  --help and --print-env are written from this table.  The per-type
//  variables (MAX_<TYPE>_BOTS, MAX_QUEUE_<TYPE>) are read at start below.
#define ROW_INT(n, f, d, lo, hi, h) BM_SETTING_INT (n, bm_broker_config_t, f, d, lo, hi, h)
const bm_setting_t bm_broker_settings [] = {
    BM_SETTING_STR ("BROKER_ENDPOINT", bm_broker_config_t, endpoint, "tcp://*:5555", 512,
                    "ROUTER endpoint to bind (--endpoint)"),
    ROW_INT ("BROKER_METRICS_PORT", metrics_port, 9555, -1, 65535,
             "HTTP port of GET /metrics, /health and /ready, 0 = off, -1 = any free port"),
    BM_SETTING_STR ("BROKER_METRICS_ADDR", bm_broker_config_t, metrics_addr, "0.0.0.0", 64,
                    "address of the metrics server"),
    BM_SETTING_REDIS_PREFIX (bm_broker_config_t, redis_prefix),
    BM_SETTING_REDIS_SENTINELS (bm_broker_config_t, redis_sentinels),
    BM_SETTING_REDIS_MASTER_NAME (bm_broker_config_t, redis_master_name),
    BM_SETTING_MAX_BOTS_DEFAULT (bm_broker_config_t, default_limit),
    BM_SETTING_STR ("BROKER_NEW_TYPES", bm_broker_config_t, new_types, "", 1024,
                    "bot types meant as types of their own though their names are one edit from "
                    "a built-in one (python, node, java, webhook), comma-separated; a per-type variable "
                    "of such a type not listed is ignored as a misspelling (an ERROR line)"),
    ROW_INT ("MAX_QUEUE", max_queue, 100000, 1, 100000000, "queued jobs per bot type before queue_full"),
    ROW_INT ("JOB_TIMEOUT_MS", job_timeout_ms, 300000, 1, BM_MAX_TIMEOUT_MS,
             "default run-time limit of an attempt, in ms"),
    ROW_INT ("JOB_MAX_ATTEMPTS", job_max_attempts, 3, 1, 100,
             "default dispatches lost to a worker before worker_lost"),
    ROW_INT ("RETRY_ATTEMPTS", retry_attempts, BM_BACKOFF_DEFAULT_ATTEMPTS, 1, BM_MAX_ATTEMPTS,
             "default runs of a job whose bot fails (RETRY_<TYPE>_ATTEMPTS per type)"),
    ROW_INT ("RETRY_BACKOFF_MS", retry_backoff_ms, BM_BACKOFF_DEFAULT_MS, 0, BM_BACKOFF_MAX_MS,
             "default first wait before a failed run is retried, doubled each time, in ms "
             "(RETRY_<TYPE>_BACKOFF_MS per type)"),
    ROW_INT ("MAX_SCHEDULES", max_schedules, 10000, 0, 1000000,
             "repeatable job schedules the broker keeps (SCHEDULE add beyond it: queue_full)"),
    ROW_INT ("MAX_SUBSCRIPTIONS", max_subscriptions, 64, 0, 10000,
             "live job event subscriptions (SUBSCRIBE) at once; one more is refused "
             "too_many_subscriptions"),
    ROW_INT ("BROKER_EVENT_HISTORY", event_history, 10000, 0, 1000000,
             "recent job events kept (while subscriptions exist, and 60 s after the last "
             "ended) for a SUBSCRIBE since= to replay; 0: none kept"),
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
    ROW_INT ("BROKER_TYPE_TTL_MS", type_ttl_ms, 604800000, 1000, 31536000000LL,
             "a bot type a worker registered stays known (kept in Redis, read back at a restart "
             "or takeover) until no worker has served it for this long, in ms"),
    ROW_INT ("KEEP_FINISHED_JOBS", keep_finished, 10000, 1, 10000000,
             "finished jobs kept in memory for LIST/STATUS (webhook deliveries apart)"),
    ROW_INT ("METRICS_SNAPSHOT_INTERVAL", snapshot_interval_s, 10, 0, 86400,
             "seconds between metric snapshots in Redis, 0 = off"),
    ROW_INT ("METRICS_SNAPSHOT_HISTORY", snapshot_history, 8640, 1, 1000000, "snapshots kept (8640: 24 h at 10 s)"),
    ROW_INT ("REDIS_TIMEOUT_MS", redis_timeout_ms, 5000, 0, 600000,
             "Redis silent this long (ms) while it owes an answer: the connection is dropped "
             "and the broker reconnects, not ready meanwhile (0 = never)"),
    ROW_INT ("STORE_BUFFER_MAX", store_buffer, 1000000, 1000, 100000000,
             "state changes buffered while Redis is away"),
    ROW_INT ("WEBHOOK_JOB_TIMEOUT_MS", webhook_timeout_ms, 3600000, 1000, BM_MAX_TIMEOUT_MS,
             "run-time limit of one webhook delivery job, in ms"),
    ROW_INT ("WEBHOOK_JOB_MAX_ATTEMPTS", webhook_attempts, 10, 1, 100, "delivery job dispatches before it fails"),
    ROW_INT ("WEBHOOK_WITHHELD_MAX", webhook_withheld_max, 1000000, 1, 100000000,
             "webhook deliveries withheld at once until their job's outcome is in Redis; beyond it the "
             "oldest is dropped (its webhook fails, not sent)"),
    ROW_INT ("BROKER_SHUTDOWN_MS", shutdown_ms, 5000, 0, 600000, "time allowed to flush Redis writes on SIGTERM"),
    ROW_INT ("BROKER_PEER_HWM", peer_hwm, 10000, 10, 10000000,
             "messages queued for one peer before sends to it fail (a client's answers are dropped; "
             "a worker gets no more jobs until it reads)"),
    ROW_INT ("BROKER_SAVE_RUNNING_MS", save_running_ms, 500, 0, 3600000,
             "an attempt's running state goes to Redis once it has run this long; shorter ones are "
             "saved only with their outcome (0 = at dispatch)"),
    BM_SETTING_STR ("BROKER_HA", bm_broker_config_t, ha, "off", 16,
                    "off: this broker runs alone (it takes the lease in Redis too, and exits, "
                    "status 2, if another broker holds and renews it); redis: brokers on the same "
                    "Redis elect a leader through a lease, the others stand by and answer "
                    "not_leader"),
    ROW_INT ("BROKER_LEASE_MS", lease_ms, 2000, 200, 600000,
             "the leader's lease, renewed every quarter of it; a standby takes over within about "
             "this long after the leader is gone, a broker without BROKER_HA waits this long "
             "for a lease a broker of another host left"),
    BM_SETTING_STR ("BROKER_ADVERTISE_ENDPOINT", bm_broker_config_t, advertise, NULL, 512,
                    "BROKER_HA=redis: the endpoint peers reach this broker at, named by standbys "
                    "in not_leader (default: BROKER_ENDPOINT with * as this host's name)"),
    BM_SETTINGS_END
};


//  True when the endpoints of list (comma-separated) can be connected to:
//  a tcp:// one names its port, 1 to 65535 (not 0, * or a range: those
//  only bind).
static bool
s_connectable (const char *list)
{
    const char *item = list;
    while (item && *item) {
        const char *end = strchr (item, ',');
        size_t len = end ? (size_t) (end - item) : strlen (item);
        while (len && (*item == ' ' || *item == '\t')) {
            item++;
            len--;
        }
        if (len > 6 && strncmp (item, "tcp://", 6) == 0) {
            const char *colon = NULL;
            for (const char *p = item; p < item + len; p++)
                if (*p == ':')
                    colon = p;
            long port = 0;
            for (const char *p = colon ? colon + 1 : item + len; p < item + len; p++) {
                if (*p == ' ' || *p == '\t')
                    continue;
                if (*p < '0' || *p > '9')
                    return false;
                port = port * 10 + (*p - '0');
                if (port > 65535)
                    return false;
            }
            if (port < 1)
                return false;
        }
        item = end ? end + 1 : NULL;
    }
    return true;
}

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
    if (!bm_endpoints_valid (c->endpoint)) {
        bm_error (NULL, "configuration: BROKER_ENDPOINT must be tcp://host:port (port a number "
                  "from 0 to 65535, or *) or ipc://path (got '%s')", c->endpoint ? c->endpoint : "");
        rc = -1;
    }
    if (c->advertise && *c->advertise
    &&  (!bm_endpoints_valid (c->advertise) || !s_connectable (c->advertise))) {
        bm_error (NULL, "configuration: BROKER_ADVERTISE_ENDPOINT must be tcp://host:port (port a "
                  "number from 1 to 65535) or ipc://path (got '%s')", c->advertise);
        rc = -1;
    }
    if (rc == 0 && !streq (c->ha, "off") && !streq (c->ha, "redis")) {
        bm_error (NULL, "configuration: BROKER_HA must be off or redis, got '%s'", c->ha);
        rc = -1;
    }
    return rc ? -1 : 0;
}

//  The per-type variables: a prefix and a suffix around the type's name
//  in capitals, and the range of the value.
typedef enum {
    S_BOTS, S_QUEUE, S_RETRY_ATTEMPTS, S_RETRY_BACKOFF, S_KEEP_COMPLETED, S_KEEP_FAILED, S_RATE
} s_type_var_t;
static const struct {
    const char *prefix, *suffix;
    int64_t min, max;
} s_type_vars [] = {
    [S_BOTS] = { "MAX_", "_BOTS", 1, 100000000 },
    [S_QUEUE] = { "MAX_QUEUE_", "", 1, 100000000 },
    [S_RETRY_ATTEMPTS] = { "RETRY_", "_ATTEMPTS", 1, BM_MAX_ATTEMPTS },
    [S_RETRY_BACKOFF] = { "RETRY_", "_BACKOFF_MS", 0, BM_BACKOFF_MAX_MS },
    [S_KEEP_COMPLETED] = { "KEEP_COMPLETED_", "", 1, 100000000 },
    [S_KEEP_FAILED] = { "KEEP_FAILED_", "", 1, 100000000 },
    [S_RATE] = { "RATE_", "", 0, 0 },           //  N/PERIOD, not a number
};

//  Which per-type variable a name is, with the type's part; -1 if none.
static int
s_type_var (const char *name, size_t name_len, const char **type, size_t *type_len)
{
    if (streq (name, "MAX_BOTS_DEFAULT"))
        return -1;
    //  The gateway's RATE_LIMIT_RPS, RATE_LIMIT_BURST, RATE_LIMIT_MAX_KEYS
    //  (a shared .env): no RATE_<TYPE> (no type limit_* has a rate limit).
    if (strncmp (name, "RATE_LIMIT_", 11) == 0)
        return -1;
    //  MAX_QUEUE_<TYPE> before MAX_<TYPE>_BOTS: "MAX_QUEUE_X_BOTS" is the
    //  queue of type x_bots.
    static const s_type_var_t order [] = { S_QUEUE, S_BOTS, S_RETRY_BACKOFF, S_RETRY_ATTEMPTS,
                                           S_KEEP_COMPLETED, S_KEEP_FAILED, S_RATE };
    for (size_t i = 0; i < sizeof order / sizeof order [0]; i++) {
        const char *prefix = s_type_vars [order [i]].prefix;
        const char *suffix = s_type_vars [order [i]].suffix;
        size_t p = strlen (prefix), q = strlen (suffix);
        if (name_len > p + q && strncmp (name, prefix, p) == 0
        &&  strncmp (name + name_len - q, suffix, q) == 0) {
            *type = name + p;
            *type_len = name_len - p - q;
            return (int) order [i];
        }
    }
    return -1;
}

//  A per-type variable whose type is a small edit from a built-in one
//  (MAX_PYTON_BOTS) would make a type no worker serves, whose jobs wait
//  for ever: unless BROKER_NEW_TYPES lists the type, it is ignored with an
//  ERROR line naming the variable it misspells (the broker starts: a typo
//  in a restart's settings must not take the whole stack down).  Which
//  types are misspelt is bm_env_check's rule, the one every program warns
//  by (python3, java-11, node_v2 are types of their own).  The line
//  spells the declaration: BROKER_NEW_TYPES as declared lists it, the type
//  added.  1: such a variable, 0: not.
static int
s_misspelt_type (bm_env_check_t *names, const char *declared, const char *name, int var,
                 const char *type)
{
    char *instead = bm_env_check_suggest (names, "broker", name);
    const char *other_type;
    size_t other_len;
    bool same_kind = instead
                  && s_type_var (instead, strlen (instead), &other_type, &other_len) == var;
    //  How to declare it: the list as it is, the type added.
    bool others = declared && declared [strspn (declared, ", \t")];
    if (same_kind)
        bm_error (NULL, "configuration: %s ignored: it would make a new bot type '%s', one edit "
                  "from a built-in one: did you mean %s? (if '%s' is a type of its own, declare "
                  "it in the environment every service reads, e.g. .env: BROKER_NEW_TYPES=%s%s%s)",
                  name, type, instead, type, others ? declared : "", others ? "," : "", type);
    free (instead);
    return same_kind ? 1 : 0;
}

//  MAX_<TYPE>_BOTS, MAX_QUEUE_<TYPE>, RETRY_<TYPE>_ATTEMPTS,
//  RETRY_<TYPE>_BACKOFF_MS, KEEP_COMPLETED_<TYPE>, KEEP_FAILED_<TYPE> and
//  RATE_<TYPE> for any type, from the environment.
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
    bm_env_check_t *names = bm_env_check_new (NULL);
    if (names)
        bm_env_check_declare (names, self->config.new_types);
    for (char **env = environ; *env; env++) {
        const char *entry = *env;
        const char *eq = strchr (entry, '=');
        if (!eq)
            continue;
        size_t name_len = eq - entry;
        char name [128];
        if (name_len >= sizeof name)
            continue;
        memcpy (name, entry, name_len);
        name [name_len] = 0;
        const char *type_start;
        size_t type_len;
        int var = s_type_var (name, name_len, &type_start, &type_len);
        if (var < 0)
            continue;
        char type [BM_MAX_BOT_TYPE_LEN + 1];
        if (type_len > BM_MAX_BOT_TYPE_LEN) {
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
        if (names && s_misspelt_type (names, self->config.new_types, name, var, type))
            continue;                   //  Ignored, loudly
        if (var == S_RATE) {
            int64_t max, period_ms;
            char why [160];
            const char *text = getenv (name);
            if (streq (type, BM_WEBHOOK_TYPE))
                snprintf (why, sizeof why, "is not a setting: webhook deliveries have no rate "
                          "limit (MAX_WEBHOOK_BOTS bounds how many run at once)");
            if (streq (type, BM_WEBHOOK_TYPE)
            ||  bm_service_rate_parse (text, &max, &period_ms, why, sizeof why)) {
                bm_error (NULL, "configuration: %s: %s, got '%s'", name, why, text ? text : "");
                rc = -1;
                continue;
            }
            if (max || zhashx_lookup (self->services, type))
                bm_service_set_rate (bm_service_require (self, type), max, period_ms);
            if (max) {
                char rate [64];
                bm_service_rate_text (max, period_ms, rate, sizeof rate);
                bm_info (NULL, "%s: bot type %s: at most %s", name, type, rate);
            }
            continue;
        }
        int64_t value;
        if (bm_env_int (name, 0, s_type_vars [var].min, s_type_vars [var].max, &value)) {
            rc = -1;
            continue;
        }
        bm_service_t *service = bm_service_require (self, type);
        if (var == S_BOTS) {
            service->limit = value;
            service->configured = true;
            bm_series_set (service->m_limit, (double) value);
        }
        else
        if (var == S_QUEUE) {
            service->max_queue = value;
            bm_series_set (service->m_queue_limit, (double) value);
        }
        else
        if (var == S_RETRY_ATTEMPTS)
            service->retry_attempts = value;
        else
        if (var == S_RETRY_BACKOFF)
            service->retry_backoff_ms = value;
        else
        if (var == S_KEEP_COMPLETED)
            service->keep [0] = value;
        else
            service->keep [1] = value;
    }
    bm_env_check_destroy (&names);
    return rc;
}
