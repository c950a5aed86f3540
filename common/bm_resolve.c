/*  bm_resolve.c - resolve a host name without blocking the caller's loop.  */
#include "bm_resolve.h"
#include "bm_selftest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct _bm_resolve_t {
    pthread_mutex_t mutex;      //  Guards done, abandoned, rc, addr
    char *host;                 //  The name; read by the thread only
    int read_fd;                //  The owner's end: readable once done
    int write_fd;               //  The thread's end: closed once done
    bool done;                  //  The thread has answered
    bool abandoned;             //  The owner gave up: the thread frees
    int rc;                     //  0, or getaddrinfo's error
    char addr [INET6_ADDRSTRLEN];   //  The address found, numeric
};

//  Resolutions running now, in the whole process (abandoned ones too).
static atomic_int s_running;

static void
s_free (bm_resolve_t *self)
{
    pthread_mutex_destroy (&self->mutex);
    free (self->host);
    free (self);
}

//  --------------------------------------------------------------------------
//  The resolving thread: one getaddrinfo, then the answer under the mutex
//  and the write end closed (which makes the read end readable).  Whoever
//  of the owner and the thread comes last frees the object.

static void *
s_resolve_thread (void *arg)
{
    bm_resolve_t *self = (bm_resolve_t *) arg;
    //  Both families in one call (glibc asks for A and AAAA at once): a
    //  DNS server that does not answer costs one timeout, not two.
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *list = NULL;
    int rc = getaddrinfo (self->host, NULL, &hints, &list);
    char addr [INET6_ADDRSTRLEN] = "";
    if (rc == 0) {
        //  IPv4 first, as hiredis tries it first.
        const struct addrinfo *pick = NULL;
        for (const struct addrinfo *ai = list; ai && !pick; ai = ai->ai_next)
            if (ai->ai_family == AF_INET)
                pick = ai;
        for (const struct addrinfo *ai = list; ai && !pick; ai = ai->ai_next)
            if (ai->ai_family == AF_INET6)
                pick = ai;
        if (!pick)
            rc = EAI_FAMILY;
        else
        if (getnameinfo (pick->ai_addr, pick->ai_addrlen, addr, sizeof addr, NULL, 0,
                         NI_NUMERICHOST))
            rc = EAI_FAIL;
        freeaddrinfo (list);
    }
    pthread_mutex_lock (&self->mutex);
    self->rc = rc;
    memcpy (self->addr, addr, sizeof addr);
    self->done = true;
    bool abandoned = self->abandoned;
    int write_fd = self->write_fd;
    pthread_mutex_unlock (&self->mutex);
    //  Not abandoned: the owner may free self from here on.  One byte,
    //  so that the owner's poll sees POLLIN (a bare close is POLLHUP).
    if (write (write_fd, "", 1) != 1) {
        //  The close alone still wakes the owner.
    }
    close (write_fd);
    if (abandoned)
        s_free (self);
    atomic_fetch_sub (&s_running, 1);
    return NULL;
}

//  --------------------------------------------------------------------------

bool
bm_resolve_numeric (const char *host)
{
    unsigned char buf [sizeof (struct in6_addr)];
    return inet_pton (AF_INET, host, buf) == 1 || inet_pton (AF_INET6, host, buf) == 1;
}

bm_resolve_t *
bm_resolve_new (const char *host, char *why, size_t why_size)
{
    if (atomic_fetch_add (&s_running, 1) >= BM_RESOLVE_MAX_RUNNING) {
        atomic_fetch_sub (&s_running, 1);
        snprintf (why, why_size, "%d name resolutions still running", BM_RESOLVE_MAX_RUNNING);
        return NULL;
    }
    bm_resolve_t *self = (bm_resolve_t *) calloc (1, sizeof (bm_resolve_t));
    int fds [2] = { -1, -1 };
    if (!self || !(self->host = strdup (host)) || pipe2 (fds, O_CLOEXEC | O_NONBLOCK)) {
        snprintf (why, why_size, "cannot start resolving: %s", strerror (errno ? errno : ENOMEM));
        if (self)
            free (self->host);
        free (self);
        atomic_fetch_sub (&s_running, 1);
        return NULL;
    }
    pthread_mutex_init (&self->mutex, NULL);
    self->read_fd = fds [0];
    self->write_fd = fds [1];
    //  Every signal blocked in the thread (it inherits the mask), so that
    //  SIGTERM wakes the loop's thread.
    sigset_t all, old;
    sigfillset (&all);
    pthread_sigmask (SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init (&attr);
    pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create (&thread, &attr, s_resolve_thread, self);
    pthread_attr_destroy (&attr);
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    if (rc) {
        snprintf (why, why_size, "cannot start resolving: %s", strerror (rc));
        close (fds [0]);
        close (fds [1]);
        s_free (self);
        atomic_fetch_sub (&s_running, 1);
        return NULL;
    }
    return self;
}

int
bm_resolve_fd (bm_resolve_t *self)
{
    return self->read_fd;
}

int
bm_resolve_result (bm_resolve_t *self, char *addr, size_t addr_size, char *why, size_t why_size)
{
    pthread_mutex_lock (&self->mutex);
    int rc = self->done ? (self->rc ? -1 : 0) : 1;
    if (rc == 0)
        snprintf (addr, addr_size, "%s", self->addr);
    else
    if (rc == -1)
        snprintf (why, why_size, "%s", gai_strerror (self->rc));
    pthread_mutex_unlock (&self->mutex);
    return rc;
}

void
bm_resolve_destroy (bm_resolve_t **self_p)
{
    if (*self_p) {
        bm_resolve_t *self = *self_p;
        //  Once abandoned, self is the thread's to free: nothing of it is
        //  read after the unlock unless the thread is done.
        close (self->read_fd);
        pthread_mutex_lock (&self->mutex);
        self->abandoned = true;
        bool done = self->done;
        pthread_mutex_unlock (&self->mutex);
        if (done)
            s_free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Self-test

//  Wait (bounded) until the descriptor is readable.
int
bm_resolve_wait (const char *host, int timeout_ms, char *addr, size_t addr_size,
                 char *why, size_t why_size)
{
    size_t len = strlen (host);
    char bare [INET6_ADDRSTRLEN];
    if (len > 2 && host [0] == '[' && host [len - 1] == ']' && len - 2 < sizeof bare) {
        memcpy (bare, host + 1, len - 2);
        bare [len - 2] = 0;
        if (bm_resolve_numeric (bare))
            host = bare;
    }
    if (bm_resolve_numeric (host)) {
        snprintf (addr, addr_size, "%s", host);
        return 0;
    }
    bm_resolve_t *self = bm_resolve_new (host, why, why_size);
    if (!self)
        return -1;
    struct timespec start, now;
    clock_gettime (CLOCK_MONOTONIC, &start);
    int rc = 1;
    for (int left = timeout_ms; rc == 1 && left > 0; ) {
        struct pollfd item = { .fd = bm_resolve_fd (self), .events = POLLIN };
        if (poll (&item, 1, left) < 0 && errno != EINTR)
            break;
        rc = bm_resolve_result (self, addr, addr_size, why, why_size);
        clock_gettime (CLOCK_MONOTONIC, &now);
        left = timeout_ms - (int) ((now.tv_sec - start.tv_sec) * 1000
                                   + (now.tv_nsec - start.tv_nsec) / 1000000);
    }
    if (rc == 1)
        snprintf (why, why_size, "name not resolved after %d ms", timeout_ms);
    bm_resolve_destroy (&self);
    return rc == 0 ? 0 : -1;
}

static bool
s_readable (int fd, int timeout_ms)
{
    struct pollfd item = { .fd = fd, .events = POLLIN };
    return poll (&item, 1, timeout_ms) == 1;
}

void
bm_resolve_test (bool verbose)
{
    (void) verbose;
    BM_CHECK (bm_resolve_numeric ("127.0.0.1"));
    BM_CHECK (bm_resolve_numeric ("::1"));
    BM_CHECK (bm_resolve_numeric ("fe80::1"));
    BM_CHECK (!bm_resolve_numeric ("localhost"));
    BM_CHECK (!bm_resolve_numeric ("redis"));
    BM_CHECK (!bm_resolve_numeric ("127.0.0"));
    BM_CHECK (!bm_resolve_numeric (""));

    //  localhost is in every /etc/hosts: answered, IPv4 first.
    char addr [INET6_ADDRSTRLEN], why [256];
    bm_resolve_t *resolve = bm_resolve_new ("localhost", why, sizeof why);
    BM_CHECK (resolve);
    BM_CHECK (s_readable (bm_resolve_fd (resolve), 10000));
    BM_CHECK (bm_resolve_result (resolve, addr, sizeof addr, why, sizeof why) == 0);
    BM_CHECK (strcmp (addr, "127.0.0.1") == 0);
    bm_resolve_destroy (&resolve);
    BM_CHECK (resolve == NULL);
    bm_resolve_destroy (&resolve);          //  Idempotent

    //  Given up at once, still running: never waits, and the thread frees
    //  the rest (LeakSanitizer would say otherwise).
    for (int i = 0; i < 4; i++) {
        resolve = bm_resolve_new ("localhost", why, sizeof why);
        BM_CHECK (resolve);
        bm_resolve_destroy (&resolve);
    }
    //  The abandoned threads end: the count of running ones goes back to 0.
    for (int waited = 0; atomic_load (&s_running) > 0 && waited < 10000; waited += 10) {
        struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
        nanosleep (&ten_ms, NULL);
    }
    BM_CHECK (atomic_load (&s_running) == 0);

    //  Waiting, with a deadline: numeric text as it is, brackets taken off
    //  an IPv6 address; a name resolved; a name unknown says why.
    BM_CHECK (bm_resolve_wait ("10.1.2.3", 1000, addr, sizeof addr, why, sizeof why) == 0);
    BM_CHECK (strcmp (addr, "10.1.2.3") == 0);
    BM_CHECK (bm_resolve_wait ("[::1]", 1000, addr, sizeof addr, why, sizeof why) == 0);
    BM_CHECK (strcmp (addr, "::1") == 0);
    BM_CHECK (bm_resolve_wait ("localhost", 10000, addr, sizeof addr, why, sizeof why) == 0);
    BM_CHECK (strcmp (addr, "127.0.0.1") == 0);
    BM_CHECK (bm_resolve_wait ("no-such-host.invalid", 10000, addr, sizeof addr,
                               why, sizeof why) == -1);
    BM_CHECK (*why);
    for (int waited = 0; atomic_load (&s_running) > 0 && waited < 10000; waited += 10) {
        struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
        nanosleep (&ten_ms, NULL);
    }
    BM_CHECK (atomic_load (&s_running) == 0);
}
