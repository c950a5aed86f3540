/*  bm_main.h - what every service's main () does the same way.

    * Signals: SIGTERM and SIGINT blocked before any thread starts (ZeroMQ's,
      civetweb's, libcurl's resolver inherit the mask), so that only the
      main thread's sigwait or signalfd takes them; czmq's own handler off;
      SIGPIPE ignored (a peer that hangs up is an error return, not a
      death).
    * The port report: a service may be told to bind port 0 (any free
      port) and says which port it got in one line of a fixed format, on
      stderr, whatever LOG_LEVEL says:

          2026-12-03T21:40:01.123Z INFO  gateway listening http=0.0.0.0:41237

      KIND is http (the service's HTTP API), metrics (a /metrics server
      beside another protocol) or zmq (the broker's ROUTER); tests and
      scripts start services at port 0 and read this line.
    * Secrets: every service makes itself not dumpable at start
      (bm_main_hide_secrets), as the worker does.  */
#ifndef BM_MAIN_H
#define BM_MAIN_H

//  Exit codes, the same for every botmesh program (README, Configuration):
#define BM_EXIT_OK      0   //  Stopped on request (SIGTERM, SIGINT), or --help
#define BM_EXIT_FAILED  1   //  Could not run with valid settings: a port in
                            //  use, no resources; or failed while running
#define BM_EXIT_CONFIG  2   //  Usage or configuration: an unknown flag, a bad
                            //  value of a flag or variable (named in the log)

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

//  Block SIGTERM and SIGINT in the calling thread (call it before any
//  thread starts), ignore SIGPIPE, turn czmq's handler off.  Fills
//  *signals with SIGTERM and SIGINT, for sigwait or signalfd.
void bm_main_block_signals (sigset_t *signals);

//  Write the line "listening KIND=HOST:PORT" (HOST NULL or "": 0.0.0.0) at
//  INFO whatever LOG_LEVEL says.
void bm_main_listening (const char *kind, const char *host, int port);

//  Format that line's message into buf (for the log, and for the test).
//  Returns its length, as snprintf.
int bm_main_listening_text (char *buf, size_t size, const char *kind, const char *host, int port);

//  Keep the secrets of our environment and memory (API_KEYS, REDIS_URL's
//  password, WEBHOOK_SECRET, CURVE keys) from the other processes of our
//  uid: not dumpable, /proc/PID/environ, mem, maps and fd of this process
//  belong to root, so that a process of our uid without CAP_SYS_PTRACE (a
//  bot of a worker that runs as the same user) can neither read them nor
//  ptrace us, and no core dump holds them.  Call it first in main ().
//  The environment itself stays: settings are borrowed from it, and a
//  broker that steps down runs itself again with it.  Returns 0, or -1
//  after a WARN line.
int bm_main_hide_secrets (void);

//  Self test.
void bm_main_test (bool verbose);

#endif
