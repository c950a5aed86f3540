/*  bm_done_replay.c - recent DONEs, kept to send again after a reconnect.  */
#include "bm_done_replay.h"
#include "bm_proto.h"

#include <czmq.h>
#include <string.h>

//  A DONE recently sent, to send again after a reconnect. One allocation:
//  the body, then the job id's string when the run completed.
typedef struct {
    int64_t sent_mono;                  //  When it was sent
    size_t size;                        //  Bytes of its msgpack body
    char *job_id;                       //  Its job, in data, when it completed; else NULL
    char data [];                       //  The body, then the job id
} done_t;

struct _bm_done_replay_t {
    zlistx_t *recent;                   //  done_t, oldest first, owned
    zhashx_t *completed;                //  job id -> its completed done_t in recent
    size_t max;                         //  Most DONEs kept
};

static void
s_done_destroy (done_t **done_p)
{
    if (*done_p) {
        free (*done_p);
        *done_p = NULL;
    }
}

//  Drop the oldest DONE kept.
static void
s_drop_oldest (bm_done_replay_t *self)
{
    done_t *done = (done_t *) zlistx_detach (self->recent, NULL);
    if (done && done->job_id && zhashx_lookup (self->completed, done->job_id) == done)
        zhashx_delete (self->completed, done->job_id);
    s_done_destroy (&done);
}

bm_done_replay_t *
bm_done_replay_new (size_t max)
{
    bm_done_replay_t *self = (bm_done_replay_t *) zmalloc (sizeof (bm_done_replay_t));
    self->recent = zlistx_new ();
    //  Neither keys nor values are owned: each is a done_t in recent
    self->completed = zhashx_new ();
    zhashx_set_key_duplicator (self->completed, NULL);
    zhashx_set_key_destructor (self->completed, NULL);
    self->max = max;
    return self;
}

void
bm_done_replay_destroy (bm_done_replay_t **self_p)
{
    if (*self_p) {
        bm_done_replay_t *self = *self_p;
        while (zlistx_size (self->recent))
            s_drop_oldest (self);
        zlistx_destroy (&self->recent);
        zhashx_destroy (&self->completed);
        free (self);
        *self_p = NULL;
    }
}

void
bm_done_replay_remember (bm_done_replay_t *self, const char *body, size_t size,
                         const char *completed_job_id, int64_t now_mono)
{
    size_t id_size = completed_job_id? strlen (completed_job_id) + 1: 0;
    done_t *done = (done_t *) malloc (sizeof (done_t) + size + id_size);
    if (!done)
        return;                         //  Not kept: a replay is best effort
    done->sent_mono = now_mono;
    done->size = size;
    memcpy (done->data, body, size);
    done->job_id = NULL;
    if (completed_job_id) {
        done->job_id = done->data + size;
        memcpy (done->job_id, completed_job_id, id_size);
        //  The newer entry replaces an older one of the same job (whose key,
        //  its own string, is then no longer the table's)
        zhashx_delete (self->completed, done->job_id);
        zhashx_insert (self->completed, done->job_id, done);
    }
    zlistx_add_end (self->recent, done);
    while (zlistx_size (self->recent) > self->max)
        s_drop_oldest (self);
}

const char *
bm_done_replay_completed (bm_done_replay_t *self, const char *job_id, size_t *size)
{
    done_t *done = (done_t *) zhashx_lookup (self->completed, job_id);
    if (!done)
        return NULL;
    *size = done->size;
    return done->data;
}

void
bm_done_replay_prune (bm_done_replay_t *self, int64_t horizon_mono)
{
    done_t *done;
    while ((done = (done_t *) zlistx_first (self->recent)) && done->sent_mono < horizon_mono)
        s_drop_oldest (self);
}

void
bm_done_replay_send (bm_done_replay_t *self, bm_worker_link_t *link)
{
    done_t *done;
    for (done = (done_t *) zlistx_first (self->recent); done;
         done = (done_t *) zlistx_next (self->recent))
        bm_worker_link_send (link, BM_DONE, done->data, done->size, NULL);
}

size_t
bm_done_replay_size (bm_done_replay_t *self)
{
    return zlistx_size (self->recent);
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self-test: the cap drops the oldest, pruning drops the old.

void
bm_done_replay_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_done_replay: ");
    bm_done_replay_t *replay = bm_done_replay_new (2);
    size_t size = 0;
    bm_done_replay_remember (replay, "a", 1, "j1", 10);
    assert (bm_done_replay_completed (replay, "j1", &size) && size == 1);
    bm_done_replay_remember (replay, "bb", 2, NULL, 20);        //  A failed run
    assert (!bm_done_replay_completed (replay, "j2", &size));
    bm_done_replay_remember (replay, "ccc", 3, "j3", 30);
    assert (bm_done_replay_size (replay) == 2);         //  "a" dropped
    assert (!bm_done_replay_completed (replay, "j1", &size));
    const char *body = bm_done_replay_completed (replay, "j3", &size);
    assert (body && size == 3 && memcmp (body, "ccc", 3) == 0);
    bm_done_replay_prune (replay, 25);
    assert (bm_done_replay_size (replay) == 1);         //  "bb" too old
    bm_done_replay_prune (replay, 31);
    assert (bm_done_replay_size (replay) == 0);
    assert (!bm_done_replay_completed (replay, "j3", &size));
    //  The same job twice: the newer entry is the one found, and dropping
    //  the older one keeps it.
    bm_done_replay_remember (replay, "e", 1, "j4", 40);
    bm_done_replay_remember (replay, "ff", 2, "j4", 41);
    bm_done_replay_remember (replay, "g", 1, NULL, 42);
    assert (bm_done_replay_completed (replay, "j4", &size) && size == 2);
    bm_done_replay_remember (replay, "d", 1, NULL, 43);
    assert (!bm_done_replay_completed (replay, "j4", &size));
    bm_done_replay_destroy (&replay);
    assert (replay == NULL);
    bm_done_replay_destroy (&replay);                   //  Idempotent
    printf ("OK\n");
}
#endif
