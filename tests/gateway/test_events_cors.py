"""GET /events carries the headers every answer carries (gateway/README.md,
"Browsers: CORS and security headers"), so a web UI on another origin can
read the stream:

- CORS_ORIGINS unset (`*`): the 200 stream of a request with an Origin has
  `Access-Control-Allow-Origin: *` and the security headers, its
  Content-Type is text/event-stream and it has no Content-Length;
- CORS_ORIGINS naming an origin: that origin is echoed with
  `Vary: Origin`; another origin gets no Access-Control-Allow-Origin (as
  every other answer); the HEAD answer has the same CORS and security
  headers as the stream.

Real redis, broker and gateways.
"""
import harness
from gwtest import check, curl, gateway
from test_events import KEY

AUTH = ("-H", "X-API-Key: " + KEY)
SECURITY = ("x-content-type-options", "content-security-policy", "x-frame-options",
            "referrer-policy", "cross-origin-resource-policy")


def stream_head(g, origin, *extra):
    r = curl("-N", "-H", "Origin: " + origin, g.url + "/events", *AUTH, *extra, timeout=2)
    check(r.status == 200 and r.headers.get("content-type") == "text/event-stream"
          and ": subscribed" in r.body, "a stream from %s: 200 text/event-stream" % origin, r)
    check("content-length" not in r.headers, "the stream has no Content-Length", r.headers)
    check(all(h in r.headers for h in SECURITY), "the stream has the security headers",
          r.headers)
    return r.headers


def test():
    with harness.Stack("gw-events-cors") as s:
        s.redis()
        s.broker()
        g = gateway(s, env={"API_KEYS": KEY})
        h = stream_head(g, "http://ui.example")
        check(h.get("access-control-allow-origin") == "*",
              "CORS_ORIGINS *: the stream allows any origin", h)
        g.stop()

        g = gateway(s, env={"API_KEYS": KEY, "CORS_ORIGINS": "http://ui.example"},
                    name="gateway-named")
        h = stream_head(g, "http://ui.example")
        check(h.get("access-control-allow-origin") == "http://ui.example"
              and "Origin" in h.get("vary", ""),
              "a listed origin is echoed with Vary: Origin", h)
        h = stream_head(g, "http://other.example")
        check("access-control-allow-origin" not in h and "Origin" in h.get("vary", ""),
              "an origin not listed gets no Access-Control-Allow-Origin", h)
        r = curl("-I", "-H", "Origin: http://ui.example", g.url + "/events", *AUTH)
        check(r.status == 200 and r.headers.get("access-control-allow-origin")
              == "http://ui.example" and all(k in r.headers for k in SECURITY),
              "HEAD /events: the same CORS and security headers", r.headers)


if __name__ == "__main__":
    harness.main(test)
