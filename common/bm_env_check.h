/*  bm_env_check.h - misspelt configuration names, named at start.

    One environment file feeds every botmesh service, so a variable set for
    one service is unknown to the others: only a name that no botmesh
    program reads is suspect.  Which names botmesh programs read, and which
    program reads which, comes from env.example, embedded at build time:
    every variable with the programs that read it in [brackets], and the
    per-bot-type patterns its comments spell out (BOT_<TYPE>_MODE); a name
    of a built-in type (BOT_PYTHON_MODE) stands for its pattern too.
    deploy.env_help holds env.example to each program's settings table and
    --help, so the catalogue is the tables.

    At start each service (and botmesh-client) calls bm_env_check_warn.  A
    variable is doubtful when
    - it starts with the first word of a catalogue name (BOT_, BROKER_,
      REDIS_, ...), no program reads it, and it is a small edit away from a
      name this program reads:  unknown setting BROKER_ENDPIONT (did you
      mean BROKER_ENDPOINT?);
    - it fits a per-type pattern this program reads with a type one edit
      away from a built-in one: MAX_PYTON_BOTS (did you mean
      MAX_PYTHON_BOTS?), by bm_env_check_misspelt_type, the broker's rule
      of which types it makes; or
    - its first word is not ours but a typo of ours, the rest of the name
      being exactly the rest of a name this program reads:  BROKR_ENDPOINT,
      REDSI_URL (stricter, as the environment holds the variables of other
      programs: PATH, APP_KEYS, a user's FOO_BAR never warn).
    Each doubtful variable gets one WARN line; the service starts anyway.  */
#ifndef BM_ENV_CHECK_H
#define BM_ENV_CHECK_H

#include <stdbool.h>
#include <stddef.h>

//  The process's environment (POSIX), to pass to bm_env_check_warn.
extern char **environ;

typedef struct _bm_env_check_t bm_env_check_t;

//  Read a catalogue in env.example's format (borrowed for the call only);
//  NULL: the embedded env.example.
bm_env_check_t *bm_env_check_new (const char *catalogue);

//  Destroy the catalogue; nulls *self_p.
void bm_env_check_destroy (bm_env_check_t **self_p);

//  The name program (a tag of the catalogue: broker, worker, gateway,
//  webhook, mock, client) reads that name is likely a misspelling of, as a
//  new string the caller frees; NULL when name raises no doubt.
char *bm_env_check_suggest (bm_env_check_t *self, const char *program, const char *name);

//  The bot type name is a setting of for program, by the per-type patterns
//  program reads (BOT_<TYPE>_CMD, MAX_<TYPE>_BOTS): "NODE" for
//  BOT_NODE_CMD, "MY_BOT" for BOT_MY_BOT_MEMORY_MB, as a new string the
//  caller frees; NULL for a name that fits none.  Of several fits, the
//  pattern with the most letters of its own decides.
char *bm_env_check_type_of (bm_env_check_t *self, const char *program, const char *name);

//  Take the types of list (comma-separated, any case: BROKER_NEW_TYPES)
//  as types of their own, never misspellings.
void bm_env_check_declare (bm_env_check_t *self, const char *list);

//  The built-in bot type ("PYTHON", "NODE", "JAVA", "WEBHOOK") that type
//  (type_len characters, any case: "pyton" of MAX_PYTON_BOTS) misspells,
//  or NULL: it is one edit from that built-in name, neither a built-in name
//  with a digit, '-' or '_' after it (python3, java-11, node_v2: a type of
//  its own) nor listed in declared (BROKER_NEW_TYPES; NULL: none).  The
//  one rule of every program: the broker ignores a per-type variable of
//  such a type, every program warns about it.
const char *bm_env_check_misspelt_type (const char *type, size_t type_len, const char *declared);

//  Check every NAME=value of env (NULL-terminated, as environ) against the
//  embedded env.example, the types env's BROKER_NEW_TYPES lists declared;
//  log one WARN line per doubtful variable and return how many there were.
int bm_env_check_warn (const char *program, char **env);

//  The same for a program that serves bot types: served (comma-separated,
//  as --type takes them; NULL: none) are types of its own too, so the
//  settings of a type it serves (BOT_NODEB_CMD of a worker serving nodeb)
//  raise no doubt.
int bm_env_check_warn_serving (const char *program, char **env, const char *served);

//  Self test.
void bm_env_check_test (bool verbose);

#endif
