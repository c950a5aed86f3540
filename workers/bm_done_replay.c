/*  bm_done_replay.c - recent DONEs, kept to send again after a reconnect.  */
#include "bm_done_replay.h"
#include "bm_proto.h"

#include <czmq.h>
#include <string.h>

//  A DONE recently sent, to send again after a reconnect.
typedef struct {
    int64_t sent_mono;                  //  When it was sent
    char *body;                         //  Its msgpack body
    size_t size;
} done_t;

struct _bm_done_replay_t {
    zlistx_t *recent;                   //  done_t, oldest first, owned
    size_t max;                         //  Most DONEs kept
};

static void
s_done_destroy (done_t **done_p)
{
    if (*done_p) {
        free ((*done_p)->body);
        free (*done_p);
        *done_p = NULL;
    }
}

bm_done_replay_t *
bm_done_replay_new (size_t max)
{
    bm_done_replay_t *self = (bm_done_replay_t *) zmalloc (sizeof (bm_done_replay_t));
    self->recent = zlistx_new ();
    self->max = max;
    return self;
}

void
bm_done_replay_destroy (bm_done_replay_t **self_p)
{
    if (*self_p) {
        bm_done_replay_t *self = *self_p;
        done_t *done;
        while ((done = (done_t *) zlistx_detach (self->recent, NULL)))
            s_done_destroy (&done);
        zlistx_destroy (&self->recent);
        free (self);
        *self_p = NULL;
    }
}

void
bm_done_replay_remember (bm_done_replay_t *self, const char *body, size_t size, int64_t now_mono)
{
    done_t *done = (done_t *) zmalloc (sizeof (done_t));
    done->sent_mono = now_mono;
    done->body = (char *) malloc (size);
    if (!done->body) {
        free (done);
        return;                         //  Not kept: a replay is best effort
    }
    memcpy (done->body, body, size);
    done->size = size;
    zlistx_add_end (self->recent, done);
    while (zlistx_size (self->recent) > self->max) {
        done_t *oldest = (done_t *) zlistx_detach (self->recent, NULL);
        s_done_destroy (&oldest);
    }
}

void
bm_done_replay_prune (bm_done_replay_t *self, int64_t horizon_mono)
{
    done_t *done;
    while ((done = (done_t *) zlistx_first (self->recent)) && done->sent_mono < horizon_mono) {
        zlistx_detach (self->recent, NULL);
        s_done_destroy (&done);
    }
}

void
bm_done_replay_send (bm_done_replay_t *self, bm_worker_link_t *link)
{
    done_t *done;
    for (done = (done_t *) zlistx_first (self->recent); done;
         done = (done_t *) zlistx_next (self->recent))
        bm_worker_link_send (link, BM_DONE, done->body, done->size, NULL);
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
    bm_done_replay_remember (replay, "a", 1, 10);
    bm_done_replay_remember (replay, "bb", 2, 20);
    bm_done_replay_remember (replay, "ccc", 3, 30);
    assert (bm_done_replay_size (replay) == 2);         //  "a" dropped
    bm_done_replay_prune (replay, 25);
    assert (bm_done_replay_size (replay) == 1);         //  "bb" too old
    bm_done_replay_prune (replay, 31);
    assert (bm_done_replay_size (replay) == 0);
    bm_done_replay_remember (replay, "d", 1, 40);
    bm_done_replay_destroy (&replay);
    assert (replay == NULL);
    bm_done_replay_destroy (&replay);                   //  Idempotent
    printf ("OK\n");
}
#endif
