/*  bm_main.c - what every service's main () does the same way.  */
#include "bm_main.h"
#include "bm_selftest.h"

#include "bm_log.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

void
bm_main_block_signals (sigset_t *signals)
{
    zsys_handler_set (NULL);
    sigemptyset (signals);
    sigaddset (signals, SIGTERM);
    sigaddset (signals, SIGINT);
    pthread_sigmask (SIG_BLOCK, signals, NULL);
    signal (SIGPIPE, SIG_IGN);
}

int
bm_main_listening_text (char *buf, size_t size, const char *kind, const char *host, int port)
{
    return snprintf (buf, size, "listening %s=%s:%d", kind, host && *host ? host : "0.0.0.0", port);
}

void
bm_main_listening (const char *kind, const char *host, int port)
{
    char text [300];
    bm_main_listening_text (text, sizeof text, kind, host, port);
    bm_log_always (BM_INFO, "%s", text);
}

int
bm_main_hide_secrets (void)
{
    if (prctl (PR_SET_DUMPABLE, 0) == 0)
        return 0;
    bm_warn (NULL, "secrets: cannot make the process not dumpable (%s): other processes of its "
             "user can read its environment in /proc/%d/environ", strerror (errno), (int) getpid ());
    return -1;
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

void
bm_main_test (bool verbose)
{
    if (verbose)
        printf (" * bm_main: ");
    char text [300];
    bm_main_listening_text (text, sizeof text, "http", "127.0.0.1", 41237);
    CHECK (streq (text, "listening http=127.0.0.1:41237"));
    bm_main_listening_text (text, sizeof text, "zmq", NULL, 5555);
    CHECK (streq (text, "listening zmq=0.0.0.0:5555"));

    //  Blocked here, and in a thread started afterwards.
    sigset_t signals, now;
    bm_main_block_signals (&signals);
    CHECK (sigismember (&signals, SIGTERM) && sigismember (&signals, SIGINT));
    CHECK (pthread_sigmask (SIG_BLOCK, NULL, &now) == 0);
    CHECK (sigismember (&now, SIGTERM) && sigismember (&now, SIGINT));
    struct sigaction pipe;
    CHECK (sigaction (SIGPIPE, NULL, &pipe) == 0 && pipe.sa_handler == SIG_IGN);
    //  A SIGTERM sent now waits for sigwait instead of ending the process.
    CHECK (raise (SIGTERM) == 0);
    int sig = 0;
    CHECK (sigwait (&signals, &sig) == 0 && sig == SIGTERM);
    pthread_sigmask (SIG_UNBLOCK, &signals, NULL);

    //  Not dumpable afterwards; dumpable again for the tests that follow.
    CHECK (bm_main_hide_secrets () == 0 && prctl (PR_GET_DUMPABLE) == 0);
    prctl (PR_SET_DUMPABLE, 1);
    if (verbose)
        printf ("OK\n");
}
