/*  bm_worker_entry.h - a worker as the broker sees it (Majordomo's
    worker): its routing identity, name, bot types, credit, the jobs it
    runs and the jobs it was told to stop, its expiry.

    Ownership: the broker's workers table owns its entries; an entry owns
    its identity, its name, its stopping list and its last HEARTBEAT bots
    report, and only points at its services and jobs.  Registering with
    services, and what the worker commands do, are the broker's
    (bm_broker_workers.c).  Self-test: bm_worker_entry_test (CTest
    broker.unit.worker_entry).  */
#ifndef BM_WORKER_ENTRY_H
#define BM_WORKER_ENTRY_H

#include "bm_codec.h"
#include "bm_job.h"

//  A name's replacements in a row (protocol.md section 5, "One name, one
//  live worker"), carried from each entry to the one that replaces it: how
//  the broker tells two live processes sharing a name (they keep taking it
//  from each other) from a worker that reconnects or restarts.
#define BM_NAME_GONE_MAX        4       //  Replaced connections remembered
#define BM_NAME_WHO_LEN         80      //  "pid N at ADDRESS"
//  A streak ends after this long with no replacement: longer than a
//  botmesh-worker waits after it was replaced (30 s at most), so a
//  flapping pair stays one streak, and one ERROR.
#define BM_NAME_STREAK_QUIET_MS 60000
//  With no pid to recognise a connection by, a name replaced again this
//  soon is taken as flapping.
#define BM_NAME_FLAP_MS         10000

typedef struct {
    int64_t last_ms;            //  Mono ms of its last replacement, 0: none
    int64_t count;              //  Replacements in the streak
    char gone [BM_NAME_GONE_MAX][BM_NAME_WHO_LEN];
                                //  The connections it replaced, by who
                                //  (ring; "" unused or unknown)
    int gone_next;              //  The ring's next slot
    bool said;                  //  Its ERROR was logged
} bm_name_streak_t;

//  Update the old entry's streak (in place, to become the new entry's)
//  for a replacement at now_ms of the connection old_who by the one who
//  ("pid N at ADDRESS", "" when its READY gave no pid).  True when the
//  name flaps: who is a connection replaced earlier in the streak (a
//  replaced process came back: two live processes share the name), or,
//  with who unknown, the name was last replaced BM_NAME_FLAP_MS ago or
//  less.  When who is old_who (and known), the same process came back on
//  a new connection (a reset): a reconnect, false, and the streak is left
//  as it is.  Pure.
bool bm_name_streak_replace (bm_name_streak_t *self, int64_t now_ms, const char *who,
                             const char *old_who);

struct _bm_worker_entry_t {
    char *key;                  //  Routing identity as hex
    zframe_t *identity;         //  Routing identity
    char *name;                 //  As the worker calls itself
    char pubkey [41];           //  CURVE: the public key (Z85) of the
                                //  connection that registered it, else ""
    bm_service_t *services [BM_MAX_WORKER_TYPES];
    int service_count;
    int64_t credit;             //  Jobs it may run at once
    int64_t running;            //  Slots in use (jobs + stopping)
    bm_joblist_t jobs;          //  Jobs running here (not owned)
    zlistx_t *stopping;         //  Jobs told to stop, slot held until DONE
                                //  (bm_stopping_t, owned)
    int64_t expiry;             //  Mono ms: dead if silent until then
    int64_t heartbeat_at;       //  Mono ms: next heartbeat to send
    int64_t last_seen;          //  Epoch ms of its last message
    int64_t pid;
    char peer [48];             //  The address its READY came from (TCP),
                                //  else ""
    bm_name_streak_t streak;    //  Its name's replacements in a row
    bool hushed;                //  Replaced while its name flaps: its
                                //  "gone" line at debug level
    bool congested;             //  Its queue was full: no JOBs until heard from
    bool batch;                 //  READY said batch: JOB_MANY to it (protocol.md 5a)
    bool holding;               //  Its DONE_MANY is being read: no JOB until its end
    bm_codec_heartbeat_t *bots; //  Its warm bots per type, as its last
                                //  HEARTBEAT {bots} said (owned), or NULL
    zhashx_t *reported;         //  Ids its READY said it runs that the
                                //  broker has not recovered yet (keys
                                //  owned), or NULL
};

//  A job that ended while its bot still ran: the slot (credit and permit)
//  stays taken until the worker's DONE for it arrives.  With no service and
//  an empty reason: a job the worker's READY listed that the broker looks
//  up in Redis (its credit slot, no permit, held until the answer says
//  which CANCEL to send, or until the worker's DONE or RELEASE for it).
typedef struct {
    char id [BM_MAX_ID_LEN + 16];
    bm_service_t *service;      //  Whose permit it holds, or NULL
    char reason [24];           //  The CANCEL's reason (sent again to a
                                //  new connection under its name), or ""
} bm_stopping_t;

//  A worker that sent READY: key is its identity in hex (the table's key);
//  identity is copied.  No services yet, no jobs.
bm_worker_entry_t *bm_worker_entry_new (const char *key, zframe_t *identity, const char *name,
                                        int64_t credit);
//  Free it (not its jobs); *self_p becomes NULL.
void bm_worker_entry_destroy (bm_worker_entry_t **self_p);
//  Add a bot type it serves; false if it already did or serves
//  BM_MAX_WORKER_TYPES already.
bool bm_worker_entry_add_service (bm_worker_entry_t *self, bm_service_t *service);
//  Credit it has free (never below 0).
int64_t bm_worker_entry_free_credit (const bm_worker_entry_t *self);
//  Remember a job it was told to stop (CANCEL reason): its slot stays
//  taken until the worker's DONE or RELEASE for it.
void bm_worker_entry_stopping_add (bm_worker_entry_t *self, const char *job_id,
                                   bm_service_t *service, const char *reason);
//  True if the job is on the list (the worker was told to stop it).
bool bm_worker_entry_stopping_holds (bm_worker_entry_t *self, const char *job_id);
//  The reason it was told to stop the job, or NULL if it was not.
const char *bm_worker_entry_stopping_reason (bm_worker_entry_t *self, const char *job_id);
//  Take a stopping job off the list; its service (whose permit to give
//  back), or NULL if the job is not on it (or holds no permit).
bm_service_t *bm_worker_entry_stopping_take (bm_worker_entry_t *self, const char *job_id);

//  Self test.
void bm_worker_entry_test (bool verbose);

#endif
