/*  gw_calls.c - the broker link's table of calls: queued, then pending.

    The queue is a singly linked list, oldest first; pending calls hang in
    GW_CALLS_BUCKETS buckets by "req" (numbers handed out one after the
    other, so the low bits spread them evenly).  Nothing here allocates per
    call: the calls live on their callers' stacks.

    Ownership of a call: the caller's stack.  The link only touches it
    under its lock, and a caller that gives up (timeout) unlinks it under
    that lock before returning, so the link never sees a dead call.  The
    body's bytes move into a zmq_msg_t (no copy) that the link takes under
    the lock.  The one thing done after unlocking is the futex wake on
    &call.state, which may then name a stack slot already reused: a futex
    wake on an address nobody waits on does nothing, and every futex user
    (ours, glibc's) treats a wake as a hint and checks again.  */
#include "gw_calls.h"
#include "bm_selftest.h"

#include "bm_log.h"

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GW_CALLS_BUCKETS        1024    //  Pending table (a power of two)

struct _gw_calls_t {
    gw_call_t *queue_head;              //  Not sent yet, oldest first
    gw_call_t *queue_tail;
    size_t queued_count;                //  Calls in the queue
    gw_call_t *pending [GW_CALLS_BUCKETS];  //  Sent, by req
    size_t pending_count;               //  Calls in `pending`
};

//  --------------------------------------------------------------------------
//  One call

static void
s_free_body (void *data, void *hint)
{
    (void) hint;
    free (data);
}

int
gw_call_init (gw_call_t *call, int64_t req, int command, char *body, size_t size)
{
    atomic_init (&call->state, GW_CALL_QUEUED);
    call->req = req;
    call->command = command;
    call->sent_ms = 0;
    call->reply = NULL;
    call->error = 0;
    call->next = NULL;
    if (zmq_msg_init_data (&call->body, body, size, s_free_body, NULL)) {
        free (body);
        return -1;
    }
    return 0;
}

atomic_int *
gw_call_finish (gw_call_t *call, bm_msg_t *reply, int error)
{
    call->reply = reply;
    call->error = error;
    atomic_store_explicit (&call->state, GW_CALL_DONE, memory_order_release);
    return &call->state;
}

int
gw_call_wait (gw_call_t *call, int state, int64_t ms)
{
    if (ms > 0) {
        struct timespec ts = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000 };
        syscall (SYS_futex, (int *) &call->state, FUTEX_WAIT_PRIVATE, state, &ts, NULL, 0);
    }
    return atomic_load_explicit (&call->state, memory_order_acquire);
}

void
gw_call_wake (atomic_int *word)
{
    syscall (SYS_futex, (int *) word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void
gw_call_wake_all (atomic_int ***words_p, size_t count)
{
    for (size_t i = 0; i < count; i++)
        gw_call_wake ((*words_p) [i]);
    free (*words_p);
    *words_p = NULL;
}

//  --------------------------------------------------------------------------
//  The table

gw_calls_t *
gw_calls_new (void)
{
    gw_calls_t *self = (gw_calls_t *) calloc (1, sizeof (gw_calls_t));
    if (!self) {
        bm_error (NULL, "out of memory for the broker link's call table");
        abort ();
    }
    return self;
}

void
gw_calls_destroy (gw_calls_t **self_p)
{
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

void
gw_calls_enqueue (gw_calls_t *self, gw_call_t *call)
{
    call->next = NULL;
    if (self->queue_tail)
        self->queue_tail->next = call;
    else
        self->queue_head = call;
    self->queue_tail = call;
    self->queued_count++;
}

void
gw_calls_unqueue (gw_calls_t *self, gw_call_t *call)
{
    gw_call_t *prev = NULL;
    for (gw_call_t *it = self->queue_head; it; prev = it, it = it->next)
        if (it == call) {
            if (prev)
                prev->next = call->next;
            else
                self->queue_head = call->next;
            if (self->queue_tail == call)
                self->queue_tail = prev;
            self->queued_count--;
            return;
        }
}

bool
gw_calls_queued (gw_calls_t *self)
{
    return self->queue_head != NULL;
}

size_t
gw_calls_queued_count (gw_calls_t *self)
{
    return self->queued_count;
}

gw_call_t *
gw_calls_send_next (gw_calls_t *self, zmq_msg_t *body, int64_t now_ms)
{
    gw_call_t *call = self->queue_head;
    if (!call)
        return NULL;
    self->queue_head = call->next;
    if (!self->queue_head)
        self->queue_tail = NULL;
    self->queued_count--;
    zmq_msg_init (body);
    zmq_msg_move (body, &call->body);
    zmq_msg_close (&call->body);
    call->sent_ms = now_ms;
    atomic_store_explicit (&call->state, GW_CALL_SENT, memory_order_release);
    size_t bucket = (size_t) ((uint64_t) call->req & (GW_CALLS_BUCKETS - 1));
    call->next = self->pending [bucket];
    self->pending [bucket] = call;
    self->pending_count++;
    return call;
}

gw_call_t *
gw_calls_take (gw_calls_t *self, int64_t req)
{
    gw_call_t **link = &self->pending [(uint64_t) req & (GW_CALLS_BUCKETS - 1)];
    for (; *link; link = &(*link)->next)
        if ((*link)->req == req) {
            gw_call_t *call = *link;
            *link = call->next;
            self->pending_count--;
            return call;
        }
    return NULL;
}

size_t
gw_calls_pending (gw_calls_t *self)
{
    return self->pending_count;
}

//  Keep one word to wake once the lock is released; with no memory for
//  the list, wake it at once (under the lock: slower, never lost).
static void
s_wake_later (atomic_int ***wake, size_t *size, size_t *count, atomic_int *one)
{
    if (*count == *size) {
        size_t bigger = *size ? *size * 2 : 64;
        atomic_int **grown = (atomic_int **) realloc (*wake, bigger * sizeof (atomic_int *));
        if (!grown) {
            gw_call_wake (one);
            return;
        }
        *wake = grown;
        *size = bigger;
    }
    (*wake) [(*count)++] = one;
}

atomic_int **
gw_calls_fail (gw_calls_t *self, int error, bool queued_too, size_t *count)
{
    size_t size = 0;
    atomic_int **wake = NULL;
    *count = 0;
    for (int b = 0; b < GW_CALLS_BUCKETS; b++) {
        while (self->pending [b]) {
            gw_call_t *call = self->pending [b];
            self->pending [b] = call->next;
            s_wake_later (&wake, &size, count, gw_call_finish (call, NULL, error));
        }
    }
    self->pending_count = 0;
    while (queued_too && self->queue_head) {
        gw_call_t *call = self->queue_head;
        self->queue_head = call->next;
        zmq_msg_close (&call->body);
        s_wake_later (&wake, &size, count, gw_call_finish (call, NULL, error));
    }
    if (queued_too) {
        self->queue_tail = NULL;
        self->queued_count = 0;
    }
    return wake;
}

//  --------------------------------------------------------------------------
//  Self test: calls through the queue and the table, one thread.

#define CHECK(cond) BM_CHECK (cond)

static void
s_call (gw_call_t *call, int64_t req)
{
    char *body = strdup ("body");
    CHECK (body);
    CHECK (gw_call_init (call, req, BM_PING, body, 4) == 0);
}

void
gw_calls_test (bool verbose)
{
    if (verbose)
        printf (" * gw_calls: ");
    gw_calls_t *calls = gw_calls_new ();
    CHECK (!gw_calls_queued (calls) && gw_calls_pending (calls) == 0);

    //  Oldest first; a call taken out of the middle is skipped.
    //  req 1 and 1025 share a bucket.
    gw_call_t a, b, c;
    s_call (&a, 1);
    s_call (&b, 2);
    s_call (&c, 1025);
    gw_calls_enqueue (calls, &a);
    gw_calls_enqueue (calls, &b);
    gw_calls_enqueue (calls, &c);
    CHECK (gw_calls_queued_count (calls) == 3);
    gw_calls_unqueue (calls, &b);
    CHECK (gw_calls_queued_count (calls) == 2);
    zmq_msg_close (&b.body);
    zmq_msg_t body;
    CHECK (gw_calls_send_next (calls, &body, 10) == &a);
    CHECK (zmq_msg_size (&body) == 4 && memcmp (zmq_msg_data (&body), "body", 4) == 0);
    zmq_msg_close (&body);
    CHECK (atomic_load (&a.state) == GW_CALL_SENT && a.sent_ms == 10);
    CHECK (gw_calls_send_next (calls, &body, 11) == &c);
    zmq_msg_close (&body);
    CHECK (gw_calls_send_next (calls, &body, 12) == NULL);
    CHECK (!gw_calls_queued (calls) && gw_calls_pending (calls) == 2);
    CHECK (gw_calls_queued_count (calls) == 0);

    //  Found by req, once; an unknown req finds nothing.
    CHECK (gw_calls_take (calls, 1025) == &c);
    CHECK (gw_calls_take (calls, 1025) == NULL);
    CHECK (gw_calls_take (calls, 7) == NULL);
    CHECK (gw_calls_pending (calls) == 1);
    atomic_int *word = gw_call_finish (&c, NULL, ETIMEDOUT);
    CHECK (word == &c.state && atomic_load (&c.state) == GW_CALL_DONE && c.error == ETIMEDOUT);
    gw_call_wake (word);
    //  A done call does not sleep.
    CHECK (gw_call_wait (&c, GW_CALL_SENT, 1000) == GW_CALL_DONE);

    //  Failing: the pending ones; the queued ones too when asked.
    s_call (&b, 3);
    gw_calls_enqueue (calls, &b);
    size_t count;
    atomic_int **words = gw_calls_fail (calls, ECONNRESET, false, &count);
    CHECK (count == 1 && words [0] == &a.state && a.error == ECONNRESET);
    gw_call_wake_all (&words, count);
    CHECK (words == NULL && gw_calls_queued (calls) && gw_calls_pending (calls) == 0);
    words = gw_calls_fail (calls, ESHUTDOWN, true, &count);
    CHECK (count == 1 && words [0] == &b.state && b.error == ESHUTDOWN);
    CHECK (atomic_load (&b.state) == GW_CALL_DONE);
    gw_call_wake_all (&words, count);
    CHECK (!gw_calls_queued (calls) && gw_calls_queued_count (calls) == 0);

    gw_calls_destroy (&calls);
    CHECK (calls == NULL);
    if (verbose)
        printf ("OK\n");
}
