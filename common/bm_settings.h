/*  bm_settings.h - a service's configuration as one table.

    Each service describes every environment variable it reads once, in a
    table of bm_setting_t rows: name, type, default, range and a line of
    help.  From that one table come

        bm_settings_load       the values, read strictly from the environment
                               (a bad value stops the service with a message
                               naming the variable, its range and what it got)
        bm_settings_help       the "Environment" part of --help
        bm_settings_print_env  --print-env: the table as env.example lines

    Variables that several services read (heartbeats, frame and payload
    limits, Redis) are rows defined once here, as macros, so that the same
    variable has the same default and range in every service.

        typedef struct { int64_t port; const char *name; } my_config_t;
        static const bm_setting_t s_settings [] = {
            BM_SETTING_INT ("MY_PORT", my_config_t, port, 4000, 0, 65535,
                            "HTTP port (0: any free port)"),
            BM_SETTING_STR ("MY_NAME", my_config_t, name, "me", 64, "instance name"),
            BM_SETTINGS_END
        };
        my_config_t config;
        if (bm_settings_load (s_settings, &config))
            return 2;

    String values are borrowed from the environment (or are the default
    literal): they live as long as the process's environment does.  */
#ifndef BM_SETTINGS_H
#define BM_SETTINGS_H

#include "bm_redis_url.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    BM_SETTING_TYPE_INT,        //  int64_t in [min, max]
    BM_SETTING_TYPE_DOUBLE,     //  double in [min, max]
    BM_SETTING_TYPE_BOOL,       //  bool: 1/0, true/false, yes/no, on/off
    BM_SETTING_TYPE_STR         //  const char *, at most max bytes (0: any)
} bm_setting_type_t;

typedef struct {
    const char *name;           //  The environment variable; NULL ends a table
    bm_setting_type_t type;     //  How its text is read
    const char *def;            //  STR: the default; NULL: none (the field
                                //  is NULL when unset)
    double num;                 //  INT, DOUBLE, BOOL (0/1): the default
    double min;                 //  Smallest value (INT, DOUBLE)
    double max;                 //  Largest value (INT, DOUBLE); longest string (STR)
    size_t offset;              //  Where the value goes: offsetof (config, field)
    const char *help;           //  One line: what it does, in what unit
} bm_setting_t;

#define BM_SETTING_INT(name, type, field, def, min, max, help) \
    { name, BM_SETTING_TYPE_INT, NULL, (double) (def), (double) (min), (double) (max), \
      offsetof (type, field), help }
#define BM_SETTING_DOUBLE(name, type, field, def, min, max, help) \
    { name, BM_SETTING_TYPE_DOUBLE, NULL, (def), (min), (max), offsetof (type, field), help }
#define BM_SETTING_BOOL(name, type, field, def, help) \
    { name, BM_SETTING_TYPE_BOOL, NULL, (def) ? 1 : 0, 0, 1, offsetof (type, field), help }
#define BM_SETTING_STR(name, type, field, def, maxlen, help) \
    { name, BM_SETTING_TYPE_STR, def, 0, 0, (double) (maxlen), offsetof (type, field), help }
#define BM_SETTINGS_END { NULL, BM_SETTING_TYPE_INT, NULL, 0, 0, 0, 0, NULL }

//  The variables several services read: one default and one range each.
//  Heartbeats: 1 s is the ZeroMQ Guide's Majordomo default; a peer is dead
//  after LIVENESS silent intervals (3 to 5 is reasonable).
#define BM_SETTING_HEARTBEAT_INTERVAL_MS(type, field) \
    BM_SETTING_INT ("HEARTBEAT_INTERVAL_MS", type, field, 1000, 10, 600000, \
                    "heartbeat interval between broker and workers, in ms")
#define BM_SETTING_HEARTBEAT_LIVENESS(type, field) \
    BM_SETTING_INT ("HEARTBEAT_LIVENESS", type, field, 3, 1, 100, \
                    "silent heartbeat intervals before a peer counts as dead")
//  Frames and payloads: the defaults match BM_MAX_FRAME_BYTES and
//  BM_MAX_PAYLOAD_BYTES of the protocol header.
#define BM_SETTING_MAX_FRAME_BYTES(type, field) \
    BM_SETTING_INT ("MAX_FRAME_BYTES", type, field, 2097152, 4096, 268435456, \
                    "largest message body accepted on the wire, in bytes")
#define BM_SETTING_MAX_PAYLOAD_BYTES(type, field) \
    BM_SETTING_INT ("MAX_PAYLOAD_BYTES", type, field, 1048576, 16, 268435456, \
                    "largest job payload (and result), in bytes")
#define BM_SETTING_MAX_BOTS_DEFAULT(type, field) \
    BM_SETTING_INT ("MAX_BOTS_DEFAULT", type, field, 10, 1, 1000000, \
                    "limit of a bot type without MAX_<TYPE>_BOTS")
//  Redis: REDIS_URL wins; else REDIS_HOST / REDIS_PORT / REDIS_PASSWORD /
//  REDIS_DB build one (bm_redis_url.h).  The prefix goes before every key;
//  its length is bounded so that keys are never cut.
#define BM_SETTING_REDIS_PREFIX(type, field) \
    BM_SETTING_STR ("REDIS_PREFIX", type, field, BM_REDIS_DEFAULT_PREFIX, BM_REDIS_MAX_PREFIX, \
                    "prefix of every Redis key")

//  Redis through Sentinel: the sentinels (host:port list; unset: REDIS_URL
//  names the server) and the master's name.  REDIS_URL still gives the
//  password and db.
#define BM_SETTING_REDIS_SENTINELS(type, field) \
    BM_SETTING_STR ("REDIS_SENTINELS", type, field, NULL, 1024, \
                    "Redis Sentinel: sentinels to ask where the master is, host:port,host:port " \
                    "(unset: REDIS_URL's host)")
#define BM_SETTING_REDIS_MASTER_NAME(type, field) \
    BM_SETTING_STR ("REDIS_MASTER_NAME", type, field, "mymaster", 128, \
                    "Redis Sentinel: name of the master the sentinels watch")

//  The webhook manager's rule for private targets (common/bm_ssrf.h): the
//  manager refuses to deliver to them, and the gateway refuses a webhookUrl
//  it can tell is one without a lookup (an IP address, localhost).
#define BM_SETTING_WEBHOOK_ALLOW_PRIVATE(type, field) \
    BM_SETTING_BOOL ("WEBHOOK_ALLOW_PRIVATE", type, field, false, \
                     "1: allow loopback, private and link-local webhook targets (SSRF guard off)")
#define BM_SETTING_WEBHOOK_ALLOWED_HOSTS(type, field) \
    BM_SETTING_STR ("WEBHOOK_ALLOWED_HOSTS", type, field, "", 0, \
                    "comma list of host, host:port or [IPv6]:port webhooks may go to whatever " \
                    "they resolve to (an entry without a port allows every port)")

//  Read every row of the table into config.  Every bad value is logged
//  (one line each, naming the variable); returns 0, or -1 if any was bad.
int bm_settings_load (const bm_setting_t *table, void *config);

//  Read one row's value from text (not from the environment).  Returns 0,
//  or -1 with the reason (naming the variable) in error.
int bm_setting_parse (const bm_setting_t *row, const char *text, void *config,
                      char *error, size_t error_size);

//  Write the table as --help lines: "  NAME  help [default; range]",
//  wrapped at 100 columns.
void bm_settings_help (const bm_setting_t *table, FILE *out);

//  Write the table as env.example lines: "# help (range)" then "NAME=default".
void bm_settings_print_env (const bm_setting_t *table, FILE *out);

//  The flags every service answers from its table alone, without starting:
//  --print-env writes the table as env.example lines to stdout (0);
//  --check-config reads every variable of the table as the service would
//  and returns 0 when all are good, else 2 (BM_EXIT_CONFIG) after an error
//  line naming each bad one.  Returns -1 when argv holds neither flag (the
//  caller goes on), else the status the caller exits with.
int bm_settings_info_flag (int argc, char *argv [], const bm_setting_t *table);

//  The row of a variable, or NULL.
const bm_setting_t *bm_settings_find (const bm_setting_t *table, const char *name);

//  Warn (one log line each) about variables of the original BullMQ/Express
//  system that are set but that botmesh does not read, naming what to set
//  instead.  Returns how many were found.
int bm_settings_warn_foreign (void);

//  Self test.
void bm_settings_test (bool verbose);

#endif
