/*  bm_http.c - the HTTP layer of botmesh's civetweb servers.  */
#include "bm_http.h"
#include "bm_json.h"
#include "bm_utf8.h"
#include "bm_main.h"
#include "bm_env_check.h"
#include "bm_config.h"
#include "bm_settings.h"
#include "bm_log.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define BM_HTTP_MAX_OPTIONS     32      //  Name/value pairs a caller passes

//  --------------------------------------------------------------------------
//  Settings

//  The allowed origins, set before any server starts and only read after.
static struct {
    bool any;                                   //  "*": every origin
    char list [BM_HTTP_CORS_MAX_LEN + 1];       //  The origins, NUL-separated
    const char *origins [BM_HTTP_CORS_MAX_ORIGINS];
    size_t count;
} s_cors = { true, "", { NULL }, 0 };

//  An origin is scheme "://" host [":" port], nothing after.
static bool
s_valid_origin (const char *origin)
{
    const char *rest = NULL;
    if (strncmp (origin, "http://", 7) == 0)
        rest = origin + 7;
    else
    if (strncmp (origin, "https://", 8) == 0)
        rest = origin + 8;
    if (!rest || !*rest)
        return false;
    for (const char *c = rest; *c; c++)
        if (*c == '/' || *c == '?' || *c == '#' || *c == '*' || *c <= ' ' || *c > '~')
            return false;
    return true;
}

int
bm_http_set_cors (const char *origins, char *error, size_t error_size)
{
    while (origins && (*origins == ' ' || *origins == '\t'))
        origins++;
    if (!origins || !*origins || strcmp (origins, "*") == 0) {
        s_cors.any = true;
        s_cors.count = 0;
        return 0;
    }
    if (strlen (origins) > BM_HTTP_CORS_MAX_LEN) {
        snprintf (error, error_size, "must be at most %d characters", BM_HTTP_CORS_MAX_LEN);
        return -1;
    }
    char list [BM_HTTP_CORS_MAX_LEN + 1];
    size_t found [BM_HTTP_CORS_MAX_ORIGINS];   //  Offsets into list
    size_t count = 0, used = 0;
    const char *item = origins;
    while (*item) {
        const char *comma = strchr (item, ',');
        size_t len = comma ? (size_t) (comma - item) : strlen (item);
        const char *start = item;
        while (len && (*start == ' ' || *start == '\t')) {
            start++;
            len--;
        }
        while (len && (start [len - 1] == ' ' || start [len - 1] == '\t'))
            len--;
        if (len) {
            if (count == BM_HTTP_CORS_MAX_ORIGINS) {
                snprintf (error, error_size, "holds more than %d origins", BM_HTTP_CORS_MAX_ORIGINS);
                return -1;
            }
            memcpy (list + used, start, len);
            list [used + len] = 0;
            //  Browsers send the origin without a trailing slash.
            if (list [used + len - 1] == '/')
                list [used + len - 1] = 0;
            if (len > BM_HTTP_ORIGIN_MAX_LEN || !s_valid_origin (list + used)) {
                snprintf (error, error_size,
                          "must be * or a comma-separated list of origins like "
                          "https://app.example.com, each at most %d characters (got '%.*s')",
                          BM_HTTP_ORIGIN_MAX_LEN, (int) (len > 200 ? 200 : len),
                          start);
                return -1;
            }
            found [count++] = used;
            used += len + 1;
        }
        item = comma ? comma + 1 : item + strlen (item);
    }
    if (count == 0) {
        snprintf (error, error_size, "must be * or a comma-separated list of origins");
        return -1;
    }
    memcpy (s_cors.list, list, used);
    for (size_t i = 0; i < count; i++)
        s_cors.origins [i] = s_cors.list + found [i];
    s_cors.count = count;
    s_cors.any = false;
    return 0;
}

int
bm_http_cors_from_env (void)
{
    char error [300];
    if (bm_http_set_cors (getenv ("CORS_ORIGINS"), error, sizeof error)) {
        bm_error (NULL, "configuration: CORS_ORIGINS %s", error);
        return -1;
    }
    return 0;
}

bool
bm_http_origin_listed (const char *origin)
{
    if (origin)
        for (size_t i = 0; i < s_cors.count; i++)
            if (strcmp (origin, s_cors.origins [i]) == 0)
                return true;
    return false;
}

//  Set by bm_http_cors_off: this thread's replies grant no origin under "*".
static __thread bool tl_cors_off;

void
bm_http_cors_off (bool off)
{
    tl_cors_off = off;
}

//  The CORS header lines for a request from origin (NULL: none sent).
static const char *
s_cors_lines (const char *origin, char *buf, size_t size)
{
    if (s_cors.any)
        return tl_cors_off ? "Vary: Origin\r\n" : "Access-Control-Allow-Origin: *\r\n";
    if (origin)
        for (size_t i = 0; i < s_cors.count; i++)
            if (strcmp (origin, s_cors.origins [i]) == 0) {
                snprintf (buf, size, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n",
                          s_cors.origins [i]);
                return buf;
            }
    return "Vary: Origin\r\n";
}

//  The headers every response carries, besides CORS: what helmet (the
//  Express security middleware) sets by default.  The policy lets the
//  dashboard under /admin/queues load its own script, style and data and
//  nothing else.  No Strict-Transport-Security: the services speak plain
//  HTTP (TLS ends at a proxy in front), and HSTS sent over HTTP is ignored
//  by browsers at best; the proxy that terminates TLS sends it.  No
//  upgrade-insecure-requests either: over plain HTTP it would make the
//  dashboard's own requests fail.
#define S_SECURITY_HEADERS \
    "Cache-Control: no-store\r\n" \
    "Content-Security-Policy: default-src 'self';base-uri 'self';font-src 'self' data:;" \
        "form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';" \
        "script-src 'self';script-src-attr 'none';style-src 'self' 'unsafe-inline'\r\n" \
    "Cross-Origin-Opener-Policy: same-origin\r\n" \
    "Cross-Origin-Resource-Policy: same-origin\r\n" \
    "Origin-Agent-Cluster: ?1\r\n" \
    "Referrer-Policy: no-referrer\r\n" \
    "X-Content-Type-Options: nosniff\r\n" \
    "X-DNS-Prefetch-Control: off\r\n" \
    "X-Download-Options: noopen\r\n" \
    "X-Frame-Options: SAMEORIGIN\r\n" \
    "X-Permitted-Cross-Domain-Policies: none\r\n" \
    "X-XSS-Protection: 0\r\n"

//  --------------------------------------------------------------------------
//  Starting a server

//  What a refusal of civetweb's own is, from what it tells: its status,
//  its message and what it had parsed of the request line when it gave
//  up.  (civetweb 1.15 says "Bad request" for a bad Content-Length, a
//  method it does not know, a request line it cannot split and a header
//  line without a colon; "Malformed message" for a head over
//  max_request_size or holding a control byte, which it does not tell
//  apart, nor a long URL from long headers.)
typedef struct {
    int status;                 //  Our status
    const char *code;           //  Our error code
    char message [160];         //  Our message: never raw request bytes
} s_refusal_t;

//  The methods civetweb knows (it refuses TRACE) and whether HTTP
//  itself (RFC 9110, PATCH) defines each.
static const struct {
    const char *name;
    bool http;                  //  Defined by HTTP, not WebDAV
    bool taken;                 //  civetweb passes it on
} s_methods [] = {
    { "GET", true, true },      { "HEAD", true, true },     { "POST", true, true },
    { "PUT", true, true },      { "DELETE", true, true },   { "CONNECT", true, true },
    { "OPTIONS", true, true },  { "PATCH", true, true },    { "TRACE", true, false },
    { "PROPFIND", false, true }, { "PROPPATCH", false, true }, { "MKCOL", false, true },
    { "LOCK", false, true },    { "UNLOCK", false, true },  { "MOVE", false, true },
    { "COPY", false, true },    { "REPORT", false, true },  { "MKACTIVITY", false, true },
    { "CHECKOUT", false, true },
};

//  The method's row in s_methods, or -1.
static int
s_method_row (const char *method)
{
    for (size_t i = 0; i < sizeof s_methods / sizeof s_methods [0]; i++)
        if (strcmp (method, s_methods [i].name) == 0)
            return (int) i;
    return -1;
}

//  A method civetweb refused, if that is what the request line holds: a
//  token (RFC 9110) of 1 to 32 characters, so it can be named back.
static bool
s_method_token (const char *method)
{
    size_t len = method ? strlen (method) : 0;
    return len > 0 && len <= 32
        && strspn (method, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                           "!#$%&'*+-.^_`|~") == len;
}

static void
s_refusal (struct mg_connection *conn, int status, const char *message, s_refusal_t *out)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    const char *method = info ? info->request_method : NULL;
    int row = method ? s_method_row (method) : -1;
    const char *version = info ? info->http_version : NULL;
    bool line_parsed = version && (strcmp (version, "1.0") == 0 || strcmp (version, "1.1") == 0);
    out->status = status;
    out->code = status >= 500 ? "internal" : "bad_request";
    snprintf (out->message, sizeof out->message, "the request could not be handled (HTTP %d)",
              status);
    if (status == 411) {
        //  Content-Length not a number, or negative: a framing error, as
        //  bm_http_framing_error answers the other ill-formed lengths.
        out->status = 400;
        out->code = "bad_framing";
        snprintf (out->message, sizeof out->message, "Content-Length must be one decimal number");
    }
    else
    if (status == 400 && message && strcmp (message, "Malformed message") == 0) {
        const char *limit = mg_get_option (mg_get_context (conn), "max_request_size");
        out->status = 431;
        out->code = "headers_too_large";
        snprintf (out->message, sizeof out->message,
                  "the request line and headers are larger than %s bytes, or hold a control "
                  "character", limit && *limit ? limit : "max_request_size");
    }
    else
    if (status == 400 && message && strcmp (message, "Invalid URI") == 0) {
        out->code = "bad_path";
        snprintf (out->message, sizeof out->message, "the path must begin with /");
    }
    else
    if (status == 400 && method && (row < 0 || !s_methods [row].taken)) {
        if (s_method_token (method)) {
            //  405 for a method of HTTP's that no route here takes,
            //  501 for one HTTP does not define.
            out->status = row >= 0 && s_methods [row].http ? 405 : 501;
            out->code = "method_not_allowed";
            snprintf (out->message, sizeof out->message,
                      "the method %s is not allowed: use GET, HEAD, POST, DELETE or OPTIONS",
                      method);
        }
        else
            snprintf (out->message, sizeof out->message,
                      "the request line must be METHOD /path HTTP/1.1");
    }
    else
    if (status == 400 && method && !line_parsed) {
        out->code = "bad_path";
        snprintf (out->message, sizeof out->message,
                  "the path holds a space or a byte outside printable ASCII (percent-encode it)");
    }
    else
    if (status == 400 && method && info->num_headers < 0) {
        out->code = "bad_header";
        snprintf (out->message, sizeof out->message, "a header line is not Name: value");
    }
    else
    if (status == 505) {
        out->code = "http_version_not_supported";
        snprintf (out->message, sizeof out->message, "the HTTP version must be 1.0 or 1.1");
    }
    else
    if (status == 408)
        out->code = "request_timeout";
    else
    if (status == 413)
        out->code = "request_too_large";
}

//  At most S_REFUSED_LOG_RATE lines a second for requests civetweb
//  refused: a client sending junk in a loop cannot make the log the
//  bottleneck.  The lines past it are counted into the next one logged.
#define S_REFUSED_LOG_RATE  10

static atomic_llong s_refused_second;
static atomic_int s_refused_lines;
static atomic_int s_refused_dropped;

static bool
s_refused_log_allowed (void)
{
    long long second = (long long) time (NULL);
    long long logged = atomic_load (&s_refused_second);
    if (logged != second && atomic_compare_exchange_strong (&s_refused_second, &logged, second))
        atomic_store (&s_refused_lines, 0);
    if (atomic_fetch_add (&s_refused_lines, 1) < S_REFUSED_LOG_RATE)
        return true;
    atomic_fetch_add (&s_refused_dropped, 1);
    return false;
}

//  The INFO line of a request refused before any handler.
static void
s_log_refused (const struct mg_request_info *info, int status, const char *code,
               const char *message)
{
    if (!s_refused_log_allowed ())
        return;
    char dropped [64] = "";
    int count = atomic_exchange (&s_refused_dropped, 0);
    if (count)
        snprintf (dropped, sizeof dropped, " (and %d more not logged)", count);
    bm_info (NULL, "http: refused %d %s from %s: %s%s", status, code,
             info && info->remote_addr [0] ? info->remote_addr : "?", message, dropped);
}

//  Errors civetweb answers itself (a request it cannot parse, a head too
//  large, an unknown HTTP version...): JSON like ours, with the common
//  headers, a code and message naming the problem as far as civetweb
//  tells it (s_refusal), and the connection closes, since what follows
//  on it cannot be trusted.  Written into one buffer: no allocation on
//  this path.
static int
s_http_error (struct mg_connection *conn, int status, const char *message)
{
    s_refusal_t refusal;
    s_refusal (conn, status, message, &refusal);
    const struct mg_request_info *info = mg_get_request_info (conn);
    s_log_refused (info, refusal.status, refusal.code, refusal.message);
    char body [256];
    int len = snprintf (body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                        refusal.code, refusal.message);
    if (len < 0 || (size_t) len >= sizeof body)
        return 0;
    char buf [BM_HTTP_HEAD_MAX + 256];
    int n = bm_http_head (conn, refusal.status, "application/json", (size_t) len, "close", NULL,
                          buf, sizeof buf);
    if (n < 0)
        return 0;
    memcpy (buf + n, body, (size_t) len);
    n += len;
    mg_disable_connection_keep_alive (conn);
    mg_write (conn, buf, (size_t) n);
    return 0;
}

//  civetweb's messages while bm_http_start runs mg_start, on this thread:
//  kept, so that a port that cannot be bound makes one ERROR line of the
//  caller's (its WARN lines would come first and say less), and logged as
//  warnings when the server started after all.
static __thread char *tl_start_log;
#define BM_HTTP_START_LOG_MAX   512

static int
s_log_message (const struct mg_connection *conn, const char *message)
{
    (void) conn;
    if (tl_start_log) {
        size_t used = strlen (tl_start_log);
        snprintf (tl_start_log + used, BM_HTTP_START_LOG_MAX - used, "%s%s", used ? "; " : "",
                  message);
    }
    else
        bm_warn (NULL, "civetweb: %s", message);
    return 1;
}

//  Why civetweb could not start, from its first message: the text of the
//  last parentheses ("cannot bind to 0.0.0.0:3000: 98 (Address already in
//  use)" gives "Address already in use"), else the whole message.
static void
s_start_reason (const char *log, char *reason, size_t size)
{
    size_t first = strcspn (log, ";");
    const char *open = NULL;
    for (const char *p = log; p < log + first; p++)
        if (*p == '(')
            open = p;
    const char *close = open ? memchr (open, ')', (size_t) (log + first - open)) : NULL;
    if (open && close)
        snprintf (reason, size, "%.*s", (int) (close - open - 1), open + 1);
    else
        snprintf (reason, size, "%.*s", (int) first, log);
}

struct mg_context *
bm_http_start (const char *listen_addr, int port, const char *const *options,
               const struct mg_callbacks *callbacks, void *user_data,
               int *bound, char *error, size_t error_size)
{
    char ports [80];
    snprintf (ports, sizeof ports, "%s:%d", listen_addr && *listen_addr ? listen_addr : "0.0.0.0",
              port);
    const char *all [2 * BM_HTTP_MAX_OPTIONS + 3];
    size_t count = 0;
    all [count++] = "listening_ports";
    all [count++] = ports;
    for (size_t i = 0; options && options [i] && options [i + 1]
                       && count + 2 < sizeof all / sizeof all [0]; i += 2) {
        all [count++] = options [i];
        all [count++] = options [i + 1];
    }
    all [count] = NULL;
    struct mg_callbacks cb;
    memset (&cb, 0, sizeof cb);
    if (callbacks)
        cb = *callbacks;
    if (!cb.log_message)
        cb.log_message = s_log_message;
    if (!cb.begin_request)
        cb.begin_request = bm_http_begin_request;
    if (!cb.http_error)
        cb.http_error = s_http_error;
    char start_log [BM_HTTP_START_LOG_MAX] = "";
    if (cb.log_message == s_log_message)
        tl_start_log = start_log;
    struct mg_context *ctx = mg_start (&cb, user_data, all);
    tl_start_log = NULL;
    if (!ctx) {
        char reason [200] = "port in use?";
        if (*start_log)
            s_start_reason (start_log, reason, sizeof reason);
        snprintf (error, error_size, "cannot listen on %s (%s)", ports, reason);
        return NULL;
    }
    if (*start_log)
        bm_warn (NULL, "civetweb: %s", start_log);
    struct mg_server_port bound_ports [4];
    int found = mg_get_server_ports (ctx, 4, bound_ports);
    if (found < 1) {
        mg_stop (ctx);
        snprintf (error, error_size, "cannot listen on %s (no port bound)", ports);
        return NULL;
    }
    *bound = bound_ports [0].port;
    return ctx;
}

int
bm_http_listen_check (const char *var, const char *addr)
{
    struct in_addr parsed;
    if (!addr || !*addr || inet_pton (AF_INET, addr, &parsed) == 1)
        return 0;
    bm_error (NULL, "configuration: %s must be an IPv4 address such as 0.0.0.0 (every "
              "interface) or 127.0.0.1 (got '%s')", var, addr);
    return -1;
}

bool
bm_http_listen_open (const char *addr)
{
    struct in_addr parsed;
    if (!addr || !*addr || inet_pton (AF_INET, addr, &parsed) != 1)
        return true;
    return (ntohl (parsed.s_addr) >> 24) != 127;
}

bool
bm_http_warn_open (const char *addr, int port, const char *keys, const char *listen_var,
                   const char *exposed)
{
    if ((keys && *keys) || !bm_http_listen_open (addr))
        return false;
    bm_warn (NULL, "http %s:%d is open to the network without API_KEYS: anyone who reaches this "
             "port can %s. Close it: set API_KEYS (README, Security), or %s=127.0.0.1 when only "
             "this host calls it", addr && *addr ? addr : "0.0.0.0", port, exposed, listen_var);
    return true;
}

void
bm_http_start_failed (const char *error, const char *port_var)
{
    if (strncmp (error, "cannot listen", 13) == 0)
        bm_error (NULL, "%s: set %s (or --port) to a free port, or 0 for any", error, port_var);
    else
        bm_error (NULL, "cannot start the HTTP server: %s", error);
}

//  Most listening ports of one server whose connections bm_http_stop
//  shuts (civetweb takes a list; botmesh's servers use one each).
#define BM_HTTP_MAX_PORTS       16

//  The helper of bm_http_stop: connects to the server until told to end.
typedef struct {
    struct sockaddr_in addr;
    atomic_bool done;
    int idle_ports [BM_HTTP_MAX_PORTS];     //  Shut the connections accepted on these
    int idle_count;                         //  How many; 0 none
} s_waker_t;

//  A socket address's port, or -1 when it is no IPv4 or IPv6 address.
static int
s_port_of (const struct sockaddr_storage *addr)
{
    return addr->ss_family == AF_INET ? ntohs (((const struct sockaddr_in *) addr)->sin_port)
         : addr->ss_family == AF_INET6 ? ntohs (((const struct sockaddr_in6 *) addr)->sin6_port)
         : -1;
}

//  Calls fn (fd, local, peer, arg) for each connected socket of this
//  process (one with a peer: no listening socket), until fn returns true.
typedef bool (s_socket_fn) (int fd, const struct sockaddr_storage *local,
                            const struct sockaddr_storage *peer, void *arg);
static void
s_each_connected (s_socket_fn *fn, void *arg)
{
    DIR *dir = opendir ("/proc/self/fd");
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir (dir)) != NULL) {
        char *end;
        long fd = strtol (entry->d_name, &end, 10);
        if (*end || end == entry->d_name || fd <= 2 || fd == dirfd (dir))
            continue;
        struct sockaddr_storage local, peer;
        socklen_t size = sizeof local;
        if (getsockname ((int) fd, (struct sockaddr *) &local, &size) != 0)
            continue;                   //  Not a socket
        size = sizeof peer;
        if (getpeername ((int) fd, (struct sockaddr *) &peer, &size) == 0
        &&  fn ((int) fd, &local, &peer, arg))
            break;
    }
    closedir (dir);
}

//  s_shut_accepted's test: a connection accepted on one of the waker's
//  ports gets its reading side shut.
static bool
s_shut_if_accepted (int fd, const struct sockaddr_storage *local,
                    const struct sockaddr_storage *peer, void *arg)
{
    (void) peer;
    const s_waker_t *waker = (const s_waker_t *) arg;
    int port = s_port_of (local);
    for (int i = 0; i < waker->idle_count; i++)
        if (port == waker->idle_ports [i]) {
            shutdown (fd, SHUT_RD);
            break;
        }
    return false;
}

//  The connections accepted on the waker's ports (of every listening
//  port, a peer: not a listening socket) get their reading side shut: a
//  civetweb thread waiting for a keep-alive connection's next request
//  reads its end at once, where it would see mg_stop's flag only after its
//  poll quantum (up to 2 s).  Answers are still written.
static void
s_shut_accepted (const s_waker_t *waker)
{
    s_each_connected (s_shut_if_accepted, (void *) waker);
}

//  What bm_http_conn_socket looks for, and what it found.
typedef struct {
    int server_port, remote_port;
    const char *remote_addr;
    int fd;                             //  The last socket that matched
    int matches;                        //  How many did
} s_conn_match_t;

static bool
s_conn_matches (int fd, const struct sockaddr_storage *local,
                const struct sockaddr_storage *peer, void *arg)
{
    s_conn_match_t *match = (s_conn_match_t *) arg;
    if (s_port_of (local) != match->server_port || s_port_of (peer) != match->remote_port)
        return false;
    char addr [INET6_ADDRSTRLEN] = "";
    const void *raw = peer->ss_family == AF_INET
                    ? (const void *) &((const struct sockaddr_in *) peer)->sin_addr
                    : (const void *) &((const struct sockaddr_in6 *) peer)->sin6_addr;
    if (!inet_ntop (peer->ss_family, raw, addr, sizeof addr) || strcmp (addr, match->remote_addr))
        return false;
    int type = 0;
    socklen_t size = sizeof type;
    if (getsockopt (fd, SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_STREAM)
        return false;
    match->fd = fd;
    match->matches++;
    return false;                       //  Look on: a second match makes it ambiguous
}

int
bm_http_conn_socket (const struct mg_connection *conn)
{
    const struct mg_request_info *ri = conn ? mg_get_request_info (conn) : NULL;
    if (!ri || ri->is_ssl)
        return -1;
    s_conn_match_t match = { .server_port = ri->server_port, .remote_port = ri->remote_port,
                             .remote_addr = ri->remote_addr, .fd = -1 };
    s_each_connected (s_conn_matches, &match);
    //  The connection's own socket always matches; another one can too
    //  (the same peer address and port reaching us on two of our
    //  addresses, which the request does not tell apart): then none, as
    //  taking the wrong one would shut another connection's socket.
    return match.matches == 1 ? match.fd : -1;
}

static void *
s_waker_run (void *arg)
{
    s_waker_t *waker = (s_waker_t *) arg;
    while (!atomic_load (&waker->done)) {
        int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0) {
            //  Refused once the listening socket is closed: nothing to do.
            connect (fd, (struct sockaddr *) &waker->addr, sizeof waker->addr);
            close (fd);
        }
        if (waker->idle_count)
            s_shut_accepted (waker);
        struct timespec pause = { 0, 10 * 1000 * 1000 };
        nanosleep (&pause, NULL);
    }
    return NULL;
}

static void
s_stop (struct mg_context *ctx, const char *listen_addr, bool drained)
{
    if (!ctx)
        return;
    s_waker_t waker = { .addr = { .sin_family = AF_INET } };
    atomic_init (&waker.done, false);
    struct mg_server_port ports [BM_HTTP_MAX_PORTS];
    int count = mg_get_server_ports (ctx, BM_HTTP_MAX_PORTS, ports);
    bool dial = count >= 1 && ports [0].port > 0;
    //  Every listening port's connections, not only the one dialled
    for (int i = 0; drained && i < count; i++)
        if (ports [i].port > 0)
            waker.idle_ports [waker.idle_count++] = ports [i].port;
    if (dial) {
        waker.addr.sin_port = htons ((uint16_t) ports [0].port);
        const char *host = listen_addr && *listen_addr && strcmp (listen_addr, "0.0.0.0") != 0
                         ? listen_addr : "127.0.0.1";
        dial = inet_pton (AF_INET, host, &waker.addr.sin_addr) == 1;
    }
    pthread_t thread;
    bool started = dial && pthread_create (&thread, NULL, s_waker_run, &waker) == 0;
    mg_stop (ctx);
    if (started) {
        atomic_store (&waker.done, true);
        pthread_join (thread, NULL);
    }
}

void
bm_http_stop (struct mg_context *ctx, const char *listen_addr)
{
    s_stop (ctx, listen_addr, false);
}

void
bm_http_stop_drained (struct mg_context *ctx, const char *listen_addr)
{
    s_stop (ctx, listen_addr, true);
}

int
bm_http_args (int argc, char *argv [], const char *component, void (*usage) (FILE *out),
              const char **port_flag)
{
    *port_flag = NULL;
    if (bm_log_init (component))
        return BM_EXIT_CONFIG;
    bm_settings_warn_foreign ();
    bm_env_check_warn (component, environ);
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--help") == 0 || strcmp (argv [i], "-h") == 0) {
            usage (stdout);
            return 0;
        }
        else
        if (strcmp (argv [i], "--port") == 0 && i + 1 < argc)
            *port_flag = argv [++i];
        else {
            fprintf (stderr, "botmesh-%s: unknown argument '%s'\n\n", component, argv [i]);
            usage (stderr);
            return BM_EXIT_CONFIG;
        }
    }
    if (bm_http_cors_from_env ())
        return BM_EXIT_CONFIG;
    return -1;
}

int
bm_http_port_flag (const char *port_flag, int64_t *port)
{
    if (port_flag && bm_parse_int (port_flag, 0, 65535, port)) {
        bm_error (NULL, "configuration: --port must be an integer from 0 to 65535 (got '%s')",
                  port_flag);
        return -1;
    }
    return 0;
}

//  A Content-Length value as RFC 9112 has it: digits, nothing else (spaces
//  around them aside).  Returns true and the text of the digits.
static bool
s_content_length_value (const char *value, const char **digits, size_t *len)
{
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strspn (value, "0123456789");
    const char *rest = value + n;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    *digits = value;
    *len = n;
    return n > 0 && *rest == 0;
}

const char *
bm_http_framing_error (const struct mg_request_info *info)
{
    if (!info)
        return NULL;
    const char *first = NULL;
    size_t first_len = 0;
    bool chunked = false;
    for (int i = 0; i < info->num_headers && i < (int) (sizeof info->http_headers
                                                      / sizeof info->http_headers [0]); i++) {
        const char *name = info->http_headers [i].name;
        const char *value = info->http_headers [i].value;
        if (!name || !value)
            continue;
        if (strcasecmp (name, "Transfer-Encoding") == 0) {
            chunked = true;
            continue;
        }
        if (strcasecmp (name, "Content-Length") != 0)
            continue;
        const char *digits;
        size_t len;
        if (!s_content_length_value (value, &digits, &len))
            return "Content-Length must be one decimal number";
        //  Leading zeros aside, the same number is the same length.
        while (len > 1 && *digits == '0') {
            digits++;
            len--;
        }
        if (!first) {
            first = digits;
            first_len = len;
        }
        else
        if (len != first_len || memcmp (digits, first, len) != 0)
            return "conflicting Content-Length headers (a request has one length)";
    }
    if (first && chunked)
        return "Content-Length and Transfer-Encoding together (a request has one framing)";
    return NULL;
}

int
bm_http_begin_request (struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    //  A request whose length two readers may read differently (civetweb
    //  takes the first Content-Length, a proxy in front may take another):
    //  refused, and the connection closed, before any handler sees it.
    const char *framing = bm_http_framing_error (info);
    if (framing) {
        if (s_refused_log_allowed ())
            bm_warn (NULL, "http: refused %s %s from %s: %s",
                     info->request_method ? info->request_method : "?",
                     info->local_uri ? info->local_uri : "?", info->remote_addr, framing);
        char body [256];
        int len = snprintf (body, sizeof body,
                            "{\"error\":{\"code\":\"bad_framing\",\"message\":\"%s\"}}",
                            framing);
        char buf [BM_HTTP_HEAD_MAX + 256];
        int n = bm_http_head (conn, 400, "application/json", (size_t) len, "close", NULL,
                              buf, sizeof buf);
        mg_disable_connection_keep_alive (conn);
        if (n >= 0) {
            memcpy (buf + n, body, (size_t) len);
            mg_write (conn, buf, (size_t) (n + len));
        }
        return 400;
    }
    if (!info || !info->request_method || strcmp (info->request_method, "OPTIONS") != 0)
        return 0;
    //  Allow what the browser asks for: the methods every route may use,
    //  and the headers it names (the API key, Content-Type...).
    const char *asked = mg_get_header (conn, "Access-Control-Request-Headers");
    char extra [1024];
    int len = snprintf (extra, sizeof extra,
                        "Access-Control-Allow-Methods: GET,HEAD,PUT,PATCH,POST,DELETE\r\n"
                        "Access-Control-Allow-Headers: %s\r\n"
                        "Access-Control-Max-Age: 86400\r\n"
                        "Vary: Access-Control-Request-Headers\r\n"
                        "Allow: GET, HEAD, POST, DELETE, OPTIONS\r\n",
                        asked && strlen (asked) < 512 && !strpbrk (asked, "\r\n")
                        ? asked : "Content-Type, Authorization, X-API-Key, Idempotency-Key");
    if (len < 0 || (size_t) len >= sizeof extra)
        return 0;
    //  The request may carry a body nobody reads: do not reuse the connection.
    if (info->content_length > 0 || mg_get_header (conn, "Transfer-Encoding"))
        mg_disable_connection_keep_alive (conn);
    bm_http_reply (conn, 204, "text/plain", extra, "", 0);
    return 204;
}

//  --------------------------------------------------------------------------
//  Writing responses

const char *
bm_http_reason (int status)
{
    switch (status) {
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 207: return "Multi-Status";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 411: return "Length Required";
        case 413: return "Payload Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Entity";
        case 425: return "Too Early";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default:  return "Unknown";
    }
}

int
bm_http_head (struct mg_connection *conn, int status, const char *content_type,
              size_t body_len, const char *connection, const char *extra,
              char *buf, size_t size)
{
    char cors [BM_HTTP_ORIGIN_MAX_LEN + 64];
    const char *cors_lines = s_cors_lines (mg_get_header (conn, "Origin"), cors, sizeof cors);
    char length [48] = "";
    if (body_len != BM_HTTP_NO_LENGTH)
        snprintf (length, sizeof length, "Content-Length: %zu\r\n", body_len);
    int len = snprintf (buf, size,
                        "HTTP/1.1 %d %s\r\n"
                        "Content-Type: %s\r\n"
                        "%s"
                        S_SECURITY_HEADERS
                        "%s%s%s%s%s\r\n",
                        status, bm_http_reason (status), content_type, length, cors_lines,
                        connection ? "Connection: " : "", connection ? connection : "",
                        connection ? "\r\n" : "", extra ? extra : "");
    if (len < 0 || (size_t) len >= size)
        return -1;
    return len;
}

void
bm_http_reply (struct mg_connection *conn, int status, const char *content_type,
               const char *extra, const char *body, size_t body_len)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    bool head = info && info->request_method && strcmp (info->request_method, "HEAD") == 0;
    char header [BM_HTTP_HEAD_MAX + 1024];
    int header_len = bm_http_head (conn, status, content_type, body_len, NULL, extra,
                                   header, sizeof header);
    if (header_len < 0)         //  extra too long: our own bug; answer without it
        header_len = bm_http_head (conn, status, content_type, body_len, NULL, NULL,
                                   header, sizeof header);
    if (header_len < 0)
        return;
    size_t total = (size_t) header_len + (head ? 0 : body_len);
    char stack [8192];
    char *buffer = total <= sizeof stack ? stack : (char *) malloc (total);
    if (!buffer) {
        mg_write (conn, header, (size_t) header_len);
        if (!head && body_len)
            mg_write (conn, body, body_len);
        return;
    }
    memcpy (buffer, header, (size_t) header_len);
    if (!head && body_len)
        memcpy (buffer + header_len, body, body_len);
    mg_write (conn, buffer, total);
    if (buffer != stack)
        free (buffer);
}

char *
bm_http_json_text (const json_t *json)
{
    return bm_json_dumps (json, JSON_COMPACT);
}

void
bm_http_reply_json (struct mg_connection *conn, int status, json_t *json, const char *extra)
{
    char *text = bm_http_json_text (json);
    json_decref (json);
    if (!text) {
        const char *fallback = "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        bm_http_reply (conn, 500, "application/json", NULL, fallback, strlen (fallback));
        return;
    }
    bm_http_reply (conn, status, "application/json", extra, text, strlen (text));
    free (text);
}

static void
s_reply_error (struct mg_connection *conn, int status, const char *code, const char *message)
{
    //  A message quoting the client's text (a key, a path cut at a byte
    //  count) may not be UTF-8: JSON cannot hold it as it is.
    char *text = bm_utf8_sanitised (message, strlen (message), strlen (message));
    bm_http_reply_json (conn, status,
                        json_pack ("{s:{s:s, s:s}}", "error", "code", code,
                                   "message", text ? text : "(no memory)"),
                        NULL);
    free (text);
}

void
bm_http_reply_error (struct mg_connection *conn, int status, const char *code, const char *fmt, ...)
{
    char message [512];
    va_list args;
    va_start (args, fmt);
    vsnprintf (message, sizeof message, fmt, args);
    va_end (args);
    s_reply_error (conn, status, code, message);
}

void
bm_http_refuse (struct mg_connection *conn, int status, const char *code, const char *message)
{
    s_log_refused (mg_get_request_info (conn), status, code, message);
    mg_disable_connection_keep_alive (conn);
    s_reply_error (conn, status, code, message);
}

void
bm_http_reply_metrics (struct mg_connection *conn, char *text)
{
    if (text) {
        bm_http_reply (conn, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
                       text, strlen (text));
        free (text);
    }
    else
        bm_http_reply_error (conn, 500, "internal", "out of memory");
}

int
bm_http_iso_time (int64_t ms, char *buf, size_t size)
{
    //  Years 0..9999 only: beyond that ISO-8601 needs a sign and more digits.
    if (ms < -62167219200000LL || ms > 253402300799999LL)
        return -1;
    int64_t secs = ms / 1000;
    int64_t frac = ms % 1000;
    if (frac < 0) {             //  Floor division for times before 1970
        frac += 1000;
        secs -= 1;
    }
    time_t t = (time_t) secs;
    struct tm tm;
    if (!gmtime_r (&t, &tm))
        return -1;
    int n = snprintf (buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, (int) frac);
    return (n > 0 && (size_t) n < size) ? 0 : -1;
}

//  Replace the integer member key of object, or every integer member whose
//  key ends in "At" when key is NULL, by its ISO 8601 form.
static void
s_iso_members (json_t *object, const char *key_wanted)
{
    if (!json_is_object (object))
        return;
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe (object, tmp, key, value) {
        size_t len = strlen (key);
        bool wanted = key_wanted? strcmp (key, key_wanted) == 0
                                : len > 2 && strcmp (key + len - 2, "At") == 0;
        char iso [40];
        if (wanted && json_is_integer (value)
        &&  bm_http_iso_time (json_integer_value (value), iso, sizeof iso) == 0)
            json_object_set_new (object, key, json_string (iso));
    }
}

void
bm_http_record_times (json_t *record)
{
    s_iso_members (record, NULL);
    s_iso_members (json_object_get (record, "webhook"), NULL);
    size_t index;
    json_t *entry;
    json_array_foreach (json_object_get (record, "attemptErrors"), index, entry)
        s_iso_members (entry, "at");
}

json_t *
bm_http_health (void)
{
    char now [40];
    bm_http_iso_time (bm_now_ms (), now, sizeof now);
    return json_pack ("{s:s, s:s}", "status", "healthy", "timestamp", now);
}

//  --------------------------------------------------------------------------
//  Reading requests

int
bm_http_read_body (struct mg_connection *conn, size_t max, char **data, size_t *len)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    *data = NULL;
    *len = 0;
    if (info->content_length > 0 && (size_t) info->content_length > max)
        return -1;
    size_t capacity = info->content_length > 0 ? (size_t) info->content_length + 1 : 4096;
    char *buffer = (char *) malloc (capacity);
    if (!buffer)
        return -2;
    size_t used = 0;
    while (true) {
        if (used + 1 >= capacity) {
            if (capacity > max + 1) {
                free (buffer);
                return -1;
            }
            capacity *= 2;
            char *bigger = (char *) realloc (buffer, capacity);
            if (!bigger) {
                free (buffer);
                return -2;
            }
            buffer = bigger;
        }
        int got = mg_read (conn, buffer + used, capacity - used - 1);
        if (got < 0) {
            free (buffer);
            return -2;
        }
        if (got == 0)
            break;
        used += (size_t) got;
        if (used > max) {
            free (buffer);
            return -1;
        }
    }
    buffer [used] = 0;
    *data = buffer;
    *len = used;
    return 0;
}
