/*  gw_group.c - the broker link's SUBMIT groups (SUBMIT_MANY out, one
    answer per request back).  */
#include "gw_group.h"
#include "bm_selftest.h"
#include "bm_codec_batch.h"

#include <stdlib.h>
#include <string.h>

//  One group in flight.
typedef struct {
    int64_t req;                        //  The SUBMIT_MANY's
    int64_t sent_ms;                    //  When sent (mono ms)
    size_t count;                       //  Requests in it
    int64_t *reqs;                      //  Their reqs, in order
} s_group_t;

struct _gw_group_t {
    s_group_t *groups;                  //  In flight, oldest first
    size_t size;                        //  Used
    size_t room;                        //  Allocated
};

gw_group_t *
gw_group_new (void)
{
    return (gw_group_t *) calloc (1, sizeof (gw_group_t));
}

void
gw_group_destroy (gw_group_t **self_p)
{
    if (*self_p) {
        gw_group_t *self = *self_p;
        gw_group_forget (self, 0, -1);
        free (self->groups);
        free (self);
        *self_p = NULL;
    }
}

int
gw_group_encode (int64_t group_req, zmq_msg_t *bodies, size_t count, zmq_msg_t *out)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    //  SUBMIT_MANY body: {req, jobs: [<SUBMIT body>, ...]}; each item's own
    //  "req" stays in it and is ignored by the broker.
    bm_codec_batch_begin (&packer, true, group_req, count);
    for (size_t i = 0; i < count; i++)
        bm_packer_write_raw (&packer, (const char *) zmq_msg_data (&bodies [i]),
                             zmq_msg_size (&bodies [i]));
    size_t size;
    char *data = bm_packer_detach (&packer, &size);
    if (!data || zmq_msg_init_size (out, size)) {
        free (data);
        zmq_msg_init (out);
        return -1;
    }
    memcpy (zmq_msg_data (out), data, size);
    free (data);
    return 0;
}

int
gw_group_remember (gw_group_t *self, int64_t group_req, const int64_t *reqs, size_t count,
                   int64_t now_ms)
{
    if (self->size == self->room) {
        size_t room = self->room ? self->room * 2 : 8;
        s_group_t *groups = (s_group_t *) realloc (self->groups, room * sizeof (s_group_t));
        if (!groups)
            return -1;
        self->groups = groups;
        self->room = room;
    }
    int64_t *copy = (int64_t *) malloc (count * sizeof (int64_t));
    if (!copy)
        return -1;
    memcpy (copy, reqs, count * sizeof (int64_t));
    self->groups [self->size++] = (s_group_t) { group_req, now_ms, count, copy };
    return 0;
}

//  A message of command whose body is map's keys but "req", and req.
static bm_msg_t *
s_with_req (int command, const msgpack_object *map, int64_t req)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    uint32_t keys = 0;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *key = &map->via.map.ptr [i].key;
        if (!(key->type == MSGPACK_OBJECT_STR && key->via.str.size == 3
        &&    memcmp (key->via.str.ptr, "req", 3) == 0))
            keys++;
    }
    bm_packer_t packer;
    bm_packer_init (&packer);
    msgpack_pack_map (&packer.pk, keys + 1);
    bm_pack_kv_int (&packer.pk, "req", req);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *key = &map->via.map.ptr [i].key;
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == 3
        &&  memcmp (key->via.str.ptr, "req", 3) == 0)
            continue;
        msgpack_pack_object (&packer.pk, *key);
        msgpack_pack_object (&packer.pk, map->via.map.ptr [i].val);
    }
    bm_msg_t *msg = NULL;
    if (!bm_packer_failed (&packer)) {
        uint8_t byte = (uint8_t) command;
        const char *code;
        msg = bm_msg_decode_raw (BM_CLIENT_HEADER, strlen (BM_CLIENT_HEADER), &byte, 1,
                                 packer.sbuf.data, packer.sbuf.size, SIZE_MAX, &code, NULL, 0);
    }
    bm_packer_destroy (&packer);
    return msg;
}

bool
gw_group_split (gw_group_t *self, int64_t group_req, const bm_msg_t *reply,
                bm_msg_t ***answers_p, int64_t **reqs_p, size_t *count)
{
    size_t index = 0;
    while (index < self->size && self->groups [index].req != group_req)
        index++;
    if (index == self->size)
        return false;
    s_group_t group = self->groups [index];
    memmove (&self->groups [index], &self->groups [index + 1],
             (self->size - index - 1) * sizeof (s_group_t));
    self->size--;

    bm_msg_t **answers = (bm_msg_t **) calloc (group.count, sizeof (bm_msg_t *));
    *answers_p = answers;
    *reqs_p = group.reqs;
    *count = group.count;
    if (!answers)
        return true;                    //  Every answer NULL: the calls fail
    bm_codec_batch_t items;
    bm_codec_error_t error;
    //  An ACCEPTED_MANY that does not decode, or holds fewer outcomes
    //  than the group's requests, leaves those answers NULL: the calls
    //  end EPROTO (sent, outcome unknown).
    if (bm_msg_command (reply) == BM_ACCEPTED_MANY) {
        if (bm_codec_batch_decode (reply, &items, &error) != 0)
            return true;
        bm_msg_t *item = bm_msg_new ();
        for (size_t i = 0; item && i < group.count; i++)
            if (bm_codec_batch_next (&items, item, &error) == 1) {
                bool refused = bm_obj_get (bm_msg_body (item), "code") != NULL;
                answers [i] = s_with_req (refused ? BM_REJECTED : BM_ACCEPTED,
                                          bm_msg_body (item), group.reqs [i]);
            }
        bm_msg_destroy (&item);
    }
    else
    for (size_t i = 0; i < group.count; i++)
        answers [i] = s_with_req (bm_msg_command (reply), bm_msg_body (reply), group.reqs [i]);
    return true;
}

void
gw_group_forget (gw_group_t *self, int64_t now_ms, int64_t max_age_ms)
{
    size_t kept = 0;
    for (size_t i = 0; i < self->size; i++) {
        if (max_age_ms >= 0 && self->groups [i].sent_ms >= now_ms - max_age_ms)
            self->groups [kept++] = self->groups [i];
        else
            free (self->groups [i].reqs);
    }
    self->size = kept;
}

size_t
gw_group_size (gw_group_t *self)
{
    return self->size;
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

static void
s_body (zmq_msg_t *msg, int64_t req, const char *bot_type)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    msgpack_pack_map (&packer.pk, 3);
    bm_pack_kv_int (&packer.pk, "req", req);
    bm_pack_kv_str (&packer.pk, "botType", bot_type);
    bm_pack_kv_int (&packer.pk, "payload", req);
    zmq_msg_init_size (msg, packer.sbuf.size);
    memcpy (zmq_msg_data (msg), packer.sbuf.data, packer.sbuf.size);
    bm_packer_destroy (&packer);
}

static bm_msg_t *
s_decode (int command, const char *data, size_t size)
{
    uint8_t byte = (uint8_t) command;
    const char *code;
    return bm_msg_decode_raw (BM_CLIENT_HEADER, 5, &byte, 1, data, size, SIZE_MAX, &code, NULL, 0);
}

void
gw_group_test (bool verbose)
{
    if (verbose)
        printf (" * gw_group: ");
    gw_group_t *self = gw_group_new ();
    CHECK (self);

    //  Three SUBMITs become one SUBMIT_MANY that the codec reads back.
    zmq_msg_t bodies [3], out;
    s_body (&bodies [0], 11, "python");
    s_body (&bodies [1], 12, "nope");
    s_body (&bodies [2], 13, "node");
    CHECK (gw_group_encode (100, bodies, 3, &out) == 0);
    bm_msg_t *many = s_decode (BM_SUBMIT_MANY, (const char *) zmq_msg_data (&out),
                               zmq_msg_size (&out));
    CHECK (many);
    bm_codec_batch_t items;
    bm_codec_error_t error;
    CHECK (bm_codec_batch_decode (many, &items, &error) == 0 && items.count == 3 && items.req == 100);
    bm_msg_t *item = bm_msg_new ();
    bm_codec_submit_t submit;
    CHECK (bm_codec_batch_next (&items, item, &error) == 1);
    CHECK (bm_codec_batch_next (&items, item, &error) == 1);
    CHECK (bm_codec_submit_decode (item, &submit, &error) == 0 && streq (submit.bot_type, "nope"));
    bm_msg_destroy (&item);
    bm_msg_destroy (&many);
    for (int i = 0; i < 3; i++)
        zmq_msg_close (&bodies [i]);
    zmq_msg_close (&out);

    int64_t reqs [3] = { 11, 12, 13 };
    CHECK (gw_group_remember (self, 100, reqs, 3, 1000) == 0);
    CHECK (gw_group_size (self) == 1);

    //  Its ACCEPTED_MANY: one ACCEPTED or REJECTED per request, with its req.
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_batch_begin (&packer, true, 100, 3);
    bm_codec_outcome_t outcome = { .accepted = true };
    snprintf (outcome.ok.job_id, sizeof outcome.ok.job_id, "job-1");
    outcome.ok.has_position = true;
    outcome.ok.position = 4;
    bm_codec_outcome_encode (&outcome, &packer);
    outcome = (bm_codec_outcome_t) { .accepted = false };
    snprintf (outcome.rejected.code, sizeof outcome.rejected.code, "unknown_bot_type");
    outcome.rejected.message = (bm_codec_str_t) { "no bot type nope", 16 };
    bm_codec_outcome_encode (&outcome, &packer);
    outcome = (bm_codec_outcome_t) { .accepted = true };
    snprintf (outcome.ok.job_id, sizeof outcome.ok.job_id, "job-2");
    outcome.ok.delayed = true;
    bm_codec_outcome_encode (&outcome, &packer);
    bm_msg_t *reply = s_decode (BM_ACCEPTED_MANY, packer.sbuf.data, packer.sbuf.size);
    bm_packer_destroy (&packer);
    CHECK (reply);
    bm_msg_t **answers;
    int64_t *split_reqs;
    size_t count;
    CHECK (!gw_group_split (self, 99, reply, &answers, &split_reqs, &count));
    CHECK (gw_group_split (self, 100, reply, &answers, &split_reqs, &count));
    CHECK (count == 3 && split_reqs [0] == 11 && split_reqs [2] == 13);
    CHECK (gw_group_size (self) == 0);
    bm_codec_accepted_t accepted;
    bm_codec_rejected_t rejected;
    CHECK (bm_msg_command (answers [0]) == BM_ACCEPTED);
    CHECK (bm_codec_accepted_decode (answers [0], &accepted, &error) == 0);
    CHECK (accepted.req == 11 && streq (accepted.job_id, "job-1") && accepted.position == 4
           && !accepted.delayed);
    CHECK (bm_msg_command (answers [1]) == BM_REJECTED);
    CHECK (bm_codec_rejected_decode (answers [1], &rejected, &error) == 0);
    CHECK (rejected.req == 12 && streq (rejected.code, "unknown_bot_type"));
    CHECK (bm_codec_accepted_decode (answers [2], &accepted, &error) == 0);
    CHECK (accepted.req == 13 && accepted.delayed && !accepted.has_position);
    for (size_t i = 0; i < count; i++)
        bm_msg_destroy (&answers [i]);
    free (answers);
    free (split_reqs);
    bm_msg_destroy (&reply);

    //  A REJECTED of the whole message: each request's, leader kept.
    CHECK (gw_group_remember (self, 200, reqs, 2, 2000) == 0);
    bm_packer_init (&packer);
    msgpack_pack_map (&packer.pk, 4);
    bm_pack_kv_int (&packer.pk, "req", 200);
    bm_pack_kv_str (&packer.pk, "code", "not_leader");
    bm_pack_kv_str (&packer.pk, "message", "a standby");
    bm_pack_kv_str (&packer.pk, "leader", "tcp://10.0.0.2:5555");
    reply = s_decode (BM_REJECTED, packer.sbuf.data, packer.sbuf.size);
    bm_packer_destroy (&packer);
    CHECK (gw_group_split (self, 200, reply, &answers, &split_reqs, &count) && count == 2);
    char leader [64];
    CHECK (bm_codec_rejected_decode (answers [1], &rejected, &error) == 0 && rejected.req == 12
           && streq (rejected.code, "not_leader"));
    CHECK (bm_obj_strcpy (bm_msg_body (answers [1]), "leader", leader, sizeof leader)
           && streq (leader, "tcp://10.0.0.2:5555"));
    for (size_t i = 0; i < count; i++)
        bm_msg_destroy (&answers [i]);
    free (answers);
    free (split_reqs);
    bm_msg_destroy (&reply);

    //  An ACCEPTED_MANY that does not decode: no answer for any request
    //  (their outcome is unknown), never the ACCEPTED_MANY itself.
    CHECK (gw_group_remember (self, 201, reqs, 2, 2000) == 0);
    bm_packer_init (&packer);
    msgpack_pack_map (&packer.pk, 2);
    bm_pack_kv_int (&packer.pk, "req", 201);
    bm_pack_kv_int (&packer.pk, "jobs", 5);
    reply = s_decode (BM_ACCEPTED_MANY, packer.sbuf.data, packer.sbuf.size);
    bm_packer_destroy (&packer);
    CHECK (reply);
    CHECK (gw_group_split (self, 201, reply, &answers, &split_reqs, &count) && count == 2);
    CHECK (answers [0] == NULL && answers [1] == NULL);
    free (answers);
    free (split_reqs);
    bm_msg_destroy (&reply);

    //  Old groups are forgotten, new ones kept; all at once on a reset.
    CHECK (gw_group_remember (self, 300, reqs, 1, 1000) == 0);
    CHECK (gw_group_remember (self, 301, reqs, 1, 5000) == 0);
    gw_group_forget (self, 6000, 2000);
    CHECK (gw_group_size (self) == 1);
    gw_group_forget (self, 6000, -1);
    CHECK (gw_group_size (self) == 0);
    CHECK (gw_group_remember (self, 302, reqs, 3, 7000) == 0);
    gw_group_destroy (&self);
    gw_group_destroy (&self);
    CHECK (self == NULL);

    if (verbose)
        printf ("OK\n");
}
