/*  bm_store.c - the broker's Redis connection, asynchronous, on its zloop.  */
#include "bm_store.h"
#include "bm_redis_url.h"
#include "bm_log.h"
#include "bm_sentinel.h"

#include <hiredis/async.h>

//  One write in a group: where its bytes are, and who to tell.
typedef struct {
    size_t offset;              //  Its RESP bytes in the group's buffer
    size_t size;
    bool retry;                 //  Send again after a disconnect
    bm_store_fn *fn;            //  Callback, may be NULL
    void *arg;
} s_entry_t;

//  A group of writes: "CLIENT REPLY OFF", the writes, then (when sent)
//  "CLIENT REPLY ON", which alone is answered.
typedef struct {
    bm_store_t *store;          //  Back pointer for the reply callback
    char *buf;                  //  RESP bytes
    size_t size, alloc;
    s_entry_t *entries;         //  The writes, in order
    size_t count, alloc_entries;
    char error [160];           //  Sentinel mode: the EVAL's error, if any
    bool waited;                //  Sentinel mode: its last reply is WAIT's
} s_group_t;

//  A read, sent on its own.
typedef struct {
    bm_store_fn *fn;
    void *arg;
} s_query_t;

struct _bm_store_t {
    zloop_t *loop;              //  The broker's loop
    char *host;                 //  Redis host
    int port;                   //  Redis port
    int db;                     //  Database number
    char *password;             //  AUTH password or NULL
    redisAsyncContext *ac;      //  Live connection, or NULL
    bool connected;             //  Connect callback said yes
    zmq_pollitem_t item;        //  Our poller on ac's fd
    bool polling;               //  Poller registered
    bool want_read;             //  hiredis wants read events
    bool want_write;            //  hiredis wants write events
    s_group_t *open;            //  Writes of this loop turn, or NULL
    s_group_t *waiting;         //  Durable writes waiting for a connection
    s_group_t *lost;            //  Writes lost in flight, in order
    size_t buffer_max;          //  Bound on waiting + lost
    size_t in_flight;           //  Writes sent, not answered
    size_t last_group_size;     //  Bytes of the last group sent (a size hint)
    int backoff_ms;             //  Next reconnect delay
    int reconnect_timer;        //  zloop timer id, or -1
    bool outage_logged;         //  One log line per outage
    bool loading_logged;        //  One log line while Redis loads
    int ping_timer;             //  Readiness re-check, or -1
    bm_store_state_fn *state_fn;
    void *state_arg;
    bm_store_flush_fn *flush_fn;    //  Hook run before each flush
    void *flush_arg;
    bool flushing;              //  In the hook (no recursion)
    bool destroying;            //  In bm_store_destroy
    char *fence_key;            //  Fencing: the epoch counter's key, or NULL
    char *fence_epoch;          //  The epoch every group requires
    bool fenced;                //  A group found another epoch: no more writes
    bm_store_fenced_fn *fenced_fn;
    void *fenced_arg;
    char *sentinels;            //  REDIS_SENTINELS, or NULL
    char *master_name;          //  REDIS_MASTER_NAME
    char *eval_buf;             //  A fenced group's EVAL, rebuilt per group
    size_t eval_alloc;
    bool refusing;              //  The last group was refused: keep backing off
};

static void s_connect (bm_store_t *self);
static void s_became_ready (bm_store_t *self);
static void s_group_destroy (s_group_t **self_p);
static void s_group_fail (s_group_t *group);
static void s_group_keep (bm_store_t *self, s_group_t *group);

//  --------------------------------------------------------------------------
//  The zloop adapter: hiredis asks for read/write interest, we keep one
//  poller on the fd with the union of both.

static int
s_io_handler (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    bm_store_t *self = (bm_store_t *) arg;
    //  Either call may free ac (on error); check it between them.
    if (self->ac && (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
        redisAsyncHandleRead (self->ac);
    if (self->ac && (item->revents & ZMQ_POLLOUT))
        redisAsyncHandleWrite (self->ac);
    //  Reply callbacks may have written.
    bm_store_flush (self);
    return 0;
}

static void
s_update_poller (bm_store_t *self)
{
    if (self->polling) {
        zloop_poller_end (self->loop, &self->item);
        self->polling = false;
    }
    if (self->ac && (self->want_read || self->want_write)) {
        self->item.socket = NULL;
        self->item.fd = self->ac->c.fd;
        self->item.events = (self->want_read ? ZMQ_POLLIN : 0)
                          | (self->want_write ? ZMQ_POLLOUT : 0);
        self->item.revents = 0;
        if (zloop_poller (self->loop, &self->item, s_io_handler, self) == 0) {
            zloop_poller_set_tolerant (self->loop, &self->item);
            self->polling = true;
        }
    }
}

static void s_add_read (void *privdata)  { bm_store_t *s = privdata; if (!s->want_read)   { s->want_read = true;   s_update_poller (s); } }
static void s_del_read (void *privdata)  { bm_store_t *s = privdata; if (s->want_read)    { s->want_read = false;  s_update_poller (s); } }
static void s_add_write (void *privdata) { bm_store_t *s = privdata; if (!s->want_write)  { s->want_write = true;  s_update_poller (s); } }
static void s_del_write (void *privdata) { bm_store_t *s = privdata; if (s->want_write)   { s->want_write = false; s_update_poller (s); } }
static void
s_cleanup (void *privdata)
{
    bm_store_t *self = (bm_store_t *) privdata;
    self->want_read = self->want_write = false;
    if (self->polling) {
        zloop_poller_end (self->loop, &self->item);
        self->polling = false;
    }
}

//  --------------------------------------------------------------------------
//  Connection life

static int
s_reconnect_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_store_t *self = (bm_store_t *) arg;
    self->reconnect_timer = -1;
    s_connect (self);
    return 0;
}

static void
s_schedule_reconnect (bm_store_t *self)
{
    if (self->destroying || self->reconnect_timer != -1)
        return;
    self->reconnect_timer = zloop_timer (self->loop, self->backoff_ms, 1, s_reconnect_timer, self);
    self->backoff_ms = self->backoff_ms * 2 > 5000 ? 5000 : self->backoff_ms * 2;
}

static void
s_went_down (bm_store_t *self, const char *why)
{
    bool was_up = self->connected;
    self->connected = false;
    self->ac = NULL;
    if (self->ping_timer != -1) {
        zloop_timer_end (self->loop, self->ping_timer);
        self->ping_timer = -1;
    }
    //  Resend in the order first written: lost in flight, the open group,
    //  then what waited already.
    s_group_t *open = self->open, *waiting = self->waiting;
    self->open = NULL;
    self->waiting = self->lost;
    self->lost = NULL;
    if (open) {
        s_group_keep (self, open);
        s_group_destroy (&open);
    }
    if (waiting) {
        s_group_keep (self, waiting);
        s_group_destroy (&waiting);
    }
    if (!self->outage_logged && !self->destroying) {
        bm_error (NULL, "redis %s:%d unavailable (%s); reconnecting with backoff",
                  self->host, self->port, why);
        self->outage_logged = true;
    }
    if (was_up && self->state_fn)
        self->state_fn (false, self->state_arg);
    s_schedule_reconnect (self);
}

static void s_ping (bm_store_t *self);

static int
s_ping_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_store_t *self = (bm_store_t *) arg;
    self->ping_timer = -1;
    if (self->ac && !self->connected)
        s_ping (self);
    return 0;
}

//  Redis answers PING with -LOADING while it reads its AOF after a
//  restart, and refuses writes meanwhile; with replies off we would not
//  see that.  So the store counts as connected only once PING says PONG.
static void
s_on_ping (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    bm_store_t *self = (bm_store_t *) privdata;
    redisReply *reply = (redisReply *) r;
    if (!reply || self->destroying)
        return;                 //  Connection gone: the reconnect path runs
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!self->loading_logged)
            bm_warn (NULL, "redis %s:%d is not ready (%s); waiting", self->host, self->port,
                     reply->str);
        self->loading_logged = true;
        if (self->ping_timer == -1)
            self->ping_timer = zloop_timer (self->loop, 100, 1, s_ping_timer, self);
        return;
    }
    self->loading_logged = false;
    s_became_ready (self);
}

static void
s_ping (bm_store_t *self)
{
    redisAsyncCommand (self->ac, s_on_ping, self, "PING");
}

static void
s_on_connect (const redisAsyncContext *ac, int status)
{
    bm_store_t *self = (bm_store_t *) ac->data;
    if (status != REDIS_OK) {
        //  hiredis frees ac after this callback.
        s_went_down (self, ac->errstr);
        return;
    }
    s_ping (self);
}

static void
s_became_ready (bm_store_t *self)
{
    self->connected = true;
    if (!self->refusing)
        self->backoff_ms = 100;
    if (self->outage_logged)
        bm_info (NULL, "redis %s:%d available again", self->host, self->port);
    else
        bm_info (NULL, "redis %s:%d connected", self->host, self->port);
    self->outage_logged = false;
    if (self->state_fn)
        self->state_fn (true, self->state_arg);
    bm_store_flush (self);
}

static void
s_on_disconnect (const redisAsyncContext *ac, int status)
{
    bm_store_t *self = (bm_store_t *) ac->data;
    (void) status;
    s_went_down (self, ac->errstr [0] ? ac->errstr : "connection closed");
}

static void
s_connect (bm_store_t *self)
{
    if (self->sentinels) {
        char host [256], why [512];
        int port;
        if (bm_sentinel_master (self->sentinels, self->master_name, 300, host, sizeof host,
                                &port, why, sizeof why)) {
            if (!self->outage_logged) {
                bm_error (NULL, "redis: no master from the sentinels (%s)", why);
                self->outage_logged = true;
            }
            s_schedule_reconnect (self);
            return;
        }
        if (strcmp (host, self->host) || port != self->port)
            bm_info (NULL, "redis: sentinels name master '%s' at %s:%d", self->master_name, host, port);
        char *copy = strdup (host);
        if (copy) {
            free (self->host);
            self->host = copy;
            self->port = port;
        }
    }
    redisAsyncContext *ac = redisAsyncConnect (self->host, self->port);
    if (!ac || ac->err) {
        const char *why = ac ? ac->errstr : "out of memory";
        if (!self->outage_logged) {
            bm_error (NULL, "redis %s:%d: cannot connect (%s)", self->host, self->port, why);
            self->outage_logged = true;
        }
        if (ac)
            redisAsyncFree (ac);
        s_schedule_reconnect (self);
        return;
    }
    ac->data = self;
    ac->ev.data = self;
    ac->ev.addRead = s_add_read;
    ac->ev.delRead = s_del_read;
    ac->ev.addWrite = s_add_write;
    ac->ev.delWrite = s_del_write;
    ac->ev.cleanup = s_cleanup;
    self->ac = ac;
    redisAsyncSetConnectCallback (ac, s_on_connect);
    redisAsyncSetDisconnectCallback (ac, s_on_disconnect);
    //  Commands queued before the connect completes are sent once it does;
    //  AUTH and SELECT go first.
    if (self->password)
        redisAsyncCommand (ac, NULL, NULL, "AUTH %s", self->password);
    if (self->db)
        redisAsyncCommand (ac, NULL, NULL, "SELECT %d", self->db);
    //  The socket is connecting: hiredis waits for writability.
    s_add_write (self);
}

//  --------------------------------------------------------------------------
//  Groups of writes

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
s_group_reserve (s_group_t *group, size_t more)
{
    if (group->size + more > group->alloc) {
        size_t alloc = group->alloc ? group->alloc : 4096;
        while (alloc < group->size + more)
            alloc *= 2;
        group->buf = (char *) bm_realloc_or_abort (group->buf, alloc, "a Redis write batch");
        group->alloc = alloc;
    }
}

static s_entry_t *
s_group_entry (s_group_t *group)
{
    if (group->count == group->alloc_entries) {
        group->alloc_entries = group->alloc_entries ? group->alloc_entries * 2 : 64;
        group->entries = (s_entry_t *) bm_realloc_or_abort (group->entries,
                            group->alloc_entries * sizeof (s_entry_t), "a Redis write batch's entries");
    }
    return &group->entries [group->count++];
}

static s_group_t *
s_group_new (bm_store_t *store)
{
    s_group_t *group = (s_group_t *) zmalloc (sizeof (s_group_t));
    group->store = store;
    //  As large as the last group: a busy turn's group then grows without
    //  copying itself over and over (realloc doubling showed in profiles).
    s_group_reserve (group, store->last_group_size > sizeof s_reply_off
                            ? store->last_group_size + store->last_group_size / 8
                            : sizeof s_reply_off);
    memcpy (group->buf, s_reply_off, sizeof s_reply_off - 1);
    group->size = sizeof s_reply_off - 1;
    return group;
}

static void
s_group_destroy (s_group_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->buf);
        free ((*self_p)->entries);
        free (*self_p);
        *self_p = NULL;
    }
}

//  Append a write whose RESP bytes are ready at data.
static void
s_group_add (s_group_t *group, const char *data, size_t size, bool retry,
             bm_store_fn *fn, void *arg)
{
    s_group_reserve (group, size);
    s_entry_t *entry = s_group_entry (group);
    *entry = (s_entry_t) { group->size, size, retry, fn, arg };
    memcpy (group->buf + group->size, data, size);
    group->size += size;
}

//  Append a write, formatted as RESP straight into the group (hiredis's
//  own formatter calls sprintf for every argument, which showed in
//  profiles).
static void
s_group_add_argv (s_group_t *group, bool retry, bm_store_fn *fn, void *arg,
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
    s_entry_t *entry = s_group_entry (group);
    *entry = (s_entry_t) { group->size, (size_t) (out - start), retry, fn, arg };
    group->size += (size_t) (out - start);
}

static size_t
s_kept (bm_store_t *self)
{
    return (self->waiting ? self->waiting->count : 0) + (self->lost ? self->lost->count : 0);
}

//  A group was not (or not surely) applied: append its durable writes to
//  self->waiting, in order, and fail the others.  Does not free the group.
static void
s_group_keep (bm_store_t *self, s_group_t *group)
{
    for (size_t i = 0; i < group->count; i++) {
        s_entry_t *entry = &group->entries [i];
        if (entry->retry && !self->destroying && s_kept (self) < self->buffer_max) {
            if (!self->waiting)
                self->waiting = s_group_new (self);
            s_group_add (self->waiting, group->buf + entry->offset, entry->size,
                         true, entry->fn, entry->arg);
        }
        else {
            if (entry->retry && !self->destroying)
                bm_error (NULL, "redis buffer full (%zu writes): a state change is dropped",
                          self->buffer_max);
            if (entry->fn)
                entry->fn (NULL, entry->arg);
        }
    }
}

//  Tell every write of a group that it failed.
static void
s_group_fail (s_group_t *group)
{
    for (size_t i = 0; i < group->count; i++)
        if (group->entries [i].fn)
            group->entries [i].fn (NULL, group->entries [i].arg);
}

static void
s_on_group_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    s_group_t *group = (s_group_t *) privdata;
    bm_store_t *self = group->store;
    self->in_flight -= group->count;
    redisReply *reply = (redisReply *) r;
    //  Sentinel mode: the answer is WAIT's; the EVAL's error came before.
    const char *error = reply && reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
    if (reply && group->error [0])
        error = group->error;
    else
    if (reply && group->waited && reply->type == REDIS_REPLY_INTEGER && reply->integer < 1)
        error = "NOTREPLICATED no replica confirmed the group in time";
    if (error && strncmp (error, "FENCED", 6) == 0) {
        //  Another broker took the lease: none of this group ran, and no
        //  write of ours may run again.
        bool first = !self->fenced;
        self->fenced = true;
        if (first)
            bm_error (NULL, "redis refused our writes: %s", error);
        s_group_fail (group);
        s_group_destroy (&group);
        if (first && self->fenced_fn)
            self->fenced_fn (self->fenced_arg);
        return;
    }
    if (error && !self->destroying) {
        //  Not surely applied: keep the writes and start over on a fresh
        //  connection (which waits until Redis is ready again).
        if (!self->refusing)
            bm_warn (NULL, "redis refused a group of %zu writes (%s); reconnecting to resend "
                     "with backoff", group->count, error);
        self->refusing = true;
        s_group_t *waiting = self->waiting;
        self->waiting = self->lost;
        s_group_keep (self, group);
        self->lost = self->waiting;
        self->waiting = waiting;
        s_group_destroy (&group);
        if (self->ac)
            redisAsyncDisconnect (self->ac);
        return;
    }
    if (reply) {
        if (self->refusing)
            bm_info (NULL, "redis %s:%d takes writes again", self->host, self->port);
        self->refusing = false;
        for (size_t i = 0; i < group->count; i++)
            if (group->entries [i].fn)
                group->entries [i].fn (reply, group->entries [i].arg);
    }
    else
    if (self->destroying)
        s_group_fail (group);
    else {
        //  Lost with the connection: collected in self->lost, which
        //  s_went_down puts before everything else.
        s_group_t *waiting = self->waiting;
        self->waiting = self->lost;
        s_group_keep (self, group);
        self->lost = self->waiting;
        self->waiting = waiting;
    }
    s_group_destroy (&group);
}

void
bm_store_set_flush_fn (bm_store_t *self, bm_store_flush_fn *fn, void *arg)
{
    self->flush_fn = fn;
    self->flush_arg = arg;
}

//  The fencing script: runs the group only while the epoch counter holds
//  our epoch.  ARGV[1] the epoch, then per write its argument count and
//  its arguments.  Errors of single writes are ignored, as they are with
//  replies off.
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
//  copied as they are.  Returns the size built in self->eval_buf, 0 when
//  out of memory.
static size_t
s_fence_group (bm_store_t *self, s_group_t *group)
{
    const char *key = self->fence_key ? self->fence_key : "";
    const char *epoch = self->fence_epoch ? self->fence_epoch : "";
    size_t need = 64 + sizeof s_fence_script + strlen (key)
                + strlen (epoch) + 3 * 32 + group->size
                + group->count * 8;     //  "*<k>" becomes "$<n>\r\n<k>": 5 more bytes at most
    if (need > self->eval_alloc) {
        char *buf = (char *) realloc (self->eval_buf, need);
        if (!buf)
            return 0;
        self->eval_buf = buf;
        self->eval_alloc = need;
    }
    size_t args = self->fence_key ? 5 : 4;
    for (size_t i = 0; i < group->count; i++)
        args += 1 + strtoul (group->buf + group->entries [i].offset + 1, NULL, 10);
    char *out = self->eval_buf, digits [24], *d = s_utoa (args, digits + sizeof digits);
    *out++ = '*';
    memcpy (out, d, (size_t) (digits + sizeof digits - d));
    out += digits + sizeof digits - d;
    *out++ = '\r'; *out++ = '\n';
    out = s_put_bulk (out, "EVAL", 4);
    out = s_put_bulk (out, s_fence_script, sizeof s_fence_script - 1);
    out = s_put_bulk (out, self->fence_key ? "1" : "0", 1);
    if (self->fence_key)
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
    return (size_t) (out - self->eval_buf);
}

//  Sentinel mode: the EVAL's own answer; the group's callback is WAIT's.
static void
s_on_group_eval (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    s_group_t *group = (s_group_t *) privdata;
    redisReply *reply = (redisReply *) r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        snprintf (group->error, sizeof group->error, "%s", reply->str);
}

static const char s_wait [] = "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n1000\r\n";

void
bm_store_set_fence (bm_store_t *self, const char *key, const char *epoch,
                    bm_store_fenced_fn *fn, void *arg)
{
    free (self->fence_key);
    free (self->fence_epoch);
    self->fence_key = strdup (key);
    self->fence_epoch = strdup (epoch);
    self->fenced_fn = fn;
    self->fenced_arg = arg;
}

bool
bm_store_fenced (bm_store_t *self)
{
    return self->fenced;
}

void
bm_store_flush (bm_store_t *self)
{
    if (self->flush_fn && !self->flushing) {
        self->flushing = true;
        self->flush_fn (self->flush_arg);
        self->flushing = false;
    }
    if (!self->connected || !self->ac)
        return;
    //  What waited for the connection goes first.
    s_group_t *groups [2] = { self->waiting, self->open };
    self->waiting = NULL;
    self->open = NULL;
    for (int i = 0; i < 2; i++) {
        s_group_t *group = groups [i];
        if (!group)
            continue;
        if (group->count == 0 || self->fenced) {
            if (group->count)
                s_group_fail (group);
            s_group_destroy (&group);
            continue;
        }
        if (self->fence_key || self->sentinels) {
            size_t size = s_fence_group (self, group);
            //  Sentinel: a group counts once a replica has it too (WAIT 1),
            //  so that a failover to that replica loses no confirmed write.
            group->waited = self->sentinels != NULL;
            if (size == 0 || redisAsyncFormattedCommand (self->ac,
                                 group->waited ? s_on_group_eval : s_on_group_reply, group,
                                 self->eval_buf, size) != REDIS_OK
            ||  (group->waited && redisAsyncFormattedCommand (self->ac, s_on_group_reply, group,
                                                              s_wait, sizeof s_wait - 1) != REDIS_OK)) {
                if (size == 0)
                    bm_error (NULL, "redis: no memory to send a group of %zu writes: kept",
                              group->count);
                s_group_keep (self, group);
                s_group_destroy (&group);
                continue;
            }
            self->in_flight += group->count;
            continue;
        }
        s_group_reserve (group, sizeof s_reply_on);
        memcpy (group->buf + group->size, s_reply_on, sizeof s_reply_on - 1);
        //  Capped: one huge group (a flush after an outage) must not make
        //  every later group reserve as much.
        self->last_group_size = group->size + sizeof s_reply_on < 4 * 1024 * 1024
                              ? group->size + sizeof s_reply_on : 4 * 1024 * 1024;
        if (redisAsyncFormattedCommand (self->ac, s_on_group_reply, group, group->buf,
                                        group->size + sizeof s_reply_on - 1) != REDIS_OK) {
            //  The connection is going away: keep what must be kept.
            s_group_keep (self, group);
            s_group_destroy (&group);
            continue;
        }
        self->in_flight += group->count;
    }
}

int
bm_store_write (bm_store_t *self, bool retry, bm_store_fn *fn, void *arg,
                int argc, const char **argv, const size_t *argvlen)
{
    if (self->destroying || self->fenced)
        return -1;
    if (self->connected) {
        if (!self->open)
            self->open = s_group_new (self);
        s_group_add_argv (self->open, retry, fn, arg, argc, argv, argvlen);
        return 0;
    }
    if (!retry)
        return -1;
    if (s_kept (self) >= self->buffer_max) {
        bm_error (NULL, "redis buffer full (%zu writes): a state change is dropped",
                  self->buffer_max);
        return -1;
    }
    if (!self->waiting)
        self->waiting = s_group_new (self);
    s_group_add_argv (self->waiting, true, fn, arg, argc, argv, argvlen);
    return 0;
}

//  --------------------------------------------------------------------------
//  Queries

static void
s_on_query_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    s_query_t *query = (s_query_t *) privdata;
    if (query->fn)
        query->fn ((redisReply *) r, query->arg);
    free (query);
}

int
bm_store_query (bm_store_t *self, bm_store_fn *fn, void *arg,
                int argc, const char **argv, const size_t *argvlen)
{
    if (!self->connected || !self->ac)
        return -1;
    bm_store_flush (self);      //  A read sees the writes made before it
    s_group_t scratch = { 0 };
    s_group_add_argv (&scratch, false, NULL, NULL, argc, argv, argvlen);
    s_query_t *query = (s_query_t *) zmalloc (sizeof (s_query_t));
    query->fn = fn;
    query->arg = arg;
    int rc = redisAsyncFormattedCommand (self->ac, s_on_query_reply, query,
                                         scratch.buf, scratch.size);
    free (scratch.buf);
    free (scratch.entries);
    if (rc != REDIS_OK) {
        free (query);
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------

bm_store_t *
bm_store_new (zloop_t *loop, const char *url, const char *sentinels, const char *master_name,
              size_t buffer_max)
{
    bm_redis_url_t parsed;
    if (bm_redis_url_parse (url, &parsed))
        return NULL;
    char *host = strdup (parsed.host);
    char *password = *parsed.password ? strdup (parsed.password) : NULL;
    int port = parsed.port, db = parsed.db;
    bm_store_t *self = (bm_store_t *) zmalloc (sizeof (bm_store_t));
    self->loop = loop;
    self->host = host;
    self->port = port;
    self->db = db;
    self->password = password;
    self->buffer_max = buffer_max;
    if (sentinels) {
        self->sentinels = strdup (sentinels);
        self->master_name = strdup (master_name ? master_name : BM_SENTINEL_DEFAULT_MASTER);
    }
    self->backoff_ms = 100;
    self->reconnect_timer = -1;
    self->ping_timer = -1;
    s_connect (self);
    return self;
}

void
bm_store_destroy (bm_store_t **self_p)
{
    if (*self_p) {
        bm_store_t *self = *self_p;
        self->destroying = true;
        if (self->reconnect_timer != -1)
            zloop_timer_end (self->loop, self->reconnect_timer);
        if (self->ping_timer != -1)
            zloop_timer_end (self->loop, self->ping_timer);
        if (self->ac) {
            //  Calls every pending callback with NULL and the disconnect
            //  callback.
            redisAsyncContext *ac = self->ac;
            self->ac = NULL;
            redisAsyncFree (ac);
        }
        s_group_t *groups [3] = { self->lost, self->open, self->waiting };
        for (int i = 0; i < 3; i++) {
            if (groups [i]) {
                s_group_fail (groups [i]);
                s_group_destroy (&groups [i]);
            }
        }
        free (self->host);
        free (self->password);
        free (self->fence_key);
        free (self->fence_epoch);
        free (self->eval_buf);
        free (self->sentinels);
        free (self->master_name);
        free (self);
        *self_p = NULL;
    }
}

void
bm_store_set_state_fn (bm_store_t *self, bm_store_state_fn *fn, void *arg)
{
    self->state_fn = fn;
    self->state_arg = arg;
}

bool
bm_store_up (bm_store_t *self)
{
    return self->connected;
}

size_t
bm_store_pending (bm_store_t *self)
{
    return s_kept (self) + (self->open ? self->open->count : 0) + self->in_flight;
}
