/*  bm_common_test.c - self-tests of the codec, the JSON bridge and config.  */
#include "bm_proto.h"
#include "bm_selftest.h"
#include "bm_json.h"
#include "bm_utf8.h"
#include "bm_config.h"

#include <math.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) BM_CHECK (cond)

static void
test_roundtrip (void)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    msgpack_pack_map (&packer.pk, 3);
    bm_pack_kv_int (&packer.pk, "req", 7);
    bm_pack_kv_str (&packer.pk, "botType", "python");
    bm_pack_kv_bool (&packer.pk, "notify", true);
    zmsg_t *frames = bm_msg_build (BM_CLIENT_HEADER, BM_SUBMIT, packer.sbuf.data,
                                   packer.sbuf.size);
    const char *code = NULL;
    char reason [128];
    bm_msg_t *msg = bm_msg_decode (frames, BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
    CHECK (msg);
    if (msg) {
        CHECK (bm_msg_peer (msg) == BM_PEER_CLIENT);
        CHECK (bm_msg_command (msg) == BM_SUBMIT);
        int64_t req;
        CHECK (bm_obj_int (bm_msg_body (msg), "req", &req) && req == 7);
        char type [33];
        CHECK (bm_obj_strcpy (bm_msg_body (msg), "botType", type, sizeof type));
        CHECK (strcmp (type, "python") == 0);
        bool notify = false;
        CHECK (bm_obj_bool (bm_msg_body (msg), "notify", &notify) && notify);
        CHECK (!bm_obj_get (bm_msg_body (msg), "missing"));
        bm_msg_destroy (&msg);
    }
    zmsg_destroy (&frames);
    bm_packer_destroy (&packer);
}

static void
expect_reject (const char *header, const char *cmd, size_t cmd_size,
               const char *body, size_t size, const char *want)
{
    const char *code = NULL;
    char reason [128];
    bm_msg_t *msg = bm_msg_decode_raw (header, strlen (header), cmd, cmd_size, body, size,
                                       BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
    CHECK (msg == NULL);
    CHECK (code && strcmp (code, want) == 0);
    bm_msg_destroy (&msg);
}

static void
test_rejections (void)
{
    const char one = BM_SUBMIT;
    expect_reject ("BMX01", &one, 1, "\x80", 1, "bad_header");
    expect_reject ("BMC01", "\x01\x02", 2, "\x80", 1, "bad_command");
    expect_reject ("BMC01", &one, 1, "", 0, "bad_frame");
    expect_reject ("BMC01", &one, 1, "\x91", 1, "bad_frame");         //  array, truncated
    expect_reject ("BMC01", &one, 1, "\x90", 1, "bad_frame");         //  not a map
    expect_reject ("BMC01", &one, 1, "\x80\x80", 2, "bad_frame");     //  trailing bytes
    expect_reject ("BMC01", &one, 1, "\xc1", 1, "bad_frame");
    //  Declared sizes far beyond the bytes: map32 of 4 billion entries,
    //  str32 of 4 GiB, array32 inside a map.
    expect_reject ("BMC01", &one, 1, "\xdf\xff\xff\xff\xff\xa1x", 7, "bad_frame");
    expect_reject ("BMC01", &one, 1, "\x81\xa1x\xdb\xff\xff\xff\xf0", 8, "bad_frame");
    expect_reject ("BMC01", &one, 1, "\x81\xa1x\xdd\x7f\xff\xff\xff", 8, "bad_frame");
    //  Nesting deeper than msgpack-c's stack.
    char deep [100];
    deep [0] = '\x81'; deep [1] = '\xa1'; deep [2] = 'x';
    for (int i = 3; i < 99; i++)
        deep [i] = '\x91';
    deep [99] = '\xc0';
    expect_reject ("BMC01", &one, 1, deep, sizeof deep, "bad_frame");
    CHECK (bm_msgpack_check ("\x92\x01\x02", 3) == 0);
    CHECK (bm_msgpack_check ("\x92\x01", 2) == -1);
}

//  A value's bytes are found as encoded, whatever key encodings precede it.
static void
test_raw_value (void)
{
    const char one = BM_SUBMIT;
    const char *code;
    char reason [128];
    //  {"botType": "py", str8 "x": [1, {"a": nil}], "payload": {"k": 7}}
    const char body [] = "\x83\xa7" "botType" "\xa2" "py"
                         "\xd9\x01" "x" "\x92\x01\x81\xa1" "a" "\xc0"
                         "\xa7" "payload" "\x81\xa1" "k" "\x07";
    bm_msg_t *msg = bm_msg_decode_raw ("BMC01", 5, &one, 1, body, sizeof body - 1,
                                       BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
    CHECK (msg != NULL);
    const char *start;
    size_t len;
    CHECK (bm_msg_raw_value (msg, "payload", &start, &len)
           && len == 4 && memcmp (start, "\x81\xa1" "k" "\x07", 4) == 0);
    CHECK (bm_msg_raw_value (msg, "x", &start, &len) && len == 6);
    CHECK (!bm_msg_raw_value (msg, "pay", &start, &len));
    CHECK (!bm_msg_raw_value (msg, "missing", &start, &len));
    bm_msg_destroy (&msg);
}

static void
test_json (void)
{
    const char *text = "{\"a\":[1,2.5,\"x\",null,true],\"b\":{\"c\":-3}}";
    char *data;
    size_t size;
    char error [128];
    CHECK (bm_json_text_to_msgpack (text, strlen (text), &data, &size, error, sizeof error) == 0);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 256);
    msgpack_object obj;
    size_t off = 0;
    CHECK (msgpack_unpack (data, size, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS);
    json_t *back = bm_json_from_msgpack (&obj, BM_JSON_MAX_DEPTH);
    json_t *orig = json_loads (text, 0, NULL);
    CHECK (back && json_equal (back, orig));
    json_decref (back);
    json_decref (orig);
    msgpack_zone_destroy (&zone);
    free (data);
    CHECK (bm_json_text_to_msgpack ("{", 1, &data, &size, error, sizeof error) == -1);

    //  Reals written back read as the same doubles, each in the fewest
    //  digits: 0.1 stays "0.1"; 0.1 + 0.2 keeps its last digit.
    json_t *reals = json_pack ("{s:f,s:[f,f]}", "a", 0.1, "b", 2.5, 1.0 / 3.0);
    char *dumped = bm_json_dumps (reals, JSON_COMPACT);
    CHECK (dumped && streq (dumped, "{\"a\":0.1,\"b\":[2.5,0.3333333333333333]}"));
    free (dumped);
    json_array_append_new (json_object_get (reals, "b"), json_real (0.1 + 0.2));
    dumped = bm_json_dumps (reals, JSON_COMPACT);
    json_t *read = dumped ? json_loads (dumped, JSON_DECODE_ANY, NULL) : NULL;
    CHECK (dumped && strstr (dumped, "0.30000000000000004"));
    CHECK (read && json_equal (read, reals));
    free (dumped);
    json_decref (read);
    json_decref (reals);
    CHECK (bm_json_dumps (NULL, 0) == NULL);

    //  UTF-8 from outside: a cut inside "\xc3\xa9" (e acute) drops its
    //  lead byte; stray bytes become '?', and a cut keeps whole characters.
    CHECK (bm_utf8_valid ("a\xc3\xa9", 3) && !bm_utf8_valid ("a\xc3", 2)
        && !bm_utf8_valid ("\xff", 1) && !bm_utf8_valid ("\xed\xa0\x80", 3));
    CHECK (bm_utf8_whole ("a\xc3\xa9", 3) == 3 && bm_utf8_whole ("a\xc3", 2) == 1
        && bm_utf8_whole ("a\xe2\x82", 3) == 1 && bm_utf8_whole ("ab", 2) == 2);
    char *clean = bm_utf8_sanitised ("a\xff\xc3\xa9" "b", 5, 64);
    CHECK (clean && streq (clean, "a?\xc3\xa9" "b"));
    free (clean);
    clean = bm_utf8_sanitised ("a\xc3\xa9" "b", 4, 2);
    CHECK (clean && streq (clean, "a"));
    free (clean);
    char nested [200];
    memset (nested, '[', 100);
    memset (nested + 100, ']', 100);
    CHECK (bm_json_text_to_msgpack (nested, 200, &data, &size, error, sizeof error) == -1);

    //  What JSON cannot hold, as a JSON bot receives it: a map of
    //  {"b": bin, "e": ext, "n": NaN, "i": -Infinity, "u": 2^64-1, 1: 7,
    //   1.5: 8, "s": "\xff", "ok": 1}
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 9);
    msgpack_pack_str_with_body (&pk, "b", 1);
    msgpack_pack_bin_with_body (&pk, "\x00\x01", 2);
    msgpack_pack_str_with_body (&pk, "e", 1);
    msgpack_pack_ext_with_body (&pk, "x", 1, 5);
    msgpack_pack_str_with_body (&pk, "n", 1);
    msgpack_pack_double (&pk, NAN);
    msgpack_pack_str_with_body (&pk, "i", 1);
    msgpack_pack_double (&pk, -INFINITY);
    msgpack_pack_str_with_body (&pk, "u", 1);
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    msgpack_pack_int (&pk, 1);
    msgpack_pack_int (&pk, 7);
    msgpack_pack_double (&pk, 1.5);
    msgpack_pack_int (&pk, 8);
    msgpack_pack_str_with_body (&pk, "s", 1);
    msgpack_pack_str_with_body (&pk, "\xff", 1);
    msgpack_pack_str_with_body (&pk, "ok", 2);
    msgpack_pack_int (&pk, 1);
    msgpack_zone_init (&zone, 256);
    off = 0;
    CHECK (msgpack_unpack (sbuf.data, sbuf.size, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS);
    unsigned lost = 0;
    back = bm_json_from_msgpack_lossy (&obj, BM_JSON_MAX_DEPTH, &lost);
    dumped = back ? json_dumps (back, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    CHECK (dumped && streq (dumped, "{\"1\":7,\"b\":null,\"e\":null,\"i\":null,\"n\":null,"
                                    "\"ok\":1,\"s\":null,\"u\":1.8446744073709552e19}"));
    free (dumped);
    json_decref (back);
    CHECK (lost == (BM_JSON_LOST_BIN | BM_JSON_LOST_EXT | BM_JSON_LOST_NONFINITE
                    | BM_JSON_LOST_BAD_UTF8 | BM_JSON_LOST_BIG_UINT | BM_JSON_LOST_INT_KEY
                    | BM_JSON_LOST_KEY));
    char kinds [256];
    CHECK (bm_json_lost_text (lost, kinds, sizeof kinds) > 0 && strstr (kinds, "bin as null")
           && strstr (kinds, "other map keys left out"));
    CHECK (bm_json_lost_text (0, kinds, sizeof kinds) == 0 && kinds [0] == 0);
    //  A plain value loses nothing.
    back = bm_json_from_msgpack_lossy (&obj.via.map.ptr [8].val, BM_JSON_MAX_DEPTH, &lost);
    CHECK (back && lost == 0);
    json_decref (back);
    msgpack_zone_destroy (&zone);
    msgpack_sbuffer_destroy (&sbuf);
}

static void
test_validation (void)
{
    CHECK (bm_valid_bot_type ("python", 6));
    CHECK (!bm_valid_bot_type ("Py thon", 7));
    CHECK (!bm_valid_bot_type ("", 0));
    CHECK (streq (bm_list_state ("failed"), "failed"));
    CHECK (streq (bm_list_state ("waiting"), "queued") && streq (bm_list_state ("wait"), "queued"));
    CHECK (streq (bm_list_state ("active"), "running"));
    CHECK (bm_webhook_state ("failed") == BM_WEBHOOK_FAILED && bm_webhook_state ("pending") == BM_WEBHOOK_PENDING);
    CHECK (bm_webhook_state ("Failed") == -1 && bm_webhook_state ("") == -1 && bm_webhook_state (NULL) == -1);
    CHECK (!bm_list_state ("bogus") && !bm_list_state ("") && !bm_list_state (NULL));
    CHECK (bm_valid_url ("http://mock-webhook:5000", 24));
    CHECK (bm_valid_url ("https://a.b/c?d", 15));
    CHECK (!bm_valid_url ("ftp://x", 7));
    CHECK (!bm_valid_url ("http://", 7));
    CHECK (!bm_valid_url ("http://a b", 10));
    CHECK (!bm_valid_url ("http://a/\xe2\x80\xa8", 12));       //  U+2028
    CHECK (!bm_valid_url ("http://a/\xe2\x80\xae", 12));       //  U+202E
    CHECK (!bm_valid_url ("http://\xc3\xa9.fr/", 12));          //  raw UTF-8 host
    CHECK (!bm_valid_url ("http://a/\x7f", 10));
    CHECK (bm_valid_url ("http://a/%E2%80%A8", 18));
    int64_t v;
    CHECK (bm_parse_int ("42", 0, 100, &v) == 0 && v == 42);
    CHECK (bm_parse_int ("4x", 0, 100, &v) == -1);
    CHECK (bm_parse_int ("101", 0, 100, &v) == -1);
    //  One boolean parse for bm_env_bool and the worker's BOT_<T>_SECCOMP.
    const char *yes [] = { "1", "true", "TRUE", "yes", "Yes", "on", "ON" };
    const char *no [] = { "0", "false", "False", "no", "NO", "off", "Off" };
    for (size_t i = 0; i < sizeof yes / sizeof yes [0]; i++) {
        bool b = false;
        CHECK (bm_parse_bool (yes [i], &b) == 0 && b);
        b = true;
        CHECK (bm_parse_bool (no [i], &b) == 0 && !b);
    }
    bool b = true;
    CHECK (bm_parse_bool ("", &b) == -1 && b);
    CHECK (bm_parse_bool ("maybe", &b) == -1 && b);
    CHECK (bm_parse_bool ("2", &b) == -1 && b);
    CHECK (bm_parse_bool ("truex", &b) == -1 && b);
    CHECK (bm_parse_bool (" 1", &b) == -1 && b);
    CHECK (bm_parse_bool (NULL, &b) == -1 && b);
    setenv ("BM_COMMON_TEST_BOOL", "Off", 1);
    CHECK (bm_env_bool ("BM_COMMON_TEST_BOOL", true, &b) == 0 && !b);
    setenv ("BM_COMMON_TEST_BOOL", "maybe", 1);
    CHECK (bm_env_bool ("BM_COMMON_TEST_BOOL", false, &b) == -1);
    unsetenv ("BM_COMMON_TEST_BOOL");
    CHECK (bm_env_bool ("BM_COMMON_TEST_BOOL", true, &b) == 0 && b);
}

int
main (void)
{
    test_roundtrip ();
    test_rejections ();
    test_raw_value ();
    test_json ();
    test_validation ();
    printf ("common: all checks passed\n");
    return 0;
}
