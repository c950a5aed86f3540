/*  bm_job_env.c - the environment a bot gets, and a pooled job's frame.  */
#include "bm_job_env.h"
#include "bm_bot.h"
#include "bm_sandbox.h"

#include <czmq.h>
#include <string.h>

extern char **environ;

struct _bm_job_env_t {
    char **base;                //  Our environment minus BOT_* job keys
    size_t count;               //  Entries in base
};

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
    if (!self->base) {
        free (self);
        return NULL;
    }
    size_t n = 0;
    for (char **e = environ; *e; e++)
        if (!s_is_job_key (*e))
            self->base [n++] = strdup (*e);
    self->count = n;
    return self;
}

void
bm_job_env_destroy (bm_job_env_t **self_p)
{
    if (*self_p) {
        bm_job_env_t *self = *self_p;
        bm_bot_argv_free (&self->base);
        free (self);
        *self_p = NULL;
    }
}

//  The environment of a bot: ours, minus any BOT_* keys we set, plus them.
char **
bm_job_env_bot (bm_job_env_t *self, const char *job_id, const bm_worker_type_t *type,
                int64_t attempt, int64_t limit_ms, int64_t deadline, const char *worker)
{
    size_t count = self->count;
    char **envp = (char **) calloc (count + 8, sizeof (char *));
    if (!envp)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        envp [n++] = strdup (self->base [i]);
    envp [n++] = zsys_sprintf ("BOT_JOB_ID=%s", job_id);
    envp [n++] = zsys_sprintf ("BOT_TYPE=%s", type->name);
    envp [n++] = zsys_sprintf ("BOT_ATTEMPT=%lld", (long long) attempt);
    envp [n++] = zsys_sprintf ("BOT_TIMEOUT_MS=%lld", (long long) limit_ms);
    envp [n++] = zsys_sprintf ("BOT_DEADLINE=%lld", (long long) deadline);
    envp [n++] = strdup ("BOT_PROGRESS_FD=3");
    envp [n++] = zsys_sprintf ("BOT_WORKER=%s", worker);
    if (type->sandboxed) {
        //  Only what the job is given: not the worker's credentials.
        char **confined = bm_sandbox_env (envp);
        bm_bot_argv_free (&envp);
        return confined;
    }
    return envp;
}

char **
bm_job_env_pool (bm_job_env_t *self, const bm_worker_type_t *type, const char *worker, bool fork)
{
    size_t base = self->count;
    char **envp = (char **) calloc (base + 5, sizeof (char *));
    if (!envp)
        return NULL;
    for (size_t n = 0; n < base; n++)
        envp [n] = strdup (self->base [n]);
    envp [base] = zsys_sprintf ("BOT_TYPE=%s", type->name);
    envp [base + 1] = zsys_sprintf ("BOT_WORKER=%s", worker);
    envp [base + 2] = zsys_sprintf ("BOT_MODE=%s", fork ? "fork" : "pool");
    envp [base + 3] = strdup ("BOT_PROGRESS_FD=3");
    if (type->sandboxed) {
        //  Only what the job is given: not the worker's credentials.
        char **confined = bm_sandbox_env (envp);
        bm_bot_argv_free (&envp);
        envp = confined;
    }
    return envp;
}

//  The job frame {job, env, payload}, env holding the job's own BOT_*
//  variables.
char *
bm_job_env_frame (bm_job_env_t *self, const char *job_id, const bm_worker_type_t *type,
                  int64_t attempt, int64_t limit_ms, int64_t deadline, const char *worker,
                  const json_t *payload)
{
    size_t base = self->count;
    char **envp = bm_job_env_bot (self, job_id, type, attempt, limit_ms, deadline, worker);
    if (!envp)
        return NULL;
    json_t *env = json_object ();
    for (char **e = envp + base; *e; e++) {
        char *eq = strchr (*e, '=');
        *eq = 0;
        json_object_set_new (env, *e, json_string (eq + 1));
    }
    bm_bot_argv_free (&envp);
    json_t *frame = json_object ();
    json_object_set_new (frame, "job", json_string (job_id));
    json_object_set_new (frame, "env", env);
    json_object_set (frame, "payload", (json_t *) payload);
    //  A fork server runs with no CPU limit of its own (its forks add up):
    //  each child sets the job's budget itself.
    if (type->bot_mode == BM_BOT_FORK && type->limits.cpu_seconds)
        json_object_set_new (frame, "limits", json_pack ("{s:I}", "cpuSeconds",
                                                         (json_int_t) type->limits.cpu_seconds));
    char *text = json_dumps (frame, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION (16));
    json_decref (frame);
    return text;
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

    //  Fork mode: the CPU budget goes to the child in the frame.
    type.bot_mode = BM_BOT_FORK;
    type.limits.cpu_seconds = 7;
    frame = bm_job_env_frame (env, "j2", &type, 1, 500, 1000, "w1", payload);
    parsed = json_loads (frame, 0, NULL);
    assert (json_integer_value (json_object_get (json_object_get (parsed, "limits"), "cpuSeconds")) == 7);
    json_decref (parsed);
    json_decref (payload);
    free (frame);

    envp = bm_job_env_pool (env, &type, "w1", true);
    bool mode = false;
    for (char **e = envp; *e; e++)
        mode |= streq (*e, "BOT_MODE=fork");
    assert (mode);
    bm_bot_argv_free (&envp);
    bm_job_env_destroy (&env);
    assert (env == NULL);
    unsetenv ("BOT_JOB_ID");
    printf ("OK\n");
}
#endif
