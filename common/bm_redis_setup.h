/*  bm_redis_setup.h - the commands that open every Redis connection, AUTH
    and SELECT, with their answers checked, and the check of them at start.

    A connection is of use only once Redis took its AUTH (when the URL has
    a password) and its SELECT (when the database is not 0).  Redis
    refuses SELECT of a database it does not have ("ERR DB index is out of
    range": its `databases` setting, 16 by default); a connection that
    went on regardless would read and write database 0, which may be
    another stack's.  So every service that opens Redis connections:
    - at start, opens one (bm_redis_setup_check): a refused AUTH or SELECT
      stops the service with a message naming the variable (REDIS_URL, or
      REDIS_DB / REDIS_PASSWORD when REDIS_URL is not set) and Redis's
      error, like any other bad value; a Redis it cannot reach yet is no
      error (it is retried later);
    - on each later connection, takes a refusal (bm_redis_setup_refused)
      as "Redis unavailable": logged as an ERROR, the connection dropped
      and tried again with backoff, never used.  */
#ifndef BM_REDIS_SETUP_H
#define BM_REDIS_SETUP_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#define BM_REDIS_SETUP_TIMEOUT_MS   2000    //  The start check's connect and
                                            //  command timeout: a Redis on
                                            //  the network answers in far less

//  The variable that set what command (an AUTH or a SELECT) sent:
//  REDIS_URL when the environment sets it, else REDIS_PASSWORD or
//  REDIS_DB.  Borrowed, static.
const char *bm_redis_setup_var (const char *command);

//  True when reply is Redis's refusal of command ("SELECT 99"; an error
//  reply); the message, "redis HOST:PORT refused SELECT 99 (ERR DB index
//  is out of range)", then goes to error.  A NULL reply (no answer: the
//  connection went) is no refusal.  Never shows an AUTH's password.
bool bm_redis_setup_refused (const redisReply *reply, const char *host, int port,
                             const char *command, char *error, size_t error_size);

//  At start: connect to url (a valid redis:// URL; with sentinels, a
//  host:port list, to the master they name) and send its AUTH and SELECT.
//  Returns -1 when Redis refused either, having logged at ERROR, naming
//  the variable, "configuration: REDIS_URL redis://HOST:PORT/99: redis
//  HOST:PORT refused SELECT 99 (ERR DB index is out of range; this Redis
//  has databases 0 to 3)"; the caller stops (exit 2).  Returns 0 when
//  both were taken, or when Redis could not be reached (the caller's own
//  connection retries and says so).  Blocks up to about twice
//  BM_REDIS_SETUP_TIMEOUT_MS.
int bm_redis_setup_check (const char *url, const char *sentinels, const char *master_name);

//  Self test (the refusals of a live Redis are the black-box tests').
void bm_redis_setup_test (bool verbose);

#endif
