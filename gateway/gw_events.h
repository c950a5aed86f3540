/*  gw_events.h - the gateway's live job events: one broker subscription
    (SUBSCRIBE, docs/protocol.md) shared by every GET /events stream of
    this gateway, fanned out to them by their filters.

    The subscription exists while at least one stream is open: a thread
    makes it, renews it (every third of its TTL) and makes it again when it
    is lost (the link connected again, to this broker or another after a
    failover; the broker answered not_found).  Each stream then gets a
    `reset` item: events may have been lost meanwhile.  Events the broker
    sends right behind its answer (its replay, up to its whole history)
    are held until the hub has recorded the id and delivered them, after
    the `reset`, waiting for a stream's client to read when its queue is
    full.

    Each event's SSE id is the broker's event id.  The hub keeps the last
    GW_EVENTS_HISTORY events, in the broker's order without a hole: a
    stream opened with a Last-Event-ID gets those after it first (or a
    `reset` when it is not among them), a stream opened without one gets
    only the events after it opened; a new subscription (after a loss,
    or once a stream opens again) asks the broker for the events since the
    last one kept (SUBSCRIBE since), and only when the broker no longer has
    them do the streams get `reset`.  A gap in the
    broker's seq (events the broker dropped for this gateway, or the
    gateway's hold of a replay overran) gives each stream a `gap` item;
    so does a stream's own queue overflowing (its client reads too
    slowly).  Thread-safe.  */
#ifndef GW_EVENTS_H
#define GW_EVENTS_H

#include "gw_link.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _gw_events_t gw_events_t;
typedef struct _gw_stream_t gw_stream_t;

//  Items a stream holds for its client before it loses the oldest
//  coming ones (counted: a `gap` item says how many).
#define GW_EVENTS_STREAM_QUEUE  1024
//  Events the hub keeps for a Last-Event-ID (each an SSE block: up to
//  about 6 KB for a completed event with its result, 6 MB in all).
#define GW_EVENTS_HISTORY       1024
//  The subscription's TTL at the broker; renewed every third of it.
#define GW_EVENTS_TTL_MS        30000

//  The hub, on link (which it sets its push function on).
gw_events_t *gw_events_new (gw_link_t *link, int max_streams);
//  Stops its thread and ends the subscription.  No stream may be open.
void gw_events_destroy (gw_events_t **self_p);

//  A stream's filters: empty strings and a zero mask do not filter.
typedef struct {
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    char job_id [BM_MAX_ID_LEN + 1];
    uint32_t events;                    //  Bit per name of gw_events_name
} gw_events_filter_t;

//  The event names (BullMQ's, and cancelled), index = bit; NULL past the last.
const char *gw_events_name (int index);

//  Open a stream; NULL when max_streams are open already.  last_id: the
//  SSE id of the last event its client got (Last-Event-ID), or NULL.
gw_stream_t *gw_events_open (gw_events_t *self, const gw_events_filter_t *filter,
                             const char *last_id);
//  Wait up to timeout_ms for the subscription to exist; false if it did not
//  (or the broker refused it since the stream opened: gw_events_refused).
bool gw_events_wait_ready (gw_events_t *self, gw_stream_t *stream, int64_t timeout_ms);
//  True, with the broker's code and message, when it refused the last
//  SUBSCRIBE since a stream opened (MAX_SUBSCRIPTIONS reached, or 0).
bool gw_events_refused (gw_events_t *self, char *code, size_t code_size, char *message,
                        size_t message_size);
//  The next item for the stream's client, an SSE block (caller frees), or
//  NULL after timeout_ms or once gw_events_wake_all was called.
char *gw_events_next (gw_events_t *self, gw_stream_t *stream, int64_t timeout_ms);
void gw_events_close (gw_events_t *self, gw_stream_t **stream_p);
//  Wake every stream's waiter (the gateway is stopping).
void gw_events_wake_all (gw_events_t *self);
//  The socket of the stream's client connection (borrowed: it stays its
//  HTTP server's), for gw_events_cut_all; -1 (the default) none.
void gw_events_set_socket (gw_events_t *self, gw_stream_t *stream, int socket);
//  Shut both directions of every open stream's socket: its write fails at
//  once, rather than blocking until the HTTP server's write timeout for a
//  client that stopped reading.  For the gateway's stop, after
//  gw_events_wake_all gave the streams a chance to end by themselves.
//  Returns how many it shut.
int gw_events_cut_all (gw_events_t *self);
//  Open streams now.
int gw_events_streams (gw_events_t *self);

//  Self test: a ROUTER in this process plays the broker.
void gw_events_test (bool verbose);

#endif
