/*  wh_ssrf.h - which network addresses a webhook may be delivered to.

    A webhook URL comes from a user, so the manager must not become a way
    into the network it runs in (server-side request forgery).  The check
    runs on the address libcurl is about to connect to (its open-socket
    callback), after DNS, so a name that resolves to 127.0.0.1 -- or that
    resolves differently the second time (DNS rebinding) -- is caught.

    Every address outside the public unicast space is refused, unless the
    operator allows private targets or lists the host by name.  The classes
    follow the IANA IPv4 and IPv6 Special-Purpose Address Registries.  */
#ifndef WH_SSRF_H
#define WH_SSRF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef enum {
    WH_ADDR_PUBLIC = 0,         //  Global unicast: allowed
    WH_ADDR_LOOPBACK,           //  127.0.0.0/8, ::1
    WH_ADDR_PRIVATE,            //  10/8, 172.16/12, 192.168/16, fec0::/10
    WH_ADDR_LINK_LOCAL,         //  169.254/16 (cloud metadata!), fe80::/10
    WH_ADDR_UNIQUE_LOCAL,       //  fc00::/7
    WH_ADDR_SHARED,             //  100.64/10, carrier-grade NAT
    WH_ADDR_UNSPECIFIED,        //  0.0.0.0/8, ::
    WH_ADDR_MULTICAST,          //  224/4, ff00::/8, broadcast
    WH_ADDR_RESERVED,           //  Documentation, benchmarking, 240/4, ...
    WH_ADDR_UNKNOWN             //  Not IPv4 or IPv6
} wh_addr_class_t;

//  The class of an IPv4 address (in host byte order).
wh_addr_class_t wh_ssrf_classify_ipv4 (uint32_t addr);

//  The class of an IPv6 address (16 bytes, network order).  Addresses that
//  embed an IPv4 address (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96, 6to4
//  2002::/16) take the class of the embedded address.
wh_addr_class_t wh_ssrf_classify_ipv6 (const uint8_t *addr);

//  The class of a socket address (AF_INET or AF_INET6).
wh_addr_class_t wh_ssrf_classify (const struct sockaddr *addr, size_t addr_len);

//  A name for logs and errors ("loopback", "private", ...).
const char *wh_addr_class_name (wh_addr_class_t cls);

//  True if host, reached on port, matches an entry of list
//  (WEBHOOK_ALLOWED_HOSTS: comma-separated, spaces ignored, ASCII
//  case-insensitive, exact names: no wildcards).  An entry is host (any
//  port), host:port, [IPv6] or [IPv6]:port (an IPv6 address without
//  brackets names no port).  A host in brackets ([::1]) matches the entry
//  with or without them.
bool wh_ssrf_target_listed (const char *list, const char *host, int port);

//  wh_ssrf_target_listed for port 0: only entries that name no port match.
bool wh_ssrf_host_listed (const char *list, const char *host);

//  0 if every entry of list is well formed, else -1 with a message naming
//  the first bad one.
int wh_ssrf_list_check (const char *list, char *error, size_t error_size);

void wh_ssrf_test (bool verbose);

#endif
