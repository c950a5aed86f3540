/*  bm_redis_setup.c - the commands that open every Redis connection, AUTH
    and SELECT, with their answers checked, and the check of them at start.  */
#include "bm_redis_setup.h"
#include "bm_redis_url.h"
#include "bm_resolve.h"
#include "bm_sentinel.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
bm_redis_setup_var (const char *command)
{
    const char *url = getenv ("REDIS_URL");
    if (url && *url)
        return "REDIS_URL";
    return strncmp (command, "AUTH", 4) == 0 ? "REDIS_PASSWORD" : "REDIS_DB";
}

bool
bm_redis_setup_refused (const redisReply *reply, const char *host, int port,
                        const char *command, char *error, size_t error_size)
{
    if (!reply || reply->type != REDIS_REPLY_ERROR)
        return false;
    snprintf (error, error_size, "redis %s:%d refused %s (%.*s)", host, port, command,
              (int) (reply->len < 200 ? reply->len : 200), reply->str);
    return true;
}

//  Run command on c: 1 when Redis took it, 0 when it refused it (message
//  in error), -1 when it did not answer.
static int
s_command (redisContext *c, const char *label, const char *host, int port,
           char *error, size_t error_size, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    redisReply *reply = (redisReply *) redisvCommand (c, format, args);
    va_end (args);
    if (!reply)
        return -1;
    int taken = bm_redis_setup_refused (reply, host, port, label, error, error_size) ? 0 : 1;
    freeReplyObject (reply);
    return taken;
}

//  The databases this Redis has, for the message ("; this Redis has
//  databases 0 to 3"), or "" when it does not say (CONFIG refused).
static void
s_databases_hint (redisContext *c, char *hint, size_t size)
{
    *hint = 0;
    redisReply *reply = (redisReply *) redisCommand (c, "CONFIG GET databases");
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [1]->type == REDIS_REPLY_STRING) {
        int count = atoi (reply->element [1]->str);
        if (count > 0)
            snprintf (hint, size, "; this Redis has databases 0 to %d", count - 1);
    }
    freeReplyObject (reply);
}

int
bm_redis_setup_check (const char *url, const char *sentinels, const char *master_name)
{
    bm_redis_url_t parsed;
    if (bm_redis_url_parse (url, &parsed))
        return 0;               //  The caller's own parse says what is wrong
    if (!*parsed.password && parsed.db == 0)
        return 0;               //  Nothing Redis could refuse
    if (sentinels) {
        char why [256];
        if (bm_sentinel_master (sentinels, master_name ? master_name : BM_SENTINEL_DEFAULT_MASTER,
                                BM_REDIS_SETUP_TIMEOUT_MS, parsed.host, sizeof parsed.host,
                                &parsed.port, why, sizeof why))
            return 0;           //  Not known yet: the service asks again
    }
    //  hiredis's connect timeout does not cover the name's lookup.
    char addr [64], why [256];
    if (bm_resolve_wait (parsed.host, BM_REDIS_SETUP_TIMEOUT_MS, addr, sizeof addr, why, sizeof why))
        return 0;               //  Not resolved yet: the service retries
    struct timeval tv = { BM_REDIS_SETUP_TIMEOUT_MS / 1000, (BM_REDIS_SETUP_TIMEOUT_MS % 1000) * 1000 };
    redisContext *c = redisConnectWithTimeout (addr, parsed.port, tv);
    if (!c || c->err || redisSetTimeout (c, tv) != REDIS_OK) {
        if (c)
            redisFree (c);
        return 0;               //  Not reachable yet: the service retries
    }
    char error [400] = "", hint [64] = "", command [32];
    const char *refused = NULL;
    int taken = 1;
    if (*parsed.password) {
        taken = s_command (c, "AUTH", parsed.host, parsed.port, error, sizeof error,
                           "AUTH %s", parsed.password);
        refused = taken == 0 ? "AUTH" : NULL;
    }
    if (taken == 1 && parsed.db) {
        snprintf (command, sizeof command, "SELECT %d", parsed.db);
        taken = s_command (c, command, parsed.host, parsed.port, error, sizeof error,
                           "SELECT %d", parsed.db);
        if (taken == 0) {
            refused = command;
            s_databases_hint (c, hint, sizeof hint);
        }
    }
    redisFree (c);
    if (!refused)
        return 0;
    const char *var = bm_redis_setup_var (refused);
    char masked [512];
    bm_redis_url_masked (url, masked, sizeof masked);
    if (streq (var, "REDIS_URL"))
        bm_error (NULL, "configuration: REDIS_URL %s: %s%s", masked, error, hint);
    else
        bm_error (NULL, "configuration: %s: %s%s", var, error, hint);
    return -1;
}

//  --------------------------------------------------------------------------
//  Self test

void
bm_redis_setup_test (bool verbose)
{
    if (verbose)
        printf (" * bm_redis_setup: ");
    char error [256] = "";
    //  An error reply is a refusal, named with the command and Redis's words.
    redisReply refusal = { .type = REDIS_REPLY_ERROR, .str = (char *) "ERR DB index is out of range",
                           .len = 28 };
    BM_CHECK (bm_redis_setup_refused (&refusal, "10.0.0.1", 6380, "SELECT 99", error, sizeof error));
    BM_CHECK (streq (error, "redis 10.0.0.1:6380 refused SELECT 99 (ERR DB index is out of range)"));
    //  "OK" is no refusal; neither is no answer at all (a lost connection).
    redisReply ok = { .type = REDIS_REPLY_STATUS, .str = (char *) "OK", .len = 2 };
    *error = 0;
    BM_CHECK (!bm_redis_setup_refused (&ok, "h", 1, "SELECT 1", error, sizeof error) && !*error);
    BM_CHECK (!bm_redis_setup_refused (NULL, "h", 1, "SELECT 1", error, sizeof error) && !*error);
    //  The variable named: REDIS_URL when set, else the one that set the command.
    char *saved = getenv ("REDIS_URL") ? strdup (getenv ("REDIS_URL")) : NULL;
    setenv ("REDIS_URL", "redis://h:1/3", 1);
    BM_CHECK (streq (bm_redis_setup_var ("SELECT 3"), "REDIS_URL"));
    BM_CHECK (streq (bm_redis_setup_var ("AUTH"), "REDIS_URL"));
    unsetenv ("REDIS_URL");
    BM_CHECK (streq (bm_redis_setup_var ("SELECT 3"), "REDIS_DB"));
    BM_CHECK (streq (bm_redis_setup_var ("AUTH"), "REDIS_PASSWORD"));
    //  No password and database 0: nothing to check, no connection tried.
    BM_CHECK (bm_redis_setup_check ("redis://127.0.0.1:1/0", NULL, NULL) == 0);
    //  A Redis that cannot be reached is no configuration error.
    BM_CHECK (bm_redis_setup_check ("redis://127.0.0.1:1/5", NULL, NULL) == 0);
    if (saved) {
        setenv ("REDIS_URL", saved, 1);
        free (saved);
    }
    if (verbose)
        printf ("OK\n");
}
