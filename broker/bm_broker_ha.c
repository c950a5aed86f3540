/*  bm_broker_ha.c - leader and standby (BROKER_HA=redis).

    Brokers on one Redis compete for a lease (bm_lease.c).  The one that
    holds it serves; the others are standbys: bound, connected to Redis,
    answering every message REJECTED / NACK not_leader (with the leader's
    endpoint when known), keeping no queue and writing nothing.

    A lease whose owner is a process of this host and pid namespace that
    no longer exists is taken over at once (nobody can renew it): by a
    solo broker, and by a standby when the lease names the standby's own
    endpoint (a broker restarted after kill -9 finds its predecessor's).
    Any other lease runs out by itself; a standby that finds its own
    endpoint in it does not name it as the leader (peers would come back
    to it).

    Takeover: a standby that wins the lease fences its store with the new
    epoch (every write group of bm_store runs only while Redis's epoch
    counter holds it), then runs the restart recovery (bm_jobstore.c) and
    serves.

    Step-down: a leader whose lease ran out on its own clock, whose renewal
    found another owner, or whose write group Redis refused as FENCED, has
    lost its reign: it stops serving at once (before handling any other
    message or timer), says so in its log, and starts over as a standby
    with nothing in memory: the process executes itself again (same pid,
    same arguments and environment), so no state of the old reign can leak
    into the new one.  An in-process broker (the self-test) ends instead.

    Without BROKER_HA (solo), a broker with Redis takes the same lease, so
    that two brokers never lead on one Redis whatever their settings: an
    HA broker finds it held and stands by; a solo broker that finds another
    broker's lease waits for it to lapse (a broker that died without
    releasing it: up to one lease) and only then recovers the queues; if
    that broker renews it, it is alive and this one exits (status 2, a
    configuration error) naming it.  A solo broker serves from its start as
    before (SUBMIT is refused "recovering" until it holds the lease), does
    not fence its writes, and rides out a Redis outage longer than its
    lease (bm_lease_set_solo); it exits the same way if, after such an
    outage, another broker holds the lease.  */
#include "bm_broker_internal.h"
#include "bm_lease.h"
#include "bm_main.h"

#include <signal.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static void s_step_down (bm_broker_t *self, const char *why);

//  The endpoint peers reach us at: BROKER_ADVERTISE_ENDPOINT, else the
//  bound endpoint (its port as bound) with 0.0.0.0 replaced by this
//  host's name.
static void
s_advertised (bm_broker_t *self, char *out, size_t size)
{
    if (self->config.advertise && *self->config.advertise) {
        snprintf (out, size, "%s", self->config.advertise);
        return;
    }
    //  What was bound (a port 0 or * resolved), once BIND ran.
    char *bound = self->router ? zsock_last_endpoint (self->router) : NULL;
    const char *endpoint = bound && *bound ? bound : self->config.endpoint;
    char host [256] = "localhost";
    gethostname (host, sizeof host - 1);
    const char *colon = strrchr (endpoint, ':');
    const char *slashes = strstr (endpoint, "://");
    if (colon && slashes && colon > slashes
    &&  (strncmp (slashes + 3, "*:", 2) == 0 || strncmp (slashes + 3, "0.0.0.0:", 8) == 0))
        snprintf (out, size, "%.*s%s%s", (int) (slashes + 3 - endpoint), endpoint, host, colon);
    else
        snprintf (out, size, "%s", endpoint);
    zstr_free (&bound);
}

//  This process's kernel boot and pid namespace, "<boot id>.<pidns inode>":
//  two processes that give the same one see each other's pids.  "" when
//  unknown.
static void
s_pid_space (char *out, size_t size)
{
    out [0] = 0;
    char boot [64] = "";
    FILE *file = fopen ("/proc/sys/kernel/random/boot_id", "r");
    if (file) {
        if (!fgets (boot, sizeof boot, file))
            boot [0] = 0;
        fclose (file);
    }
    boot [strcspn (boot, " \n:")] = 0;
    struct stat ns;
    if (*boot && stat ("/proc/self/ns/pid", &ns) == 0)
        snprintf (out, size, "%s.%lu", boot, (unsigned long) ns.st_ino);
}

//  A process that ended and its parent has not reaped yet (state Z in
//  /proc/<pid>/stat, after the last ')' of its name).
static bool
s_zombie (long pid)
{
    char path [64], line [512];
    snprintf (path, sizeof path, "/proc/%ld/stat", pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    size_t size = fread (line, 1, sizeof line - 1, file);
    fclose (file);
    line [size] = 0;
    char *name_end = strrchr (line, ')');
    return name_end && name_end [1] == ' ' && name_end [2] == 'Z';
}

//  A lease value "<epoch> <host>:<pid>:<instance>:<pid space> <endpoint>"
//  whose owner is a process of our pid space that no longer exists, or
//  is a zombie (a broker killed, restarted here): nobody renews it.  A pid
//  taken again by another process, an owner of another host, container or
//  older version: not known to be gone (its lease runs out by itself).
static bool
s_owner_gone (const char *value)
{
    char owner [300], space [128];
    if (sscanf (value, "%*s %299s", owner) != 1)
        return false;
    char *pid_at = strchr (owner, ':');
    char *instance = pid_at ? strchr (pid_at + 1, ':') : NULL;
    char *theirs = instance ? strchr (instance + 1, ':') : NULL;
    if (!theirs)
        return false;
    s_pid_space (space, sizeof space);
    char *end;
    long pid = strtol (pid_at + 1, &end, 10);
    if (!*space || !streq (theirs + 1, space) || end != instance || pid <= 0)
        return false;
    return pid == (long) getpid () || (kill ((pid_t) pid, 0) == -1 && errno == ESRCH)
        || s_zombie (pid);
}

//  Step down for a lease that was not renewed, naming Redis's refusal of
//  the renewal (MISCONF) when there was one.
static void
s_step_down_lapsed (bm_broker_t *self, const char *why)
{
    char text [400];
    if (*bm_lease_refused (self->lease))
        snprintf (text, sizeof text, "%s: redis refuses its renewal (%s)", why,
                  bm_lease_refused (self->lease));
    else
        snprintf (text, sizeof text, "%s", why);
    s_step_down (self, text);
}

static void
s_on_fenced (void *arg)
{
    s_step_down ((bm_broker_t *) arg, "fenced: redis refused a write group of our epoch");
}

//  A solo broker found another broker leading on its Redis: it must not
//  run beside it.  The process exits (status 2) without another write; an
//  in-process broker (the self-test) ends.
static void
s_solo_refuse (bm_broker_t *self, const char *why)
{
    const char *leader = bm_lease_leader (self->lease);
    self->serving = false;
    self->leading = false;
    self->stepped_down = true;
    bm_series_set (self->m_leader, 0);
    bm_error (NULL, "configuration: another broker leads on this Redis (%s, lease epoch %s) and %s; "
              "this broker runs without BROKER_HA=redis, which needs a Redis (REDIS_URL, "
              "REDIS_PREFIX %s) of its own: set BROKER_HA=redis on every broker that shares it, "
              "or give this one its own; exiting",
              *leader ? leader : "its endpoint unknown", *bm_lease_rival_epoch (self->lease)
              ? bm_lease_rival_epoch (self->lease) : "?", why, self->config.redis_prefix);
    if (self->config.restart_argv) {
        fflush (stdout);
        fflush (stderr);
        _exit (BM_EXIT_CONFIG);
    }
    self->done = true;
    zloop_timer (self->loop, 1, 1, bm_ha_end_loop, self);
}

static void
s_on_lease (bool held, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (self->solo) {
        if (!held) {
            s_solo_refuse (self, "took the lease while this one could not renew it");
            return;
        }
        self->leading = true;
        bm_series_set (self->m_leader, 1);
        bm_info (NULL, "lease epoch %" PRId64 " taken (BROKER_HA=off: no other broker may lead "
                 "on this Redis); recovering the queues from redis", bm_lease_epoch (self->lease));
        bm_jobstore_on_store_state (bm_store_up (self->store), self);
        return;
    }
    if (!held) {
        if (self->leading)
            s_step_down_lapsed (self, "lost the lease");
        return;
    }
    int64_t epoch = bm_lease_epoch (self->lease);
    self->leading = true;
    self->serving = true;
    bm_store_set_fence (self->store, bm_lease_epoch_key (self->lease),
                        bm_lease_epoch_text (self->lease), s_on_fenced, self);
    bm_series_set (self->m_leader, 1);
    if (epoch > 1)
        bm_series_inc (self->m_failovers);
    bm_info (NULL, "leader now (lease epoch %" PRId64 "); recovering the queues from redis", epoch);
    //  The restart recovery, now that no other broker writes.
    bm_jobstore_on_store_state (bm_store_up (self->store), self);
}

//  True when the lease value names this broker's own endpoint: its
//  predecessor's (an earlier process that served here).
static bool
s_names_us (bm_broker_t *self, const char *value)
{
    const char *space = strchr (value, ' ');
    const char *endpoint = space ? strchr (space + 1, ' ') : NULL;
    char own [512];
    s_advertised (self, own, sizeof own);
    return endpoint && streq (endpoint + 1, own);
}

//  Not leading: Redis answered with another broker's lease.  One whose
//  owner is gone (s_owner_gone: a process of this host and pid namespace
//  that no longer exists) is taken over at once, each value judged once:
//  nobody can renew it, and the new epoch fences whatever its owner sent
//  before it died.  A solo broker takes any such lease; a standby only
//  its own predecessor's (the lease names its endpoint: a broker
//  restarted after kill -9), which it would otherwise name as the leader
//  until it ran out.  A standby's failover from another broker waits for
//  the lease's TTL wherever the two run, so it takes as long on one host
//  as across hosts.
static void
s_on_rival (const char *value, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (self->leading || self->stepped_down || self->released || streq (value, self->stale_seen)
    ||  (!self->solo && !s_names_us (self, value)) || !s_owner_gone (value))
        return;
    snprintf (self->stale_seen, sizeof self->stale_seen, "%s", value);
    bm_info (NULL, "redis holds the lease of a broker of this host that is gone (%s): taking "
             "it over", value);
    bm_lease_take_stale (self->lease, value);
    bm_lease_ask_now (self->lease, bm_mono_ms ());
}

//  The store's state hook: a broker that does not lead yet asks for the
//  lease as soon as Redis is up (a start: the recovery waits for it), then
//  the job store's own hook.
static void
s_on_store_state (bool up, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (up && !self->leading && !self->stepped_down && !self->released)
        bm_lease_ask_now (self->lease, bm_mono_ms ());
    bm_jobstore_on_store_state (up, self);
}

int
bm_ha_setup (bm_broker_t *self)
{
    bm_metrics_t *m = self->metrics;
    self->m_leader = bm_metric_series (bm_metrics_gauge (m, "broker_leader",
        "1 while this broker leads (holds the lease, or runs alone), 0 on a standby", NULL));
    self->m_failovers = bm_metric_series (bm_metrics_counter (m, "broker_failovers_total",
        "Times this broker took the lease over from another (epoch > 1)", NULL));
    if (!streq (self->config.ha, "redis")) {
        self->serving = true;
        bm_series_set (self->m_leader, 1);
        if (!self->store)
            return 0;
        self->solo = true;
    }
    else
    if (!self->store) {
        bm_error (NULL, "configuration: BROKER_HA=redis needs Redis (REDIS_URL is none)");
        return -1;
    }
    char owner [300], host [256] = "localhost";
    gethostname (host, sizeof host - 1);
    for (char *c = host; *c; c++)
        if (*c == ' ')
            *c = '-';
    //  host:pid:instance:pid space (s_owner_gone reads it)
    char space [128];
    s_pid_space (space, sizeof space);
    snprintf (owner, sizeof owner, "%s:%d:%s:%s", host, (int) getpid (), self->instance,
              *space ? space : "-");
    char endpoint [512];
    s_advertised (self, endpoint, sizeof endpoint);
    self->lease = bm_lease_new (self->store, self->config.redis_prefix, owner, endpoint,
                                self->config.lease_ms);
    if (!self->lease) {
        bm_error (NULL, "configuration: cannot set up the lease");
        return -1;
    }
    bm_lease_set_change_fn (self->lease, s_on_lease, self);
    //  Without BROKER_HA the lease only keeps other brokers from leading
    //  beside this one: it never waits for a replica (a Sentinel setup
    //  whose replica is away would keep the broker from its queues).
    bm_lease_set_replicated (self->lease, !self->solo && self->config.redis_sentinels != NULL);
    bm_lease_set_solo (self->lease, self->solo);
    bm_store_set_state_fn (self->store, s_on_store_state, self);
    bm_lease_set_rival_fn (self->lease, s_on_rival, self);
    if (!self->solo)
        bm_info (NULL, "standby (BROKER_HA=redis, lease %" PRId64 " ms): waiting for the lease",
                 self->config.lease_ms);
    return 0;
}

void
bm_ha_destroy (bm_broker_t *self)
{
    //  After the store: its pending callbacks have run.
    bm_lease_destroy (&self->lease);
}

//  The bound endpoint is known once BIND ran: the lease names it.
void
bm_ha_bound (bm_broker_t *self)
{
    if (!self->lease)
        return;
    char endpoint [512];
    s_advertised (self, endpoint, sizeof endpoint);
    bm_lease_set_endpoint (self->lease, endpoint);
}

void
bm_ha_tick (bm_broker_t *self, int64_t now)
{
    if (!self->lease)
        return;
    bm_lease_tick (self->lease, now);
    if (self->solo && !self->leading && !self->stepped_down) {
        const char *leader = bm_lease_leader (self->lease);
        if (streq (bm_lease_rival_value (self->lease), self->stale_seen))
            ;   //  Being taken over (s_on_rival)
        else
        if (bm_lease_rival_alive (self->lease))
            s_solo_refuse (self, "renews its lease");
        else
        if (*leader && *bm_lease_rival_epoch (self->lease) && !self->rival_logged) {
            //  Not ready meanwhile: /ready says another broker holds it.
            self->rival_logged = true;
            bm_series_set (self->m_leader, 0);
            bm_warn (NULL, "redis holds the lease of another broker (%s, epoch %s): waiting up "
                     "to %" PRId64 " ms (its remaining time in redis) for it to run out (a broker "
                     "that ended without releasing it) before recovering the queues", leader,
                     bm_lease_rival_epoch (self->lease), bm_lease_rival_ttl (self->lease));
        }
    }
    //  A standby's gauges follow its lease too (MISCONF refusing it): the
    //  broker's tick updates them only while it serves.
    if (!self->serving && self->store)
        bm_stats_ready_gauges (self);
    bm_ha_check (self, now);
}

void
bm_ha_check (bm_broker_t *self, int64_t now)
{
    if (self->lease && !self->solo && self->leading && !bm_lease_held (self->lease, now))
        s_step_down_lapsed (self, "the lease ran out before it was renewed");
}

bool
bm_ha_may_recover (bm_broker_t *self)
{
    return !self->lease || self->leading;
}

//  Graceful shutdown: give the lease up so that a standby takes over now.
//  True once Redis answered (or there is nothing to release).
bool
bm_ha_release (bm_broker_t *self)
{
    if (!self->lease)
        return true;
    if (self->leading && !self->released) {
        self->released = true;
        self->leading = false;
        self->serving = false;
        bm_series_set (self->m_leader, 0);
        bm_lease_release (self->lease);
        //  Everything it wrote is confirmed (s_tick waits for that): what
        //  it would write from now on (a retry's backoff ending, a read's
        //  answer acted on) could never be, and is the next leader's to do.
        bm_store_close_writes (self->store);
    }
    return !bm_lease_busy (self->lease);
}

//  STATS "leader": {endpoint, epoch, ha}: who answers (a standby answers
//  not_leader, so the broker that packs this leads), its lease epoch (0
//  without BROKER_HA) and the HA mode ("redis" or "off").
void
bm_ha_pack (bm_broker_t *self, msgpack_packer *pk)
{
    char endpoint [512];
    s_advertised (self, endpoint, sizeof endpoint);
    bm_pack_str (pk, "leader");
    msgpack_pack_map (pk, 3);
    bm_pack_kv_str (pk, "endpoint", endpoint);
    bm_pack_kv_int (pk, "epoch", self->lease && self->leading ? bm_lease_epoch (self->lease) : 0);
    bm_pack_kv_str (pk, "ha", self->lease && !self->solo ? "redis" : "off");
}

//  A standby's answer: REJECTED {req, code: not_leader, message, leader}
//  to a client, NACK {code: not_leader, message, leader} to a worker.
void
bm_ha_refuse (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg)
{
    const char *leader = self->lease && !self->leading ? bm_lease_leader (self->lease) : "";
    char message [600], own [512];
    s_advertised (self, own, sizeof own);
    if (*leader && streq (leader, own)) {
        //  The lease names this broker's endpoint: an earlier process here
        //  that ended without releasing it, of another pid namespace (a
        //  container started again) or not known to be gone.  Naming it
        //  would send peers back here: no leader is known.
        snprintf (message, sizeof message, "this broker is a standby; the lease in Redis is "
                  "that of an earlier broker at this endpoint, which ended without releasing "
                  "it (%" PRId64 " ms left when last asked)", bm_lease_rival_ttl (self->lease));
        leader = "";
    }
    else
    if (*leader)
        snprintf (message, sizeof message, "this broker is a standby; the leader is %s", leader);
    else
        snprintf (message, sizeof message, "this broker is a standby; no leader is known yet");
    bool worker = bm_msg_peer (msg) == BM_PEER_WORKER;
    const msgpack_object *request = worker ? NULL : bm_msg_body (msg);
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 3 + bm_req_count (request));
    bm_pack_req (&body.pk, request);
    bm_pack_kv_str (&body.pk, "code", "not_leader");
    bm_pack_kv_str (&body.pk, "message", message);
    bm_pack_kv_str (&body.pk, "leader", leader);
    if (worker) {
        bm_worker_entry_t dummy = { .identity = identity, .name = "standby" };
        bm_broker_send_worker (self, &dummy, BM_NACK, &body);
    }
    else
        bm_broker_send_client (self, identity, BM_REJECTED, &body);
    bm_body_free (&body);
}

static void
s_step_down (bm_broker_t *self, const char *why)
{
    if (self->stepped_down)
        return;
    self->stepped_down = true;
    self->serving = false;
    self->leading = false;
    bm_series_set (self->m_leader, 0);
    bm_error (NULL, "stepping down: %s; this broker serves no more and writes nothing%s",
              why, self->stopping ? "; it was stopping (SIGTERM): exiting" : "");
    //  A broker told to stop ends, as it was told, not as a standby that
    //  would hold its ports under a supervisor starting its successor.
    if (self->config.restart_argv && !self->stopping) {
        bm_warn (NULL, "restarting as a standby (exec %s)", self->config.restart_argv [0]);
        fflush (stdout);
        fflush (stderr);
        //  Nothing of this process may survive into the standby: sockets
        //  (ZeroMQ's, Redis's, the metrics server's) close on exec.
        syscall (SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
        execv ("/proc/self/exe", self->config.restart_argv);
        bm_error (NULL, "cannot exec %s (%s): exiting", self->config.restart_argv [0],
                  strerror (errno));
        _exit (3);
    }
    //  In-process, or stopping: the actor ends without flushing anything.
    self->done = true;
    zloop_timer (self->loop, 1, 1, bm_ha_end_loop, self);
}

int
bm_ha_end_loop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id; (void) arg;
    return -1;
}
