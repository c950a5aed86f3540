/*  bm_types_store.c - the bot types workers registered, kept in Redis
    (docs/redis.md, "{bm}:types").

    A broker knows a type a worker registered for as long as it runs; the
    hash "{bm}:types" carries that knowledge over a restart or a takeover:
    field = the type, value = when a worker was last seen serving it (epoch
    ms, decimal text).  The leader writes a type when a worker registers it
    and Redis has no last-seen for it yet, or one older than a quarter of
    BROKER_TYPE_TTL_MS (at most an hour): never per job, at most once an
    interval per type.  Its tick does the same for the types its workers
    still serve (noting, to the second, when one last did) and, once the
    last worker of a type has gone, writes that moment once: the record
    then ends BROKER_TYPE_TTL_MS after the last worker left, not up to a
    refresh interval earlier.  The tick deletes the field of a type no
    worker served for BROKER_TYPE_TTL_MS.  Recovery reads the hash (one HGETALL, before the
    idempotency keys and the jobs): a recorded type is known at once, an
    expired or malformed field is deleted.  A standby never writes: writes
    wait for the recovery, which runs only on the leader.  */
#include "bm_broker_internal.h"

#include <inttypes.h>
#include <stdlib.h>

#define S_REFRESH_MAX_MS 3600000        //  A served type's last-seen, rewritten
#define S_CHECK_MS 1000                 //  The tick's pass over the types

//  How old a served type's last-seen in Redis grows before it is written
//  again.
static int64_t
s_refresh_ms (bm_broker_t *self)
{
    int64_t quarter = self->config.type_ttl_ms / 4;
    return quarter < S_REFRESH_MAX_MS ? quarter : S_REFRESH_MAX_MS;
}

static bool
s_recordable (bm_broker_t *self, const bm_service_t *service)
{
    return self->store && self->recovered && !streq (service->name, BM_WEBHOOK_TYPE);
}

static void
s_record (bm_broker_t *self, bm_service_t *service, int64_t seen)
{
    service->recorded_at = seen;
    service->recorded_until = seen + self->config.type_ttl_ms;
}

static void
s_write (bm_broker_t *self, bm_service_t *service, int64_t seen)
{
    s_record (self, service, seen);
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HSET", "types", NULL);
    bm_cmd_arg_str (&cmd, service->name);
    bm_cmd_arg_int (&cmd, seen);
    bm_jobstore_issue (self, &cmd, true, NULL, NULL);
}

void
bm_types_store_seen (bm_broker_t *self, bm_service_t *service)
{
    int64_t now = bm_now_ms ();
    service->served_at = now;
    if (!s_recordable (self, service))
        return;
    if (service->recorded_at && now - service->recorded_at < s_refresh_ms (self))
        return;
    if (!service->recorded_at)
        bm_info (NULL, "bot type %s recorded in redis: known after a restart or takeover "
                 "until no worker served it for %" PRId64 " ms", service->name,
                 self->config.type_ttl_ms);
    s_write (self, service, now);
}

void
bm_types_store_tick (bm_broker_t *self, int64_t now)
{
    if (!self->store || !self->recovered || self->stopping || now < self->types_check_at)
        return;
    self->types_check_at = now + S_CHECK_MS;
    int64_t wall = bm_now_ms ();
    for (bm_service_t *service = (bm_service_t *) zhashx_first (self->services); service;
         service = (bm_service_t *) zhashx_next (self->services)) {
        if (zlistx_size (service->workers) > 0)
            bm_types_store_seen (self, service);
        else
        if (service->recorded_at && service->served_at > service->recorded_at
        &&  s_recordable (self, service))
            //  Its last worker has gone: the record counts from then
            s_write (self, service, service->served_at);
        else
        if (service->recorded_at && wall >= service->recorded_until) {
            bm_info (NULL, "bot type %s: no worker served it for %" PRId64 " ms; deleted from "
                     "redis's types (unknown after a restart or takeover unless a worker "
                     "registers it)", service->name, self->config.type_ttl_ms);
            service->recorded_at = 0;
            bm_cmd_t cmd;
            bm_cmd_start (self, &cmd, "HDEL", "types", NULL);
            bm_cmd_arg_str (&cmd, service->name);
            bm_jobstore_issue (self, &cmd, true, NULL, NULL);
        }
    }
}

void
bm_types_store_recovered (bm_broker_t *self)
{
    self->types_check_at = 0;
    bm_types_store_tick (self, bm_mono_ms ());
    //  The types now known (the record's, the jobs', the config's) go on
    //  with the counts of the last snapshot; the others are forgotten.
    bm_stats_earlier_types (self);
}

//  A field's last-seen, or 0 when it does not read; one ahead of this
//  host's clock (another host's clock ahead) counts as now.
static int64_t
s_parse_seen (const redisReply *value, int64_t now)
{
    if (value->type != REDIS_REPLY_STRING || value->len == 0 || value->len > 19
    ||  strspn (value->str, "0123456789") != value->len)
        return 0;
    long long seen = strtoll (value->str, NULL, 10);
    return seen <= 0 ? 0 : seen > now ? now : (int64_t) seen;
}

//  HGETALL's reply: the recorded types become known, the expired and the
//  malformed fields are deleted in one HDEL.
static void
s_on_types (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    self->types_recorded = 0;
    if (!reply)
        return;                 //  Redis went away: the recovery starts over
    if (reply->type != REDIS_REPLY_ARRAY) {
        bm_warn (NULL, "redis: the bot types could not be read (%s): after the recovery a type "
                 "no worker registered yet waits for its workers (store_unavailable)",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "not a hash");
        return;
    }
    size_t pairs = reply->elements / 2;
    const char **argv = (const char **) bm_realloc_or_abort (NULL, (2 + pairs) * sizeof (char *),
                                                             "a HDEL");
    size_t *lens = (size_t *) bm_realloc_or_abort (NULL, (2 + pairs) * sizeof (size_t), "a HDEL");
    size_t dropped = 0, malformed = 0, live = 0;
    int64_t now = bm_now_ms ();
    for (size_t i = 0; i < pairs; i++) {
        redisReply *field = reply->element [2 * i], *value = reply->element [2 * i + 1];
        if (field->type != REDIS_REPLY_STRING)
            continue;
        //  The names READY takes, nothing else: a field written by hand
        //  or damaged is dropped, never made a type.
        int64_t seen = s_parse_seen (value, now);
        bool valid = strlen (field->str) == field->len
                  && bm_valid_bot_type (field->str, field->len)
                  && !streq (field->str, BM_WEBHOOK_TYPE) && seen > 0;
        if (!valid || now - seen >= self->config.type_ttl_ms) {
            malformed += !valid;
            argv [2 + dropped] = field->str;
            lens [2 + dropped] = field->len;
            dropped++;
            continue;
        }
        bm_service_t *service = bm_service_require (self, field->str);
        if (seen > service->recorded_at)
            s_record (self, service, seen);
        live++;
    }
    self->types_recorded = pairs;
    if (dropped) {
        char key [256];
        snprintf (key, sizeof key, "%s{bm}:types", self->config.redis_prefix);
        argv [0] = "HDEL"; lens [0] = 4;
        argv [1] = key; lens [1] = strlen (key);
        bm_store_write (self->store, true, NULL, NULL, (int) (2 + dropped), argv, lens);
    }
    free (argv);
    free (lens);
    if (malformed)
        bm_warn (NULL, "redis: %zu fields of the bot types record are no bot type with a "
                 "last-seen time; deleted", malformed);
    bm_info (NULL, "recovered %zu bot type%s from redis (%zu not served for %" PRId64 " ms or "
             "malformed, deleted)", live, live == 1 ? "" : "s", dropped, self->config.type_ttl_ms);
}

void
bm_types_store_recover (bm_broker_t *self)
{
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HGETALL", "types", NULL);
    bm_jobstore_query (self, &cmd, s_on_types, self);
}
