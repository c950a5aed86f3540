/*  bm_sentinel.c - where the Redis master is, according to Redis Sentinel.  */
#include "bm_sentinel.h"
#include "bm_endpoints.h"
#include "bm_resolve.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <hiredis/hiredis.h>

int
bm_sentinel_parse_addr (const char *addr, size_t len, char *host, size_t host_size, int *port)
{
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (addr [i] == ':')
            colon = addr + i;
    if (!colon || colon == addr || (size_t) (colon - addr) >= host_size)
        return -1;
    char digits [8];
    size_t n = len - (size_t) (colon + 1 - addr);
    if (n == 0 || n >= sizeof digits)
        return -1;
    memcpy (digits, colon + 1, n);
    digits [n] = 0;
    char *end;
    long value = strtol (digits, &end, 10);
    if (*end || value < 1 || value > 65535)
        return -1;
    memcpy (host, addr, (size_t) (colon - addr));
    host [colon - addr] = 0;
    *port = (int) value;
    return 0;
}

bool
bm_sentinel_list_valid (const char *sentinels)
{
    bm_endpoints_t *list = bm_endpoints_new (sentinels);
    bool valid = list != NULL;
    for (size_t i = 0; list && valid && i < bm_endpoints_size (list); i++) {
        char host [256];
        int port;
        const char *one = bm_endpoints_current (list);
        valid = bm_sentinel_parse_addr (one, strlen (one), host, sizeof host, &port) == 0;
        bm_endpoints_next (list, false);
    }
    bm_endpoints_destroy (&list);
    return valid;
}

int
bm_sentinel_parse_master (const redisReply *reply, const char *sentinel, const char *name,
                          char *host, size_t host_size, int *port, char *why, size_t why_size)
{
    if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2
    &&  reply->element [0]->type == REDIS_REPLY_STRING
    &&  reply->element [1]->type == REDIS_REPLY_STRING
    &&  reply->element [0]->len > 0 && reply->element [0]->len < host_size) {
        char *end;
        long value = strtol (reply->element [1]->str, &end, 10);
        if (end != reply->element [1]->str && !*end && value > 0 && value <= 65535) {
            snprintf (host, host_size, "%s", reply->element [0]->str);
            *port = (int) value;
            return 0;
        }
    }
    snprintf (why, why_size, "sentinel %s does not know master '%s'%s%s", sentinel, name,
              reply && reply->type == REDIS_REPLY_ERROR ? ": " : "",
              reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    return -1;
}

int
bm_sentinel_master (const char *sentinels, const char *name, int timeout_ms,
                    char *host, size_t host_size, int *port, char *why, size_t why_size)
{
    bm_endpoints_t *list = bm_endpoints_new (sentinels);
    snprintf (why, why_size, "REDIS_SENTINELS is not a list of host:port");
    int rc = -1;
    for (size_t i = 0; list && rc && i < bm_endpoints_size (list); i++) {
        const char *one = bm_endpoints_current (list);
        bm_endpoints_next (list, false);
        char shost [256];
        int sport;
        if (bm_sentinel_parse_addr (one, strlen (one), shost, sizeof shost, &sport))
            continue;
        //  hiredis's connect timeout does not cover the name's lookup.
        char saddr [64];
        if (bm_resolve_wait (shost, timeout_ms, saddr, sizeof saddr, why, why_size)) {
            char reason [128];
            snprintf (reason, sizeof reason, "%s", why);
            snprintf (why, why_size, "sentinel %s: %s", one, reason);
            continue;
        }
        struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
        redisContext *c = redisConnectWithTimeout (saddr, sport, tv);
        if (!c || c->err) {
            snprintf (why, why_size, "sentinel %s: %s", one, c ? c->errstr : "out of memory");
            if (c)
                redisFree (c);
            continue;
        }
        redisSetTimeout (c, tv);
        redisReply *reply = (redisReply *) redisCommand (c, "SENTINEL get-master-addr-by-name %s", name);
        rc = bm_sentinel_parse_master (reply, one, name, host, host_size, port, why, why_size);
        freeReplyObject (reply);
        redisFree (c);
    }
    bm_endpoints_destroy (&list);
    return rc;
}

static int
s_test_stop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id; (void) arg;
    return -1;
}

void
bm_sentinel_test (bool verbose)
{
    if (verbose)
        printf (" * bm_sentinel: ");
    char host [64];
    int port = 0;
    BM_CHECK (bm_sentinel_parse_addr ("10.0.0.1:26379", 14, host, sizeof host, &port) == 0);
    BM_CHECK (streq (host, "10.0.0.1") && port == 26379);
    BM_CHECK (bm_sentinel_parse_addr ("[::1]:26379", 11, host, sizeof host, &port) == 0);
    BM_CHECK (streq (host, "[::1]") && port == 26379);
    BM_CHECK (bm_sentinel_parse_addr ("nohost", 6, host, sizeof host, &port) == -1);
    BM_CHECK (bm_sentinel_parse_addr (":1", 2, host, sizeof host, &port) == -1);
    BM_CHECK (bm_sentinel_parse_addr ("h:0", 3, host, sizeof host, &port) == -1);
    BM_CHECK (bm_sentinel_parse_addr ("h:65536", 7, host, sizeof host, &port) == -1);
    BM_CHECK (bm_sentinel_parse_addr ("h:12x", 5, host, sizeof host, &port) == -1);
    BM_CHECK (bm_sentinel_list_valid ("s1:26379, s2:26380"));
    BM_CHECK (!bm_sentinel_list_valid ("s1:26379,s2"));
    BM_CHECK (!bm_sentinel_list_valid (""));
    //  Nobody listens on port 1: -1 and a reason naming the sentinel.
    char why [256];
    BM_CHECK (bm_sentinel_master ("127.0.0.1:1", "mymaster", 200, host, sizeof host, &port,
                                  why, sizeof why) == -1);
    BM_CHECK (strstr (why, "127.0.0.1:1"));

    //  Answers to SENTINEL get-master-addr-by-name
    redisReply h = { .type = REDIS_REPLY_STRING, .str = (char *) "10.0.0.3", .len = 8 };
    redisReply p = { .type = REDIS_REPLY_STRING, .str = (char *) "6380", .len = 4 };
    redisReply *pair [2] = { &h, &p };
    redisReply answer = { .type = REDIS_REPLY_ARRAY, .elements = 2, .element = pair };
    BM_CHECK (bm_sentinel_parse_master (&answer, "s:1", "m", host, sizeof host, &port,
                                        why, sizeof why) == 0);
    BM_CHECK (streq (host, "10.0.0.3") && port == 6380);
    redisReply nil = { .type = REDIS_REPLY_NIL };
    BM_CHECK (bm_sentinel_parse_master (&nil, "s:1", "m", host, sizeof host, &port,
                                        why, sizeof why) == -1);
    BM_CHECK (streq (why, "sentinel s:1 does not know master 'm'"));
    redisReply error = { .type = REDIS_REPLY_ERROR, .str = (char *) "ERR no such", .len = 11 };
    BM_CHECK (bm_sentinel_parse_master (&error, "s:1", "m", host, sizeof host, &port,
                                        why, sizeof why) == -1);
    BM_CHECK (streq (why, "sentinel s:1 does not know master 'm': ERR no such"));
    BM_CHECK (bm_sentinel_parse_master (NULL, "s:1", "m", host, sizeof host, &port,
                                        why, sizeof why) == -1);
    const char *bad_ports [] = { "0", "65536", "63x", "", "-1" };
    for (size_t i = 0; i < sizeof bad_ports / sizeof bad_ports [0]; i++) {
        p.str = (char *) bad_ports [i];
        p.len = strlen (bad_ports [i]);
        BM_CHECK (bm_sentinel_parse_master (&answer, "s:1", "m", host, sizeof host, &port,
                                            why, sizeof why) == -1);
    }
    p = (redisReply) { .type = REDIS_REPLY_INTEGER, .integer = 6380 };
    BM_CHECK (bm_sentinel_parse_master (&answer, "s:1", "m", host, sizeof host, &port,
                                        why, sizeof why) == -1);
    bm_sentinel_lookup_test (verbose);

    //  +switch-master messages
    bm_sentinel_switch_t sw;
    const char *msg = "mymaster 127.0.0.1 6379 10.0.0.2 6380";
    BM_CHECK (bm_sentinel_parse_switch (msg, strlen (msg), &sw) == 0);
    BM_CHECK (streq (sw.name, "mymaster") && streq (sw.old_host, "127.0.0.1") && sw.old_port == 6379);
    BM_CHECK (streq (sw.new_host, "10.0.0.2") && sw.new_port == 6380);
    msg = "m ::1 1 fe80::2 65535";
    BM_CHECK (bm_sentinel_parse_switch (msg, strlen (msg), &sw) == 0);
    BM_CHECK (streq (sw.old_host, "::1") && streq (sw.new_host, "fe80::2") && sw.new_port == 65535);
    //  Only the len bytes count (a reply is not 0-terminated in general).
    BM_CHECK (bm_sentinel_parse_switch (msg, 17, &sw) == 0 && sw.new_port == 6);
    const char *bad [] = {
        "", "mymaster", "mymaster 127.0.0.1 6379 10.0.0.2",           //  Too few fields
        "mymaster 127.0.0.1 6379 10.0.0.2 6380 extra",                  //  Too many
        "mymaster  127.0.0.1 6379 10.0.0.2 6380",                       //  Empty field
        "mymaster 127.0.0.1 6379 10.0.0.2 6380 ",                       //  Trailing space
        "mymaster 127.0.0.1 6379 10.0.0.2 0",                           //  Port 0
        "mymaster 127.0.0.1 6379 10.0.0.2 65536",                       //  Port too big
        "mymaster 127.0.0.1 6379 10.0.0.2 6380x",                       //  Not a number
        "mymaster 127.0.0.1 -1 10.0.0.2 6380",
        "mymaster 127.0.0.1 6379 10.0.0.2 0000006380",                  //  Too many digits
        "mymaster 127.0.0.1 6379\n10.0.0.2 6380",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++)
        BM_CHECK (bm_sentinel_parse_switch (bad [i], strlen (bad [i]), &sw) == -1);
    char big [600];
    memset (big, 'h', sizeof big);
    memcpy (big, "m h 1 ", 6);
    memcpy (big + sizeof big - 3, " 1", 2);
    big [sizeof big - 1] = 0;
    BM_CHECK (bm_sentinel_parse_switch (big, strlen (big), &sw) == -1);   //  New host too long

    //  A watch on a sentinel nobody runs: it keeps trying, never subscribed,
    //  and goes cleanly.
    zloop_t *loop = zloop_new ();
    bm_sentinel_watch_t *watch = bm_sentinel_watch_new (loop, "127.0.0.1:1, 127.0.0.1:2", "m",
                                                        NULL, NULL);
    BM_CHECK (watch);
    zloop_timer (loop, 300, 1, s_test_stop, NULL);
    zloop_start (loop);
    BM_CHECK (!bm_sentinel_watch_subscribed (watch));
    bm_sentinel_watch_destroy (&watch);
    BM_CHECK (watch == NULL);
    BM_CHECK (bm_sentinel_watch_new (loop, "", "m", NULL, NULL) == NULL);
    zloop_destroy (&loop);
    if (verbose)
        printf ("OK\n");
}
