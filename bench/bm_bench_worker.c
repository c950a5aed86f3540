/*  bm_bench_worker.c - BMW01 workers for the benchmarks.

        bm-bench-worker noop --endpoint EP --types a,b,... [--credit 1000]
                             [--heartbeat-ms 1000]
        bm-bench-worker idle --endpoint EP [--workers 1000] [--types idle]
                             [--seconds 10] [--broker-pid PID] [--heartbeat-ms 1000]

    noop: a worker that answers every JOB at once with DONE {ok: true,
    result: {ok: true}}; it serves many bot types through one socket per 16
    types (the broker's limit per READY): the scale case with 10 and 100 bot
    types, and a floor for botmesh-worker --noop.
    idle: --workers DEALER sockets in one process, each a worker that sends
    READY and then only HEARTBEATs; once the broker lists them all, it samples
    the broker's CPU time (/proc/PID/stat) for --seconds and prints
        RESULT workers=N seconds=S broker_cpu_pct=X broker_rss_kb=Y self_cpu_pct=Z

    Both stop on SIGTERM/SIGINT (sending DISCONNECT).  Read no environment
    variables.  */
#include "bench_util.h"
#include "bm_client.h"
#include "bm_proto.h"

#include <zmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_TYPES 1000
#define TYPES_PER_WORKER 16     //  The broker's limit per READY

typedef struct {
    const char *endpoint;
    char *types [MAX_TYPES];
    int ntypes;
    int64_t credit;
    int64_t heartbeat_ms;
    int64_t workers;
    int64_t seconds;
    int64_t broker_pid;
} s_opts_t;

static int
s_send (void *sock, int command, const char *body, size_t size)
{
    unsigned char cmd = (unsigned char) command;
    if (zmq_send (sock, BM_WORKER_HEADER, BM_HEADER_LEN, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, &cmd, 1, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, body, size, 0) < 0)
        return -1;
    return 0;
}

//  READY {name, types, credit, pid}
static int
s_ready (void *sock, const s_opts_t *o, int first, int count, const char *name, int64_t credit)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    bm_pack_kv_str (&pk, "name", name);
    bm_pack_str (&pk, "types");
    msgpack_pack_array (&pk, (size_t) count);
    for (int t = first; t < first + count; t++)
        bm_pack_str (&pk, o->types [t]);
    bm_pack_kv_int (&pk, "credit", credit);
    bm_pack_kv_int (&pk, "pid", getpid ());
    int rc = s_send (sock, BM_READY, buf.data, buf.size);
    msgpack_sbuffer_destroy (&buf);
    return rc;
}

static void *
s_connect (void *ctx, const char *endpoint)
{
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    if (!sock) {
        fprintf (stderr, "bm-bench-worker: zmq_socket: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
    int hwm = 100000, linger = 200;
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect (sock, endpoint)) {
        fprintf (stderr, "bm-bench-worker: connect %s: %s\n", endpoint, zmq_strerror (zmq_errno ()));
        exit (1);
    }
    return sock;
}

//  Receive one message on sock (already readable).  Returns its command and
//  copies jobId (for JOB) into job_id, or -1 if it was not a BMW01 message.
static int
s_recv (void *sock, char *job_id, size_t job_id_size)
{
    zmq_msg_t parts [3];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            break;
        }
        more = zmq_msg_more (&part);
        if (n < 3)
            parts [n++] = part;
        else
            zmq_msg_close (&part);
    }
    int command = -1;
    if (n == 3) {
        const char *code;
        bm_msg_t *msg = bm_msg_decode_raw (zmq_msg_data (&parts [0]), zmq_msg_size (&parts [0]),
                                           zmq_msg_data (&parts [1]), zmq_msg_size (&parts [1]),
                                           zmq_msg_data (&parts [2]), zmq_msg_size (&parts [2]),
                                           BM_MAX_FRAME_BYTES, &code, NULL, 0);
        if (msg && bm_msg_peer (msg) == BM_PEER_WORKER) {
            command = bm_msg_command (msg);
            job_id [0] = 0;
            if (command == BM_JOB && !bm_obj_strcpy (bm_msg_body (msg), "jobId", job_id, job_id_size))
                command = -1;
        }
        bm_msg_destroy (&msg);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close (&parts [i]);
    return command;
}

static const char s_empty_map [] = { (char) 0x80 };

//  One worker socket of the noop mode: serves a slice of the types.
typedef struct {
    void *sock;
    int first, count;           //  Its types: o->types [first .. first + count)
    char name [64];
    int64_t last_sent;          //  Nanoseconds
} s_link_t;

static int
s_noop (const s_opts_t *o)
{
    void *ctx = zmq_ctx_new ();
    //  The broker takes at most TYPES_PER_WORKER types per READY
    int nlinks = (o->ntypes + TYPES_PER_WORKER - 1) / TYPES_PER_WORKER;
    s_link_t *links = (s_link_t *) calloc ((size_t) nlinks, sizeof (s_link_t));
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc ((size_t) nlinks, sizeof (zmq_pollitem_t));
    if (!links || !items) {
        fprintf (stderr, "bm-bench-worker: out of memory\n");
        return 1;
    }
    for (int l = 0; l < nlinks; l++) {
        s_link_t *link = &links [l];
        link->sock = s_connect (ctx, o->endpoint);
        link->first = l * TYPES_PER_WORKER;
        link->count = o->ntypes - link->first < TYPES_PER_WORKER ? o->ntypes - link->first : TYPES_PER_WORKER;
        snprintf (link->name, sizeof link->name, "bench-noop-%d-%d", (int) getpid (), l);
        s_ready (link->sock, o, link->first, link->count, link->name, o->credit);
        link->last_sent = bench_now_ns ();
        items [l].socket = link->sock;
        items [l].events = ZMQ_POLLIN;
    }
    int64_t done = 0;
    int64_t hb_ns = o->heartbeat_ms * 1000000;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init (&buf);
    while (!bench_stop) {
        int64_t next = INT64_MAX;
        for (int l = 0; l < nlinks; l++)
            if (links [l].last_sent + hb_ns < next)
                next = links [l].last_sent + hb_ns;
        long wait = (long) ((next - bench_now_ns ()) / 1000000);
        if (wait < 0)
            wait = 0;
        if (zmq_poll (items, nlinks, wait) > 0)
            for (int l = 0; l < nlinks; l++) {
                if (!(items [l].revents & ZMQ_POLLIN))
                    continue;
                s_link_t *link = &links [l];
                //  Answer everything that is there, then poll again
                for (int budget = 100000; budget > 0; budget--) {
                    int events = 0;
                    size_t size = sizeof events;
                    if (zmq_getsockopt (link->sock, ZMQ_EVENTS, &events, &size) || !(events & ZMQ_POLLIN))
                        break;
                    char job_id [BM_MAX_ID_LEN + 1];
                    int command = s_recv (link->sock, job_id, sizeof job_id);
                    if (command == BM_JOB) {
                        //  DONE {jobId, ok, result}
                        msgpack_sbuffer_clear (&buf);
                        msgpack_packer pk;
                        msgpack_packer_init (&pk, &buf, msgpack_sbuffer_write);
                        msgpack_pack_map (&pk, 3);
                        bm_pack_kv_str (&pk, "jobId", job_id);
                        bm_pack_kv_bool (&pk, "ok", true);
                        bm_pack_str (&pk, "result");
                        msgpack_pack_map (&pk, 1);
                        bm_pack_kv_bool (&pk, "ok", true);
                        s_send (link->sock, BM_DONE, buf.data, buf.size);
                        link->last_sent = bench_now_ns ();
                        done++;
                    }
                    else
                    if (command == BM_DISCONNECT) {
                        s_ready (link->sock, o, link->first, link->count, link->name, o->credit);
                        link->last_sent = bench_now_ns ();
                    }
                }
            }
        int64_t now = bench_now_ns ();
        for (int l = 0; l < nlinks; l++)
            if (now - links [l].last_sent >= hb_ns) {
                s_send (links [l].sock, BM_HEARTBEAT, s_empty_map, 1);
                links [l].last_sent = now;
            }
    }
    for (int l = 0; l < nlinks; l++) {
        s_send (links [l].sock, BM_DISCONNECT, s_empty_map, 1);
        zmq_close (links [l].sock);
    }
    fprintf (stderr, "bm-bench-worker: %lld jobs done\n", (long long) done);
    msgpack_sbuffer_destroy (&buf);
    zmq_ctx_term (ctx);
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

//  The number of workers the broker lists in STATS, -1 on no answer.
static int64_t
s_broker_workers (bm_client_t *client)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 1);
    bm_pack_kv_int (&pk, "req", bm_client_next_req (client));
    bm_msg_t *reply = bm_client_request (client, BM_STATS, body.data, body.size, 2000);
    msgpack_sbuffer_destroy (&body);
    int64_t count = -1;
    if (reply) {
        const msgpack_object *workers = bm_obj_get (bm_msg_body (reply), "workers");
        if (workers && workers->type == MSGPACK_OBJECT_ARRAY)
            count = (int64_t) workers->via.array.size;
        bm_msg_destroy (&reply);
    }
    return count;
}

static int
s_idle (const s_opts_t *o)
{
    struct rlimit rl;
    if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit (RLIMIT_NOFILE, &rl);
    }
    void *ctx = zmq_ctx_new ();
    zmq_ctx_set (ctx, ZMQ_MAX_SOCKETS, (int) o->workers + 64);
    int64_t n = o->workers;
    void **socks = (void **) calloc ((size_t) n, sizeof (void *));
    zmq_pollitem_t *items = (zmq_pollitem_t *) calloc ((size_t) n, sizeof (zmq_pollitem_t));
    int64_t *due = (int64_t *) calloc ((size_t) n, sizeof (int64_t));
    if (!socks || !items || !due) {
        fprintf (stderr, "bm-bench-worker: out of memory\n");
        return 1;
    }
    int64_t hb_ns = o->heartbeat_ms * 1000000;
    int64_t start = bench_now_ns ();
    for (int64_t i = 0; i < n; i++) {
        socks [i] = s_connect (ctx, o->endpoint);
        char name [64];
        snprintf (name, sizeof name, "bench-idle-%d-%lld", (int) getpid (), (long long) i);
        s_ready (socks [i], o, 0, o->ntypes < TYPES_PER_WORKER ? o->ntypes : TYPES_PER_WORKER, name, 1);
        items [i].socket = socks [i];
        items [i].events = ZMQ_POLLIN;
        //  Spread the heartbeats over the interval
        due [i] = start + hb_ns + hb_ns * i / n;
    }
    bm_client_t *client = bm_client_new (o->endpoint);
    int64_t registered = 0, deadline = bench_now_ns () + 60000000000LL;
    int64_t measure_start = 0, measure_end = 0, cpu0 = 0, self0 = 0;
    int64_t next_check = bench_now_ns ();
    int64_t disconnects = 0;
    bool measuring = false, finished = false;
    struct rusage ru;
    while (!bench_stop && !finished) {
        int64_t now = bench_now_ns ();
        //  Heartbeats that are due
        for (int64_t i = 0; i < n; i++)
            if (due [i] <= now) {
                s_send (socks [i], BM_HEARTBEAT, s_empty_map, 1);
                due [i] += hb_ns;
            }
        if (zmq_poll (items, (int) n, 5) > 0)
            for (int64_t i = 0; i < n; i++)
                if (items [i].revents & ZMQ_POLLIN) {
                    char job_id [BM_MAX_ID_LEN + 1];
                    int command;
                    while ((command = s_recv (socks [i], job_id, sizeof job_id)) != -1) {
                        if (command == BM_DISCONNECT) {
                            char name [64];
                            snprintf (name, sizeof name, "bench-idle-%d-%lld", (int) getpid (), (long long) i);
                            s_ready (socks [i], o, 0, o->ntypes < TYPES_PER_WORKER ? o->ntypes : TYPES_PER_WORKER, name, 1);
                            disconnects++;
                        }
                    }
                }
        now = bench_now_ns ();
        if (!measuring && now >= next_check) {
            //  STATS is the broker's own work: don't count it in the window
            registered = s_broker_workers (client);
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
            int64_t workers_after = s_broker_workers (client);
            printf ("RESULT workers=%lld seconds=%.1f broker_cpu_pct=%.2f broker_rss_kb=%lld "
                    "self_cpu_pct=%.1f listed_after=%lld disconnects=%lld\n",
                    (long long) n, secs, broker_pct, (long long) s_rss_kb (o->broker_pid),
                    self_pct, (long long) workers_after, (long long) disconnects);
            finished = true;
        }
    }
    bm_client_destroy (&client);
    for (int64_t i = 0; i < n; i++) {
        s_send (socks [i], BM_DISCONNECT, s_empty_map, 1);
        zmq_close (socks [i]);
    }
    zmq_ctx_term (ctx);
    free (socks);
    free (items);
    free (due);
    return finished ? 0 : 1;
}

static void
s_usage (void)
{
    printf ("usage: bm-bench-worker noop --endpoint EP --types a,b,... [--credit 1000] [--heartbeat-ms 1000]\n"
            "       bm-bench-worker idle --endpoint EP [--workers 1000] [--types idle] [--seconds 10]\n"
            "                            [--broker-pid PID] [--heartbeat-ms 1000]\n"
            "BMW01 workers for the benchmarks (docs/protocol.md section 5).\n"
            "Reads no environment variables.\n");
}

static void
s_add_types (s_opts_t *o, const char *list)
{
    char *copy = strdup (list);
    for (char *save = NULL, *t = strtok_r (copy, ",", &save); t; t = strtok_r (NULL, ",", &save)) {
        if (o->ntypes >= MAX_TYPES || !bm_valid_bot_type (t, strlen (t))) {
            fprintf (stderr, "bm-bench-worker: --types: bad or too many types at '%s'\n", t);
            exit (2);
        }
        o->types [o->ntypes++] = strdup (t);
    }
    free (copy);
}

int
main (int argc, char *argv [])
{
    if (argc < 2 || !strcmp (argv [1], "--help") || !strcmp (argv [1], "-h")) {
        s_usage ();
        return argc < 2 ? 2 : 0;
    }
    s_opts_t o;
    memset (&o, 0, sizeof o);
    o.credit = 1000;
    o.heartbeat_ms = 1000;
    o.workers = 1000;
    o.seconds = 10;
    int64_t type_count = 0;
    const char *prefix = "bench";
    const char *mode = argv [1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv [i], *v = i + 1 < argc ? argv [i + 1] : NULL;
        if (!strcmp (a, "--endpoint") && v)           { o.endpoint = v; i++; }
        else if (!strcmp (a, "--types") && v)         { s_add_types (&o, v); i++; }
        else if (!strcmp (a, "--type-prefix") && v)   { prefix = v; i++; }
        else if (!strcmp (a, "--type-count"))         { type_count = bench_arg_int (a, v, 1, MAX_TYPES); i++; }
        else if (!strcmp (a, "--credit"))             { o.credit = bench_arg_int (a, v, 0, 1000000); i++; }
        else if (!strcmp (a, "--heartbeat-ms"))       { o.heartbeat_ms = bench_arg_int (a, v, 10, 600000); i++; }
        else if (!strcmp (a, "--workers"))            { o.workers = bench_arg_int (a, v, 1, 10000); i++; }
        else if (!strcmp (a, "--seconds"))            { o.seconds = bench_arg_int (a, v, 1, 3600); i++; }
        else if (!strcmp (a, "--broker-pid"))         { o.broker_pid = bench_arg_int (a, v, 1, 1 << 30); i++; }
        else if (!strcmp (a, "--help"))               { s_usage (); return 0; }
        else {
            fprintf (stderr, "bm-bench-worker: unknown or incomplete argument '%s'\n", a);
            s_usage ();
            return 2;
        }
    }
    for (int64_t t = 0; t < type_count && o.ntypes < MAX_TYPES; t++) {
        char name [64];
        snprintf (name, sizeof name, "%s%lld", prefix, (long long) t);
        s_add_types (&o, name);
    }
    if (!o.endpoint) {
        fprintf (stderr, "bm-bench-worker: --endpoint is required\n");
        return 2;
    }
    zsys_handler_set (NULL);
    bench_catch_signals ();
    int rc;
    if (!strcmp (mode, "noop") && o.ntypes > 0)
        rc = s_noop (&o);
    else
    if (!strcmp (mode, "idle")) {
        if (o.ntypes == 0)
            s_add_types (&o, "idle");
        rc = s_idle (&o);
    }
    else {
        s_usage ();
        rc = 2;
    }
    for (int t = 0; t < o.ntypes; t++)
        free (o.types [t]);
    return rc;
}
