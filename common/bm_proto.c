/*  bm_proto.c - the botmesh wire protocol codec.  See docs/protocol.md.  */
#include "bm_proto.h"
#include "bm_backoff.h"

#include <string.h>

struct _bm_msg_t {
    bm_peer_t peer;             //  Client or worker, from the header
    int command;                //  Command byte
    const char *data;           //  The body bytes: buf, or a batch's item
                                //  borrowed from its batch; strings in body
                                //  point into them
    size_t size;                //  Bytes of the body at data
    char *buf;                  //  Our copy of a parsed frame's body
    size_t capacity;            //  Bytes allocated at buf
    bool shallow_batches;       //  Batch bodies: top level only (see .h)
    msgpack_zone zone;          //  Holds the decoded objects
    msgpack_object body;        //  The body, always a map
};

//  --------------------------------------------------------------------------
//  Walk one msgpack object without allocating, checking that every declared
//  size fits in what is left.  "pending" counts objects still to read; each
//  takes at least one byte, so pending can never exceed the bytes left.

static uint64_t
s_be (const unsigned char *p, int width)
{
    uint64_t value = 0;
    for (int i = 0; i < width; i++)
        value = (value << 8) | p [i];
    return value;
}

int
bm_msgpack_skip (const char *data, size_t size, size_t *offset)
{
    const unsigned char *p = (const unsigned char *) data;
    uint64_t pos = *offset;
    uint64_t pending = 1;
    while (pending > 0) {
        if (pos >= size)
            return -1;
        unsigned char c = p [pos++];
        pending--;
        uint64_t left = size - pos;
        uint64_t skip = 0;          //  Bytes of data after the type byte
        uint64_t width = 0;         //  Bytes holding a length
        uint64_t children = 0;      //  Objects inside a container
        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
            ;
        else
        if (c >= 0x80 && c <= 0x8f)
            children = 2 * (c & 0x0f);
        else
        if (c >= 0x90 && c <= 0x9f)
            children = c & 0x0f;
        else
        if (c >= 0xa0 && c <= 0xbf)
            skip = c & 0x1f;
        else {
            switch (c) {
                case 0xc4: case 0xd9: width = 1; break;             //  bin8, str8
                case 0xc5: case 0xda: width = 2; break;             //  bin16, str16
                case 0xc6: case 0xdb: width = 4; break;             //  bin32, str32
                case 0xc7: width = 1; skip = 1; break;              //  ext8 (+type)
                case 0xc8: width = 2; skip = 1; break;              //  ext16
                case 0xc9: width = 4; skip = 1; break;              //  ext32
                case 0xca: skip = 4; break;                         //  float32
                case 0xcb: skip = 8; break;                         //  float64
                case 0xcc: case 0xd0: skip = 1; break;
                case 0xcd: case 0xd1: skip = 2; break;
                case 0xce: case 0xd2: skip = 4; break;
                case 0xcf: case 0xd3: skip = 8; break;
                case 0xd4: skip = 2; break;                         //  fixext1
                case 0xd5: skip = 3; break;
                case 0xd6: skip = 5; break;
                case 0xd7: skip = 9; break;
                case 0xd8: skip = 17; break;
                case 0xdc: case 0xdd:                               //  array16/32
                case 0xde: case 0xdf:                               //  map16/32
                    width = (c == 0xdc || c == 0xde) ? 2 : 4;
                    if (left < width)
                        return -1;
                    children = s_be (p + pos, width);
                    if (c >= 0xde)
                        children *= 2;
                    pos += width;
                    left -= width;
                    width = 0;
                    break;
                default:
                    return -1;                                      //  0xc1
            }
        }
        if (width) {
            if (left < width)
                return -1;
            skip += s_be (p + pos, width);
            pos += width;
            left -= width;
        }
        if (skip > left)
            return -1;
        pos += skip;
        left -= skip;
        pending += children;
        if (pending > left)
            return -1;
    }
    *offset = (size_t) pos;
    return 0;
}

int
bm_msgpack_check (const char *data, size_t size)
{
    size_t offset = 0;
    return bm_msgpack_skip (data, size, &offset) == 0 && offset == size ? 0 : -1;
}

//  msgpack-c's unpacker holds at most MSGPACK_EMBED_STACK_SIZE (32, in
//  msgpack/unpack_define.h, not included by msgpack.h) open containers: a
//  container (even an empty one) that starts while that many non-empty
//  ones are open fails the whole unpack.  The codec fuzzer checks this
//  walk against msgpack_unpack.
#define S_UNPACK_OPEN_MAX 32

int
bm_msgpack_check_nesting (const char *data, size_t size)
{
    //  The items still to read in each open non-empty container
    uint64_t open [S_UNPACK_OPEN_MAX];
    int top = 0;
    size_t pos = 0;
    while (true) {
        if (pos >= size)
            return -1;
        const unsigned char *p = (const unsigned char *) data + pos;
        unsigned char c = *p;
        uint64_t children = 0;
        bool container = true;
        if (c >= 0x80 && c <= 0x8f)
            children = 2 * (uint64_t) (c & 0x0f);
        else
        if (c >= 0x90 && c <= 0x9f)
            children = c & 0x0f;
        else
        if ((c == 0xdc || c == 0xde) && size - pos >= 3)
            children = s_be (p + 1, 2) * (c == 0xde ? 2 : 1);
        else
        if ((c == 0xdd || c == 0xdf) && size - pos >= 5)
            children = s_be (p + 1, 4) * (c == 0xdf ? 2 : 1);
        else
            container = false;
        if (!container && (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3))
            pos++;                      //  fixint, nil, bool: inline, the most frequent
        else
        if (!container && c >= 0xa0 && c <= 0xbf) {
            if (size - pos - 1 < (size_t) (c & 0x1f))
                return -1;
            pos += 1 + (c & 0x1f);      //  fixstr
        }
        else
        if (container) {
            if (top >= S_UNPACK_OPEN_MAX)
                return -1;
            pos += c <= 0x9f ? 1 : (c == 0xdc || c == 0xde) ? 3 : 5;
            if (children > 0) {
                open [top++] = children;
                continue;
            }
        }
        else
        if (bm_msgpack_skip (data, size, &pos))
            return -1;
        //  One value read: it ends the containers it completes
        while (top > 0 && --open [top - 1] == 0)
            top--;
        if (top == 0)
            return pos == size ? 0 : -1;
    }
}

//  The top-level map's entries of data, the value's bytes of each key
//  asked for (the first entry with it): see bm_msgpack_peek.  whole: data
//  passed bm_msgpack_check, so the last entry's value ends where data does
//  (no walk over it).
static size_t
s_peek (const char *data, size_t size, bool whole, const char *const *keys, size_t count,
        const char **starts, size_t *lens)
{
    const unsigned char *p = (const unsigned char *) data;
    for (size_t k = 0; k < count; k++)
        lens [k] = 0;
    if (size == 0)
        return 0;
    size_t pos = 1;
    uint64_t entries;
    if (p [0] >= 0x80 && p [0] <= 0x8f)
        entries = p [0] & 0x0f;
    else
    if (p [0] == 0xde && size >= 3) {
        entries = s_be (p + 1, 2);
        pos = 3;
    }
    else
    if (p [0] == 0xdf && size >= 5) {
        entries = s_be (p + 1, 4);
        pos = 5;
    }
    else
        return 0;
    size_t found = 0;
    for (uint64_t i = 0; i < entries && found < count; i++) {
        //  A string key: fixstr, str8, str16 or str32.
        size_t key_start = pos, this_len = SIZE_MAX;
        unsigned char c = pos < size ? p [pos] : 0xc1;
        if (c >= 0xa0 && c <= 0xbf)
            this_len = c & 0x1f, key_start = pos + 1;
        else
        if (c == 0xd9 && pos + 1 < size)
            this_len = p [pos + 1], key_start = pos + 2;
        else
        if (c == 0xda && pos + 2 < size)
            this_len = (size_t) s_be (p + pos + 1, 2), key_start = pos + 3;
        else
        if (c == 0xdb && pos + 4 < size)
            this_len = (size_t) s_be (p + pos + 1, 4), key_start = pos + 5;
        if (bm_msgpack_skip (data, size, &pos))
            break;
        size_t value_start = pos;
        if (whole && i + 1 == entries)
            pos = size;
        else
        if (bm_msgpack_skip (data, size, &pos))
            break;
        for (size_t k = 0; k < count; k++)
            if (lens [k] == 0 && this_len == strlen (keys [k])
            &&  key_start + this_len <= value_start
            &&  memcmp (p + key_start, keys [k], this_len) == 0) {
                starts [k] = data + value_start;
                lens [k] = pos - value_start;
                found++;
                break;
            }
    }
    return found;
}

size_t
bm_msgpack_peek (const char *data, size_t size, const char *const *keys, size_t count,
                 const char **starts, size_t *lens)
{
    return s_peek (data, size, false, keys, count, starts, lens);
}

bool
bm_msg_raw_value (const bm_msg_t *self, const char *key, const char **start, size_t *len)
{
    //  The body passed bm_msgpack_check and is a map: walk its entries.
    if (self->body.type != MSGPACK_OBJECT_MAP)
        return false;
    return s_peek (self->data, self->size, true, &key, 1, start, len) == 1;
}

//  --------------------------------------------------------------------------

static bm_msg_t *
s_fail (const char **code, const char *what, char *reason, size_t reason_size,
        const char *message)
{
    *code = what;
    if (reason && reason_size)
        snprintf (reason, reason_size, "%s", message);
    return NULL;
}

//  A batch of docs/protocol.md section 4a/5a: {req?, jobs: [...]}
static bool
s_is_batch (bm_peer_t peer, int command)
{
    if (peer == BM_PEER_CLIENT)
        return command == BM_SUBMIT_MANY || command == BM_ACCEPTED_MANY
            || command == BM_RESULT_MANY;
    return command == BM_JOB_MANY || command == BM_DONE_MANY;
}

//  Unpack a batch body's top level: every entry as msgpack_unpack would,
//  but an array under "jobs" stays bytes (its value reads as nil) for
//  bm_msg_raw_value and bm_msg_parse_borrowed to read item by item.  The
//  body passed bm_msgpack_check_nesting.
static msgpack_unpack_return
s_unpack_shallow (bm_msg_t *self)
{
    const unsigned char *p = (const unsigned char *) self->data;
    size_t size = self->size, pos;
    uint64_t entries;
    if (p [0] >= 0x80 && p [0] <= 0x8f)
        entries = p [0] & 0x0f, pos = 1;
    else
    if (p [0] == 0xde)
        entries = s_be (p + 1, 2), pos = 3;
    else
    if (p [0] == 0xdf)
        entries = s_be (p + 1, 4), pos = 5;
    else {
        //  Not a map: the whole unpack says so, as for any other body
        size_t offset = 0;
        return msgpack_unpack (self->data, size, &offset, &self->zone, &self->body);
    }
    msgpack_object_kv *kv = NULL;
    if (entries) {
        //  Each entry takes two bytes at least: the check bounds entries
        kv = (msgpack_object_kv *) msgpack_zone_malloc (&self->zone,
                                                        (size_t) entries * sizeof (*kv));
        if (!kv)
            return MSGPACK_UNPACK_NOMEM_ERROR;
    }
    for (uint64_t i = 0; i < entries; i++) {
        msgpack_unpack_return rc = msgpack_unpack (self->data, size, &pos, &self->zone,
                                                   &kv [i].key);
        if (rc != MSGPACK_UNPACK_EXTRA_BYTES)
            return rc == MSGPACK_UNPACK_SUCCESS ? MSGPACK_UNPACK_PARSE_ERROR : rc;
        unsigned char c = p [pos];
        if (kv [i].key.type == MSGPACK_OBJECT_STR && kv [i].key.via.str.size == 4
        &&  memcmp (kv [i].key.via.str.ptr, "jobs", 4) == 0
        &&  ((c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd)) {
            kv [i].val.type = MSGPACK_OBJECT_NIL;
            //  Last (as batches are written): it ends with the body
            if (i + 1 == entries)
                pos = size;
            else
            if (bm_msgpack_skip (self->data, size, &pos))
                return MSGPACK_UNPACK_PARSE_ERROR;
            continue;
        }
        rc = msgpack_unpack (self->data, size, &pos, &self->zone, &kv [i].val);
        if (rc != MSGPACK_UNPACK_EXTRA_BYTES && rc != MSGPACK_UNPACK_SUCCESS)
            return rc;
        if ((rc == MSGPACK_UNPACK_SUCCESS) != (i + 1 == entries))
            return MSGPACK_UNPACK_PARSE_ERROR;
    }
    if (entries == 0 && pos != size)
        return MSGPACK_UNPACK_PARSE_ERROR;
    self->body.type = MSGPACK_OBJECT_MAP;
    self->body.via.map.size = (uint32_t) entries;
    self->body.via.map.ptr = kv;
    return MSGPACK_UNPACK_SUCCESS;
}

bm_msg_t *
bm_msg_new (void)
{
    bm_msg_t *self = (bm_msg_t *) zmalloc (sizeof (bm_msg_t));
    msgpack_zone_init (&self->zone, 2048);
    return self;
}

int
bm_msg_parse (bm_msg_t *self, const void *header, size_t header_size,
              const void *command, size_t command_size,
              const void *body, size_t body_size, size_t max_frame,
              const char **code, char *reason, size_t reason_size)
{
    bm_peer_t peer;
    msgpack_zone_clear (&self->zone);
    self->body.type = MSGPACK_OBJECT_NIL;
    if (header_size == BM_HEADER_LEN && memcmp (header, BM_CLIENT_HEADER, BM_HEADER_LEN) == 0)
        peer = BM_PEER_CLIENT;
    else
    if (header_size == BM_HEADER_LEN && memcmp (header, BM_WORKER_HEADER, BM_HEADER_LEN) == 0)
        peer = BM_PEER_WORKER;
    else {
        s_fail (code, "bad_header", reason, reason_size,
                "frame 0 must be the protocol header BMC01 or BMW01");
        return -1;
    }
    if (command_size != 1) {
        s_fail (code, "bad_command", reason, reason_size, "frame 1 must be one command byte");
        return -1;
    }
    if (body_size > max_frame) {
        s_fail (code, "bad_frame", reason, reason_size,
                "frame 2 is larger than the maximum frame size");
        return -1;
    }
    self->command = *(const unsigned char *) command;
    bool shallow = self->shallow_batches && s_is_batch (peer, self->command);
    //  A shallow batch is walked once, for its form and its nesting
    //  together (no whole unpack will find too deep a nesting); which of
    //  the two failed is told apart on failure only.
    bool formed = body_size > 0, too_deep = false;
    if (formed && shallow) {
        if (bm_msgpack_check_nesting ((const char *) body, body_size)) {
            formed = bm_msgpack_check ((const char *) body, body_size) == 0;
            too_deep = formed;
        }
    }
    else
    if (formed)
        formed = bm_msgpack_check ((const char *) body, body_size) == 0;
    if (!formed) {
        s_fail (code, "bad_frame", reason, reason_size,
                "frame 2 is not one well-formed msgpack object");
        return -1;
    }
    if (body_size > self->capacity) {
        free (self->buf);
        self->capacity = body_size < 4096 ? 4096 : body_size;
        self->buf = (char *) malloc (self->capacity);
        if (!self->buf) {
            self->capacity = 0;
            self->data = NULL;
            self->size = 0;
            s_fail (code, "bad_frame", reason, reason_size,
                    "no memory for frame 2 of this size");
            return -1;
        }
    }
    memcpy (self->buf, body, body_size);
    self->data = self->buf;
    self->size = body_size;
    self->peer = peer;
    msgpack_unpack_return rc;
    if (too_deep)
        rc = MSGPACK_UNPACK_NOMEM_ERROR;       //  As msgpack-c's unpacker fails
    else
    if (shallow)
        rc = s_unpack_shallow (self);
    else {
        size_t offset = 0;
        rc = msgpack_unpack (self->data, body_size, &offset, &self->zone, &self->body);
    }
    if (rc != MSGPACK_UNPACK_SUCCESS || self->body.type != MSGPACK_OBJECT_MAP) {
        s_fail (code, "bad_frame", reason, reason_size,
                rc == MSGPACK_UNPACK_SUCCESS
                ? "frame 2 must be a msgpack map"
                : "frame 2 could not be decoded (nested too deeply?)");
        self->body.type = MSGPACK_OBJECT_NIL;
        return -1;
    }
    return 0;
}

int
bm_msg_parse_borrowed (bm_msg_t *self, bm_peer_t peer, int command,
                       const char *data, size_t size, size_t *used)
{
    msgpack_zone_clear (&self->zone);
    self->body.type = MSGPACK_OBJECT_NIL;
    self->peer = peer;
    self->command = command;
    self->data = data;
    self->size = 0;
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack (data, size, &offset, &self->zone, &self->body);
    if (rc != MSGPACK_UNPACK_SUCCESS && rc != MSGPACK_UNPACK_EXTRA_BYTES) {
        self->body.type = MSGPACK_OBJECT_NIL;
        self->data = NULL;
        return -1;
    }
    self->size = offset;
    *used = offset;
    if (self->body.type != MSGPACK_OBJECT_MAP) {
        self->body.type = MSGPACK_OBJECT_NIL;
        return 1;
    }
    return 0;
}

void
bm_msg_set_shallow_batches (bm_msg_t *self, bool shallow)
{
    self->shallow_batches = shallow;
}

bm_msg_t *
bm_msg_decode_raw (const void *header, size_t header_size,
                   const void *command, size_t command_size,
                   const void *body, size_t body_size, size_t max_frame,
                   const char **code, char *reason, size_t reason_size)
{
    bm_msg_t *self = bm_msg_new ();
    if (bm_msg_parse (self, header, header_size, command, command_size, body, body_size,
                      max_frame, code, reason, reason_size)) {
        bm_msg_destroy (&self);
        return NULL;
    }
    return self;
}

bm_msg_t *
bm_msg_decode (zmsg_t *frames, size_t max_frame,
               const char **code, char *reason, size_t reason_size)
{
    if (zmsg_size (frames) != 3)
        return s_fail (code, "bad_frame", reason, reason_size,
                       "a message must have exactly 3 frames");
    zframe_t *header = zmsg_first (frames);
    zframe_t *command = zmsg_next (frames);
    zframe_t *body = zmsg_next (frames);
    return bm_msg_decode_raw (zframe_data (header), zframe_size (header),
                              zframe_data (command), zframe_size (command),
                              zframe_data (body), zframe_size (body), max_frame,
                              code, reason, reason_size);
}

bm_msg_t *
bm_msg_copy (const bm_msg_t *self)
{
    const char *header = self->peer == BM_PEER_WORKER ? BM_WORKER_HEADER : BM_CLIENT_HEADER;
    unsigned char command = (unsigned char) self->command;
    const char *code;
    char reason [128];
    return bm_msg_decode_raw (header, BM_HEADER_LEN, &command, 1, self->data, self->size,
                              self->size, &code, reason, sizeof reason);
}

void
bm_msg_destroy (bm_msg_t **self_p)
{
    if (*self_p) {
        bm_msg_t *self = *self_p;
        msgpack_zone_destroy (&self->zone);
        free (self->buf);
        free (self);
        *self_p = NULL;
    }
}

bm_peer_t
bm_msg_peer (const bm_msg_t *self)
{
    return self->peer;
}

int
bm_msg_command (const bm_msg_t *self)
{
    return self->command;
}

const msgpack_object *
bm_msg_body (const bm_msg_t *self)
{
    return &self->body;
}

//  --------------------------------------------------------------------------
//  Accessors

const msgpack_object *
bm_obj_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t key_len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == key_len
        &&  memcmp (k->via.str.ptr, key, key_len) == 0)
            return &map->via.map.ptr [i].val;
    }
    return NULL;
}

bool
bm_obj_str (const msgpack_object *map, const char *key, const char **str, size_t *len)
{
    const msgpack_object *o = bm_obj_get (map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return false;
    *str = o->via.str.ptr;
    *len = o->via.str.size;
    return true;
}

bool
bm_obj_strcpy (const msgpack_object *map, const char *key, char *buf, size_t size)
{
    const char *str;
    size_t len;
    if (!bm_obj_str (map, key, &str, &len) || len >= size || memchr (str, 0, len))
        return false;
    memcpy (buf, str, len);
    buf [len] = 0;
    return true;
}

bool
bm_obj_int (const msgpack_object *map, const char *key, int64_t *value)
{
    const msgpack_object *o = bm_obj_get (map, key);
    if (!o)
        return false;
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT64_MAX)
            return false;
        *value = (int64_t) o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *value = o->via.i64;
        return true;
    }
    return false;
}

bool
bm_obj_bool (const msgpack_object *map, const char *key, bool *value)
{
    const msgpack_object *o = bm_obj_get (map, key);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return false;
    *value = o->via.boolean;
    return true;
}

int
bm_obj_depth (const msgpack_object *obj)
{
    int deepest = 0;
    if (obj->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < obj->via.array.size; i++) {
            int d = bm_obj_depth (&obj->via.array.ptr [i]);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    if (obj->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < obj->via.map.size; i++) {
            int d = bm_obj_depth (&obj->via.map.ptr [i].val);
            int k = bm_obj_depth (&obj->via.map.ptr [i].key);
            if (d > deepest)
                deepest = d;
            if (k > deepest)
                deepest = k;
        }
        return deepest + 1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Packing

void
bm_pack_strn (msgpack_packer *pk, const char *str, size_t len)
{
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, str, len);
}

void
bm_pack_str (msgpack_packer *pk, const char *str)
{
    bm_pack_strn (pk, str, strlen (str));
}

void
bm_pack_kv_str (msgpack_packer *pk, const char *key, const char *value)
{
    bm_pack_str (pk, key);
    bm_pack_str (pk, value);
}

void
bm_pack_kv_int (msgpack_packer *pk, const char *key, int64_t value)
{
    bm_pack_str (pk, key);
    msgpack_pack_int64 (pk, value);
}

void
bm_pack_kv_bool (msgpack_packer *pk, const char *key, bool value)
{
    bm_pack_str (pk, key);
    if (value)
        msgpack_pack_true (pk);
    else
        msgpack_pack_false (pk);
}

void
bm_pack_backoff (msgpack_packer *pk, const bm_backoff_t *backoff)
{
    msgpack_pack_map (pk, 3);
    bm_pack_kv_str (pk, "type", bm_backoff_type_name (backoff->type));
    bm_pack_kv_int (pk, "delayMs", backoff->delay_ms);
    if (backoff->jitter_pm == 0 || backoff->jitter_pm == BM_BACKOFF_FULL_JITTER)
        bm_pack_kv_bool (pk, "jitter", backoff->jitter_pm != 0);
    else {
        bm_pack_str (pk, "jitter");
        msgpack_pack_double (pk, (double) backoff->jitter_pm / BM_BACKOFF_FULL_JITTER);
    }
}

zmsg_t *
bm_msg_build (const char *header, int command, const char *body, size_t size)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addmem (msg, header, BM_HEADER_LEN);
    unsigned char byte = (unsigned char) command;
    zmsg_addmem (msg, &byte, 1);
    zmsg_addmem (msg, body, size);
    return msg;
}

int
bm_msg_send_to (zsock_t *sock, const void *identity, size_t identity_size,
                const char *header, int command, const char *body, size_t size)
{
    void *handle = zsock_resolve (sock);
    unsigned char byte = (unsigned char) command;
    //  ZeroMQ sends the parts of a message all or none: a failure on the
    //  first part means nothing went out.
    if (identity && zmq_send (handle, identity, identity_size, ZMQ_SNDMORE) == -1)
        return -1;
    if (zmq_send (handle, header, BM_HEADER_LEN, ZMQ_SNDMORE) == -1
    ||  zmq_send (handle, &byte, 1, ZMQ_SNDMORE) == -1
    ||  zmq_send (handle, body, size, 0) == -1)
        return -1;
    return 0;
}

int
bm_msg_send (zsock_t *sock, zframe_t *identity, const char *header,
             int command, const char *body, size_t size)
{
    return bm_msg_send_to (sock, identity ? zframe_data (identity) : NULL,
                           identity ? zframe_size (identity) : 0,
                           header, command, body, size);
}

const char *
bm_command_name (bm_peer_t peer, int command)
{
    static const char *client [] = { NULL, "SUBMIT", "STATUS", "CANCEL", "STATS",
                                     "RETRY", "REDELIVER", "LIST", "PING", "METRICS",
                                     "SUBMIT_MANY", "QUEUE", "REMOVE", "PROMOTE", "SCHEDULE",
                                     "SUBSCRIBE", "UNSUBSCRIBE" };
    static const char *client_replies [] = { NULL, "ACCEPTED", "REJECTED", "REPLY", "RESULT",
                                             "ACCEPTED_MANY", "RESULT_MANY", "EVENT" };
    static const char *worker [] = { NULL, "READY", "JOB", "PROGRESS", "DONE", "HEARTBEAT",
                                     "DISCONNECT", "CANCEL", "RELEASE", "NACK", "JOB_MANY",
                                     "DONE_MANY" };
    if (peer == BM_PEER_CLIENT && command >= 1 && command <= BM_UNSUBSCRIBE)
        return client [command];
    if (peer == BM_PEER_CLIENT && command >= 0x81 && command <= BM_EVENT)
        return client_replies [command - 0x80];
    if (peer == BM_PEER_WORKER && command >= 1 && command <= BM_DONE_MANY)
        return worker [command];
    return "unknown";
}

//  --------------------------------------------------------------------------
//  Field validation

bool
bm_valid_bot_type (const char *str, size_t len)
{
    if (len == 0 || len > BM_MAX_BOT_TYPE_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = str [i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

const char *
bm_list_state (const char *state)
{
    static const char *states [][2] = {
        { "queued", "queued" }, { "running", "running" }, { "delayed", "delayed" },
        { "waiting-children", "waiting-children" }, { "completed", "completed" }, { "failed", "failed" }, { "cancelled", "cancelled" },
        { "waiting", "queued" }, { "wait", "queued" }, { "active", "running" } };
    for (size_t i = 0; state && i < sizeof states / sizeof states [0]; i++)
        if (streq (state, states [i][0]))
            return states [i][1];
    return NULL;
}

const char *bm_webhook_state_names [] = { "pending", "retrying", "delivered", "failed" };

int
bm_webhook_state (const char *state)
{
    for (int i = 0; state && i < BM_WEBHOOK_STATES; i++)
        if (streq (state, bm_webhook_state_names [i]))
            return i;
    return -1;
}

bool
bm_valid_id (const char *str, size_t len)
{
    if (len == 0 || len > BM_MAX_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) str [i] <= 0x20 || (unsigned char) str [i] >= 0x7f)
            return false;
    return true;
}

bool
bm_valid_url (const char *str, size_t len)
{
    if (len > BM_MAX_URL_LEN)
        return false;
    size_t scheme;
    if (len > 7 && strncasecmp (str, "http://", 7) == 0)
        scheme = 7;
    else
    if (len > 8 && strncasecmp (str, "https://", 8) == 0)
        scheme = 8;
    else
        return false;
    //  A host must follow the scheme; printable ASCII only (no spaces,
    //  control bytes or raw UTF-8 such as U+2028 or bidi controls: a URL
    //  carries anything else percent-encoded).
    if (str [scheme] == '/' || str [scheme] == '?' || str [scheme] == '#')
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char) str [i] <= 0x20 || (unsigned char) str [i] >= 0x7f)
            return false;
    return true;
}

//  --------------------------------------------------------------------------
//  A body being built

//  msgpack-c ignores what its write callback returns: remember a failure.
static int
s_packer_write (void *data, const char *buf, size_t len)
{
    bm_packer_t *self = (bm_packer_t *) data;
    if (msgpack_sbuffer_write (&self->sbuf, buf, len)) {
        self->failed = true;
        return -1;
    }
    return 0;
}

void
bm_packer_init (bm_packer_t *self)
{
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_packer_init (&self->pk, self, s_packer_write);
    self->failed = false;
}

void
bm_packer_reset (bm_packer_t *self)
{
    self->sbuf.size = 0;
    self->failed = false;
}

bool
bm_packer_failed (const bm_packer_t *self)
{
    return self->failed;
}

void
bm_packer_write_raw (bm_packer_t *self, const char *data, size_t size)
{
    if (size)
        s_packer_write (self, data, size);
}

void
bm_packer_destroy (bm_packer_t *self)
{
    msgpack_sbuffer_destroy (&self->sbuf);
    msgpack_sbuffer_init (&self->sbuf);
}

char *
bm_packer_detach (bm_packer_t *self, size_t *size)
{
    char *data = NULL;
    *size = 0;
    if (!self->failed) {
        *size = self->sbuf.size;
        data = msgpack_sbuffer_release (&self->sbuf);
    }
    bm_packer_destroy (self);
    self->failed = false;
    return data;
}
