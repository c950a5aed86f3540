/*  fuzz_bot_output.c - what a worker makes of a bot's output, under
    libFuzzer: stdout -> the job's result, stderr -> the error message,
    fd 3 -> progress values.

    The pure parts live in workers/: bm_capture (bounded stdout and stderr
    sinks, text sanitising), bm_progress (the fd 3 line parser), and
    bm_job_report: bm_job_report_parse_result (stdout -> JSON -> msgpack
    result) and bm_job_report_keep_end (the UTF-8-safe tail of an error
    message).

    Input layout:

        byte 0      chunk size (1..64) in which the streams are fed
        byte 1      capture limit selector (stdout cap 1..4096)
        bytes 2..3  length of the stdout part (little endian, clamped)
        bytes 4..5  length of the stderr part (little endian, clamped)
        then        stdout bytes, stderr bytes, and the rest is fd 3

    Properties:
    - bm_capture in head mode keeps exactly the first min(total, limit)
      bytes, NUL-terminated, says overflowed iff total > limit, and append
      returns -1 exactly once it overflowed; in tail mode it keeps exactly
      the last min(total, limit) bytes, whatever the chunking;
    - bm_text_sanitize / bm_capture_text return valid UTF-8 without control
      characters other than newline and tab;
    - bm_job_report_keep_end keeps a suffix of at most max bytes that does not start
      inside a UTF-8 sequence;
    - bm_progress_feed gives the same values whatever the chunking, equal
      to parsing every complete line of at most BM_PROGRESS_MAX_LINE bytes
      with bm_progress_parse, and bm_progress_parse agrees with an
      independent reading of the rule in bm_progress.h;
    - bm_job_report_parse_result either fails with a message, or returns msgpack that
      bm_msgpack_check accepts, within max_payload, that converts back to
      the JSON jansson reads from the same stdout, less one leading UTF-8
      byte order mark (or from its last line).  */
#include "bm_job_report.h"
#include "bm_capture.h"
#include "bm_json.h"
#include "bm_proto.h"
#include "bm_progress.h"
#include "fuzz_common.h"

static size_t
s_le16 (const uint8_t *p)
{
    return (size_t) p [0] | ((size_t) p [1] << 8);
}

//  Valid UTF-8 (bm_capture's own rules: no overlongs, no surrogates,
//  nothing above U+10FFFF), checked here independently.
static bool
s_valid_utf8 (const unsigned char *p, size_t size)
{
    size_t i = 0;
    while (i < size) {
        unsigned char c = p [i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { n = 2; cp = c & 0x1f; }
        else if ((c & 0xf0) == 0xe0) { n = 3; cp = c & 0x0f; }
        else if ((c & 0xf8) == 0xf0) { n = 4; cp = c & 0x07; }
        else return false;
        if (i + n > size)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((p [i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p [i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)
        ||  cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n;
    }
    return true;
}

static void
s_check_text (const char *text)
{
    FUZZ_CHECK (text != NULL);
    size_t len = strlen (text);
    FUZZ_CHECK (s_valid_utf8 ((const unsigned char *) text, len));
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) text [i];
        FUZZ_CHECK (!(c < 0x20 && c != '\n' && c != '\t') && c != 0x7f);
    }
}

static void
s_check_capture (const uint8_t *data, size_t size, size_t limit, size_t chunk)
{
    bm_capture_t *head = bm_capture_new (limit, false);
    bm_capture_t *tail = bm_capture_new (limit, true);
    FUZZ_CHECK (head && tail);
    size_t offered = 0;
    for (size_t pos = 0; pos < size; pos += chunk) {
        size_t n = size - pos < chunk? size - pos: chunk;
        int rc = bm_capture_append (head, data + pos, n);
        offered += n;
        //  -1 exactly once more than limit bytes were offered.
        FUZZ_CHECK ((rc == -1) == (offered > limit));
        FUZZ_CHECK (bm_capture_append (tail, data + pos, n) == 0);
        //  Tail mode: the last bytes, at every step.
        size_t keep = offered < limit? offered: limit;
        FUZZ_CHECK (bm_capture_size (tail) == keep);
        FUZZ_CHECK (memcmp (bm_capture_data (tail), data + offered - keep, keep) == 0);
        FUZZ_CHECK (bm_capture_data (tail) [keep] == 0);
    }
    size_t keep = size < limit? size: limit;
    FUZZ_CHECK (bm_capture_total (head) == size && bm_capture_total (tail) == size);
    FUZZ_CHECK (bm_capture_overflowed (head) == (size > limit));
    FUZZ_CHECK (bm_capture_size (head) == keep);
    FUZZ_CHECK (memcmp (bm_capture_data (head), data, keep) == 0);
    FUZZ_CHECK (bm_capture_data (head) [keep] == 0);

    char *text = bm_capture_text (tail);
    s_check_text (text);
    free (text);
    text = bm_capture_text (head);
    s_check_text (text);
    free (text);
    bm_capture_destroy (&head);
    bm_capture_destroy (&tail);
    FUZZ_CHECK (head == NULL && tail == NULL);
}

//  The rule of bm_progress.h, read independently: "PROGRESS", one or more
//  spaces or tabs, an integer from 0 to 100, optional trailing spaces (or
//  tabs) and an optional \r.
static int
s_progress_reference (const char *line, size_t size)
{
    if (size && line [size - 1] == '\r')
        size--;
    if (size < 9 || memcmp (line, "PROGRESS", 8) != 0)
        return -1;
    size_t pos = 8, blanks = 0;
    while (pos < size && (line [pos] == ' ' || line [pos] == '\t')) {
        pos++;
        blanks++;
    }
    if (blanks == 0)
        return -1;
    size_t start = pos;
    while (pos < size && line [pos] >= '0' && line [pos] <= '9')
        pos++;
    if (pos == start)
        return -1;
    //  Leading zeros are allowed; the value must be <= 100.
    size_t first = start;
    while (first < pos - 1 && line [first] == '0')
        first++;
    if (pos - first > 3)
        return -1;
    int value = 0;
    for (size_t i = first; i < pos; i++)
        value = value * 10 + (line [i] - '0');
    if (value > 100)
        return -1;
    while (pos < size && (line [pos] == ' ' || line [pos] == '\t'))
        pos++;
    return pos == size? value: -1;
}

static void
s_check_progress (const uint8_t *data, size_t size, size_t chunk)
{
    const char *text = (const char *) data;
    //  Reference: every complete line, the last valid value.
    int expected = -1;
    size_t start = 0;
    for (size_t i = 0; i < size; i++)
        if (text [i] == '\n') {
            size_t len = i - start;
            int value = bm_progress_parse (text + start, len);
            FUZZ_CHECK (value == s_progress_reference (text + start, len));
            if (len <= BM_PROGRESS_MAX_LINE && value >= 0)
                expected = value;
            start = i + 1;
        }
    //  The unterminated last line too, for the parser alone.
    FUZZ_CHECK (bm_progress_parse (text + start, size - start)
                == s_progress_reference (text + start, size - start));

    bm_progress_t *whole = bm_progress_new ();
    bm_progress_t *pieces = bm_progress_new ();
    FUZZ_CHECK (whole && pieces);
    int got_whole = bm_progress_feed (whole, text, size);
    int got_pieces = -1;
    for (size_t pos = 0; pos < size; pos += chunk) {
        size_t n = size - pos < chunk? size - pos: chunk;
        int value = bm_progress_feed (pieces, text + pos, n);
        FUZZ_CHECK (value >= -1 && value <= 100);
        if (value >= 0)
            got_pieces = value;
    }
    FUZZ_CHECK (got_whole == expected);
    FUZZ_CHECK (got_pieces == expected);
    bm_progress_destroy (&whole);
    bm_progress_destroy (&pieces);
}

static void
s_check_keep_end (const uint8_t *data, size_t size, size_t max)
{
    //  bm_job_report_keep_end works on a C string: up to the first NUL.
    char *text = (char *) malloc (size + 1);
    memcpy (text, data, size);
    text [size] = 0;
    size_t len = strlen (text);
    char *copy = strdup (text);
    bm_job_report_keep_end (text, max);
    size_t kept = strlen (text);
    FUZZ_CHECK (kept <= len);
    FUZZ_CHECK (len <= max? kept == len: kept <= max);
    //  A suffix of the original...
    FUZZ_CHECK (memcmp (text, copy + len - kept, kept) == 0);
    //  ...that starts on a character boundary, and loses at most the 3
    //  continuation bytes of a cut character.
    if (kept && len > max)
        FUZZ_CHECK (((unsigned char) text [0] & 0xc0) != 0x80);
    if (s_valid_utf8 ((unsigned char *) copy, len)) {
        FUZZ_CHECK (s_valid_utf8 ((unsigned char *) text, kept));
        if (len > max)
            FUZZ_CHECK (kept + 3 >= max);
    }
    free (copy);
    free (text);
}

static void
s_check_result (const uint8_t *data, size_t size)
{
    const int64_t max_payload = 2048;

    //  The worker hands bm_job_report_parse_result the capture's bytes, NUL-terminated.
    char *text = (char *) malloc (size + 1);
    memcpy (text, data, size);
    text [size] = 0;
    char *packed = NULL;
    size_t packed_size = 0;
    char error [512] = "";
    int rc = bm_job_report_parse_result (text, size, max_payload, &packed, &packed_size, error, sizeof error);
    if (rc) {
        FUZZ_CHECK (rc == -1 && packed == NULL && error [0]);
        free (text);
        return;
    }
    FUZZ_CHECK (packed_size > 0 && (int64_t) packed_size <= max_payload);
    FUZZ_CHECK (bm_msgpack_check (packed, packed_size) == 0);
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    FUZZ_CHECK (msgpack_unpack_next (&result, packed, packed_size, &offset)
                == MSGPACK_UNPACK_SUCCESS && offset == packed_size);
    //  A REPLY carries the result two levels down: it must fit the limit.
    FUZZ_CHECK (bm_obj_depth (&result.data) <= BM_MAX_NESTING);
    //  It says what the bot printed: the whole stdout, or else its last line.
    json_t *value = bm_json_from_msgpack (&result.data, BM_JSON_MAX_DEPTH + 1);
    FUZZ_CHECK (value != NULL);
    const int flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    size_t bom = size >= 3 && memcmp (text, BM_UTF8_BOM, 3) == 0 ? 3 : 0;
    json_t *whole = json_loadb (text + bom, size - bom, flags, NULL);
    if (whole)
        FUZZ_CHECK (fuzz_json_same (value, whole));
    json_decref (whole);
    json_decref (value);
    msgpack_unpacked_destroy (&result);
    free (packed);
    free (text);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 6)
        return 0;
    size_t chunk = 1 + (data [0] & 63);
    size_t keep_max = 1 + (data [0] & 31);
    size_t limit = 1 + ((size_t) data [1] * 16);
    size_t out_len = s_le16 (data + 2);
    size_t err_len = s_le16 (data + 4);
    data += 6;
    size -= 6;
    if (out_len > size)
        out_len = size;
    if (err_len > size - out_len)
        err_len = size - out_len;
    const uint8_t *out = data;
    const uint8_t *err = data + out_len;
    const uint8_t *progress = err + err_len;
    size_t progress_len = size - out_len - err_len;

    s_check_capture (out, out_len, limit, chunk);
    s_check_capture (err, err_len, 1 + limit / 4, chunk);
    char *sanitized = bm_text_sanitize ((const char *) err, err_len);
    s_check_text (sanitized);
    free (sanitized);
    s_check_keep_end (err, err_len, keep_max);
    s_check_progress (progress, progress_len, chunk);
    s_check_result (out, out_len);
    return 0;
}
