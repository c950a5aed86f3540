/*  bm_idem_store.c - the idempotency keys in Redis (docs/redis.md).

    The hash "{bm}:idem" keeps every key for IDEMPOTENCY_TTL_MS whatever
    its job's state: field = the key, value = "<jobId> <fingerprint in
    hex> <expiry in epoch ms>".  Written in the same group as the job's
    record at SUBMIT (only jobs with a key pay for it), read back at
    recovery into the broker's index (bm_idem), and its fields deleted by
    the leader as they expire: at recovery and as the index drops them.
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

typedef struct {
    const char *key;
    const char *job_id;
    uint64_t fingerprint;
    int64_t expires;
} s_kept_t;

static int
s_by_expiry (const void *a, const void *b)
{
    int64_t x = ((const s_kept_t *) a)->expires, y = ((const s_kept_t *) b)->expires;
    return (x > y) - (x < y);
}

//  HGETALL of the hash: the live keys into the index (oldest first, so
//  that they expire in order), the expired ones deleted in one HDEL.
static void
s_on_idem_keys (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply)
        return;                 //  Redis went away: recovery starts over
    if (reply->type != REDIS_REPLY_ARRAY) {
        bm_warn (NULL, "redis: the idempotency keys could not be read (%s): keys of "
                 "finished jobs are not restored",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "not a hash");
        return;
    }
    size_t pairs = reply->elements / 2;
    if (pairs == 0)
        return;
    s_kept_t *kept = (s_kept_t *) bm_realloc_or_abort (NULL, pairs * sizeof (s_kept_t),
                                                       "the idempotency keys");
    const char **argv = (const char **) bm_realloc_or_abort (NULL, (2 + pairs) * sizeof (char *),
                                                             "a HDEL");
    size_t *lens = (size_t *) bm_realloc_or_abort (NULL, (2 + pairs) * sizeof (size_t), "a HDEL");
    size_t live = 0, expired = 0;
    int64_t now = bm_now_ms ();
    char job_id [BM_ID_SLOT];
    for (size_t i = 0; i < pairs; i++) {
        redisReply *field = reply->element [2 * i], *value = reply->element [2 * i + 1];
        if (field->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
            continue;
        //  "<jobId> <fingerprint> <expires>"; anything else is dropped
        uint64_t fingerprint = 0;
        int64_t expires = 0;
        int end = 0;
        size_t id_len = strcspn (value->str, " ");
        if (field->len > BM_MAX_ID_LEN || strlen (field->str) != field->len
        ||  id_len == 0 || id_len >= sizeof job_id || value->str [id_len] != ' '
        ||  sscanf (value->str + id_len, " %" SCNx64 " %" SCNd64 "%n",
                    &fingerprint, &expires, &end) != 2
        ||  id_len + (size_t) end != value->len
        ||  expires <= now) {
            argv [2 + expired] = field->str;
            lens [2 + expired] = field->len;
            expired++;
            continue;
        }
        kept [live++] = (s_kept_t) { field->str, value->str, fingerprint, expires };
    }
    qsort (kept, live, sizeof (s_kept_t), s_by_expiry);
    for (size_t i = 0; i < live; i++) {
        //  The job id is the value's first word
        size_t id_len = strcspn (kept [i].job_id, " ");
        snprintf (job_id, sizeof job_id, "%.*s", (int) id_len, kept [i].job_id);
        bm_idem_put (self->idem, kept [i].key, job_id, kept [i].fingerprint, kept [i].expires);
    }
    if (expired) {
        char key [256];
        snprintf (key, sizeof key, "%s{bm}:idem", self->config.redis_prefix);
        argv [0] = "HDEL"; lens [0] = 4;
        argv [1] = key; lens [1] = strlen (key);
        bm_store_write (self->store, true, NULL, NULL, (int) (2 + expired), argv, lens);
    }
    bm_info (NULL, "recovered %zu idempotency keys from redis (%zu expired deleted)",
             live, expired);
    free (kept);
    free (argv);
    free (lens);
}

void
bm_idem_store_recover (bm_broker_t *self)
{
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "HGETALL", "idem", NULL);
    bm_jobstore_query (self, &cmd, s_on_idem_keys, self);
}
