/*  bm_sandbox.c - a bot type's sandbox: bubblewrap around its program.  */
#include "bm_sandbox.h"
#include "bm_bot.h"
#include "bm_config.h"
#include "bm_log.h"
#include "bm_seccomp.h"

#include <czmq.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BM_SANDBOX_MAX_DIRS     32      //  Read-only binds of one type
#define BM_SANDBOX_PROBE_MS     10000   //  A probe that takes longer failed
#define BM_SANDBOX_UNREADABLE   125     //  Probe's exit: the sandbox user
                                        //  cannot read a path bound

//  The system, read-only.  Top-level entries that are symlinks on the host
//  (Debian's merged /usr) are made the same symlinks inside.
static const char *s_system [] = { "/usr", "/etc", "/bin", "/lib", "/lib32", "/lib64",
                                   "/sbin", NULL };

//  --------------------------------------------------------------------------
//  Pure parts

//  A growing argv.
typedef struct {
    char **argv;
    size_t count;
    size_t size;
} s_args_t;

static void
s_add (s_args_t *args, const char *word)
{
    if (args->count + 2 > args->size) {
        size_t size = args->size ? args->size * 2 : 64;
        args->argv = (char **) bm_realloc_or_abort (args->argv, size * sizeof (char *),
                                                    "the sandbox's argument list");
        args->size = size;
    }
    args->argv [args->count++] = strdup (word);
    args->argv [args->count] = NULL;
}

char **
bm_sandbox_argv (const bm_sandbox_spec_t *spec, char *const bot_argv [])
{
    s_args_t args = { NULL, 0, 0 };
    s_add (&args, spec->bwrap);
    s_add (&args, "--unshare-all");
    if (spec->network)
        s_add (&args, "--share-net");
    s_add (&args, "--die-with-parent");
    //  /dev read-only but for a /dev/shm of its own, sized as /tmp: the
    //  device nodes stay usable, and a bot cannot fill the host's memory
    //  through /dev or /dev/shm.  The private /tmp next: bwrap mounts in
    //  order, so a bot directory under /tmp (a checkout in /tmp) is bound
    //  on top of it, not hidden.
    const char *first [] = { "--dev", "/dev", "--remount-ro", "/dev", "--proc", "/proc", NULL };
    for (int i = 0; first [i]; i++)
        s_add (&args, first [i]);
    const char *tmpfs [] = { "/dev/shm", "/tmp", NULL };
    for (int i = 0; tmpfs [i]; i++) {
        if (spec->tmp_bytes > 0) {
            char size [32];
            snprintf (size, sizeof size, "%lld", (long long) spec->tmp_bytes);
            s_add (&args, "--size");
            s_add (&args, size);
        }
        s_add (&args, "--tmpfs");
        s_add (&args, tmpfs [i]);
    }
    for (const char *const *dir = spec->ro_dirs; dir && *dir; dir++) {
        s_add (&args, "--ro-bind");
        s_add (&args, *dir);
        s_add (&args, *dir);
    }
    for (const char *const *link = spec->symlinks; link && link [0] && link [1]; link += 2) {
        s_add (&args, "--symlink");
        s_add (&args, link [0]);
        s_add (&args, link [1]);
    }
    //  Secrets of the host under what is bound: hidden, after the binds.
    for (const char *const *dir = spec->hidden_dirs; dir && *dir; dir++) {
        s_add (&args, "--tmpfs");
        s_add (&args, *dir);
        s_add (&args, "--remount-ro");
        s_add (&args, *dir);
    }
    for (const char *const *file = spec->hidden_files; file && *file; file++) {
        s_add (&args, "--ro-bind");
        s_add (&args, "/dev/null");
        s_add (&args, *file);
    }
    //  The system-call filter last: bwrap loads it just before it runs
    //  the bot, after its own unshare and mounts.
    if (spec->seccomp) {
        char fd [16];
        snprintf (fd, sizeof fd, "%d", BM_SECCOMP_BWRAP_FD);
        s_add (&args, "--seccomp");
        s_add (&args, fd);
    }
    const char *rest [] = { "--chdir", "/tmp", "--", NULL };
    for (int i = 0; rest [i]; i++)
        s_add (&args, rest [i]);
    for (int i = 0; bot_argv [i]; i++)
        s_add (&args, bot_argv [i]);
    return args.argv;
}

//  The type's own settings its bot program reads at start (forkserver.py:
//  the modules it imports, its warm-up): none of them a secret.
static const char *s_type_settings [] = { "_PRELOAD=", "_FORK_WARMUP=", NULL };

static bool
s_keep (const char *entry, const char *type)
{
    static const char *prefixes [] = { "PATH=", "LANG=", "LC_", "TZ=", "BOT_JOB_ID=", "BOT_TYPE=",
                                       "BOT_ATTEMPT=", "BOT_TIMEOUT_MS=", "BOT_DEADLINE=",
                                       "BOT_PROGRESS_FD=", "BOT_WORKER=", "BOT_MODE=", NULL };
    for (int i = 0; prefixes [i]; i++)
        if (strncmp (entry, prefixes [i], strlen (prefixes [i])) == 0)
            return true;
    //  BOT_<TYPE>_<SETTING>=, the type as variable names spell it.
    if (!type || strncmp (entry, "BOT_", 4) != 0)
        return false;
    const char *at = entry + 4;
    for (; *type; type++, at++)
        if (*at != (*type == '-' ? '_' : (char) toupper ((unsigned char) *type)))
            return false;
    for (int i = 0; s_type_settings [i]; i++)
        if (strncmp (at, s_type_settings [i], strlen (s_type_settings [i])) == 0)
            return true;
    return false;
}

char **
bm_sandbox_env (char *const envp [], const char *type)
{
    s_args_t args = { NULL, 0, 0 };
    for (int i = 0; envp [i]; i++)
        if (s_keep (envp [i], type))
            s_add (&args, envp [i]);
    s_add (&args, "HOME=/tmp");
    s_add (&args, "TMPDIR=/tmp");
    return args.argv;
}

//  --------------------------------------------------------------------------
//  From the environment

#define BM_SANDBOX_TMP_MB       256     //  /tmp without BOT_<TYPE>_MEMORY_MB
#define BM_SANDBOX_MAX_HIDDEN   16      //  Hidden directories or files

//  Files of the host's /etc that no bot may read.
static const char *s_hidden_files [] = { "/etc/shadow", "/etc/gshadow", "/etc/shadow-",
                                         "/etc/gshadow-", NULL };

//  Whether path is dir or under it.
static bool
s_under (const char *path, const char *dir)
{
    size_t n = strlen (dir);
    if (streq (dir, "/"))
        return true;
    return strncmp (path, dir, n) == 0 && (path [n] == 0 || path [n] == '/');
}

//  Add a copy of path to list (no duplicates).
static void
s_add_unique (const char **list, int *count, const char *path)
{
    for (int i = 0; i < *count; i++)
        if (streq (list [i], path))
            return;
    if (*count < BM_SANDBOX_MAX_HIDDEN)
        list [(*count)++] = strdup (path);
}

//  What of the host's secrets the bound directories would show: secret
//  directories strictly under one of them (and holding none) into dirs,
//  secret files whose directory cannot be hidden so into files.
static void
s_hidden (const char *const *bound, const char **dirs, int *dir_count, const char **files,
          int *file_count)
{
    //  Candidates: /etc/botmesh, the directory of each CURVE_* secret
    //  certificate (with the file, in case the directory cannot be hidden),
    //  CURVE_CLIENTS_DIR.
    const char *vars [] = { "CURVE_SERVER_CERT", "CURVE_CLIENT_CERT", "CURVE_CLIENTS_DIR", NULL };
    char candidates [4][PATH_MAX];
    char secret_files [3][PATH_MAX];
    int candidate_count = 0, secret_count = 0;
    snprintf (candidates [candidate_count++], PATH_MAX, "/etc/botmesh");
    for (int i = 0; vars [i]; i++) {
        const char *value = getenv (vars [i]);
        char real [PATH_MAX];
        struct stat st;
        if (!value || !*value || !realpath (value, real) || stat (real, &st))
            continue;
        if (S_ISREG (st.st_mode)) {
            snprintf (secret_files [secret_count++], PATH_MAX, "%s", real);
            char *slash = strrchr (real, '/');
            if (slash && slash != real)
                *slash = 0;
        }
        snprintf (candidates [candidate_count++], PATH_MAX, "%s", real);
    }
    bool unhidden_dir = false;
    for (int i = 0; i < candidate_count; i++) {
        const char *dir = candidates [i];
        struct stat st;
        if (stat (dir, &st) || !S_ISDIR (st.st_mode))
            continue;
        bool visible = false, hideable = true;
        for (int j = 0; bound [j]; j++) {
            visible |= s_under (dir, bound [j]);
            //  Not a bound directory itself, nor one holding one.
            hideable &= !s_under (bound [j], dir);
        }
        if (visible && hideable)
            s_add_unique (dirs, dir_count, dir);
        else
        if (visible)
            unhidden_dir = true;
    }
    //  Files: those of /etc always; the certificates where their directory
    //  stays visible.
    for (int i = 0; s_hidden_files [i]; i++) {
        struct stat st;
        if (lstat (s_hidden_files [i], &st) == 0 && S_ISREG (st.st_mode))
            s_add_unique (files, file_count, s_hidden_files [i]);
    }
    for (int i = 0; unhidden_dir && i < secret_count; i++) {
        bool visible = false, hidden = false;
        for (int j = 0; bound [j]; j++)
            visible |= s_under (secret_files [i], bound [j]);
        for (int j = 0; j < *dir_count; j++)
            hidden |= s_under (secret_files [i], dirs [j]);
        if (visible && !hidden)
            s_add_unique (files, file_count, secret_files [i]);
    }
}

//  Add dir to a list (no duplicates, nothing under /usr or /etc: they are
//  bound already).
static void
s_add_dir (const char **dirs, int *count, const char *dir)
{
    if (strncmp (dir, "/usr/", 5) == 0 || strncmp (dir, "/etc/", 5) == 0 || streq (dir, "/"))
        return;
    for (int i = 0; i < *count; i++)
        if (streq (dirs [i], dir))
            return;
    if (*count < BM_SANDBOX_MAX_DIRS)
        dirs [(*count)++] = strdup (dir);
}

//  Whether dir, bound for the word of the bot's command line, would show
//  the bot what is the worker's: its working directory (its .env, its
//  logs; a bot beside them, python3 mybot.py, is read from there) or a
//  directory holding it, the directory of its env file (BOTMESH_ENV_FILE,
//  else BOTMESH_ROOT/.env), or the host's /tmp, /dev or /proc over the
//  sandbox's own.  If so, says why in error.
static bool
s_refused (const char *sandbox_var, const char *word, const char *dir, char *error,
           size_t error_size)
{
    if (streq (dir, "/"))
        return false;                   //  Never bound (s_add_dir)
    const char *own [] = { "/tmp", "/dev", "/proc", NULL };
    for (int i = 0; own [i]; i++)
        if (streq (dir, own [i])) {
            snprintf (error, error_size, "%s=bwrap: '%s' in the bot's command line would bind "
                      "the host's %s into the sandbox, over the sandbox's own (all of the host's "
                      "%s readable to the bot); name a directory of the bot's own instead",
                      sandbox_var, word, dir, dir);
            return true;
        }
    char cwd [PATH_MAX];
    if (getcwd (cwd, sizeof cwd) && s_under (cwd, dir)) {
        snprintf (error, error_size, "%s=bwrap: the directory %s (of '%s' in the bot's command "
                  "line) %s the worker's working directory %s, which the sandbox would then show "
                  "the bot (the worker's .env and files); move the bot program to a directory of "
                  "its own, or start the worker elsewhere", sandbox_var, dir, word,
                  streq (cwd, dir) ? "is" : "holds", cwd);
        return true;
    }
    char env_file [PATH_MAX] = "";
    const char *named = getenv ("BOTMESH_ENV_FILE");
    const char *root = getenv ("BOTMESH_ROOT");
    if (named && *named)
        snprintf (env_file, sizeof env_file, "%s", named);
    else
    if (root && *root)
        snprintf (env_file, sizeof env_file, "%s/.env", root);
    char real [PATH_MAX];
    if (*env_file && realpath (env_file, real) && s_under (real, dir)) {
        snprintf (error, error_size, "%s=bwrap: the directory %s (of '%s' in the bot's command "
                  "line) holds the worker's env file %s, which the sandbox would then show the "
                  "bot; move the bot program to a directory of its own", sandbox_var, dir, word,
                  real);
        return true;
    }
    return false;
}

int
bm_sandbox_from_env (const char *type, char *const bot_argv [], char ***argv_p,
                     bool *seccomp_p, char *error, size_t error_size)
{
    *seccomp_p = false;
    char upper [64];
    snprintf (upper, sizeof upper, "%s", type);
    for (char *p = upper; *p; p++)
        *p = *p == '-' ? '_' : (char) toupper ((unsigned char) *p);
    char sandbox_var [96], network_var [96];
    snprintf (sandbox_var, sizeof sandbox_var, "BOT_%s_SANDBOX", upper);
    snprintf (network_var, sizeof network_var, "BOT_%s_NETWORK", upper);
    const char *mode = getenv (sandbox_var);
    if (!mode || !*mode || streq (mode, "none"))
        return 0;
    if (!streq (mode, "bwrap")) {
        snprintf (error, error_size, "%s must be bwrap or none (got '%.40s')", sandbox_var, mode);
        return -1;
    }
    bool network;
    if (bm_env_bool (network_var, false, &network)) {
        snprintf (error, error_size, "%s must be 0 or 1", network_var);
        return -1;
    }
    //  The private /tmp's size: BOT_<TYPE>_TMP_MB, else the memory limit
    //  when one is set, else 256 MiB; 0: no limit.
    char tmp_var [96], memory_var [96];
    snprintf (tmp_var, sizeof tmp_var, "BOT_%s_TMP_MB", upper);
    snprintf (memory_var, sizeof memory_var, "BOT_%s_MEMORY_MB", upper);
    int64_t tmp_mb = BM_SANDBOX_TMP_MB, memory_mb = 0;
    const char *memory = getenv (memory_var);
    if (memory && *memory && bm_parse_int (memory, 0, INT64_C (1) << 24, &memory_mb) == 0
    &&  memory_mb > 0)
        tmp_mb = memory_mb;
    const char *tmp = getenv (tmp_var);
    if (tmp && *tmp && bm_parse_int (tmp, 0, INT64_C (1) << 24, &tmp_mb)) {
        snprintf (error, error_size, "%s must be an integer from 0 (no limit) to %lld MiB "
                  "(got '%.40s')", tmp_var, (long long) (INT64_C (1) << 24), tmp);
        return -1;
    }
    bool seccomp;
    if (bm_seccomp_from_env (type, true, &seccomp, error, error_size))
        return -1;
    char *bwrap = bm_bot_which ("bwrap");
    if (!bwrap || access (bwrap, X_OK)) {
        snprintf (error, error_size, "%s=bwrap: bwrap is not installed (Debian package "
                  "bubblewrap); refusing to run these bots unsandboxed", sandbox_var);
        free (bwrap);
        return -1;
    }
    //  The system: directories bound, symlinks copied.
    const char *dirs [BM_SANDBOX_MAX_DIRS];
    const char *links [2 * 8 + 1];
    char targets [8][PATH_MAX];
    int dir_count = 0, link_count = 0;
    for (int i = 0; s_system [i]; i++) {
        struct stat st;
        if (lstat (s_system [i], &st))
            continue;
        if (S_ISLNK (st.st_mode)) {
            ssize_t n = readlink (s_system [i], targets [link_count / 2], PATH_MAX - 1);
            if (n <= 0)
                continue;
            targets [link_count / 2][n] = 0;
            links [link_count] = targets [link_count / 2];
            links [link_count + 1] = s_system [i];
            link_count += 2;
        }
        else
        if (S_ISDIR (st.st_mode))
            dirs [dir_count++] = strdup (s_system [i]);
    }
    links [link_count] = NULL;
    //  The bot program's own directories: each absolute path in its
    //  command line (java -cp DIR, python3 /srv/bot.py).  Never one that
    //  would show the bot the worker's own files (see s_refused).
    for (int i = 0; bot_argv [i]; i++) {
        const char *word = bot_argv [i];
        if (word [0] != '/')
            continue;
        char real [PATH_MAX];
        struct stat st;
        if (!realpath (word, real) || stat (real, &st))
            continue;
        if (S_ISREG (st.st_mode)) {
            char *slash = strrchr (real, '/');
            if (slash && slash != real)
                *slash = 0;
        }
        if (s_refused (sandbox_var, word, real, error, error_size)) {
            for (int k = 0; k < dir_count; k++)
                free ((char *) dirs [k]);
            free (bwrap);
            return -1;
        }
        s_add_dir (dirs, &dir_count, real);
    }
    dirs [dir_count] = NULL;
    //  Never /root, the worker's HOME, or a directory holding them.
    const char *homes [] = { "/root", getenv ("HOME"), NULL };
    for (int i = 0; homes [i]; i++) {
        char home [PATH_MAX];
        if (!*homes [i] || !realpath (homes [i], home) || streq (home, "/"))
            continue;
        for (int j = 0; j < dir_count; j++)
            if (s_under (home, dirs [j]) && !streq (dirs [j], "/")) {
                snprintf (error, error_size, "%s=bwrap: the bot's directory %s would bring "
                          "the worker's home %s into the sandbox; move the bot program out of it",
                          sandbox_var, dirs [j], home);
                for (int k = 0; k < dir_count; k++)
                    free ((char *) dirs [k]);
                free (bwrap);
                return -1;
            }
    }
    const char *hidden_dirs [BM_SANDBOX_MAX_HIDDEN + 1];
    const char *hidden_files [BM_SANDBOX_MAX_HIDDEN + 1];
    int hidden_dir_count = 0, hidden_file_count = 0;
    s_hidden (dirs, hidden_dirs, &hidden_dir_count, hidden_files, &hidden_file_count);
    hidden_dirs [hidden_dir_count] = NULL;
    hidden_files [hidden_file_count] = NULL;
    bm_sandbox_spec_t spec = { bwrap, network, dirs, links, tmp_mb * 1024 * 1024,
                               hidden_dirs, hidden_files, seccomp };
    *argv_p = bm_sandbox_argv (&spec, bot_argv);
    *seccomp_p = seccomp;
    for (int i = 0; i < dir_count; i++)
        free ((char *) dirs [i]);
    for (int i = 0; i < hidden_dir_count; i++)
        free ((char *) hidden_dirs [i]);
    for (int i = 0; i < hidden_file_count; i++)
        free ((char *) hidden_files [i]);
    free (bwrap);
    return 1;
}

//  In the probe's child, as the sandbox user: the first source path of a
//  bind in argv (up to "--") that this user cannot read, with the first
//  directory on its way it may not enter (or the path itself), written to
//  fd as "PATH\tDENIED".  True if one was found.
static bool
s_unreadable_bind (char *const argv [], int count, int fd)
{
    for (int i = 0; i + 1 < count; i++) {
        if (!streq (argv [i], "--ro-bind") && !streq (argv [i], "--bind"))
            continue;
        const char *path = argv [++i];
        if (access (path, R_OK) == 0 || errno != EACCES)
            continue;
        char denied [PATH_MAX];
        snprintf (denied, sizeof denied, "%s", path);
        for (char *slash = strchr (denied + 1, '/'); slash; slash = strchr (slash + 1, '/')) {
            *slash = 0;
            bool closed = access (denied, X_OK) != 0;
            if (closed)
                break;
            *slash = '/';
        }
        dprintf (fd, "%s\t%s\n", path, denied);
        return true;
    }
    return false;
}

int
bm_sandbox_probe (char *const argv [], uid_t uid, gid_t gid, const bm_seccomp_t *seccomp,
                  char *error, size_t error_size)
{
    //  The wrapped command line up to "--", then /bin/true.
    int count = 0;
    while (argv [count] && !streq (argv [count], "--"))
        count++;
    char **probe = (char **) calloc (count + 3, sizeof (char *));
    if (!probe) {
        snprintf (error, error_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < count; i++)
        probe [i] = argv [i];
    probe [count] = (char *) "--";
    probe [count + 1] = (char *) "/bin/true";
    int err [2];
    if (pipe2 (err, O_CLOEXEC)) {
        free (probe);
        snprintf (error, error_size, "cannot create a pipe: %s", strerror (errno));
        return -1;
    }
    pid_t pid = fork ();
    if (pid == 0) {
        dup2 (err [1], 2);
        int null = open ("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2 (null, 0);
            dup2 (null, 1);
        }
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        //  The filter where a bot's launch puts it (fd 2 is the pipe now).
        if (seccomp && bm_seccomp_child_fd (seccomp, BM_SECCOMP_BWRAP_FD)) {
            dprintf (2, "cannot hand the system-call filter to bwrap: %s\n", strerror (errno));
            _exit (126);
        }
        //  The bots' user: BOT_USER, or nobody for a root worker.
        if ((gid != (gid_t) -1 && (setgroups (1, &gid) || setgid (gid)))
        ||  (uid != (uid_t) -1 && setuid (uid))) {
            dprintf (2, "cannot switch to the bots' user (uid %u, gid %u: BOT_USER, or nobody "
                        "for a root worker): %s\n", (unsigned) uid, (unsigned) gid, strerror (errno));
            _exit (126);
        }
        if (s_unreadable_bind (probe, count, 2))
            _exit (BM_SANDBOX_UNREADABLE);
        char *envp [] = { (char *) "PATH=/usr/bin:/bin", NULL };
        execve (probe [0], probe, envp);
        _exit (127);
    }
    free (probe);
    close (err [1]);
    if (pid < 0) {
        close (err [0]);
        snprintf (error, error_size, "cannot fork: %s", strerror (errno));
        return -1;
    }
    //  What bwrap says, bounded in time: a probe that hangs failed.
    char said [512] = "";
    size_t got = 0;
    int64_t deadline = bm_mono_ms () + BM_SANDBOX_PROBE_MS;
    fcntl (err [0], F_SETFL, O_NONBLOCK);
    int status = 0;
    bool ended = false;
    while (!ended && bm_mono_ms () < deadline) {
        ssize_t n = read (err [0], said + got, sizeof said - 1 - got);
        if (n > 0)
            got += n;
        ended = waitpid (pid, &status, WNOHANG) == pid;
        if (!ended)
            usleep (2000);
    }
    if (!ended) {
        kill (pid, SIGKILL);
        waitpid (pid, &status, 0);
        snprintf (said + got, sizeof said - got, "(no answer within %d ms)", BM_SANDBOX_PROBE_MS);
    }
    else {
        ssize_t n = read (err [0], said + got, sizeof said - 1 - got);
        if (n > 0)
            got += n;
        said [got] = 0;
    }
    close (err [0]);
    said [strcspn (said, "\n")] = 0;
    if (ended && WIFEXITED (status) && WEXITSTATUS (status) == 0)
        return 0;
    char *tab = strchr (said, '\t');
    if (ended && WIFEXITED (status) && WEXITSTATUS (status) == BM_SANDBOX_UNREADABLE && tab) {
        *tab = 0;
        const char *denied = tab + 1;
        if (streq (denied, said))
            snprintf (error, error_size, "cannot read %s (permission denied)", said);
        else
            snprintf (error, error_size, "cannot read %s: the directory %s is closed to it",
                      said, denied);
        return -2;
    }
    if (ended && WIFEXITED (status) && WEXITSTATUS (status) == 126 && *said)
        snprintf (error, error_size, "%s", said);        //  Before bwrap ran
    else
        snprintf (error, error_size, "%s: %s", argv [0], *said ? said : "failed");
    return -1;
}

//  --------------------------------------------------------------------------
//  The /tmp of a warm process

#define BM_SANDBOX_TMP_DEPTH    64      //  Deeper trees are left in place

void
bm_sandbox_job_tmp (const char *job_id, char *path, size_t size)
{
    char name [65];
    size_t n = 0;
    for (const char *p = job_id; *p && n < sizeof name - 1; p++)
        if (isalnum ((unsigned char) *p) || *p == '.' || *p == '_' || *p == '-')
            name [n++] = *p;
    name [n] = 0;
    snprintf (path, size, "/tmp/job-%s", name);
}

//  The sandbox's /tmp of pid, open (a directory descriptor), or -1.
static int
s_open_tmp (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/root/tmp", (int) pid);
    return open (path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int s_empty_at (int fd, char *const keep [], int depth);

//  Remove name in directory dir and all below it; symlinks are removed,
//  not followed.  0, or -1 with errno.
static int
s_remove_at (int dir, const char *name, int depth)
{
    if (unlinkat (dir, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return errno == ENOENT ? 0 : -1;
    if (depth >= BM_SANDBOX_TMP_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    int fd = openat (dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    //  A directory the bot closed to itself (0500) is opened back up (if
    //  that fails, what is in it may still go).
    fchmod (fd, 0700);
    int rc = s_empty_at (fd, NULL, depth + 1);
    if (rc >= 0)
        rc = unlinkat (dir, name, AT_REMOVEDIR);
    return rc < 0 ? -1 : 0;
}

//  Remove everything in directory fd (closed here) but the names in keep.
//  How many entries went, or -1.
static int
s_empty_at (int fd, char *const keep [], int depth)
{
    DIR *dir = fdopendir (fd);
    if (!dir) {
        close (fd);
        return -1;
    }
    int removed = 0, failed = 0, err = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        const char *name = entry->d_name;
        if (streq (name, ".") || streq (name, ".."))
            continue;
        bool kept = false;
        for (int i = 0; keep && keep [i] && !kept; i++)
            kept = streq (keep [i], name);
        if (kept)
            continue;
        if (s_remove_at (dirfd (dir), name, depth) == 0)
            removed++;
        else {
            failed++;
            err = errno;
        }
    }
    closedir (dir);
    if (failed) {
        errno = err;
        return -1;
    }
    return removed;
}

int
bm_sandbox_job_tmp_make (pid_t pid, const char *job_id, int64_t uid, int64_t gid)
{
    char path [96];
    bm_sandbox_job_tmp (job_id, path, sizeof path);
    const char *name = path + strlen ("/tmp/");
    int tmp = s_open_tmp (pid);
    if (tmp < 0)
        return -1;
    int rc = s_remove_at (tmp, name, 0);
    //  Made as the bot's user: the sandbox's tmpfs belongs to its user
    //  namespace, where no other uid (root's) exists to own a new file
    //  (EOVERFLOW).  The file system ids are this thread's alone.
    bool switched = uid >= 0 && (uid_t) uid != geteuid ();
    if (switched) {
        setfsgid (gid >= 0 ? (gid_t) gid : getegid ());
        setfsuid ((uid_t) uid);
    }
    if (rc == 0)
        rc = mkdirat (tmp, name, 0700);
    int err = errno;
    if (switched) {
        setfsuid (geteuid ());
        setfsgid (getegid ());
    }
    close (tmp);
    errno = err;
    return rc;
}

char **
bm_sandbox_tmp_names (pid_t pid)
{
    int tmp = s_open_tmp (pid);
    DIR *dir = tmp < 0 ? NULL : fdopendir (tmp);
    if (!dir) {
        if (tmp >= 0)
            close (tmp);
        return NULL;
    }
    s_args_t names = { NULL, 0, 0 };
    s_add (&names, ".");                //  Never empty, never NULL
    struct dirent *entry;
    while ((entry = readdir (dir)))
        if (!streq (entry->d_name, ".") && !streq (entry->d_name, ".."))
            s_add (&names, entry->d_name);
    closedir (dir);
    return names.argv;
}

int
bm_sandbox_tmp_clean (pid_t pid, char *const keep [])
{
    int tmp = s_open_tmp (pid);
    if (tmp < 0)
        return -1;
    return s_empty_at (tmp, keep, 0);
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self test

#include <assert.h>

//  The index of word in argv, or -1.
static int
s_find (char **argv, const char *word, int from)
{
    for (int i = from; argv [i]; i++)
        if (streq (argv [i], word))
            return i;
    return -1;
}

void
bm_sandbox_test (bool verbose)
{
    if (verbose)
        printf (" * bm_sandbox: ");
    //  The argv, as a pure function.
    const char *dirs [] = { "/usr", "/etc", "/srv/bots/py", NULL };
    const char *links [] = { "usr/bin", "/bin", NULL };
    const char *hidden_dirs [] = { "/etc/botmesh", NULL };
    const char *hidden_files [] = { "/etc/shadow", NULL };
    bm_sandbox_spec_t spec = { "/usr/bin/bwrap", false, dirs, links, 64 << 20, hidden_dirs,
                               hidden_files, false };
    char *bot [] = { (char *) "/usr/bin/python3", (char *) "/srv/bots/py/bot.py", (char *) "--x", NULL };
    char **argv = bm_sandbox_argv (&spec, bot);
    assert (streq (argv [0], "/usr/bin/bwrap") && streq (argv [1], "--unshare-all"));
    assert (s_find (argv, "--share-net", 0) == -1);            //  No network
    assert (s_find (argv, "--die-with-parent", 0) > 0);
    assert (s_find (argv, "--new-session", 0) == -1);          //  Same process group
    int at = s_find (argv, "/srv/bots/py", 0);
    assert (at > 0 && streq (argv [at - 1], "--ro-bind") && streq (argv [at + 1], "/srv/bots/py"));
    at = s_find (argv, "--symlink", 0);
    assert (at > 0 && streq (argv [at + 1], "usr/bin") && streq (argv [at + 2], "/bin"));
    //  /dev read-only, /dev/shm and /tmp tmpfs of the same size.
    at = s_find (argv, "--remount-ro", 0);
    assert (at > 0 && streq (argv [at + 1], "/dev") && streq (argv [at - 1], "/dev")
            && streq (argv [at - 2], "--dev"));
    at = s_find (argv, "/dev/shm", 0);
    assert (at > s_find (argv, "--remount-ro", 0) && streq (argv [at - 1], "--tmpfs")
            && streq (argv [at - 3], "--size") && streq (argv [at - 2], "67108864"));
    at = s_find (argv, "/tmp", 0);
    assert (at > 0 && streq (argv [at - 1], "--tmpfs"));
    at--;
    assert (at < s_find (argv, "/srv/bots/py", 0));            //  Binds go over the tmpfs
    assert (streq (argv [at - 2], "--size") && streq (argv [at - 1], "67108864"));
    //  Secrets hidden after the binds: an empty read-only directory, a file
    //  as /dev/null.
    at = s_find (argv, "/etc/botmesh", 0);
    assert (at > s_find (argv, "/srv/bots/py", 0) && streq (argv [at - 1], "--tmpfs")
            && streq (argv [at + 1], "--remount-ro") && streq (argv [at + 2], "/etc/botmesh"));
    at = s_find (argv, "/etc/shadow", 0);
    assert (at > s_find (argv, "/srv/bots/py", 0) && streq (argv [at - 1], "/dev/null")
            && streq (argv [at - 2], "--ro-bind"));
    assert (s_find (argv, "--bind", 0) == -1);                 //  Nothing writable from the host
    assert (s_find (argv, "--seccomp", 0) == -1);              //  Not asked for
    at = s_find (argv, "--", 0);
    assert (at > 0 && streq (argv [at + 1], "/usr/bin/python3") && streq (argv [at + 3], "--x")
            && argv [at + 4] == NULL);
    bm_bot_argv_free (&argv);
    spec.network = true;
    spec.tmp_bytes = 0;                                        //  No limit
    argv = bm_sandbox_argv (&spec, bot);
    assert (s_find (argv, "--share-net", 0) == 2);
    assert (s_find (argv, "--size", 0) == -1);
    bm_bot_argv_free (&argv);
    //  The system-call filter: bwrap reads it from fd 4, the last option.
    spec.seccomp = true;
    argv = bm_sandbox_argv (&spec, bot);
    at = s_find (argv, "--seccomp", 0);
    assert (at > s_find (argv, "/etc/shadow", 0) && streq (argv [at + 1], "4")
            && at + 2 < s_find (argv, "--", 0) + 1);
    bm_bot_argv_free (&argv);

    //  The environment: the job's keys and the basics, nothing else.
    char *envp [] = { (char *) "PATH=/usr/bin", (char *) "REDIS_URL=redis://secret@x",
                      (char *) "BOT_JOB_ID=j1", (char *) "AWS_SECRET_ACCESS_KEY=k",
                      (char *) "LC_ALL=C.UTF-8", (char *) "HOME=/root", (char *) "BOT_PROGRESS_FD=3",
                      (char *) "BOT_DATA_X_PRELOAD=decimal", (char *) "BOT_DATA_X_FORK_WARMUP=1",
                      (char *) "BOT_DATA_X_TOKEN=t", (char *) "BOT_OTHER_PRELOAD=json", NULL };
    char **env = bm_sandbox_env (envp, "data-x");
    assert (s_find (env, "PATH=/usr/bin", 0) >= 0 && s_find (env, "BOT_JOB_ID=j1", 0) >= 0
            && s_find (env, "LC_ALL=C.UTF-8", 0) >= 0 && s_find (env, "BOT_PROGRESS_FD=3", 0) >= 0
            && s_find (env, "HOME=/tmp", 0) >= 0 && s_find (env, "TMPDIR=/tmp", 0) >= 0);
    assert (s_find (env, "HOME=/root", 0) == -1 && s_find (env, "AWS_SECRET_ACCESS_KEY=k", 0) == -1
            && s_find (env, "REDIS_URL=redis://secret@x", 0) == -1);
    //  The type's own start-up settings, not its other ones nor another's.
    assert (s_find (env, "BOT_DATA_X_PRELOAD=decimal", 0) >= 0
            && s_find (env, "BOT_DATA_X_FORK_WARMUP=1", 0) >= 0
            && s_find (env, "BOT_DATA_X_TOKEN=t", 0) == -1 && s_find (env, "BOT_OTHER_PRELOAD=json", 0) == -1);
    bm_bot_argv_free (&env);

    //  From the environment: off, bad, on.
    char error [256];
    char **wrapped = NULL;
    bool seccomp = true;
    unsetenv ("BOT_SB_TEST_SANDBOX");
    unsetenv ("BOT_SB_TEST_SECCOMP");
    assert (bm_sandbox_from_env ("sb-test", bot, &wrapped, &seccomp, error, sizeof error) == 0 && !wrapped);
    setenv ("BOT_SB_TEST_SANDBOX", "docker", 1);
    assert (bm_sandbox_from_env ("sb-test", bot, &wrapped, &seccomp, error, sizeof error) == -1);
    assert (strstr (error, "BOT_SB_TEST_SANDBOX must be bwrap"));
    setenv ("BOT_SB_TEST_SANDBOX", "bwrap", 1);
    char *sh [] = { (char *) "/bin/sh", (char *) "-c", (char *) "exit 0", NULL };
    int rc = bm_sandbox_from_env ("sb-test", sh, &wrapped, &seccomp, error, sizeof error);
    unsetenv ("BOT_SB_TEST_SANDBOX");
    if (rc == 1) {
        assert (s_find (wrapped, "--unshare-all", 0) == 1);
        //  /dev/shm and /tmp: 256 MiB by default, the shadow files hidden.
        int size = s_find (wrapped, "--size", 0);
        assert (size > 0 && streq (wrapped [size + 1], "268435456")
                && streq (wrapped [size + 2], "--tmpfs") && streq (wrapped [size + 3], "/dev/shm"));
        size = s_find (wrapped, "--size", size + 1);
        assert (size > 0 && streq (wrapped [size + 1], "268435456")
                && streq (wrapped [size + 2], "--tmpfs") && streq (wrapped [size + 3], "/tmp"));
        if (access ("/etc/shadow", F_OK) == 0) {
            int at = s_find (wrapped, "/etc/shadow", 0);
            assert (at > 0 && streq (wrapped [at - 1], "/dev/null"));
        }
        //  The filter on by default, and bwrap takes it: the probe runs
        //  with it.
        assert (seccomp && s_find (wrapped, "--seccomp", 0) > 0);
        const bm_seccomp_t *filter = bm_seccomp_shared (error, sizeof error);
        assert (filter);
        //  It runs here (bwrap installed and user namespaces available).
        rc = bm_sandbox_probe (wrapped, (uid_t) -1, (gid_t) -1, filter, error, sizeof error);
        if (rc)
            printf ("(probe failed: %s) ", error);
        assert (rc == 0);
        bm_bot_argv_free (&wrapped);
        //  BOT_<TYPE>_SECCOMP=0: no filter.
        setenv ("BOT_SB_TEST_SANDBOX", "bwrap", 1);
        setenv ("BOT_SB_TEST_SECCOMP", "0", 1);
        assert (bm_sandbox_from_env ("sb-test", sh, &wrapped, &seccomp, error, sizeof error) == 1);
        assert (!seccomp && s_find (wrapped, "--seccomp", 0) == -1);
        bm_bot_argv_free (&wrapped);
        setenv ("BOT_SB_TEST_SECCOMP", "sometimes", 1);
        assert (bm_sandbox_from_env ("sb-test", sh, &wrapped, &seccomp, error, sizeof error) == -1);
        assert (strstr (error, "BOT_SB_TEST_SECCOMP must be 0 or 1"));
        unsetenv ("BOT_SB_TEST_SECCOMP");
        unsetenv ("BOT_SB_TEST_SANDBOX");
    }
    else {
        assert (rc == -1 && strstr (error, "bubblewrap"));
        printf ("(bwrap not installed) ");
    }
    //  The /tmp size: the memory limit when set, TMP_MB over it, 0 none,
    //  a bad one refused.
    setenv ("BOT_SB_TEST_SANDBOX", "bwrap", 1);
    setenv ("BOT_SB_TEST_MEMORY_MB", "100", 1);
    if (bm_sandbox_from_env ("sb-test", sh, &wrapped, &seccomp, error, sizeof error) == 1) {
        int size = s_find (wrapped, "--size", 0);
        assert (size > 0 && streq (wrapped [size + 1], "104857600"));
        bm_bot_argv_free (&wrapped);
        setenv ("BOT_SB_TEST_TMP_MB", "0", 1);
        assert (bm_sandbox_from_env ("sb-test", sh, &wrapped, &seccomp, error, sizeof error) == 1);
        assert (s_find (wrapped, "--size", 0) == -1);
        bm_bot_argv_free (&wrapped);
        //  Never the worker's home.
        char *home [] = { (char *) "/bin/sh", (char *) "/root", NULL };
        unsetenv ("BOT_SB_TEST_TMP_MB");
        if (access ("/root", F_OK) == 0) {
            assert (bm_sandbox_from_env ("sb-test", home, &wrapped, &seccomp, error, sizeof error) == -1);
            assert (strstr (error, "would bring the worker's home /root into the sandbox"));
        }
    }
    setenv ("BOT_SB_TEST_TMP_MB", "lots", 1);
    assert (bm_sandbox_from_env ("sb-test", sh, &wrapped, &seccomp, error, sizeof error) == -1);
    assert (strstr (error, "BOT_SB_TEST_TMP_MB must be an integer"));
    unsetenv ("BOT_SB_TEST_TMP_MB");
    unsetenv ("BOT_SB_TEST_MEMORY_MB");
    unsetenv ("BOT_SB_TEST_SANDBOX");
    //  A probe that fails says why.
    char *broken [] = { (char *) "/bin/sh", (char *) "-c", (char *) "echo no namespaces >&2; exit 1",
                        (char *) "--", (char *) "bot", NULL };
    assert (bm_sandbox_probe (broken, (uid_t) -1, (gid_t) -1, NULL, error, sizeof error) == -1);
    assert (strstr (error, "no namespaces"));
    if (verbose)
        printf ("OK\n");
}
#endif
