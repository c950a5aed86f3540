/*  mk_mode.h - how the mock webhook receiver answers: its failure modes.

    Tests script any receiver behaviour with these knobs, set at start from
    the environment and at run time with POST /mode (a JSON object holding
    any subset of the keys; the others keep their values):

        failRate     0..1   fraction of deliveries answered with `status`
        status       100..599, the failure answer (default 503)
        successStatus 100..599, the answer when not failing (default 200)
        delayMs      ms to wait before answering any delivery (a slow or
                     hanging receiver)
        failFirst    the first N arrivals of each delivery fail, a delivery
                     being identified by its webhook-id header, else by the
                     jobId in its JSON body (requests with neither share one
                     global count); later arrivals follow failRate
        retryAfter   a Retry-After value sent with failure answers: a number
                     of seconds or a string (an HTTP-date); null for none
        dropRate     0..1   fraction of deliveries whose connection is closed
                     without any answer (after delayMs)

    The decision is a pure function of the mode, the arrival number and two
    random numbers, so it is unit-tested.  */
#ifndef MK_MODE_H
#define MK_MODE_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#define MK_RETRY_AFTER_MAX  64

typedef struct {
    double fail_rate;               //  0..1
    int fail_status;                //  Status of a failure answer
    int success_status;             //  Status of a success answer
    int64_t delay_ms;               //  Wait before answering
    int64_t fail_first;             //  First N arrivals of each delivery fail
    char retry_after [MK_RETRY_AFTER_MAX];  //  "" for none
    double drop_rate;               //  0..1, close without answering
} mk_mode_t;

//  What to do with one delivery.
typedef struct {
    int status;                     //  0 when dropped
    int64_t delay_ms;               //  Wait this long first
    bool failed;                    //  Answered with the failure status
    bool drop;                      //  Close the connection, no answer
    const char *retry_after;        //  Header value or NULL (borrowed from the mode)
} mk_answer_t;

//  The defaults: everything succeeds at once with 200.
void mk_mode_defaults (mk_mode_t *mode);

//  Read MOCK_FAIL_RATE, MOCK_FAIL_STATUS, MOCK_SUCCESS_STATUS,
//  MOCK_DELAY_MS, MOCK_FAIL_FIRST, MOCK_RETRY_AFTER, MOCK_DROP_RATE over
//  the defaults.  Returns -1 (logged, naming the variable) on a bad value.
int mk_mode_from_env (mk_mode_t *mode);

//  Apply a JSON object to mode.  All or nothing: on a bad key or value,
//  returns -1 with a message in error and leaves mode unchanged.
int mk_mode_apply_json (mk_mode_t *mode, const json_t *obj, char *error, size_t error_size);

//  The mode as a JSON object (new reference).
json_t *mk_mode_to_json (const mk_mode_t *mode);

//  Decide the answer to the arrival-th arrival (1-based) of a delivery.
//  r1 and r2 are uniform random numbers in [0, 1).
mk_answer_t mk_mode_decide (const mk_mode_t *mode, uint64_t arrival, double r1, double r2);

void mk_mode_test (bool verbose);

#endif
