/*  bm_metrics.h - Prometheus metrics: counters, gauges and histograms with
    labels, rendered in the text exposition format 0.0.4.

    A registry (bm_metrics_t) holds metric families (bm_metric_t: name, help,
    type, label names).  A family holds series (bm_series_t), one per set of
    label values.  Resolve a series once (bm_metric_series takes a lock) and
    keep the handle: updating it is lock-free (C11 atomics) and allocates
    nothing, from any thread.

        bm_metrics_t *reg = bm_metrics_new ();
        bm_metric_t *exec = bm_metrics_counter (reg, "bot_executions_total",
            "Bot executions by type and outcome", "bot_type,status");
        bm_series_t *py_ok = bm_metric_series (exec, "python", "completed");
        bm_series_inc (py_ok);
        char *text = bm_metrics_render (reg);     //  caller frees

    Handles live as long as the registry.  Every bm_series_* function accepts
    NULL and then does nothing (a family refuses new series past
    BM_METRICS_MAX_SERIES, so label values taken from peer input cannot grow
    it without bound).  Registering a name twice with the same type and label
    names returns the existing family; with a different type or labels, NULL. */
#ifndef BM_METRICS_H
#define BM_METRICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _bm_metrics_t bm_metrics_t;      //  a registry
typedef struct _bm_metric_t  bm_metric_t;       //  one metric family
typedef struct _bm_series_t  bm_series_t;       //  one labelled series

#define BM_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

//  Limits: series per family, label names per family, bytes kept of a label
//  value (longer values are cut at a UTF-8 boundary), histogram buckets.
#define BM_METRICS_MAX_SERIES      2000
#define BM_METRICS_MAX_LABELS      8
#define BM_METRICS_MAX_VALUE_LEN   200
#define BM_METRICS_MAX_BUCKETS     64

bm_metrics_t *bm_metrics_new (void);
void bm_metrics_destroy (bm_metrics_t **self_p);

//  Register (or find) a family.  label_names: comma-separated
//  ("bot_type,status") or NULL / "" for none.  Returns NULL on an invalid
//  metric or label name, or a conflicting earlier registration.
bm_metric_t *bm_metrics_counter   (bm_metrics_t *self, const char *name, const char *help,
                                   const char *label_names);
bm_metric_t *bm_metrics_gauge     (bm_metrics_t *self, const char *name, const char *help,
                                   const char *label_names);
//  buckets: strictly increasing upper bounds, without +Inf (added for you).
//  NULL / 0 uses bm_buckets_latency.
bm_metric_t *bm_metrics_histogram (bm_metrics_t *self, const char *name, const char *help,
                                   const char *label_names,
                                   const double *buckets, size_t bucket_count);

//  Find or create the series for these label values, given in the order of
//  the label names (exactly as many; const char *).  A family without labels
//  has one series: bm_metric_series (m).  Takes a lock: call once, keep the
//  handle.  Returns NULL if metric is NULL, a value is NULL, or the family is
//  full.  Values may be any bytes: invalid UTF-8 is replaced by '?'.
bm_series_t *bm_metric_series (bm_metric_t *metric, ...);
bm_series_t *bm_metric_series_v (bm_metric_t *metric, const char *const *values);

//  The series of an HTTP status in a family labelled by status alone,
//  cached in cache [status] (cache has size entries, NULL at first): the
//  status as its decimal value, or none_name for 0 and any status from
//  size up.  The caller serialises calls that share a cache.
bm_series_t *bm_metric_series_status (bm_metric_t *metric, bm_series_t **cache, size_t size,
                                      int status, const char *none_name);

//  Updates: lock-free, no allocation.  Counters ignore negative or NaN adds.
void bm_series_inc (bm_series_t *s);                //  counter / gauge +1
void bm_series_dec (bm_series_t *s);                //  gauge -1
void bm_series_add (bm_series_t *s, double v);      //  counter / gauge +v
void bm_series_set (bm_series_t *s, double v);      //  gauge
void bm_series_observe (bm_series_t *s, double v);  //  histogram

//  Reads (tests, snapshots).  bm_series_value: counter/gauge value, or a
//  histogram's sum.  bm_series_count: a histogram's observation count.
double bm_series_value (bm_series_t *s);
uint64_t bm_series_count (bm_series_t *s);
double bm_series_sum (bm_series_t *s);
//  Copy a histogram's per-bucket (non-cumulative) counts into counts[], which
//  holds bucket_count + 1 entries (the last is the +Inf overflow).  Returns the
//  number of entries copied, or 0 if s is not a histogram or max is too small.
size_t bm_series_buckets (bm_series_t *s, uint64_t *counts, size_t max);
//  Estimate quantile q (0..1) from per-bucket counts, as Prometheus'
//  histogram_quantile does (linear within a bucket).  counts has
//  bucket_count + 1 entries.  Returns NaN when the total is 0.
double bm_histogram_quantile (double q, const double *buckets, size_t bucket_count,
                              const uint64_t *counts);

//  Run fn (self, arg) at the start of every bm_metrics_render, so the owner
//  can refresh gauges (queue sizes...).  Runs in the rendering thread (the
//  HTTP thread for bm_metrics_http).  One callback per registry; NULL clears.
typedef void (bm_metrics_collect_fn) (bm_metrics_t *self, void *arg);
void bm_metrics_set_collect (bm_metrics_t *self, bm_metrics_collect_fn *fn, void *arg);

//  Render every family: # HELP, # TYPE, samples; histograms as _bucket{le},
//  _sum, _count.  Families in registration order, series in creation order.
//  Returns a fresh string: caller frees.
char *bm_metrics_render (bm_metrics_t *self);

//  Standard buckets: bot execution durations in seconds (5 ms .. 10 min) and
//  short latencies in seconds (0.5 ms .. 10 s).
extern const double bm_buckets_duration [];
extern const size_t bm_buckets_duration_count;
extern const double bm_buckets_latency [];
extern const size_t bm_buckets_latency_count;

//  A tiny civetweb server with GET /metrics and GET /health, for processes
//  without an HTTP server of their own (the broker).  listen_addr: an IPv4
//  address ("0.0.0.0", "127.0.0.1"); port 0 picks an ephemeral port.
//  Returns NULL if the server cannot listen.
typedef struct _bm_metrics_http_t bm_metrics_http_t;
bm_metrics_http_t *bm_metrics_http_new (bm_metrics_t *metrics, const char *listen_addr, int port);

//  GET /ready: the process says whether it serves.  The function runs on an
//  HTTP thread: it must read only what is safe there (bm_series_value,
//  settings fixed at start).  It returns 200 when ready, else 503, and
//  fills answer (a JSON object, jansson's json_t) with what a probe should
//  see.  Without one, /ready is 404.
typedef int (bm_metrics_ready_fn) (void *arg, void *answer);
bm_metrics_http_t *bm_metrics_http_new_ready (bm_metrics_t *metrics, const char *listen_addr, int port,
                                             bm_metrics_ready_fn *ready, void *ready_arg);
int bm_metrics_http_port (bm_metrics_http_t *self);
void bm_metrics_http_destroy (bm_metrics_http_t **self_p);   //  takes ~2 s (mg_stop)

#ifdef __cplusplus
}
#endif

#endif
