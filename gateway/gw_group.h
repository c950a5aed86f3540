/*  gw_group.h - the broker link's SUBMIT groups: the SUBMITs of concurrent
    HTTP requests that the link sends as one SUBMIT_MANY (docs/protocol.md
    section 4a), and the split of its ACCEPTED_MANY back into one answer
    per request.

    Group commit: the link sends what its handlers queued since its last
    turn; one SUBMIT goes as it is (nothing is waited for: no added latency
    at low load), several go as one SUBMIT_MANY under a "req" of their own.
    The group remembers which requests' "req" numbers it carried, in
    order, until the answer comes:

      ACCEPTED_MANY  item i becomes the answer of request i: an ACCEPTED
                     {req, jobId, duplicate, position?, delayed?}, or a
                     REJECTED {req, code, message} for a refused item;
      REJECTED       (the whole message: shutting_down, not_leader with
                     its leader...) becomes each request's REJECTED;
      anything else  each request gets a copy with its own "req".

    So a handler sees exactly the answer its SUBMIT alone would have had.

    Not thread-safe: only the link thread uses it.  */
#ifndef GW_GROUP_H
#define GW_GROUP_H

#include "bm_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

//  At most this many bytes of SUBMIT bodies go in one SUBMIT_MANY (the
//  broker's MAX_FRAME_BYTES is 2 MiB by default).
#define GW_GROUP_MAX_BYTES      (1024 * 1024)

typedef struct _gw_group_t gw_group_t;

gw_group_t *gw_group_new (void);
void gw_group_destroy (gw_group_t **self_p);

//  The SUBMIT_MANY body {req: group_req, jobs: [...]} of count SUBMIT
//  bodies (not closed here) into out (initialised here).  0, or -1 on no
//  memory (out then holds nothing).
int gw_group_encode (int64_t group_req, zmq_msg_t *bodies, size_t count, zmq_msg_t *out);

//  Remember a group sent at now_ms: its "req" and the reqs of its
//  requests, in order (copied).  0, or -1 on no memory.
int gw_group_remember (gw_group_t *self, int64_t group_req, const int64_t *reqs, size_t count,
                       int64_t now_ms);

//  Is req a group's?  Then split its answer (not taken) into one answer
//  per request: *answers and *reqs (count in *count; caller destroys each
//  answer, frees both arrays), and forget the group.  An answer that
//  cannot be made is NULL in *answers.  Returns false when req is no
//  group's.
bool gw_group_split (gw_group_t *self, int64_t group_req, const bm_msg_t *reply,
                     bm_msg_t ***answers, int64_t **reqs, size_t *count);

//  Forget every group (the connection is gone: their requests have failed)
//  or those sent before now_ms - max_age_ms (their requests have timed out).
void gw_group_forget (gw_group_t *self, int64_t now_ms, int64_t max_age_ms);

//  How many groups are remembered.
size_t gw_group_size (gw_group_t *self);

//  Self test.
void gw_group_test (bool verbose);

#endif
