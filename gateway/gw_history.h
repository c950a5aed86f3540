/*  gw_history.h - metric snapshots from Redis for GET /api/history.

    The broker writes a JSON snapshot of its key series every
    METRICS_SNAPSHOT_INTERVAL with LPUSH + LTRIM to <prefix>{bm}:snapshots
    (newest first).  The gateway reads them with LRANGE over a synchronous
    hiredis connection; one gw_history_t per handler thread (hiredis
    contexts are not thread-safe), made lazily and kept for the thread's
    life.  Connect and command timeouts bound how long a handler waits;
    after a failure the thread waits GW_HISTORY_RETRY_MS before trying to
    connect again, so a dead Redis costs one fast 503, not a timeout per
    request.

    Under Redis Sentinel a gw_history_watch_t (one per gateway, on a
    thread of its own) follows the sentinels' +switch-master: each switch
    of the master counts, and a reader whose connection predates the last
    switch drops it at its next fetch and asks the sentinels again, instead
    of reading from a master that has become a replica.  */
#ifndef GW_HISTORY_H
#define GW_HISTORY_H

#include "bm_redis_url.h"

#include <jansson.h>
#include <stdbool.h>

#define GW_HISTORY_RETRY_MS     1000    //  Between reconnection attempts
#define GW_HISTORY_MAX_LIMIT    8640    //  24 h of snapshots at 10 s


typedef struct _gw_history_t gw_history_t;

//  A reader for url (copied) and the key prefix (copied); timeout_ms
//  bounds connecting and each command.  Does not connect yet.
gw_history_t *gw_history_new (const bm_redis_url_t *url, const char *prefix, int timeout_ms);

//  Redis Sentinel (bm_sentinel.h): ask these sentinels where the master
//  called name is at each connect, and reconnect after each switch that
//  watch (borrowed, may be NULL) reports.  Copied.
typedef struct _gw_history_watch_t gw_history_watch_t;
void gw_history_set_sentinels (gw_history_t *self, const char *sentinels, const char *name,
                               gw_history_watch_t *watch);
void gw_history_destroy (gw_history_t **self_p);

//  The newest `limit` snapshots as {"snapshots": [...]} oldest first
//  (caller owns), or NULL if Redis cannot be reached or answered badly.
//  Entries that are not valid JSON are skipped.
json_t *gw_history_fetch (gw_history_t *self, int limit);

//  Subscribe to +switch-master on the sentinels (copied), for the master
//  called name, on a thread of its own.  NULL if the list is not valid.
gw_history_watch_t *gw_history_watch_new (const char *sentinels, const char *name);
void gw_history_watch_destroy (gw_history_watch_t **self_p);

//  How many switches of the master the watch has seen.
unsigned gw_history_watch_switches (gw_history_watch_t *self);

void gw_history_test (bool verbose);

#endif
