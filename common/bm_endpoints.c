/*  bm_endpoints.c - a peer's list of broker endpoints, and where it is in it.  */
#include "bm_endpoints.h"
#include "bm_selftest.h"

#include <czmq.h>

struct _bm_endpoints_t {
    char *items [BM_ENDPOINTS_MAX];     //  The endpoints, in the list's order
    size_t count;
    size_t current;                     //  Index of the one in use
    int64_t backoff_ms;                 //  Wait before the next move
    int silent;                         //  Index of the one that went silent
                                        //  last, -1: none since served
    int quick;                          //  Quick asks of the standby left
    int moves;                          //  Moves since a leader served
    bool named;                         //  A standby's named leader was
                                        //  tried quickly since then
};

bm_endpoints_t *
bm_endpoints_new (const char *list)
{
    if (!list)
        return NULL;
    bm_endpoints_t *self = (bm_endpoints_t *) zmalloc (sizeof (bm_endpoints_t));
    self->backoff_ms = BM_ENDPOINTS_BACKOFF_MS;
    self->silent = -1;
    const char *p = list;
    while (true) {
        const char *comma = strchr (p, ',');
        const char *end = comma ? comma : p + strlen (p);
        while (p < end && isspace ((unsigned char) *p))
            p++;
        const char *last = end;
        while (last > p && isspace ((unsigned char) last [-1]))
            last--;
        if (last == p || self->count == BM_ENDPOINTS_MAX) {
            bm_endpoints_destroy (&self);
            return NULL;
        }
        self->items [self->count] = (char *) malloc ((size_t) (last - p) + 1);
        if (!self->items [self->count]) {
            bm_endpoints_destroy (&self);
            return NULL;
        }
        memcpy (self->items [self->count], p, (size_t) (last - p));
        self->items [self->count++][last - p] = 0;
        if (!comma)
            break;
        p = comma + 1;
    }
    return self;
}

void
bm_endpoints_destroy (bm_endpoints_t **self_p)
{
    if (*self_p) {
        bm_endpoints_t *self = *self_p;
        for (size_t i = 0; i < self->count; i++)
            free (self->items [i]);
        free (self);
        *self_p = NULL;
    }
}

size_t
bm_endpoints_size (bm_endpoints_t *self)
{
    return self->count;
}

const char *
bm_endpoints_current (bm_endpoints_t *self)
{
    return self->items [self->current];
}

int64_t
bm_endpoints_next (bm_endpoints_t *self, bool silent)
{
    self->moves++;
    if (silent) {
        self->silent = (int) self->current;
        self->quick = BM_ENDPOINTS_QUICK_TRIES;
        self->named = false;
    }
    self->current = (self->current + 1) % self->count;
    if (!silent && self->silent == (int) self->current && self->count > 1) {
        //  Told not_leader right after our leader went silent: this
        //  standby is the one about to take over (within a lease); ask it
        //  again, soon, without growing the backoff, for a while.
        self->current = (self->current + self->count - 1) % self->count;
        if (self->quick > 0) {
            self->quick--;
            return BM_ENDPOINTS_BACKOFF_MS;
        }
        //  Longer than a lease and the standby still names the silent one:
        //  it holds its lease after all (the silence passed); it may be
        //  preferred again.
        self->silent = -1;
    }
    int64_t wait = self->backoff_ms;
    self->backoff_ms = self->backoff_ms * 2 > BM_ENDPOINTS_BACKOFF_MAX_MS
                     ? BM_ENDPOINTS_BACKOFF_MAX_MS : self->backoff_ms * 2;
    return wait;
}

bool
bm_endpoints_prefer (bm_endpoints_t *self, const char *endpoint, size_t len)
{
    for (size_t i = 0; i < self->count; i++)
        if (strlen (self->items [i]) == len && memcmp (self->items [i], endpoint, len) == 0
        &&  (int) i != self->silent) {
            self->current = i;
            return true;
        }
    return false;
}

int64_t
bm_endpoints_not_leader (bm_endpoints_t *self, const char *leader, size_t len)
{
    size_t from = self->current;
    int64_t delay = bm_endpoints_next (self, false);
    //  A standby naming itself (it lost Redis and reads no lease) names
    //  no leader.
    if (!leader || len == 0
    ||  (strlen (self->items [from]) == len && memcmp (self->items [from], leader, len) == 0))
        return delay;
    if (bm_endpoints_prefer (self, leader, len) && self->current != from) {
        if (!self->named && delay > BM_ENDPOINTS_BACKOFF_MS)
            delay = BM_ENDPOINTS_BACKOFF_MS;
        self->named = true;
    }
    return delay;
}

int
bm_endpoints_moves (bm_endpoints_t *self)
{
    return self->moves;
}

void
bm_endpoints_served (bm_endpoints_t *self)
{
    self->backoff_ms = BM_ENDPOINTS_BACKOFF_MS;
    self->silent = -1;
    self->moves = 0;
    self->named = false;
}

//  The HOST:PORT of tcp://[SOURCE;]HOST:PORT, or NULL for another
//  transport.
static const char *
s_tcp_host (const char *endpoint)
{
    if (!endpoint || strncmp (endpoint, "tcp://", 6) != 0)
        return NULL;
    const char *host = endpoint + 6;
    const char *semicolon = strchr (host, ';');
    return semicolon ? semicolon + 1 : host;
}

//  tcp://[SOURCE;]HOST:PORT with a host and a port from 0 to 65535, * or
//  ! (an ephemeral port, bound; czmq's *[FROM-TO] and ![FROM-TO] ranges
//  too), ipc://PATH or inproc://NAME: what zmq can bind or connect.  Whether HOST resolves or is this host's is not known here.
static bool
s_endpoint_valid (const char *endpoint)
{
    if (strncmp (endpoint, "ipc://", 6) == 0)
        return endpoint [6] != 0;
    if (strncmp (endpoint, "inproc://", 9) == 0)
        return endpoint [9] != 0;
    const char *host = s_tcp_host (endpoint);
    if (!host)
        return false;
    const char *colon = strrchr (host, ':');
    if (!colon || colon == host)
        return false;
    const char *port = colon + 1;
    if (streq (port, "*") || streq (port, "!"))
        return true;
    //  czmq's ephemeral port ranges: *[60000-], ![-60000], *[55000-55999]
    if ((port [0] == '*' || port [0] == '!') && port [1] == '[') {
        size_t span = strspn (port + 2, "0123456789-");
        return span > 0 && port [2 + span] == ']' && port [3 + span] == 0;
    }
    size_t digits = strspn (port, "0123456789");
    return digits > 0 && digits <= 5 && port [digits] == 0 && atoi (port) <= 65535;
}

bool
bm_endpoints_valid (const char *list)
{
    bm_endpoints_t *self = bm_endpoints_new (list);
    for (size_t i = 0; self && i < self->count; i++)
        if (!s_endpoint_valid (self->items [i]))
            bm_endpoints_destroy (&self);
    bool valid = self != NULL;
    bm_endpoints_destroy (&self);
    return valid;
}

bool
bm_endpoint_network_open (const char *endpoint)
{
    const char *host = s_tcp_host (endpoint);
    if (!host)
        return false;
    return strncmp (host, "127.", 4) != 0 && strncmp (host, "localhost:", 10) != 0
        && strncmp (host, "[::1]:", 6) != 0 && strncmp (host, "lo:", 3) != 0;
}

bool
bm_endpoint_interface_name (const char *endpoint)
{
    const char *host = s_tcp_host (endpoint);
    if (!host)
        return false;
    const char *colon = strrchr (host, ':');
    size_t len = colon ? (size_t) (colon - host) : strlen (host);
    if (len == 0 || len > 15)
        return false;
    for (size_t i = 0; i < len; i++)
        if (strchr (":[]", host [i]))
            return false;
    return true;
}

void
bm_endpoints_test (bool verbose)
{
    if (verbose)
        printf (" * bm_endpoints: ");
    BM_CHECK (bm_endpoints_new (NULL) == NULL);
    BM_CHECK (bm_endpoints_new ("") == NULL);
    BM_CHECK (bm_endpoints_valid ("tcp://*:5555") && bm_endpoints_valid ("tcp://a:1, ipc:///tmp/b"));
    BM_CHECK (!bm_endpoints_valid ("abc") && !bm_endpoints_valid ("tcp://a:1,localhost:5555")
              && !bm_endpoints_valid (NULL));
    BM_CHECK (bm_endpoints_new ("tcp://a:1,,tcp://b:2") == NULL);
    //  A port zmq reads: a number up to 65535, or * / ! (bound only).
    BM_CHECK (bm_endpoints_valid ("tcp://127.0.0.1:*") && bm_endpoints_valid ("tcp://[::1]:65535")
              && bm_endpoints_valid ("tcp://10.0.0.1;b:5555") && bm_endpoints_valid ("tcp://eth0:0"));
    //  czmq's ephemeral ranges and zmq's inproc bind too
    BM_CHECK (bm_endpoints_valid ("tcp://127.0.0.1:*[60000-]") && bm_endpoints_valid ("tcp://*:![-55999]")
              && bm_endpoints_valid ("tcp://*:*[55000-55999]") && bm_endpoints_valid ("inproc://x"));
    BM_CHECK (!bm_endpoints_valid ("tcp://a:*[60000-") && !bm_endpoints_valid ("tcp://a:*[]")
              && !bm_endpoints_valid ("tcp://a:*[x]") && !bm_endpoints_valid ("inproc://"));
    BM_CHECK (!bm_endpoints_valid ("tcp://127.0.0.1:notaport") && !bm_endpoints_valid ("tcp://a:65536")
              && !bm_endpoints_valid ("tcp://a:5555/x") && !bm_endpoints_valid ("tcp://:5555")
              && !bm_endpoints_valid ("tcp://a") && !bm_endpoints_valid ("tcp://a:")
              && !bm_endpoints_valid ("tcp://a:-1") && !bm_endpoints_valid ("ipc://")
              && !bm_endpoints_valid ("tcp://a:1,tcp://b:x"));
    //  A host that can be an interface's name, not up yet: not a bad value
    BM_CHECK (bm_endpoint_interface_name ("tcp://wg0:5555")
              && bm_endpoint_interface_name ("tcp://eth0.100:5555")
              && bm_endpoint_interface_name ("tcp://10.0.0.1;wg0:5555"));
    BM_CHECK (!bm_endpoint_interface_name ("tcp://nosuchhost.invalid:5555")
              && !bm_endpoint_interface_name ("tcp://[::1]:5555")
              && !bm_endpoint_interface_name ("tcp://:5555")
              && !bm_endpoint_interface_name ("ipc:///tmp/x") && !bm_endpoint_interface_name (NULL));
    //  Open to the network: every interface or an outside address.
    BM_CHECK (bm_endpoint_network_open ("tcp://*:5555")
              && bm_endpoint_network_open ("tcp://0.0.0.0:5555")
              && bm_endpoint_network_open ("tcp://10.1.2.3:5555")
              && bm_endpoint_network_open ("tcp://[::]:5555")
              && bm_endpoint_network_open ("tcp://eth0:5555"));
    BM_CHECK (!bm_endpoint_network_open ("tcp://127.0.0.1:5555")
              && !bm_endpoint_network_open ("tcp://localhost:5555")
              && !bm_endpoint_network_open ("tcp://[::1]:5555")
              && !bm_endpoint_network_open ("tcp://lo:5555")
              && !bm_endpoint_network_open ("ipc:///tmp/broker")
              && !bm_endpoint_network_open ("inproc://x") && !bm_endpoint_network_open (NULL));
    BM_CHECK (bm_endpoints_new ("tcp://a:1, ") == NULL);

    //  One endpoint: it stays; the backoff still grows.
    bm_endpoints_t *one = bm_endpoints_new ("tcp://127.0.0.1:5555");
    BM_CHECK (one && bm_endpoints_size (one) == 1);
    BM_CHECK (streq (bm_endpoints_current (one), "tcp://127.0.0.1:5555"));
    BM_CHECK (bm_endpoints_next (one, false) == 100);
    BM_CHECK (streq (bm_endpoints_current (one), "tcp://127.0.0.1:5555"));
    bm_endpoints_destroy (&one);
    BM_CHECK (one == NULL);

    //  Two, with spaces: round robin, backoff 100, 200, ... 2000, reset.
    bm_endpoints_t *two = bm_endpoints_new (" tcp://b1:5555 ,tcp://b2:5555");
    BM_CHECK (two && bm_endpoints_size (two) == 2);
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b1:5555"));
    BM_CHECK (bm_endpoints_next (two, false) == 100);
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b2:5555"));
    BM_CHECK (bm_endpoints_next (two, false) == 200);
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b1:5555"));
    for (int i = 0; i < 10; i++)
        bm_endpoints_next (two, false);
    BM_CHECK (bm_endpoints_next (two, false) == 2000);
    bm_endpoints_served (two);
    BM_CHECK (bm_endpoints_next (two, false) == 100);
    BM_CHECK (bm_endpoints_prefer (two, "tcp://b2:5555", 13));
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b2:5555"));
    BM_CHECK (!bm_endpoints_prefer (two, "tcp://b3:5555", 13));
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b2:5555"));
    //  b2 went silent; b1, a standby, still names b2 (its lease has not
    //  run out yet): the peer does not go back to b2, it asks b1 again.
    //  It is asked every 100 ms for BM_ENDPOINTS_QUICK_TRIES times (it
    //  leads within a lease), then with the backoff again.
    bm_endpoints_next (two, true);
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b1:5555"));
    for (int i = 0; i < BM_ENDPOINTS_QUICK_TRIES; i++) {
        BM_CHECK (bm_endpoints_next (two, false) == BM_ENDPOINTS_BACKOFF_MS);
        BM_CHECK (streq (bm_endpoints_current (two), "tcp://b1:5555"));
    }
    BM_CHECK (!bm_endpoints_prefer (two, "tcp://b2:5555", 13));
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b1:5555"));
    //  Past them, b1 still names b2: b2 kept its lease (the silence
    //  passed), and the peer may go back to it.
    BM_CHECK (bm_endpoints_next (two, false) > BM_ENDPOINTS_BACKOFF_MS);
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b1:5555"));
    BM_CHECK (bm_endpoints_prefer (two, "tcp://b2:5555", 13));
    BM_CHECK (streq (bm_endpoints_current (two), "tcp://b2:5555"));
    bm_endpoints_served (two);
    BM_CHECK (bm_endpoints_prefer (two, "tcp://b2:5555", 13));
    bm_endpoints_destroy (&two);

    //  Redis away, no broker leads: standbys that name themselves, or
    //  each other, are asked with the backoff that grows to its cap; only
    //  the first leader named since a leader served is tried at once.
    bm_endpoints_t *ha = bm_endpoints_new ("tcp://b1:5555,tcp://b2:5555");
    BM_CHECK (bm_endpoints_moves (ha) == 0);
    int64_t waits [12];
    for (int i = 0; i < 12; i++)
        waits [i] = bm_endpoints_not_leader (ha, bm_endpoints_current (ha), 13);
    BM_CHECK (waits [0] == 100 && waits [1] == 200 && waits [4] == 1600 && waits [11] == 2000);
    BM_CHECK (bm_endpoints_moves (ha) == 12);
    bm_endpoints_served (ha);
    BM_CHECK (bm_endpoints_moves (ha) == 0);
    //  b1 names b2, b2 names b1, ...: one quick hop, then the backoff.
    for (int i = 0; i < 12; i++) {
        const char *other = streq (bm_endpoints_current (ha), "tcp://b1:5555")
                          ? "tcp://b2:5555" : "tcp://b1:5555";
        waits [i] = bm_endpoints_not_leader (ha, other, 13);
        BM_CHECK (streq (bm_endpoints_current (ha), other));
    }
    BM_CHECK (waits [0] == 100 && waits [1] == 200 && waits [2] == 400 && waits [11] == 2000);
    //  A leader served: the first named one is quick again, even after a
    //  grown backoff.
    bm_endpoints_served (ha);
    for (int i = 0; i < 5; i++)
        bm_endpoints_not_leader (ha, NULL, 0);
    BM_CHECK (bm_endpoints_not_leader (ha, "tcp://b1:5555", 13) == 100);
    BM_CHECK (streq (bm_endpoints_current (ha), "tcp://b1:5555"));
    BM_CHECK (bm_endpoints_not_leader (ha, "tcp://b2:5555", 13) == 2000);
    bm_endpoints_destroy (&ha);
    if (verbose)
        printf ("OK\n");
}
