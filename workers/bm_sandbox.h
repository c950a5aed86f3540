/*  bm_sandbox.h - a bot type's sandbox: bubblewrap around its program.

    BOT_<TYPE>_SANDBOX=bwrap runs each bot of TYPE under bubblewrap
    (Debian bubblewrap):

        --unshare-all           new user, pid, ipc, uts, cgroup and network
                                namespaces; --share-net instead of a network
                                namespace of its own when BOT_<TYPE>_NETWORK=1
        --ro-bind /usr ...      the system read-only: /usr, /etc and the
                                top-level /bin /lib /lib64 /sbin (symlinks
                                where they are symlinks, as on Debian)
        --ro-bind DIR           the bot program's own directories (each
                                absolute path in its command line: a file's
                                directory, or the directory itself), at the
                                same path, read-only
        --dev /dev --remount-ro /dev
                                /dev of its own (the usual device nodes),
                                read-only
        --size N --tmpfs /dev/shm
        --size N --tmpfs /tmp   a private writable /dev/shm and /tmp per run
                                (HOME and TMPDIR point there), each of
                                BOT_<TYPE>_TMP_MB (default
                                BOT_<TYPE>_MEMORY_MB when that is set and
                                not 0, else 256; 0: no limit): a bot that
                                fills one gets ENOSPC
        --tmpfs DIR --remount-ro DIR
                                the host's secrets under what is bound
                                hidden by an empty read-only directory:
                                /etc/botmesh, and the directories of the
                                worker's CURVE_* certificates (CURVE_SERVER_CERT,
                                CURVE_CLIENT_CERT, CURVE_CLIENTS_DIR)
        --ro-bind /dev/null F   and files: /etc/shadow, /etc/gshadow (and
                                their "-" backups), a CURVE_* certificate in
                                a directory that cannot be hidden whole
        --proc /proc --die-with-parent

    Nothing else of the host is visible: not the worker's files or working
    directory, not its credentials.  /root, the worker's HOME, its working
    directory, its env file's directory, their parents, and the host's
    /tmp, /dev and /proc are never bound: a bot program (or an absolute
    path in its command line) there stops the worker at start.
    A worker running as root without BOT_USER runs its sandboxed bots (bwrap
    and all in it) as nobody (uid and gid 65534), so that root-owned host
    files stay out of their reach.  The environment is cut down to what
    the job is given (bm_sandbox_env).  The bot stays in the worker's process
    group (no --new-session), so timeouts and cancel kill it as before; the
    run's resource limits (bm_limits) are set before bwrap starts and apply
    to everything inside.  bwrap reports a bot killed by signal N as exit
    status 128+N.

    The argv is built once per type, at start, by a pure function
    (bm_sandbox_argv); bm_sandbox_probe runs it once with /bin/true so that
    a machine that cannot sandbox (no bwrap, no user namespaces) stops the
    worker at start rather than running bots unsandboxed.  */
#ifndef BM_SANDBOX_H
#define BM_SANDBOX_H

#include "bm_seccomp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

//  What goes into the bwrap command line.  All strings borrowed.
typedef struct {
    const char *bwrap;              //  Path of bwrap
    bool network;                   //  Share the host's network
    const char *const *ro_dirs;     //  Bound read-only at the same path;
                                    //  NULL-terminated
    const char *const *symlinks;    //  Pairs: target, link path; NULL-terminated
    int64_t tmp_bytes;              //  Size of the private /tmp, 0: no limit
    const char *const *hidden_dirs; //  Replaced by an empty read-only tmpfs
                                    //  (after the binds); NULL-terminated
    const char *const *hidden_files;//  /dev/null bound over them (last);
                                    //  NULL-terminated
    bool seccomp;                   //  bwrap loads the system-call filter
                                    //  from BM_SECCOMP_BWRAP_FD for the bot
} bm_sandbox_spec_t;

//  The command line that runs bot_argv under bwrap as spec says (a pure
//  function: no I/O).  NULL-terminated, free with bm_bot_argv_free.
char **bm_sandbox_argv (const bm_sandbox_spec_t *spec, char *const bot_argv []);

//  The environment of a sandboxed bot of type: from envp, only PATH, LANG,
//  LC_*, TZ, the job's BOT_* keys and the type's BOT_<TYPE>_PRELOAD and
//  BOT_<TYPE>_FORK_WARMUP (what forkserver.py reads at start), plus
//  HOME=/tmp and TMPDIR=/tmp (a pure function).  Free with
//  bm_bot_argv_free.
char **bm_sandbox_env (char *const envp [], const char *type);

//  Read BOT_<TYPE>_SANDBOX, BOT_<TYPE>_NETWORK, BOT_<TYPE>_TMP_MB and
//  BOT_<TYPE>_SECCOMP.  Returns 1 and the wrapped command line in *argv_p
//  (caller frees) when the type is sandboxed, with *seccomp_p true when
//  that command line has bwrap load the system-call filter (bm_seccomp.h)
//  from BM_SECCOMP_BWRAP_FD; 0 when it is not sandboxed; -1 with the
//  problem in error (a bad value, bwrap not installed).
int bm_sandbox_from_env (const char *type, char *const bot_argv [], char ***argv_p,
                         bool *seccomp_p, char *error, size_t error_size);

//  Run argv (a wrapped command line) with /bin/true in place of the bot,
//  as uid/gid (-1: ours), with seccomp's program on BM_SECCOMP_BWRAP_FD
//  when it is not NULL, and check it works.  Returns 0; -2 when that
//  user cannot read a path bound into the sandbox (the bot's directory,
//  say), with the path and the directory closed to it in error; or -1
//  with what bwrap said in error (bwrap cannot run here).
int bm_sandbox_probe (char *const argv [], uid_t uid, gid_t gid, const bm_seccomp_t *seccomp,
                      char *error, size_t error_size);

//  Warm processes (pool and fork modes) live through many jobs, and their
//  /tmp with them.  The worker gives each job a directory of its own there,
//  HOME and TMPDIR in the job frame's env, and empties the process's /tmp
//  of what the job left (but what the process made before its first job)
//  once the job is over and the process idle.  The worker reaches that
//  /tmp as /proc/PID/root/tmp, PID the bot's process inside the sandbox.

//  The job's directory in the sandbox: /tmp/job-ID (the job id's letters,
//  digits, '.', '_' and '-', at most 64 of them).
void bm_sandbox_job_tmp (const char *job_id, char *path, size_t size);

//  Make the job's directory in the /tmp of process pid, 0700, as uid/gid
//  (the bots' user; -1: ours); one left by an earlier run of the job goes
//  first.
//  0, or -1 with errno.
int bm_sandbox_job_tmp_make (pid_t pid, const char *job_id, int64_t uid, int64_t gid);

//  The names in the /tmp of process pid now (NULL-terminated, free with
//  bm_bot_argv_free), or NULL (errno) if it cannot be read.
char **bm_sandbox_tmp_names (pid_t pid);

//  Remove from the /tmp of process pid everything but the names in keep
//  (NULL: nothing kept), never following a symlink.  Returns how many
//  entries of /tmp went, or -1 with errno.
int bm_sandbox_tmp_clean (pid_t pid, char *const keep []);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_sandbox_test (bool verbose);

#endif
