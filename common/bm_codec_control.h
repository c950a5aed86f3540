/*  bm_codec_control.h - the bodies of the control commands (BMC01):
    QUEUE (pause, resume, drain, clean a bot type) and SCHEDULE (repeatable
    jobs).  REMOVE and PROMOTE carry {req, jobId} (bm_codec_job_ref_t).
    Decoders follow the rules of bm_codec.h: unknown keys ignored, a field
    of the wrong type or range is bad_request naming it.  */
#ifndef BM_CODEC_CONTROL_H
#define BM_CODEC_CONTROL_H

#include "bm_codec.h"
#include "bm_tz.h"

//  QUEUE {req, botType, action, state?, olderThanMs?, rate?, limit?}
//  action "pause", "resume", "drain", "clean", "rate" or "retry"; clean
//  needs state ("completed", "failed" or "cancelled") and takes
//  olderThanMs (>= 0, default 0); rate needs rate (RATE_<TYPE>'s text,
//  "N/PERIOD" or "0", read by the broker); retry takes state ("failed",
//  the default, or "cancelled"), olderThanMs and limit (1 to
//  BM_QUEUE_RETRY_MAX, the default).
typedef struct {
    bool has_req;
    int64_t req;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    char action [8];
    char state [BM_MAX_STATE_LEN + 1];  //  "" unless clean or retry
    int64_t older_than_ms;
    int64_t limit;                      //  retry: jobs at most (0 unless retry)
    char rate [32];                     //  "" unless rate
} bm_codec_queue_t;

int bm_codec_queue_decode (const bm_msg_t *msg, bm_codec_queue_t *self, bm_codec_error_t *error);
void bm_codec_queue_encode (const bm_codec_queue_t *self, bm_packer_t *packer);

//  SCHEDULE {req, action, ...}: action "add" (with the schedule's fields
//  below), "list", or "remove" (with key).  A schedule: key (a job-id-like
//  name, at most BM_MAX_SCHEDULE_KEY_LEN), botType, payload, exactly one of
//  cron (5 fields, with tz, a TZ database zone, default UTC) and everyMs
//  (>= BM_MIN_EVERY_MS), and options limit (runs, 0 = no limit), startAt,
//  endAt (epoch ms), priority, webhookUrl.
#define BM_MAX_SCHEDULE_KEY_LEN 64
#define BM_MIN_EVERY_MS         100         //  A run at most every 100 ms
typedef struct {
    bool has_req;
    int64_t req;
    char action [8];
    char key [BM_MAX_SCHEDULE_KEY_LEN + 1];
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    bm_codec_value_t payload;           //  data NULL: absent (nil)
    char cron [256];                    //  "" when everyMs
    char tz [BM_TZ_MAX_NAME + 1];       //  "" = UTC
    int64_t every_ms;                   //  0 when cron
    int64_t limit;                      //  0: no limit
    int64_t start_at, end_at;           //  0: none
    bool has_priority;
    int64_t priority;
    bm_codec_str_t webhook_url;
} bm_codec_schedule_t;

int bm_codec_schedule_decode (const bm_msg_t *msg, bm_codec_schedule_t *self,
                              bm_codec_error_t *error);
void bm_codec_schedule_encode (const bm_codec_schedule_t *self, bm_packer_t *packer);

void bm_codec_control_test (bool verbose);

#endif
