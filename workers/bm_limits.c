/*  bm_limits.c - resource limits of a bot type, applied to each bot run.  */
#include "bm_limits.h"
#include "bm_seccomp.h"
#include "bm_launch.h"
#include "bm_config.h"
#include "bm_log.h"

#include <czmq.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  A SIGKILL counts as the CPU limit when the run used, of its own CPU
//  time, its whole budget (the soft limit), or 7/8 of the hard limit (a
//  second past it) if that is less.  The kernel kills at the hard limit
//  as its tick samples count it, while rusage and /proc give the precise
//  runtime, which reads lower on a VM where the samples run ahead (1940
//  ms at a 2 s hard limit here, 880 ms at 1 s seen): with a budget of 7 s
//  or less the second's slack covers that, and past it (3600 s by
//  default) a share of the hard limit does.  Earlier than that, the
//  SIGKILL is not the limit's (kill -9, the host's OOM killer).
#define BM_LIMITS_CPU_KILL_MS(limits) \
    ((limits)->cpu_seconds <= 7 ? (int64_t) (limits)->cpu_seconds * 1000 \
                                : ((int64_t) (limits)->cpu_seconds + 1) * 1000 * 7 / 8)

static bool s_may_raise_hard (void);

struct _bm_limits_run_t {
    bm_limits_t limits;         //  What this run gets
    char cgroup [PATH_MAX];     //  Its own cgroup directory, or ""
    int cgroup_procs;           //  Open cgroup.procs of it (close-on-exec),
                                //  or -1: the child writes "0" to join
    bool cgroup_memory;         //  memory.max is set there (cgroup v2)
    int64_t oom_kills_before;   //  Its counters when its current job began
    int64_t ooms_before;        //  (pool mode: one cgroup, many jobs), or 0
    int64_t pids_refused_before;
    int pids_events;            //  Its pids.events and memory.events, held
    int memory_events;          //  open once read (read at every job), or -1
    bool cpu_killed;            //  The worker killed its process for the
    int64_t cpu_killed_ms;      //  CPU budget of its current job, after
                                //  this much CPU time in the job
};

//  --------------------------------------------------------------------------
//  Configuration

const char *bm_limits_names [BM_LIMITS_KINDS] = { "memory", "cpu", "pids", "files" };

int
bm_limits_kind (const char *name)
{
    for (int i = 0; name && i < BM_LIMITS_KINDS; i++)
        if (streq (name, bm_limits_names [i]))
            return i;
    return -1;
}

void
bm_limits_default (bm_limits_t *self)
{
    self->memory_mb = BM_LIMITS_MEMORY_MB;
    self->memory_default = true;
    self->cpu_seconds = BM_LIMITS_CPU_SECONDS;
    self->max_pids = BM_LIMITS_MAX_PIDS;
    self->max_files = BM_LIMITS_MAX_FILES;
    self->uid = -1;
    self->gid = -1;
}

//  One variable: an integer in [min, max], or 0 for none.  Returns 1 (set),
//  0 (unset or empty: *value stays) or -1 (with the problem in error).
static int
s_env_limit (const char *type, const char *suffix, int64_t min, int64_t max, int64_t *value,
             char *error, size_t error_size)
{
    char name [96];
    int n = snprintf (name, sizeof name, "BOT_%s_%s", type, suffix);
    for (int i = 4; i < n && name [i] && i < 4 + (int) strlen (type); i++)
        name [i] = name [i] == '-' ? '_' : (char) toupper ((unsigned char) name [i]);
    const char *text = getenv (name);
    if (!text || !*text)
        return 0;
    int64_t parsed;
    if (bm_parse_int (text, 0, max, &parsed) || (parsed != 0 && parsed < min)) {
        snprintf (error, error_size, "%s must be 0 (no limit) or an integer from %lld to %lld (got '%.40s')",
                  name, (long long) min, (long long) max, text);
        return -1;
    }
    *value = parsed;
    return 1;
}

int
bm_limits_from_env (bm_limits_t *self, const char *type, char *error, size_t error_size)
{
    bm_limits_default (self);
    //  Lower bounds: a bot needs some room to start at all (and fds 0-3
    //  plus what the runtime opens); upper bounds keep the arithmetic safe.
    int memory = s_env_limit (type, "MEMORY_MB", 16, 1 << 24, &self->memory_mb, error, error_size);
    if (memory < 0
    ||  s_env_limit (type, "CPU_SECONDS", 1, 86400 * 7, &self->cpu_seconds, error, error_size) < 0
    ||  s_env_limit (type, "MAX_PIDS", 1, 1 << 22, &self->max_pids, error, error_size) < 0
    ||  s_env_limit (type, "MAX_FILES", 16, 1 << 20, &self->max_files, error, error_size) < 0)
        return -1;
    self->memory_default = memory == 0;
    return 0;
}

//  One limit for a log line: "4096 MiB", or "none".
static void
s_part (char *buffer, size_t size, int64_t value, const char *unit)
{
    if (value)
        snprintf (buffer, size, "%lld%s", (long long) value, unit);
    else
        snprintf (buffer, size, "none");
}

void
bm_limits_describe (const bm_limits_t *self, char *buffer, size_t size)
{
    char memory [32], cpu [32], pids [96], files [32];
    bool effective;
    const char *method = bm_limits_pids_method (&effective);
    s_part (memory, sizeof memory, self->memory_mb, " MiB");
    s_part (cpu, sizeof cpu, self->cpu_seconds, " s");
    s_part (files, sizeof files, self->max_files, "");
    s_part (pids, sizeof pids, self->max_pids, "");
    if (self->max_pids)
        snprintf (pids + strlen (pids), sizeof pids - strlen (pids), " (%s%s)", method,
                  effective ? "" : ", not enforced for root");
    snprintf (buffer, size, "memory %s, cpu %s, pids %s, files %s", memory, cpu, pids, files);
}

//  --------------------------------------------------------------------------
//  Where per-run cgroups go: found once per process.

typedef struct {
    bool probed;                //  We looked already
    int version;                //  1 or 2; 0: no usable cgroup
    bool memory;                //  cgroup v2 with the memory controller
    char base [PATH_MAX];       //  Our own cgroup directory in that hierarchy
} s_cgroup_place_t;

static s_cgroup_place_t s_place;

//  Our cgroup path in a hierarchy, from /proc/self/cgroup: the line
//  "N:pids:/path" (v1) or "0::/path" (v2).
static bool
s_own_cgroup (const char *controllers, char *path, size_t size)
{
    FILE *file = fopen ("/proc/self/cgroup", "r");
    if (!file)
        return false;
    char line [PATH_MAX + 64];
    bool found = false;
    while (!found && fgets (line, sizeof line, file)) {
        line [strcspn (line, "\n")] = 0;
        char *first = strchr (line, ':');
        char *second = first ? strchr (first + 1, ':') : NULL;
        if (!second)
            continue;
        *second = 0;
        if (streq (first + 1, controllers)) {
            snprintf (path, size, "%s", second + 1);
            found = true;
        }
    }
    fclose (file);
    return found;
}

static bool
s_file_has_word (const char *path, const char *word)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return false;
    char text [512] = "";
    bool found = false;
    if (fgets (text, sizeof text, file))
        for (char *save = NULL, *w = strtok_r (text, " \n", &save); w; w = strtok_r (NULL, " \n", &save))
            if (streq (w, word))
                found = true;
    fclose (file);
    return found;
}

//  Can we make (and remove) a child cgroup with a pids.max there?
static bool
s_can_make_cgroup (const char *base)
{
    char probe [PATH_MAX];
    snprintf (probe, sizeof probe, "%s/botmesh-probe-%d", base, (int) getpid ());
    if (mkdir (probe, 0755) && errno != EEXIST)
        return false;
    char file [PATH_MAX + 16];
    snprintf (file, sizeof file, "%s/pids.max", probe);
    bool ok = access (file, W_OK) == 0;
    rmdir (probe);
    return ok;
}

static void s_sweep_stale (void);

static void
s_probe (void)
{
    if (s_place.probed)
        return;
    s_place.probed = true;
    FILE *file = fopen ("/proc/self/mountinfo", "r");
    if (!file)
        return;
    char line [4096];
    char v1_mount [PATH_MAX] = "", v2_mount [PATH_MAX] = "";
    while (fgets (line, sizeof line, file)) {
        //  ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER
        char mount [PATH_MAX], fstype [32], super [1024];
        char *dash = strstr (line, " - ");
        if (!dash || sscanf (line, "%*s %*s %*s %*s %4095s", mount) != 1
        ||  sscanf (dash + 3, "%31s %*s %1023s", fstype, super) != 2)
            continue;
        if (streq (fstype, "cgroup2") && !*v2_mount)
            snprintf (v2_mount, sizeof v2_mount, "%s", mount);
        else
        if (streq (fstype, "cgroup") && !*v1_mount) {
            for (char *save = NULL, *w = strtok_r (super, ",", &save); w; w = strtok_r (NULL, ",", &save))
                if (streq (w, "pids"))
                    snprintf (v1_mount, sizeof v1_mount, "%s", mount);
        }
    }
    fclose (file);
    char own [PATH_MAX], control [PATH_MAX + 32];
    //  cgroup v2 first: both limits where the controllers are delegated.
    if (*v2_mount && s_own_cgroup ("", own, sizeof own)) {
        snprintf (s_place.base, sizeof s_place.base, "%s%s", v2_mount, streq (own, "/") ? "" : own);
        snprintf (control, sizeof control, "%s/cgroup.subtree_control", s_place.base);
        if (s_file_has_word (control, "pids") && s_can_make_cgroup (s_place.base)) {
            s_place.version = 2;
            s_place.memory = s_file_has_word (control, "memory");
            s_sweep_stale ();
            return;
        }
    }
    if (*v1_mount && s_own_cgroup ("pids", own, sizeof own)) {
        snprintf (s_place.base, sizeof s_place.base, "%s%s", v1_mount, streq (own, "/") ? "" : own);
        if (s_can_make_cgroup (s_place.base)) {
            s_place.version = 1;
            s_sweep_stale ();
            return;
        }
    }
    s_place.base [0] = 0;
}

const char *
bm_limits_pids_method (bool *effective)
{
    s_probe ();
    if (effective)
        *effective = s_place.version > 0 || geteuid () != 0;
    return s_place.version == 2 ? "cgroup v2" : s_place.version == 1 ? "cgroup v1" : "RLIMIT_NPROC";
}

const char *
bm_limits_memory_method (const bm_limits_t *self)
{
    s_probe ();
    return s_place.version == 2 && s_place.memory && self->max_pids ? "cgroup v2 memory.max" : "RLIMIT_AS";
}

//  Write a short text to a file; 0 or -1.
static int
s_write_file (const char *dir, const char *name, const char *text)
{
    char path [PATH_MAX + 32];
    snprintf (path, sizeof path, "%s/%s", dir, name);
    int fd = open (path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write (fd, text, strlen (text));
    close (fd);
    return n == (ssize_t) strlen (text) ? 0 : -1;
}

//  The value after `key` in a flat keyed file (pids.events, memory.events)
//  of the run's cgroup, which stays open in *fd from its first read on.
static int64_t
s_read_key (const bm_limits_run_t *run, const char *name, const char *key)
{
    char path [PATH_MAX + 32];
    snprintf (path, sizeof path, "%s/%s", run->cgroup, name);
    int *fd = streq (name, "pids.events") ? (int *) &run->pids_events : (int *) &run->memory_events;
    char text [4096];
    if (bm_bot_reread_file (fd, path, text, sizeof text) < 0)
        return -1;
    char word [64];
    long long value;
    int64_t found = -1;
    int used;
    for (const char *at = text; sscanf (at, "%63s %lld%n", word, &value, &used) == 2; at += used)
        if (streq (word, key))
            found = value;
    return found;
}

//  --------------------------------------------------------------------------
//  A run

static void s_sweep_once (void);

bm_limits_run_t *
bm_limits_run_new (const bm_limits_t *limits, const char *name)
{
    static unsigned long sequence = 0;
    bm_limits_run_t *self = (bm_limits_run_t *) calloc (1, sizeof (bm_limits_run_t));
    if (!self)
        return NULL;
    self->limits = *limits;
    self->cgroup_procs = -1;
    self->pids_events = self->memory_events = -1;
    s_probe ();
    s_may_raise_hard ();            //  Known before any child needs it
    s_sweep_once ();
    if (s_place.version && limits->max_pids) {
        snprintf (self->cgroup, sizeof self->cgroup, "%s/botmesh-%d-%lu-%.64s", s_place.base,
                  (int) getpid (), ++sequence, name ? name : "run");
        char value [32];
        snprintf (value, sizeof value, "%lld", (long long) limits->max_pids);
        bool ok = mkdir (self->cgroup, 0755) == 0 && s_write_file (self->cgroup, "pids.max", value) == 0;
        if (ok && s_place.memory && limits->memory_mb) {
            snprintf (value, sizeof value, "%lld", (long long) limits->memory_mb << 20);
            self->cgroup_memory = s_write_file (self->cgroup, "memory.max", value) == 0;
            s_write_file (self->cgroup, "memory.swap.max", "0");
        }
        if (ok) {
            char path [PATH_MAX + 32];
            snprintf (path, sizeof path, "%s/cgroup.procs", self->cgroup);
            self->cgroup_procs = open (path, O_WRONLY | O_CLOEXEC);
            ok = self->cgroup_procs >= 0;
        }
        if (!ok) {
            bm_warn (name, "cannot make the cgroup %s (%s): MAX_PIDS falls back to RLIMIT_NPROC",
                     self->cgroup, strerror (errno));
            rmdir (self->cgroup);
            self->cgroup [0] = 0;
            self->cgroup_memory = false;
        }
    }
    return self;
}

//  Kill every process left in a run's cgroup and remove it.  Returns 0, or
//  -1 while it still holds processes (SIGKILL is not instant).
static int
s_cgroup_remove (const char *dir)
{
    if (rmdir (dir) == 0 || errno == ENOENT)
        return 0;
    //  Whatever escaped the bot's process group (setsid, a daemon's double
    //  fork) is still counted here.  Dead processes leave a cgroup at once,
    //  before they are reaped.  cgroup v2 on Linux 5.14 or later kills
    //  them all in one write, those forking meanwhile included; elsewhere
    //  each pid gets SIGKILL, the list read again while it still names
    //  processes (a child forked between the read and the kill), a few
    //  passes at most: what is still dying after that is tried again later.
    if (s_write_file (dir, "cgroup.kill", "1") != 0) {
        char path [PATH_MAX + 32];
        snprintf (path, sizeof path, "%s/cgroup.procs", dir);
        for (int pass = 0; pass < 4; pass++) {
            FILE *file = fopen (path, "r");
            if (!file)
                break;
            int pid, found = 0;
            while (fscanf (file, "%d", &pid) == 1)
                if (pid > 0 && kill (pid, SIGKILL) == 0)
                    found++;
            fclose (file);
            if (found == 0)
                break;
        }
    }
    return rmdir (dir) == 0 || errno == ENOENT ? 0 : -1;
}

//  cgroups whose processes were still dying at the end of their run: tried
//  again at each later run and by bm_limits_sweep.
#define BM_LIMITS_PENDING_MAX   64
static char *s_pending [BM_LIMITS_PENDING_MAX];

static void
s_sweep_once (void)
{
    for (int i = 0; i < BM_LIMITS_PENDING_MAX; i++)
        if (s_pending [i] && s_cgroup_remove (s_pending [i]) == 0) {
            free (s_pending [i]);
            s_pending [i] = NULL;
        }
}

//  Keep a cgroup that would not go for a later try; false if the list is
//  full.
static bool
s_pend (const char *dir)
{
    for (int i = 0; i < BM_LIMITS_PENDING_MAX; i++)
        if (!s_pending [i]) {
            s_pending [i] = strdup (dir);
            return s_pending [i] != NULL;
        }
    return false;
}

//  Per-run cgroups left by a process that is gone (a worker killed with -9
//  cannot remove its own): named botmesh-PID-SEQ-NAME in our place, PID not
//  ours and no longer a process.  Those of live processes (other workers,
//  a self-test, a bench sharing the place) are left alone, and so is one
//  whose PID was taken by a new process meanwhile: a later start removes
//  it.  Once, at the first use of the place.
static void
s_sweep_stale (void)
{
    DIR *dir = opendir (s_place.base);
    if (!dir)
        return;
    int swept = 0, busy = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        char digits [16];
        int length = 0;
        if (sscanf (entry->d_name, "botmesh-%15[0-9]-%*[0-9]-%n", digits, &length) != 1 || length == 0)
            continue;
        pid_t pid = (pid_t) atoi (digits);
        if (pid <= 0 || pid == getpid () || kill (pid, 0) == 0 || errno != ESRCH)
            continue;
        char path [PATH_MAX];
        if (snprintf (path, sizeof path, "%s/%s", s_place.base, entry->d_name) >= (int) sizeof path)
            continue;
        if (s_cgroup_remove (path) == 0)
            swept++;
        else
        if (s_pend (path))
            busy++;
    }
    closedir (dir);
    if (swept || busy)
        bm_info (NULL, "removed %d per-run cgroups left by workers that are gone (%d still emptying)",
                 swept, busy);
}

int
bm_limits_sweep (int64_t wait_ms)
{
    int64_t deadline = bm_mono_ms () + wait_ms;
    while (true) {
        s_sweep_once ();
        int left = 0;
        for (int i = 0; i < BM_LIMITS_PENDING_MAX; i++)
            left += s_pending [i] != NULL;
        if (left == 0 || bm_mono_ms () >= deadline)
            return left;
        usleep (5000);
    }
}

void
bm_limits_run_destroy (bm_limits_run_t **self_p)
{
    if (*self_p) {
        bm_limits_run_t *self = *self_p;
        if (self->cgroup_procs >= 0)
            close (self->cgroup_procs);
        if (self->pids_events >= 0)
            close (self->pids_events);
        if (self->memory_events >= 0)
            close (self->memory_events);
        if (*self->cgroup && s_cgroup_remove (self->cgroup) && !s_pend (self->cgroup))
            bm_warn (NULL, "cannot remove the cgroup %s: %s", self->cgroup, strerror (errno));
        s_sweep_once ();
        free (self);
        *self_p = NULL;
    }
}

//  Whether this process may raise a hard limit: that takes
//  CAP_SYS_RESOURCE in the initial user namespace, which root does not
//  always have (a container that drops it, root in a user namespace);
//  without it a raise fails with EPERM.  Tried once, in a child that
//  lowers its own RLIMIT_CPU and raises it again.
static int s_raise_ok = -1;

static bool
s_may_raise_hard (void)
{
    if (s_raise_ok >= 0)
        return s_raise_ok == 1;
    s_raise_ok = 0;
    if (geteuid () != 0)
        return false;
    pid_t pid = fork ();
    if (pid == 0) {
        struct rlimit limit = { 100000, 100000 };
        if (setrlimit (RLIMIT_CPU, &limit))
            _exit (1);
        limit.rlim_max = limit.rlim_cur = 100001;
        _exit (setrlimit (RLIMIT_CPU, &limit) == 0 ? 0 : 1);
    }
    int status = 0;
    if (pid > 0) {
        while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
            ;
        s_raise_ok = WIFEXITED (status) && WEXITSTATUS (status) == 0;
    }
    return s_raise_ok == 1;
}

//  setrlimit with soft and hard capped at the hard limit we have (unless
//  we may raise it).
static int
s_set (int resource, rlim_t soft, rlim_t hard)
{
    struct rlimit now;
    if (getrlimit (resource, &now) == 0 && now.rlim_max != RLIM_INFINITY) {
        //  Runs in a child between fork and exec: no probe there, the
        //  answer the parent found (bm_limits_run_new) or root's.
        bool may_raise = s_raise_ok >= 0 ? s_raise_ok == 1 : geteuid () == 0;
        if (hard > now.rlim_max && !may_raise)
            hard = now.rlim_max;
        if (soft > hard)
            soft = hard;
    }
    struct rlimit limit = { soft, hard };
    return setrlimit (resource, &limit);
}

int
bm_limits_run_apply (const bm_limits_run_t *self)
{
    const bm_limits_t *limits = &self->limits;
    if (self->cgroup_procs >= 0 && write (self->cgroup_procs, "0", 1) != 1)
        return -1;
    //  bwrap's copy of the filter, before the fd limit could refuse it.
    if (limits->seccomp && limits->seccomp_for_bwrap
    &&  bm_seccomp_child_fd (limits->seccomp, BM_SECCOMP_BWRAP_FD))
        return -1;
    if (s_set (RLIMIT_CORE, 0, 0))
        return -1;
    if (limits->memory_mb && !self->cgroup_memory) {
        rlim_t bytes = (rlim_t) limits->memory_mb << 20;
        if (s_set (RLIMIT_AS, bytes, bytes))
            return -1;
    }
    //  SIGXCPU at the soft limit, SIGKILL a second later for a bot that
    //  catches it.
    if (limits->cpu_seconds && !limits->cpu_per_job
    &&  s_set (RLIMIT_CPU, limits->cpu_seconds, limits->cpu_seconds + 1))
        return -1;
    if (limits->max_pids && self->cgroup_procs < 0
    &&  s_set (RLIMIT_NPROC, limits->max_pids, limits->max_pids))
        return -1;
    if (limits->max_files && s_set (RLIMIT_NOFILE, limits->max_files, limits->max_files))
        return -1;
    if (limits->gid >= 0) {
        gid_t gid = (gid_t) limits->gid;
        if (setgroups (1, &gid) || setgid (gid))
            return -1;
    }
    if (limits->uid >= 0 && setuid ((uid_t) limits->uid))
        return -1;
    //  Last: the filter refuses nothing the steps above need, but a
    //  filter is better loaded by the user it constrains.
    if (limits->seccomp && !limits->seccomp_for_bwrap && bm_seccomp_child_load (limits->seccomp))
        return -1;
    return 0;
}

//  prlimit of RLIMIT_CPU on a bot process.  One of another user (BOT_USER,
//  or nobody for the sandboxed bots of a root worker) takes
//  CAP_SYS_RESOURCE, which root in a container often lacks; the kernel
//  also lets a caller whose real uid and gid are the target's (its real,
//  effective and saved ones) read its limits and set them, the hard one
//  only down.  So on EPERM a root worker tries again with this thread's
//  real uid and gid switched to the bot's for the one call: the raw
//  system calls change the calling thread's credentials only (glibc's
//  wrappers would change every thread's), and the effective uid, still 0,
//  lets it switch back.
static int
s_prlimit_cpu (pid_t pid, const bm_limits_t *limits, const struct rlimit *set, struct rlimit *get)
{
    if (prlimit (pid, RLIMIT_CPU, set, get) == 0)
        return 0;
    if (errno != EPERM || geteuid () != 0 || limits->uid <= 0)
        return -1;
    uid_t our_uid = getuid ();
    gid_t our_gid = getgid ();
    gid_t gid = limits->gid >= 0 ? (gid_t) limits->gid : our_gid;
    if (syscall (SYS_setresgid, gid, (gid_t) -1, (gid_t) -1))
        return -1;
    int rc = (int) syscall (SYS_setresuid, (uid_t) limits->uid, (uid_t) -1, (uid_t) -1);
    int saved = errno;
    if (rc == 0) {
        rc = prlimit (pid, RLIMIT_CPU, set, get);
        saved = errno;
        if (syscall (SYS_setresuid, our_uid, (uid_t) -1, (uid_t) -1))
            bm_error (NULL, "cannot take back our real uid after setting a bot's CPU limit: %s",
                      strerror (errno));
    }
    if (syscall (SYS_setresgid, our_gid, (gid_t) -1, (gid_t) -1))
        bm_error (NULL, "cannot take back our real gid after setting a bot's CPU limit: %s",
                  strerror (errno));
    errno = saved;
    return rc;
}

//  The CPU time of its own a process used so far, in ns: the clock of
//  its CPU time (every thread's user and system time, what RLIMIT_CPU
//  counts against; not that of the children it reaped).  One system
//  call: a read of its /proc/PID/stat costs ~20 times as much, once per
//  pool job.  A zombie's still reads.  0, or -1 (errno set) once it is
//  reaped.
static int
s_cpu_ns (pid_t pid, uint64_t *ns)
{
    //  Its clock's id as clock_getcpuclockid makes it, without the
    //  clock_getres that call spends to check that the process exists
    //  (clock_gettime fails for one that does not).
    clockid_t clock = (clockid_t) ((~(unsigned) pid) << 3) | 2;
    struct timespec used;
    if (clock_gettime (clock, &used))
        return -1;
    *ns = (uint64_t) used.tv_sec * 1000000000ULL + (uint64_t) used.tv_nsec;
    return 0;
}

//  CPU time in ns in whole seconds, rounded up (what RLIMIT_CPU counts
//  against).
static rlim_t
s_ns_seconds (uint64_t ns)
{
    return (rlim_t) ((ns + 999999999ULL) / 1000000000ULL);
}

int64_t
bm_limits_cpu_used_ms (pid_t pid)
{
    uint64_t ns;
    if (s_cpu_ns (pid, &ns))
        return -1;
    return (int64_t) (ns / 1000000);
}

void
bm_limits_run_job_start (bm_limits_run_t *self)
{
    self->cpu_killed = false;
    if (!*self->cgroup)
        return;
    int64_t refused = s_read_key (self, "pids.events", "max");
    self->pids_refused_before = refused > 0 ? refused : 0;
    int64_t kills = self->cgroup_memory ? s_read_key (self, "memory.events", "oom_kill") : 0;
    self->oom_kills_before = kills > 0 ? kills : 0;
    int64_t ooms = self->cgroup_memory ? s_read_key (self, "memory.events", "oom") : 0;
    self->ooms_before = ooms > 0 ? ooms : 0;
}

void
bm_limits_run_cpu_killed (bm_limits_run_t *self, int64_t used_ms)
{
    self->cpu_killed = true;
    self->cpu_killed_ms = used_ms;
}

bool
bm_limits_cpu_hard_per_job (void)
{
    return s_may_raise_hard ();
}

int
bm_limits_cpu_job_start (pid_t pid, const bm_limits_t *limits, int64_t *used_ms)
{
    if (used_ms)
        *used_ms = -1;
    if (!limits->cpu_seconds)
        return 0;
    //  One read of its CPU clock per job: the worker's pool reads the
    //  same figure for the job's CPU time (used_ms).
    uint64_t ns;
    if (s_cpu_ns (pid, &ns))
        return -1;
    if (used_ms)
        *used_ms = (int64_t) (ns / 1000000);
    rlim_t used = s_ns_seconds (ns);
    struct rlimit now;
    if (s_prlimit_cpu (pid, limits, NULL, &now))
        return -1;
    //  The hard limit a second above the budget (SIGKILL for a bot that
    //  catches SIGXCPU) only where it can be raised again for the next
    //  job: the process's CPU time grows from job to job, and a hard limit
    //  lowered once and never raised would cap every later budget (and
    //  the raise fails with EPERM).  Elsewhere the soft limit alone, and
    //  the pool's own check of the job's CPU time stops a bot that ignores
    //  SIGXCPU (bm_limits_cpu_hard_per_job).
    struct rlimit limit = { used + (rlim_t) limits->cpu_seconds, now.rlim_max };
    if (s_may_raise_hard ())
        limit.rlim_max = limit.rlim_cur + 1;
    else
    if (limit.rlim_cur > now.rlim_max)
        limit.rlim_cur = now.rlim_max;
    //  Jobs of a few ms move it once a second of CPU time: most find it set.
    if (limit.rlim_cur == now.rlim_cur && limit.rlim_max == now.rlim_max)
        return 0;
    return s_prlimit_cpu (pid, limits, &limit, NULL);
}

//  --------------------------------------------------------------------------
//  Was it a limit?

typedef struct {
    const char *limit;          //  Its name in the verdict
    const char *sign;           //  Text a runtime prints when it hits it
} s_sign_t;

//  What runtimes print when an allocation, a process/thread creation or an
//  open fails.  Matched in the tail of stderr of a run that failed; the
//  sign that comes last wins (the one closest to the end is the cause).
static const s_sign_t s_signs [] = {
    { "memory", "MemoryError" },                        //  Python
    { "memory", "Cannot allocate memory" },             //  strerror (ENOMEM)
    { "memory", "ENOMEM" },
    { "memory", "std::bad_alloc" },                     //  C++
    { "memory", "out of memory" },                      //  V8, glibc, shells
    { "memory", "Fatal process OOM" },                  //  V8 (Node 18+)
    { "memory", "Fatal javascript OOM" },               //  V8's heap at start
    { "memory", "Out of memory" },
    { "memory", "OutOfMemoryError" },                   //  Java
    { "memory", "Could not reserve enough space" },     //  JVM start
    { "memory", "failed to map segment" },              //  JVM start
    { "pids", "Resource temporarily unavailable" },     //  strerror (EAGAIN):
                                                        //  fork, clone
    { "pids", "BlockingIOError: [Errno 11]" },          //  Python's fork
    { "pids", "unable to create native thread" },       //  Java
    { "pids", "unable to create new native thread" },
    { "pids", "EAGAIN" },
    { "files", "Too many open files" },                 //  strerror (EMFILE)
    { "files", "EMFILE" },
    { NULL, NULL }
};

static int64_t
s_limit_of (const bm_limits_t *limits, const char *name)
{
    return streq (name, "memory") ? limits->memory_mb : streq (name, "pids") ? limits->max_pids
         : streq (name, "files") ? limits->max_files : limits->cpu_seconds;
}

static void
s_describe_limit (const bm_limits_t *limits, const char *name, char *buffer, size_t size)
{
    if (streq (name, "memory"))
        snprintf (buffer, size, "memory limit of %lld MiB", (long long) limits->memory_mb);
    else
    if (streq (name, "cpu"))
        snprintf (buffer, size, "CPU time limit of %lld s", (long long) limits->cpu_seconds);
    else
    if (streq (name, "pids"))
        snprintf (buffer, size, "limit of %lld processes/threads", (long long) limits->max_pids);
    else
        snprintf (buffer, size, "limit of %lld open files", (long long) limits->max_files);
}

static const char *
s_verdict (const bm_limits_t *limits, const bm_limits_run_t *run, int status,
           const struct rusage *usage, const char *stderr_tail, char *message, size_t size)
{
    if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
        return NULL;
    char what [64];
    //  Killed by the worker for its job's CPU budget (the hard limit could
    //  not follow the job): certain, however its process ended.
    if (run && run->cpu_killed) {
        s_describe_limit (limits, "cpu", what, sizeof what);
        snprintf (message, size, "resource limit hit: cpu (%s): killed by SIGKILL with %lld ms of "
                  "CPU time used in the job, by the worker at the limit plus %d ms of grace (the "
                  "hard RLIMIT_CPU cannot follow the job without CAP_SYS_RESOURCE)", what,
                  (long long) run->cpu_killed_ms, BM_LIMITS_CPU_GRACE_MS);
        return "cpu";
    }
    int signum = WIFSIGNALED (status) ? WTERMSIG (status) : 0;
    //  bwrap (a sandboxed run) passes on a death by signal N as exit 128+N,
    //  and its rusage leaves out the bot's CPU time (bwrap exits before its
    //  init in the pid namespace is reaped): exit 128+SIGXCPU is taken as
    //  the sign.
    if (WIFEXITED (status) && WEXITSTATUS (status) == 128 + SIGXCPU)
        signum = SIGXCPU;
    int64_t cpu_ms = usage ? (int64_t) usage->ru_utime.tv_sec * 1000 + usage->ru_utime.tv_usec / 1000
                             + (int64_t) usage->ru_stime.tv_sec * 1000 + usage->ru_stime.tv_usec / 1000
                           : -1;
    //  The OOM killer of its cgroup sends SIGKILL too: a kill it recorded
    //  during the run (this job's, in pool mode) is memory, whatever CPU
    //  time the run had used by then.  oom_kill counts the kills of any OOM
    //  killer, the host's too (out of memory as a whole, not this run's
    //  fault: a lost attempt); oom counts the times the cgroup reached its
    //  own memory.max: both must have grown.
    bool oom_killed = run && *run->cgroup && run->cgroup_memory
                   && s_read_key (run, "memory.events", "oom_kill") > run->oom_kills_before
                   && s_read_key (run, "memory.events", "oom") > run->ooms_before;
    if (limits->cpu_seconds && !(signum == SIGKILL && oom_killed)
    &&  (signum == SIGXCPU || (signum == SIGKILL && cpu_ms >= BM_LIMITS_CPU_KILL_MS (limits)))) {
        s_describe_limit (limits, "cpu", what, sizeof what);
        //  SIGXCPU comes from the kernel at the limit: no figure (rusage
        //  is counted another way and may read below the limit).  A
        //  SIGKILL is taken as the limit's for the CPU time rusage shows.
        if (signum == SIGKILL && cpu_ms >= 0)
            snprintf (message, size, "resource limit hit: cpu (%s): killed by SIGKILL with %lld ms of "
                      "CPU time used (as counted at exit)", what, (long long) cpu_ms);
        else
            snprintf (message, size, "resource limit hit: cpu (%s): the kernel sent SIG%s at the limit",
                      what, signum == SIGXCPU ? "XCPU" : "KILL");
        return "cpu";
    }
    if (run && *run->cgroup) {
        int64_t refused = s_read_key (run, "pids.events", "max") - run->pids_refused_before;
        if (refused > 0) {
            s_describe_limit (limits, "pids", what, sizeof what);
            snprintf (message, size, "resource limit hit: pids (%s): %lld fork/clone call(s) refused",
                      what, (long long) refused);
            return "pids";
        }
        if (oom_killed) {
            s_describe_limit (limits, "memory", what, sizeof what);
            snprintf (message, size, "resource limit hit: memory (%s): killed by the OOM killer "
                      "of its cgroup", what);
            return "memory";
        }
    }
    if (!stderr_tail)
        return NULL;
    const s_sign_t *best = NULL;
    const char *best_at = NULL;
    for (const s_sign_t *sign = s_signs; sign->limit; sign++) {
        if (!s_limit_of (limits, sign->limit))
            continue;
        //  The last occurrence of this sign.
        const char *at = NULL;
        for (const char *p = strstr (stderr_tail, sign->sign); p; p = strstr (p + 1, sign->sign))
            at = p;
        if (at && (!best_at || at > best_at)) {
            best = sign;
            best_at = at;
        }
    }
    if (!best)
        return NULL;
    s_describe_limit (limits, best->limit, what, sizeof what);
    snprintf (message, size, "resource limit hit: %s (%s): the bot failed with \"%s\" on stderr",
              best->limit, what, best->sign);
    return best->limit;
}

const char *
bm_limits_run_verdict (const bm_limits_run_t *self, int status, const struct rusage *usage,
                       const char *stderr_tail, char *message, size_t message_size)
{
    return s_verdict (&self->limits, self, status, usage, stderr_tail, message, message_size);
}

const char *
bm_limits_pool_verdict (const bm_limits_t *limits, const bm_limits_run_t *run, int status,
                        const struct rusage *usage, const char *stderr_tail,
                        char *message, size_t message_size)
{
    return s_verdict (limits, run, status, usage, stderr_tail, message, message_size);
}

const char *
bm_limits_verdict (const bm_limits_t *limits, int status, const struct rusage *usage,
                   const char *stderr_tail, char *message, size_t message_size)
{
    return s_verdict (limits, NULL, status, usage, stderr_tail, message, message_size);
}

#ifdef BM_SELFTEST
//  The CPU time a process used so far, in whole seconds rounded up.  0, or
//  -1 if it is gone.
static int
s_cpu_seconds_used (pid_t pid, rlim_t *used)
{
    uint64_t ns;
    if (s_cpu_ns (pid, &ns))
        return -1;
    *used = s_ns_seconds (ns);
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test: configuration, classification, and real children under
//  each limit.

#include <assert.h>
#include <sys/wait.h>

//  A memory.events file as the kernel writes it.
static void
s_test_events (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    assert (file);
    assert (fputs (text, file) >= 0);
    assert (fclose (file) == 0);
}

//  Fork a child that applies the run's limits and runs `script` with
//  /bin/sh; its wait status and rusage.
static int
s_test_child (bm_limits_run_t *run, const char *script, struct rusage *usage)
{
    pid_t pid = fork ();
    assert (pid >= 0);
    if (pid == 0) {
        setpgid (0, 0);
        if (bm_limits_run_apply (run))
            _exit (126);
        execl ("/bin/sh", "sh", "-c", script, (char *) NULL);
        _exit (127);
    }
    int status;
    while (wait4 (pid, &status, 0, usage) < 0 && errno == EINTR)
        ;
    killpg (pid, SIGKILL);
    return status;
}

//  Root without CAP_SYS_RESOURCE (a container's): the CPU budget of a
//  process of another user is set all the same, and this thread's real
//  ids are its own again after it.  In a child, which drops the capability.
static void
s_test_cpu_budget_without_cap (void)
{
    pid_t tester = fork ();
    assert (tester >= 0);
    if (tester == 0) {
        pid_t sleeper = fork ();
        if (sleeper == 0) {
            gid_t nogroup = 65534;
            if (setgroups (1, &nogroup) || setgid (65534) || setuid (65534))
                _exit (126);
            execl ("/bin/sleep", "sleep", "30", (char *) NULL);
            _exit (127);
        }
        struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct caps [2];
        if (sleeper < 0 || syscall (SYS_capget, &header, caps))
            _exit (2);
        caps [CAP_SYS_RESOURCE / 32].effective &= ~(1U << (CAP_SYS_RESOURCE % 32));
        if (syscall (SYS_capset, &header, caps))
            _exit (3);
        s_raise_ok = -1;                //  Probe again, without it
        //  Wait for the sleeper to be nobody (it was root before its setuid).
        struct rlimit cpu;
        for (int tries = 0; tries < 500 && prlimit (sleeper, RLIMIT_CPU, NULL, &cpu) == 0; tries++)
            usleep (10000);
        int status = 0;
        if (prlimit (sleeper, RLIMIT_CPU, NULL, &cpu) == 0 || errno != EPERM)
            status = 4;                 //  The case is not the one tested
        //  The budget is 7 s beyond the CPU the sleeper used already (whole
        //  seconds, rounded up): its fork before exec can take a tick or
        //  more (a sanitizer's fork does), which makes the limit 8, and
        //  that tick may come while the budget is set: the limit is 7 plus
        //  what it used before, or after, or in between.
        rlim_t before = 0, after = 0;
        if (!status && s_cpu_seconds_used (sleeper, &before))
            status = 6;
        bm_limits_t budget = { .cpu_seconds = 7, .cpu_per_job = true, .uid = 65534, .gid = 65534 };
        if (!status && bm_limits_cpu_job_start (sleeper, &budget, NULL))
            status = 5;
        char path [64], line [256];
        if (!status && s_cpu_seconds_used (sleeper, &after))
            status = 6;
        snprintf (path, sizeof path, "/proc/%d/limits", (int) sleeper);
        FILE *file = fopen (path, "r");
        bool seven = false;
        while (file && fgets (line, sizeof line, file))
            if (strncmp (line, "Max cpu time", 12) == 0) {
                int limit = atoi (line + 26);
                seven = limit >= 7 + (int) before && limit <= 7 + (int) after;
            }
        if (file)
            fclose (file);
        if (!status && !seven)
            status = 6;
        uid_t ruid, euid, suid;
        gid_t rgid, egid, sgid;
        if (!status && (getresuid (&ruid, &euid, &suid) || getresgid (&rgid, &egid, &sgid)
                    ||  ruid || euid || suid || rgid || egid || sgid))
            status = 7;
        kill (sleeper, SIGKILL);
        waitpid (sleeper, NULL, 0);
        _exit (status);
    }
    int status = 0;
    assert (waitpid (tester, &status, 0) == tester);
    if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
        fprintf (stderr, "the CPU budget without CAP_SYS_RESOURCE: step %d failed\n",
                 WIFEXITED (status) ? WEXITSTATUS (status) : -1);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

void
bm_limits_test (bool verbose)
{
    if (verbose)
        printf (" * bm_limits: ");
    char error [256], message [256];

    //  Configuration: defaults, overrides, 0 for none, bad values named.
    bm_limits_t limits;
    unsetenv ("BOT_MY_BOT_MEMORY_MB");
    assert (bm_limits_from_env (&limits, "my-bot", error, sizeof error) == 0);
    assert (limits.memory_mb == BM_LIMITS_MEMORY_MB && limits.cpu_seconds == BM_LIMITS_CPU_SECONDS
            && limits.max_pids == BM_LIMITS_MAX_PIDS && limits.max_files == BM_LIMITS_MAX_FILES);
    assert (limits.memory_default);         //  Unset: the default, said so
    setenv ("BOT_MY_BOT_MEMORY_MB", "4096", 1);
    assert (bm_limits_from_env (&limits, "my-bot", error, sizeof error) == 0);
    assert (limits.memory_mb == BM_LIMITS_MEMORY_MB && !limits.memory_default);
    setenv ("BOT_MY_BOT_MEMORY_MB", "512", 1);
    setenv ("BOT_MY_BOT_CPU_SECONDS", "0", 1);
    assert (bm_limits_from_env (&limits, "my-bot", error, sizeof error) == 0);
    assert (limits.memory_mb == 512 && limits.cpu_seconds == 0 && !limits.memory_default);
    setenv ("BOT_MY_BOT_MAX_FILES", "3", 1);
    assert (bm_limits_from_env (&limits, "my-bot", error, sizeof error) == -1);
    assert (strstr (error, "BOT_MY_BOT_MAX_FILES") && strstr (error, "from 16"));
    setenv ("BOT_MY_BOT_MAX_FILES", "lots", 1);
    assert (bm_limits_from_env (&limits, "my-bot", error, sizeof error) == -1);
    unsetenv ("BOT_MY_BOT_MEMORY_MB");
    unsetenv ("BOT_MY_BOT_CPU_SECONDS");
    unsetenv ("BOT_MY_BOT_MAX_FILES");
    bm_limits_default (&limits);
    bm_limits_describe (&limits, message, sizeof message);
    assert (strstr (message, "memory 4096 MiB") && strstr (message, "files 1024"));
    //  A memory.max only in a run's own cgroup, which a pids limit makes.
    limits.max_pids = 0;
    assert (streq (bm_limits_memory_method (&limits), "RLIMIT_AS"));

    //  Classification from what a run left (no cgroup involved).
    bm_limits_default (&limits);
    struct rusage usage;
    memset (&usage, 0, sizeof usage);
    assert (!bm_limits_verdict (&limits, 0, &usage, "MemoryError", message, sizeof message));
    int exit1 = 1 << 8;
    assert (streq (bm_limits_verdict (&limits, exit1, &usage, "Traceback...\nMemoryError\n",
                                      message, sizeof message), "memory"));
    assert (strstr (message, "memory limit of 4096 MiB") && strstr (message, "MemoryError"));
    //  Node killed at start under its limit: V8's own words, by SIGTRAP.
    assert (streq (bm_limits_verdict (&limits, SIGTRAP, NULL, "\n#\n# Fatal process OOM in "
                                      "Failed to reserve virtual memory for CodeRange\n#\n",
                                      message, sizeof message), "memory"));
    //  Node whose heap ran out while it deserialised its start-up snapshot.
    assert (streq (bm_limits_verdict (&limits, SIGTRAP, NULL, "\n#\n# Fatal javascript OOM in GC "
                                      "during deserialization\n#\n", message, sizeof message), "memory"));
    //  The last sign wins.
    assert (streq (bm_limits_verdict (&limits, exit1, &usage,
                                      "Too many open files\n... MemoryError\n", message, sizeof message),
                   "memory"));
    assert (streq (bm_limits_verdict (&limits, exit1, &usage,
                                      "MemoryError\nOSError: [Errno 24] Too many open files\n",
                                      message, sizeof message), "files"));
    assert (streq (bm_limits_verdict (&limits, exit1, &usage,
                                      "BlockingIOError: [Errno 11] Resource temporarily unavailable",
                                      message, sizeof message), "pids"));
    assert (!bm_limits_verdict (&limits, exit1, &usage, "ValueError: bad input", message, sizeof message));
    assert (!bm_limits_verdict (&limits, exit1, NULL, NULL, message, sizeof message));
    assert (bm_limits_kind ("pids") == 2 && bm_limits_kind ("disk") == -1);
    //  A limit that is off is never the verdict.
    limits.max_files = 0;
    assert (!bm_limits_verdict (&limits, exit1, &usage, "Too many open files", message, sizeof message));
    //  CPU: SIGXCPU, or SIGKILL with the CPU time used up; a SIGKILL well
    //  before is something else.
    limits.cpu_seconds = 2;
    assert (streq (bm_limits_verdict (&limits, SIGXCPU, &usage, "", message, sizeof message), "cpu"));
    assert (strstr (message, "the kernel sent SIGXCPU at the limit") && !strstr (message, " ms "));
    assert (!bm_limits_verdict (&limits, SIGKILL, &usage, "", message, sizeof message));
    //  Less than the budget is a kill from outside (kill -9, the OOM
    //  killer): the kernel's own comes a second past the whole of it.
    usage.ru_utime.tv_sec = 1;
    usage.ru_stime.tv_usec = 999000;
    assert (!bm_limits_verdict (&limits, SIGKILL, &usage, "", message, sizeof message));
    usage.ru_stime.tv_usec = 0;
    usage.ru_utime.tv_sec = 2;
    assert (streq (bm_limits_verdict (&limits, SIGKILL, &usage, "", message, sizeof message), "cpu"));
    assert (strstr (message, "2000 ms of CPU"));
    //  A long budget: 7/8 of the hard limit, as the figures lag the
    //  kernel's samples (3600 s: 3150.875 s), where 3/4 of it was taken.
    limits.cpu_seconds = 3600;
    usage.ru_utime.tv_sec = 2700;
    assert (!bm_limits_verdict (&limits, SIGKILL, &usage, "", message, sizeof message));
    usage.ru_utime.tv_sec = 3150;
    assert (!bm_limits_verdict (&limits, SIGKILL, &usage, "", message, sizeof message));
    usage.ru_utime.tv_sec = 3151;
    assert (streq (bm_limits_verdict (&limits, SIGKILL, &usage, "", message, sizeof message), "cpu"));
    limits.cpu_seconds = 2;
    usage.ru_utime.tv_sec = 2;
    //  Its cgroup's OOM killer struck during the run (the counter past
    //  where the job began): memory, whatever CPU time it used.  A cgroup
    //  directory of files, as the kernel keeps them.
    char events [] = "/tmp/bm-limits-test-XXXXXX";
    assert (mkdtemp (events));
    bm_limits_run_t fake;
    memset (&fake, 0, sizeof fake);
    fake.limits = limits;
    fake.cgroup_procs = -1;
    fake.pids_events = fake.memory_events = -1;
    fake.cgroup_memory = true;
    snprintf (fake.cgroup, sizeof fake.cgroup, "%s", events);
    char events_path [PATH_MAX + 32];
    snprintf (events_path, sizeof events_path, "%s/memory.events", events);
    s_test_events (events_path, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    bm_limits_run_job_start (&fake);                    //  An earlier job's kill
    assert (fake.oom_kills_before == 1 && fake.ooms_before == 1);
    assert (streq (bm_limits_run_verdict (&fake, SIGKILL, &usage, NULL, message, sizeof message), "cpu"));
    //  A pooled job: the type's budget, not the run's (a warm process has
    //  no CPU limit of its own).
    fake.limits.cpu_seconds = 0;
    assert (!bm_limits_run_verdict (&fake, SIGKILL, &usage, NULL, message, sizeof message));
    assert (streq (bm_limits_pool_verdict (&limits, &fake, SIGKILL, &usage, NULL, message, sizeof message),
                   "cpu"));
    fake.limits = limits;
    //  The host's OOM killer (out of memory as a whole): oom_kill grows,
    //  oom (the cgroup at its own memory.max) does not: not this run's
    //  limit (with little CPU used: no verdict, a lost attempt).
    usage.ru_utime.tv_sec = 0;
    s_test_events (events_path, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n");
    assert (!bm_limits_run_verdict (&fake, SIGKILL, &usage, NULL, message, sizeof message));
    usage.ru_utime.tv_sec = 2;
    s_test_events (events_path, "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n");
    assert (streq (bm_limits_run_verdict (&fake, SIGKILL, &usage, NULL, message, sizeof message), "memory"));
    assert (strstr (message, "OOM killer"));
    //  A run of its own (spawn mode): counted from 0.
    fake.oom_kills_before = 0;
    fake.ooms_before = 0;
    usage.ru_utime.tv_sec = 0;
    assert (streq (bm_limits_run_verdict (&fake, SIGKILL, &usage, NULL, message, sizeof message), "memory"));
    //  The events file stays open from its first read on: each read
    //  starts again at its offset 0 (above, the file written anew).
    assert (fake.memory_events >= 0);
    close (fake.memory_events);
    fake.memory_events = -1;
    unlink (events_path);
    rmdir (events);
    //  Killed by the worker for its job's CPU budget: cpu, even from
    //  bwrap's exit 137, until the process's next job begins.
    bm_limits_run_cpu_killed (&fake, 2100);
    assert (streq (bm_limits_pool_verdict (&limits, &fake, 137 << 8, NULL, "", message, sizeof message),
                   "cpu"));
    assert (strstr (message, "2100 ms of CPU time used in the job, by the worker"));
    bm_limits_run_job_start (&fake);
    assert (!bm_limits_pool_verdict (&limits, &fake, 137 << 8, NULL, "", message, sizeof message));
    //  Under bwrap: exit 128 + SIGXCPU (its rusage misses the bot's CPU).
    usage.ru_utime.tv_sec = 0;
    assert (streq (bm_limits_verdict (&limits, (128 + SIGXCPU) << 8, &usage, "", message, sizeof message),
                   "cpu"));
    assert (!bm_limits_verdict (&limits, (128 + SIGKILL) << 8, &usage, "", message, sizeof message));

    //  Real children, each limit hit for real.
    bm_limits_t tight = { .memory_mb = 64, .cpu_seconds = 1, .max_pids = 8, .max_files = 16 };
    bm_limits_run_t *run = bm_limits_run_new (&tight, "selftest");
    int status = s_test_child (run, "exit 0", &usage);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    //  No core dumps, and the fd limit.
    status = s_test_child (run, "[ \"$(ulimit -c)\" = 0 ] && [ \"$(ulimit -n)\" = 16 ]", &usage);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    //  CPU: a spinner is stopped after about a second of CPU.
    status = s_test_child (run, "while :; do :; done", &usage);
    assert (streq (bm_limits_run_verdict (run, status, &usage, NULL, message, sizeof message), "cpu"));
    bm_limits_run_destroy (&run);
    //  Processes: a bounded fork bomb (at most 40 sleepers) is refused
    //  past 8 (certain with a cgroup; as root without one there is no limit
    //  and the check is skipped).
    bool effective;
    const char *method = bm_limits_pids_method (&effective);
    if (effective) {
        run = bm_limits_run_new (&tight, "selftest-pids");
        status = s_test_child (run, "i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done 2>&1"
                                    " | tail -1 >&2; exit 1", &usage);
        const char *limit = bm_limits_run_verdict (run, status, &usage,
                                                   "fork: Resource temporarily unavailable",
                                                   message, sizeof message);
        assert (limit && streq (limit, "pids"));
        if (strncmp (method, "cgroup", 6) == 0)
            assert (strstr (message, "refused"));
        bm_limits_run_destroy (&run);
    }
    //  Memory: the address space limit makes a big allocation fail.
    run = bm_limits_run_new (&tight, "selftest-memory");
    status = s_test_child (run, "exec /usr/bin/python3 -c 'x = bytearray(256 << 20)'", &usage);
    assert (WIFEXITED (status) && WEXITSTATUS (status) != 0);
    bm_limits_run_destroy (&run);
    assert (run == NULL);
    assert (bm_limits_sweep (2000) == 0);

    //  A pooled process's CPU budget per job: its soft limit moves to what
    //  it used (nothing yet, asleep) plus the budget.
    pid_t sleeper = fork ();
    assert (sleeper >= 0);
    if (sleeper == 0) {
        execl ("/bin/sleep", "sleep", "30", (char *) NULL);
        _exit (127);
    }
    bm_limits_t budget = { .cpu_seconds = 5, .cpu_per_job = true };
    struct rlimit cpu, before;
    assert (prlimit (sleeper, RLIMIT_CPU, NULL, &before) == 0);
    int64_t start_ms = -2;
    assert (bm_limits_cpu_job_start (sleeper, &budget, &start_ms) == 0);
    assert (start_ms >= 0 && start_ms < 1000);          //  What it used: a sleeper's
    assert (prlimit (sleeper, RLIMIT_CPU, NULL, &cpu) == 0);
    assert (cpu.rlim_cur == 5);
    if (s_may_raise_hard ())
        assert (cpu.rlim_max == 6);
    else
        assert (cpu.rlim_max == before.rlim_max);   //  The sleeper's, kept
    //  A later job, the process having used more: the budget moves up
    //  (a raise of the hard limit where allowed, never an EPERM).
    struct rlimit lower = { 3, s_may_raise_hard () ? 4 : before.rlim_max };
    assert (prlimit (sleeper, RLIMIT_CPU, &lower, NULL) == 0);
    assert (bm_limits_cpu_job_start (sleeper, &budget, NULL) == 0);
    assert (prlimit (sleeper, RLIMIT_CPU, NULL, &cpu) == 0);
    assert (cpu.rlim_cur == 5);
    budget.cpu_seconds = 0;             //  No limit: left alone
    assert (bm_limits_cpu_job_start (sleeper, &budget, NULL) == 0);
    //  What it used, as wait4 counts it at its exit (a sleeper: little).
    int64_t used_ms = bm_limits_cpu_used_ms (sleeper);
    assert (used_ms >= 0 && used_ms < 1000);
    kill (sleeper, SIGKILL);
    waitpid (sleeper, NULL, 0);
    assert (bm_limits_cpu_used_ms (sleeper) == -1);                //  Gone
    budget.cpu_seconds = 5;
    assert (bm_limits_cpu_job_start (sleeper, &budget, &start_ms) == -1);     //  Gone
    assert (start_ms == -1);
    if (geteuid () == 0)
        s_test_cpu_budget_without_cap ();
    if (verbose)
        printf ("OK (pids: %s%s)\n", method, effective ? "" : ", not enforced");
}
#endif
