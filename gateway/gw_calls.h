/*  gw_calls.h - the broker link's table of calls: queued, then pending.

    A call is one request from a handler thread to the broker, on that
    thread's stack: queued (not sent yet, oldest first), then pending (sent,
    found again by its "req" when the answer comes), then done (answered,
    or failed with an errno).  The state is a futex word: the caller sleeps
    on it with gw_call_wait and whoever finishes the call wakes it with
    gw_call_wake once it has released its lock.

    Not thread-safe: gw_link calls every gw_calls_* function under its one
    lock.  gw_call_wait and gw_call_wake need no lock (a futex wake on an
    address nobody waits on any more does nothing; every waiter treats a
    wake as a hint and looks at the state again).  */
#ifndef GW_CALLS_H
#define GW_CALLS_H

#include "bm_proto.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

//  States of a call: the futex word.
#define GW_CALL_QUEUED  0               //  In the queue, not sent
#define GW_CALL_SENT    1               //  Pending, sent (or being sent)
#define GW_CALL_DONE    2               //  Answered, or failed with `error`

//  A call lives on its caller's stack; its fields are the link's to read
//  and write under the link's lock (`state` is atomic for the waiter).
typedef struct _gw_call_t gw_call_t;
struct _gw_call_t {
    atomic_int state;                   //  GW_CALL_QUEUED, _SENT, _DONE
    int64_t req;                        //  Its "req"
    int command;                        //  BMC01 command byte
    int64_t sent_ms;                    //  When the link took it (mono ms)
    zmq_msg_t body;                     //  Until the link takes it
    bm_msg_t *reply;                    //  Once DONE: the answer, or NULL
    int error;                          //  Once DONE without reply: errno
    gw_call_t *next;                    //  In the queue or a pending bucket
};

typedef struct _gw_calls_t gw_calls_t;

//  Set up a queued call for req/command that takes the body's bytes
//  (made by malloc) without a copy.  Returns 0, or -1 (the body is freed).
int gw_call_init (gw_call_t *call, int64_t req, int command, char *body, size_t size);

//  Mark the call done with its reply (taken) or an errno.  Returns the word
//  to give gw_call_wake once the caller has released its lock.
atomic_int *gw_call_finish (gw_call_t *call, bm_msg_t *reply, int error);

//  Sleep until the call's state is no longer `state`, at most ms (or less:
//  a wake is a hint).  Returns the state it then reads.
int gw_call_wait (gw_call_t *call, int state, int64_t ms);

//  Wake the thread that sleeps on a finished call's word.
void gw_call_wake (atomic_int *word);

//  Wake every word of the list, then free the list.
void gw_call_wake_all (atomic_int ***words_p, size_t count);

//  An empty table.  Aborts with a log line on out of memory (the gateway
//  makes one, at start).
gw_calls_t *gw_calls_new (void);

//  Destroy the table; it must hold no call any more.
void gw_calls_destroy (gw_calls_t **self_p);

//  Append a call to the queue.
void gw_calls_enqueue (gw_calls_t *self, gw_call_t *call);

//  Take a call out of the queue (a caller that gives up before it is sent).
void gw_calls_unqueue (gw_calls_t *self, gw_call_t *call);

//  Is a call waiting in the queue?
bool gw_calls_queued (gw_calls_t *self);

//  How many calls wait in the queue.
size_t gw_calls_queued_count (gw_calls_t *self);

//  Move the oldest queued call to pending, as sent at now_ms: its body
//  moves into `body` (initialised here; the caller sends or closes it).
//  Returns the call, or NULL when the queue is empty.
gw_call_t *gw_calls_send_next (gw_calls_t *self, zmq_msg_t *body, int64_t now_ms);

//  Unlink and return the pending call waiting for req, or NULL.
gw_call_t *gw_calls_take (gw_calls_t *self, int64_t req);

//  How many calls are pending.
size_t gw_calls_pending (gw_calls_t *self);

//  Finish every pending call (and every queued one too, if queued_too) with
//  error.  Returns the words to wake (gw_call_wake_all, once unlocked) and
//  their count in *count; with no memory for that list, wakes at once.
atomic_int **gw_calls_fail (gw_calls_t *self, int error, bool queued_too, size_t *count);

//  Self test.
void gw_calls_test (bool verbose);

#endif
