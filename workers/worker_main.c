/*  worker_main.c - botmesh-worker: arguments and environment, then run.  */
#include "bm_env_check.h"
#include "bm_worker.h"
#include "bm_bot.h"
#include "bm_config.h"
#include "bm_endpoints.h"
#include "bm_http.h"
#include "bm_curve.h"
#include "bm_settings.h"
#include "bm_log.h"
#include "bm_sandbox.h"
#include "bm_seccomp.h"
#include "bm_job_env.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <getopt.h>
#include <pwd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BM_SOURCE_DIR
#define BM_SOURCE_DIR ""
#endif
#ifndef BM_JAVA_CLASSES_DIR
#define BM_JAVA_CLASSES_DIR ""
#endif

//  JVM options that cut a short bot's start (C1 only, serial GC: ~0.1 s
//  instead of several on a busy 2-core machine).
#define BM_JAVA_OPTS "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xshare:auto", "-XX:-UsePerfData"

//  The worker-wide variables: name, type, default, range, help once; the
//  --help text's first part and --print-env are written from this table.
//  The per-type variables (BOT_<TYPE>_*, MAX_<TYPE>_BOTS, SIM_*) are read
//  per type below and described in --help as patterns.
typedef struct {
    bm_worker_config_t config;  //  What the table fills directly
    const char *types;          //  WORKER_TYPES
    const char *mode;           //  WORKER_MODE
    const char *root;           //  BOTMESH_ROOT
    int64_t concurrency;        //  WORKER_CONCURRENCY, 0: the sum of limits
    int64_t max_bots_default;   //  MAX_BOTS_DEFAULT
} s_settings_t;

#define ROW_INT(n, f, d, lo, hi, h)  BM_SETTING_INT (n, s_settings_t, f, d, lo, hi, h)
#define ROW_STR(n, f, d, max, h)     BM_SETTING_STR (n, s_settings_t, f, d, max, h)
static const bm_setting_t s_settings [] = {
    ROW_STR ("WORKER_TYPES", types, "python,node,java", 0, "bot types served, comma-separated (--type)"),
    ROW_STR ("WORKER_MODE", mode, "bots", 16, "bots (run the bot programs), simulate or noop"),
    ROW_INT ("WORKER_CONCURRENCY", concurrency, 0, 0, 10000,
             "credit: jobs run at once, all types together (--concurrency); 0: the sum of "
             "MAX_<TYPE>_BOTS of the types served (python 5, node 10, java 3, others MAX_BOTS_DEFAULT)"),
    BM_SETTING_MAX_BOTS_DEFAULT (s_settings_t, max_bots_default),
    ROW_INT ("WORKER_PREFETCH", config.prefetch, 0, 0, 1000,
             "when every type served runs warm (pool/fork): jobs taken past what the processes "
             "run at once, waiting in the worker so a process that ends a job starts the next "
             "at once; the credit grows by it (--prefetch; ignored with spawn types)"),
    ROW_STR ("BROKER_ENDPOINT", config.endpoint, "tcp://127.0.0.1:5555", 512,
             "broker endpoint (--endpoint); a '*' or 0.0.0.0 host means 127.0.0.1"),
    ROW_STR ("WORKER_NAME", config.name, NULL, 128, "worker name in logs and STATS (--name; empty: HOST-PID)"),
    ROW_INT ("WORKER_GRACE_MS", config.grace_ms, 10000, 0, 3600000,
             "at SIGTERM, how long running jobs may take to end before they are killed and handed "
             "back (--grace-ms)"),
    BM_SETTING_HEARTBEAT_INTERVAL_MS (s_settings_t, config.heartbeat_ms),
    BM_SETTING_HEARTBEAT_LIVENESS (s_settings_t, config.liveness),
    ROW_INT ("BOT_KILL_GRACE_MS", config.kill_grace_ms, 2000, 0, 600000,
             "SIGTERM to SIGKILL when a bot is stopped, in ms"),
    ROW_INT ("BOT_OUTPUT_MAX_BYTES", config.output_max, 1048576, 1, 268435456,
             "cap on a bot's stdout; past it the bot is killed and the job fails with bad_output"),
    ROW_INT ("BOT_STDERR_TAIL_BYTES", config.stderr_tail, 4096, 64, 1048576,
             "stderr bytes kept per job: a failed job's error message, every job's log"),
    BM_SETTING_MAX_PAYLOAD_BYTES (s_settings_t, config.max_payload),
    BM_SETTING_MAX_FRAME_BYTES (s_settings_t, config.max_frame),
    ROW_INT ("WORKER_METRICS_PORT", config.metrics_port, 0, -1, 65535,
             "HTTP port of GET /metrics (bot_processes, bot_recycles_total, bot_init_failures_total; "
             "the broker counts bot_limit_kills_total), 0 = off, -1 = any free port"),
    ROW_STR ("WORKER_METRICS_ADDR", config.metrics_addr, "0.0.0.0", 64, "its listen address"),
    ROW_STR ("BOTMESH_ROOT", root, BM_SOURCE_DIR, 0,
             "source tree holding workers/bots (default: the tree this binary was built from)"),
    BM_SETTINGS_END
};

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: botmesh-worker [OPTIONS]\n"
"\n"
"Runs botmesh jobs: connects to the broker (BMW01 over a ZeroMQ DEALER),\n"
"announces the bot types it serves and its credit, and runs each job as a\n"
"child process: the payload as JSON on stdin, the result as JSON on stdout.\n"
"\n"
"Options (each overrides its environment variable):\n"
"  -t, --type TYPE        bot type to serve; repeat or comma-separate for\n"
"                         several (WORKER_TYPES, default python,node,java)\n"
"  -c, --concurrency N    credit: jobs run at once, all types together\n"
"                         (WORKER_CONCURRENCY, 1-10000; default the sum of\n"
"                         MAX_<TYPE>_BOTS of the types served: python 5,\n"
"                         node 10, java 3, others MAX_BOTS_DEFAULT or 10)\n"
"  -e, --endpoint URL     broker endpoint (BROKER_ENDPOINT,\n"
"                         default tcp://127.0.0.1:5555; a '*' host means\n"
"                         127.0.0.1; several brokers, one leading:\n"
"                         comma-separated, tried in turn on not_leader)\n"
"  -n, --name NAME        worker name in logs and STATS (WORKER_NAME,\n"
"                         default HOST-PID)\n"
"      --simulate         do not run bots: sleep a random time and fail at\n"
"                         a given rate (SIM_* below; WORKER_MODE=simulate)\n"
"      --noop             do not run bots: complete every job at once with\n"
"                         a small result (WORKER_MODE=noop)\n"
"  -g, --grace-ms MS      at SIGTERM, how long running jobs may take to\n"
"                         end before they are killed and handed back\n"
"                         (WORKER_GRACE_MS, 0-3600000, default 10000)\n"
"      --prefetch N       every type served warm (pool/fork): take N jobs\n"
"                         past what the processes run at once; they wait\n"
"                         in the worker, their timeout running from when a\n"
"                         process takes them (WORKER_PREFETCH, 0-1000,\n"
"                         default 0; ignored with spawn types)\n"
"  -h, --help             this help\n"
"      --print-env        the worker-wide variables with their defaults, as\n"
"                         env.example lines\n"
"      --check-config     check the worker-wide variables and exit: 0 all\n"
"                         valid, 2 (each bad one named)\n"
"\n"
"Environment (defaults in brackets):\n");
    bm_settings_help (s_settings, out);
    fprintf (out,
"  BOT_<TYPE>_CMD         command line of the bot program for TYPE (upper\n"
"                         case, '-' as '_'), e.g. BOT_PYTHON_CMD=\"/usr/bin/python3\n"
"                         /srv/bot.py\"; words split as by a shell, no\n"
"                         expansions.  Defaults: python: /usr/bin/python3\n"
"                         workers/bots/python/bot.py; node: node\n"
"                         workers/bots/node/bot.js; java: java -cp CLASSES Bot\n"
"                         (compiled at build time) or java Bot.java\n"
"  BOT_<TYPE>_MODE        how jobs of TYPE run: spawn (a process per job,\n"
"                         default), pool (warm processes reused; the\n"
"                         program speaks the pool protocol of docs/bots.md)\n"
"                         or fork (a fork server forks a child per job;\n"
"                         python).  The default bots support pool (python\n"
"                         also fork); a BOT_<TYPE>_CMD run in pool or fork\n"
"                         mode must speak the protocol\n"
"  BOT_<TYPE>_MIN_PROCS   pool/fork: processes kept warm (default 1)\n"
"  BOT_<TYPE>_MAX_PROCS   pool/fork: never more processes (default: the\n"
"                         worker's concurrency); when every type served is\n"
"                         pool/fork, the credit is at most their sum (plus\n"
"                         WORKER_PREFETCH)\n"
"  BOT_<TYPE>_MAX_JOBS    pool/fork: recycle a process after this many jobs\n"
"                         (default 1000)\n"
"  BOT_<TYPE>_MAX_RSS_MB  pool/fork: recycle a process whose resident memory\n"
"                         passes this after a job (default 1024; 0: never)\n"
"  BOT_<TYPE>_IDLE_MS     pool/fork: idle processes above the minimum exit\n"
"                         after this long (default 60000)\n"
"  BOT_<TYPE>_READY_TIMEOUT_MS\n"
"                         pool/fork: a process that has not written its\n"
"                         ready line this long after its start is killed\n"
"                         and counts as an init failure (default 30000;\n"
"                         0: no deadline)\n"
"  BOT_<TYPE>_KEEP_LOG    0: a job's stderr tail is not sent as its log\n"
"                         (default 1; a failed job's message still is)\n"
"  BOT_<TYPE>_PRELOAD     fork (python): modules the fork server imports\n"
"                         once, comma-separated\n"
"  BOT_<TYPE>_FORK_WARMUP fork (python): 1 or a JSON payload: the fork server\n"
"                         runs main() once on it ({} for 1) before the first\n"
"                         fork, so what the bot sets up lazily is shared\n"
"                         (default 0: off; the bot's side effects happen once)\n"
"  BOT_<TYPE>_MEMORY_MB   address space of each run of TYPE, MiB (default 4096;\n"
"                         0 none); a run past it fails with resource_limit\n"
"  BOT_<TYPE>_CPU_SECONDS CPU time of each run (default 3600; 0 none)\n"
"  BOT_<TYPE>_MAX_PIDS    processes + threads of each run (default 256; 0 none):\n"
"                         a pids cgroup per run where the worker can make one,\n"
"                         else the per-user process rlimit (not for root)\n"
"  BOT_<TYPE>_MAX_FILES   open files of each run (default 1024; 0 none)\n"
"  BOT_<TYPE>_SANDBOX     bwrap: run TYPE's bots under bubblewrap (read-only\n"
"                         system, the bot's own directory read-only, a private\n"
"                         /tmp, no other host files, a cut-down environment);\n"
"                         if it cannot work here the worker does not start\n"
"                         (default none)\n"
"  BOT_<TYPE>_NETWORK     1: a sandboxed bot shares the host's network\n"
"                         (default 0: a network namespace of its own)\n"
"  BOT_<TYPE>_SECCOMP     1: TYPE's bots get EPERM for the system calls a bot has\n"
"                         no use for and that widen the kernel's attack surface\n"
"                         (new namespaces, mounts, keyctl, bpf, io_uring,\n"
"                         perf_event_open, userfaultfd, modules, ...: docs/bots.md)\n"
"                         (default 1 under BOT_<TYPE>_SANDBOX=bwrap, else 0)\n"
"  BOT_<TYPE>_TMP_MB      size of a sandboxed bot's private /tmp, MiB (default:\n"
"                         BOT_<TYPE>_MEMORY_MB when set and not 0, else 256;\n"
"                         0 no limit); a bot that fills it gets ENOSPC\n"
"  BOT_USER               when the worker runs as root, run every bot as this\n"
"                         unprivileged user (default: none: unsandboxed bots\n"
"                         run as root, sandboxed ones as nobody)\n"
"  BOT_ENV_DENY           more variables bots do not get: names, or prefixes\n"
"                         ending in *, comma-separated (bots never get\n"
"                         botmesh's own secrets: REDIS_*, CURVE_*, the\n"
"                         webhook secrets, the API keys; docs/bots.md)\n"
"  SIM_DURATION_MS        simulated run time, \"MIN-MAX\" or \"MS\" (default 100-1000);\n"
"                         SIM_<TYPE>_DURATION_MS for one type\n"
"  SIM_FAIL_RATE          share of simulated runs that fail, 0-1 (default 0);\n"
"                         SIM_<TYPE>_FAIL_RATE for one type\n"
"  MAX_<TYPE>_BOTS        only for the default concurrency\n"
"  CURVE_SERVER_KEY       the broker's public CURVE key (Z85), when the broker\n"
"                         encrypts the mesh; then CURVE_CLIENT_CERT is required\n"
"  CURVE_CLIENT_CERT      this worker's secret certificate file\n"
"                         (botmesh-client keygen)\n"
"  LOG_LEVEL              debug, info, warn or error (default info)\n"
"\n"
"A bot's environment is the worker's minus those secrets, plus BOT_JOB_ID,\n"
"BOT_TYPE, BOT_ATTEMPT, BOT_TIMEOUT_MS, BOT_DEADLINE, BOT_WORKER and\n"
"BOT_PROGRESS_FD=3; it may write lines\n"
"\"PROGRESS <0-100>\" to fd 3.  Exit 0 with JSON on stdout: completed; exit\n"
"non-zero: failed (bot_failed) with the tail of stderr as the message.\n"
"SIGTERM/SIGINT: stop taking jobs, let running ones end within the grace\n"
"period, hand the rest back (RELEASE), disconnect, exit 0.  See\n"
"workers/README.md.\n");
}

//  Upper-case a bot type for an environment variable name.
static void
s_env_name (char *buffer, size_t size, const char *prefix, const char *type, const char *suffix)
{
    snprintf (buffer, size, "%s%s%s", prefix, type, suffix);
    for (char *p = buffer + strlen (prefix); *p && p < buffer + strlen (prefix) + strlen (type); p++)
        *p = *p == '-' ? '_' : (char) toupper ((unsigned char) *p);
}

//  Misspelt settings, named at start.  The settings of a type this worker
//  serves (its --type arguments, else WORKER_TYPES) are its own, even one
//  a letter from a built-in type's: nodeb's BOT_NODEB_CMD is no
//  BOT_NODE_CMD misspelt.
static void
s_env_warn (const char **types_arg, int types_args, const char *types_setting)
{
    size_t size = 1;
    for (int i = 0; i < types_args; i++)
        size += strlen (types_arg [i]) + 1;
    char *served = types_args ? (char *) calloc (1, size) : NULL;
    for (int i = 0; served && i < types_args; i++) {
        strcat (served, types_arg [i]);
        strcat (served, ",");
    }
    bm_env_check_warn_serving ("worker", environ, types_args ? served : types_setting);
    free (served);
}

static int
s_add_types (bm_worker_config_t *config, const char *list, const char *source)
{
    char *copy = strdup (list);
    char *save = NULL;
    for (char *word = strtok_r (copy, ", ", &save); word; word = strtok_r (NULL, ", ", &save)) {
        if (!bm_valid_bot_type (word, strlen (word))) {
            bm_error (NULL, "configuration: %s: '%s' is not a bot type (1-32 of a-z 0-9 _ -)",
                      source, word);
            free (copy);
            return -1;
        }
        bool known = false;
        for (int i = 0; i < config->type_count; i++)
            if (streq (config->types [i].name, word))
                known = true;
        if (known)
            continue;
        if (config->type_count == BM_WORKER_MAX_TYPES) {
            bm_error (NULL, "configuration: %s: at most %d bot types", source, BM_WORKER_MAX_TYPES);
            free (copy);
            return -1;
        }
        snprintf (config->types [config->type_count++].name, BM_MAX_BOT_TYPE_LEN + 1, "%s", word);
    }
    free (copy);
    if (config->type_count == 0) {
        bm_error (NULL, "configuration: %s names no bot type", source);
        return -1;
    }
    return 0;
}

static bool
s_is_file (const char *path)
{
    struct stat st;
    return stat (path, &st) == 0 && S_ISREG (st.st_mode);
}

static char **
s_argv (const char *first, ...)
{
    char **argv = (char **) calloc (16, sizeof (char *));
    va_list args;
    va_start (args, first);
    int n = 0;
    for (const char *word = first; word && n < 15; word = va_arg (args, const char *))
        argv [n++] = strdup (word);
    va_end (args);
    return argv;
}

//  Words of BOT_<TYPE>_CMD that are relative paths of files (a program
//  with a '/', or a script argument such as workers/bots/mybot.py) become
//  absolute, from the worker's working directory at start: a bot then
//  finds them whatever its own working directory (under bwrap it starts in
//  its private /tmp, and the sandbox binds the directories of absolute
//  paths only).  Options (-x) and words that name no file stay as they are.
static void
s_absolute_paths (char **argv, const char *var)
{
    for (int i = 0; argv [i]; i++) {
        const char *word = argv [i];
        struct stat st;
        if (*word == '/' || *word == '-' || (i == 0 && !strchr (word, '/'))
        ||  stat (word, &st) != 0 || !S_ISREG (st.st_mode))
            continue;
        char cwd [PATH_MAX];
        if (!getcwd (cwd, sizeof cwd))
            return;
        //  Not realpath: a symlink's name may matter to its program.
        char *absolute = zsys_sprintf ("%s/%s", streq (cwd, "/") ? "" : cwd,
                                       strncmp (word, "./", 2) == 0 ? word + 2 : word);
        bm_info (NULL, "configuration: %s: '%s' read as %s", var, word, absolute);
        free (argv [i]);
        argv [i] = absolute;
    }
}

//  The program of one bot type: BOT_<TYPE>_CMD, or the default bot.
static int
s_bot_command (bm_worker_type_t *type, const char *root)
{
    char var [64];
    s_env_name (var, sizeof var, "BOT_", type->name, "_CMD");
    const char *line = getenv (var);
    char **argv = NULL;
    if (line && *line) {
        char error [128];
        argv = bm_bot_split_command (line, error, sizeof error);
        if (!argv) {
            bm_error (NULL, "configuration: %s: %s", var, error);
            return -1;
        }
    }
    else {
        char *script = NULL;
        //  The default bots speak the pool protocol when given --pool; the
        //  Python one runs under forkserver.py in pool and fork modes.
        const char *pool_arg = type->bot_mode == BM_BOT_POOL ? "--pool" : NULL;
        if (type->bot_mode == BM_BOT_FORK && !streq (type->name, "python")) {
            bm_error (NULL, "configuration: BOT_%s_MODE=fork: only the python bot has a fork "
                      "server (use spawn or pool)", streq (type->name, "node") ? "NODE"
                      : streq (type->name, "java") ? "JAVA" : "<TYPE>");
            return -1;
        }
        if (streq (type->name, "python")) {
            script = zsys_sprintf ("%s/workers/bots/python/bot.py", root);
            char *server = zsys_sprintf ("%s/workers/bots/python/forkserver.py", root);
            if (type->bot_mode == BM_BOT_SPAWN)
                argv = s_argv ("/usr/bin/python3", script, NULL);
            else
            if (type->bot_mode == BM_BOT_POOL)
                argv = s_argv ("/usr/bin/python3", server, "--pool", script, NULL);
            else
                argv = s_argv ("/usr/bin/python3", server, script, NULL);
            zstr_free (&server);
        }
        else
        if (streq (type->name, "node")) {
            script = zsys_sprintf ("%s/workers/bots/node/bot.js", root);
            argv = s_argv ("node", script, pool_arg, NULL);
        }
        else
        if (streq (type->name, "java")) {
            script = zsys_sprintf ("%s/workers/bots/java/Bot.java", root);
            //  The classes compiled at build time start faster than the
            //  single-file launch, which compiles Bot.java at every run; use
            //  them when they come from this same tree.
            char *classes = zsys_sprintf ("%s/Bot.class", BM_JAVA_CLASSES_DIR);
            char real_root [PATH_MAX], real_source [PATH_MAX];
            bool same_tree = realpath (root, real_root) && realpath (BM_SOURCE_DIR, real_source)
                             && streq (real_root, real_source);
            if (*BM_JAVA_CLASSES_DIR && same_tree && s_is_file (classes))
                argv = s_argv ("java", BM_JAVA_OPTS, "-cp", BM_JAVA_CLASSES_DIR, "Bot", pool_arg, NULL);
            else
                argv = s_argv ("java", BM_JAVA_OPTS, script, pool_arg, NULL);
            zstr_free (&classes);
        }
        else {
            bm_error (NULL, "configuration: no program for bot type '%s': set %s "
                      "(or use --simulate / --noop)", type->name, var);
            return -1;
        }
        if (!s_is_file (script)) {
            bm_error (NULL, "configuration: the %s bot %s does not exist (set BOTMESH_ROOT or %s)",
                      type->name, script, var);
            zstr_free (&script);
            bm_bot_argv_free (&argv);
            return -1;
        }
        zstr_free (&script);
    }
    if (line && *line)
        s_absolute_paths (argv, var);
    char *path = bm_bot_which (argv [0]);
    if (!path || access (path, X_OK) != 0) {
        bm_error (NULL, "configuration: %s: program '%s' not found or not executable",
                  var, argv [0]);
        free (path);
        bm_bot_argv_free (&argv);
        return -1;
    }
    free (argv [0]);
    argv [0] = path;
    type->argv = argv;
    return 0;
}

//  BOT_<TYPE>_MODE and, for pool and fork, the pool's sizes.
static int
s_bot_mode (bm_worker_type_t *type, int64_t concurrency)
{
    char var [64];
    s_env_name (var, sizeof var, "BOT_", type->name, "_MODE");
    const char *mode = bm_env_str (var, "spawn");
    if (streq (mode, "spawn") || !*mode)
        type->bot_mode = BM_BOT_SPAWN;
    else
    if (streq (mode, "pool"))
        type->bot_mode = BM_BOT_POOL;
    else
    if (streq (mode, "fork"))
        type->bot_mode = BM_BOT_FORK;
    else {
        bm_error (NULL, "configuration: %s must be spawn, pool or fork (got '%s')", var, mode);
        return -1;
    }
    struct { const char *suffix; int64_t def, min, max; int64_t *value; } knobs [] = {
        { "_MAX_PROCS", concurrency, 1, 10000, &type->max_procs },
        { "_MIN_PROCS", 1, 0, 10000, &type->min_procs },
        { "_MAX_JOBS", 1000, 1, 1000000000, &type->max_jobs },
        { "_MAX_RSS_MB", 1024, 0, 1 << 20, &type->max_rss_mb },
        { "_IDLE_MS", 60000, 0, 86400000, &type->idle_ms },
        { "_READY_TIMEOUT_MS", 30000, 0, 3600000, &type->ready_timeout_ms },
        { "_KEEP_LOG", 1, 0, 1, &type->keep_log },
    };
    for (size_t i = 0; i < sizeof knobs / sizeof knobs [0]; i++) {
        s_env_name (var, sizeof var, "BOT_", type->name, knobs [i].suffix);
        if (bm_env_int (var, knobs [i].def, knobs [i].min, knobs [i].max, knobs [i].value))
            return -1;
    }
    if (type->min_procs > type->max_procs) {
        //  More kept warm than may run: as many as may run, said once.
        if (type->bot_mode != BM_BOT_SPAWN) {
            char min_var [64], max_var [64];
            s_env_name (min_var, sizeof min_var, "BOT_", type->name, "_MIN_PROCS");
            s_env_name (max_var, sizeof max_var, "BOT_", type->name, "_MAX_PROCS");
            bm_warn (NULL, "configuration: %s=%lld is more than %s=%lld%s: %s bots keep %lld "
                     "processes warm (%s clamped to %s)", min_var, (long long) type->min_procs,
                     max_var, (long long) type->max_procs,
                     getenv (max_var) ? "" : " (unset: the worker's concurrency)", type->name,
                     (long long) type->max_procs, min_var, max_var);
        }
        type->min_procs = type->max_procs;
    }
    s_env_name (type->ready_var, sizeof type->ready_var, "BOT_", type->name, "_READY_TIMEOUT_MS");
    s_env_name (type->rss_var, sizeof type->rss_var, "BOT_", type->name, "_MAX_RSS_MB");
    s_env_name (type->memory_var, sizeof type->memory_var, "BOT_", type->name, "_MEMORY_MB");
    return 0;
}

//  The names of the types served in spawn mode (spawn) or warm (pool or
//  fork), comma-separated as --type takes them ("" for none).
static void
s_type_list (const bm_worker_config_t *config, bool spawn, char *list, size_t size)
{
    size_t used = 0;
    *list = 0;
    for (int i = 0; i < config->type_count && used < size; i++)
        if ((config->types [i].bot_mode == BM_BOT_SPAWN) == spawn) {
            int n = snprintf (list + used, size - used, "%s%s", used ? "," : "",
                              config->types [i].name);
            used += n > 0 ? (size_t) n : 0;
        }
}

//  The credit against what the bots can run at once.  A job the worker
//  takes waits in it for a process while its type's BOT_<TYPE>_MAX_PROCS
//  processes are busy: the broker counts it running (out of its queue,
//  holding a permit of its type), its timeout not running until a process
//  takes it.  When every type runs warm (pool or fork), the credit is what
//  their processes run at once (at most their sum), so that such jobs stay
//  queued at the broker, free for other workers, plus WORKER_PREFETCH:
//  jobs taken to wait on purpose, so a process that ends a job gets the
//  next at once.  With spawn types besides, the credit they share stays,
//  each warm type below it is named, and WORKER_PREFETCH is ignored.  One
//  WARN line for either, one INFO line for the prefetch (which then says
//  the cap instead of the WARN: the prefetch is the jobs that wait).  A
//  prefetch ignored is a WARN of its own, naming the spawn and the warm
//  types and the two workers (--type) that would prefetch for the warm ones.
static void
s_credit_fit (bm_worker_config_t *config, const char *source)
{
    if (config->mode != BM_WORKER_BOTS) {
        if (config->prefetch)
            bm_warn (NULL, "configuration: WORKER_PREFETCH=%lld ignored: it is for bots run "
                     "warm (pool/fork), not for --simulate or --noop", (long long) config->prefetch);
        config->prefetch = 0;
        return;
    }
    int64_t warm = 0;
    bool all_warm = true;
    for (int i = 0; i < config->type_count; i++)
        if (config->types [i].bot_mode == BM_BOT_SPAWN)
            all_warm = false;
        else
            warm += config->types [i].max_procs;
    //  named: each warm type whose processes are fewer than the credit,
    //  with its MAX_PROCS ("BOT_X_MAX_PROCS=1, ..."); vars: the same names
    //  alone, for what to raise.
    char named [512] = "", vars [512] = "";
    size_t used = 0, vars_used = 0;
    for (int i = 0; i < config->type_count && used < sizeof named; i++) {
        const bm_worker_type_t *type = &config->types [i];
        if (type->bot_mode == BM_BOT_SPAWN || (!all_warm && type->max_procs >= config->concurrency))
            continue;
        char var [64];
        s_env_name (var, sizeof var, "BOT_", type->name, "_MAX_PROCS");
        int n = snprintf (named + used, sizeof named - used, "%s%s=%lld", used ? ", " : "", var,
                          (long long) type->max_procs);
        used += n > 0 ? (size_t) n : 0;
        if (vars_used < sizeof vars) {
            n = snprintf (vars + vars_used, sizeof vars - vars_used, "%s%s", vars_used ? ", " : "",
                          var);
            vars_used += n > 0 ? (size_t) n : 0;
        }
    }
    int64_t asked = config->concurrency;
    if (all_warm && warm < config->concurrency && config->prefetch)
        config->concurrency = warm;     //  The INFO line below says the credit
    else
    if (all_warm && warm < config->concurrency) {
        //  A WARN only when the credit was asked for (--concurrency,
        //  WORKER_CONCURRENCY); from the default (the MAX_<TYPE>_BOTS of
        //  the types) the cap is what MAX_PROCS says: an INFO.
        bool asked_for = !strstr (source, "MAX_<TYPE>_BOTS");
        bm_log (asked_for ? BM_WARN : BM_INFO, NULL,
                "configuration: credit %lld instead of %lld (%s): every type served runs "
                "warm, at most %lld job(s) at once (%s); a job past them would wait in this "
                "worker for a process, out of the broker's queue, so it stays queued at the "
                "broker", (long long) warm, (long long) config->concurrency, source,
                (long long) warm, named);
        config->concurrency = warm;
    }
    else
    if (!all_warm && *named)
        bm_warn (NULL, "configuration: the credit of %lld (%s), shared with spawn types, is "
                 "more than %s: a job of a warm type past its MAX_PROCS waits in this worker "
                 "for a process, counted as running (its timeout runs once a process takes "
                 "it); raise %s to %lld, or serve the warm types from a worker of their own",
                 (long long) config->concurrency, source, named, vars,
                 (long long) config->concurrency);
    if (config->prefetch && !all_warm) {
        char spawned [BM_WORKER_MAX_TYPES * (BM_MAX_BOT_TYPE_LEN + 1) + 1];
        char warmed [sizeof spawned];
        s_type_list (config, true, spawned, sizeof spawned);
        s_type_list (config, false, warmed, sizeof warmed);
        if (*warmed)
            bm_warn (NULL, "configuration: WORKER_PREFETCH=%lld ignored: this worker serves spawn "
                     "types (%s) besides warm ones (%s), and only a worker whose types all run "
                     "warm (pool/fork) prefetches; to prefetch for the warm ones, run a worker "
                     "with --type %s and WORKER_PREFETCH=%lld, and another with --type %s",
                     (long long) config->prefetch, spawned, warmed, warmed,
                     (long long) config->prefetch, spawned);
        else
            bm_warn (NULL, "configuration: WORKER_PREFETCH=%lld ignored: every type this worker "
                     "serves (%s) runs in spawn mode, where a job starts at once; prefetch is "
                     "for types run warm (BOT_<TYPE>_MODE=pool or fork)",
                     (long long) config->prefetch, spawned);
        config->prefetch = 0;
    }
    else
    if (config->prefetch) {
        char capped [160] = "";
        if (config->concurrency < asked)
            snprintf (capped, sizeof capped, " (the credit of %lld (%s) capped to them)",
                      (long long) asked, source);
        bm_info (NULL, "configuration: credit %lld: %lld job(s) the warm processes run at "
                 "once%s, and WORKER_PREFETCH=%lld waiting in this worker for the next free "
                 "process", (long long) (config->concurrency + config->prefetch),
                 (long long) config->concurrency, capped, (long long) config->prefetch);
        config->concurrency += config->prefetch;
    }
}

//  BOT_<TYPE>_PRELOAD and BOT_<TYPE>_FORK_WARMUP are forkserver.py's: on a
//  type whose program does not read them they are ignored, said once.
static void
s_bot_fork_settings (const bm_worker_type_t *type)
{
    const char *mode = type->bot_mode == BM_BOT_POOL ? "pool" : "spawn";
    if (type->bot_mode == BM_BOT_FORK)
        return;
    char var [64], mode_var [64];
    s_env_name (mode_var, sizeof mode_var, "BOT_", type->name, "_MODE");
    s_env_name (var, sizeof var, "BOT_", type->name, "_FORK_WARMUP");
    const char *value = getenv (var);
    if (value && *value && !streq (value, "0"))         //  0: off, as unset
        bm_warn (NULL, "configuration: %s=%.60s is ignored: %s bots run in %s mode, and only a "
                 "fork server (%s=fork) runs a warm-up", var, value, type->name, mode, mode_var);
    //  forkserver.py reads PRELOAD in pool mode too (--pool).
    bool forkserver = false;
    for (char **arg = type->argv; arg && *arg && !forkserver; arg++) {
        size_t n = strlen (*arg);
        forkserver = n >= 13 && streq (*arg + n - 13, "forkserver.py");
    }
    s_env_name (var, sizeof var, "BOT_", type->name, "_PRELOAD");
    value = getenv (var);
    if (value && *value && !forkserver)
        bm_warn (NULL, "configuration: %s=%.60s is ignored: %s bots run in %s mode%s; only "
                 "forkserver.py imports it (fork mode, or pool mode with --pool)", var, value,
                 type->name, mode, type->bot_mode == BM_BOT_POOL ? " with a program that is not "
                 "forkserver.py" : "");
}

//  BOT_<TYPE>_MEMORY_MB, _CPU_SECONDS, _MAX_PIDS, _MAX_FILES.
static int
s_bot_limits (bm_worker_type_t *type)
{
    char error [256];
    if (bm_limits_from_env (&type->limits, type->name, error, sizeof error)) {
        bm_error (NULL, "configuration: %s", error);
        return -1;
    }
    char text [256];
    bm_limits_describe (&type->limits, text, sizeof text);
    bool effective;
    bm_limits_pids_method (&effective);
    if (type->limits.max_pids && !effective)
        bm_warn (NULL, "%s bots: MAX_PIDS is not enforced: the worker runs as root and cannot "
                 "make a pids cgroup (RLIMIT_NPROC does not apply to root)", type->name);
    //  A fork server runs with no memory limit of its own: it sets each
    //  child's address space from the job frame.
    if (type->limits.memory_mb)
        bm_info (NULL, "%s bots: limits %s; memory held by %s", type->name, text,
                 type->bot_mode == BM_BOT_FORK ? "RLIMIT_AS, set by the fork server in each child"
                                               : bm_limits_memory_method (&type->limits));
    else
        bm_info (NULL, "%s bots: limits %s", type->name, text);
    return 0;
}

//  BOT_USER: the user bots run as when we run as root.  Returns 0 (uid and
//  gid -1 when there is none), or -1.
static int
s_bot_user (int64_t *uid, int64_t *gid)
{
    *uid = *gid = -1;
    const char *name = bm_env_str ("BOT_USER", "");
    if (!*name)
        return 0;
    struct passwd *user = getpwnam (name);
    if (!user) {
        bm_error (NULL, "configuration: BOT_USER: no user '%.64s' on this machine", name);
        return -1;
    }
    if (geteuid () != 0) {
        bm_warn (NULL, "BOT_USER=%s is not used: the worker does not run as root, its bots run "
                 "as the worker's user", name);
        return 0;
    }
    if (user->pw_uid == 0) {
        bm_error (NULL, "configuration: BOT_USER must be an unprivileged user, not '%.64s'", name);
        return -1;
    }
    *uid = user->pw_uid;
    *gid = user->pw_gid;
    bm_info (NULL, "bots run as %s (uid %d, gid %d)", name, (int) user->pw_uid, (int) user->pw_gid);
    return 0;
}

//  The worker's one system-call filter, said once when it is first built.
static const bm_seccomp_t *
s_seccomp_filter (char *error, size_t error_size)
{
    static bool said = false;
    const bm_seccomp_t *filter = bm_seccomp_shared (error, error_size);
    if (filter && !said) {
        said = true;
        bm_info (NULL, "system-call filter (%u instructions): bots of the types that have it get "
                 "EPERM for %s", bm_seccomp_size (filter), bm_seccomp_refused ());
        if (*bm_seccomp_skipped (filter))
            bm_warn (NULL, "system-call filter: this libseccomp cannot name %s: those calls are "
                     "not refused", bm_seccomp_skipped (filter));
    }
    return filter;
}

//  BOT_<TYPE>_SECCOMP=1 for a type that is not sandboxed: the bot process
//  loads the filter itself before its exec (no_new_privs with it: a
//  set-user-ID program it runs gains nothing).
static int
s_bot_seccomp (bm_worker_type_t *type)
{
    char error [512];
    bool on = false;
    if (bm_seccomp_from_env (type->name, false, &on, error, sizeof error)) {
        bm_error (NULL, "configuration: %s", error);
        return -1;
    }
    if (!on)
        return 0;
    const bm_seccomp_t *filter = s_seccomp_filter (error, sizeof error);
    if (!filter) {
        bm_error (NULL, "%s bots: %s; refusing to start rather than run them without the "
                  "system-call filter", type->name, error);
        return -1;
    }
    type->limits.seccomp = filter;
    type->limits.seccomp_for_bwrap = false;
    bm_info (NULL, "%s bots: system-call filter on (no sandbox)", type->name);
    //  Root with every capability: the filter keeps it from some calls,
    //  not from the worker (it may open /proc/<worker>/mem, or ptrace it).
    if (geteuid () == 0 && type->limits.uid < 0) {
        char var [64];
        s_env_name (var, sizeof var, "BOT_", type->name, "_SANDBOX");
        bm_warn (NULL, "%s bots: the system-call filter is no boundary for bots that run as root "
                 "with every capability (the worker runs as root, BOT_USER is not set, no "
                 "sandbox): they can still read and write the worker's memory; set BOT_USER or "
                 "%s=bwrap", type->name, var);
    }
    return 0;
}

//  BOT_<TYPE>_SANDBOX=bwrap: wrap the type's command line, and check once
//  that the sandbox works here; if it does not, we do not start.
static int
s_bot_sandbox (bm_worker_type_t *type)
{
    char error [512];
    char **wrapped = NULL;
    bool seccomp = false;
    int rc = bm_sandbox_from_env (type->name, type->argv, &wrapped, &seccomp, error, sizeof error);
    if (rc < 0) {
        bm_error (NULL, "configuration: %s", error);
        return -1;
    }
    if (rc == 0)
        return s_bot_seccomp (type);
    const bm_seccomp_t *filter = NULL;
    if (seccomp && !(filter = s_seccomp_filter (error, sizeof error))) {
        char var [64];
        s_env_name (var, sizeof var, "BOT_", type->name, "_SECCOMP");
        bm_error (NULL, "%s bots: %s; refusing to start rather than run them without the "
                  "system-call filter (%s=0 turns it off)", type->name, error, var);
        bm_bot_argv_free (&wrapped);
        return -1;
    }
    //  A root worker without BOT_USER: bwrap and its bot run as nobody, or
    //  every root-owned host file bound into the sandbox (/etc and all)
    //  would stay readable to the bot.
    bool as_nobody = false;
    if (geteuid () == 0 && type->limits.uid < 0) {
        struct passwd *nobody = getpwnam ("nobody");
        type->limits.uid = nobody && nobody->pw_uid ? (int64_t) nobody->pw_uid : 65534;
        type->limits.gid = nobody && nobody->pw_uid ? (int64_t) nobody->pw_gid : 65534;
        as_nobody = true;
    }
    rc = bm_sandbox_probe (wrapped, (uid_t) type->limits.uid, (gid_t) type->limits.gid, filter,
                           error, sizeof error);
    if (rc == -2) {
        uid_t uid = type->limits.uid < 0 ? geteuid () : (uid_t) type->limits.uid;
        struct passwd *user = getpwuid (uid);
        bm_error (NULL, "%s bots: the sandbox user %s (uid %d) %s; give that user access "
                  "(chmod o+rx on each directory of the path) or set BOT_USER to a user who "
                  "can read it; refusing to start", type->name, user ? user->pw_name : "?",
                  (int) uid, error);
    }
    else
    if (rc)
        bm_error (NULL, "%s bots: the bwrap sandbox does not work on this machine (%s); refusing "
                  "to start rather than run them unsandboxed", type->name, error);
    if (rc) {
        bm_bot_argv_free (&wrapped);
        return -1;
    }
    bm_bot_argv_free (&type->argv);
    type->argv = wrapped;
    type->sandboxed = true;
    type->limits.seccomp = filter;
    type->limits.seccomp_for_bwrap = filter != NULL;
    bool network = false;
    char var [64];
    s_env_name (var, sizeof var, "BOT_", type->name, "_NETWORK");
    bm_env_bool (var, false, &network);
    char seccomp_var [64];
    s_env_name (seccomp_var, sizeof seccomp_var, "BOT_", type->name, "_SECCOMP");
    bm_info (NULL, "%s bots: sandboxed with bwrap (network %s), system calls %s%s%s", type->name,
             network ? "shared" : "none", filter ? "filtered" : "not filtered (",
             filter ? "" : seccomp_var, filter ? "" : "=0)");
    //  nobody is shared: other daemons, and the bots of any type or worker
    //  left to the same fallback, run as it too, and a process can read the
    //  /proc entries (environ, root, so the private /tmp) of another of its
    //  uid, and signal it.  The fallback stays (root is worse); the WARN
    //  names the remedy.
    if (as_nobody)
        bm_warn (NULL, "%s bots: sandboxed as uid %d, gid %d (nobody): the worker runs as root "
                 "and BOT_USER is not set; bots of type %s run as nobody; any process of nobody "
                 "on this host can read and signal them: set BOT_USER to a user of their own",
                 type->name, (int) type->limits.uid, (int) type->limits.gid, type->name);
    return 0;
}

//  "MIN-MAX" or "MS".
static int
s_sim_duration (bm_worker_type_t *type)
{
    char var [64];
    s_env_name (var, sizeof var, "SIM_", type->name, "_DURATION_MS");
    const char *text = getenv (var);
    if (!text || !*text) {
        snprintf (var, sizeof var, "SIM_DURATION_MS");
        text = bm_env_str (var, "100-1000");
    }
    const int64_t max = 86400000;
    const char *dash = strchr (text, '-');
    int64_t low, high;
    bool ok;
    if (dash) {
        char first [32];
        size_t len = dash - text;
        ok = len < sizeof first;
        if (ok) {
            memcpy (first, text, len);
            first [len] = 0;
            ok = bm_parse_int (first, 0, max, &low) == 0
              && bm_parse_int (dash + 1, 0, max, &high) == 0 && low <= high;
        }
    }
    else {
        ok = bm_parse_int (text, 0, max, &low) == 0;
        high = low;
    }
    if (!ok) {
        bm_error (NULL, "configuration: %s must be \"MIN-MAX\" or \"MS\" with 0 <= MIN <= MAX <= %lld (got '%s')",
                  var, (long long) max, text);
        return -1;
    }
    type->sim_min_ms = low;
    type->sim_max_ms = high;
    s_env_name (var, sizeof var, "SIM_", type->name, "_FAIL_RATE");
    const char *per_type = getenv (var);
    double fallback;
    if (bm_env_double ("SIM_FAIL_RATE", 0.0, 0.0, 1.0, &fallback))
        return -1;
    if (per_type && *per_type)
        return bm_env_double (var, fallback, 0.0, 1.0, &type->sim_fail_rate);
    type->sim_fail_rate = fallback;
    return 0;
}

//  Once our configuration is read and the bots' environment built: a bot
//  (not sandboxed, of our uid) must not read botmesh's secrets out of us.
//  They leave our environment and its block in /proc/<worker>/environ,
//  and we become not dumpable, so that a process of our uid without
//  CAP_SYS_PTRACE can neither read our /proc/PID/environ or mem nor
//  ptrace us (nor does a core dump of ours hold them).  A bot running as
//  root can still read anything: BOT_USER or a bwrap sandbox is the way.
static void
s_hide_secrets (void)
{
    size_t removed = 0;
    int wiped = bm_job_env_scrub (&removed);
    if (wiped < 0)
        bm_warn (NULL, "secrets: %zu variables removed from the worker's environment, but its "
                 "environment block was not found in /proc/self/stat: their bytes stay in "
                 "/proc/<worker>/environ", removed);
    if (prctl (PR_SET_DUMPABLE, 0) != 0)
        bm_warn (NULL, "secrets: cannot make the worker not dumpable: %s", strerror (errno));
    bm_info (NULL, "secrets: %zu variables removed from the worker's own environment (%d entries "
             "overwritten in /proc/<worker>/environ); the worker is not dumpable", removed,
             wiped < 0 ? 0 : wiped);
}

int
main (int argc, char *argv [])
{
    //  First, before any thread exists: signals go to our signalfd.
    bm_worker_block_signals ();
    if (bm_log_init ("worker"))
        return 2;
    bm_settings_warn_foreign ();

    int info_rc = bm_settings_info_flag (argc, argv, s_settings);
    if (info_rc >= 0)
        return info_rc;
    s_settings_t settings;
    memset (&settings, 0, sizeof settings);
    if (bm_settings_load (s_settings, &settings)) {
        bm_env_check_warn ("worker", environ);      //  A misspelling may be why
        return 2;
    }
    bm_worker_config_t config = settings.config;
    const char *types_arg [BM_WORKER_MAX_TYPES * 2];
    int types_args = 0;
    const char *concurrency_arg = NULL, *endpoint = NULL, *name = NULL, *grace_arg = NULL;
    const char *mode_arg = NULL, *prefetch_arg = NULL;
    bool help = false;

    static struct option options [] = {
        { "type", required_argument, NULL, 't' },
        { "concurrency", required_argument, NULL, 'c' },
        { "endpoint", required_argument, NULL, 'e' },
        { "name", required_argument, NULL, 'n' },
        { "simulate", no_argument, NULL, 'S' },
        { "noop", no_argument, NULL, 'N' },
        { "grace-ms", required_argument, NULL, 'g' },
        { "prefetch", required_argument, NULL, 'P' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int opt;
    while ((opt = getopt_long (argc, argv, "t:c:e:n:g:h", options, NULL)) != -1) {
        switch (opt) {
            case 't':
                if (types_args < (int) (sizeof types_arg / sizeof types_arg [0]))
                    types_arg [types_args++] = optarg;
                break;
            case 'c': concurrency_arg = optarg; break;
            case 'e': endpoint = optarg; break;
            case 'n': name = optarg; break;
            case 'g': grace_arg = optarg; break;
            case 'P': prefetch_arg = optarg; break;
            case 'S': mode_arg = "simulate"; break;
            case 'N': mode_arg = "noop"; break;
            case 'h': help = true; break;
            default:
                s_usage (stderr);
                return 2;
        }
    }
    s_env_warn (types_arg, types_args, settings.types);
    if (help) {
        s_usage (stdout);
        return 0;
    }
    if (optind < argc) {
        fprintf (stderr, "botmesh-worker: unexpected argument '%s'\n", argv [optind]);
        s_usage (stderr);
        return 2;
    }

    //  Bot types.
    if (types_args) {
        for (int i = 0; i < types_args; i++)
            if (s_add_types (&config, types_arg [i], "--type"))
                return 2;
    }
    else
    if (s_add_types (&config, settings.types, "WORKER_TYPES"))
        return 2;
    if (bm_http_listen_check ("WORKER_METRICS_ADDR", config.metrics_addr))
        return 2;

    //  Mode.
    if (!mode_arg)
        mode_arg = settings.mode;
    if (streq (mode_arg, "bots"))
        config.mode = BM_WORKER_BOTS;
    else
    if (streq (mode_arg, "simulate"))
        config.mode = BM_WORKER_SIMULATE;
    else
    if (streq (mode_arg, "noop"))
        config.mode = BM_WORKER_NOOP;
    else {
        bm_error (NULL, "configuration: WORKER_MODE must be bots, simulate or noop (got '%s')", mode_arg);
        return 2;
    }

    //  Concurrency: given, or the sum of the types' semaphore sizes.
    if (concurrency_arg) {
        if (bm_parse_int (concurrency_arg, 1, 10000, &config.concurrency)) {
            bm_error (NULL, "configuration: --concurrency must be an integer from 1 to 10000 (got '%s')",
                      concurrency_arg);
            return 2;
        }
    }
    else
    if (settings.concurrency)
        config.concurrency = settings.concurrency;
    else {
        int64_t fallback = settings.max_bots_default;
        int64_t sum = 0;
        for (int i = 0; i < config.type_count; i++) {
            const char *type = config.types [i].name;
            int64_t def = streq (type, "python") ? 5 : streq (type, "node") ? 10
                        : streq (type, "java") ? 3 : fallback;
            char var [64];
            s_env_name (var, sizeof var, "MAX_", type, "_BOTS");
            int64_t value;
            if (bm_env_int (var, def, 1, 1000000, &value))
                return 2;
            sum += value;
        }
        config.concurrency = sum < 10000 ? sum : 10000;
    }

    //  Endpoint: a bind address ("tcp://*:5555") means this host.
    if (!endpoint)
        endpoint = config.endpoint;
    char *connect_to = NULL;
    int status = 2;                     //  Until the configuration is good
    const char *star = strstr (endpoint, "://*:");
    const char *any = strstr (endpoint, "://0.0.0.0:");
    if (star || any) {
        const char *scheme_end = star ? star : any;
        const char *port = strchr (scheme_end + 3, ':');
        connect_to = zsys_sprintf ("%.*s://127.0.0.1%s", (int) (scheme_end - endpoint), endpoint, port);
    }
    else
        connect_to = strdup (endpoint);
    //  Copies of what we keep of botmesh's secrets and of the settings we
    //  borrow: bm_job_env_scrub clears the environment of the former, and
    //  BOT_ENV_DENY may name the latter.
    bm_curve_peer_t curve = bm_curve_peer_from_env ();
    char *curve_server_key = curve.server_key ? strdup (curve.server_key) : NULL;
    char *curve_client_cert = curve.client_cert ? strdup (curve.client_cert) : NULL;
    config.curve.server_key = curve_server_key;
    config.curve.client_cert = curve_client_cert;
    char *metrics_addr = strdup (config.metrics_addr);
    config.metrics_addr = metrics_addr;
    char *name_copy = NULL;
    {
        //  Check the endpoint's syntax now rather than at the first connect.
        zsys_handler_set (NULL);
        zsock_t *probe = zsock_new (ZMQ_DEALER);
        //  CURVE_SERVER_KEY / CURVE_CLIENT_CERT: a bad one stops us now.
        if (probe && bm_curve_peer_apply (&config.curve, probe)) {
            zsock_destroy (&probe);
            goto done;
        }
        //  Every endpoint of a list (several brokers, one leading).
        bm_endpoints_t *list = bm_endpoints_new (connect_to);
        int rc = probe && list ? 0 : -1;
        for (size_t i = 0; list && rc == 0 && i < bm_endpoints_size (list); i++) {
            rc = zsock_connect (probe, "%s", bm_endpoints_current (list));
            bm_endpoints_next (list, false);
        }
        bm_endpoints_destroy (&list);
        zsock_destroy (&probe);
        if (rc) {
            bm_error (NULL, "configuration: BROKER_ENDPOINT / --endpoint: cannot connect to '%s'",
                      connect_to);
            goto done;
        }
    }
    config.endpoint = connect_to;

    char default_name [300];
    char host [256] = "worker";
    gethostname (host, sizeof host - 1);
    snprintf (default_name, sizeof default_name, "%s-%d", host, (int) getpid ());
    if (!name)
        name = config.name ? config.name : default_name;
    //  The broker refuses a READY whose name is not an id (NACK bad_request).
    if (!bm_valid_id (name, strlen (name))) {
        bm_error (NULL, "configuration: the worker name (--name, WORKER_NAME) must be 1 to 128 "
                  "printable characters without spaces (got '%s')", name);
        goto done;
    }
    name_copy = strdup (name);
    config.name = name_copy;

    if (grace_arg) {
        if (bm_parse_int (grace_arg, 0, 3600000, &config.grace_ms)) {
            bm_error (NULL, "configuration: --grace-ms must be an integer from 0 to 3600000 (got '%s')",
                      grace_arg);
            goto done;
        }
    }

    if (prefetch_arg) {
        if (bm_parse_int (prefetch_arg, 0, 1000, &config.prefetch)) {
            bm_error (NULL, "configuration: --prefetch must be an integer from 0 to 1000 (got '%s')",
                      prefetch_arg);
            goto done;
        }
    }

    const char *root = settings.root;
    int64_t bot_uid = -1, bot_gid = -1;
    if (config.mode == BM_WORKER_BOTS && s_bot_user (&bot_uid, &bot_gid))
        goto done;
    {
        char error [160];
        if (bm_job_env_deny_check (getenv ("BOT_ENV_DENY"), error, sizeof error)) {
            bm_error (NULL, "configuration: %s", error);
            goto done;
        }
    }
    for (int i = 0; i < config.type_count; i++) {
        if (config.mode == BM_WORKER_BOTS
        &&  (s_bot_mode (&config.types [i], config.concurrency)
          || s_bot_command (&config.types [i], root)))
            goto done;
        if (config.mode == BM_WORKER_BOTS)
            s_bot_fork_settings (&config.types [i]);
        if (config.mode == BM_WORKER_BOTS && s_bot_limits (&config.types [i]))
            goto done;
        config.types [i].limits.uid = bot_uid;
        config.types [i].limits.gid = bot_gid;
        if (config.mode == BM_WORKER_BOTS && s_bot_sandbox (&config.types [i]))
            goto done;
        if (config.mode == BM_WORKER_SIMULATE && s_sim_duration (&config.types [i]))
            goto done;
    }

    s_credit_fit (&config, concurrency_arg ? "--concurrency" : settings.concurrency
                           ? "WORKER_CONCURRENCY" : "the sum of MAX_<TYPE>_BOTS");

    bm_worker_t *worker = bm_worker_new (&config);
    if (worker) {
        s_hide_secrets ();
        status = bm_worker_run (worker) ? 1 : 0;
        bm_worker_destroy (&worker);
    }
    else
        status = 1;
done:
    for (int i = 0; i < config.type_count; i++)
        bm_bot_argv_free (&config.types [i].argv);
    zstr_free (&connect_to);
    free (curve_server_key);
    free (curve_client_cert);
    free (metrics_addr);
    free (name_copy);
    return status;
}
