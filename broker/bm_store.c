/*  bm_store.c - the broker's Redis connection, asynchronous, on its zloop.  */
#include "bm_store.h"
#include "bm_log.h"

#include <hiredis/async.h>

typedef struct {
    char *resp;                 //  The command, formatted (RESP)
    size_t size;                //  Its size
    bool retry;                 //  Send again after a disconnect
    bm_store_fn *fn;            //  Callback, may be NULL
    void *arg;                  //  Its argument
    bm_store_t *store;          //  Back pointer for the reply callback
} s_command_t;

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
    zlistx_t *buffer;           //  Commands waiting for a connection
    zlistx_t *lost;             //  Commands lost with the connection, in order
    size_t buffer_max;          //  Bound on buffer
    size_t in_flight;           //  Commands sent, not answered
    int backoff_ms;             //  Next reconnect delay
    int reconnect_timer;        //  zloop timer id, or -1
    bool outage_logged;         //  One log line per outage
    bm_store_state_fn *state_fn;
    void *state_arg;
    bool destroying;            //  In bm_store_destroy
};

static void s_connect (bm_store_t *self);
static void s_flush (bm_store_t *self);

static void
s_command_destroy (s_command_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->resp);
        free (*self_p);
        *self_p = NULL;
    }
}

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
    s_command_t *cmd;
    while ((cmd = (s_command_t *) zlistx_last (self->lost))) {
        zlistx_detach_cur (self->lost);
        zlistx_add_start (self->buffer, cmd);
    }
    if (!self->outage_logged) {
        bm_error (NULL, "redis %s:%d unavailable (%s); reconnecting with backoff",
                  self->host, self->port, why);
        self->outage_logged = true;
    }
    if (was_up && self->state_fn)
        self->state_fn (false, self->state_arg);
    s_schedule_reconnect (self);
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
    self->connected = true;
    self->backoff_ms = 100;
    if (self->outage_logged)
        bm_info (NULL, "redis %s:%d available again", self->host, self->port);
    else
        bm_info (NULL, "redis %s:%d connected", self->host, self->port);
    self->outage_logged = false;
    if (self->state_fn)
        self->state_fn (true, self->state_arg);
    s_flush (self);
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
//  Commands

static void
s_on_reply (redisAsyncContext *ac, void *r, void *privdata)
{
    (void) ac;
    s_command_t *cmd = (s_command_t *) privdata;
    bm_store_t *self = cmd->store;
    self->in_flight--;
    redisReply *reply = (redisReply *) r;
    if (!reply && cmd->retry && !self->destroying
    &&  zlistx_size (self->buffer) + zlistx_size (self->lost) < self->buffer_max) {
        //  Lost with the connection: send it again after reconnecting,
        //  before anything buffered since (s_went_down puts it back).
        zlistx_add_end (self->lost, cmd);
        return;
    }
    if (cmd->fn)
        cmd->fn (reply, cmd->arg);
    s_command_destroy (&cmd);
}

static int
s_send (bm_store_t *self, s_command_t *cmd)
{
    if (redisAsyncFormattedCommand (self->ac, s_on_reply, cmd, cmd->resp, cmd->size) != REDIS_OK)
        return -1;
    self->in_flight++;
    return 0;
}

static void
s_flush (bm_store_t *self)
{
    s_command_t *cmd;
    while (self->connected && self->ac
       && (cmd = (s_command_t *) zlistx_first (self->buffer))) {
        zlistx_detach_cur (self->buffer);
        if (s_send (self, cmd)) {
            zlistx_add_start (self->buffer, cmd);
            break;
        }
    }
}

int
bm_store_command (bm_store_t *self, bool retry, bm_store_fn *fn, void *arg,
                  int argc, const char **argv, const size_t *argvlen)
{
    if (!retry && !self->connected)
        return -1;
    if (retry && !self->connected && zlistx_size (self->buffer) >= self->buffer_max) {
        bm_error (NULL, "redis buffer full (%zu commands): a state change is dropped",
                  self->buffer_max);
        return -1;
    }
    s_command_t *cmd = (s_command_t *) zmalloc (sizeof (s_command_t));
    long long size = redisFormatCommandArgv (&cmd->resp, argc, argv, argvlen);
    if (size < 0) {
        free (cmd);
        return -1;
    }
    cmd->size = (size_t) size;
    cmd->retry = retry;
    cmd->fn = fn;
    cmd->arg = arg;
    cmd->store = self;
    if (self->connected && self->ac && zlistx_size (self->buffer) == 0) {
        if (s_send (self, cmd) == 0)
            return 0;
        if (!retry) {
            s_command_destroy (&cmd);
            return -1;
        }
    }
    zlistx_add_end (self->buffer, cmd);
    return 0;
}

//  --------------------------------------------------------------------------

bm_store_t *
bm_store_new (zloop_t *loop, const char *url, size_t buffer_max)
{
    //  redis://[:password@]host[:port][/db]
    if (strncmp (url, "redis://", 8) != 0)
        return NULL;
    const char *rest = url + 8;
    char *password = NULL;
    const char *at = strchr (rest, '@');
    if (at) {
        const char *colon = memchr (rest, ':', at - rest);
        const char *pw = colon ? colon + 1 : rest;
        password = strndup (pw, at - pw);
        rest = at + 1;
    }
    const char *end = rest + strcspn (rest, ":/");
    if (end == rest) {
        free (password);
        return NULL;
    }
    char *host = strndup (rest, end - rest);
    int port = 6379, db = 0;
    if (*end == ':') {
        char *stop;
        long value = strtol (end + 1, &stop, 10);
        if (value < 1 || value > 65535 || (*stop && *stop != '/')) {
            free (host);
            free (password);
            return NULL;
        }
        port = (int) value;
        end = stop;
    }
    if (*end == '/' && end [1]) {
        char *stop;
        long value = strtol (end + 1, &stop, 10);
        if (value < 0 || value > 1000 || *stop) {
            free (host);
            free (password);
            return NULL;
        }
        db = (int) value;
    }
    bm_store_t *self = (bm_store_t *) zmalloc (sizeof (bm_store_t));
    self->loop = loop;
    self->host = host;
    self->port = port;
    self->db = db;
    self->password = password;
    self->buffer = zlistx_new ();
    self->lost = zlistx_new ();
    self->buffer_max = buffer_max;
    self->backoff_ms = 100;
    self->reconnect_timer = -1;
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
        if (self->ac) {
            //  Calls every pending callback with NULL and the disconnect
            //  callback.
            redisAsyncContext *ac = self->ac;
            self->ac = NULL;
            redisAsyncFree (ac);
        }
        s_command_t *cmd;
        while ((cmd = (s_command_t *) zlistx_detach (self->buffer, NULL))) {
            if (cmd->fn)
                cmd->fn (NULL, cmd->arg);
            s_command_destroy (&cmd);
        }
        zlistx_destroy (&self->buffer);
        zlistx_destroy (&self->lost);
        free (self->host);
        free (self->password);
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
    return zlistx_size (self->buffer) + zlistx_size (self->lost) + self->in_flight;
}
