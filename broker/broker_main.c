/*  broker_main.c - botmesh-broker: parse flags, load settings, run.  */
#include "bm_env_check.h"
#include "bm_main.h"
#include "bm_http.h"
#include "bm_broker.h"
#include "bm_config.h"
#include "bm_settings.h"
#include "bm_log.h"
#include "bm_redis_setup.h"

#include <czmq.h>
#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>

static void
s_usage (void)
{
    printf (
"usage: botmesh-broker [--endpoint ENDPOINT] [--help]\n"
"\n"
"The botmesh broker: owns the job queues, the per-bot-type semaphores and\n"
"the workers; clients and workers connect to its ROUTER socket (see\n"
"docs/protocol.md).  Job records are written to Redis before a submission is\n"
"acknowledged; on start the broker rebuilds its queues from Redis.\n"
"\n"
"Flags:\n"
"  --endpoint ENDPOINT   ZeroMQ endpoint to bind (BROKER_ENDPOINT); port 0 or *\n"
"                        binds any free port, and the line\n"
"                        \"listening zmq=ADDR:PORT\" on stderr says which\n"
"  --help                this text\n"
"  --print-env           the broker-wide variables with their defaults, as\n"
"                        env.example lines\n"
"  --check-config        check the broker-wide variables and exit: 0 all\n"
"                        valid, 2 (each bad one named)\n"
"\n"
"Environment (defaults in brackets):\n");
    bm_settings_help (bm_broker_settings, stdout);
    printf (
"  REDIS_URL                  job store, redis://[:password@]host[:port][/db], or none to\n"
"                             run without durability; when unset, REDIS_HOST, REDIS_PORT,\n"
"                             REDIS_PASSWORD and REDIS_DB build it [redis://127.0.0.1:6379/0]\n"
"  MAX_PYTHON_BOTS           semaphore of bot type python (5)\n"
"  MAX_NODE_BOTS             semaphore of bot type node (10)\n"
"  MAX_JAVA_BOTS             semaphore of bot type java (3)\n"
"  MAX_<TYPE>_BOTS           semaphore of any other bot type; configuring it makes\n"
"                            the type known (MAX_BOTS_DEFAULT otherwise)\n"
"  MAX_WEBHOOK_BOTS          webhook deliveries in flight at once (10000)\n"
"  MAX_QUEUE_<TYPE>          MAX_QUEUE for one bot type\n"
"  RETRY_<TYPE>_ATTEMPTS     RETRY_ATTEMPTS for one bot type\n"
"  RETRY_<TYPE>_BACKOFF_MS   RETRY_BACKOFF_MS for one bot type\n"
"  KEEP_COMPLETED_<TYPE>     keep only the newest N completed jobs of the type (memory\n"
"                            and Redis; default: all, until COMPLETED_JOB_TTL)\n"
"  KEEP_FAILED_<TYPE>        the same for failed jobs (FAILED_JOB_TTL)\n"
"  RATE_<TYPE>               N/PERIOD: at most N job starts of the type in any window\n"
"                            of PERIOD, e.g. RATE_PYTHON=10/s (100/m, 5/200ms, 2/h;\n"
"                            0 = unlimited)\n"
"  CURVE_SERVER_CERT         the broker's secret CURVE certificate: encrypt the mesh\n"
"                            and accept only known keys (off)\n"
"  CURVE_CLIENTS_DIR         folder of the public certificates accepted\n"
"  CORS_ORIGINS              origins browsers may call the metrics port from: * (default,\n"
"                            any) or a comma list (https://app.example.com,...)\n"
"  LOG_LEVEL                 debug, info, warn or error (info)\n");
}

//  A leader that steps down runs itself again through /proc/self/exe (the
//  very binary, even if the file was replaced since), and the kernel then
//  names the process "exe". Take the program's name back, so that ps, pkill
//  and ./botmesh (which checks /proc/PID/comm) still see botmesh-broker.
static void
s_name_after_restart (void)
{
    char comm [32] = "";
    FILE *file = fopen ("/proc/self/comm", "r");
    if (file) {
        if (!fgets (comm, sizeof (comm), file))
            comm [0] = 0;
        fclose (file);
    }
    if (streq (comm, "exe\n"))
        prctl (PR_SET_NAME, "botmesh-broker", 0, 0, 0);
}

//  The first character of endpoint that a ZeroMQ endpoint to bind cannot
//  hold, or NULL: a list's separator (',', ';', white space), a control
//  character, and in a tcp:// one anything but an interface's or an
//  address's (letters, digits, ".-_:*[]%").
static const char *
s_endpoint_bad_char (const char *endpoint)
{
    bool tcp = strncmp (endpoint, "tcp://", 6) == 0;
    for (const char *c = tcp ? endpoint + 6 : endpoint; *c; c++) {
        unsigned char ch = (unsigned char) *c;
        if (ch == ',' || ch == ';' || isspace (ch) || iscntrl (ch)
        ||  (tcp && !isalnum (ch) && !strchr (".-_:*[]%", ch)))
            return c;
    }
    return NULL;
}

//  How a log line names a character: "a comma", "a space", "'x'", "byte 0x01".
static void
s_char_name (char c, char *buf, size_t size)
{
    unsigned char ch = (unsigned char) c;
    if (c == ',')
        snprintf (buf, size, "a comma");
    else
    if (c == ' ')
        snprintf (buf, size, "a space");
    else
    if (c == '\t')
        snprintf (buf, size, "a tab");
    else
    if (isgraph (ch))
        snprintf (buf, size, "'%c'", c);
    else
        snprintf (buf, size, "byte 0x%02x", ch);
}

int
main (int argc, char *argv [])
{
    s_name_after_restart ();
    if (bm_log_init ("broker"))
        return BM_EXIT_CONFIG;
    bm_main_hide_secrets ();
    bm_settings_warn_foreign ();
    bm_env_check_warn ("broker", environ);
    int info_rc = bm_settings_info_flag (argc, argv, bm_broker_settings);
    if (info_rc >= 0)
        return info_rc;
    for (int i = 1; i < argc; i++) {
        if (streq (argv [i], "--help") || streq (argv [i], "-h")) {
            s_usage ();
            return 0;
        }
        else
        if (streq (argv [i], "--endpoint") && i + 1 < argc)
            setenv ("BROKER_ENDPOINT", argv [++i], 1);
        else {
            fprintf (stderr, "botmesh-broker: unknown argument '%s' (see --help)\n", argv [i]);
            return BM_EXIT_CONFIG;
        }
    }
    //  SIGTERM and SIGINT are blocked in every thread (the actor's and
    //  ZeroMQ's inherit the mask) and taken here with sigwait: no handler,
    //  no flag.  czmq's own handler is off.
    sigset_t signals;
    bm_main_block_signals (&signals);
    zsys_init ();

    bm_broker_config_t config;
    if (bm_broker_config_load (&config) || bm_http_cors_from_env ()
    ||  bm_http_listen_check ("BROKER_METRICS_ADDR", config.metrics_addr))
        return BM_EXIT_CONFIG;
    //  A list of brokers is what peers connect to; one environment file
    //  for a host hands it to the broker too, which binds one endpoint.
    //  Whatever separates the list (a comma, a space, a ';'), or any
    //  other character a bound endpoint cannot hold: ZeroMQ's bind would
    //  fail "No such device", exit 1, which systemd restarts for ever.
    const char *bad = s_endpoint_bad_char (config.endpoint);
    if (bad) {
        char what [24];
        s_char_name (*bad, what, sizeof what);
        //  A list: a separator between two endpoints, not white space
        //  around one (" tcp://*:5555" is a stray space, not a list).
        bool list = (*bad == ',' || *bad == ';' || isspace ((unsigned char) *bad))
                 && bad > config.endpoint && bad [strspn (bad, ",; \t\r\n\v\f")];
        if (list)
            bm_error (NULL, "configuration: BROKER_ENDPOINT holds a list (%s, %s at %d): that is "
                      "what clients, workers and gateways connect to; the broker binds one "
                      "endpoint. Give the broker its own: --endpoint tcp://*:PORT, or "
                      "BROKER_ENDPOINT=tcp://*:PORT (with BROKER_ADVERTISE_ENDPOINT="
                      "tcp://THIS-HOST:PORT under BROKER_HA=redis) in an environment file of "
                      "the broker's only (deploy/systemd/README.md, \"Two brokers\")",
                      config.endpoint, what, (int) (bad - config.endpoint) + 1);
        else
            bm_error (NULL, "configuration: BROKER_ENDPOINT '%s' holds %s (at %d), which an "
                      "endpoint to bind cannot: tcp://INTERFACE:PORT (an address, a name, * "
                      "or [IPv6]) or ipc://PATH", config.endpoint, what,
                      (int) (bad - config.endpoint) + 1);
        return BM_EXIT_CONFIG;
    }
    //  A database Redis does not have, a password it refuses: a bad value,
    //  found now rather than by a broker that is never ready.
    if (config.redis_url && bm_redis_setup_check (config.redis_url, config.redis_sentinels,
                                                  config.redis_master_name))
        return BM_EXIT_CONFIG;
    //  A leader that loses its lease starts over as a standby by running
    //  this program again (bm_broker_ha.c).
    config.restart_argv = argv;
    zactor_t *broker = zactor_new (bm_broker_actor, &config);
    if (!broker)
        return BM_EXIT_FAILED;
    zstr_sendx (broker, "BIND", config.endpoint, NULL);
    char *reply = zstr_recv (broker);
    bool bound = reply && streq (reply, "0");
    //  "-2": a setting the actor checks (a bot type's limits, CURVE) is bad.
    int failed = reply && streq (reply, "-2") ? BM_EXIT_CONFIG : BM_EXIT_FAILED;
    zstr_free (&reply);
    if (bound) {
        int signum = 0;
        sigwait (&signals, &signum);
        bm_info (NULL, "%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    }
    zactor_destroy (&broker);       //  $TERM: flush, then the actor ends
    return bound ? BM_EXIT_OK : failed;
}
