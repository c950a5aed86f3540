/*  bm_bench_worker.c - BMW01 workers for the benchmarks.

        bm-bench-worker noop --endpoint EP --types a,b,... [--credit 1000]
                             [--heartbeat-ms 1000] [--liveness 3] [--batch]
        bm-bench-worker idle --endpoint EP [--workers 1000] [--types idle]
                             [--seconds 10] [--broker-pid PID] [--heartbeat-ms 1000] [--liveness 3]

    noop: a worker that answers every JOB at once with DONE {ok: true,
    result: {ok: true}}; it serves many bot types through one socket per 16
    types (the broker's limit per READY): the scale case with 10 and 100 bot
    types, and a floor for botmesh-worker --noop.  --batch: READY says
    batch: true, so jobs come as JOB_MANY and are answered as DONE_MANY
    (the bulk cases).
    idle: --workers DEALER sockets in one process, each a worker that sends
    READY and then only HEARTBEATs; once the broker lists them all, it samples
    the broker's CPU time (/proc/PID/stat) for --seconds and prints
        RESULT workers=N seconds=S broker_cpu_pct=X broker_rss_kb=Y self_cpu_pct=Z

    Both stop on SIGTERM/SIGINT (sending DISCONNECT).  Read no environment
    variables.  */
#include "bench_util.h"
#include "bm_client.h"
#include "bm_proto.h"
#include "bm_worker_link.h"

#include <zmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#define TYPES_PER_WORKER 16     //  The broker's limit per READY

typedef struct {
    const char *endpoint;
    bench_types_t types;
    int64_t credit;
    bool batch;                     //  READY batch: true (JOB_MANY, DONE_MANY)
    int64_t heartbeat_ms;
    int64_t liveness;
    int64_t workers;
    int64_t seconds;
    int64_t broker_pid;
} s_opts_t;

//  One worker link of the noop mode: serves a slice of the types.
typedef struct {
    bm_worker_link_t *link;
    int64_t *done;              //  Jobs answered, all links together
} s_noop_link_t;

//  JOB: answer DONE {jobId, ok: true, result: {ok: true}} at once.
static int
s_noop_job (void *arg, const bm_codec_job_t *job)
{
    s_noop_link_t *self = (s_noop_link_t *) arg;
    static const char result [] = "\x81\xa2" "ok" "\xc3";
    bm_codec_done_t done = { .ok = true, .result = { NULL, result, sizeof result - 1 } };
    memcpy (done.job_id, job->job_id, sizeof done.job_id);
    bm_worker_link_send_done (self->link, &done);
    (*self->done)++;
    return 0;
}

//  A link as the broker sees it: READY on connect, heartbeats, reconnect
//  on silence or DISCONNECT (bm_worker_link, driven by polling).
static bm_worker_link_t *
s_link_new (const s_opts_t *o, int first, int count, const char *name, int64_t credit,
            const bm_worker_link_handlers_t *handlers, void *arg)
{
    bm_worker_link_config_t config = {
        .endpoint = o->endpoint, .name = name,
        .types = (const char *const *) &o->types.names [first], .type_count = count, .credit = credit,
        .heartbeat_ms = o->heartbeat_ms, .liveness = o->liveness, .hwm = 100000,
        .batch = o->batch };
    bm_worker_link_t *link = bm_worker_link_new (&config, NULL, handlers, arg);
    if (!link) {
        fprintf (stderr, "bm-bench-worker: cannot connect to %s\n", o->endpoint);
        exit (1);
    }
    return link;
}

//  Poll items for the links' current sockets (a reconnect replaces one).
static void
s_poll_items (bm_worker_link_t **links, zmq_pollitem_t *items, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        zsock_t *sock = bm_worker_link_socket (links [i]);
        items [i].socket = sock ? zsock_resolve (sock) : NULL;
        items [i].fd = -1;
        items [i].events = ZMQ_POLLIN;
        items [i].revents = 0;
    }
}

//  Say DISCONNECT and close, leaving the message a moment to go.
static void
s_link_close (bm_worker_link_t **link_p)
{
    bm_worker_link_send_simple (*link_p, BM_DISCONNECT, NULL, NULL);
    bm_worker_link_destroy (link_p, 200);
}

static int
s_noop (const s_opts_t *o)
{
    //  The broker takes at most TYPES_PER_WORKER types per READY
    int nlinks = (o->types.count + TYPES_PER_WORKER - 1) / TYPES_PER_WORKER;
    s_noop_link_t *state = (s_noop_link_t *) calloc ((size_t) nlinks, sizeof (s_noop_link_t));
    bm_worker_link_t **links = (bm_worker_link_t **) calloc ((size_t) nlinks, sizeof (void *));
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc ((size_t) nlinks, sizeof (zmq_pollitem_t));
    if (!state || !links || !items) {
        fprintf (stderr, "bm-bench-worker: out of memory\n");
        return 1;
    }
    int64_t done = 0;
    bm_worker_link_handlers_t handlers = { .job_decoded = s_noop_job };
    for (int l = 0; l < nlinks; l++) {
        int first = l * TYPES_PER_WORKER;
        int count = o->types.count - first < TYPES_PER_WORKER ? o->types.count - first : TYPES_PER_WORKER;
        char name [64];
        snprintf (name, sizeof name, "bench-noop-%d-%d", (int) getpid (), l);
        state [l].done = &done;
        state [l].link = links [l] = s_link_new (o, first, count, name, o->credit, &handlers, &state [l]);
    }
    int64_t tick_ns = o->heartbeat_ms * 1000000 / 4;
    int64_t next_tick = bench_now_ns () + tick_ns;
    while (!bench_stop) {
        s_poll_items (links, items, nlinks);
        long wait = (long) ((next_tick - bench_now_ns ()) / 1000000);
        if (wait < 0)
            wait = 0;
        //  Answer everything that is there, then poll again
        if (zmq_poll (items, nlinks, wait) > 0)
            for (int l = 0; l < nlinks; l++)
                if (items [l].revents & ZMQ_POLLIN)
                    bm_worker_link_dispatch (links [l]);
        if (bench_now_ns () >= next_tick) {
            for (int l = 0; l < nlinks; l++)
                bm_worker_link_tick (links [l]);
            next_tick = bench_now_ns () + tick_ns;
        }
    }
    for (int l = 0; l < nlinks; l++)
        s_link_close (&links [l]);
    fprintf (stderr, "bm-bench-worker: %lld jobs done\n", (long long) done);
    free (state);
    free (links);
    free (items);
    return 0;
}

//  utime + stime of a process, in clock ticks; -1 if unreadable.
static int64_t
s_cpu_ticks (int64_t pid)
{
    char path [64], line [4096];
    snprintf (path, sizeof path, "/proc/%lld/stat", (long long) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    size_t n = fread (line, 1, sizeof line - 1, f);
    fclose (f);
    line [n] = 0;
    char *p = strrchr (line, ')');         //  comm may hold spaces
    if (!p)
        return -1;
    long long utime = 0, stime = 0;
    //  After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
    //  majflt cmajflt utime(14) stime(15)
    if (sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld",
                &utime, &stime) != 2)
        return -1;
    return utime + stime;
}

static int64_t
s_rss_kb (int64_t pid)
{
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%lld/status", (long long) pid);
    FILE *f = fopen (path, "r");
    if (!f)
        return -1;
    long long kb = -1;
    while (fgets (line, sizeof line, f))
        if (sscanf (line, "VmRSS: %lld", &kb) == 1)
            break;
    fclose (f);
    return kb;
}

//  The idle workers take no jobs (credit 1, and none are submitted).
static int
s_idle_job (void *arg, const bm_codec_job_t *job)
{
    (void) arg, (void) job;
    return 0;
}

//  The broker dropped an idle worker (DISCONNECT or silence): it registers
//  again, and the result line counts it.
static void
s_idle_lost (void *arg)
{
    (*(int64_t *) arg)++;
}

static int
s_idle (const s_opts_t *o)
{
    struct rlimit rl;
    if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit (RLIMIT_NOFILE, &rl);
    }
    //  czmq's context: room for every worker (twice: a reconnecting link
    //  opens its new socket before the old one is gone) and the STATS client
    zsys_set_max_sockets ((size_t) o->workers * 2 + 64);
    int64_t n = o->workers;
    bm_worker_link_t **links = (bm_worker_link_t **) calloc ((size_t) n, sizeof (void *));
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc ((size_t) n, sizeof (zmq_pollitem_t));
    int64_t *due = (int64_t *) calloc ((size_t) n, sizeof (int64_t));
    if (!links || !items || !due) {
        fprintf (stderr, "bm-bench-worker: out of memory\n");
        return 1;
    }
    int64_t disconnects = 0;
    bm_worker_link_handlers_t handlers = { .job_decoded = s_idle_job, .lost = s_idle_lost };
    int64_t hb_ns = o->heartbeat_ms * 1000000;
    int64_t start = bench_now_ns ();
    for (int64_t i = 0; i < n; i++) {
        char name [64];
        snprintf (name, sizeof name, "bench-idle-%d-%lld", (int) getpid (), (long long) i);
        links [i] = s_link_new (o, 0, o->types.count < TYPES_PER_WORKER ? o->types.count : TYPES_PER_WORKER,
                                name, 1, &handlers, &disconnects);
        //  Spread the heartbeats (ticks) over the interval
        due [i] = start + hb_ns + hb_ns * i / n;
    }
    bm_client_t *client = bm_client_new (o->endpoint);
    int64_t registered = 0, deadline = bench_now_ns () + 60000000000LL;
    int64_t measure_start = 0, measure_end = 0, cpu0 = 0, self0 = 0;
    int64_t next_check = bench_now_ns ();
    bool measuring = false, finished = false;
    struct rusage ru;
    while (!bench_stop && !finished) {
        s_poll_items (links, items, n);
        if (zmq_poll (items, (int) n, 5) > 0)
            for (int64_t i = 0; i < n; i++)
                if (items [i].revents & ZMQ_POLLIN)
                    bm_worker_link_dispatch (links [i]);
        //  Heartbeats (and liveness checks) that are due, after reading
        //  what came meanwhile
        int64_t now = bench_now_ns ();
        for (int64_t i = 0; i < n; i++)
            if (due [i] <= now) {
                bm_worker_link_tick (links [i]);
                due [i] += hb_ns;
            }
        if (!measuring && now >= next_check) {
            //  STATS is the broker's own work: don't count it in the window
            registered = bench_broker_workers (client, 2000);
            if (registered >= n) {
                measuring = true;
                measure_start = bench_now_ns ();
                cpu0 = s_cpu_ticks (o->broker_pid);
                getrusage (RUSAGE_SELF, &ru);
                self0 = ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec
                      + ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
                measure_end = measure_start + o->seconds * 1000000000LL;
            }
            else
            if (now > deadline) {
                fprintf (stderr, "bm-bench-worker: the broker lists %lld of %lld workers after 60 s\n",
                         (long long) registered, (long long) n);
                break;
            }
            next_check = now + 200000000;
        }
        if (measuring && now >= measure_end) {
            int64_t cpu1 = s_cpu_ticks (o->broker_pid);
            getrusage (RUSAGE_SELF, &ru);
            int64_t self1 = ru.ru_utime.tv_sec * 1000000LL + ru.ru_utime.tv_usec
                          + ru.ru_stime.tv_sec * 1000000LL + ru.ru_stime.tv_usec;
            double secs = (double) (now - measure_start) / 1e9;
            double ticks = (double) sysconf (_SC_CLK_TCK);
            double broker_pct = cpu0 >= 0 && cpu1 >= 0
                              ? 100.0 * (double) (cpu1 - cpu0) / ticks / secs : -1;
            double self_pct = 100.0 * (double) (self1 - self0) / 1e6 / secs;
            int64_t workers_after = bench_broker_workers (client, 2000);
            printf ("RESULT workers=%lld seconds=%.1f broker_cpu_pct=%.2f broker_rss_kb=%lld "
                    "self_cpu_pct=%.1f listed_after=%lld disconnects=%lld\n",
                    (long long) n, secs, broker_pct, (long long) s_rss_kb (o->broker_pid),
                    self_pct, (long long) workers_after, (long long) disconnects);
            finished = true;
        }
    }
    bm_client_destroy (&client);
    for (int64_t i = 0; i < n; i++)
        s_link_close (&links [i]);
    free (links);
    free (items);
    free (due);
    return finished ? 0 : 1;
}

static void
s_usage (void)
{
    printf ("usage: bm-bench-worker noop --endpoint EP --types a,b,... [--credit 1000] [--heartbeat-ms 1000]\n"
            "                            [--liveness 3] [--batch]\n"
            "       bm-bench-worker idle --endpoint EP [--workers 1000] [--types idle] [--seconds 10]\n"
            "                            [--broker-pid PID] [--heartbeat-ms 1000] [--liveness 3]\n"
            "BMW01 workers for the benchmarks (docs/protocol.md section 5).\n"
            "Reads no environment variables.\n");
}

int
main (int argc, char *argv [])
{
    int rc = bench_mode_arg (argc, argv, s_usage);
    if (rc >= 0)
        return rc;
    s_opts_t o;
    memset (&o, 0, sizeof o);
    o.credit = 1000;
    o.heartbeat_ms = 1000;
    o.liveness = 3;
    o.workers = 1000;
    o.seconds = 10;
    const char *mode = argv [1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv [i], *v = i + 1 < argc ? argv [i + 1] : NULL;
        if (!strcmp (a, "--endpoint") && v)           { o.endpoint = v; i++; }
        else if (bench_types_arg (&o.types, "bm-bench-worker", a, v)) i++;
        else if (!strcmp (a, "--credit"))             { o.credit = bench_arg_int (a, v, 0, 1000000); i++; }
        else if (!strcmp (a, "--batch"))              o.batch = true;
        else if (!strcmp (a, "--heartbeat-ms"))       { o.heartbeat_ms = bench_arg_int (a, v, 10, 600000); i++; }
        else if (!strcmp (a, "--liveness"))           { o.liveness = bench_arg_int (a, v, 1, 100); i++; }
        else if (!strcmp (a, "--workers"))            { o.workers = bench_arg_int (a, v, 1, 10000); i++; }
        else if (!strcmp (a, "--seconds"))            { o.seconds = bench_arg_int (a, v, 1, 3600); i++; }
        else if (!strcmp (a, "--broker-pid"))         { o.broker_pid = bench_arg_int (a, v, 1, 1 << 30); i++; }
        else
            return bench_other_arg ("bm-bench-worker", a, s_usage);
    }
    bench_types_generate (&o.types, "bm-bench-worker");
    bench_start ("bm-bench-worker", o.endpoint);
    if (!strcmp (mode, "noop") && o.types.count > 0)
        rc = s_noop (&o);
    else
    if (!strcmp (mode, "idle")) {
        if (o.types.count == 0)
            bench_types_add (&o.types, "bm-bench-worker", "idle");
        rc = s_idle (&o);
    }
    else {
        s_usage ();
        rc = 2;
    }
    bench_types_free (&o.types);
    return rc;
}
