/*  bm_resolve.h - resolve a host name without blocking the caller's loop.

    getaddrinfo blocks for as long as the resolver waits: with a DNS
    server that does not answer, glibc's timeout times its attempts
    (5 s x 2 by default, for each address family asked in turn).  A
    bm_resolve_t runs one getaddrinfo on a detached thread of its own and
    says when it is done through a file descriptor, which a zloop (or any
    poll) watches; the owner never waits.

    The thread blocks every signal (SIGTERM goes to the loop's thread),
    and at most BM_RESOLVE_MAX_RUNNING resolutions run at once in a
    process, counting those whose owner gave up on them: a resolver that
    hangs costs a bounded number of threads.

    Which thread may call what: every method from the owner's thread
    only; the resolving thread touches nothing but the object's shared
    state, under its mutex.

    Giving up (bm_resolve_destroy) never blocks: a getaddrinfo cannot be
    cancelled, so a resolution still running is left to finish on its
    thread, which then frees what it shares with the owner.  */
#ifndef BM_RESOLVE_H
#define BM_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>

//  Resolutions running at once in a process (abandoned ones included).
//  A DNS server that swallows queries holds each for its whole timeout;
//  a store retrying about once a second keeps a handful alive.
#define BM_RESOLVE_MAX_RUNNING  16

typedef struct _bm_resolve_t bm_resolve_t;

//  True if host is a numeric IPv4 or IPv6 address: nothing to resolve.
bool bm_resolve_numeric (const char *host);

//  Start resolving host on a thread of its own.  Returns NULL, with the
//  reason in why, if it cannot start (out of memory or threads, or
//  BM_RESOLVE_MAX_RUNNING already running).
bm_resolve_t *bm_resolve_new (const char *host, char *why, size_t why_size);

//  A descriptor that becomes readable once the answer is in (the object
//  keeps it; do not close it; stop polling it before destroying).
int bm_resolve_fd (bm_resolve_t *self);

//  The answer, without waiting: 0 with the first IPv4 address (else the
//  first IPv6 one, as hiredis prefers) in addr as numeric text; -1 with
//  the resolver's reason in why ("Name or service not known"); 1 while
//  it is still running.
int bm_resolve_result (bm_resolve_t *self, char *addr, size_t addr_size,
                       char *why, size_t why_size);

//  Give up or clean up: never blocks.  Nulls *self_p.
void bm_resolve_destroy (bm_resolve_t **self_p);

//  For a caller that may block, but not for the resolver's own timeouts
//  (a connect with a deadline, on a thread of its own): resolve host,
//  waiting at most timeout_ms.  0 with the address in addr as numeric
//  text (host itself if numeric, brackets of "[::1]" taken off); -1 with
//  the reason in why ("name not resolved after 3000 ms", or the
//  resolver's).  A resolution that runs out of time is left to finish on
//  its thread, as bm_resolve_destroy does.
int bm_resolve_wait (const char *host, int timeout_ms, char *addr, size_t addr_size,
                     char *why, size_t why_size);

void bm_resolve_test (bool verbose);

#endif
