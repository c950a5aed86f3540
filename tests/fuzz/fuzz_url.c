/*  fuzz_url.c - webhook URL checks and the SSRF address classifier
    (common/bm_proto.h bm_valid_url, common/bm_ssrf.h) under libFuzzer.

    The input is used three ways:
    1. As a webhook URL: bm_valid_url (what the gateway and broker accept)
       and libcurl's URL parser (what the webhook manager does with it,
       as wh_engine.c's s_url_host: scheme http(s), a host).  When the host
       is a numeric IPv4 or IPv6 address, bm_ssrf_classify on its sockaddr
       must agree with bm_ssrf_classify_ipv4 / _ipv6, and an IPv4 address
       must get the same class in its IPv6-mapped (::ffff:a.b.c.d) form: a
       mapped loopback must not pass as public.
    2. As raw address bytes: the first 4 as IPv4, the first 16 as IPv6;
       the embedded-IPv4 forms (::ffff:0:0/96, 64:ff9b::/96, 2002::/16)
       take the class of the IPv4 address they embed; a sockaddr of any
       length (even shorter than its family needs) is classified without
       reading past it.
    3. As WEBHOOK_ALLOWED_HOSTS and a host: bm_ssrf_host_listed never
       reads past either string, and a host always matches a list that
       names it (with other entries, spaces and case changes around).

    Properties: no crash, no out-of-bounds read, every class has a name.  */
#include "bm_proto.h"
#include "bm_ssrf.h"
#include "fuzz_common.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netinet/in.h>

static void
s_check_class (bm_addr_class_t cls)
{
    FUZZ_CHECK (cls >= BM_ADDR_PUBLIC && cls <= BM_ADDR_UNKNOWN);
    const char *name = bm_addr_class_name (cls);
    FUZZ_CHECK (name && name [0]);
}

static bm_addr_class_t
s_classify_v4 (uint32_t addr)
{
    struct sockaddr_in sa;
    memset (&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl (addr);
    bm_addr_class_t cls = bm_ssrf_classify ((struct sockaddr *) &sa, sizeof sa);
    FUZZ_CHECK (cls == bm_ssrf_classify_ipv4 (addr));
    s_check_class (cls);
    return cls;
}

static bm_addr_class_t
s_classify_v6 (const uint8_t *addr)
{
    struct sockaddr_in6 sa;
    memset (&sa, 0, sizeof sa);
    sa.sin6_family = AF_INET6;
    memcpy (sa.sin6_addr.s6_addr, addr, 16);
    bm_addr_class_t cls = bm_ssrf_classify ((struct sockaddr *) &sa, sizeof sa);
    FUZZ_CHECK (cls == bm_ssrf_classify_ipv6 (addr));
    s_check_class (cls);
    return cls;
}

//  IPv4 x embedded in IPv6 (prefix + x at the given offset): same class.
static void
s_check_embedded (uint32_t v4)
{
    bm_addr_class_t expected = s_classify_v4 (v4);
    uint8_t bytes [4] = { v4 >> 24, v4 >> 16, v4 >> 8, v4 };
    uint8_t a [16];
    //  ::ffff:a.b.c.d
    memset (a, 0, 16);
    a [10] = a [11] = 0xff;
    memcpy (a + 12, bytes, 4);
    FUZZ_CHECK (s_classify_v6 (a) == expected);
    //  64:ff9b::a.b.c.d
    memset (a, 0, 16);
    a [1] = 0x64;
    a [2] = 0xff;
    a [3] = 0x9b;
    memcpy (a + 12, bytes, 4);
    FUZZ_CHECK (s_classify_v6 (a) == expected);
    //  2002:aabb:ccdd::/48
    memset (a, 0, 16);
    a [0] = 0x20;
    a [1] = 0x02;
    memcpy (a + 2, bytes, 4);
    FUZZ_CHECK (s_classify_v6 (a) == expected);
}

//  Whether an allow-list entry names a port: "[v6]:port", or one colon
//  outside brackets (more than one is an IPv6 address without them).
static bool
s_names_port (const char *entry)
{
    if (entry [0] == '[') {
        const char *close = strchr (entry, ']');
        return close && close [1] == ':';
    }
    const char *colon = strchr (entry, ':');
    return colon && !strchr (colon + 1, ':');
}

static void
s_check_host (const char *host)
{
    //  A numeric host: classify it as the manager would once connected.
    struct in_addr in4;
    struct in6_addr in6;
    size_t len = strlen (host);
    char bare [INET6_ADDRSTRLEN + 1];
    if (inet_pton (AF_INET, host, &in4) == 1)
        s_check_embedded (ntohl (in4.s_addr));
    else
    if (len > 2 && len - 2 < sizeof bare && host [0] == '[' && host [len - 1] == ']') {
        memcpy (bare, host + 1, len - 2);
        bare [len - 2] = 0;
        if (inet_pton (AF_INET6, bare, &in6) == 1)
            s_classify_v6 (in6.s6_addr);
    }
    //  A host that is a well-formed allow-list entry naming no port is
    //  listed, on any port, in a list that names it.  (An entry may carry
    //  a port: "name:80", "[::1]:80"; "a:b" or "[" is no entry at all.)
    char error [256];
    if (len && len < 512 && !strchr (host, ',') && host [0] != ' ' && host [len - 1] != ' '
    &&  bm_ssrf_list_check (host, error, sizeof error) == 0 && !s_names_port (host)) {
        char list [1200];
        char upper [512];
        for (size_t i = 0; i <= len; i++)
            upper [i] = (char) toupper ((unsigned char) host [i]);
        snprintf (list, sizeof list, "example.org , %s ,other", upper);
        FUZZ_CHECK (bm_ssrf_host_listed (list, host));
        FUZZ_CHECK (bm_ssrf_target_listed (list, host, 8080));
        snprintf (list, sizeof list, "%s", host);
        FUZZ_CHECK (bm_ssrf_host_listed (list, host));
        //  The same host with a port: listed on that port only.
        snprintf (list, sizeof list, "%s%s%s:8080", host [0] == '[' || !strchr (host, ':') ? "" : "[",
                  host, host [0] == '[' || !strchr (host, ':') ? "" : "]");
        if (bm_ssrf_list_check (list, error, sizeof error) == 0) {
            FUZZ_CHECK (bm_ssrf_target_listed (list, host, 8080));
            FUZZ_CHECK (!bm_ssrf_target_listed (list, host, 8081));
            FUZZ_CHECK (!bm_ssrf_host_listed (list, host));
        }
    }
}

static void
s_check_url (const char *url, size_t len)
{
    bool valid = bm_valid_url (url, len);
    //  What the gateway accepts is what the manager must be able to parse.
    CURLU *handle = curl_url ();
    if (!handle)
        return;
    char *scheme = NULL, *host = NULL;
    if (curl_url_set (handle, CURLUPART_URL, url, 0) == CURLUE_OK
    &&  curl_url_get (handle, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
    &&  curl_url_get (handle, CURLUPART_HOST, &host, 0) == CURLUE_OK && host) {
        if (valid)
            FUZZ_CHECK (strcasecmp (scheme, "http") == 0 || strcasecmp (scheme, "https") == 0);
        s_check_host (host);
    }
    curl_free (scheme);
    curl_free (host);
    curl_url_cleanup (handle);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  2. Raw addresses.
    if (size >= 4)
        s_check_embedded ((uint32_t) data [0] << 24 | data [1] << 16 | data [2] << 8 | data [3]);
    if (size >= 16)
        s_classify_v6 (data);
    //  A sockaddr of exactly the input's bytes (ASan: no read past them).
    s_check_class (bm_ssrf_classify ((const struct sockaddr *) data, size));

    //  1. As a URL (C string: up to the first NUL, as the manager gets it).
    char *text = (char *) malloc (size + 1);
    memcpy (text, data, size);
    text [size] = 0;
    s_check_url (text, strlen (text));

    //  3. As "list\x01host": split at the first \x01.
    char *split = strchr (text, '\x01');
    if (split) {
        *split = 0;
        bm_ssrf_host_listed (text, split + 1);
        s_check_host (split + 1);
    }
    else
        s_check_host (text);
    free (text);
    return 0;
}
