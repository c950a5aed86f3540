/*  bm_store_group.h - a group of Redis writes, sent as one.

    The broker's store (bm_store) sends the writes of one loop turn as one
    group: the writes as RESP arrays, each answered, written to the socket
    together; the group counts as written once every answer came and none
    was an error.  A group also knows each write's callback and whether it
    is sent again after a disconnect.  With fencing (standby
    brokers) or Sentinel, the same writes go as one EVAL of a script that
    runs them only while the epoch counter holds the leader's epoch.

    With fencing alone (no Sentinel) the writes stay plain commands in a
    transaction that runs only while the epoch holds (bm_store_group_watch):
    Redis runs them natively, not through Lua, so fencing costs a few
    commands per group instead of a script call per write.

    This class builds the bytes; it opens no connection and calls no
    hiredis function.  The store owns the groups it creates.
*/
#ifndef BM_STORE_GROUP_H
#define BM_STORE_GROUP_H

#include "bm_store.h"

//  One write in a group: where its bytes are, and who to tell.
typedef struct {
    size_t offset;              //  Its RESP bytes in the group's buffer
    size_t size;
    bool retry;                 //  Send again after a disconnect
    bm_store_fn *fn;            //  Callback, may be NULL
    void *arg;
    bm_store_kept_fn *kept;     //  Told each time it is kept to send again, or NULL
    bool refused;               //  Plain: Redis refused it for good (fn gets the error)
} bm_store_entry_t;

typedef struct _bm_store_group_t bm_store_group_t;
struct _bm_store_group_t {
    bm_store_t *store;          //  Back pointer for the reply callback
    char *buf;                  //  RESP bytes
    size_t size, alloc;
    bm_store_entry_t *entries;  //  The writes, in order
    size_t count, alloc_entries;
    char error [160];           //  Redis's first error refusing the group, if any
    char refused [160];         //  Plain: the first error of a write refused for good
    size_t sent, answered;      //  Plain: writes sent with replies on, answered
    bool unanswered;            //  Plain: the connection went before an answer
    bool waited;                //  Sentinel mode: its last reply is WAIT's
    char marker [48];           //  Fenced: "<epoch>:<seq>", set iff it ran
    bm_store_group_t *prev, *next;  //  The store's list of groups in flight
};

//  A new group; its buffer starts with "CLIENT REPLY OFF", which the
//  transaction form sends first (the writes start after it).  size_hint: the bytes of the last
//  group sent (it reserves about as much; 0: a small buffer).
bm_store_group_t *bm_store_group_new (bm_store_t *store, size_t size_hint);

void bm_store_group_destroy (bm_store_group_t **self_p);

//  Append a write whose RESP bytes are ready at data.
void bm_store_group_add (bm_store_group_t *self, const char *data, size_t size, bool retry,
                         bm_store_fn *fn, void *arg);

//  Append a write of argc arguments, formatted as RESP into the group.
void bm_store_group_add_argv (bm_store_group_t *self, bool retry, bm_store_fn *fn, void *arg,
                              int argc, const char **argv, const size_t *argvlen);

//  Tell every write of the group that it failed (callbacks with NULL).
void bm_store_group_fail (bm_store_group_t *self);

//  The group as one EVAL of the fencing script, built in *buf (grown as
//  needed, *alloc its size).  key: the epoch counter's key, or NULL for no
//  fencing (Sentinel alone); epoch: the epoch the writes require.  Returns
//  the bytes built, 0 when out of memory.
size_t bm_store_group_fence (const bm_store_group_t *self, char **buf, size_t *alloc,
                             const char *key, const char *epoch);

//  The group as a transaction fenced by the epoch, built in *buf (grown as
//  needed, *alloc its size):
//
//      CLIENT REPLY OFF
//      WATCH <key>
//      EVAL <check> 1 <key> <epoch>      (another epoch: touches <key>)
//      MULTI
//      <the writes>
//      SET <marker_key> <marker>
//      EXEC
//      CLIENT REPLY ON                   (answered: +OK)
//
//  EXEC runs the writes only if <key> was not written since WATCH: the
//  check writes it back (same value) when it does not hold our epoch, and a
//  new leader's INCR writes it.  No reply but the last is sent; the caller
//  then asks "MGET <marker_key> <key>" (bm_store_group_verdict): the marker
//  is there iff EXEC ran.  The check is sent as EVAL, not EVALSHA: with
//  replies off a NOSCRIPT would go unseen and EXEC run unchecked.  Returns
//  the bytes built, 0 when out of memory.
size_t bm_store_group_watch (const bm_store_group_t *self, char **buf, size_t *alloc,
                             const char *key, const char *epoch,
                             const char *marker_key, const char *marker);

//  What the MGET after a watched group says: 0 the group ran; 1 it did not
//  and the epoch is another (fenced); -1 it did not, for another reason
//  (e.g. READONLY, OOM: refused, to be sent again).  why: a line for the log.
int bm_store_group_verdict (const redisReply *mget, const char *epoch, const char *marker,
                            char *why, size_t why_size);

void bm_store_group_test (bool verbose);

#endif
