/*  bm_sentinel.h - where the Redis master is, according to Redis Sentinel.

    REDIS_SENTINELS names the sentinels ("host:port,host:port") and
    REDIS_MASTER_NAME the master they watch (default "mymaster").  A
    service asks them in turn, SENTINEL get-master-addr-by-name, each with
    a short timeout; the first that answers says where the master is.  It
    asks again whenever its connection to Redis is lost or refused (a
    failover: the old master is gone, or is a replica now and answers
    READONLY), so it follows +switch-master within one reconnect.  */
#ifndef BM_SENTINEL_H
#define BM_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

#define BM_SENTINEL_DEFAULT_MASTER  "mymaster"

//  Split "host:port" into host (at most host_size - 1 bytes) and *port.
//  0, or -1 if it is not such a pair.
int bm_sentinel_parse_addr (const char *addr, size_t len, char *host, size_t host_size, int *port);

//  True when sentinels is a valid list of host:port pairs.
bool bm_sentinel_list_valid (const char *sentinels);

//  Ask the sentinels (in order) where the master called name is: 0 with
//  host and *port set, or -1 when none answered with an address (why goes
//  to why, one line).
int bm_sentinel_master (const char *sentinels, const char *name, int timeout_ms,
                        char *host, size_t host_size, int *port, char *why, size_t why_size);

//  Self test (parsing; a real sentinel is tested in tests/chaos).
void bm_sentinel_test (bool verbose);

#endif
