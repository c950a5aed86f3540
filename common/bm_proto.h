/*  bm_proto.h - the botmesh wire protocol: names, limits and codec.

    docs/protocol.md is the specification; this header names every frame
    and command once.  A message is three frames:

        Frame 0: header, "BMC01" (client) or "BMW01" (worker)
        Frame 1: command, one byte
        Frame 2: body, one msgpack map

    The codec is apart from I/O: bm_msg_decode parses frames that some
    socket received and returns a message or NULL plus a reason; the
    bm_msg_send_* helpers build frames from an encoded body.  */
#ifndef BM_PROTO_H
#define BM_PROTO_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#define BM_CLIENT_HEADER    "BMC01"
#define BM_WORKER_HEADER    "BMW01"
#define BM_HEADER_LEN       5

//  Client commands (BMC01)
#define BM_SUBMIT           0x01
#define BM_STATUS           0x02
#define BM_CANCEL           0x03
#define BM_STATS            0x04
#define BM_RETRY            0x05
#define BM_REDELIVER        0x06
#define BM_LIST             0x07
#define BM_PING             0x08
#define BM_METRICS          0x09
#define BM_SUBMIT_MANY      0x0a        //  Batches (section 4a): several jobs,
#define BM_QUEUE            0x0B    //  pause, resume, drain, clean a bot type
#define BM_REMOVE           0x0C    //  delete a job that is not running
#define BM_PROMOTE          0x0D    //  a delayed job: due now
#define BM_SCHEDULE         0x0E    //  add, list, remove repeatable jobs
#define BM_SUBSCRIBE        0x0F    //  live job events: subscribe or renew
#define BM_UNSUBSCRIBE      0x10    //  live job events: end a subscription
#define BM_ACCEPTED         0x81
#define BM_REJECTED         0x82
#define BM_REPLY            0x83
#define BM_RESULT           0x84
#define BM_ACCEPTED_MANY    0x85        //  each item the single body
#define BM_RESULT_MANY      0x86
#define BM_EVENT            0x87    //  one job event, to a subscriber

//  Worker commands (BMW01)
#define BM_READY            0x01
#define BM_JOB              0x02
#define BM_PROGRESS         0x03
#define BM_DONE             0x04
#define BM_HEARTBEAT        0x05
#define BM_DISCONNECT       0x06
#define BM_WCANCEL          0x07
#define BM_RELEASE          0x08
#define BM_NACK             0x09
#define BM_JOB_MANY         0x0a        //  Batches (section 5a)
#define BM_DONE_MANY        0x0b

//  REJECTED store_unavailable's message while the broker reads its queues
//  back from Redis (a start or a failover: Redis itself is fine).  The
//  gateway passes this one on, any other store_unavailable message not.
//  Why drain and clean of the webhook type are refused (the broker's
//  bad_request, the gateway's invalid_bot_type): its queue holds the
//  deliveries of finished jobs' webhooks, and a dropped one would leave its
//  job's webhook.state pending for ever.  Pause and resume hold them back.
#define BM_TEXT_WEBHOOK_QUEUE "botType webhook is the queue of webhook deliveries: drain and " \
                              "clean would drop them (their jobs' webhooks would stay pending " \
                              "for ever); pause and resume it instead"
//  Why retry of the webhook type is refused (as drain and clean are): a
//  delivery that gave up is sent again by redelivering its job.
#define BM_TEXT_WEBHOOK_RETRY "botType webhook is the queue of webhook deliveries: a delivery " \
                              "that gave up is sent again by redelivering its job (REDELIVER, " \
                              "POST /job/{id}/redeliver), not by retry"
#define BM_TEXT_RECOVERING  "the broker is reading its queues back from Redis; try again shortly"
//  Why a bot type nobody named yet is refused store_unavailable for a
//  while after a broker's start or takeover (docs/protocol.md, SUBMIT).
#define BM_TEXT_TYPES_WAIT  "the broker started or took over moments ago and the workers are " \
                            "registering with it again; botType is not known yet; try again shortly"

//  The limits of docs/protocol.md, each named once.  Every component reads
//  them from here; a range a variable accepts (JOB_TIMEOUT_MS...) is
//  written with these names too.
//  Frames (section 2); MAX_FRAME_BYTES and MAX_PAYLOAD_BYTES default to:
#define BM_MAX_FRAME_BYTES      (2 * 1024 * 1024)
#define BM_MAX_PAYLOAD_BYTES    (1024 * 1024)
//  A day in ms: the longest job timeout, and the idempotency window's
//  default (IDEMPOTENCY_TTL_MS).
#define BM_DAY_MS               86400000LL
//  Fields (sections 2, 4, 5):
#define BM_MAX_BOT_TYPE_LEN     32          //  botType: [a-z0-9_-]{1,32}
#define BM_MAX_ID_LEN           128         //  jobId, idempotencyKey, worker name
#define BM_MAX_URL_LEN          2048        //  webhookUrl
#define BM_MAX_PRIORITY         2097152     //  BullMQ's own limit; 0 runs first
#define BM_DEFAULT_PRIORITY     3           //  A SUBMIT without priority: the
                                            //  original system's default, behind 0-2
#define BM_MAX_TIMEOUT_MS       BM_DAY_MS   //  timeoutMs: 1 ms .. one day
#define BM_MAX_ATTEMPTS         100         //  maxAttempts, attempts: 1..100
#define BM_MAX_DELAY_MS         (365 * BM_DAY_MS)   //  delayMs, runAt: up to a year ahead
#define BM_MAX_PROGRESS         100         //  progress: 0..100 (per cent)
#define BM_MAX_WORKER_TYPES     16          //  READY types: 1..16
#define BM_MAX_CREDIT           1000000     //  READY credit: 0..1000000
#define BM_MAX_READY_RUNNING    10000       //  READY running: 0..10000 job ids
#define BM_MAX_ERROR_CODE_LEN   63          //  DONE error.code: longer reads as bot_failed
#define BM_MAX_ERROR_MESSAGE_LEN 4095       //  DONE error.message: cut beyond
#define BM_MAX_JOB_LOG_LEN      16384       //  DONE log: its last bytes kept
#define BM_MAX_STATE_LEN        23          //  A job state name ("waiting-children")
#define BM_MAX_DEPENDS          100         //  SUBMIT dependsOn: 1..100 job ids
#define BM_MAX_LIMIT_NAME_LEN   15          //  DONE error.limit ("memory"); longer is dropped
#define BM_MAX_REASON_LEN       255         //  CANCEL / DISCONNECT reason
#define BM_MAX_DISCONNECT_BY_LEN 255        //  DISCONNECT by: longer is left out
#define BM_MAX_SIGNAL           127         //  RELEASE signal: 1..127, what a
                                            //  wait status can hold
#define BM_MAX_BATCH            1000        //  Items of a batch message: 1..1000
//  LIST limit: absent or below 1 reads as the default, above the maximum
//  as the maximum.
#define BM_LIST_DEFAULT_LIMIT   50
#define BM_LIST_MAX_LIMIT       500
//  QUEUE retry: jobs retried by one request, at most and by default (a
//  bigger backlog takes several requests: the answer says more).
#define BM_QUEUE_RETRY_MAX      1000
//  Containers a payload or result may nest: msgpack-c decodes at most 32
//  levels, and a REPLY wraps a result two levels deeper (body, job).
#define BM_MAX_NESTING          30

//  The built-in bot type of webhook deliveries (protocol.md section 6).
#define BM_WEBHOOK_TYPE         "webhook"

typedef enum { BM_PEER_CLIENT = 1, BM_PEER_WORKER = 2 } bm_peer_t;

//  A decoded message.  Owns its body (a msgpack zone).
typedef struct _bm_msg_t bm_msg_t;

//  Parse the frames of one message (the routing identity already removed).
//  Does not take the zmsg.  On failure returns NULL, sets *code to one of
//  "bad_header", "bad_command", "bad_frame" and writes a message into
//  reason.  max_frame is the largest body accepted.
bm_msg_t *bm_msg_decode (zmsg_t *frames, size_t max_frame,
                         const char **code, char *reason, size_t reason_size);

//  Same, from raw bytes (used by the fuzzer and tests).
bm_msg_t *bm_msg_decode_raw (const void *header, size_t header_size,
                             const void *command, size_t command_size,
                             const void *body, size_t body_size, size_t max_frame,
                             const char **code, char *reason, size_t reason_size);

void bm_msg_destroy (bm_msg_t **self_p);

//  A message of its own with the same peer, command and body bytes (a
//  batch's borrowed item included), for an answer that waits; NULL
//  without memory.
bm_msg_t *bm_msg_copy (const bm_msg_t *self);

//  For hot loops: one message object, parsed into again and again; its
//  buffer and msgpack zone are kept between messages (no allocation per
//  message once warm).  bm_msg_parse returns 0, or -1 with *code and reason
//  set as bm_msg_decode does; after -1 the message holds nothing.
bm_msg_t *bm_msg_new (void);
int bm_msg_parse (bm_msg_t *self, const void *header, size_t header_size,
                  const void *command, size_t command_size,
                  const void *body, size_t body_size, size_t max_frame,
                  const char **code, char *reason, size_t reason_size);
//  Batch bodies (SUBMIT_MANY, ACCEPTED_MANY, RESULT_MANY, JOB_MANY,
//  DONE_MANY) parsed into this message from now on are unpacked at their
//  top level only: the array under "jobs" stays the bytes received (the
//  key's value reads as nil) and bm_codec_batch_next unpacks one item
//  after the other from them, so no item is unpacked twice.  The body is
//  still walked whole, and refused exactly as a whole unpack refuses it
//  (malformed, or nested deeper than msgpack-c unpacks).  Off by default.
void bm_msg_set_shallow_batches (bm_msg_t *self, bool shallow);
//  Parse the object at data (one item of a batch that bm_msg_parse
//  accepted) as the body of a message of command from peer, borrowing
//  data: no copy and no check, so the caller keeps the batch message
//  alive and unchanged while this one is read.  *used is the object's
//  encoded size.  0; 1 if it is no map (the message holds nothing); -1
//  if msgpack-c could not unpack it (no memory).
int bm_msg_parse_borrowed (bm_msg_t *self, bm_peer_t peer, int command,
                           const char *data, size_t size, size_t *used);
bm_peer_t bm_msg_peer (const bm_msg_t *self);
int bm_msg_command (const bm_msg_t *self);
const msgpack_object *bm_msg_body (const bm_msg_t *self);

//  Check that data holds exactly one msgpack object whose declared string,
//  binary and container sizes all fit in the bytes given, so that
//  msgpack-c never reserves memory for data that is not there.
//  Returns 0 or -1.
int bm_msgpack_check (const char *data, size_t size);
//  Step over one msgpack object at data + *offset, with the same checks;
//  on 0 *offset is just past it.  Returns 0 or -1.
int bm_msgpack_skip (const char *data, size_t size, size_t *offset);
//  0 when data holds exactly one msgpack object, well formed, that
//  msgpack-c's unpacker can nest (it opens at most MSGPACK_EMBED_STACK_SIZE
//  non-empty containers at once); -1 when not.
int bm_msgpack_check_nesting (const char *data, size_t size);
//  The encoded bytes of the value under key in a parsed message's body
//  (the first entry with that string key, as bm_obj_get finds): borrowed
//  from the message, so a broker can keep a payload without re-encoding
//  it.  False when the key is absent.
bool bm_msg_raw_value (const bm_msg_t *self, const char *key, const char **start, size_t *len);

//  In a body that is not decoded (a frame over the size limit): for each of
//  count keys of its top-level map, the encoded bytes of its value (the
//  first entry with that string key) in starts/lens, lens 0 when absent.
//  Every other value is stepped over, never decoded (bm_msgpack_skip: a
//  string or binary of any size in one step, containers one step an item,
//  never past size); the walk stops once every key is found, or at the
//  first entry that is not well formed.  Returns how many keys were found.
size_t bm_msgpack_peek (const char *data, size_t size, const char *const *keys, size_t count,
                        const char **starts, size_t *lens);

//  Body accessors.  They return NULL / false when the key is absent or of
//  another type.  Strings are borrowed from the message (not terminated).
const msgpack_object *bm_obj_get (const msgpack_object *map, const char *key);
bool bm_obj_str (const msgpack_object *map, const char *key, const char **str, size_t *len);
bool bm_obj_int (const msgpack_object *map, const char *key, int64_t *value);
bool bm_obj_bool (const msgpack_object *map, const char *key, bool *value);
//  Copy a string field into buf (terminated); false if absent, not a
//  string, longer than buf, or holding a NUL byte.
bool bm_obj_strcpy (const msgpack_object *map, const char *key, char *buf, size_t size);

//  How deeply containers nest in obj (a scalar is 0, [] is 1).
int bm_obj_depth (const msgpack_object *obj);

//  A msgpack body being built: an sbuffer and a packer writing into it.
//  The packer points at the sbuffer, so the struct must not move once
//  initialised (keep it on the stack or in its owner).  Writes that find
//  no memory are dropped by msgpack-c; bm_packer_t checks: see
//  bm_packer_failed.
typedef struct {
    msgpack_sbuffer sbuf;       //  The bytes so far (sbuf.data, sbuf.size)
    msgpack_packer pk;          //  Packs into sbuf
    bool failed;                //  A write found no memory
} bm_packer_t;

//  Start an empty body.
void bm_packer_init (bm_packer_t *self);
//  Empty it again, keeping its memory (for a buffer reused per message).
void bm_packer_reset (bm_packer_t *self);
//  True if a write since init / reset found no memory: the bytes are
//  incomplete and must not be sent.
bool bm_packer_failed (const bm_packer_t *self);
//  Free its memory.
void bm_packer_destroy (bm_packer_t *self);
//  Append bytes that already are msgpack (a payload kept as received).
void bm_packer_write_raw (bm_packer_t *self, const char *data, size_t size);
//  Hand the bytes over: returns them (caller frees) and their size in
//  *size, and leaves the packer empty.  NULL if a write had failed.
char *bm_packer_detach (bm_packer_t *self, size_t *size);

//  Packing helpers for map entries.
void bm_pack_str (msgpack_packer *pk, const char *str);
void bm_pack_strn (msgpack_packer *pk, const char *str, size_t len);
void bm_pack_kv_str (msgpack_packer *pk, const char *key, const char *value);
void bm_pack_kv_int (msgpack_packer *pk, const char *key, int64_t value);
void bm_pack_kv_bool (msgpack_packer *pk, const char *key, bool value);
//  A backoff as the map {type, delayMs, jitter}; jitter is false, true
//  (full) or the fraction between.
struct bm_backoff_t;
void bm_pack_backoff (msgpack_packer *pk, const struct bm_backoff_t *backoff);

//  Build the three frames.  Returns a new zmsg (caller owns it).
zmsg_t *bm_msg_build (const char *header, int command, const char *body, size_t size);

//  Send a message on a DEALER (no identity) or, when identity is not NULL,
//  on the ROUTER to that peer.  Returns 0 or -1.  Sends straight with
//  zmq_send: no zmsg or zframe is built.
int bm_msg_send (zsock_t *sock, zframe_t *identity, const char *header,
                 int command, const char *body, size_t size);
int bm_msg_send_to (zsock_t *sock, const void *identity, size_t identity_size,
                    const char *header, int command, const char *body, size_t size);

//  A name for a command, for logs ("SUBMIT", "DONE", "0x7f").
const char *bm_command_name (bm_peer_t peer, int command);

//  A job id (or any C string) into a slot of size bytes, cut to fit: what
//  snprintf (dst, size, "%s", src) does, without its format parsing
//  (several copies a job in the broker and the workers).
static inline void
bm_id_copy (char *dst, size_t size, const char *src)
{
    size_t len = strlen (src);
    if (len >= size)
        len = size - 1;
    memcpy (dst, src, len);
    dst [len] = 0;
}

//  Validation of fields shared by the broker, the gateway and the clients.
bool bm_valid_bot_type (const char *str, size_t len);
bool bm_valid_id (const char *str, size_t len);
//  An http:// or https:// URL with a host, at most BM_MAX_URL_LEN bytes of
//  printable ASCII (0x21-0x7E: anything else must be percent-encoded).
bool bm_valid_url (const char *str, size_t len);
//  A state a job list filters on (LIST, GET /jobs), as the broker names it:
//  queued, running, delayed, completed, failed or cancelled, or BullMQ's
//  name of one (waiting and wait: queued; active: running).  NULL for
//  anything else, which is refused with BM_LIST_STATE_ERROR.
const char *bm_list_state (const char *state);
#define BM_LIST_STATE_ERROR "state must be one of: queued (or waiting, wait), running (or active), " \
                            "delayed, waiting-children, completed, failed, cancelled"
//  The states of a job's webhook (its record's webhook.state), in the
//  order of bm_webhook_state_names; a job list filters on them (LIST
//  webhook, GET /jobs?webhook=).
typedef enum {
    BM_WEBHOOK_PENDING,         //  A delivery is made, not yet tried
    BM_WEBHOOK_RETRYING,        //  Tried, waiting for its next attempt
    BM_WEBHOOK_DELIVERED,       //  The receiver answered 2xx
    BM_WEBHOOK_FAILED,          //  Given up (attempts spent, or not sendable)
    BM_WEBHOOK_STATES
} bm_webhook_state_t;
extern const char *bm_webhook_state_names [];
//  The webhook state named state, or -1 for anything else, which is
//  refused with BM_LIST_WEBHOOK_ERROR.
int bm_webhook_state (const char *state);
#define BM_LIST_WEBHOOK_ERROR "webhook must be one of: pending, retrying, delivered, failed"

#endif
