/*  bm_settings.c - a service's configuration as one table.  */
#include "bm_settings.h"
#include "bm_config.h"
#include "bm_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

//  --------------------------------------------------------------------------
//  Parse one boolean word.  Returns 0 or -1.

static int
s_parse_bool (const char *text, bool *out)
{
    static const char *yes [] = { "1", "true", "yes", "on" };
    static const char *no [] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < sizeof yes / sizeof yes [0]; i++) {
        if (!strcasecmp (text, yes [i])) { *out = true; return 0; }
        if (!strcasecmp (text, no [i]))  { *out = false; return 0; }
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  Store the default of a row in config.

static void
s_store_default (const bm_setting_t *row, void *config)
{
    char *field = (char *) config + row->offset;
    switch (row->type) {
        case BM_SETTING_TYPE_INT:    *(int64_t *) field = (int64_t) row->num; break;
        case BM_SETTING_TYPE_DOUBLE: *(double *) field = row->num; break;
        case BM_SETTING_TYPE_BOOL:   *(bool *) field = row->num != 0; break;
        case BM_SETTING_TYPE_STR:    *(const char **) field = row->def; break;
    }
}

int
bm_setting_parse (const bm_setting_t *row, const char *text, void *config,
                  char *error, size_t error_size)
{
    char *field = (char *) config + row->offset;
    if (!text || !*text) {
        s_store_default (row, config);
        return 0;
    }
    switch (row->type) {
        case BM_SETTING_TYPE_INT: {
            int64_t value;
            if (bm_parse_int (text, (int64_t) row->min, (int64_t) row->max, &value)) {
                snprintf (error, error_size, "%s must be an integer from %lld to %lld (got '%s')",
                          row->name, (long long) row->min, (long long) row->max, text);
                return -1;
            }
            *(int64_t *) field = value;
            return 0;
        }
        case BM_SETTING_TYPE_DOUBLE: {
            char *end;
            errno = 0;
            double value = strtod (text, &end);
            if (errno || *end || end == text || isnan (value)
            ||  value < row->min || value > row->max) {
                snprintf (error, error_size, "%s must be a number from %g to %g (got '%s')",
                          row->name, row->min, row->max, text);
                return -1;
            }
            *(double *) field = value;
            return 0;
        }
        case BM_SETTING_TYPE_BOOL:
            if (s_parse_bool (text, (bool *) field)) {
                snprintf (error, error_size, "%s must be true or false (got '%s')",
                          row->name, text);
                return -1;
            }
            return 0;
        case BM_SETTING_TYPE_STR:
            if (row->max > 0 && strlen (text) > (size_t) row->max) {
                snprintf (error, error_size, "%s must be at most %lld bytes long (got %zu)",
                          row->name, (long long) row->max, strlen (text));
                return -1;
            }
            *(const char **) field = text;
            return 0;
    }
    snprintf (error, error_size, "%s: unknown setting type", row->name);
    return -1;
}

int
bm_settings_load (const bm_setting_t *table, void *config)
{
    int rc = 0;
    for (const bm_setting_t *row = table; row->name; row++) {
        char error [512];
        if (bm_setting_parse (row, getenv (row->name), config, error, sizeof error)) {
            bm_error (NULL, "configuration: %s", error);
            rc = -1;
        }
    }
    return rc;
}

const bm_setting_t *
bm_settings_find (const bm_setting_t *table, const char *name)
{
    for (const bm_setting_t *row = table; row->name; row++)
        if (!strcmp (row->name, name))
            return row;
    return NULL;
}

//  --------------------------------------------------------------------------
//  The default of a row as text, for help and env.example.

static const char *
s_default_text (const bm_setting_t *row, char *buf, size_t size)
{
    switch (row->type) {
        case BM_SETTING_TYPE_INT:    snprintf (buf, size, "%lld", (long long) row->num); break;
        case BM_SETTING_TYPE_DOUBLE: snprintf (buf, size, "%g", row->num); break;
        case BM_SETTING_TYPE_BOOL:   snprintf (buf, size, "%d", row->num != 0); break;
        case BM_SETTING_TYPE_STR:    snprintf (buf, size, "%s", row->def ? row->def : ""); break;
    }
    return buf;
}

static const char *
s_range_text (const bm_setting_t *row, char *buf, size_t size)
{
    buf [0] = 0;
    if (row->type == BM_SETTING_TYPE_INT)
        snprintf (buf, size, "; %lld..%lld", (long long) row->min, (long long) row->max);
    else
    if (row->type == BM_SETTING_TYPE_DOUBLE)
        snprintf (buf, size, "; %g..%g", row->min, row->max);
    else
    if (row->type == BM_SETTING_TYPE_STR && row->max > 0)
        snprintf (buf, size, "; at most %lld bytes", (long long) row->max);
    return buf;
}

void
bm_settings_help (const bm_setting_t *table, FILE *out)
{
    const int indent = 29, width = 100;
    for (const bm_setting_t *row = table; row->name; row++) {
        char def [256], range [64], text [1024];
        s_default_text (row, def, sizeof def);
        s_range_text (row, range, sizeof range);
        snprintf (text, sizeof text, "%s [%s%s]", row->help, def, *def ? range : range + (*range ? 2 : 0));
        int column = fprintf (out, "  %-26s", row->name);
        //  Words, wrapped under the first help column.
        for (const char *p = text; *p; ) {
            p += strspn (p, " ");
            size_t len = strcspn (p, " ");
            if (!len)
                break;
            if (column > indent && column + 1 + (int) len > width)
                column = fprintf (out, "\n%*s", indent, "") - 1;
            else
                column += fprintf (out, " ");
            column += fprintf (out, "%.*s", (int) len, p);
            p += len;
        }
        fputc ('\n', out);
    }
}

void
bm_settings_print_env (const bm_setting_t *table, FILE *out)
{
    for (const bm_setting_t *row = table; row->name; row++) {
        char def [256], range [64];
        s_range_text (row, range, sizeof range);
        fprintf (out, "# %s%s%s%s\n%s=%s\n", row->help, *range ? " (" : "",
                 *range ? range + 2 : "", *range ? ")" : "",
                 row->name, s_default_text (row, def, sizeof def));
    }
}

//  --check-config: the values go to a scratch configuration as large as
//  the table's last field (every field is at most 8 bytes: int64_t,
//  double, bool or a pointer), dropped after.
static int
s_check_config (const bm_setting_t *table)
{
    size_t size = 0;
    for (const bm_setting_t *row = table; row->name; row++)
        if (row->offset + sizeof (int64_t) > size)
            size = row->offset + sizeof (int64_t);
    void *scratch = calloc (1, size ? size : 1);
    if (!scratch)
        return 2;
    int rc = bm_settings_load (table, scratch);
    free (scratch);
    if (rc)
        return 2;
    printf ("configuration: every variable is valid\n");
    return 0;
}

int
bm_settings_info_flag (int argc, char *argv [], const bm_setting_t *table)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv [i], "--print-env")) {
            bm_settings_print_env (table, stdout);
            return 0;
        }
        if (!strcmp (argv [i], "--check-config"))
            return s_check_config (table);
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  Variables of the original system that botmesh does not read, and what
//  to set instead.  (REDIS_HOST, REDIS_PORT, the MAX_<TYPE>_BOTS limits,
//  WEBHOOK_MAX_RETRIES, WEBHOOK_RETRY_DELAY and the ports are read.)

static const struct {
    const char *name;
    const char *instead;
} s_foreign [] = {
    { "NODE_ENV",            "nothing: botmesh has no development/production switch (LOG_LEVEL sets the detail)" },
    { "PORT",                "the service's own port: API_GATEWAY_PORT, WEBHOOK_MANAGER_PORT, MOCK_WEBHOOK_PORT" },
    { "REDIS_USERNAME",      "REDIS_URL=redis://:password@host:port/db (hiredis 0.14 has no ACL user names)" },
    { "REDIS_TLS",           "nothing: hiredis 0.14 has no TLS; put a TLS proxy (stunnel) next to Redis" },
    { "WORKER_ID",           "WORKER_NAME" },
    { "BOT_TYPE",            "WORKER_TYPES (or --type)" },
    { "QUEUE_NAME",          "nothing: each bot type is its own queue" },
    { "ORCHESTRATOR_URL",    "BROKER_ENDPOINT (tcp://host:5555)" },
    { "WEBHOOK_MANAGER_URL", "nothing: the broker hands deliveries to webhook managers over ZeroMQ" },
};

int
bm_settings_warn_foreign (void)
{
    int found = 0;
    for (size_t i = 0; i < sizeof s_foreign / sizeof s_foreign [0]; i++) {
        const char *value = getenv (s_foreign [i].name);
        if (value && *value) {
            bm_warn (NULL, "configuration: %s is set but botmesh does not read it; set %s",
                     s_foreign [i].name, s_foreign [i].instead);
            found++;
        }
    }
    return found;
}

//  --------------------------------------------------------------------------
//  Self test

#include "bm_selftest.h"

typedef struct {
    int64_t port;
    double rate;
    bool on;
    const char *name;
    const char *prefix;
    int64_t heartbeat;
} s_test_config_t;

void
bm_settings_test (bool verbose)
{
    if (verbose)
        printf (" * bm_settings: ");
    const bm_setting_t table [] = {
        BM_SETTING_INT ("BMT_PORT", s_test_config_t, port, 4000, 0, 65535, "HTTP port"),
        BM_SETTING_DOUBLE ("BMT_RATE", s_test_config_t, rate, 0.5, 0, 10, "a rate"),
        BM_SETTING_BOOL ("BMT_ON", s_test_config_t, on, true, "a switch"),
        BM_SETTING_STR ("BMT_NAME", s_test_config_t, name, NULL, 0, "a name"),
        BM_SETTING_REDIS_PREFIX (s_test_config_t, prefix),
        BM_SETTING_HEARTBEAT_INTERVAL_MS (s_test_config_t, heartbeat),
        BM_SETTINGS_END
    };
    s_test_config_t c;
    char error [256];

    //  Defaults when nothing is set.
    unsetenv ("BMT_PORT"); unsetenv ("BMT_RATE"); unsetenv ("BMT_ON");
    unsetenv ("BMT_NAME"); unsetenv ("REDIS_PREFIX"); unsetenv ("HEARTBEAT_INTERVAL_MS");
    memset (&c, 0xff, sizeof c);
    BM_CHECK (bm_settings_load (table, &c) == 0);
    BM_CHECK (c.port == 4000 && c.rate == 0.5 && c.on && c.name == NULL);
    BM_CHECK (!strcmp (c.prefix, "botmesh:") && c.heartbeat == 1000);

    //  Values from the environment; an empty value means the default.
    setenv ("BMT_PORT", "0", 1);
    setenv ("BMT_ON", "off", 1);
    setenv ("BMT_NAME", "w-1", 1);
    setenv ("BMT_RATE", "", 1);
    BM_CHECK (bm_settings_load (table, &c) == 0);
    BM_CHECK (c.port == 0 && !c.on && !strcmp (c.name, "w-1") && c.rate == 0.5);

    //  Every bad value is refused, naming the variable and its range.
    const bm_setting_t *port = bm_settings_find (table, "BMT_PORT");
    BM_CHECK (port && !bm_settings_find (table, "NOPE"));
    BM_CHECK (bm_setting_parse (port, "65536", &c, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "BMT_PORT") && strstr (error, "0 to 65535"));
    BM_CHECK (bm_setting_parse (port, "12x", &c, error, sizeof error) == -1);
    BM_CHECK (bm_setting_parse (bm_settings_find (table, "BMT_RATE"), "nan", &c, error, sizeof error) == -1);
    BM_CHECK (bm_setting_parse (bm_settings_find (table, "BMT_ON"), "maybe", &c, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "true or false"));
    char long_prefix [80];
    memset (long_prefix, 'p', sizeof long_prefix - 1);
    long_prefix [sizeof long_prefix - 1] = 0;
    BM_CHECK (bm_setting_parse (bm_settings_find (table, "REDIS_PREFIX"), long_prefix, &c,
                              error, sizeof error) == -1);
    BM_CHECK (strstr (error, "at most 64 bytes"));
    setenv ("BMT_PORT", "-1", 1);
    BM_CHECK (bm_settings_load (table, &c) == -1);

    //  --check-config: 2 on the bad value, 0 once it is good; other
    //  arguments: not a flag of the table's (-1).
    char prog [] = "prog", check_flag [] = "--check-config", port_flag [] = "--port", one [] = "1";
    char *check [] = { prog, check_flag, NULL };
    char *other [] = { prog, port_flag, one, NULL };
    BM_CHECK (bm_settings_info_flag (2, check, table) == 2);
    setenv ("BMT_PORT", "80", 1);
    BM_CHECK (bm_settings_info_flag (2, check, table) == 0);
    BM_CHECK (bm_settings_info_flag (3, other, table) == -1);

    //  Help and env.example text come from the same rows.
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    bm_settings_help (table, out);
    bm_settings_print_env (table, out);
    fclose (out);
    BM_CHECK (strstr (text, "  BMT_PORT"));
    BM_CHECK (strstr (text, "HTTP port [4000; 0..65535]"));
    BM_CHECK (strstr (text, "# HTTP port (0..65535)\nBMT_PORT=4000\n"));
    BM_CHECK (strstr (text, "\nBMT_NAME=\n"));
    BM_CHECK (strstr (text, "REDIS_PREFIX=botmesh:\n"));
    free (text);

    unsetenv ("BMT_PORT"); unsetenv ("BMT_ON"); unsetenv ("BMT_NAME"); unsetenv ("BMT_RATE");

    //  A variable of the original system that botmesh ignores is named.
    unsetenv ("NODE_ENV"); unsetenv ("WORKER_ID");
    int before = bm_settings_warn_foreign ();
    setenv ("WORKER_ID", "w-7", 1);
    BM_CHECK (bm_settings_warn_foreign () == before + 1);
    unsetenv ("WORKER_ID");
    if (verbose)
        printf ("OK\n");
}
