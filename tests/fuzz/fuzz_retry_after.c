/*  fuzz_retry_after.c - the Retry-After parser of the webhook manager
    (webhook/wh_retry_after.h) under libFuzzer.

    Input layout:

        bytes 0..4  "now" in seconds since the epoch, 40 bits (little
                    endian) clamped to 1970..2200: a real clock, so that
                    RFC 850's two-digit years stay near it
        then        the header value

    Properties:
    - a parsed delay is in [0, WH_RETRY_AFTER_MAX_MS];
    - spaces and tabs around the value change nothing;
    - delay-seconds (all digits) means that many seconds (clamped);
    - an HTTP-date gives max(0, date - now), and that date printed back in
      the IMF-fixdate form parses to the same instant (the three forms of
      RFC 9110 name one instant);
    - a value that is neither form is refused.  */
#include "wh_retry_after.h"
#include "fuzz_common.h"

#include <time.h>

#define FUZZ_NOW_MAX_S  7258118400LL    //  2200-01-01

static int64_t
s_reference_delay (int64_t epoch_s, int64_t now_ms)
{
    int64_t delay = epoch_s * 1000 - now_ms;
    if (delay < 0)
        delay = 0;
    if (delay > WH_RETRY_AFTER_MAX_MS)
        delay = WH_RETRY_AFTER_MAX_MS;
    return delay;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    int64_t now_s = 0;
    for (int i = 4; i >= 0; i--)
        now_s = (now_s << 8) | data [i];
    now_s %= FUZZ_NOW_MAX_S;
    int64_t now_ms = now_s * 1000 + (data [0] % 1000);
    const char *value = (const char *) data + 5;
    size_t len = size - 5;

    int64_t delay = -1;
    int rc = wh_retry_after_parse (value, len, now_ms, &delay);
    FUZZ_CHECK (rc == 0 || rc == -1);
    if (rc == 0)
        FUZZ_CHECK (delay >= 0 && delay <= WH_RETRY_AFTER_MAX_MS);

    //  Surrounding whitespace changes nothing.
    char *padded = (char *) malloc (len + 4);
    memcpy (padded, " \t", 2);
    memcpy (padded + 2, value, len);
    memcpy (padded + 2 + len, "\t ", 2);
    int64_t delay2 = -1;
    int rc2 = wh_retry_after_parse (padded, len + 4, now_ms, &delay2);
    FUZZ_CHECK (rc2 == rc);
    if (rc == 0)
        FUZZ_CHECK (delay2 == delay);
    free (padded);

    //  Trim as the parser does, then look at the two forms.
    while (len && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len && (value [len - 1] == ' ' || value [len - 1] == '\t'))
        len--;
    size_t digits = 0;
    while (digits < len && value [digits] >= '0' && value [digits] <= '9')
        digits++;
    if (len > 0 && digits == len) {
        //  delay-seconds.
        FUZZ_CHECK (rc == 0);
        int64_t seconds = 0;
        for (size_t i = 0; i < len && seconds <= WH_RETRY_AFTER_MAX_MS / 1000; i++)
            seconds = seconds * 10 + (value [i] - '0');
        if (seconds > WH_RETRY_AFTER_MAX_MS / 1000)
            seconds = WH_RETRY_AFTER_MAX_MS / 1000;
        FUZZ_CHECK (delay == seconds * 1000);
        return 0;
    }
    int64_t epoch_s;
    int date_rc = wh_http_date_parse (value, len, now_s, &epoch_s);
    FUZZ_CHECK (date_rc == rc);
    if (date_rc)
        return 0;
    FUZZ_CHECK (delay == s_reference_delay (epoch_s, now_ms));

    //  The same instant, printed as an IMF-fixdate, parses back to itself
    //  (a leap second, :60, is the next minute's :00).
    time_t t = (time_t) epoch_s;
    struct tm tm;
    if (epoch_s >= -62135596800LL && epoch_s < 253402300800LL && gmtime_r (&t, &tm)) {
        //  By hand: strftime's %Y prints year 217 as "217", and the
        //  grammar wants four digits.
        static const char *days [] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *months [] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        char text [64];
        int n = snprintf (text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT",
                          days [tm.tm_wday], tm.tm_mday, months [tm.tm_mon], tm.tm_year + 1900,
                          tm.tm_hour, tm.tm_min, tm.tm_sec);
        FUZZ_CHECK (n == 29);
        int64_t again;
        FUZZ_CHECK (wh_http_date_parse (text, (size_t) n, now_s, &again) == 0);
        FUZZ_CHECK (again == epoch_s);
    }
    return 0;
}
