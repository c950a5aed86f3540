/*  bm_ssrf.h - which network addresses a webhook may be delivered to.

    A webhook URL comes from a user, so the manager must not become a way
    into the network it runs in (server-side request forgery).  The check
    runs on the address libcurl is about to connect to (its open-socket
    callback), after DNS, so a name that resolves to 127.0.0.1 -- or that
    resolves differently the second time (DNS rebinding) -- is caught.

    Every address outside the public unicast space is refused, unless the
    operator allows private targets or lists the host by name.  The classes
    follow the IANA IPv4 and IPv6 Special-Purpose Address Registries.

    The gateway applies the same rule to a job's webhookUrl whose host needs
    no lookup (an IP address, localhost), so that a target the manager would
    refuse is refused at submit (bm_ssrf_literal_refused).  */
#ifndef BM_SSRF_H
#define BM_SSRF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum {
    BM_ADDR_PUBLIC = 0,         //  Global unicast: allowed
    BM_ADDR_LOOPBACK,           //  127.0.0.0/8, ::1
    BM_ADDR_PRIVATE,            //  10/8, 172.16/12, 192.168/16, fec0::/10
    BM_ADDR_LINK_LOCAL,         //  169.254/16 (cloud metadata!), fe80::/10
    BM_ADDR_UNIQUE_LOCAL,       //  fc00::/7
    BM_ADDR_SHARED,             //  100.64/10, carrier-grade NAT
    BM_ADDR_UNSPECIFIED,        //  0.0.0.0/8, ::
    BM_ADDR_MULTICAST,          //  224/4, ff00::/8, broadcast
    BM_ADDR_RESERVED,           //  Documentation, benchmarking, 240/4, ...
    BM_ADDR_UNKNOWN             //  Not IPv4 or IPv6
} bm_addr_class_t;

//  The class of an IPv4 address (in host byte order).
bm_addr_class_t bm_ssrf_classify_ipv4 (uint32_t addr);

//  The class of an IPv6 address (16 bytes, network order).  Addresses that
//  embed an IPv4 address (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4
//  2002::/16) take the class of the embedded address.
bm_addr_class_t bm_ssrf_classify_ipv6 (const uint8_t *addr);

//  The class of a socket address (AF_INET or AF_INET6).
bm_addr_class_t bm_ssrf_classify (const struct sockaddr *addr, size_t addr_len);

//  A name for logs and errors ("loopback", "private", ...).
const char *bm_addr_class_name (bm_addr_class_t cls);

//  True if host, reached on port, matches an entry of list
//  (WEBHOOK_ALLOWED_HOSTS: comma-separated, spaces ignored, ASCII
//  case-insensitive, exact names: no wildcards).  An entry is host (any
//  port), host:port, [IPv6] or [IPv6]:port (an IPv6 address without
//  brackets names no port).  A host in brackets ([::1]) matches the entry
//  with or without them.
bool bm_ssrf_target_listed (const char *list, const char *host, int port);

//  bm_ssrf_target_listed for port 0: only entries that name no port match.
bool bm_ssrf_host_listed (const char *list, const char *host);

//  0 if every entry of list is well formed, else -1 with a message naming
//  the first bad one.
int bm_ssrf_list_check (const char *list, char *error, size_t error_size);

//  The class of a URL's host when it needs no lookup (as bm_url_host gives
//  it): an IPv4 address, an IPv6 address in brackets, or localhost and names
//  under it (libcurl answers those itself, with loopback addresses).
//  BM_ADDR_UNKNOWN for any other name: only a lookup tells its addresses.
bm_addr_class_t bm_ssrf_literal_class (const char *host);

//  The manager's rule for a URL's host and port, before any lookup: NULL
//  when it may be tried (private targets allowed, host or host:port in
//  allowed_hosts, a public address, or a name to look up), else the
//  class that refuses it ("loopback", "private", ...).
const char *bm_ssrf_literal_refused (const char *host, int port, bool allow_private,
                                     const char *allowed_hosts);

void bm_ssrf_test (bool verbose);

#endif
