/*  bm_store_group.c - a group of Redis writes, sent as one.  */
#include "bm_store_group.h"
#include "bm_log.h"
#include "bm_selftest.h"

static const char s_reply_off [] = "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n";
static const char s_reply_on [] = "*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$2\r\nON\r\n";

//  Decimal digits of value, written backwards from end; returns the start.
static char *
s_utoa (size_t value, char *end)
{
    do {
        *--end = (char) ('0' + value % 10);
        value /= 10;
    } while (value);
    return end;
}

static void
s_group_reserve (bm_store_group_t *group, size_t more)
{
    if (group->size + more > group->alloc) {
        size_t alloc = group->alloc ? group->alloc : 4096;
        while (alloc < group->size + more)
            alloc *= 2;
        group->buf = (char *) bm_realloc_or_abort (group->buf, alloc, "a Redis write batch");
        group->alloc = alloc;
    }
}

static bm_store_entry_t *
s_group_entry (bm_store_group_t *group)
{
    if (group->count == group->alloc_entries) {
        group->alloc_entries = group->alloc_entries ? group->alloc_entries * 2 : 64;
        group->entries = (bm_store_entry_t *) bm_realloc_or_abort (group->entries,
                            group->alloc_entries * sizeof (bm_store_entry_t), "a Redis write batch's entries");
    }
    return &group->entries [group->count++];
}

bm_store_group_t *
bm_store_group_new (bm_store_t *store, size_t size_hint)
{
    bm_store_group_t *group = (bm_store_group_t *) zmalloc (sizeof (bm_store_group_t));
    group->store = store;
    //  As large as the last group: a busy turn's group then grows without
    //  copying itself over and over (realloc doubling showed in profiles).
    s_group_reserve (group, size_hint > sizeof s_reply_off
                            ? size_hint + size_hint / 8
                            : sizeof s_reply_off);
    memcpy (group->buf, s_reply_off, sizeof s_reply_off - 1);
    group->size = sizeof s_reply_off - 1;
    return group;
}

void
bm_store_group_destroy (bm_store_group_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->buf);
        free ((*self_p)->entries);
        free (*self_p);
        *self_p = NULL;
    }
}

//  Append a write whose RESP bytes are ready at data.
void
bm_store_group_add (bm_store_group_t *group, const char *data, size_t size, bool retry,
             bm_store_fn *fn, void *arg)
{
    s_group_reserve (group, size);
    bm_store_entry_t *entry = s_group_entry (group);
    *entry = (bm_store_entry_t) { group->size, size, retry, fn, arg, NULL, false };
    memcpy (group->buf + group->size, data, size);
    group->size += size;
}

//  Append a write, formatted as RESP straight into the group (hiredis's
//  own formatter calls sprintf for every argument, which showed in
//  profiles).
void
bm_store_group_add_argv (bm_store_group_t *group, bool retry, bm_store_fn *fn, void *arg,
                  int argc, const char **argv, const size_t *argvlen)
{
    size_t need = 1 + 20 + 2;
    for (int i = 0; i < argc; i++)
        need += 1 + 20 + 2 + argvlen [i] + 2;
    s_group_reserve (group, need);
    char *start = group->buf + group->size, *out = start;
    char digits [24], *d;
    *out++ = '*';
    d = s_utoa ((size_t) argc, digits + sizeof digits);
    memcpy (out, d, (size_t) (digits + sizeof digits - d));
    out += digits + sizeof digits - d;
    *out++ = '\r'; *out++ = '\n';
    for (int i = 0; i < argc; i++) {
        *out++ = '$';
        d = s_utoa (argvlen [i], digits + sizeof digits);
        memcpy (out, d, (size_t) (digits + sizeof digits - d));
        out += digits + sizeof digits - d;
        *out++ = '\r'; *out++ = '\n';
        memcpy (out, argv [i], argvlen [i]);
        out += argvlen [i];
        *out++ = '\r'; *out++ = '\n';
    }
    bm_store_entry_t *entry = s_group_entry (group);
    *entry = (bm_store_entry_t) { group->size, (size_t) (out - start), retry, fn, arg, NULL, false };
    group->size += (size_t) (out - start);
}

//  Tell every write of a group that it failed.
void
bm_store_group_fail (bm_store_group_t *group)
{
    for (size_t i = 0; i < group->count; i++)
        if (group->entries [i].fn)
            group->entries [i].fn (NULL, group->entries [i].arg);
}

//  The fencing script: runs the group only while the epoch counter holds
//  our epoch.  ARGV[1] the epoch, then per write its argument count and
//  its arguments.  A write refused for want of memory or of a writable
//  master ends the script with its error; other errors of single writes
//  are ignored.
static const char s_fence_script [] =
    "if #KEYS == 1 then\n"
    "  local cur = redis.call('GET', KEYS[1])\n"
    "  if cur ~= ARGV[1] then\n"
    "    return redis.error_reply('FENCED epoch ' .. ARGV[1] .. ' is over, the lease is at epoch ' .. (cur or 'none'))\n"
    "  end\n"
    "end\n"
    "local i, n = 2, #ARGV\n"
    "while i <= n do\n"
    "  local k = tonumber(ARGV[i])\n"
    "  local r = redis.pcall(unpack(ARGV, i + 1, i + k))\n"
    "  if type(r) == 'table' and r.err and (string.find(r.err, '^READONLY') or string.find(r.err, '^OOM')\n"
    "      or string.find(r.err, '^LOADING') or string.find(r.err, '^MASTERDOWN')\n"
    "      or string.find(r.err, '^NOREPLICAS')) then\n"
    "    return r\n"
    "  end\n"
    "  i = i + k + 1\n"
    "end\n"
    "return 'OK'\n";

//  Append "$<len>\r\n<data>\r\n" at out; returns the end.
static char *
s_put_bulk (char *out, const char *data, size_t len)
{
    char digits [24], *d = s_utoa (len, digits + sizeof digits);
    *out++ = '$';
    memcpy (out, d, (size_t) (digits + sizeof digits - d));
    out += digits + sizeof digits - d;
    *out++ = '\r'; *out++ = '\n';
    memcpy (out, data, len);
    out += len;
    *out++ = '\r'; *out++ = '\n';
    return out;
}

//  A group as one EVAL of the fencing script: each write's RESP array
//  "*<k>\r\n<k bulks>" becomes the bulk "<k>" followed by the same bulks,
//  copied as they are.  Returns the size built in *buf, 0 when
//  out of memory.
size_t
bm_store_group_fence (const bm_store_group_t *group, char **buf, size_t *alloc,
                      const char *fence_key, const char *fence_epoch)
{
    const char *key = fence_key ? fence_key : "";
    const char *epoch = fence_epoch ? fence_epoch : "";
    size_t need = 64 + sizeof s_fence_script + strlen (key)
                + strlen (epoch) + 3 * 32 + group->size
                + group->count * 8;     //  "*<k>" becomes "$<n>\r\n<k>": 5 more bytes at most
    if (need > *alloc) {
        char *grown = (char *) realloc (*buf, need);
        if (!grown)
            return 0;
        *buf = grown;
        *alloc = need;
    }
    size_t args = fence_key ? 5 : 4;
    for (size_t i = 0; i < group->count; i++)
        args += 1 + strtoul (group->buf + group->entries [i].offset + 1, NULL, 10);
    char *out = *buf, digits [24], *d = s_utoa (args, digits + sizeof digits);
    *out++ = '*';
    memcpy (out, d, (size_t) (digits + sizeof digits - d));
    out += digits + sizeof digits - d;
    *out++ = '\r'; *out++ = '\n';
    out = s_put_bulk (out, "EVAL", 4);
    out = s_put_bulk (out, s_fence_script, sizeof s_fence_script - 1);
    out = s_put_bulk (out, fence_key ? "1" : "0", 1);
    if (fence_key)
        out = s_put_bulk (out, key, strlen (key));
    out = s_put_bulk (out, epoch, strlen (epoch));
    for (size_t i = 0; i < group->count; i++) {
        const char *entry = group->buf + group->entries [i].offset;
        const char *bulks = strchr (entry, '\n') + 1;
        out = s_put_bulk (out, entry + 1, (size_t) (bulks - entry - 3));
        size_t rest = group->entries [i].size - (size_t) (bulks - entry);
        memcpy (out, bulks, rest);
        out += rest;
    }
    return (size_t) (out - *buf);
}

//  KEYS[1] the epoch counter, ARGV[1] our epoch.  Another epoch: write the
//  counter back as it is, which aborts the EXEC that WATCHes it.
static const char s_check_script [] =
    "local c = redis.call('GET', KEYS[1])\n"
    "if c ~= ARGV[1] then\n"
    "  redis.call('SET', KEYS[1], c or '0')\n"
    "  return redis.error_reply('FENCED')\n"
    "end\n"
    "return 0\n";

static char *
s_put_command (char *out, int argc, const char **argv)
{
    char digits [24], *d = s_utoa ((size_t) argc, digits + sizeof digits);
    *out++ = '*';
    memcpy (out, d, (size_t) (digits + sizeof digits - d));
    out += digits + sizeof digits - d;
    *out++ = '\r'; *out++ = '\n';
    for (int i = 0; i < argc; i++)
        out = s_put_bulk (out, argv [i], strlen (argv [i]));
    return out;
}

size_t
bm_store_group_watch (const bm_store_group_t *group, char **buf, size_t *alloc,
                      const char *key, const char *epoch,
                      const char *marker_key, const char *marker)
{
    size_t need = 256 + sizeof s_check_script + 3 * strlen (key) + strlen (epoch)
                + strlen (marker_key) + strlen (marker) + group->size + sizeof s_reply_on;
    if (need > *alloc) {
        char *grown = (char *) realloc (*buf, need);
        if (!grown)
            return 0;
        *buf = grown;
        *alloc = need;
    }
    char *out = *buf;
    size_t off = sizeof s_reply_off - 1;
    memcpy (out, group->buf, off);          //  CLIENT REPLY OFF
    out += off;
    out = s_put_command (out, 2, (const char *[]) { "WATCH", key });
    out = s_put_command (out, 5, (const char *[]) { "EVAL", s_check_script, "1", key, epoch });
    out = s_put_command (out, 1, (const char *[]) { "MULTI" });
    memcpy (out, group->buf + off, group->size - off);
    out += group->size - off;
    out = s_put_command (out, 3, (const char *[]) { "SET", marker_key, marker });
    out = s_put_command (out, 1, (const char *[]) { "EXEC" });
    memcpy (out, s_reply_on, sizeof s_reply_on - 1);
    out += sizeof s_reply_on - 1;
    return (size_t) (out - *buf);
}

int
bm_store_group_verdict (const redisReply *mget, const char *epoch, const char *marker,
                        char *why, size_t why_size)
{
    if (!mget || mget->type != REDIS_REPLY_ARRAY || mget->elements != 2) {
        snprintf (why, why_size, "NOTCHECKED %s", mget && mget->type == REDIS_REPLY_ERROR
                  ? mget->str : "the group's check did not answer [marker, epoch]");
        return -1;
    }
    const redisReply *ran = mget->element [0], *now = mget->element [1];
    if (ran->type == REDIS_REPLY_STRING && streq (ran->str, marker))
        return 0;
    if (now->type != REDIS_REPLY_STRING || !streq (now->str, epoch)) {
        snprintf (why, why_size, "FENCED epoch %s is over, the lease is at epoch %s", epoch,
                  now->type == REDIS_REPLY_STRING ? now->str : "none");
        return 1;
    }
    snprintf (why, why_size, "NOTAPPLIED the transaction did not run: Redis refused a write "
              "in it (OOM under maxmemory, MISCONF, READONLY)");
    return -1;
}

//  --------------------------------------------------------------------------
//  Self-test

static int s_test_failed;

static void
s_test_fn (redisReply *reply, void *arg)
{
    (void) arg;
    if (!reply)
        s_test_failed++;
}

void
bm_store_group_test (bool verbose)
{
    if (verbose)
        printf (" * bm_store_group: ");
    bm_store_group_t *group = bm_store_group_new (NULL, 0);
    BM_CHECK (group->size == sizeof s_reply_off - 1);
    const char *argv [] = { "HSET", "bm:job:1", "state", "queued" };
    size_t argvlen [] = { 4, 8, 5, 6 };
    bm_store_group_add_argv (group, true, s_test_fn, NULL, 4, argv, argvlen);
    const char *resp = "*4\r\n$4\r\nHSET\r\n$8\r\nbm:job:1\r\n$5\r\nstate\r\n$6\r\nqueued\r\n";
    BM_CHECK (group->count == 1);
    BM_CHECK (group->entries [0].size == strlen (resp));
    BM_CHECK (memcmp (group->buf + group->entries [0].offset, resp, strlen (resp)) == 0);
    const char *expire = "*3\r\n$7\r\nPEXPIRE\r\n$8\r\nbm:job:1\r\n$4\r\n1000\r\n";
    bm_store_group_add (group, expire, strlen (expire), false, s_test_fn, NULL);
    BM_CHECK (group->count == 2);
    BM_CHECK (group->entries [1].offset == group->entries [0].offset + strlen (resp));

    size_t size = group->size;

    //  Fenced: one EVAL of 14 arguments (EVAL, script, 1, key, epoch, and
    //  per write its count then its 4 or 3 arguments); "*<k>" became "<k>".
    char *buf = NULL;
    size_t alloc = 0;
    size_t built = bm_store_group_fence (group, &buf, &alloc, "bm:epoch", "7");
    BM_CHECK (built > 0 && built <= alloc);
    BM_CHECK (memcmp (buf, "*14\r\n$4\r\nEVAL\r\n", 15) == 0);
    const char *keys = "$1\r\n1\r\n$8\r\nbm:epoch\r\n$1\r\n7\r\n$1\r\n4\r\n$4\r\nHSET\r\n";
    BM_CHECK (memmem (buf, built, keys, strlen (keys)) != NULL);
    BM_CHECK (memmem (buf, built, "$1\r\n3\r\n$7\r\nPEXPIRE\r\n", 19) != NULL);
    BM_CHECK (memcmp (buf + built - 10, "$4\r\n1000\r\n", 10) == 0);
    //  Sentinel alone: no key, one argument fewer.
    built = bm_store_group_fence (group, &buf, &alloc, NULL, "");
    BM_CHECK (built > 0 && memcmp (buf, "*13\r\n", 5) == 0);

    //  Watched: REPLY OFF, WATCH, the check, MULTI, the writes as they
    //  are, the marker, EXEC, REPLY ON.
    built = bm_store_group_watch (group, &buf, &alloc, "bm:epoch", "7", "bm:epoch:group", "7:42");
    BM_CHECK (built > 0 && built <= alloc);
    BM_CHECK (memcmp (buf, s_reply_off, strlen (s_reply_off)) == 0);
    const char *watch = "*2\r\n$5\r\nWATCH\r\n$8\r\nbm:epoch\r\n*5\r\n$4\r\nEVAL\r\n";
    BM_CHECK (memcmp (buf + strlen (s_reply_off), watch, strlen (watch)) == 0);
    const char *multi = "$1\r\n1\r\n$8\r\nbm:epoch\r\n$1\r\n7\r\n*1\r\n$5\r\nMULTI\r\n";
    char *at = (char *) memmem (buf, built, multi, strlen (multi));
    BM_CHECK (at != NULL);
    size_t writes = size - strlen (s_reply_off);
    BM_CHECK (memcmp (at + strlen (multi), group->buf + strlen (s_reply_off), writes) == 0);
    const char *tail = "*3\r\n$3\r\nSET\r\n$14\r\nbm:epoch:group\r\n$4\r\n7:42\r\n"
                       "*1\r\n$4\r\nEXEC\r\n";
    BM_CHECK (memcmp (at + strlen (multi) + writes, tail, strlen (tail)) == 0);
    BM_CHECK (memcmp (buf + built - strlen (s_reply_on), s_reply_on, strlen (s_reply_on)) == 0);
    BM_CHECK ((size_t) (at + strlen (multi) + writes + strlen (tail) + strlen (s_reply_on) - buf) == built);
    free (buf);

    //  The verdict of the MGET [marker, epoch] after it.
    redisReply marker = { .type = REDIS_REPLY_STRING, .str = (char *) "7:42", .len = 4 };
    redisReply other = { .type = REDIS_REPLY_STRING, .str = (char *) "7:41", .len = 4 };
    redisReply ours = { .type = REDIS_REPLY_STRING, .str = (char *) "7", .len = 1 };
    redisReply next = { .type = REDIS_REPLY_STRING, .str = (char *) "8", .len = 1 };
    redisReply *ran [] = { &marker, &ours }, *fenced [] = { &other, &next }, *refused [] = { &other, &ours };
    redisReply mget = { .type = REDIS_REPLY_ARRAY, .elements = 2, .element = ran };
    char why [160];
    BM_CHECK (bm_store_group_verdict (&mget, "7", "7:42", why, sizeof why) == 0);
    mget.element = fenced;
    BM_CHECK (bm_store_group_verdict (&mget, "7", "7:42", why, sizeof why) == 1);
    BM_CHECK (streq (why, "FENCED epoch 7 is over, the lease is at epoch 8"));
    mget.element = refused;
    BM_CHECK (bm_store_group_verdict (&mget, "7", "7:42", why, sizeof why) == -1);
    BM_CHECK (strncmp (why, "NOTAPPLIED", 10) == 0);
    BM_CHECK (bm_store_group_verdict (NULL, "7", "7:42", why, sizeof why) == -1);

    bm_store_group_fail (group);
    BM_CHECK (s_test_failed == 2);
    bm_store_group_destroy (&group);
    BM_CHECK (group == NULL);
    if (verbose)
        printf ("OK\n");
}
