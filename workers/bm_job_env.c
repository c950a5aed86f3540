/*  bm_job_env.c - the environment a bot gets, and a pooled job's frame.  */
#include "bm_job_env.h"
#include "bm_text.h"
#include "bm_json.h"
#include "bm_bot.h"
#include "bm_env_check.h"
#include "bm_sandbox.h"
#include "bm_utf8.h"

#include <czmq.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

extern char **environ;

struct _bm_job_env_t {
    char **base;                //  Our environment minus BOT_* job keys
                                //  and minus what bots never get
    char **owner;               //  For each of base: the bot type (as in
                                //  variable names: MY_BOT) it is a setting
                                //  of, or NULL; only that type's bots get it
    size_t count;               //  Entries in base
    size_t withheld;            //  Variables of ours not given to bots
};

//  botmesh's own configuration that is secret, never given to a bot in any
//  mode: a name, or a prefix when it ends in '*'.  docs/bots.md
//  ("Environment") lists the same; BOT_ENV_DENY adds to it.
static const char *s_withheld [] = {
    "REDIS_*",                  //  REDIS_URL (with its password), REDIS_PASSWORD,
                                //  REDIS_HOST, REDIS_SENTINELS, ...
    "WEBHOOK_SECRET",           //  The webhook signatures' key
    "MOCK_WEBHOOK_SECRET",      //  The mock receiver's copy of it
    "API_KEYS",                 //  The gateway's API keys
    "ADMIN_API_KEYS",           //  Those of them that may change queues
    "BOTMESH_API_KEY",          //  The key ./botmesh sends
    "CURVE_*",                  //  Secret certificates and their paths
    NULL
};

//  Whether "NAME=VALUE" matches pattern (a name, or a prefix ending in
//  '*'), pattern being length bytes long.
static bool
s_matches (const char *entry, const char *pattern, size_t length)
{
    if (length == 0)
        return false;
    if (pattern [length - 1] == '*')
        return strncmp (entry, pattern, length - 1) == 0;
    return strncmp (entry, pattern, length) == 0 && entry [length] == '=';
}

//  The next name of a comma-separated list at *list_p: *name_p and *n_p
//  set (spaces around a name are not part of it, n may be 0), *list_p
//  moved past it.  False at the list's end.
static bool
s_next_name (const char **list_p, const char **name_p, size_t *n_p)
{
    const char *list = *list_p;
    if (!list || !*list)
        return false;
    size_t length = strcspn (list, ",");
    const char *name = list;
    size_t n = length;
    while (n && *name == ' ') {
        name++;
        n--;
    }
    while (n && name [n - 1] == ' ')
        n--;
    list += length;
    if (*list == ',')
        list++;
    *list_p = list;
    *name_p = name;
    *n_p = n;
    return true;
}

bool
bm_job_env_is_withheld (const char *entry, const char *deny)
{
    for (int i = 0; s_withheld [i]; i++)
        if (s_matches (entry, s_withheld [i], strlen (s_withheld [i])))
            return true;
    const char *name;
    size_t n;
    while (s_next_name (&deny, &name, &n))
        if (s_matches (entry, name, n))
            return true;
    return false;
}

int
bm_job_env_deny_check (const char *deny, char *error, size_t error_size)
{
    const char *name;
    size_t n;
    while (s_next_name (&deny, &name, &n)) {
        bool good = n > 0 && !(n == 1 && name [0] == '*');
        for (size_t i = 0; good && i < n; i++) {
            char c = name [i];
            good = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
                   || c == '_' || (c == '*' && i == n - 1);
        }
        if (!good) {
            snprintf (error, error_size, "BOT_ENV_DENY: '%.*s' is not a variable name or a "
                      "prefix ending in * (names are separated by commas)", (int) (n < 64 ? n : 64), name);
            return -1;
        }
    }
    return 0;
}

//  The bounds of a process's environment block: env_start and env_end,
//  fields 50 and 51 of its /proc/PID/stat line.  Returns 0 or -1.
static int
s_stat_env_bounds (const char *stat, uintptr_t *start, uintptr_t *end)
{
    //  Field 2, the command name, is in parentheses and may hold spaces
    //  and parentheses itself: the fields from 3 on follow the last ')'.
    const char *cursor = strrchr (stat, ')');
    unsigned long long bounds [2] = { 0, 0 };
    int field = 2;
    while (cursor && field < 51) {
        cursor = strchr (cursor, ' ');
        if (!cursor)
            return -1;
        cursor++;
        field++;
        if (field >= 50) {
            char *tail;
            errno = 0;
            bounds [field - 50] = strtoull (cursor, &tail, 10);
            if (tail == cursor || errno)
                return -1;
        }
    }
    if (field != 51 || bounds [0] == 0 || bounds [1] < bounds [0])
        return -1;
    *start = (uintptr_t) bounds [0];
    *end = (uintptr_t) bounds [1];
    return 0;
}

//  Overwrite with zeros each entry of the block [start, end) (NUL-ended
//  "NAME=VALUE" strings) that bots never get.  Returns how many.
static int
s_wipe_block (char *start, char *end, const char *deny)
{
    int wiped = 0;
    char *entry = start;
    while (entry < end) {
        size_t length = strnlen (entry, (size_t) (end - entry));
        if (length == (size_t) (end - entry))
            break;                      //  Not NUL-ended: not an entry
        if (length && bm_job_env_is_withheld (entry, deny)) {
            memset (entry, 0, length);
            wiped++;
        }
        entry += length + 1;
    }
    return wiped;
}

int
bm_job_env_scrub (size_t *removed_p)
{
    //  A copy: BOT_ENV_DENY may name itself, and its bytes go too.
    const char *deny_var = getenv ("BOT_ENV_DENY");
    char *deny = deny_var ? strdup (deny_var) : NULL;
    //  The names first, then unset them (unsetenv moves environ's entries).
    size_t count = 0;
    for (char **e = environ; *e; e++)
        count++;
    char **names = (char **) calloc (count + 1, sizeof (char *));
    size_t removed = 0;
    for (char **e = environ; names && *e; e++)
        if (bm_job_env_is_withheld (*e, deny) && strchr (*e, '='))
            names [removed++] = strndup (*e, strcspn (*e, "="));
    for (size_t i = 0; i < removed; i++) {
        if (names [i])
            unsetenv (names [i]);
        free (names [i]);
    }
    free (names);
    *removed_p = removed;

    int wiped = -1;
    char line [4096];
    FILE *file = fopen ("/proc/self/stat", "r");
    uintptr_t start, end;
    if (file && fgets (line, sizeof line, file)
    &&  s_stat_env_bounds (line, &start, &end) == 0)
        wiped = s_wipe_block ((char *) start, (char *) end, deny);
    if (file)
        fclose (file);
    free (deny);
    return wiped;
}

static bool
s_is_job_key (const char *entry)
{
    static const char *keys [] = { "BOT_JOB_ID=", "BOT_TYPE=", "BOT_ATTEMPT=", "BOT_TIMEOUT_MS=",
                                   "BOT_DEADLINE=", "BOT_PROGRESS_FD=", "BOT_WORKER=", NULL };
    for (int i = 0; keys [i]; i++)
        if (strncmp (entry, keys [i], strlen (keys [i])) == 0)
            return true;
    return false;
}

bm_job_env_t *
bm_job_env_new (void)
{
    bm_job_env_t *self = (bm_job_env_t *) zmalloc (sizeof (bm_job_env_t));
    size_t count = 0;
    for (char **e = environ; *e; e++)
        count++;
    self->base = (char **) calloc (count + 1, sizeof (char *));
    self->owner = (char **) calloc (count + 1, sizeof (char *));
    if (!self->base || !self->owner) {
        free (self->base);
        free (self->owner);
        free (self);
        return NULL;
    }
    //  A bot type's settings (BOT_<TYPE>_*, MAX_<TYPE>_BOTS: the per-type
    //  names the worker reads, env.example's) go to that type's bots only.
    bm_env_check_t *catalogue = bm_env_check_new (NULL);
    const char *deny = getenv ("BOT_ENV_DENY");
    size_t n = 0;
    for (char **e = environ; *e; e++) {
        if (s_is_job_key (*e))
            continue;
        if (bm_job_env_is_withheld (*e, deny)) {
            self->withheld++;
            continue;
        }
        char name [128];
        size_t name_len = strcspn (*e, "=");
        if (name_len < sizeof name) {
            memcpy (name, *e, name_len);
            name [name_len] = 0;
            self->owner [n] = bm_env_check_type_of (catalogue, "worker", name);
        }
        self->base [n++] = strdup (*e);
    }
    bm_env_check_destroy (&catalogue);
    self->count = n;
    return self;
}

size_t
bm_job_env_withheld (bm_job_env_t *self)
{
    return self->withheld;
}

//  Whether the bots of type get base entry i: not another type's setting.
//  A type's name as variable names spell it: upper case, '-' as '_'.
static bool
s_for_type (bm_job_env_t *self, size_t i, const char *type)
{
    const char *owner = self->owner [i];
    if (!owner)
        return true;
    for (; *owner && *type; owner++, type++) {
        char c = *type == '-' ? '_' : (char) toupper ((unsigned char) *type);
        if (*owner != c)
            return false;
    }
    return !*owner && !*type;
}

size_t
bm_job_env_other_types (bm_job_env_t *self, const char *type)
{
    size_t others = 0;
    for (size_t i = 0; i < self->count; i++)
        others += !s_for_type (self, i, type);
    return others;
}

//  Copies of the base entries type's bots get into envp; how many.
static size_t
s_copy_base (bm_job_env_t *self, const char *type, char **envp)
{
    size_t n = 0;
    for (size_t i = 0; i < self->count; i++)
        if (s_for_type (self, i, type))
            envp [n++] = strdup (self->base [i]);
    return n;
}

void
bm_job_env_destroy (bm_job_env_t **self_p)
{
    if (*self_p) {
        bm_job_env_t *self = *self_p;
        bm_bot_argv_free (&self->base);
        for (size_t i = 0; i < self->count; i++)
            free (self->owner [i]);
        free (self->owner);
        free (self);
        *self_p = NULL;
    }
}

//  The environment of a bot: ours, minus any BOT_* keys we set, plus them.
//  The job's own variables, BM_JOB_ENV_VARS "NAME=VALUE" strings (owned by
//  the caller) into vars.
#define BM_JOB_ENV_VARS 7
static void
s_job_vars (char **vars, const char *job_id, const bm_worker_type_t *type, int64_t attempt,
            int64_t limit_ms, int64_t deadline, const char *worker)
{
    vars [0] = zsys_sprintf ("BOT_JOB_ID=%s", job_id);
    vars [1] = zsys_sprintf ("BOT_TYPE=%s", type->name);
    vars [2] = zsys_sprintf ("BOT_ATTEMPT=%lld", (long long) attempt);
    vars [3] = zsys_sprintf ("BOT_TIMEOUT_MS=%lld", (long long) limit_ms);
    vars [4] = zsys_sprintf ("BOT_DEADLINE=%lld", (long long) deadline);
    vars [5] = strdup ("BOT_PROGRESS_FD=3");
    vars [6] = zsys_sprintf ("BOT_WORKER=%s", worker);
}

char **
bm_job_env_bot (bm_job_env_t *self, const char *job_id, const bm_worker_type_t *type,
                int64_t attempt, int64_t limit_ms, int64_t deadline, const char *worker)
{
    char **envp = (char **) calloc (self->count + BM_JOB_ENV_VARS + 1, sizeof (char *));
    if (!envp)
        return NULL;
    size_t n = s_copy_base (self, type->name, envp);
    s_job_vars (envp + n, job_id, type, attempt, limit_ms, deadline, worker);
    if (type->sandboxed) {
        //  Only what the job is given: not the worker's credentials.
        char **confined = bm_sandbox_env (envp, type->name);
        bm_bot_argv_free (&envp);
        return confined;
    }
    return envp;
}

char **
bm_job_env_pool (bm_job_env_t *self, const bm_worker_type_t *type, const char *worker, bool fork)
{
    char **envp = (char **) calloc (self->count + 5, sizeof (char *));
    if (!envp)
        return NULL;
    size_t base = s_copy_base (self, type->name, envp);
    envp [base] = zsys_sprintf ("BOT_TYPE=%s", type->name);
    envp [base + 1] = zsys_sprintf ("BOT_WORKER=%s", worker);
    envp [base + 2] = zsys_sprintf ("BOT_MODE=%s", fork ? "fork" : "pool");
    envp [base + 3] = strdup ("BOT_PROGRESS_FD=3");
    if (type->sandboxed) {
        //  Only what the job is given: not the worker's credentials.
        char **confined = bm_sandbox_env (envp, type->name);
        bm_bot_argv_free (&envp);
        envp = confined;
    }
    return envp;
}

//  The job frame's text is built as it goes (bm_text: no JSON objects, a
//  frame is made for every pooled job, and the objects and sprintf calls
//  of the variables cost more than the rest of the frame).

//  value as a JSON string, escaped as json_dumps escapes it (", \, and
//  control characters; the rest as it is).  Text that is not UTF-8 fails
//  the frame, as json_string refuses it.
static void
s_put_json_str (bm_text_t *text, const char *value)
{
    size_t size = strlen (value);
    if (!bm_utf8_valid (value, size)) {
        text->failed = true;
        return;
    }
    bm_text_put (text, "\"", 1);
    size_t plain = 0;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) value [i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        bm_text_put (text, value + plain, i - plain);
        char escape [8];
        switch (c) {
            case '"':  bm_text_put (text, "\\\"", 2); break;
            case '\\': bm_text_put (text, "\\\\", 2); break;
            case '\b': bm_text_put (text, "\\b", 2); break;
            case '\f': bm_text_put (text, "\\f", 2); break;
            case '\n': bm_text_put (text, "\\n", 2); break;
            case '\r': bm_text_put (text, "\\r", 2); break;
            case '\t': bm_text_put (text, "\\t", 2); break;
            default:
                snprintf (escape, sizeof escape, "\\u%04X", c);
                bm_text_put (text, escape, 6);
        }
        plain = i + 1;
    }
    bm_text_put (text, value + plain, size - plain);
    bm_text_put (text, "\"", 1);
}

//  ,"NAME":"VALUE" for a whole number.
static void
s_put_var_int (bm_text_t *text, const char *name, int64_t value)
{
    char field [96];
    int n = snprintf (field, sizeof field, ",\"%s\":\"%lld\"", name, (long long) value);
    bm_text_put (text, field, (size_t) n);
}

//  The job frame {job, env, payload}, env holding the job's own BOT_*
//  variables (and, sandboxed, its TMPDIR and HOME): the variables
//  s_job_vars gives a spawned bot.
char *
bm_job_env_frame (bm_job_env_t *self, const char *job_id, const bm_worker_type_t *type,
                  int64_t attempt, int64_t limit_ms, int64_t deadline, const char *worker,
                  const json_t *payload)
{
    //  The job's own variables only (a sandboxed process's environment is
    //  cut down, but the job's are all in it).
    (void) self;
    char *payload_text = bm_json_dumps (payload, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!payload_text)
        return NULL;
    bm_text_t text = BM_TEXT_INIT;
    bm_text_puts (&text, "{\"job\":");
    s_put_json_str (&text, job_id);
    bm_text_puts (&text, ",\"env\":{\"BOT_JOB_ID\":");
    s_put_json_str (&text, job_id);
    bm_text_puts (&text, ",\"BOT_TYPE\":");
    s_put_json_str (&text, type->name);
    s_put_var_int (&text, "BOT_ATTEMPT", attempt);
    s_put_var_int (&text, "BOT_TIMEOUT_MS", limit_ms);
    s_put_var_int (&text, "BOT_DEADLINE", deadline);
    bm_text_puts (&text, ",\"BOT_PROGRESS_FD\":\"3\",\"BOT_WORKER\":");
    s_put_json_str (&text, worker);
    //  Sandboxed, the job's own temporary directory in the process's /tmp
    //  (the pool makes it before the job and removes it after).
    if (type->sandboxed) {
        char tmp [96];
        bm_sandbox_job_tmp (job_id, tmp, sizeof tmp);
        bm_text_puts (&text, ",\"TMPDIR\":");
        s_put_json_str (&text, tmp);
        bm_text_puts (&text, ",\"HOME\":");
        s_put_json_str (&text, tmp);
    }
    bm_text_puts (&text, "},\"payload\":");
    bm_text_puts (&text, payload_text);
    free (payload_text);
    //  A fork server runs without the job's CPU, memory and file limits
    //  (its forks would add up, its own use is not the job's): each child
    //  sets them itself, right after it takes the job.
    if (type->bot_mode == BM_BOT_FORK) {
        const bm_limits_t *limits = &type->limits;
        const char *keys [] = { "memoryMb", "cpuSeconds", "maxPids", "maxFiles" };
        int64_t values [] = { limits->memory_mb, limits->cpu_seconds, limits->max_pids, limits->max_files };
        bm_text_puts (&text, ",\"limits\":{");
        bool first = true;
        for (int i = 0; i < 4; i++)
            if (values [i] > 0) {
                char field [64];
                int n = snprintf (field, sizeof field, "%s\"%s\":%lld", first ? "" : ",", keys [i],
                                  (long long) values [i]);
                bm_text_put (&text, field, (size_t) n);
                first = false;
            }
        bm_text_puts (&text, "}");
    }
    bm_text_puts (&text, "}");
    if (text.failed) {
        free (text.data);
        return NULL;
    }
    return text.data;
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self-test: the job's keys replace any the worker inherited.

void
bm_job_env_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_job_env: ");
    setenv ("BOT_JOB_ID", "inherited", 1);
    bm_job_env_t *env = bm_job_env_new ();
    assert (env);
    bm_worker_type_t type;
    memset (&type, 0, sizeof type);
    snprintf (type.name, sizeof type.name, "python");
    char **envp = bm_job_env_bot (env, "j1", &type, 2, 500, 1000, "w1");
    int job_ids = 0;
    bool attempt = false;
    for (char **e = envp; *e; e++) {
        job_ids += strncmp (*e, "BOT_JOB_ID=", 11) == 0;
        attempt |= streq (*e, "BOT_ATTEMPT=2");
        assert (!streq (*e, "BOT_JOB_ID=inherited"));
    }
    assert (job_ids == 1 && attempt);
    bm_bot_argv_free (&envp);

    json_t *payload = json_pack ("{s:i}", "n", 1);
    char *frame = bm_job_env_frame (env, "j1", &type, 1, 500, 1000, "w1", payload);
    json_t *parsed = json_loads (frame, 0, NULL);
    assert (parsed);
    assert (streq (json_string_value (json_object_get (parsed, "job")), "j1"));
    json_t *vars = json_object_get (parsed, "env");
    assert (json_object_size (vars) == 7);
    assert (streq (json_string_value (json_object_get (vars, "BOT_WORKER")), "w1"));
    assert (json_integer_value (json_object_get (json_object_get (parsed, "payload"), "n")) == 1);
    json_decref (parsed);
    free (frame);

    //  Fork mode: the job's limits go to the child in the frame (those
    //  that are set).
    type.bot_mode = BM_BOT_FORK;
    type.limits.cpu_seconds = 7;
    type.limits.memory_mb = 256;
    type.limits.max_files = 64;
    frame = bm_job_env_frame (env, "j2", &type, 1, 500, 1000, "w1", payload);
    parsed = json_loads (frame, 0, NULL);
    json_t *limits = json_object_get (parsed, "limits");
    assert (json_integer_value (json_object_get (limits, "cpuSeconds")) == 7);
    assert (json_integer_value (json_object_get (limits, "memoryMb")) == 256);
    assert (json_integer_value (json_object_get (limits, "maxFiles")) == 64);
    assert (json_object_size (limits) == 3);          //  No maxPids: none set
    json_decref (parsed);
    free (frame);
    //  A sandboxed type: the frame still holds the job's variables (its
    //  process's environment is cut down, not the job's), and its own
    //  temporary directory (the job id's safe characters only).
    type.sandboxed = true;
    frame = bm_job_env_frame (env, "j3/../x", &type, 1, 500, 1000, "w1", payload);
    parsed = json_loads (frame, 0, NULL);
    vars = json_object_get (parsed, "env");
    assert (json_object_size (vars) == 9);
    assert (streq (json_string_value (json_object_get (vars, "BOT_JOB_ID")), "j3/../x"));
    assert (streq (json_string_value (json_object_get (vars, "TMPDIR")), "/tmp/job-j3..x"));
    assert (streq (json_string_value (json_object_get (vars, "HOME")), "/tmp/job-j3..x"));
    json_decref (parsed);
    type.sandboxed = false;
    json_decref (payload);
    free (frame);

    //  The frame is written as text: its variables are the ones a spawned
    //  bot gets, strings escaped (a quote, a backslash, control characters,
    //  UTF-8 as it is), the payload's reals as bm_json_dumps writes them.
    type.bot_mode = BM_BOT_POOL;
    const char *odd = "q\"b\\n\nt\tc\x01\xc3\xa9/";
    payload = json_pack ("{s:f,s:[i,s,n,b]}", "x", 0.1, "list", -3, odd, 0);
    frame = bm_job_env_frame (env, odd, &type, 4, 700, 1234567890123LL, odd, payload);
    parsed = json_loads (frame, 0, NULL);
    assert (parsed && json_equal (json_object_get (parsed, "payload"), payload));
    assert (streq (json_string_value (json_object_get (parsed, "job")), odd));
    assert (!json_object_get (parsed, "limits"));
    vars = json_object_get (parsed, "env");
    envp = bm_job_env_bot (env, odd, &type, 4, 700, 1234567890123LL, odd);
    size_t own = 0;
    for (char **e = envp; *e; e++) {
        char *eq = strchr (*e, '=');
        *eq = 0;
        json_t *value = json_object_get (vars, *e);
        if (value) {
            assert (streq (json_string_value (value), eq + 1));
            own++;
        }
        *eq = '=';
    }
    assert (own == json_object_size (vars) && own == 7);
    bm_bot_argv_free (&envp);
    json_decref (parsed);
    free (frame);
    //  A string that is not UTF-8: no frame (json_string refuses it too).
    assert (bm_job_env_frame (env, "j\xff", &type, 1, 500, 1000, "w1", payload) == NULL);
    json_decref (payload);

    //  botmesh's secrets and BOT_ENV_DENY's names and prefixes are withheld.
    assert (bm_job_env_is_withheld ("REDIS_URL=redis://:pw@h", NULL));
    assert (bm_job_env_is_withheld ("REDIS_PASSWORD=pw", NULL));
    assert (bm_job_env_is_withheld ("WEBHOOK_SECRET=s", NULL));
    assert (bm_job_env_is_withheld ("API_KEYS=a,b", NULL));
    assert (bm_job_env_is_withheld ("ADMIN_API_KEYS=a", NULL));
    assert (bm_job_env_is_withheld ("CURVE_CLIENT_CERT=/k", NULL));
    assert (!bm_job_env_is_withheld ("WEBHOOK_SECRETS=x", NULL));    //  Names are whole
    assert (!bm_job_env_is_withheld ("PATH=/usr/bin", NULL));
    assert (!bm_job_env_is_withheld ("MY_TOKEN=t", "ACME_*, OTHER"));
    assert (bm_job_env_is_withheld ("MY_TOKEN=t", "ACME_*, MY_TOKEN"));
    assert (bm_job_env_is_withheld ("ACME_KEY=k", "ACME_*, OTHER"));
    assert (!bm_job_env_is_withheld ("MY_TOKENS=t", "MY_TOKEN"));
    char error [160];
    assert (bm_job_env_deny_check ("A, B_*,c1", error, sizeof error) == 0);
    assert (bm_job_env_deny_check (NULL, error, sizeof error) == 0);
    assert (bm_job_env_deny_check ("A,B=1", error, sizeof error) == -1 && strstr (error, "'B=1'"));
    assert (bm_job_env_deny_check ("A,,B", error, sizeof error) == -1);
    assert (bm_job_env_deny_check ("*", error, sizeof error) == -1);

    //  The environment block's bounds, from a /proc/PID/stat line whose
    //  command name holds spaces and a parenthesis.
    char stat [600] = "4242 (a) b (c) S";
    for (int field = 4; field <= 52; field++)
        snprintf (stat + strlen (stat), sizeof stat - strlen (stat), " %d",
                  field == 50 ? 140000 : field == 51 ? 140064 : field);
    uintptr_t start = 0, end = 0;
    assert (s_stat_env_bounds (stat, &start, &end) == 0 && start == 140000 && end == 140064);
    assert (s_stat_env_bounds ("4242 (a) S 1 2 3", &start, &end) == -1);        //  Too short
    assert (s_stat_env_bounds ("no parenthesis", &start, &end) == -1);
    //  The block's secret entries become zeros, the rest stays.
    char block [] = "PATH=/bin\0API_KEYS=k1\0MY_TOKEN=t\0HOME=/root\0WEBHOOK_SECRET=whsec_x";
    char *block_end = block + sizeof block;        //  Past the last NUL
    assert (s_wipe_block (block, block_end, "MY_TOKEN") == 3);
    //  PATH=/bin at 0, API_KEYS=k1 at 10, MY_TOKEN=t at 22, HOME=/root at
    //  33, WEBHOOK_SECRET=whsec_x at 44.
    assert (streq (block, "PATH=/bin") && streq (block + 33, "HOME=/root"));
    for (char *c = block + 10; c < block_end; c++)
        assert (*c == 0 || (c >= block + 33 && c < block + 44));
    //  And in our own environment: unset.
    setenv ("WEBHOOK_SECRET", "whsec_test", 1);
    setenv ("SCRUB_KEPT", "kept", 1);
    size_t removed = 0;
    int wiped = bm_job_env_scrub (&removed);
    assert (wiped >= 0 && removed >= 1);
    assert (getenv ("WEBHOOK_SECRET") == NULL && streq (getenv ("SCRUB_KEPT"), "kept"));
    unsetenv ("SCRUB_KEPT");

    envp = bm_job_env_pool (env, &type, "w1", true);
    bool mode = false;
    for (char **e = envp; *e; e++)
        mode |= streq (*e, "BOT_MODE=fork");
    assert (mode);
    bm_bot_argv_free (&envp);
    bm_job_env_destroy (&env);
    assert (env == NULL);
    unsetenv ("BOT_JOB_ID");

    //  Each type's bots get their own type's settings, not the others'.
    setenv ("BOT_MY_BOT_CMD", "/bin/mine", 1);
    setenv ("BOT_NODE_MEMORY_MB", "512", 1);
    setenv ("MAX_JAVA_BOTS", "2", 1);
    setenv ("BOT_OUTPUT_MAX_BYTES", "100", 1);      //  Every type's
    env = bm_job_env_new ();
    snprintf (type.name, sizeof type.name, "my-bot");
    assert (bm_job_env_other_types (env, "my-bot") >= 2);
    for (int pool = 0; pool < 2; pool++) {
        envp = pool ? bm_job_env_pool (env, &type, "w1", false)
                    : bm_job_env_bot (env, "j4", &type, 1, 500, 1000, "w1");
        bool own = false, output = false;
        for (char **e = envp; *e; e++) {
            own |= streq (*e, "BOT_MY_BOT_CMD=/bin/mine");
            output |= streq (*e, "BOT_OUTPUT_MAX_BYTES=100");
            assert (strncmp (*e, "BOT_NODE_MEMORY_MB=", 19) && strncmp (*e, "MAX_JAVA_BOTS=", 14));
        }
        assert (own && output);
        bm_bot_argv_free (&envp);
    }
    snprintf (type.name, sizeof type.name, "node");
    envp = bm_job_env_bot (env, "j5", &type, 1, 500, 1000, "w1");
    bool node = false;
    for (char **e = envp; *e; e++) {
        node |= streq (*e, "BOT_NODE_MEMORY_MB=512");
        assert (strncmp (*e, "BOT_MY_BOT_CMD=", 15));
    }
    assert (node);
    bm_bot_argv_free (&envp);
    bm_job_env_destroy (&env);
    unsetenv ("BOT_MY_BOT_CMD");
    unsetenv ("BOT_NODE_MEMORY_MB");
    unsetenv ("MAX_JAVA_BOTS");
    unsetenv ("BOT_OUTPUT_MAX_BYTES");
    printf ("OK\n");
}
#endif
