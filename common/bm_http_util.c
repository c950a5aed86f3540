/*  bm_http_util.c - what the civetweb servers of botmesh share.  */
#include "bm_http_util.h"
#include "bm_config.h"
#include "bm_settings.h"
#include "bm_log.h"

#include <string.h>

#define BM_HTTP_MAX_OPTIONS     32      //  Name/value pairs a caller passes

static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    bm_warn (NULL, "civetweb: %s", message);
    return 1;
}

struct mg_context *
bm_http_start (const char *listen_addr, int port, const char *const *options,
               const struct mg_callbacks *callbacks, void *user_data,
               int *bound, char *error, size_t error_size)
{
    char ports [80];
    snprintf (ports, sizeof ports, "%s:%d", listen_addr && *listen_addr ? listen_addr : "0.0.0.0",
              port);
    const char *all [2 * BM_HTTP_MAX_OPTIONS + 3];
    size_t count = 0;
    all [count++] = "listening_ports";
    all [count++] = ports;
    for (size_t i = 0; options && options [i] && options [i + 1]
                       && count + 2 < sizeof all / sizeof all [0]; i += 2) {
        all [count++] = options [i];
        all [count++] = options [i + 1];
    }
    all [count] = NULL;
    struct mg_callbacks cb;
    memset (&cb, 0, sizeof cb);
    if (callbacks)
        cb = *callbacks;
    if (!cb.log_message)
        cb.log_message = s_log_message;
    struct mg_context *ctx = mg_start (&cb, user_data, all);
    if (!ctx) {
        snprintf (error, error_size, "cannot listen on %s (port in use?)", ports);
        return NULL;
    }
    struct mg_server_port bound_ports [4];
    int found = mg_get_server_ports (ctx, 4, bound_ports);
    if (found < 1) {
        mg_stop (ctx);
        snprintf (error, error_size, "cannot listen on %s (no port bound)", ports);
        return NULL;
    }
    *bound = bound_ports [0].port;
    return ctx;
}

int
bm_http_args (int argc, char *argv [], const char *component, void (*usage) (FILE *out),
              const char **port_flag)
{
    *port_flag = NULL;
    if (bm_log_init (component))
        return 1;
    bm_settings_warn_foreign ();
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--help") == 0 || strcmp (argv [i], "-h") == 0) {
            usage (stdout);
            return 0;
        }
        else
        if (strcmp (argv [i], "--port") == 0 && i + 1 < argc)
            *port_flag = argv [++i];
        else {
            fprintf (stderr, "botmesh-%s: unknown argument '%s'\n\n", component, argv [i]);
            usage (stderr);
            return 2;
        }
    }
    return -1;
}

int
bm_http_port_flag (const char *port_flag, int64_t *port)
{
    if (port_flag && bm_parse_int (port_flag, 0, 65535, port)) {
        bm_error (NULL, "configuration: --port must be an integer from 0 to 65535 (got '%s')",
                  port_flag);
        return -1;
    }
    return 0;
}
