/*  mk_mode.c - how the mock webhook receiver answers: its failure modes.  */
#include "mk_mode.h"
#include "bm_config.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MK_MAX_DELAY_MS  3600000    //  An hour: longer is a typo

void
mk_mode_defaults (mk_mode_t *mode)
{
    memset (mode, 0, sizeof *mode);
    mode->fail_status = 503;
    mode->success_status = 200;
}

//  A Retry-After value we are willing to send: printable ASCII, no CR/LF
//  (it goes into a header line verbatim).
static bool
s_valid_header_value (const char *text)
{
    size_t len = strlen (text);
    if (len >= MK_RETRY_AFTER_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (text [i] < 0x20 || text [i] > 0x7E)
            return false;
    return true;
}

int
mk_mode_from_env (mk_mode_t *mode)
{
    int64_t status, success, delay, fail_first;
    double fail_rate, drop_rate;
    if (bm_env_double ("MOCK_FAIL_RATE", mode->fail_rate, 0, 1, &fail_rate)
    ||  bm_env_int ("MOCK_FAIL_STATUS", mode->fail_status, 100, 599, &status)
    ||  bm_env_int ("MOCK_SUCCESS_STATUS", mode->success_status, 100, 599, &success)
    ||  bm_env_int ("MOCK_DELAY_MS", mode->delay_ms, 0, MK_MAX_DELAY_MS, &delay)
    ||  bm_env_int ("MOCK_FAIL_FIRST", mode->fail_first, 0, 1000000000, &fail_first)
    ||  bm_env_double ("MOCK_DROP_RATE", mode->drop_rate, 0, 1, &drop_rate))
        return -1;
    const char *retry_after = bm_env_str ("MOCK_RETRY_AFTER", mode->retry_after);
    if (!s_valid_header_value (retry_after)) {
        bm_error (NULL, "configuration: MOCK_RETRY_AFTER must be printable ASCII, at most %d bytes",
                  MK_RETRY_AFTER_MAX - 1);
        return -1;
    }
    mode->fail_rate = fail_rate;
    mode->fail_status = (int) status;
    mode->success_status = (int) success;
    mode->delay_ms = delay;
    mode->fail_first = fail_first;
    mode->drop_rate = drop_rate;
    if (retry_after != mode->retry_after)
        snprintf (mode->retry_after, sizeof mode->retry_after, "%s", retry_after);
    return 0;
}

//  A JSON number in [min, max] (integers only when integral is set).
static int
s_number (const json_t *value, double min, double max, bool integral, double *out)
{
    if (!json_is_number (value))
        return -1;
    double number = json_number_value (value);
    if (isnan (number) || number < min || number > max)
        return -1;
    if (integral && number != floor (number))
        return -1;
    *out = number;
    return 0;
}

int
mk_mode_apply_json (mk_mode_t *mode, const json_t *obj, char *error, size_t error_size)
{
    if (!json_is_object (obj)) {
        snprintf (error, error_size, "the mode must be a JSON object");
        return -1;
    }
    mk_mode_t next = *mode;
    const char *key;
    json_t *value;
    json_object_foreach ((json_t *) obj, key, value) {
        double number = 0;
        if (strcmp (key, "failRate") == 0) {
            if (s_number (value, 0, 1, false, &number))
                goto bad;
            next.fail_rate = number;
        }
        else
        if (strcmp (key, "dropRate") == 0) {
            if (s_number (value, 0, 1, false, &number))
                goto bad;
            next.drop_rate = number;
        }
        else
        if (strcmp (key, "status") == 0) {
            if (s_number (value, 100, 599, true, &number))
                goto bad;
            next.fail_status = (int) number;
        }
        else
        if (strcmp (key, "successStatus") == 0) {
            if (s_number (value, 100, 599, true, &number))
                goto bad;
            next.success_status = (int) number;
        }
        else
        if (strcmp (key, "delayMs") == 0) {
            if (s_number (value, 0, MK_MAX_DELAY_MS, true, &number))
                goto bad;
            next.delay_ms = (int64_t) number;
        }
        else
        if (strcmp (key, "failFirst") == 0) {
            if (s_number (value, 0, 1000000000, true, &number))
                goto bad;
            next.fail_first = (int64_t) number;
        }
        else
        if (strcmp (key, "retryAfter") == 0) {
            if (json_is_null (value) || (json_is_string (value) && !*json_string_value (value)))
                next.retry_after [0] = 0;
            else
            if (json_is_string (value) && s_valid_header_value (json_string_value (value)))
                snprintf (next.retry_after, sizeof next.retry_after, "%s", json_string_value (value));
            else
            if (s_number (value, 0, 1e9, true, &number) == 0)
                snprintf (next.retry_after, sizeof next.retry_after, "%lld", (long long) number);
            else
                goto bad;
        }
        else {
            snprintf (error, error_size,
                      "unknown mode key '%.64s' (known: failRate, status, successStatus, "
                      "delayMs, failFirst, retryAfter, dropRate)", key);
            return -1;
        }
        continue;
bad:
        snprintf (error, error_size, "mode key '%s' has a bad value", key);
        return -1;
    }
    *mode = next;
    return 0;
}

json_t *
mk_mode_to_json (const mk_mode_t *mode)
{
    return json_pack ("{s:f, s:i, s:i, s:I, s:I, s:o, s:f}",
                      "failRate", mode->fail_rate,
                      "status", mode->fail_status,
                      "successStatus", mode->success_status,
                      "delayMs", (json_int_t) mode->delay_ms,
                      "failFirst", (json_int_t) mode->fail_first,
                      "retryAfter", mode->retry_after [0]? json_string (mode->retry_after): json_null (),
                      "dropRate", mode->drop_rate);
}

mk_answer_t
mk_mode_decide (const mk_mode_t *mode, uint64_t arrival, double r1, double r2)
{
    mk_answer_t answer = { mode->success_status, mode->delay_ms, false, false, NULL };
    if ((int64_t) arrival <= mode->fail_first || r1 < mode->fail_rate) {
        answer.status = mode->fail_status;
        answer.failed = true;
        answer.retry_after = mode->retry_after [0]? mode->retry_after: NULL;
    }
    else
    if (r2 < mode->drop_rate) {
        answer.status = 0;
        answer.drop = true;
    }
    return answer;
}

//  --------------------------------------------------------------------------
//  Self test

void
mk_mode_test (bool verbose)
{
    (void) verbose;
    printf (" * mk_mode: ");
    mk_mode_t mode;
    mk_mode_defaults (&mode);
    mk_answer_t answer = mk_mode_decide (&mode, 1, 0.0, 0.0);
    BM_CHECK (answer.status == 200 && !answer.failed && !answer.drop && answer.delay_ms == 0);

    //  failFirst: arrivals 1 and 2 fail, 3 succeeds.
    char error [200];
    json_t *obj = json_loads ("{\"failFirst\": 2, \"status\": 503, \"retryAfter\": 2}", 0, NULL);
    BM_CHECK (mk_mode_apply_json (&mode, obj, error, sizeof error) == 0);
    json_decref (obj);
    answer = mk_mode_decide (&mode, 1, 0.99, 0.99);
    BM_CHECK (answer.status == 503 && answer.failed && strcmp (answer.retry_after, "2") == 0);
    BM_CHECK (mk_mode_decide (&mode, 2, 0.99, 0.99).status == 503);
    answer = mk_mode_decide (&mode, 3, 0.99, 0.99);
    BM_CHECK (answer.status == 200 && answer.retry_after == NULL);

    //  failRate: r1 below the rate fails.
    obj = json_loads ("{\"failFirst\": 0, \"failRate\": 0.3, \"retryAfter\": null}", 0, NULL);
    BM_CHECK (mk_mode_apply_json (&mode, obj, error, sizeof error) == 0);
    json_decref (obj);
    BM_CHECK (mk_mode_decide (&mode, 1, 0.29, 0.5).failed);
    BM_CHECK (!mk_mode_decide (&mode, 1, 0.30, 0.5).failed);
    BM_CHECK (mk_mode_decide (&mode, 1, 0.29, 0.5).retry_after == NULL);

    //  dropRate, delay, HTTP-date Retry-After.
    obj = json_loads ("{\"failRate\": 0, \"dropRate\": 0.5, \"delayMs\": 2000,"
                      " \"retryAfter\": \"Sun, 06 Nov 1994 08:49:37 GMT\"}", 0, NULL);
    BM_CHECK (mk_mode_apply_json (&mode, obj, error, sizeof error) == 0);
    json_decref (obj);
    answer = mk_mode_decide (&mode, 1, 0.5, 0.4);
    BM_CHECK (answer.drop && answer.status == 0 && answer.delay_ms == 2000);
    BM_CHECK (!mk_mode_decide (&mode, 1, 0.5, 0.6).drop);
    BM_CHECK (strcmp (mode.retry_after, "Sun, 06 Nov 1994 08:49:37 GMT") == 0);

    //  Bad input changes nothing.
    mk_mode_t before = mode;
    const char *bad [] = {
        "{\"failRate\": 1.5}", "{\"failRate\": \"x\"}", "{\"status\": 99}", "{\"status\": 503.5}",
        "{\"delayMs\": -1}", "{\"bogus\": 1}", "[1]", "{\"retryAfter\": \"a\\nb\"}",
        "{\"failFirst\": 2, \"status\": 1000}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        obj = json_loads (bad [i], 0, NULL);
        BM_CHECK (obj);
        BM_CHECK (mk_mode_apply_json (&mode, obj, error, sizeof error) == -1);
        json_decref (obj);
        BM_CHECK (memcmp (&before, &mode, sizeof mode) == 0);
    }
    json_t *json = mk_mode_to_json (&mode);
    BM_CHECK (json && json_integer_value (json_object_get (json, "delayMs")) == 2000);
    json_decref (json);
    printf ("OK\n");
}
