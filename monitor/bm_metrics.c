/*  bm_metrics.c - Prometheus metrics registry and text renderer.

    Families and series are only ever added (never removed) while the
    registry lives, so a series handle stays valid and updates need no lock.
    The registry mutex guards the family list and each family's series list;
    it is taken to register, to resolve a series, and to render.

    Values are doubles kept as their IEEE-754 bit pattern in an atomic
    uint64_t and updated by compare-and-swap.  A histogram keeps one atomic
    count per bucket (not cumulative, so an observation touches exactly one
    bucket) plus its sum; the renderer accumulates the buckets and derives
    _count from them, so _count always equals the +Inf bucket. */
#include "bm_metrics.h"
#include "bm_utf8.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { S_COUNTER, S_GAUGE, S_HISTOGRAM } s_type_t;

static const char *s_type_names [] = { "counter", "gauge", "histogram" };

struct _bm_series_t {
    bm_metric_t *metric;                //  Family this series belongs to
    char *values [BM_METRICS_MAX_LABELS]; //  Sanitised label values
    _Atomic uint64_t value;             //  Value (counter, gauge) or sum (histogram), double bits
    _Atomic uint64_t *counts;           //  Histogram: per-bucket counts, bucket_count + 1
    bm_series_t *next;                  //  Next series of the family
};

struct _bm_metric_t {
    bm_metrics_t *owner;                //  Registry
    char *name;                         //  Metric name
    char *help;                         //  Help text (raw)
    s_type_t type;                      //  Counter, gauge or histogram
    size_t label_count;                 //  Number of label names
    char *labels [BM_METRICS_MAX_LABELS]; //  Label names
    double *buckets;                    //  Histogram upper bounds (no +Inf)
    size_t bucket_count;                //  Number of finite bounds
    bm_series_t *head, *tail;           //  Series, in creation order
    size_t series_count;                //  Number of series
    bm_metric_t *next;                  //  Next family of the registry
};

struct _bm_metrics_t {
    pthread_mutex_t mutex;              //  Guards families and series lists
    pthread_mutex_t render_mutex;       //  Serialises collect + render
    bm_metric_t *head, *tail;           //  Families, in registration order
    bm_metrics_collect_fn *collect;     //  Called before each render, or NULL
    void *collect_arg;                  //  Its argument
};

const double bm_buckets_duration [] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 180, 300, 600
};
const size_t bm_buckets_duration_count = sizeof (bm_buckets_duration) / sizeof (double);
const double bm_buckets_latency [] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
const size_t bm_buckets_latency_count = sizeof (bm_buckets_latency) / sizeof (double);


//  --------------------------------------------------------------------------
//  Atomic doubles

static inline double
s_bits_to_double (uint64_t bits)
{
    double d;
    memcpy (&d, &bits, sizeof d);
    return d;
}

static inline uint64_t
s_double_to_bits (double d)
{
    uint64_t bits;
    memcpy (&bits, &d, sizeof bits);
    return bits;
}

static inline void
s_atomic_add (_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit (p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit (
            p, &old, s_double_to_bits (s_bits_to_double (old) + v),
            memory_order_relaxed, memory_order_relaxed))
        ;
}


//  --------------------------------------------------------------------------
//  Names and values

static bool
s_valid_metric_name (const char *name)
{
    if (!name || !*name)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'
               || (p != name && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static bool
s_valid_label_name (const char *name, size_t len)
{
    if (len == 0 || (len >= 2 && name [0] == '_' && name [1] == '_'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name [i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'
               || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

//  --------------------------------------------------------------------------
//  Registry

bm_metrics_t *
bm_metrics_new (void)
{
    bm_metrics_t *self = calloc (1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init (&self->mutex, NULL);
    pthread_mutex_init (&self->render_mutex, NULL);
    return self;
}

static void
s_series_free (bm_series_t *series)
{
    for (size_t i = 0; i < BM_METRICS_MAX_LABELS; i++)
        free (series->values [i]);
    free ((void *) series->counts);
    free (series);
}

static void
s_metric_free (bm_metric_t *metric)
{
    bm_series_t *series = metric->head;
    while (series) {
        bm_series_t *next = series->next;
        s_series_free (series);
        series = next;
    }
    for (size_t i = 0; i < metric->label_count; i++)
        free (metric->labels [i]);
    free (metric->name);
    free (metric->help);
    free (metric->buckets);
    free (metric);
}

void
bm_metrics_destroy (bm_metrics_t **self_p)
{
    assert (self_p);
    bm_metrics_t *self = *self_p;
    if (!self)
        return;
    bm_metric_t *metric = self->head;
    while (metric) {
        bm_metric_t *next = metric->next;
        s_metric_free (metric);
        metric = next;
    }
    pthread_mutex_destroy (&self->mutex);
    pthread_mutex_destroy (&self->render_mutex);
    free (self);
    *self_p = NULL;
}

void
bm_metrics_set_collect (bm_metrics_t *self, bm_metrics_collect_fn *fn, void *arg)
{
    assert (self);
    pthread_mutex_lock (&self->render_mutex);
    self->collect = fn;
    self->collect_arg = arg;
    pthread_mutex_unlock (&self->render_mutex);
}

//  Split "a,b,c" into metric->labels; false on a bad or duplicate name.
static bool
s_parse_labels (bm_metric_t *metric, const char *label_names)
{
    if (!label_names || !*label_names)
        return true;
    const char *p = label_names;
    while (true) {
        while (*p == ' ')
            p++;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        size_t len = (size_t) (end - p);
        if (!s_valid_label_name (p, len) || metric->label_count == BM_METRICS_MAX_LABELS)
            return false;
        if (metric->type == S_HISTOGRAM && len == 2 && memcmp (p, "le", 2) == 0)
            return false;
        for (size_t i = 0; i < metric->label_count; i++)
            if (strlen (metric->labels [i]) == len && memcmp (metric->labels [i], p, len) == 0)
                return false;
        metric->labels [metric->label_count] = strndup (p, len);
        if (!metric->labels [metric->label_count])
            return false;
        metric->label_count++;
        while (*end == ' ')
            end++;
        if (*end == 0)
            return true;
        if (*end != ',')
            return false;
        p = end + 1;
    }
}

static bool
s_same_shape (bm_metric_t *a, bm_metric_t *b)
{
    if (a->type != b->type || a->label_count != b->label_count
    ||  a->bucket_count != b->bucket_count)
        return false;
    for (size_t i = 0; i < a->label_count; i++)
        if (strcmp (a->labels [i], b->labels [i]))
            return false;
    for (size_t i = 0; i < a->bucket_count; i++)
        if (a->buckets [i] != b->buckets [i])
            return false;
    return true;
}

static bm_series_t *s_series_require (bm_metric_t *metric, const char *const *values);

static bm_metric_t *
s_register (bm_metrics_t *self, s_type_t type, const char *name, const char *help,
            const char *label_names, const double *buckets, size_t bucket_count)
{
    assert (self);
    if (!s_valid_metric_name (name))
        return NULL;
    bm_metric_t *metric = calloc (1, sizeof *metric);
    if (!metric)
        return NULL;
    metric->owner = self;
    metric->type = type;
    metric->name = strdup (name);
    metric->help = strdup (help ? help : "");
    if (!metric->name || !metric->help || !s_parse_labels (metric, label_names)) {
        s_metric_free (metric);
        return NULL;
    }
    if (type == S_HISTOGRAM) {
        if (!buckets || bucket_count == 0) {
            buckets = bm_buckets_latency;
            bucket_count = bm_buckets_latency_count;
        }
        bool ok = bucket_count <= BM_METRICS_MAX_BUCKETS;
        for (size_t i = 0; ok && i < bucket_count; i++)
            if (!isfinite (buckets [i]) || (i > 0 && buckets [i] <= buckets [i - 1]))
                ok = false;
        metric->buckets = ok ? malloc (bucket_count * sizeof (double)) : NULL;
        if (!metric->buckets) {
            s_metric_free (metric);
            return NULL;
        }
        memcpy (metric->buckets, buckets, bucket_count * sizeof (double));
        metric->bucket_count = bucket_count;
    }
    pthread_mutex_lock (&self->mutex);
    bm_metric_t *existing = self->head;
    while (existing && strcmp (existing->name, name))
        existing = existing->next;
    if (existing) {
        pthread_mutex_unlock (&self->mutex);
        bool same = s_same_shape (existing, metric);
        s_metric_free (metric);
        return same ? existing : NULL;
    }
    if (self->tail)
        self->tail->next = metric;
    else
        self->head = metric;
    self->tail = metric;
    //  A family without labels has exactly one series: create it now so it
    //  renders (as 0) before its first update.
    if (metric->label_count == 0)
        s_series_require (metric, NULL);
    pthread_mutex_unlock (&self->mutex);
    return metric;
}

bm_metric_t *
bm_metrics_counter (bm_metrics_t *self, const char *name, const char *help, const char *label_names)
{
    return s_register (self, S_COUNTER, name, help, label_names, NULL, 0);
}

bm_metric_t *
bm_metrics_gauge (bm_metrics_t *self, const char *name, const char *help, const char *label_names)
{
    return s_register (self, S_GAUGE, name, help, label_names, NULL, 0);
}

bm_metric_t *
bm_metrics_histogram (bm_metrics_t *self, const char *name, const char *help,
                      const char *label_names, const double *buckets, size_t bucket_count)
{
    return s_register (self, S_HISTOGRAM, name, help, label_names, buckets, bucket_count);
}


//  --------------------------------------------------------------------------
//  Series

//  Find or create; caller holds the registry mutex.  values has label_count
//  non-NULL entries (ignored when label_count is 0).
static bm_series_t *
s_series_require (bm_metric_t *metric, const char *const *values)
{
    char *clean [BM_METRICS_MAX_LABELS] = { NULL };
    for (size_t i = 0; i < metric->label_count; i++) {
        //  Invalid UTF-8 bytes as '?', cut on a character boundary.
        clean [i] = bm_utf8_sanitised (values [i], strlen (values [i]), BM_METRICS_MAX_VALUE_LEN);
        if (!clean [i])
            goto fail;
    }
    for (bm_series_t *s = metric->head; s; s = s->next) {
        size_t i = 0;
        while (i < metric->label_count && strcmp (s->values [i], clean [i]) == 0)
            i++;
        if (i == metric->label_count) {
            for (i = 0; i < metric->label_count; i++)
                free (clean [i]);
            return s;
        }
    }
    if (metric->series_count >= BM_METRICS_MAX_SERIES)
        goto fail;
    bm_series_t *series = calloc (1, sizeof *series);
    if (!series)
        goto fail;
    if (metric->type == S_HISTOGRAM) {
        series->counts = calloc (metric->bucket_count + 1, sizeof (uint64_t));
        if (!series->counts) {
            free (series);
            goto fail;
        }
    }
    series->metric = metric;
    memcpy (series->values, clean, sizeof clean);
    atomic_init (&series->value, s_double_to_bits (0.0));
    if (metric->tail)
        metric->tail->next = series;
    else
        metric->head = series;
    metric->tail = series;
    metric->series_count++;
    return series;
fail:
    for (size_t i = 0; i < metric->label_count; i++)
        free (clean [i]);
    return NULL;
}

bm_series_t *
bm_metric_series_v (bm_metric_t *metric, const char *const *values)
{
    if (!metric)
        return NULL;
    for (size_t i = 0; i < metric->label_count; i++)
        if (!values || !values [i])
            return NULL;
    pthread_mutex_lock (&metric->owner->mutex);
    bm_series_t *series = s_series_require (metric, values);
    pthread_mutex_unlock (&metric->owner->mutex);
    return series;
}

bm_series_t *
bm_metric_series (bm_metric_t *metric, ...)
{
    if (!metric)
        return NULL;
    const char *values [BM_METRICS_MAX_LABELS] = { NULL };
    va_list args;
    va_start (args, metric);
    for (size_t i = 0; i < metric->label_count; i++)
        values [i] = va_arg (args, const char *);
    va_end (args);
    return bm_metric_series_v (metric, values);
}

bm_series_t *
bm_metric_series_status (bm_metric_t *metric, bm_series_t **cache, size_t size,
                         int status, const char *none_name)
{
    assert (size > 0);
    if (status < 0 || (size_t) status >= size)
        status = 0;
    if (!cache [status]) {
        char name [16];
        if (status)
            snprintf (name, sizeof name, "%d", status);
        cache [status] = bm_metric_series (metric, status? name: none_name);
    }
    return cache [status];
}

void
bm_series_inc (bm_series_t *s)
{
    bm_series_add (s, 1.0);
}

void
bm_series_dec (bm_series_t *s)
{
    if (s && s->metric->type == S_GAUGE)
        s_atomic_add (&s->value, -1.0);
}

void
bm_series_add (bm_series_t *s, double v)
{
    if (!s || s->metric->type == S_HISTOGRAM)
        return;
    if (s->metric->type == S_COUNTER && !(v >= 0))
        return;             //  Counters only go up (this also drops NaN)
    s_atomic_add (&s->value, v);
}

void
bm_series_set (bm_series_t *s, double v)
{
    if (s && s->metric->type == S_GAUGE)
        atomic_store_explicit (&s->value, s_double_to_bits (v), memory_order_relaxed);
}

void
bm_series_observe (bm_series_t *s, double v)
{
    if (!s || s->metric->type != S_HISTOGRAM || isnan (v))
        return;
    //  Binary search the first bound >= v (le is inclusive)
    const double *b = s->metric->buckets;
    size_t lo = 0, hi = s->metric->bucket_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (b [mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    atomic_fetch_add_explicit (&s->counts [lo], 1, memory_order_relaxed);
    s_atomic_add (&s->value, v);
}

double
bm_series_value (bm_series_t *s)
{
    if (!s)
        return 0;
    return s_bits_to_double (atomic_load_explicit (&s->value, memory_order_relaxed));
}

double
bm_series_sum (bm_series_t *s)
{
    return bm_series_value (s);
}

uint64_t
bm_series_count (bm_series_t *s)
{
    if (!s || s->metric->type != S_HISTOGRAM)
        return 0;
    uint64_t total = 0;
    for (size_t i = 0; i <= s->metric->bucket_count; i++)
        total += atomic_load_explicit (&s->counts [i], memory_order_relaxed);
    return total;
}

size_t
bm_series_buckets (bm_series_t *s, uint64_t *counts, size_t max)
{
    if (!s || s->metric->type != S_HISTOGRAM || max < s->metric->bucket_count + 1)
        return 0;
    for (size_t i = 0; i <= s->metric->bucket_count; i++)
        counts [i] = atomic_load_explicit (&s->counts [i], memory_order_relaxed);
    return s->metric->bucket_count + 1;
}

double
bm_histogram_quantile (double q, const double *buckets, size_t bucket_count,
                       const uint64_t *counts)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= bucket_count; i++)
        total += counts [i];
    if (total == 0 || bucket_count == 0)
        return NAN;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    double rank = q * (double) total;
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bucket_count; i++) {
        uint64_t previous = cumulative;
        cumulative += counts [i];
        if (counts [i] && (double) cumulative >= rank) {
            double lower = i == 0 ? (buckets [0] > 0 ? 0 : buckets [0]) : buckets [i - 1];
            double upper = buckets [i];
            return lower + (upper - lower) * ((rank - (double) previous) / (double) counts [i]);
        }
    }
    //  In the +Inf bucket: the highest finite bound is the best we know
    return buckets [bucket_count - 1];
}


//  --------------------------------------------------------------------------
//  Rendering

//  Shortest of %.15g / %.17g that reads back as the same double.
static void
s_format_double (char *buf, size_t size, double v)
{
    if (isnan (v))
        snprintf (buf, size, "NaN");
    else
    if (isinf (v))
        snprintf (buf, size, v > 0 ? "+Inf" : "-Inf");
    else {
        snprintf (buf, size, "%.15g", v);
        if (strtod (buf, NULL) != v)
            snprintf (buf, size, "%.17g", v);
    }
}

//  HELP text escapes backslash and newline; label values also escape '"'.
static void
s_write_escaped (FILE *out, const char *text, bool quote)
{
    for (const char *p = text; *p; p++) {
        if (*p == '\\')
            fputs ("\\\\", out);
        else
        if (*p == '\n')
            fputs ("\\n", out);
        else
        if (*p == '"' && quote)
            fputs ("\\\"", out);
        else
            fputc (*p, out);
    }
}

//  Write {a="x",b="y"[,le="..."]} (nothing when there are no labels).
static void
s_write_labels (FILE *out, bm_series_t *series, const char *le)
{
    bm_metric_t *metric = series->metric;
    if (metric->label_count == 0 && !le)
        return;
    fputc ('{', out);
    for (size_t i = 0; i < metric->label_count; i++) {
        if (i)
            fputc (',', out);
        fprintf (out, "%s=\"", metric->labels [i]);
        s_write_escaped (out, series->values [i], true);
        fputc ('"', out);
    }
    if (le)
        fprintf (out, "%sle=\"%s\"", metric->label_count ? "," : "", le);
    fputc ('}', out);
}

static void
s_render_metric (FILE *out, bm_metric_t *metric)
{
    char number [64];
    fprintf (out, "# HELP %s ", metric->name);
    s_write_escaped (out, metric->help, false);
    fprintf (out, "\n# TYPE %s %s\n", metric->name, s_type_names [metric->type]);
    for (bm_series_t *s = metric->head; s; s = s->next) {
        if (metric->type != S_HISTOGRAM) {
            fputs (metric->name, out);
            s_write_labels (out, s, NULL);
            s_format_double (number, sizeof number, bm_series_value (s));
            fprintf (out, " %s\n", number);
            continue;
        }
        uint64_t cumulative = 0;
        for (size_t i = 0; i <= metric->bucket_count; i++) {
            cumulative += atomic_load_explicit (&s->counts [i], memory_order_relaxed);
            if (i < metric->bucket_count)
                s_format_double (number, sizeof number, metric->buckets [i]);
            else
                snprintf (number, sizeof number, "+Inf");
            fprintf (out, "%s_bucket", metric->name);
            s_write_labels (out, s, number);
            fprintf (out, " %llu\n", (unsigned long long) cumulative);
        }
        fprintf (out, "%s_sum", metric->name);
        s_write_labels (out, s, NULL);
        s_format_double (number, sizeof number, bm_series_sum (s));
        fprintf (out, " %s\n", number);
        fprintf (out, "%s_count", metric->name);
        s_write_labels (out, s, NULL);
        fprintf (out, " %llu\n", (unsigned long long) cumulative);
    }
}

char *
bm_metrics_render (bm_metrics_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->render_mutex);
    if (self->collect)
        self->collect (self, self->collect_arg);
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    if (out) {
        pthread_mutex_lock (&self->mutex);
        for (bm_metric_t *metric = self->head; metric; metric = metric->next)
            s_render_metric (out, metric);
        pthread_mutex_unlock (&self->mutex);
        if (fclose (out)) {
            free (text);
            text = NULL;
        }
    }
    pthread_mutex_unlock (&self->render_mutex);
    return text;
}
