/*  bm_events.h - live job events: the subscriptions of clients (SUBSCRIBE,
    UNSUBSCRIBE) and the EVENT messages pushed to them (docs/protocol.md,
    "SUBSCRIBE, UNSUBSCRIBE, EVENT").

    The broker calls BM_JOB_EVENT at the points where a job changes (queued,
    dispatched, progress, ended...).  With no subscription that is one
    branch per call and nothing else.  With subscriptions, each event
    matching a subscription's filters is sent to its client at once, never
    queued: a client whose queue is at BROKER_PEER_HWM loses the event
    (counted; its subscription's seq still moves, so the client sees the
    gap), a client that is gone loses its subscription.

    Each event has an id, "<incarnation>-<n>", n counting the events of this
    broker run.  While a subscription exists, and for
    BM_EVENTS_HISTORY_LINGER_MS after the last one ended or the broker
    started, the broker keeps the recent ones (BROKER_EVENT_HISTORY of
    them, at most BM_EVENTS_HISTORY_BYTES): a SUBSCRIBE with since replays
    those after it, or answers reset and replays them all when since is
    not in the history (older, or of another run).  */
#ifndef BM_EVENTS_H
#define BM_EVENTS_H

#include "bm_proto.h"

typedef struct _bm_broker_t bm_broker_t;
typedef struct _bm_job_t bm_job_t;
typedef struct _bm_events_t bm_events_t;

//  The events, by the names they have on the wire (BullMQ's QueueEvents,
//  plus cancelled).
typedef enum {
    BM_EV_WAITING,              //  Queued, to be dispatched
    BM_EV_ACTIVE,               //  Dispatched to a worker
    BM_EV_PROGRESS,             //  Its worker reported progress
    BM_EV_COMPLETED,
    BM_EV_FAILED,               //  A run failed: willRetry says whether it runs again
    BM_EV_DELAYED,              //  Waits for its due time (dueAt)
    BM_EV_REMOVED,              //  Deleted by REMOVE or QUEUE drain / clean
    BM_EV_STALLED,              //  Its worker was lost while it ran: queued again
    BM_EV_CANCELLED,
    BM_EV_WAITING_CHILDREN,     //  Submitted with dependsOn: waits for them
    BM_EV_COUNT
} bm_event_t;

//  Subscriptions at once by default (MAX_SUBSCRIPTIONS), and the bounds of
//  one subscription's filters and lifetime.
#define BM_EVENTS_MAX_SUBSCRIPTIONS 64
#define BM_EVENTS_MAX_TYPES         16      //  botTypes: 0..16 names
#define BM_EVENTS_MAX_JOBS          100     //  jobIds: 0..100 ids
#define BM_EVENTS_TTL_DEFAULT_MS    30000   //  ttlMs when absent
#define BM_EVENTS_TTL_MIN_MS        1000
#define BM_EVENTS_TTL_MAX_MS        300000
//  A completed event carries its result when the result's encoded size is
//  at most this; resultSize always.
#define BM_EVENTS_RESULT_MAX        4096
//  The history (SUBSCRIBE since): its bytes at most, and how long it is
//  kept after the last subscription ended (then dropped, and the next
//  event skips an id: a since before it answers reset).
#define BM_EVENTS_HISTORY_BYTES     (16 * 1024 * 1024)
#define BM_EVENTS_HISTORY_LINGER_MS 60000
//  A failed or cancelled event's message is cut to this many bytes.
#define BM_EVENTS_MESSAGE_MAX       512

//  The broker's subscription table and history (history: events kept at
//  most, 0 none), its metrics registered.
bm_events_t *bm_events_new (bm_broker_t *broker, int64_t max_subscriptions, int64_t history);
void bm_events_destroy (bm_events_t **self_p);

//  SUBSCRIBE and UNSUBSCRIBE from a client (the message being handled).
void bm_events_command (bm_broker_t *broker, zframe_t *identity, const bm_msg_t *msg);

//  Drop the subscriptions whose TTL ran out, and the history once it has
//  outlived the last subscription (the broker's tick).
void bm_events_tick (bm_broker_t *broker, int64_t now_mono);

//  Send an event of job to the subscriptions it matches.  text: the
//  reason of a stalled event; will_retry: a failed event's willRetry.
void bm_events_emit (bm_broker_t *broker, const bm_job_t *job, bm_event_t event,
                     const char *text, bool will_retry);

//  BM_JOB_EVENT, the hook: one branch while nobody subscribes (nor did in
//  the last BM_EVENTS_HISTORY_LINGER_MS).  Jobs that deliver webhooks have
//  no events.
#define BM_JOB_EVENT(broker, job, event, text, will_retry) \
    do { if ((broker)->events_on) bm_events_emit ((broker), (job), (event), (text), \
                                                   (will_retry)); } while (0)

#endif
