/*  bm_redis_zloop.c - drive a hiredis async connection from a czmq zloop.  */
#include "bm_redis_zloop.h"

static int
s_io_handler (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    bm_redis_zloop_t *self = (bm_redis_zloop_t *) arg;
    //  Either call may free the context (on error); check it between them.
    if (item->revents & (ZMQ_POLLIN | ZMQ_POLLOUT | ZMQ_POLLERR))
        self->last_io = zclock_mono ();
    if (*self->ac && (item->revents & (ZMQ_POLLIN | ZMQ_POLLERR)))
        redisAsyncHandleRead (*self->ac);
    if (*self->ac && (item->revents & ZMQ_POLLOUT))
        redisAsyncHandleWrite (*self->ac);
    if (self->after_io)
        self->after_io (self->arg);
    return 0;
}

static void
s_update_poller (bm_redis_zloop_t *self)
{
    if (self->polling) {
        zloop_poller_end (self->loop, &self->item);
        self->polling = false;
    }
    if (*self->ac && (self->want_read || self->want_write)) {
        self->item.socket = NULL;
        self->item.fd = (*self->ac)->c.fd;
        self->item.events = (self->want_read ? ZMQ_POLLIN : 0)
                          | (self->want_write ? ZMQ_POLLOUT : 0);
        self->item.revents = 0;
        if (zloop_poller (self->loop, &self->item, s_io_handler, self) == 0) {
            zloop_poller_set_tolerant (self->loop, &self->item);
            self->polling = true;
        }
    }
}

static void
s_want (bm_redis_zloop_t *self, bool *flag, bool value)
{
    if (*flag != value) {
        *flag = value;
        s_update_poller (self);
    }
}

static void s_add_read (void *p)  { bm_redis_zloop_t *s = p; s_want (s, &s->want_read, true); }
static void s_del_read (void *p)  { bm_redis_zloop_t *s = p; s_want (s, &s->want_read, false); }
static void s_add_write (void *p) { bm_redis_zloop_t *s = p; s_want (s, &s->want_write, true); }
static void s_del_write (void *p) { bm_redis_zloop_t *s = p; s_want (s, &s->want_write, false); }

static void
s_cleanup (void *p)
{
    bm_redis_zloop_t *self = (bm_redis_zloop_t *) p;
    self->want_read = self->want_write = false;
    if (self->polling) {
        zloop_poller_end (self->loop, &self->item);
        self->polling = false;
    }
}

void
bm_redis_zloop_init (bm_redis_zloop_t *self, zloop_t *loop, redisAsyncContext **ac,
                     bm_redis_zloop_fn *after_io, void *arg)
{
    memset (self, 0, sizeof *self);
    self->loop = loop;
    self->ac = ac;
    self->after_io = after_io;
    self->arg = arg;
}

void
bm_redis_zloop_attach (bm_redis_zloop_t *self, redisAsyncContext *ac)
{
    ac->ev.data = self;
    ac->ev.addRead = s_add_read;
    ac->ev.delRead = s_del_read;
    ac->ev.addWrite = s_add_write;
    ac->ev.delWrite = s_del_write;
    ac->ev.cleanup = s_cleanup;
    //  The socket is connecting: hiredis waits for writability.
    s_add_write (self);
}
