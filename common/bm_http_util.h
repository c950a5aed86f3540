/*  bm_http_util.h - what the civetweb servers of botmesh share.

    Starting a server (listening address and port, options, civetweb's own
    messages logged, the port actually bound), and the command line of a
    server whose only flags are --help and --port N.  */
#ifndef BM_HTTP_UTIL_H
#define BM_HTTP_UTIL_H

#include <civetweb.h>
#include <stdint.h>
#include <stdio.h>

//  Start civetweb on listen_addr:port (listen_addr NULL or "": 0.0.0.0;
//  port 0: a free port).  options: NULL-terminated name/value pairs besides
//  "listening_ports" (num_threads, enable_keep_alive...).  callbacks may be
//  NULL; without a log_message of its own, civetweb's messages are logged
//  as warnings (bm_log).  Request handlers are the caller's to set.
//  Returns the context and sets *bound to the port it listens on, or
//  returns NULL with a message in error ("cannot listen on ADDR:PORT
//  (port in use?)").
struct mg_context *bm_http_start (const char *listen_addr, int port, const char *const *options,
                                  const struct mg_callbacks *callbacks, void *user_data,
                                  int *bound, char *error, size_t error_size);

//  The start of main for a server taking only "--help"/"-h" (usage to
//  stdout) and "--port N": logging set up for component (bm_log_init),
//  then the arguments.  Returns -1 to go on, with *port_flag the value of
//  --port or NULL; else the exit code: 0 after --help, 2 after an unknown
//  argument (named on stderr, then the usage), 1 if logging is misconfigured.
int bm_http_args (int argc, char *argv [], const char *component, void (*usage) (FILE *out),
                  const char **port_flag);

//  Apply the value of --port (port_flag may be NULL: nothing to do) to
//  *port.  0, or -1 (logged) if it is not an integer from 0 to 65535.
int bm_http_port_flag (const char *port_flag, int64_t *port);

#endif
