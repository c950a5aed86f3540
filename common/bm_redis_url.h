/*  bm_redis_url.h - where Redis is: one parser and one reading of the
    environment for every service.

    A Redis URL is "redis://[[user]:password@]host[:port][/db]" (the scheme
    in any case; port 6379 and db 0 unless given).  The word "none" means
    "run without Redis" where a service allows it.

    The environment names Redis in one of two ways:
        REDIS_URL                   wins when set
        REDIS_HOST, REDIS_PORT,     the original system's variables: used
        REDIS_PASSWORD, REDIS_DB    when REDIS_URL is not set
    and otherwise the default redis://127.0.0.1:6379/0.  */
#ifndef BM_REDIS_URL_H
#define BM_REDIS_URL_H

#include <stdbool.h>
#include <stddef.h>

#define BM_REDIS_DEFAULT_URL    "redis://127.0.0.1:6379/0"
#define BM_REDIS_MAX_DB         1000    //  Far above Redis's default of 16
#define BM_REDIS_MAX_PREFIX     64      //  REDIS_PREFIX: keys are built in
                                        //  fixed buffers and must never be cut
#define BM_REDIS_DEFAULT_PREFIX "botmesh:"

typedef struct {
    char host [256];            //  Host name or address
    int port;                   //  6379 unless given
    char password [256];        //  "" for none (ACL user names are ignored:
                                //  hiredis 0.14 has no AUTH user password)
    int db;                     //  0 unless given
} bm_redis_url_t;

//  Parse url into *out.  Returns 0, or -1 if it is not such a URL.
int bm_redis_url_parse (const char *url, bm_redis_url_t *out);

//  The Redis URL the environment names (see above), written into buf:
//  REDIS_URL as it is (also "none"), else one built from REDIS_HOST etc.,
//  else the default.  Returns 0, or -1 with a message naming the variable
//  in error when a value is bad (not a URL, a port out of range).  "none"
//  is accepted only when allow_none.
int bm_redis_url_from_env (bool allow_none, char *buf, size_t size,
                           char *error, size_t error_size);

//  Read REDIS_URL (or REDIS_HOST etc.) into url and REDIS_PREFIX (borrowed
//  from the environment, or the default) into *prefix, logging each bad
//  value.  Returns 0 or -1.
int bm_redis_env_load (bool allow_none, char *url, size_t url_size, const char **prefix);

//  url as it may be shown or logged: a password is replaced by "***"
//  ("redis://default:***@host:6379/0", "redis://***@host" for a password
//  without a user name); anything else is copied as it is.  Writes into buf
//  (cut to size) and returns buf.  Every log line or message that shows a
//  Redis URL goes through this.
const char *bm_redis_url_masked (const char *url, char *buf, size_t size);

//  Self test.
void bm_redis_url_test (bool verbose);

#endif
