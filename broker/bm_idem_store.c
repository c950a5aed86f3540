/*  bm_idem_store.c - the idempotency keys in Redis (docs/redis.md).

    The hash "{bm}:idem" keeps every key for IDEMPOTENCY_TTL_MS while its
    job exists, whatever the job's state: field = the key, value = "<jobId> <fingerprint in
    hex> <expiry in epoch ms>".  Written in the same group as the job's
    record at SUBMIT (only jobs with a key pay for it), read back at
    recovery into the broker's index (bm_idem), HSCAN page by page, and its
    fields deleted by
    the leader as they expire (at recovery and as the index drops them),
    and as their jobs are removed (bm_idem_store_drop: with the record's
    DEL, or when a duplicate SUBMIT finds the record gone).
    A standby never writes: recovery and the tick run only on the leader.  */
#include "bm_broker_internal.h"

#include <inttypes.h>

//  The value of a key's field.
static void
s_value (char *value, size_t size, const char *job_id, uint64_t fingerprint, int64_t expires)
{
    snprintf (value, size, "%s %016" PRIx64 " %" PRId64, job_id, fingerprint, expires);
}

void
bm_jobstore_persist_idem (bm_broker_t *self, bm_job_t *job, uint64_t fingerprint)
{
    if (!self->store || !job->idem_key)
        return;
    char value [BM_ID_SLOT + 48];
    s_value (value, sizeof value, job->id, fingerprint,
             job->created_at + self->config.idempotency_ttl_ms);
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HSET", "idem", NULL);
    bm_cmd_arg_str (&cmd, job->idem_key);
    bm_cmd_arg_str (&cmd, value);
    bm_jobstore_issue (self, &cmd, true, NULL, NULL);
}

void
bm_jobstore_forget_idem (bm_broker_t *self, const char *key)
{
    if (!self->store)
        return;
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HDEL", "idem", NULL);
    bm_cmd_arg_str (&cmd, key);
    bm_jobstore_issue (self, &cmd, true, NULL, NULL);
}

void
bm_idem_store_drop (bm_broker_t *self, const char *key, const char *job_id)
{
    if (bm_idem_drop (self->idem, key, job_id)) {
        bm_debug (job_id, "idempotencyKey %s freed: its job is gone", key);
        bm_jobstore_forget_idem (self, key);
    }
}

//  bm_idem_expire's: a key the index dropped leaves Redis too.
static void
s_on_key_gone (const char *key, void *arg)
{
    bm_jobstore_forget_idem ((bm_broker_t *) arg, key);
}

void
bm_idem_store_tick (bm_broker_t *self, int64_t now)
{
    bm_idem_expire (self->idem, now, self->store ? s_on_key_gone : NULL, self);
}

//  A recovery's read of the hash, HSCAN page by page: one huge HGETALL
//  reply (millions of keys over a 24 h window) would stall Redis and the
//  broker while it is built, sent and parsed.
#define S_PAGE_COUNT "1000"     //  Fields per HSCAN page (a hint to Redis)

typedef struct {
    bm_broker_t *broker;
    bm_idem_store_done_fn *done;        //  Called once, after the last page
    size_t pages;                       //  Pages read so far
    size_t live;                        //  Keys put into the index
    size_t expired;                     //  Fields found expired (deleted)
} s_recovery_t;

static void s_read_page (s_recovery_t *recovery, const char *cursor);

//  The recovery ends: the keys in expiry order, the tally logged, done
//  told whether the whole hash was read.
static void
s_recovery_end (s_recovery_t *recovery, bool read)
{
    bm_broker_t *self = recovery->broker;
    bm_idem_sort (self->idem);
    if (read)
        bm_info (NULL, "recovered %zu idempotency keys from redis in %zu HSCAN pages "
                 "(%zu expired deleted)", recovery->live, recovery->pages, recovery->expired);
    bm_idem_store_done_fn *done = recovery->done;
    free (recovery);
    done (self, read);
}

//  One "<jobId> <fingerprint> <expires>" value: the job id's length, or 0
//  when the value does not read.
static size_t
s_parse_value (const redisReply *value, uint64_t *fingerprint, int64_t *expires)
{
    int end = 0;
    size_t id_len = strcspn (value->str, " ");
    if (id_len == 0 || value->str [id_len] != ' '
    ||  sscanf (value->str + id_len, " %" SCNx64 " %" SCNd64 "%n", fingerprint, expires, &end) != 2
    ||  id_len + (size_t) end != value->len)
        return 0;
    return id_len;
}

bool
bm_idem_store_parse (const redisReply *value, char *job_id, size_t size)
{
    uint64_t fingerprint = 0;
    int64_t expires = 0;
    size_t id_len = value->type == REDIS_REPLY_STRING
                  ? s_parse_value (value, &fingerprint, &expires) : 0;
    if (id_len == 0 || id_len >= size || expires <= bm_now_ms ())
        return false;
    snprintf (job_id, size, "%.*s", (int) id_len, value->str);
    return true;
}

//  One HSCAN page: its live keys into the index (in no order: sorted once
//  at the end), its expired fields deleted in one HDEL, then the next page.
static void
s_on_idem_page (redisReply *reply, void *arg)
{
    s_recovery_t *recovery = (s_recovery_t *) arg;
    bm_broker_t *self = recovery->broker;
    if (!reply) {
        s_recovery_end (recovery, false);       //  Redis went away: recovery starts over
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING
    ||  reply->element [1]->type != REDIS_REPLY_ARRAY) {
        bm_warn (NULL, "redis: the idempotency keys could not be read (%s): keys of "
                 "finished jobs are not restored",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "not a hash");
        s_recovery_end (recovery, true);
        return;
    }
    recovery->pages++;
    redisReply *fields = reply->element [1];
    size_t pairs = fields->elements / 2;
    const char **argv = (const char **) bm_realloc_or_abort (NULL, (2 + pairs) * sizeof (char *),
                                                             "a HDEL");
    size_t *lens = (size_t *) bm_realloc_or_abort (NULL, (2 + pairs) * sizeof (size_t), "a HDEL");
    size_t expired = 0;
    int64_t now = bm_now_ms ();
    char job_id [BM_ID_SLOT];
    for (size_t i = 0; i < pairs; i++) {
        redisReply *field = fields->element [2 * i], *value = fields->element [2 * i + 1];
        if (field->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        //  "<jobId> <fingerprint> <expires>"; anything else is dropped
        uint64_t fingerprint = 0;
        int64_t expires = 0;
        size_t id_len = s_parse_value (value, &fingerprint, &expires);
        if (field->len > BM_MAX_ID_LEN || strlen (field->str) != field->len
        ||  id_len == 0 || id_len >= sizeof job_id || expires <= now) {
            argv [2 + expired] = field->str;
            lens [2 + expired] = field->len;
            expired++;
            continue;
        }
        snprintf (job_id, sizeof job_id, "%.*s", (int) id_len, value->str);
        bm_idem_put_unsorted (self->idem, field->str, job_id, fingerprint, expires);
        recovery->live++;
    }
    if (expired) {
        char key [256];
        snprintf (key, sizeof key, "%s{bm}:idem", self->config.redis_prefix);
        argv [0] = "HDEL"; lens [0] = 4;
        argv [1] = key; lens [1] = strlen (key);
        bm_store_write (self->store, true, NULL, NULL, (int) (2 + expired), argv, lens);
        recovery->expired += expired;
    }
    free (argv);
    free (lens);
    if (streq (reply->element [0]->str, "0"))
        s_recovery_end (recovery, true);
    else
        s_read_page (recovery, reply->element [0]->str);
}

//  HSCAN <prefix>{bm}:idem <cursor> COUNT 1000
static void
s_read_page (s_recovery_t *recovery, const char *cursor)
{
    bm_cmd_t cmd;
    bm_cmd_start (recovery->broker, &cmd, "HSCAN", "idem", NULL);
    bm_cmd_arg_str (&cmd, cursor);
    bm_cmd_arg_str (&cmd, "COUNT");
    bm_cmd_arg_str (&cmd, S_PAGE_COUNT);
    bm_jobstore_query (recovery->broker, &cmd, s_on_idem_page, recovery);
}

void
bm_idem_store_recover (bm_broker_t *self, bm_idem_store_done_fn *done)
{
    s_recovery_t *recovery = (s_recovery_t *) zmalloc (sizeof (s_recovery_t));
    recovery->broker = self;
    recovery->done = done;
    s_read_page (recovery, "0");
}
