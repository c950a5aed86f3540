/*  bm_ssrf.c - which network addresses a webhook may be delivered to.  */
#include "bm_ssrf.h"
#include "bm_selftest.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>

//  True if addr is inside prefix/bits (IPv4, host order).
static bool
s_in4 (uint32_t addr, uint32_t prefix, int bits)
{
    uint32_t mask = bits == 0? 0: 0xFFFFFFFFu << (32 - bits);
    return (addr & mask) == (prefix & mask);
}

#define V4(a, b, c, d) (((uint32_t) (a) << 24) | ((uint32_t) (b) << 16) | ((uint32_t) (c) << 8) | (uint32_t) (d))

bm_addr_class_t
bm_ssrf_classify_ipv4 (uint32_t addr)
{
    if (s_in4 (addr, V4 (0, 0, 0, 0), 8))       return BM_ADDR_UNSPECIFIED;    //  "this network"
    if (s_in4 (addr, V4 (127, 0, 0, 0), 8))     return BM_ADDR_LOOPBACK;
    if (s_in4 (addr, V4 (10, 0, 0, 0), 8))      return BM_ADDR_PRIVATE;
    if (s_in4 (addr, V4 (172, 16, 0, 0), 12))   return BM_ADDR_PRIVATE;
    if (s_in4 (addr, V4 (192, 168, 0, 0), 16))  return BM_ADDR_PRIVATE;
    if (s_in4 (addr, V4 (169, 254, 0, 0), 16))  return BM_ADDR_LINK_LOCAL;
    if (s_in4 (addr, V4 (100, 64, 0, 0), 10))   return BM_ADDR_SHARED;
    if (s_in4 (addr, V4 (224, 0, 0, 0), 4))     return BM_ADDR_MULTICAST;
    if (addr == 0xFFFFFFFFu)                    return BM_ADDR_MULTICAST;      //  Broadcast
    if (s_in4 (addr, V4 (240, 0, 0, 0), 4))     return BM_ADDR_RESERVED;
    if (s_in4 (addr, V4 (192, 0, 0, 0), 24))    return BM_ADDR_RESERVED;       //  IETF protocol assignments
    if (s_in4 (addr, V4 (192, 0, 2, 0), 24))    return BM_ADDR_RESERVED;       //  TEST-NET-1
    if (s_in4 (addr, V4 (198, 51, 100, 0), 24)) return BM_ADDR_RESERVED;       //  TEST-NET-2
    if (s_in4 (addr, V4 (203, 0, 113, 0), 24))  return BM_ADDR_RESERVED;       //  TEST-NET-3
    if (s_in4 (addr, V4 (198, 18, 0, 0), 15))   return BM_ADDR_RESERVED;       //  Benchmarking
    if (s_in4 (addr, V4 (192, 88, 99, 0), 24))  return BM_ADDR_RESERVED;       //  6to4 relay anycast
    return BM_ADDR_PUBLIC;
}

bm_addr_class_t
bm_ssrf_classify_ipv6 (const uint8_t *a)
{
    static const uint8_t zero [16] = { 0 };
    //  ::/128 and ::1/128
    if (memcmp (a, zero, 15) == 0)
        return a [15] == 0? BM_ADDR_UNSPECIFIED: a [15] == 1? BM_ADDR_LOOPBACK: BM_ADDR_RESERVED;
    //  ::ffff:0:0/96, IPv4-mapped: what the kernel connects to is the IPv4 address
    if (memcmp (a, zero, 10) == 0 && a [10] == 0xFF && a [11] == 0xFF)
        return bm_ssrf_classify_ipv4 (V4 (a [12], a [13], a [14], a [15]));
    //  ::/96 IPv4-compatible (deprecated) and ::ffff:0:0:0/96 (SIIT)
    if (memcmp (a, zero, 12) == 0
    || (memcmp (a, zero, 8) == 0 && a [8] == 0xFF && a [9] == 0xFF && a [10] == 0 && a [11] == 0))
        return BM_ADDR_RESERVED;
    //  64:ff9b::/96 NAT64 and 64:ff9b:1::/48 local-use NAT64
    if (a [0] == 0x00 && a [1] == 0x64 && a [2] == 0xFF && a [3] == 0x9B) {
        static const uint8_t nat64_rest [8] = { 0 };
        if (memcmp (a + 4, nat64_rest, 8) == 0)
            return bm_ssrf_classify_ipv4 (V4 (a [12], a [13], a [14], a [15]));
        if (a [4] == 0 && a [5] == 1)
            return BM_ADDR_PRIVATE;
    }
    //  2002::/16, 6to4: the IPv4 address is in bytes 2..5
    if (a [0] == 0x20 && a [1] == 0x02)
        return bm_ssrf_classify_ipv4 (V4 (a [2], a [3], a [4], a [5]));
    if (a [0] == 0xFF)                              return BM_ADDR_MULTICAST;      //  ff00::/8
    if (a [0] == 0xFE && (a [1] & 0xC0) == 0x80)    return BM_ADDR_LINK_LOCAL;     //  fe80::/10
    if (a [0] == 0xFE && (a [1] & 0xC0) == 0xC0)    return BM_ADDR_PRIVATE;        //  fec0::/10 site-local
    if ((a [0] & 0xFE) == 0xFC)                     return BM_ADDR_UNIQUE_LOCAL;   //  fc00::/7
    //  100::/64 discard-only
    if (a [0] == 0x01 && a [1] == 0x00 && memcmp (a + 2, zero, 6) == 0)
        return BM_ADDR_RESERVED;
    if (a [0] == 0x20 && a [1] == 0x01) {
        //  2001:db8::/32 documentation; 2001::/31: Teredo (a tunnel
        //  to anywhere) and 2001:1::/32 (IETF protocol assignments)
        if (a [2] == 0x0D && a [3] == 0xB8)
            return BM_ADDR_RESERVED;
        if (a [2] == 0x00 && (a [3] & 0xFE) == 0x00)
            return BM_ADDR_RESERVED;
    }
    //  3fff::/20 documentation (RFC 9637)
    if (a [0] == 0x3F && a [1] == 0xFF && (a [2] & 0xF0) == 0x00)
        return BM_ADDR_RESERVED;
    return BM_ADDR_PUBLIC;
}

bm_addr_class_t
bm_ssrf_classify (const struct sockaddr *addr, size_t addr_len)
{
    //  Copy bytes out rather than read through casts: the caller's storage
    //  may be any sockaddr type, and the compiler's aliasing rules would
    //  let it reorder reads through the wrong one (seen at -O2).
    sa_family_t family;
    if (!addr || addr_len < sizeof family)
        return BM_ADDR_UNKNOWN;
    memcpy (&family, (const char *) addr + offsetof (struct sockaddr, sa_family), sizeof family);
    if (family == AF_INET && addr_len >= sizeof (struct sockaddr_in)) {
        struct sockaddr_in in;
        memcpy (&in, addr, sizeof in);
        return bm_ssrf_classify_ipv4 (ntohl (in.sin_addr.s_addr));
    }
    if (family == AF_INET6 && addr_len >= sizeof (struct sockaddr_in6)) {
        struct sockaddr_in6 in6;
        memcpy (&in6, addr, sizeof in6);
        return bm_ssrf_classify_ipv6 (in6.sin6_addr.s6_addr);
    }
    return BM_ADDR_UNKNOWN;
}

const char *
bm_addr_class_name (bm_addr_class_t cls)
{
    switch (cls) {
        case BM_ADDR_PUBLIC:        return "public";
        case BM_ADDR_LOOPBACK:      return "loopback";
        case BM_ADDR_PRIVATE:       return "private";
        case BM_ADDR_LINK_LOCAL:    return "link-local";
        case BM_ADDR_UNIQUE_LOCAL:  return "unique-local";
        case BM_ADDR_SHARED:        return "shared (carrier-grade NAT)";
        case BM_ADDR_UNSPECIFIED:   return "unspecified";
        case BM_ADDR_MULTICAST:     return "multicast/broadcast";
        case BM_ADDR_RESERVED:      return "reserved";
        default:                    return "unknown family";
    }
}

//  One entry of an allow-list, s..e (spaces trimmed): its host (brackets
//  removed) and port (0 when it names none).  Returns 0, or -1 when the
//  entry is malformed (an empty host, a port that is not 1-65535).
static int
s_entry (const char *s, const char *e, const char **host, size_t *host_len, int *port)
{
    *port = 0;
    const char *port_text = NULL;
    if (s < e && *s == '[') {
        const char *close = memchr (s, ']', (size_t) (e - s));
        if (!close)
            return -1;
        *host = s + 1;
        *host_len = (size_t) (close - s - 1);
        if (close + 1 < e) {
            if (close [1] != ':')
                return -1;
            port_text = close + 2;
        }
    }
    else {
        const char *colon = memchr (s, ':', (size_t) (e - s));
        //  One colon: host:port; more: an IPv6 address without brackets.
        if (colon && !memchr (colon + 1, ':', (size_t) (e - colon - 1))) {
            *host = s;
            *host_len = (size_t) (colon - s);
            port_text = colon + 1;
        }
        else {
            *host = s;
            *host_len = (size_t) (e - s);
        }
    }
    if (*host_len == 0)
        return -1;
    if (port_text) {
        if (port_text >= e || e - port_text > 5)
            return -1;
        int value = 0;
        for (const char *p = port_text; p < e; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            value = value * 10 + (*p - '0');
        }
        if (value < 1 || value > 65535)
            return -1;
        *port = value;
    }
    return 0;
}

//  Calls fn on each entry of list; stops at the first that returns true.
//  Returns true if one did.  A malformed entry is passed with host NULL.
typedef bool (s_entry_fn) (const char *host, size_t host_len, int port,
                           const char *entry, size_t entry_len, void *arg);

static bool
s_each_entry (const char *list, s_entry_fn *fn, void *arg)
{
    const char *p = list;
    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',')
            p++;
        const char *end = p;
        while (end > start && end [-1] == ' ')
            end--;
        if (end == start)
            continue;
        const char *host;
        size_t host_len;
        int port;
        if (s_entry (start, end, &host, &host_len, &port))
            host = NULL, host_len = 0, port = 0;
        if (fn (host, host_len, port, start, (size_t) (end - start), arg))
            return true;
    }
    return false;
}

typedef struct {
    const char *host;
    size_t host_len;
    int port;
} s_target_t;

static bool
s_matches (const char *host, size_t host_len, int port, const char *entry, size_t entry_len,
           void *arg)
{
    (void) entry;
    (void) entry_len;
    const s_target_t *t = (const s_target_t *) arg;
    return host && host_len == t->host_len && strncasecmp (host, t->host, host_len) == 0
        && (port == 0 || port == t->port);
}

bool
bm_ssrf_target_listed (const char *list, const char *host, int port)
{
    if (!list || !host || !*host)
        return false;
    s_target_t t = { host, strlen (host), port };
    if (host [0] == '[' && t.host_len > 2 && host [t.host_len - 1] == ']') {
        t.host++;
        t.host_len -= 2;
    }
    return s_each_entry (list, s_matches, &t);
}

bool
bm_ssrf_host_listed (const char *list, const char *host)
{
    //  Port 0 matches only entries without a port.
    return bm_ssrf_target_listed (list, host, 0);
}

bm_addr_class_t
bm_ssrf_literal_class (const char *host)
{
    char text [INET6_ADDRSTRLEN + 2];
    size_t len = host ? strlen (host) : 0;
    uint8_t addr [16];
    if (len > 2 && len < sizeof text && host [0] == '[' && host [len - 1] == ']') {
        memcpy (text, host + 1, len - 2);
        text [len - 2] = 0;
        return inet_pton (AF_INET6, text, addr) == 1 ? bm_ssrf_classify_ipv6 (addr) : BM_ADDR_UNKNOWN;
    }
    if (len > 0 && inet_pton (AF_INET, host, addr) == 1)
        return bm_ssrf_classify_ipv4 (((uint32_t) addr [0] << 24) | ((uint32_t) addr [1] << 16)
                                      | ((uint32_t) addr [2] << 8) | addr [3]);
    if (len > 0 && (strcasecmp (host, "localhost") == 0
                ||  (len > 10 && strcasecmp (host + len - 10, ".localhost") == 0)))
        return BM_ADDR_LOOPBACK;
    return BM_ADDR_UNKNOWN;
}

const char *
bm_ssrf_literal_refused (const char *host, int port, bool allow_private, const char *allowed_hosts)
{
    if (allow_private || bm_ssrf_target_listed (allowed_hosts, host, port))
        return NULL;
    bm_addr_class_t cls = bm_ssrf_literal_class (host);
    return cls == BM_ADDR_PUBLIC || cls == BM_ADDR_UNKNOWN ? NULL : bm_addr_class_name (cls);
}

typedef struct {
    char *error;
    size_t size;
} s_check_t;

static bool
s_bad (const char *host, size_t host_len, int port, const char *entry, size_t entry_len, void *arg)
{
    (void) host_len;
    (void) port;
    if (host)
        return false;
    s_check_t *c = (s_check_t *) arg;
    snprintf (c->error, c->size, "'%.*s' is not host, host:port or [IPv6]:port (port 1-65535)",
              (int) (entry_len > 200 ? 200 : entry_len), entry);
    return true;
}

int
bm_ssrf_list_check (const char *list, char *error, size_t error_size)
{
    s_check_t c = { error, error_size };
    return s_each_entry (list, s_bad, &c) ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Self test

static bm_addr_class_t
s_v4 (const char *text)
{
    struct in_addr in;
    BM_CHECK (inet_pton (AF_INET, text, &in) == 1);
    return bm_ssrf_classify_ipv4 (ntohl (in.s_addr));
}

static bm_addr_class_t
s_v6 (const char *text)
{
    struct sockaddr_in6 sa;
    memset (&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    BM_CHECK (inet_pton (AF_INET6, text, &sa.sin6_addr) == 1);
    return bm_ssrf_classify ((struct sockaddr *) &sa, sizeof sa);
}

void
bm_ssrf_test (bool verbose)
{
    printf (" * bm_ssrf: ");
    struct { const char *addr; bm_addr_class_t cls; } cases [] = {
        { "8.8.8.8", BM_ADDR_PUBLIC },
        { "1.1.1.1", BM_ADDR_PUBLIC },
        { "93.184.216.34", BM_ADDR_PUBLIC },
        { "127.0.0.1", BM_ADDR_LOOPBACK },
        { "127.255.255.254", BM_ADDR_LOOPBACK },
        { "10.1.2.3", BM_ADDR_PRIVATE },
        { "172.16.0.1", BM_ADDR_PRIVATE },
        { "172.31.255.255", BM_ADDR_PRIVATE },
        { "172.32.0.1", BM_ADDR_PUBLIC },
        { "172.15.255.255", BM_ADDR_PUBLIC },
        { "192.168.1.1", BM_ADDR_PRIVATE },
        { "169.254.169.254", BM_ADDR_LINK_LOCAL },
        { "100.64.0.1", BM_ADDR_SHARED },
        { "100.128.0.1", BM_ADDR_PUBLIC },
        { "0.0.0.0", BM_ADDR_UNSPECIFIED },
        { "0.1.2.3", BM_ADDR_UNSPECIFIED },
        { "224.0.0.1", BM_ADDR_MULTICAST },
        { "255.255.255.255", BM_ADDR_MULTICAST },
        { "240.0.0.1", BM_ADDR_RESERVED },
        { "192.0.2.1", BM_ADDR_RESERVED },
        { "198.18.0.1", BM_ADDR_RESERVED },
        { "198.20.0.1", BM_ADDR_PUBLIC },
        { "::1", BM_ADDR_LOOPBACK },
        { "::", BM_ADDR_UNSPECIFIED },
        { "::ffff:127.0.0.1", BM_ADDR_LOOPBACK },
        { "::ffff:10.0.0.1", BM_ADDR_PRIVATE },
        { "::ffff:8.8.8.8", BM_ADDR_PUBLIC },
        { "::127.0.0.1", BM_ADDR_RESERVED },
        { "64:ff9b::a9fe:a9fe", BM_ADDR_LINK_LOCAL },     //  NAT64 of 169.254.169.254
        { "64:ff9b::808:808", BM_ADDR_PUBLIC },
        { "2002:7f00:1::", BM_ADDR_LOOPBACK },            //  6to4 of 127.0.0.1
        { "2002:808:808::1", BM_ADDR_PUBLIC },
        { "fe80::1", BM_ADDR_LINK_LOCAL },
        { "febf::1", BM_ADDR_LINK_LOCAL },
        { "fec0::1", BM_ADDR_PRIVATE },
        { "fc00::1", BM_ADDR_UNIQUE_LOCAL },
        { "fd12:3456::1", BM_ADDR_UNIQUE_LOCAL },
        { "ff02::1", BM_ADDR_MULTICAST },
        { "2001:db8::1", BM_ADDR_RESERVED },
        { "2001::1", BM_ADDR_RESERVED },
        { "100::1", BM_ADDR_RESERVED },
        { "2606:4700:4700::1111", BM_ADDR_PUBLIC },
        { "2a00:1450:4001:82a::200e", BM_ADDR_PUBLIC },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        bm_addr_class_t cls = strchr (cases [i].addr, ':')? s_v6 (cases [i].addr): s_v4 (cases [i].addr);
        if (verbose)
            printf ("\n   %-28s %s", cases [i].addr, bm_addr_class_name (cls));
        if (cls != cases [i].cls)
            fprintf (stderr, "\n%s: got %s, want %s\n", cases [i].addr,
                     bm_addr_class_name (cls), bm_addr_class_name (cases [i].cls));
        BM_CHECK (cls == cases [i].cls);
    }
    //  Socket addresses of both families, and others.
    struct sockaddr_in sin;
    memset (&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl (V4 (127, 0, 0, 1));
    BM_CHECK (bm_ssrf_classify ((struct sockaddr *) &sin, sizeof sin) == BM_ADDR_LOOPBACK);
    BM_CHECK (bm_ssrf_classify ((struct sockaddr *) &sin, 4) == BM_ADDR_UNKNOWN);
    sin.sin_family = AF_UNIX;
    BM_CHECK (bm_ssrf_classify ((struct sockaddr *) &sin, sizeof sin) == BM_ADDR_UNKNOWN);
    BM_CHECK (bm_ssrf_classify (NULL, 0) == BM_ADDR_UNKNOWN);

    //  Allowed-host lists.
    BM_CHECK (bm_ssrf_host_listed ("mock-webhook, localhost", "localhost"));
    BM_CHECK (bm_ssrf_host_listed ("mock-webhook,localhost", "MOCK-webhook"));
    BM_CHECK (bm_ssrf_host_listed (" 127.0.0.1 ", "127.0.0.1"));
    BM_CHECK (bm_ssrf_host_listed ("[::1]", "::1"));
    BM_CHECK (bm_ssrf_host_listed ("::1", "[::1]"));
    BM_CHECK (!bm_ssrf_host_listed ("mock-webhook", "mock"));
    BM_CHECK (!bm_ssrf_host_listed ("mock", "mock-webhook"));
    BM_CHECK (!bm_ssrf_host_listed ("", "localhost"));
    BM_CHECK (!bm_ssrf_host_listed (",,", "localhost"));
    BM_CHECK (!bm_ssrf_host_listed (NULL, "localhost"));
    BM_CHECK (!bm_ssrf_host_listed ("a", ""));

    //  Entries with a port match that port only; without, any port.
    BM_CHECK (bm_ssrf_target_listed ("mock-webhook:5000,127.0.0.1:5001", "mock-webhook", 5000));
    BM_CHECK (!bm_ssrf_target_listed ("mock-webhook:5000,127.0.0.1:5001", "mock-webhook", 6379));
    BM_CHECK (bm_ssrf_target_listed ("mock-webhook:5000,127.0.0.1:5001", "127.0.0.1", 5001));
    BM_CHECK (!bm_ssrf_target_listed ("mock-webhook:5000,127.0.0.1:5001", "127.0.0.1", 5000));
    BM_CHECK (bm_ssrf_target_listed ("localhost", "localhost", 6379));
    BM_CHECK (bm_ssrf_target_listed ("[::1]:8080", "[::1]", 8080));
    BM_CHECK (bm_ssrf_target_listed ("[::1]:8080", "::1", 8080));
    BM_CHECK (!bm_ssrf_target_listed ("[::1]:8080", "::1", 80));
    BM_CHECK (bm_ssrf_target_listed ("::1", "::1", 80));
    BM_CHECK (bm_ssrf_target_listed ("[::1]", "[::1]", 443));
    BM_CHECK (!bm_ssrf_host_listed ("localhost:5000", "localhost"));
    char error [300];
    BM_CHECK (bm_ssrf_list_check ("localhost, 127.0.0.1:5000, [::1]:1, ::1, mock-webhook:65535", error,
                                  sizeof error) == 0);
    BM_CHECK (bm_ssrf_list_check ("", error, sizeof error) == 0);
    BM_CHECK (bm_ssrf_list_check ("localhost:0", error, sizeof error) == -1 && strstr (error, "localhost:0"));
    BM_CHECK (bm_ssrf_list_check ("a,localhost:70000", error, sizeof error) == -1);
    BM_CHECK (bm_ssrf_list_check ("localhost:http", error, sizeof error) == -1);
    BM_CHECK (bm_ssrf_list_check (":5000", error, sizeof error) == -1);
    BM_CHECK (bm_ssrf_list_check ("[::1]x", error, sizeof error) == -1);
    BM_CHECK (bm_ssrf_list_check ("[::1", error, sizeof error) == -1);

    //  Hosts that need no lookup, as bm_url_host gives them.
    BM_CHECK (bm_ssrf_literal_class ("127.0.0.1") == BM_ADDR_LOOPBACK);
    BM_CHECK (bm_ssrf_literal_class ("10.1.2.3") == BM_ADDR_PRIVATE);
    BM_CHECK (bm_ssrf_literal_class ("169.254.169.254") == BM_ADDR_LINK_LOCAL);
    BM_CHECK (bm_ssrf_literal_class ("8.8.8.8") == BM_ADDR_PUBLIC);
    BM_CHECK (bm_ssrf_literal_class ("[::1]") == BM_ADDR_LOOPBACK);
    BM_CHECK (bm_ssrf_literal_class ("[::ffff:10.0.0.1]") == BM_ADDR_PRIVATE);
    BM_CHECK (bm_ssrf_literal_class ("[2606:4700::1111]") == BM_ADDR_PUBLIC);
    BM_CHECK (bm_ssrf_literal_class ("LocalHost") == BM_ADDR_LOOPBACK);
    BM_CHECK (bm_ssrf_literal_class ("api.localhost") == BM_ADDR_LOOPBACK);
    BM_CHECK (bm_ssrf_literal_class ("notlocalhost") == BM_ADDR_UNKNOWN);
    BM_CHECK (bm_ssrf_literal_class ("mock-webhook") == BM_ADDR_UNKNOWN);
    BM_CHECK (bm_ssrf_literal_class ("[::1") == BM_ADDR_UNKNOWN);
    BM_CHECK (bm_ssrf_literal_class ("") == BM_ADDR_UNKNOWN);
    const char *why = bm_ssrf_literal_refused ("127.0.0.1", 5000, false, "");
    BM_CHECK (why && !strcmp (why, "loopback"));
    why = bm_ssrf_literal_refused ("[fd00::1]", 80, false, NULL);
    BM_CHECK (why && !strcmp (why, "unique-local"));
    BM_CHECK (!bm_ssrf_literal_refused ("127.0.0.1", 5000, true, ""));
    BM_CHECK (!bm_ssrf_literal_refused ("127.0.0.1", 5000, false, "localhost:5000,127.0.0.1:5000"));
    BM_CHECK (bm_ssrf_literal_refused ("127.0.0.1", 6379, false, "localhost:5000,127.0.0.1:5000"));
    BM_CHECK (!bm_ssrf_literal_refused ("[::1]", 80, false, "::1"));
    BM_CHECK (!bm_ssrf_literal_refused ("internal.example", 80, false, ""));
    BM_CHECK (!bm_ssrf_literal_refused ("1.1.1.1", 80, false, ""));
    printf ("OK\n");
}
