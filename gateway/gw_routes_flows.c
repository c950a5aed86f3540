/*  gw_routes_flows.c - POST /flows: a tree of jobs in one request, as
    BullMQ's FlowProducer.add builds one.

    A node is a POST /invoke body (read by gw_invoke_translate_value, the
    same checks and errors) plus "children": [node, ...].  A node runs
    after all its children completed: its dependsOn is its children's job
    ids, after any dependsOn it names itself.  BullMQ's "queueName" reads
    as botType and "data" as payload.

    The whole tree is checked before any job is submitted: a bad node is
    refused (4xx) with its path ("children[1].children[0]: ...").  Then the
    jobs go to the broker by height (the leaves first, then the nodes whose
    children are all submitted, ...), each height as SUBMIT_MANY messages,
    each parent carrying its children's ids.

    Each job gets an idempotency key: its own (idempotencyKey or jobId),
    else "<flowKey>/<path>" (path: the child indexes from the top, "1.0");
    the top node's key is the flow key, made up (a random "flow-..." id)
    when the top node has none, and answered as "flowKey".  A request that
    failed half-way is completed by sending the same body with that key
    (the broker answers the jobs already made as duplicates); when a node
    was refused for what it says, only once that node is corrected.  */
#include "gw_routes.h"

#include "bm_codec_batch.h"
#include "bm_log.h"

#include <openssl/rand.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

//  Deepest tree accepted: the top node is at depth 1.
#define GW_FLOW_MAX_DEPTH       32
//  Bytes of SUBMIT bodies in one SUBMIT_MANY, at most (as /invoke/batch).
#define GW_FLOW_MESSAGE_BYTES   (1024 * 1024)
//  A node's path for messages: "children[999]." is 14 bytes a level.
#define GW_FLOW_PATH_MAX        (GW_FLOW_MAX_DEPTH * 14 + 16)
//  A node's path in its derived key: "999." is 4 bytes a level.
#define GW_FLOW_KEY_PATH_MAX    (GW_FLOW_MAX_DEPTH * 4 + 8)

typedef struct {
    json_t *node;                       //  Borrowed from the parsed body
    size_t parent;                      //  SIZE_MAX for the top node
    size_t first;                       //  Its children: kids [first..first+count)
    size_t count;
    int height;                         //  0: a leaf
    char path [GW_FLOW_PATH_MAX];       //  "" for the top node
    char key [BM_MAX_ID_LEN + 1];       //  Its idempotency key
    char job_id [BM_MAX_ID_LEN + 1];    //  Once accepted
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    int64_t priority;
    json_t *answer;                     //  Its 202 value, once accepted
    json_t *warning;                    //  /invoke's warning for it, or NULL
} s_node_t;

typedef struct {
    s_node_t *node;
    size_t count;
    size_t max;                         //  MAX_BATCH
    size_t *kids;                       //  Each node's children, by index
    size_t nkids;
    char flow_key [BM_MAX_ID_LEN + 1];
    struct {                            //  Why the flow was refused
        int status;
        const char *code;
        char message [GW_FLOW_PATH_MAX + 320];      //  Its path and why
    } error;
} s_flow_t;

static int
s_fail (s_flow_t *flow, const char *path, int status, const char *code, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

static int
s_fail (s_flow_t *flow, const char *path, int status, const char *code, const char *fmt, ...)
{
    char text [320];
    va_list args;
    va_start (args, fmt);
    vsnprintf (text, sizeof text, fmt, args);
    va_end (args);
    flow->error.status = status;
    flow->error.code = code;
    snprintf (flow->error.message, sizeof flow->error.message, "%s%s%s",
              *path ? path : "", *path ? ": " : "", text);
    return -1;
}

//  The node's own idempotency key (idempotencyKey, else jobId), or NULL.
static const char *
s_own_key (const json_t *node)
{
    const char *key = json_string_value (json_object_get (node, "idempotencyKey"));
    return key ? key : json_string_value (json_object_get (node, "jobId"));
}

//  Walk the tree from node (depth: its own), appending it and its
//  descendants, depth first.  0, or -1 with flow->error.
static int
s_collect (s_flow_t *flow, json_t *node, size_t parent, int depth, const char *path,
           const char *key_path)
{
    if (depth > GW_FLOW_MAX_DEPTH)
        return s_fail (flow, path, 400, "invalid_flow",
                       "the tree is deeper than %d levels", GW_FLOW_MAX_DEPTH);
    if (flow->count == flow->max)
        return s_fail (flow, "", 413, "too_many_jobs",
                       "the flow holds more than %zu jobs; at most %zu go in one request "
                       "(MAX_BATCH)", flow->max, flow->max);
    if (!json_is_object (node))
        return s_fail (flow, path, 400, "invalid_body",
                       "a node must be a JSON object (a POST /invoke body with \"children\")");
    json_t *children = json_object_get (node, "children");
    if (children && !json_is_null (children) && !json_is_array (children))
        return s_fail (flow, path, 400, "invalid_flow",
                       "children must be an array of nodes (POST /invoke bodies)");
    size_t count = json_array_size (children);
    size_t own = json_array_size (json_object_get (node, "dependsOn"));
    if (count + own > BM_MAX_DEPENDS)
        return s_fail (flow, path, 400, "invalid_dependencies",
                       "%zu children and %zu dependsOn: a job waits for at most %d jobs",
                       count, own, BM_MAX_DEPENDS);
    //  Every node but the top one is some node's child: more children
    //  than nodes left means more nodes than a flow may hold (their slots
    //  in flow->kids, MAX_BATCH of them, are taken before they are walked).
    if (flow->nkids + count > flow->max - 1)
        return s_fail (flow, path, 413, "too_many_jobs",
                       "the flow holds more than %zu jobs; at most %zu go in one request "
                       "(MAX_BATCH)", flow->max, flow->max);
    size_t index = flow->count++;
    s_node_t *self = &flow->node [index];
    self->node = node;
    self->parent = parent;
    self->count = count;
    self->first = flow->nkids;
    flow->nkids += count;
    snprintf (self->path, sizeof self->path, "%s", path);
    //  Its key: its own, the flow's for the top node, else derived.
    const char *own_key = s_own_key (node);
    if (own_key)
        snprintf (self->key, sizeof self->key, "%s", own_key);
    else
    if (parent == SIZE_MAX)
        snprintf (self->key, sizeof self->key, "%s", flow->flow_key);
    else
    if ((size_t) snprintf (self->key, sizeof self->key, "%s/%s", flow->flow_key, key_path)
        >= sizeof self->key)
        return s_fail (flow, path, 400, "invalid_idempotency_key",
                       "the job's derived idempotency key (flow key \"/\" its path %s) is longer "
                       "than %d characters: give the flow a shorter idempotencyKey, or the "
                       "node its own", key_path, BM_MAX_ID_LEN);
    for (size_t i = 0; i < count; i++) {
        char child_path [GW_FLOW_PATH_MAX];
        char child_key_path [GW_FLOW_KEY_PATH_MAX];
        snprintf (child_path, sizeof child_path, "%s%schildren[%zu]", path, *path ? "." : "", i);
        snprintf (child_key_path, sizeof child_key_path, "%s%s%zu",
                  key_path, *key_path ? "." : "", i);
        size_t child = flow->count;
        flow->kids [self->first + i] = child;
        if (s_collect (flow, json_array_get (children, i), index, depth + 1, child_path,
                       child_key_path))
            return -1;
        int height = flow->node [child].height + 1;
        if (height > self->height)
            self->height = height;
    }
    return 0;
}

//  A BullMQ alias: alias's value moves to name (when name is absent); both
//  given must be equal.  0, or -1 with flow->error.
static int
s_alias (s_flow_t *flow, const s_node_t *self, json_t *copy, const char *name,
         const char *alias, const char *code)
{
    json_t *value = json_object_get (copy, alias);
    if (!value)
        return 0;
    json_t *given = json_object_get (copy, name);
    if (given && !json_equal (given, value))
        return s_fail (flow, self->path, 400, code,
                       "%s (BullMQ's name for %s) and %s differ: give one", alias, name, name);
    if (!given)
        json_object_set (copy, name, value);
    json_object_del (copy, alias);
    return 0;
}

//  The POST /invoke body node i stands for: its own fields, BullMQ's
//  aliases read, dependsOn its own and then its children's ids (ids: the
//  children's job ids, or stand-ins while checking), its key, and
//  dependencyResults true for a parent that does not say.  NULL with
//  flow->error.
static json_t *
s_body (s_flow_t *flow, size_t i, bool stand_ins)
{
    s_node_t *self = &flow->node [i];
    json_t *copy = json_copy (self->node);
    if (!copy) {
        s_fail (flow, "", 503, "out_of_memory", "no memory to read the flow");
        return NULL;
    }
    json_object_del (copy, "children");
    if (s_alias (flow, self, copy, "botType", "queueName", "invalid_bot_type")
    ||  s_alias (flow, self, copy, "payload", "data", "invalid_payload")) {
        json_decref (copy);
        return NULL;
    }
    //  No key of its own (null is none, as /invoke reads it): the derived
    //  one.  A key of the wrong type is left for the translation to refuse.
    json_t *key = json_object_get (copy, "idempotencyKey");
    json_t *job_id = json_object_get (copy, "jobId");
    if ((!key || json_is_null (key)) && (!job_id || json_is_null (job_id)))
        json_object_set_new (copy, "idempotencyKey", json_string (self->key));
    if (self->count > 0) {
        json_t *deps = json_object_get (copy, "dependsOn");
        //  Not an array: left as it is, for the translation to refuse.
        if (!deps || json_is_null (deps)) {
            deps = json_array ();
            json_object_set_new (copy, "dependsOn", deps);
        }
        else
        if (json_is_array (deps)) {
            deps = json_copy (deps);
            json_object_set_new (copy, "dependsOn", deps);
        }
        for (size_t k = 0; json_is_array (deps) && k < self->count; k++) {
            const s_node_t *child = &flow->node [flow->kids [self->first + k]];
            char stand_in [40];
            snprintf (stand_in, sizeof stand_in, "flow-child-%zu", flow->kids [self->first + k]);
            json_array_append_new (deps, json_string (stand_ins ? stand_in : child->job_id));
        }
        if (!json_object_get (copy, "dependencyResults"))
            json_object_set_new (copy, "dependencyResults", json_true ());
    }
    return copy;
}

//  Node i's SUBMIT body (no req) appended to packer.  0, or -1 with
//  flow->error (its path named).  ignored: as gw_invoke_translate_value.
static int
s_translate (s_flow_t *flow, size_t i, bool stand_ins, const gw_invoke_limits_t *limits,
             bm_packer_t *packer, bm_packer_t *scratch, json_t **ignored)
{
    s_node_t *self = &flow->node [i];
    json_t *body = s_body (flow, i, stand_ins);
    if (!body)
        return -1;
    gw_invoke_error_t error;
    int rc = gw_invoke_translate_value (body, false, 0, limits, packer, scratch, self->bot_type,
                                        &self->priority, ignored, &error);
    json_decref (body);
    if (rc)
        return s_fail (flow, self->path, error.status, error.code, "%s", error.message);
    if (error.warning [0] && !self->warning)
        self->warning = json_string (error.warning);
    return 0;
}

//  The jobs made so far: [{"node", "jobId"}], for an answer that failed.
static json_t *
s_created (s_flow_t *flow)
{
    json_t *list = json_array ();
    for (size_t i = 0; i < flow->count; i++)
        if (flow->node [i].job_id [0])
            json_array_append_new (list, json_pack ("{s:s,s:s}", "node",
                *flow->node [i].path ? flow->node [i].path : "(top)",
                "jobId", flow->node [i].job_id));
    return list;
}

//  Answer a failure after the tree was checked: the error /invoke would
//  give, with the flow key and the jobs made, to go on with.  A refusal a
//  later request may not meet (429, 5xx: the broker away, busy or full)
//  is completed by the same body again; any other (a node refused for what
//  it says) would be refused the same way, so the words say to correct it.
//  path: the node refused ("" for the top), or NULL: no one node.
static void
s_answer_failed (gw_request_t *r, s_flow_t *flow, int status, const char *code,
                 const char *path, const char *message)
{
    json_t *created = s_created (flow);
    bool retryable = status == 429 || status >= 500;
    char text [GW_FLOW_PATH_MAX + 800];
    snprintf (text, sizeof text, "%s%s%s; %zu of the flow's %zu jobs were created%s\"%s\"%s",
              path ? (*path ? path : "(top)") : "", path ? ": " : "", message,
              json_array_size (created), flow->count,
              retryable ? ": send the same body with idempotencyKey "
                        : "; the same body again would be refused the same way: correct the "
                          "refused node (the created jobs' nodes must stay as they are) and send "
                          "the body with idempotencyKey ",
              flow->flow_key,
              retryable ? " on its top node to complete the flow"
                        : " on its top node to make the rest of the flow");
    r->reason = code;
    json_t *value = json_pack ("{s:{s:s,s:s},s:s,s:o}", "error", "code", code, "message", text,
                               "flowKey", flow->flow_key, "created", created);
    bm_warn (NULL, "flow %s refused after %zu of %zu jobs: %s", flow->flow_key,
             json_array_size (created), flow->count, code);
    gw_request_send_json (r, status, value, NULL);
}

//  One item of ACCEPTED_MANY for node i.  true when accepted; else
//  *rejection says why.
static bool
s_item (gw_request_t *r, s_flow_t *flow, size_t i, bm_msg_t *item, json_t *ignored,
        gw_rejection_t *rejection)
{
    gw_server_t *server = r->server;
    s_node_t *self = &flow->node [i];
    bm_codec_outcome_t outcome;
    bm_codec_error_t error;
    if (bm_codec_outcome_decode (item, &outcome, &error)) {
        bm_series_inc (server->broker_bad_replies);
        bm_error (NULL, "bad ACCEPTED_MANY item: %s", error.message);
        *rejection = (gw_rejection_t) { .status = 502, .code = "broker_error",
                                        .message = "the broker sent an unexpected answer" };
        return false;
    }
    if (!outcome.accepted) {
        gw_request_rejection (r, bm_msg_body (item), rejection);
        return false;
    }
    bm_series_inc (outcome.ok.duplicate ? server->duplicates : server->accepted);
    snprintf (self->job_id, sizeof self->job_id, "%s", outcome.ok.job_id);
    const char *status = gw_routes_accepted_status (outcome.ok.state, outcome.ok.delayed,
                                                    outcome.ok.duplicate);
    int64_t priority = outcome.ok.duplicate && outcome.ok.has_priority
                     ? outcome.ok.priority : self->priority;
    self->answer = gw_routes_accepted_value (outcome.ok.job_id, status, self->bot_type, priority,
                                             outcome.ok.has_position, outcome.ok.position,
                                             outcome.ok.duplicate);
    char warned [GW_ROUTES_WARNING_MAX];
    const char *warning = gw_routes_accepted_warning (warned, sizeof warned,
                                                      self->warning ? json_string_value (self->warning) : NULL,
                                                      outcome.ok.unserved, self->bot_type);
    if (self->answer && warning)
        json_object_set_new (self->answer, "warning", json_string (warning));
    if (self->answer && self->warning)
        bm_warn (self->job_id, "accepted with a warning: %s", json_string_value (self->warning));
    if (self->answer && ignored)
        json_object_set (self->answer, "ignored", ignored);
    bm_debug (self->job_id, "flow %s: node %s accepted%s", flow->flow_key,
              *self->path ? self->path : "(top)", outcome.ok.duplicate ? " (duplicate)" : "");
    return true;
}

//  Send the nodes at[0..count) (their SUBMIT bodies in items, at offsets)
//  as one SUBMIT_MANY.  0, or -1 after answering the request.
static int
s_send (gw_request_t *r, s_flow_t *flow, const size_t *at, size_t count, bm_packer_t *items,
        const size_t *offset, json_t **ignored)
{
    gw_server_t *server = r->server;
    int64_t req = gw_link_next_req (server->link);
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_batch_begin (&packer, true, req, count);
    for (size_t k = 0; k < count; k++)
        bm_packer_write_raw (&packer, items->sbuf.data + offset [at [k]],
                             offset [at [k] + 1] - offset [at [k]]);
    size_t size = 0;
    char *body = bm_packer_detach (&packer, &size);
    if (!body) {
        s_answer_failed (r, flow, 503, "out_of_memory", NULL, "no memory to encode the jobs");
        return -1;
    }
    bm_msg_t *reply = gw_request_broker (r, req, BM_SUBMIT_MANY, body, size, false);
    if (!reply) {
        const char *reason = r->reason ? r->reason : "broker_unavailable";
        if (streq (reason, "broker_unavailable"))
            s_answer_failed (r, flow, 503, reason, NULL, gw_request_unavailable_text (server));
        else
            s_answer_failed (r, flow, streq (reason, "broker_error") ? 502 : 504, reason, NULL,
                             "the broker did not answer: the outcome of the jobs sent is unknown");
        return -1;
    }
    bm_codec_batch_t batch;
    bm_codec_error_t error = { .message = "" };
    if (bm_msg_command (reply) != BM_ACCEPTED_MANY
    ||  bm_codec_batch_decode (reply, &batch, &error) || batch.count != count) {
        gw_rejection_t rejection = { .status = 502, .code = "broker_error",
                                     .message = "the broker sent an unexpected answer" };
        if (bm_msg_command (reply) == BM_REJECTED)
            gw_request_rejection (r, bm_msg_body (reply), &rejection);
        else
            bm_series_inc (server->broker_bad_replies);
        bm_msg_destroy (&reply);
        s_answer_failed (r, flow, rejection.status, rejection.code, NULL, rejection.message);
        return -1;
    }
    //  Every item is read, so that the answer names all the jobs made.
    gw_rejection_t rejection = { .status = 0 };
    const char *path = NULL;
    bm_msg_t *item = bm_msg_new ();
    for (size_t k = 0; k < count; k++) {
        gw_rejection_t refused;
        if (!item || bm_codec_batch_next (&batch, item, &error) != 1)
            refused = (gw_rejection_t) { .status = 502, .code = "broker_error",
                                         .message = "the broker sent an unexpected answer" };
        else
        if (s_item (r, flow, at [k], item, ignored [at [k]], &refused))
            continue;
        if (!rejection.status) {
            rejection = refused;
            path = flow->node [at [k]].path;
        }
    }
    bm_msg_destroy (&item);
    bm_msg_destroy (&reply);
    if (rejection.status) {
        s_answer_failed (r, flow, rejection.status, rejection.code, path, rejection.message);
        return -1;
    }
    return 0;
}

//  Submit the nodes of one height, in SUBMIT_MANY messages.  0, or -1
//  after answering the request.
static int
s_submit_height (gw_request_t *r, s_flow_t *flow, int height, json_t **ignored)
{
    bm_packer_t items, scratch;
    bm_packer_init (&items);
    bm_packer_init (&scratch);
    size_t *offset = (size_t *) calloc (flow->count + 1, sizeof (size_t));
    size_t *at = (size_t *) calloc (flow->count, sizeof (size_t));
    int rc = 0;
    if (!offset || !at) {
        s_answer_failed (r, flow, 503, "out_of_memory", NULL, "no memory to encode the jobs");
        rc = -1;
    }
    size_t count = 0, bytes = 0;
    for (size_t i = 0; rc == 0 && i <= flow->count; i++) {
        bool last = i == flow->count;
        if (!last && flow->node [i].height != height)
            continue;
        size_t size = 0;
        if (!last) {
            size_t mark = items.sbuf.size;
            //  Checked before: only memory can fail it now.
            if (s_translate (flow, i, false, &r->server->limits, &items, &scratch, NULL)) {
                s_answer_failed (r, flow, flow->error.status, flow->error.code, NULL,
                                 flow->error.message);
                rc = -1;
                break;
            }
            offset [i] = mark;
            offset [i + 1] = items.sbuf.size;
            size = items.sbuf.size - mark;
        }
        //  The message so far goes when it is full, or at the end.
        if (count > 0 && (last || bytes + size > GW_FLOW_MESSAGE_BYTES || count == BM_MAX_BATCH)) {
            //  offset [at [k] + 1] is its end (the next node's start,
            //  the same offset, when that node is of this height too).
            rc = s_send (r, flow, at, count, &items, offset, ignored);
            count = bytes = 0;
        }
        if (!last && rc == 0) {
            at [count++] = i;
            bytes += size;
        }
    }
    free (offset);
    free (at);
    bm_packer_destroy (&items);
    bm_packer_destroy (&scratch);
    return rc;
}

//  The 202 value of node i and its descendants: its accepted value with
//  "children": [...] (BullMQ's JobNode tree, the job's fields flattened).
static json_t *
s_tree (s_flow_t *flow, size_t i)
{
    s_node_t *self = &flow->node [i];
    json_t *value = json_incref (self->answer);
    if (!value || self->count == 0)
        return value;
    json_t *children = json_array ();
    for (size_t k = 0; k < self->count; k++)
        json_array_append_new (children, s_tree (flow, flow->kids [self->first + k]));
    json_object_set_new (value, "children", children);
    return value;
}

//  Read and check the tree into flow.  0, or -1 with flow->error.
static int
s_by_key (const void *a, const void *b)
{
    const s_node_t *x = *(const s_node_t *const *) a;
    const s_node_t *y = *(const s_node_t *const *) b;
    int rc = strcmp (x->key, y->key);
    return rc ? rc : (x < y ? -1 : x > y);      //  Same key: in tree order
}

//  Two nodes with one idempotency key (a node's own equal to another's,
//  to the flow's or to a derived one) would be one job to the broker: a
//  parent answered with its child's id, or a parent waiting twice for one
//  id, refused half-way, for ever.  0, or -1 with flow->error.
static int
s_keys_distinct (s_flow_t *flow)
{
    const s_node_t **order = (const s_node_t **) malloc (flow->count * sizeof (s_node_t *));
    if (!order)
        return s_fail (flow, "", 503, "out_of_memory", "no memory to check the flow's keys");
    for (size_t i = 0; i < flow->count; i++)
        order [i] = &flow->node [i];
    qsort (order, flow->count, sizeof (s_node_t *), s_by_key);
    int rc = 0;
    for (size_t i = 1; i < flow->count && rc == 0; i++) {
        const s_node_t *first = order [i - 1], *second = order [i];
        if (streq (first->key, second->key))
            rc = s_fail (flow, second->path, 400, "invalid_idempotency_key",
                         "its idempotency key \"%s\" is also the key of %s: each job of a "
                         "flow needs its own (a node's own key must differ from the flow's, "
                         "from the other nodes' and from the derived \"<flowKey>/<path>\" ones)",
                         second->key, *first->path ? first->path : "the top node");
    }
    free (order);
    return rc;
}

static int
s_check (s_flow_t *flow, json_t *root, const gw_invoke_limits_t *limits, json_t **ignored)
{
    if (!json_is_object (root))
        return s_fail (flow, "", 400, "invalid_body",
                       "the body must be a JSON object: a POST /invoke body with \"children\"");
    const char *own = s_own_key (root);
    if (own)
        snprintf (flow->flow_key, sizeof flow->flow_key, "%s", own);
    else {
        unsigned char bytes [10];
        if (RAND_bytes (bytes, sizeof bytes) != 1)
            return s_fail (flow, "", 503, "out_of_memory", "no randomness for a flow key");
        int n = snprintf (flow->flow_key, sizeof flow->flow_key, "flow-");
        for (size_t i = 0; i < sizeof bytes; i++)
            n += snprintf (flow->flow_key + n, sizeof flow->flow_key - (size_t) n, "%02x", bytes [i]);
    }
    if (s_collect (flow, root, SIZE_MAX, 1, "", ""))
        return -1;
    if (s_keys_distinct (flow))
        return -1;
    //  Every node as it would be sent, with stand-ins for the ids.
    bm_packer_t packer, scratch;
    bm_packer_init (&packer);
    bm_packer_init (&scratch);
    int rc = 0;
    for (size_t i = 0; i < flow->count && rc == 0; i++) {
        bm_packer_reset (&packer);
        rc = s_translate (flow, i, true, limits, &packer, &scratch, &ignored [i]);
    }
    bm_packer_destroy (&packer);
    bm_packer_destroy (&scratch);
    return rc;
}

void
gw_routes_flows (gw_request_t *r)
{
    gw_server_t *server = r->server;
    char *text;
    size_t size;
    if (gw_request_read_json_text (r, &text, &size))
        return;
    gw_invoke_error_t error;
    //  Each level of the tree nests two containers (the node, its children).
    json_t *root = gw_invoke_parse (text, size, 2 * GW_FLOW_MAX_DEPTH, &error);
    free (text);
    if (!root) {
        r->reason = error.code;
        gw_request_error (r, error.status, error.code, error.message, NULL);
        return;
    }
    size_t max = (size_t) server->config.max_batch;
    s_flow_t flow = { .max = max };
    flow.node = (s_node_t *) calloc (max, sizeof (s_node_t));
    flow.kids = (size_t *) calloc (max, sizeof (size_t));
    json_t **ignored = (json_t **) calloc (max, sizeof (json_t *));
    if (!flow.node || !flow.kids || !ignored)
        s_fail (&flow, "", 503, "out_of_memory", "no memory to read the flow");
    else
    if (s_check (&flow, root, &server->limits, ignored) == 0) {
        int top = flow.node [0].height;
        int rc = 0;
        for (int height = 0; height <= top && rc == 0; height++)
            rc = s_submit_height (r, &flow, height, ignored);
        if (rc == 0) {
            json_t *value = s_tree (&flow, 0);
            if (value) {
                json_object_set_new (value, "flowKey", json_string (flow.flow_key));
                bm_info (flow.node [0].job_id, "flow %s: %zu jobs accepted", flow.flow_key,
                         flow.count);
                char extra [200];
                snprintf (extra, sizeof extra, "Location: /job/%s\r\n", flow.node [0].job_id);
                gw_request_send_json (r, 202, value, extra);
            }
            else
                gw_request_error (r, 503, "out_of_memory", "no memory for the answer", NULL);
        }
    }
    if (!r->status) {
        r->reason = flow.error.code;
        gw_request_error (r, flow.error.status, flow.error.code, flow.error.message, NULL);
    }
    for (size_t i = 0; i < flow.count; i++) {
        json_decref (flow.node [i].answer);
        json_decref (flow.node [i].warning);
        json_decref (ignored [i]);
    }
    free (ignored);
    free (flow.node);
    free (flow.kids);
    json_decref (root);
}
