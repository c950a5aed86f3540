'use strict';
/*  botmesh.js - Node.js client and worker for the botmesh broker.

    Written from docs/protocol.md alone (BMC01 for clients, BMW01 for
    workers): three frames per message (header, 1-byte command, msgpack
    map) over a ZeroMQ DEALER socket connected to the broker's ROUTER.

    Uses npm's zeromq@6 and @msgpack/msgpack (useBigInt64). Integers that
    need 64 bits on the wire (ms timestamps) decode as Numbers when they are
    safe integers and as BigInt beyond 2^53; safe integer Numbers beyond 32
    bits are sent as 64-bit integers, never as floats.

    Every failure rejects with a BotmeshError {code, message}:
      Rejected       the broker answered REJECTED (unknown_bot_type, bad_request, ...)
      BrokerTimeout  code 'broker_timeout': no reply in time (broker down?)
      WaitTimeout    code 'wait_timeout': the job did not end in time
      JobFailed      client.run(): the job failed/was cancelled (its error code)
*/
const crypto = require('crypto');
const os = require('os');
const { EventEmitter } = require('events');
let zmq, msgpack;
try {
  zmq = require('zeromq');
  msgpack = require('@msgpack/msgpack');
} catch (err) {
  // Say what to install rather than only which module is missing.
  if (err.code !== 'MODULE_NOT_FOUND') throw err;
  throw new Error(`botmesh.js needs zeromq@6 and @msgpack/msgpack (${err.message.split('\n')[0]}): ` +
                  `run npm ci --prefix ${__dirname} (or npm install zeromq@6 @msgpack/msgpack in your project)`);
}

const CLIENT_HEADER = Buffer.from('BMC01');
const WORKER_HEADER = Buffer.from('BMW01');

const C = {
  SUBMIT: 0x01, STATUS: 0x02, CANCEL: 0x03, STATS: 0x04, RETRY: 0x05, REDELIVER: 0x06,
  LIST: 0x07, PING: 0x08, METRICS: 0x09,
  ACCEPTED: 0x81, REJECTED: 0x82, REPLY: 0x83, RESULT: 0x84,
  // batches (protocol.md 4a): several jobs in one message
  SUBMIT_MANY: 0x0a, ACCEPTED_MANY: 0x85, RESULT_MANY: 0x86,
  // time and control (protocol.md 4): a bot type's queue, one job, schedules
  QUEUE: 0x0b, REMOVE: 0x0c, PROMOTE: 0x0d, SCHEDULE: 0x0e,
  // live job events (protocol.md 4, SUBSCRIBE): pushed EVENTs while subscribed
  SUBSCRIBE: 0x0f, UNSUBSCRIBE: 0x10, EVENT: 0x87,
};
const JOB_LOG_MAX_BYTES = 16384;        // the tail of a job's log sent with DONE (as the C worker's)
// Recent DONEs a worker keeps for a reconnect, as the C worker: at most
// DONE_KEEP_MAX of at most DONE_KEEP_BYTES of bodies (msgpack), the oldest
// dropped first: the DONEs of its last 12 s (heartbeat 1 s x liveness 3,
// 4 times) up to ~8,000 jobs/s.
const DONE_KEEP_MAX = 100000;
const DONE_KEEP_BYTES = 64 * 1024 * 1024;
// Replaced (DISCONNECT replaced): another live process registered under this
// worker's name.  Registering again at once, both would take the name from
// each other in a loop; the wait doubles from 1 s to 30 s while it goes on
// (half of it plus up to half at random), and a streak ends after 90 s
// unreplaced (protocol.md section 5, as the C worker).
const REPLACED_FIRST_MS = 1000;
const REPLACED_MAX_MS = 30000;
const REPLACED_QUIET_MS = 90000;
const MAX_BATCH = 1000;                 // items of one batch message
const BATCH_BYTES = 1 << 20;            // a batch message's jobs, encoded: at most this much
                                        // (half of MAX_FRAME_BYTES' default), one large job alone
const FLOW_MAX_DEPTH = 32;              // levels of a flow() tree, as the gateway's POST /flows
const MAX_DEPENDS = 100;                // job ids one job may wait for (dependsOn)
const ID_RE = /^[\x21-\x7e]{1,128}$/;     // a job id or idempotency key: printable ASCII, no spaces
// Refusals a later call may not meet (the broker away, busy or full): the
// same call again can complete what they stopped.  Any other refusal (a bad
// job, a key naming another job) meets the same call again.
const RETRYABLE_CODES = new Set(['queue_full', 'store_unavailable', 'shutting_down', 'not_leader',
  'broker_timeout', 'broker_unavailable', 'protocol_error']);
const W = {
  READY: 0x01, JOB: 0x02, PROGRESS: 0x03, DONE: 0x04, HEARTBEAT: 0x05, DISCONNECT: 0x06,
  CANCEL: 0x07, RELEASE: 0x08, NACK: 0x09,
};
const TERMINAL_STATES = new Set(['completed', 'failed', 'cancelled']);
// The states list() filters on, and BullMQ's names of them (as GET /jobs reads them).
const JOB_STATES = new Set(['queued', 'running', 'delayed', 'waiting-children', 'completed', 'failed',
  'cancelled']);
const STATE_ALIASES = { waiting: 'queued', wait: 'queued', active: 'running' };
const INVALID_STATE_MESSAGE = 'state must be one of: queued (or waiting, wait), running (or active), delayed, '
  + 'waiting-children, completed, failed, cancelled';
// The states of a job's webhook list() filters on (as GET /jobs?webhook= reads them).
const WEBHOOK_STATES = new Set(['pending', 'retrying', 'delivered', 'failed']);
const INVALID_WEBHOOK_MESSAGE = 'webhook must be one of: pending, retrying, delivered, failed';
const ENDPOINT_RE = /^(tcp:\/\/(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d{1,5}|\*)|ipc:\/\/\S+|inproc:\/\/\S+)$/;
const BOT_TYPE_RE = /^[a-z0-9_-]{1,32}$/;
const MAX_PAYLOAD_BYTES = 1 << 20;
const REQ_WRAP = 2 ** 31;

// --- errors -----------------------------------------------------------------

class BotmeshError extends Error {
  constructor(code, message, body) {
    super(message);
    this.name = this.constructor.name;
    this.code = code;             // e.g. 'unknown_bot_type', 'broker_timeout'
    this.body = body;             // the broker's reply body, when there is one
  }
}
class Rejected extends BotmeshError {}
/** flow(): the broker refused a node: flowKey names the flow to submit
 *  again, created maps the created nodes' paths ('' the top node, '1.0' its
 *  second child's first child) to job ids, retryable says whether the same
 *  call again can complete it (else the refused node needs correcting first). */
class FlowRejected extends Rejected {
  constructor(code, message, flowKey, created) {
    super(code, message);
    this.flowKey = flowKey;
    this.created = created;
    this.retryable = RETRYABLE_CODES.has(code);
  }
}
class BrokerTimeout extends BotmeshError {}
class ProtocolError extends BotmeshError {}
class WaitTimeout extends BotmeshError {
  constructor(code, message, job) { super(code, message); this.job = job; }
}
class JobFailed extends BotmeshError {
  constructor(code, message, job) { super(code, message); this.job = job; }
}
/** Throw from a worker handler to end the job with a chosen error code. */
class JobError extends Error {
  constructor(code, message) { super(message); this.name = 'JobError'; this.code = code; }
}

// --- codec --------------------------------------------------------------------

// A string with a lone surrogate has no UTF-8 form: @msgpack/msgpack would
// write invalid bytes, which the peer cannot read.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?:^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/;
function wellFormed(s) {
  if (LONE_SURROGATE.test(s)) {
    throw new TypeError(`string ${JSON.stringify(s.slice(0, 40))} holds a lone surrogate (not valid UTF-8); `
      + 'use s.toWellFormed() or drop it');
  }
  return s;
}

// @msgpack/msgpack with useBigInt64 encodes integer Numbers beyond 32 bits
// as float64: turn them into BigInt first so they go out as int64/uint64.
function toWire(v) {
  if (typeof v === 'number') {
    return (Number.isSafeInteger(v) && (v > 0xffffffff || v < -0x80000000)) ? BigInt(v) : v;
  }
  if (typeof v === 'string') return wellFormed(v);
  if (Array.isArray(v)) return v.map(toWire);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);               // bin
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof Map) {
    const out = {};
    for (const [k, x] of v) {
      if (typeof k !== 'string' && typeof k !== 'number') {
        throw new TypeError(`cannot encode a Map with a ${typeof k} key: msgpack maps here have string or number keys`);
      }
      if (x !== undefined) out[wellFormed(String(k))] = toWire(x);
    }
    return out;
  }
  if (v instanceof Set) throw new TypeError('cannot encode a Set: send an array ([...set])');
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    if (typeof v.toJSON === 'function') return toWire(v.toJSON());
    const out = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[wellFormed(k)] = toWire(x);
    return out;
  }
  return v;
}

// BigInt within the safe range back to Number; bigger ones stay BigInt.
function fromWire(v) {
  if (typeof v === 'bigint') {
    return (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER)) ? Number(v) : v;
  }
  if (Array.isArray(v)) return v.map(fromWire);
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
    for (const k of Object.keys(v)) v[k] = fromWire(v[k]);
  }
  return v;
}

function pack(obj) {
  let wire;
  try {
    wire = toWire(obj);
    return Buffer.from(msgpack.encode(wire, { useBigInt64: true }));
  } catch (e) {
    if (wire === undefined && e instanceof TypeError) throw e;   // a lone surrogate: the caller's mistake
    throw new BotmeshError('bad_request', `cannot encode message as msgpack: ${e.message}`);
  }
}

// Any map key becomes a string key: a number or a BigInt as its decimal
// text, true/false/null as their names, an array or a map as its JSON text.
function keyText(key) {
  if (typeof key === 'string' || typeof key === 'number') return key;
  if (typeof key === 'bigint') return key.toString();
  try {
    return JSON.stringify(key, (k, x) => (typeof x === 'bigint' ? x.toString() : x)) ?? String(key);
  } catch (e) {
    return String(key);
  }
}

// @msgpack/msgpack decodes short strings in JavaScript, which reads a byte
// that is not UTF-8 as the start of a longer character and runs on into the
// next value: a string that is not all ASCII is read here by TextDecoder,
// each invalid byte becoming U+FFFD.
const UTF8 = new TextDecoder('utf-8');
class LenientDecoder extends msgpack.Decoder {
  decodeUtf8String(byteLength, headerOffset) {
    const start = this.pos + headerOffset;
    if (byteLength <= this.maxStrLength && start + byteLength <= this.bytes.byteLength) {
      for (let i = start; i < start + byteLength; i++) {
        if (this.bytes[i] >= 0x80) {
          this.pos = start + byteLength;
          return UTF8.decode(this.bytes.subarray(start, start + byteLength));
        }
      }
    }
    return super.decodeUtf8String(byteLength, headerOffset);
  }
}

function unpack(buf) {
  const n = buf.length;
  // No container or string can declare more items than there are bytes.
  return new LenientDecoder({
    useBigInt64: true, maxStrLength: n, maxBinLength: n, maxArrayLength: n, maxMapLength: n, maxExtLength: n,
    mapKeyConverter: keyText,
  }).decode(buf);
}

function unpackMap(buf) {
  let obj;
  try {
    obj = unpack(buf);
  } catch (e) {
    return null;
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj) || obj instanceof Uint8Array) return null;
  return fromWire(obj);
}

// Where the msgpack value at buf[i] ends (it is not decoded), or throws.
function skipValue(buf, i) {
  const len = (at, size) => (size === 1 ? buf.readUInt8(at) : size === 2 ? buf.readUInt16BE(at) : buf.readUInt32BE(at));
  for (let left = 1; left > 0; left--) {
    const b = buf.readUInt8(i);
    if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) i += 1;
    else if (b <= 0x8f) { left += 2 * (b & 0x0f); i += 1; }
    else if (b <= 0x9f) { left += b & 0x0f; i += 1; }
    else if (b <= 0xbf) i += 1 + (b & 0x1f);
    else if (b >= 0xc4 && b <= 0xc6) { const s = 1 << (b - 0xc4); i += 1 + s + len(i + 1, s); }          // bin
    else if (b >= 0xc7 && b <= 0xc9) { const s = 1 << (b - 0xc7); i += 2 + s + len(i + 1, s); }          // ext
    else if (b >= 0xca && b <= 0xd3) i += 1 + [4, 8, 1, 2, 4, 8, 1, 2, 4, 8][b - 0xca];                   // numbers
    else if (b >= 0xd4 && b <= 0xd8) i += 2 + (1 << (b - 0xd4));                                         // fixext
    else if (b >= 0xd9 && b <= 0xdb) { const s = 1 << (b - 0xd9); i += 1 + s + len(i + 1, s); }          // str
    else if (b === 0xdc || b === 0xdd) { const s = b === 0xdc ? 2 : 4; left += len(i + 1, s); i += 1 + s; }
    else if (b === 0xde || b === 0xdf) { const s = b === 0xde ? 2 : 4; left += 2 * len(i + 1, s); i += 1 + s; }
    else throw new RangeError(`not msgpack: 0x${b.toString(16)} at ${i}`);
  }
  if (i > buf.length) throw new RangeError('truncated');
  return i;
}

/** The jobId of a body frame that does not decode as a whole, or null. */
function jobIdOf(buf) {
  try {
    const b = buf.readUInt8(0);
    let count;
    let i;
    if (b >= 0x80 && b <= 0x8f) { count = b & 0x0f; i = 1; }
    else if (b === 0xde) { count = buf.readUInt16BE(1); i = 3; }
    else if (b === 0xdf) { count = buf.readUInt32BE(1); i = 5; }
    else return null;
    for (let k = 0; k < count; k++) {
      const keyEnd = skipValue(buf, i);
      const valueEnd = skipValue(buf, keyEnd);
      let key;
      try { key = unpack(buf.subarray(i, keyEnd)); } catch (e) { key = null; }
      if (key === 'jobId') {
        const id = msgpack.decode(buf.subarray(keyEnd, valueEnd));
        return typeof id === 'string' && id ? id : null;
      }
      i = valueEnd;
    }
  } catch (e) {
    // not msgpack: nothing to answer
  }
  return null;
}

/** [command, body] of a well-formed message, or null. */
function decode(frames, header) {
  if (frames.length !== 3 || !header.equals(frames[0]) || frames[1].length !== 1) return null;
  const body = unpackMap(frames[2]);
  return body ? [frames[1][0], body] : null;
}

/**
 * $BROKER_ENDPOINT (a bind address like tcp://*:5555 becomes 127.0.0.1) or tcp://127.0.0.1:5555;
 * for a client (client true) $BROKER_CLIENT_ENDPOINT first, as botmesh-client reads it.
 */
function defaultEndpoint(client = false) {
  const ep = (client && process.env.BROKER_CLIENT_ENDPOINT) || process.env.BROKER_ENDPOINT
    || 'tcp://127.0.0.1:5555';
  return ep.replace('://*:', '://127.0.0.1:').replace('://0.0.0.0:', '://127.0.0.1:');
}

/**
 * A list of brokers, one of which leads (BROKER_ENDPOINT "tcp://b1:5555,tcp://b2:5555").
 * A peer moves to the next endpoint (or the leader a standby names) on
 * not_leader or a silent broker, waiting a backoff of 100 ms doubling to 2 s
 * until a leader answers (docs/protocol.md section 7b). The standby that
 * answers not_leader right after our leader went silent is the one about to
 * take over: it is asked again every 100 ms, 40 times (longer than a lease),
 * as the C peers do.
 */
class Endpoints {
  constructor(spec) {
    if (typeof spec !== 'string') throw new TypeError(`endpoint must be a string like tcp://host:port, got ${show(spec)}`);
    this.items = spec.split(',').map((e) => e.trim());
    if (this.items.some((e) => !e)) throw new TypeError(`bad broker endpoint list ${JSON.stringify(spec)}`);
    for (const e of this.items) {
      if (!ENDPOINT_RE.test(e)) {
        throw new TypeError(`bad broker endpoint ${JSON.stringify(e)}: expected tcp://host:port `
          + '(e.g. tcp://127.0.0.1:5555; several brokers: tcp://b1:5555,tcp://b2:5555)');
      }
    }
    this.index = 0;
    this.backoffMs = 100;
    this.silent = -1;   // the one that went silent last (a standby names it until its lease ends)
    this.quick = 0;     // quick asks left of the standby about to lead
  }

  get size() { return this.items.length; }

  get current() { return this.items[this.index]; }

  /** Move on; returns the ms to wait before connecting. */
  next(leader, silent = false) {
    const n = this.items.length;
    if (silent) {
      this.silent = this.index;
      this.quick = 40;
    }
    if (typeof leader === 'string' && this.items.includes(leader) && this.items.indexOf(leader) !== this.silent) {
      this.index = this.items.indexOf(leader);
    } else {
      this.index = (this.index + 1) % n;
      if (!silent && this.index === this.silent && n > 1) {
        this.index = (this.index + n - 1) % n;   // this standby is about to take over
        if (this.quick > 0) {
          this.quick -= 1;
          return 100;
        }
        this.silent = -1;                        // longer than a lease: it holds its lease after all
      }
    }
    const wait = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 2000);
    return wait;
  }

  served() { this.backoffMs = 100; this.silent = -1; this.quick = 0; }
}

function socketOptions(curve, extra) {
  const o = Object.assign({ linger: 0 }, extra || {});
  if (curve) {
    o.curveServerKey = curve.serverKey;
    o.curvePublicKey = curve.publicKey;
    o.curveSecretKey = curve.secretKey;
  }
  return o;
}

const delay = (ms) => new Promise((r) => setTimeout(r, ms));

// --- argument checks ------------------------------------------------------------

// Names a user of BullMQ, of Celery or of the Python client may give for ours.
const OPTION_ALIASES = {
  delay: 'delayMs', jobId: 'idempotencyKey', timeout: 'timeoutMs', countdown: 'delayMs', eta: 'runAt',
  webhook_url: 'webhookUrl', idempotency_key: 'idempotencyKey', timeout_ms: 'timeoutMs',
  max_attempts: 'maxAttempts', delay_ms: 'delayMs', run_at: 'runAt', bot_type: 'botType',
  depends_on: 'dependsOn', on_dependency_failure: 'onDependencyFailure',
  dependency_results: 'dependencyResults',
  heartbeat_ms: 'heartbeatMs', stop_grace: 'stopGraceMs', max_result_bytes: 'maxResultBytes',
  older_than_ms: 'olderThanMs', poll_interval: 'pollMs',
};
// BullMQ's flow options, each one value of ours.
const VALUE_ALIASES = {
  failParentOnFailure: "onDependencyFailure: 'fail'",
  ignoreDependencyOnFailure: "onDependencyFailure: 'ignore'",
};

function show(v) {
  if (typeof v === 'bigint') return `${v}n`;
  try { return JSON.stringify(v) ?? String(v); } catch (e) { return String(v); }
}

/** A TypeError (or Kind) for a wrong option or argument, with .code 'bad_request'. */
function badOption(message, Kind = TypeError) {
  const e = new Kind(message);
  e.code = 'bad_request';
  return e;
}

/** A flow() tree refused before anything is sent, with the code and words of
 *  the gateway's POST /flows, the message starting with the node's path
 *  ('children[1].children[0]: ...', none for the top node). */
function flowRefusal(path, code, message, Kind = RangeError) {
  const e = badOption(path ? `${path}: ${message}` : message, Kind);
  e.code = code;
  return e;
}

/** Read and check a flow() tree as POST /flows does, the whole of it before
 *  any job is made. Returns {nodes, flowKey}: the nodes depth first, the top
 *  one first, each {job (its submitMany job, its idempotencyKey set), path
 *  (child indexes), where, kids, height (0: a leaf), id (null)}. Throws a
 *  RangeError or TypeError with .code: invalid_flow (children not an array,
 *  deeper than FLOW_MAX_DEPTH), too_many_jobs (more than MAX_BATCH nodes),
 *  invalid_dependencies (children and dependsOn past MAX_DEPENDS),
 *  invalid_idempotency_key (a bad key, two nodes with one key), or
 *  bad_request (a node's options, as submit checks them). */
function flowNodes(tree) {
  const tooMany = `the flow holds more than ${MAX_BATCH} jobs; at most ${MAX_BATCH} go in one request (MAX_BATCH)`;
  const nodes = [];
  let slots = 0;                // children seen so far: every node but the top is one
  const walk = (node, path, depth) => {
    const where = path.map((i) => `children[${i}]`).join('.');
    if (depth > FLOW_MAX_DEPTH) throw flowRefusal(where, 'invalid_flow', `the tree is deeper than ${FLOW_MAX_DEPTH} levels`);
    if (nodes.length === MAX_BATCH) throw flowRefusal('', 'too_many_jobs', tooMany);
    if (!node || typeof node !== 'object' || Array.isArray(node)) {
      throw flowRefusal(where, 'invalid_body', 'a node must be an object (a submitMany job with children)', TypeError);
    }
    const children = node.children === undefined || node.children === null ? [] : node.children;
    if (!Array.isArray(children)) {
      throw flowRefusal(where, 'invalid_flow', 'children must be an array of nodes (submitMany jobs)', TypeError);
    }
    const own = Array.isArray(node.dependsOn) ? node.dependsOn.length : 0;
    if (children.length + own > MAX_DEPENDS) {
      throw flowRefusal(where, 'invalid_dependencies',
        `${children.length} children and ${own} dependsOn: a job waits for at most ${MAX_DEPENDS} jobs`);
    }
    // counted before they are walked: a tree too large is refused at once
    if (slots + children.length > MAX_BATCH - 1) throw flowRefusal(where, 'too_many_jobs', tooMany);
    slots += children.length;
    const job = Object.assign({}, node);
    delete job.children;
    const entry = { job, path, where: where || 'the top node', kids: [], height: 0, id: null };
    nodes.push(entry);
    children.forEach((child, i) => {
      const kid = walk(child, path.concat([i]), depth + 1);
      entry.kids.push(kid);
      entry.height = Math.max(entry.height, kid.height + 1);
    });
    return entry;
  };
  const top = walk(tree, [], 1);
  const given = top.job.idempotencyKey;
  const flowKey = given === undefined || given === null ? `flow-${crypto.randomBytes(10).toString('hex')}` : given;
  const keys = nodes.map((entry) => {
    const path = entry.path.join('.');
    const at = path ? entry.where : '';
    let key = entry.job.idempotencyKey;
    if (key === undefined || key === null) {
      key = entry === top ? flowKey : `${flowKey}/${path}`;
      if (key.length > 128) {
        throw flowRefusal(at, 'invalid_idempotency_key', `the job's derived idempotency key (flow key "/" its path `
          + `${path}) is longer than 128 characters: give the flow a shorter idempotencyKey, or the node its own`);
      }
      entry.job.idempotencyKey = key;
    }
    if (typeof key !== 'string' || !ID_RE.test(key)) {
      throw flowRefusal(at, 'invalid_idempotency_key',
        'idempotencyKey must be 1 to 128 printable ASCII characters without spaces',
        typeof key === 'string' ? RangeError : TypeError);
    }
    return key;
  });
  // Two nodes with one key would be one job to the broker: a parent answered
  // with its child's id, or waiting twice for one id, refused half-way for
  // ever. The first pair in key order is named (as the gateway does).
  const order = nodes.map((e, i) => i).sort((a, b) => (keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : a - b));
  for (let k = 1; k < order.length; k++) {
    const [first, second] = [order[k - 1], order[k]];
    if (keys[first] === keys[second]) {
      throw flowRefusal(nodes[second].where, 'invalid_idempotency_key', `its idempotency key "${keys[second]}" is `
        + `also the key of ${nodes[first].where}: each job of a flow needs its own (a node's own key must differ `
        + 'from the flow\'s, from the other nodes\' and from the derived "<flowKey>/<path>" ones)');
    }
  }
  for (const entry of nodes) {
    if (entry.kids.length && entry.job.dependencyResults === undefined) entry.job.dependencyResults = true;
    // each job as submitMany will send it: a bad one is refused now
    if (typeof entry.job.botType !== 'string') throw badOption(`${entry.where} must have a botType (a string)`);
    Client._submitBody(entry.job.botType, entry.job.payload, entry.job, `flow ${entry.where}`, ['botType', 'payload']);
  }
  return { nodes, flowKey };
}

/** The words of a flow() refused after it was checked: what stopped it,
 *  what was made, and how to go on, by the refusal's kind. */
function flowHalfway(message, code, flowKey, created, count) {
  const made = `${message}; ${Object.keys(created).length} of the flow's ${count} jobs were created`;
  if (RETRYABLE_CODES.has(code)) {
    return `${made}: submit the same tree with idempotencyKey ${flowKey} on its top node to complete it`;
  }
  return `${made}; the same tree again would be refused the same way: correct the refused node (the created `
    + `jobs' nodes must stay as they are) and submit the tree with idempotencyKey ${flowKey} on its top node `
    + 'to make the rest of the flow';
}

/**
 * opts as an object of known options (undefined/null: {}); else a TypeError
 * naming the call, the unknown option and, for a known mistake, its name here.
 * aliases: {wrong: right} beyond OPTION_ALIASES (e.g. timeout -> requestTimeoutMs).
 * These TypeErrors carry .code 'bad_request', as the broker's refusal of the
 * same mistake does (and as every rejection here carries a .code).
 */
function checkOptions(where, opts, known, aliases = {}) {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object' || Array.isArray(opts)) {
    throw badOption(`${where}: options must be an object {${known.join(', ')}}, got ${show(opts)}`);
  }
  for (const k of Object.keys(opts)) {
    if (known.includes(k)) continue;
    if (VALUE_ALIASES[k] && known.includes('onDependencyFailure')) {
      throw badOption(`${where}: unknown option '${k}': the option here is ${VALUE_ALIASES[k]}`);
    }
    const right = aliases[k] || OPTION_ALIASES[k];
    if (right && known.includes(right)) {
      throw badOption(`${where}: unknown option '${k}': the name here is '${right}'`
        + (right.endsWith('Ms') ? ' (milliseconds)' : ''));
    }
    throw badOption(`${where}: unknown option '${k}' (known: ${known.join(', ')})`);
  }
  return opts;
}

/** A TypeError (code bad_request) unless v (when given) is of the kind; kinds: ms, int, string, bool, object, number, backoff. */
function checkType(where, name, v, kind) {
  if (v === undefined || v === null) return;
  const ok = {
    ms: () => typeof v === 'number' && Number.isFinite(v) && v > 0,
    int: () => (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint',
    number: () => typeof v === 'number' && Number.isFinite(v),
    string: () => typeof v === 'string',
    bool: () => typeof v === 'boolean',
    object: () => typeof v === 'object' && !Array.isArray(v),
    backoff: () => (typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'object' && !Array.isArray(v)),
    ids: () => Array.isArray(v) && v.every((id) => typeof id === 'string'),
  }[kind]();
  if (!ok) {
    const what = { ms: 'a number of milliseconds > 0', int: 'an integer', number: 'a number', string: 'a string',
      bool: 'a boolean', object: 'an object', backoff: 'an object or an integer (a fixed delay in ms)',
      ids: 'an array of job ids (strings)' }[kind];
    throw badOption(`${where}: ${name} must be ${what}, got ${show(v)}`);
  }
}

/** The longest backoff delay the broker takes (a day), in ms. */
const BACKOFF_MAX_MS = 86400000;

/**
 * The backoff as the broker reads it, as the HTTP API reads BullMQ's forms: a number N (a fixed
 * delay) becomes {type: 'fixed', delayMs: N}, {type, delay} becomes {type, delayMs}.  A number
 * outside 0..BACKOFF_MAX_MS is a RangeError naming backoff.
 */
function wireBackoff(backoff) {
  if (typeof backoff === 'number') {
    if (!(backoff >= 0 && backoff <= BACKOFF_MAX_MS)) {
      throw badOption(`backoff as a number is a fixed delay: an integer from 0 to ${BACKOFF_MAX_MS} (ms), got ${backoff}`, RangeError);
    }
    return { type: 'fixed', delayMs: backoff };
  }
  if (!backoff || typeof backoff !== 'object' || !('delay' in backoff)) return backoff;
  if ('delayMs' in backoff) {
    throw new Rejected('bad_request', 'backoff.delay and backoff.delayMs are the same field: give one');
  }
  const { delay: ms, ...rest } = backoff;
  return { ...rest, delayMs: ms };
}

/** list()'s state as the broker filters on it; Rejected invalid_state for a state no job can have. */
function listState(state) {
  if (typeof state !== 'string' || state === '') return state;
  const s = STATE_ALIASES[state] || state;
  if (!JOB_STATES.has(s)) throw new Rejected('invalid_state', INVALID_STATE_MESSAGE);
  return s;
}

const SUBMIT_OPTIONS = {
  webhookUrl: 'string', priority: 'int', idempotencyKey: 'string', timeoutMs: 'int', maxAttempts: 'int',
  notify: 'bool', attempts: 'int', backoff: 'backoff', delayMs: 'int', runAt: 'int', requestTimeoutMs: 'ms',
  dependsOn: 'ids', onDependencyFailure: 'string', dependencyResults: 'bool',
};

// --- client -------------------------------------------------------------------

/**
 * A BMC01 client on one DEALER socket. Several requests may be in flight
 * at once (matched by req). timeoutMs bounds each request.
 */
// answers to a SUBSCRIBE (or its renewal) that mean "subscribe again", not
// "this subscription is wrong": events() yields a reset for them
const EVENTS_LOST = ['not_found', 'shutting_down', 'not_leader', 'store_unavailable'];
const EVENTS_BACKOFF_MS = 100;
const EVENTS_BACKOFF_MAX_MS = 2000;
// An events() iterator the caller dropped without return() (a next() left
// waiting, say): its loop ends and unsubscribes once the iterator is
// garbage collected, rather than renewing until close().
const EVENTS_DROPPED = new FinalizationRegistry((state) => { if (state.stop) state.stop(); });

class Client {
  constructor(opts = {}) {
    if (typeof opts === 'string') opts = { endpoint: opts };
    opts = checkOptions('new Client', opts, ['endpoint', 'timeoutMs', 'curve']);
    checkType('new Client', 'timeoutMs', opts.timeoutMs, 'ms');
    this.endpoint = opts.endpoint || defaultEndpoint(true);
    this._eps = new Endpoints(this.endpoint);
    this.timeoutMs = opts.timeoutMs || 10000;
    this.curve = opts.curve;
    this._req = 0;
    this._eventStops = new Set();       // of the live events() loops
    this._pending = new Map();          // req -> {resolve, reject, timer}
    this._results = new Map();          // jobId -> record (RESULT pushes)
    this._resultWaiters = new Map();    // jobId -> Set of fns
    this._notified = new Set();
    this._closed = false;
    this._sock = null;
  }

  _socket() {
    if (this._closed) throw new BotmeshError('closed', 'the client is closed');
    if (!this._sock) {
      // sendTimeout 0: never wait to queue; a full queue rejects at once.
      const sock = new zmq.Dealer(socketOptions(this.curve, { sendTimeout: 0 }));
      sock.connect(this._eps.current);
      this._sock = sock;
      this._readLoop(sock);
    }
    return this._sock;
  }

  async _readLoop(sock) {
    try {
      for await (const frames of sock) {
        const msg = decode(frames, CLIENT_HEADER);
        if (!msg) continue;                          // malformed: ignore
        this._dispatch(msg[0], msg[1]);
      }
    } catch (e) {
      // socket closed under the iterator: nothing to do
    }
  }

  _dispatch(cmd, body) {
    if (cmd === C.EVENT) {
      if (this._onEvent) this._onEvent(body);        // events(), on its own client
      return;
    }
    if (cmd === C.RESULT_MANY) {
      for (const item of Array.isArray(body.jobs) ? body.jobs : []) {
        if (item && typeof item === 'object') this._dispatch(C.RESULT, item);
      }
      return;
    }
    if (cmd === C.RESULT) {
      if (typeof body.jobId !== 'string' || !body.job || typeof body.job !== 'object') return;
      this._results.set(body.jobId, body.job);
      this._notified.delete(body.jobId);
      if (this._results.size > 10000) this._results.delete(this._results.keys().next().value);
      const ws = this._resultWaiters.get(body.jobId);
      if (ws) for (const fn of ws) fn();
      return;
    }
    let p = this._pending.get(body.req);
    let req = body.req;
    // A REJECTED without req answers a message the broker could not parse:
    // give it to the only request in flight, if there is exactly one.
    if (!p && cmd === C.REJECTED && body.req === undefined && this._pending.size === 1) {
      [req, p] = this._pending.entries().next().value;
    }
    if (!p) return;                                  // late answer to a timed-out request
    this._pending.delete(req);
    delete body.req;                                 // the protocol's, not the caller's
    clearTimeout(p.timer);
    if (cmd === C.REJECTED) {
      p.reject(new Rejected(typeof body.code === 'string' ? body.code : 'rejected',
        typeof body.message === 'string' ? body.message : '', body));
    } else {
      p.resolve([cmd, body]);
    }
  }

  _resetSocket() {
    if (this._sock) {
      this._sock.close();
      this._sock = null;
    }
    this._notified.clear();
  }

  /**
   * Send one request; resolves [command, body]; REJECTED rejects with Rejected.
   * With several brokers: a not_leader answer sends it again to the leader
   * the standby names (or the next broker), and a broker silent for its share
   * of timeoutMs (timeoutMs / brokers, at least 500 ms) is left for the next
   * one (the request is sent again there: give a SUBMIT an idempotencyKey).
   */
  async request(command, body = {}, timeoutMs) {
    checkType('request', 'timeoutMs', timeoutMs, 'ms');
    timeoutMs = timeoutMs || this.timeoutMs;
    const deadline = Date.now() + timeoutMs;
    const n = this._eps.size;
    const share = n > 1 ? Math.max(500, Math.floor(timeoutMs / n)) : timeoutMs;
    for (;;) {
      try {
        const answer = await this._requestOnce(command, body,
          Math.max(1, Math.min(share, deadline - Date.now())));
        this._eps.served();
        return answer;
      } catch (e) {
        const notLeader = e instanceof Rejected && e.code === 'not_leader';
        if (!notLeader && !(e instanceof BrokerTimeout && n > 1)) {
          if (e instanceof Rejected) this._eps.served();
          throw e;
        }
        this._resetSocket();
        const wait = this._eps.next(notLeader && e.body ? e.body.leader : undefined, !notLeader);
        if (Date.now() + wait >= deadline) throw e;
        await delay(wait);
      }
    }
  }

  _requestOnce(command, body, timeoutMs) {
    return new Promise((resolve, reject) => {
      let sock, data;
      this._req = (this._req % REQ_WRAP) + 1;
      const req = this._req;
      try {
        sock = this._socket();
        data = pack(Object.assign({}, body, { req }));
      } catch (e) {
        reject(e);
        return;
      }
      const timer = setTimeout(() => {
        this._pending.delete(req);
        // Lazy Pirate: once nothing else waits, drop the socket and what it queued.
        if (this._pending.size === 0) this._resetSocket();
        reject(new BrokerTimeout('broker_timeout',
          `no reply from the broker at ${this.endpoint} within ${timeoutMs} ms (is it running `
          + 'there? set the endpoint with new Client({endpoint}) or BROKER_CLIENT_ENDPOINT, the wait '
          + 'with timeoutMs)'));
      }, timeoutMs);
      this._pending.set(req, { resolve, reject, timer });
      sock.send([CLIENT_HEADER, Buffer.from([command]), data]).catch((e) => {
        if (!this._pending.has(req)) return;
        this._pending.delete(req);
        clearTimeout(timer);
        reject(new BrokerTimeout('broker_timeout',
          `cannot send to the broker at ${this.endpoint} (${e.code || e.message}; is it running?)`));
      });
    });
  }

  async _reply(command, body, timeoutMs, expect = C.REPLY) {
    const [cmd, reply] = await this.request(command, body, timeoutMs);
    if (cmd !== expect) {
      throw new ProtocolError('protocol_error', `expected command 0x${expect.toString(16)}, got 0x${cmd.toString(16)}`, reply);
    }
    return reply;
  }

  /**
   * SUBMIT; resolves the job id (reply.duplicate via submitFull).
   * opts: webhookUrl, priority, idempotencyKey, timeoutMs (job's), maxAttempts, notify, requestTimeoutMs,
   * attempts (runs allowed when the bot fails), backoff ({type: 'exponential'|'fixed', delayMs, jitter}),
   * delayMs or runAt (ms since the epoch, the broker's clock): delayed until then;
   * dependsOn (job ids): waits (waiting-children) until they all completed, with
   * onDependencyFailure ('fail' | 'ignore') and dependencyResults (the bot's payload becomes
   * {payload, dependencies: {jobId: result}}) (docs/protocol.md section 3, Dependencies)
   */
  async submit(botType, payload = null, opts = {}) {
    return (await this.submitFull(botType, payload, opts)).jobId;
  }

  /** The SUBMIT body; TypeError for an unknown option or one of the wrong type. */
  static _submitBody(botType, payload, opts, where = 'submit', extra = []) {
    opts = checkOptions(where, opts, Object.keys(SUBMIT_OPTIONS).concat(extra), { timeout: 'requestTimeoutMs' });
    checkType(where, 'botType', botType, 'string');
    for (const [k, kind] of Object.entries(SUBMIT_OPTIONS)) checkType(where, k, opts[k], kind);
    const body = { botType, payload: payload === undefined ? null : payload };
    for (const k of ['webhookUrl', 'priority', 'idempotencyKey', 'timeoutMs', 'maxAttempts',
                     'attempts', 'backoff', 'delayMs', 'runAt', 'dependsOn', 'onDependencyFailure']) {
      if (opts[k] !== undefined && opts[k] !== null) body[k] = opts[k];
    }
    if (body.backoff !== undefined) body.backoff = wireBackoff(body.backoff);
    if (opts.notify) body.notify = true;
    if (opts.dependencyResults) body.dependencyResults = true;
    return body;
  }

  _accepted(reply, notify) {
    if (typeof reply.jobId !== 'string') throw new ProtocolError('protocol_error', 'ACCEPTED without a jobId', reply);
    // the broker does not push RESULT for a duplicate: wait() polls for those
    if (notify && !reply.duplicate) this._notified.add(reply.jobId);
    return { jobId: reply.jobId, duplicate: !!reply.duplicate, delayed: !!reply.delayed,
             waitingChildren: reply.state === 'waiting-children' };
  }

  /** SUBMIT; resolves {jobId, duplicate, delayed, waitingChildren} (delayed: waits for its
   *  delayMs/runAt; waitingChildren: for its dependsOn). */
  async submitFull(botType, payload = null, opts = {}) {
    const body = this._keyed(Client._submitBody(botType, payload, opts, 'submit'));
    opts = opts || {};
    const reply = await this._reply(C.SUBMIT, body, opts.requestTimeoutMs, C.ACCEPTED);
    return this._accepted(reply, opts.notify);
  }

  /** With several brokers a request with no answer is sent again to the next
   *  one: a SUBMIT without an idempotencyKey gets a random one first, so that
   *  both sends make one job. */
  _keyed(body) {
    if (this._eps.size > 1 && body.idempotencyKey === undefined) {
      body.idempotencyKey = `auto-${crypto.randomBytes(16).toString('hex')}`;
    }
    return body;
  }

  /**
   * SUBMIT_MANY (protocol.md 4a), at most 1,000 jobs and 1 MiB of them a message. jobs: objects
   * {botType, payload, ...submit's opts}. Resolves one outcome per job, in
   * order: {jobId, duplicate}, or a Rejected (returned, not thrown) naming
   * why that job was refused. A fault of the whole message (no jobs) rejects.
   */
  async submitMany(jobs, opts = {}) {
    opts = checkOptions('submitMany', opts, ['requestTimeoutMs'], { timeout: 'requestTimeoutMs' });
    if (!Array.isArray(jobs) || jobs.length === 0) {
      throw new Rejected('bad_request', 'submitMany needs an array of at least one job');
    }
    const bodies = jobs.map((job, i) => {
      if (!job || typeof job !== 'object' || job.botType === undefined) {
        throw badOption(`jobs[${i}] must be an object with a botType`);
      }
      return this._keyed(Client._submitBody(job.botType, job.payload, job, `submitMany jobs[${i}]`, ['botType', 'payload']));
    });
    const chunks = [];
    let chunk = [];
    let size = 0;
    for (const body of bodies) {
      const n = pack(body).length;
      if (chunk.length && (chunk.length === MAX_BATCH || size + n > BATCH_BYTES)) {
        chunks.push(chunk);
        chunk = [];
        size = 0;
      }
      chunk.push(body);
      size += n;
    }
    chunks.push(chunk);
    const out = [];
    for (const chunk of chunks) {
      const reply = await this._reply(C.SUBMIT_MANY, { jobs: chunk }, opts.requestTimeoutMs, C.ACCEPTED_MANY);
      if (!Array.isArray(reply.jobs) || reply.jobs.length !== chunk.length) {
        throw new ProtocolError('protocol_error', 'ACCEPTED_MANY does not list every job', reply);
      }
      reply.jobs.forEach((o, i) => {
        if (!o || typeof o !== 'object') throw new ProtocolError('protocol_error', 'an ACCEPTED_MANY item is not a map', reply);
        if (o.code !== undefined) out.push(new Rejected(String(o.code), String(o.message || ''), o));
        else out.push(this._accepted(o, chunk[i].notify));
      });
    }
    return out;
  }

  /** A tree of jobs, as BullMQ's FlowProducer.add and the gateway's POST
   *  /flows: a node is a submitMany job plus children: [node, ...]; a node
   *  runs after all its children completed (its dependsOn: its own, then its
   *  children's ids; dependencyResults true unless given, for a node with
   *  children). The whole tree is checked first, with POST /flows' limits and
   *  codes: at most MAX_BATCH nodes, FLOW_MAX_DEPTH levels, 100 children and
   *  dependsOn a node, one idempotencyKey a node; a bad tree rejects a
   *  RangeError or TypeError (.code as the gateway's: invalid_flow,
   *  too_many_jobs, invalid_dependencies, invalid_idempotency_key,
   *  bad_request) naming the node, and nothing is sent. Then the jobs go by
   *  height, leaves first, each height in submitMany messages (1,000 jobs and
   *  1 MiB a message). The top node's idempotencyKey names the flow (else a
   *  random flow-<20 hex>); a node without its own key gets <flowKey>/<path>
   *  (k/1.0: the second child's first child). Resolves {jobId, flowKey,
   *  children: [{jobId, children?}, ...]}. A node refused rejects
   *  FlowRejected (a Rejected naming it); any other error of a submitMany
   *  (BrokerTimeout, a Rejected of the whole message) rejects as it is.
   *  Either carries flowKey, created ({path: jobId}) and retryable: submit the
   *  same tree with that key on its top node to complete the flow on the jobs
   *  made (when not retryable, after correcting the refused node). */
  async flow(tree, opts = {}) {
    const { nodes, flowKey } = flowNodes(tree);
    const created = () => {
      const out = {};
      for (const e of nodes) if (e.id) out[e.path.join('.')] = e.id;
      return out;
    };
    for (let height = 0; height <= nodes[0].height; height++) {
      const level = nodes.filter((e) => e.height === height);
      const jobs = level.map((e) => {
        const job = Object.assign({}, e.job);
        const dependsOn = (Array.isArray(job.dependsOn) ? job.dependsOn : []).concat(e.kids.map((k) => k.id));
        if (dependsOn.length) job.dependsOn = dependsOn;
        return job;
      });
      let outcomes;
      try {
        outcomes = await this.submitMany(jobs, opts);
      } catch (e) {
        if (!(e instanceof BotmeshError)) throw e;
        // The jobs made so far stay: the error says how to go on on them.
        const made = created();
        e.message = flowHalfway(e.message, e.code, flowKey, made, nodes.length);
        Object.assign(e, { flowKey, created: made, retryable: RETRYABLE_CODES.has(e.code) });
        throw e;
      }
      let refused = null;
      outcomes.forEach((o, i) => {
        if (o instanceof Rejected) refused = refused || [level[i], o];
        else level[i].id = o.jobId;
      });
      if (refused) {
        const [entry, o] = refused;
        const made = created();
        throw new FlowRejected(o.code, flowHalfway(`${entry.where}: ${o.message}`, o.code, flowKey, made, nodes.length),
          flowKey, made);
      }
    }
    const answer = (e) => (e.kids.length ? { jobId: e.id, children: e.kids.map(answer) } : { jobId: e.id });
    return Object.assign(answer(nodes[0]), { flowKey });
  }

  async _job(command, jobId, timeoutMs, body) {
    const reply = await this._reply(command, body || { jobId }, timeoutMs);
    if (!reply.job || typeof reply.job !== 'object') throw new ProtocolError('protocol_error', 'REPLY without a job', reply);
    return reply.job;
  }

  /** The job's record: status(jobId), or status({ key }) by the idempotencyKey
   *  (BullMQ's jobId) it was submitted with, while that job exists; rejects
   *  Rejected('not_found'). */
  status(jobId, timeoutMs) {
    if (jobId && typeof jobId === 'object' && !(jobId instanceof String)) {
      if (typeof jobId.key !== 'string') return Promise.reject(badOption('status({ key }): key must be a string'));
      return this._job(C.STATUS, null, timeoutMs, { idempotencyKey: jobId.key });
    }
    return this._job(C.STATUS, jobId, timeoutMs);
  }

  /** The job's log as BullMQ's getJobLogs gives it: {jobId, logs: [lines],
   *  count}, the tail of what its bot wrote on stderr during its last run
   *  (the record's log, split on newlines, an empty last line dropped; no
   *  lines when it has none). logs(jobId) or logs({ key }), as status(). */
  async logs(jobId, timeoutMs) {
    const job = await this.status(jobId, timeoutMs);
    const lines = typeof job.log === 'string' ? job.log.split('\n') : [];
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    return { jobId: job.jobId, logs: lines, count: lines.length };
  }

  /**
   * Cancel; resolves the record (state 'cancelled'); rejects not_found, conflict
   * (it had already ended) or store_unavailable (the broker is reading it back
   * from Redis after a start or a failover, or cannot reach Redis): not final,
   * cancel again shortly.
   */
  cancel(jobId, timeoutMs) { return this._job(C.CANCEL, jobId, timeoutMs); }

  /** Queue a failed or cancelled job again; resolves its id. */
  async retry(jobId, timeoutMs) {
    const reply = await this._reply(C.RETRY, { jobId }, timeoutMs, C.ACCEPTED);
    return reply.jobId || jobId;
  }

  /** Deliver an ended job's webhook again. */
  async redeliver(jobId, timeoutMs) { await this._reply(C.REDELIVER, { jobId }, timeoutMs, C.ACCEPTED); }

  stats(timeoutMs) { return this._reply(C.STATS, {}, timeoutMs); }

  /** QUEUE: resolves {botType, paused, removed}; rejects unknown_bot_type / bad_request. */
  _queue(botType, action, extra, timeoutMs) {
    return this._reply(C.QUEUE, { botType, action, ...extra }, timeoutMs);
  }

  /** Dispatch nothing of botType (queued and delayed jobs stay, running ones finish). */
  pause(botType, timeoutMs) { return this._queue(botType, 'pause', {}, timeoutMs); }

  /** Dispatch botType again. */
  resume(botType, timeoutMs) { return this._queue(botType, 'resume', {}, timeoutMs); }

  /** Remove botType's queued jobs; resolves {removed}. */
  drain(botType, timeoutMs) { return this._queue(botType, 'drain', {}, timeoutMs); }

  /** Remove botType's jobs that ended in state ('completed'|'failed'|'cancelled') more than olderThanMs ago. */
  async clean(botType, state, olderThanMs = 0, timeoutMs) {
    checkType('clean', 'olderThanMs', olderThanMs, 'number');
    return this._queue(botType, 'clean', { state, olderThanMs }, timeoutMs);
  }

  /**
   * Run botType's jobs that ended in state ('failed', the default, or 'cancelled') at least olderThanMs ago
   * again, each as retry() does, the oldest first, at most limit (1..1000, default 1000) a call (BullMQ's
   * queue.retryJobs); resolves {botType, retried, more, ...}: while more is true, call again.
   * opts: {state, olderThanMs, limit}.
   */
  async retryJobs(botType, opts, timeoutMs) {
    const o = checkOptions('retryJobs', opts, ['state', 'olderThanMs', 'limit'], { count: 'limit' });
    checkType('retryJobs', 'state', o.state, 'string');
    checkType('retryJobs', 'olderThanMs', o.olderThanMs, 'number');
    checkType('retryJobs', 'limit', o.limit, 'int');
    const extra = { state: o.state === undefined || o.state === null ? 'failed' : o.state };
    if (o.olderThanMs !== undefined && o.olderThanMs !== null) extra.olderThanMs = o.olderThanMs;
    if (o.limit !== undefined && o.limit !== null) extra.limit = o.limit;
    return this._queue(botType, 'retry', extra, timeoutMs);
  }

  /** Delete a job that is not running; rejects not_found / conflict. */
  async remove(jobId, timeoutMs) { await this._reply(C.REMOVE, { jobId }, timeoutMs); }

  /** A delayed job is due now; resolves its record. */
  promote(jobId, timeoutMs) { return this._job(C.PROMOTE, jobId, timeoutMs); }

  /**
   * Create (or replace) a repeatable job; resolves the schedule record (runs, nextAt, ...).
   * schedule: {key, botType, payload, cron (with tz) or everyMs, limit, startAt, endAt, priority, webhookUrl}.
   */
  async addSchedule(schedule, timeoutMs) {
    checkOptions('addSchedule', schedule, ['key', 'botType', 'payload', 'cron', 'tz', 'everyMs', 'limit', 'startAt',
      'endAt', 'priority', 'webhookUrl'], { every: 'everyMs', pattern: 'cron', every_ms: 'everyMs', start_at: 'startAt',
      end_at: 'endAt', jobId: 'key' });
    const reply = await this._reply(C.SCHEDULE, { ...schedule, action: 'add' }, timeoutMs);
    return reply.schedule;
  }

  /** The schedules, each with its runs and nextAt. */
  async schedules(timeoutMs) { return (await this._reply(C.SCHEDULE, { action: 'list' }, timeoutMs)).schedules || []; }

  /** Remove the schedule key; rejects not_found. */
  async removeSchedule(key, timeoutMs) { await this._reply(C.SCHEDULE, { action: 'remove', key }, timeoutMs); }

  /**
   * Recent jobs, newest first: list(state, botType, limit, timeoutMs) or
   * list({state, botType, webhook, limit, timeoutMs}) (list(filter, timeoutMs) too).
   * state: queued (or waiting, wait), running (or active), delayed,
   * completed, failed or cancelled; another rejects Rejected invalid_state.
   * webhook: pending, retrying, delivered or failed, the jobs whose webhook
   * is in that state, newest to reach it first (failed: the failed webhooks
   * list); another rejects Rejected invalid_webhook.
   */
  async list(state, botType, limit, timeoutMs) {
    let filter;
    if (state !== null && typeof state === 'object') {
      filter = checkOptions('list', state, ['state', 'botType', 'webhook', 'limit', 'timeoutMs'],
        { bot_type: 'botType', timeout: 'timeoutMs' });
      if (botType !== undefined) {
        checkType('list', 'timeoutMs', botType, 'ms');
        if (filter.timeoutMs === undefined) filter = { ...filter, timeoutMs: botType };
      }
      if (limit !== undefined || timeoutMs !== undefined) {
        throw badOption('list: give list(state, botType, limit, timeoutMs) or '
          + 'list({state, botType, webhook, limit, timeoutMs})');
      }
    } else {
      filter = { state, botType, limit, timeoutMs };
    }
    checkType('list', 'state', filter.state, 'string');
    checkType('list', 'botType', filter.botType, 'string');
    checkType('list', 'webhook', filter.webhook, 'string');
    checkType('list', 'limit', filter.limit, 'int');
    checkType('list', 'timeoutMs', filter.timeoutMs, 'ms');
    const body = {};
    if (filter.state !== undefined && filter.state !== null && filter.state !== '') body.state = listState(filter.state);
    if (filter.webhook !== undefined && filter.webhook !== null && filter.webhook !== '') {
      if (!WEBHOOK_STATES.has(filter.webhook)) throw new Rejected('invalid_webhook', INVALID_WEBHOOK_MESSAGE);
      body.webhook = filter.webhook;
    }
    for (const k of ['botType', 'limit']) if (filter[k] !== undefined && filter[k] !== null) body[k] = filter[k];
    return (await this._reply(C.LIST, body, filter.timeoutMs)).jobs || [];
  }

  ping(timeoutMs) { return this._reply(C.PING, {}, timeoutMs); }

  async metrics(timeoutMs) { return (await this._reply(C.METRICS, {}, timeoutMs)).text || ''; }

  _waitPush(jobId, ms) {
    return new Promise((resolve) => {
      let set = this._resultWaiters.get(jobId);
      if (!set) { set = new Set(); this._resultWaiters.set(jobId, set); }
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0) this._resultWaiters.delete(jobId);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      set.add(done);
    });
  }

  /**
   * Wait until the job ends; resolves its record. Uses the RESULT push
   * (submitted here with notify) and STATUS polling otherwise, and as a
   * fallback. Rejects WaitTimeout / BrokerTimeout after timeoutMs.
   */
  async wait(jobId, opts = {}) {
    const o = checkOptions('wait', opts, ['timeoutMs', 'pollMs']);
    checkType('wait', 'timeoutMs', o.timeoutMs, 'ms');
    checkType('wait', 'pollMs', o.pollMs, 'ms');
    const timeoutMs = o.timeoutMs ?? 60000;
    const pollMs = o.pollMs ?? 500;
    const deadline = Date.now() + timeoutMs;
    let last = null;
    let lastErr = null;
    const pushInterval = Math.max(2000, pollMs);
    let nextPoll = Date.now() + (this._notified.has(jobId) ? pushInterval : 0);
    for (;;) {
      if (this._results.has(jobId)) {
        const rec = this._results.get(jobId);
        this._results.delete(jobId);
        return rec;
      }
      const now = Date.now();
      if (now >= deadline) break;
      if (now >= nextPoll) {
        try {
          const rec = await this.status(jobId, Math.max(50, Math.min(this.timeoutMs, deadline - now)));
          lastErr = null;
          last = rec;
          if (TERMINAL_STATES.has(rec.state)) {
            this._results.delete(jobId);
            this._notified.delete(jobId);
            return rec;
          }
        } catch (e) {
          if (!(e instanceof BrokerTimeout)) throw e;
          lastErr = e;
        }
        nextPoll = Date.now() + (this._notified.has(jobId) ? pushInterval : pollMs);
        continue;
      }
      await this._waitPush(jobId, Math.min(nextPoll, deadline) - now);
    }
    if (!last && !lastErr) {
      // Only the push was awaited (notify): ask once where the job is, to say so.
      try {
        last = await this.status(jobId, Math.min(this.timeoutMs, 2000));
        if (TERMINAL_STATES.has(last.state)) return last;
      } catch (e) {
        if (!(e instanceof BrokerTimeout)) throw e;
        lastErr = e;
      }
    }
    if (lastErr) {
      throw new BrokerTimeout('broker_timeout',
        `waiting for job ${jobId}: no reply from the broker at ${this.endpoint} (is it running?)`);
    }
    throw new WaitTimeout('wait_timeout', `job ${jobId} did not end within ${timeoutMs} ms (state: ${last.state})`, last);
  }

  /** Submit with notify, wait, resolve the result; rejects JobFailed if it failed. */
  async run(botType, payload, opts = {}) {
    const o = Object.assign({ notify: true }, checkOptions('run', opts,
      Object.keys(SUBMIT_OPTIONS).concat(['waitMs']), { timeout: 'waitMs' }));
    checkType('run', 'waitMs', o.waitMs, 'ms');
    const { waitMs, ...submitOpts } = o;
    const jobId = await this.submit(botType, payload, submitOpts);
    const rec = await this.wait(jobId, { timeoutMs: waitMs || 60000 });
    if (rec.state !== 'completed') {
      const err = rec.error || {};
      throw new JobFailed(err.code || rec.state, err.message || `job ${jobId} ${rec.state}`, rec);
    }
    return rec.result;
  }

  /**
   * Live job events (protocol.md, SUBSCRIBE): an async iterator of objects,
   * BullMQ's QueueEvents.  Each is the broker's EVENT ({event, id, jobId,
   * botType, seq, at, attempt, ...}) or a notice: {event: 'gap', missed: N}
   * (events were lost: this client's queue at the broker was full) or
   * {event: 'reset'} (events in between are lost: the subscription was
   * lost and the broker no longer had them, to a restart or failover, or
   * since is older than its history; the events the broker holds follow
   * it).  Whenever it subscribes again it
   * asks for the events since the last one yielded, which the broker
   * replays while it still has them (no reset then).  opts.since: an event
   * id (an event's id, or a former iterator's lastEventId kept across a
   * restart of this process): the events after it come first.  The
   * iterator's lastEventId is the id of the last event yielded (before the
   * first: the broker's last when it subscribed, or since).  Use wait() or
   * a webhook for guarantees.  Runs on a socket of its own, renews every
   * third of ttlMs (on a monotonic clock, so a wall clock stepped back
   * does not stop it) and subscribes again when a renewal fails: no
   * answer, or not_found, shutting_down, not_leader, store_unavailable
   * (the next broker when there are several, backing off 100 ms doubling
   * to 2 s); leave the loop (for await's break calls return()), call
   * return() (at once, even while a next() waits for an event), or close()
   * this client to unsubscribe.  opts: {botTypes, jobIds, events, ttlMs, since}.
   */
  events(opts = {}) {
    const state = { lastEventId: null, stop: null };
    const gen = this._eventLoop(opts, state);
    const it = {
      next: (value) => gen.next(value),
      // A loop waiting for an event ends now, not at its next event; done
      // once the broker has the UNSUBSCRIBE (or 1 s)
      return: async (value) => {
        const unsubscribed = state.stop ? state.stop() : null;
        const done = await gen.return(value);
        if (unsubscribed) await unsubscribed;
        return done;
      },
      throw: (err) => gen.throw(err),
      get lastEventId() { return state.lastEventId; },
      [Symbol.asyncIterator]() { return this; },
    };
    EVENTS_DROPPED.register(it, state);
    return it;
  }

  async* _eventLoop(opts, state) {
    opts = checkOptions('events', opts, ['botTypes', 'jobIds', 'events', 'ttlMs', 'since']);
    checkType('events', 'ttlMs', opts.ttlMs, 'ms');
    if (opts.since !== undefined && opts.since !== null && typeof opts.since !== 'string') {
      throw badOption(`events: since must be an event id (a string), got ${show(opts.since)}`);
    }
    state.lastEventId = opts.since || null;
    const ttlMs = opts.ttlMs || 30000;
    const body = { ttlMs };
    for (const key of ['botTypes', 'jobIds', 'events']) {
      if (opts[key] && opts[key].length) body[key] = [...opts[key]];
    }
    const sub = new Client({ endpoint: this.endpoint, timeoutMs: this.timeoutMs, curve: this.curve });
    const queue = [];
    let wake = null;
    sub._onEvent = (ev) => {
      queue.push(ev);
      if (queue.length > 10000) queue.shift();
      if (wake) wake();
    };
    let sid = null;
    let last = 0;
    let lost = false;
    let renewAt = 0;
    let backoff = EVENTS_BACKOFF_MS;
    let stopped = false;
    // close() of this client or return(): unsubscribe now (it is answered even if the
    // loop is never resumed), and end the loop where it stands
    const stop = () => {
      stopped = true;
      const was = sid;
      sid = null;
      if (wake) wake();
      if (was === null) {
        sub.close();
        return Promise.resolve();
      }
      return sub._reply(C.UNSUBSCRIBE, { subscription: was }, 1000).catch(() => {}).finally(() => sub.close());
    };
    this._eventStops.add(stop);
    state.stop = stop;
    try {
      while (!stopped) {
        if (sid === null || performance.now() >= renewAt) {
          let reply;
          const since = sid === null ? state.lastEventId : null;
          try {
            reply = await sub._reply(C.SUBSCRIBE, sid ? { ...body, subscription: sid }
              : since ? { ...body, since } : body);
          } catch (e) {
            if (stopped) break;
            const rejected = e instanceof Rejected && EVENTS_LOST.includes(e.code);
            if (!rejected && !(e instanceof BrokerTimeout)) throw e;
            lost = lost || sid !== null || e.code === 'not_found';
            sid = null;
            if (rejected && e.code === 'not_found') continue;         // lapsed, or another broker: at once
            if (rejected) {               // a broker stopping, a standby, a store away: the next broker
              sub._resetSocket();
              sub._eps.next();
            }
            await new Promise((resolve) => {
              const timer = setTimeout(resolve, backoff);
              wake = () => { clearTimeout(timer); resolve(); };
            });
            wake = null;
            backoff = Math.min(backoff * 2, EVENTS_BACKOFF_MAX_MS);
            continue;
          }
          if (stopped) break;
          backoff = EVENTS_BACKOFF_MS;
          if (reply.subscription !== sid) {
            sid = reply.subscription;
            last = Number(reply.seq || 0);
            // replayed after since, or reset: since is not in the broker's history
            if (since) lost = reply.reset !== false;
            // (after a reset the broker's whole history follows: the ids come with it)
            if (!since || (lost && !reply.replayed)) state.lastEventId = reply.eventId || state.lastEventId;
            if (lost) yield { event: 'reset' };
            lost = false;
          }
          renewAt = performance.now() + ttlMs / 3;
        }
        while (queue.length) {
          const ev = queue.shift();
          const seq = Number(ev.seq);
          if (ev.subscription !== sid || !Number.isInteger(seq)) continue;  // an earlier subscription's
          if (seq > last + 1) yield { event: 'gap', missed: seq - last - 1 };
          last = Math.max(last, seq);
          if (ev.id) state.lastEventId = ev.id;
          yield ev;
        }
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.max(0, Math.min(1000, renewAt - performance.now())));
          wake = () => { clearTimeout(timer); resolve(); };
        });
        wake = null;
      }
    } finally {
      this._eventStops.delete(stop);
      state.stop = null;
      if (!stopped) {
        if (sid !== null) {
          try { await sub._reply(C.UNSUBSCRIBE, { subscription: sid }, 1000); } catch (e) { /* gone */ }
        }
        sub.close();
      }
    }
  }

  close() {
    this._closed = true;
    for (const stop of this._eventStops) stop();      // events() loops: unsubscribe, end
    this._eventStops.clear();
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new BotmeshError('closed', 'the client was closed'));
    }
    this._pending.clear();
    for (const [, set] of this._resultWaiters) for (const fn of set) fn();
    if (this._sock) {
      this._sock.close();
      this._sock = null;
    }
  }
}

// --- worker -------------------------------------------------------------------

function nowMs() { return Date.now(); }

/** log (a Buffer, or null) with text appended as a line: its last JOB_LOG_MAX_BYTES, cut at a character's start. */
function logAppend(log, text) {
  let out = Buffer.from(`${text}\n`, 'utf8');
  if (log) out = Buffer.concat([log, out]);
  if (out.length > JOB_LOG_MAX_BYTES) {
    let cut = out.length - JOB_LOG_MAX_BYTES;
    while (cut < out.length && (out[cut] & 0xc0) === 0x80) cut += 1;
    out = out.subarray(cut);
  }
  return out;
}

/**
 * A BMW01 worker: serves bot types with `async handler(payload, job) => result`.
 * job: {id, botType, payload, attempt, timeoutMs, deadline, signal (AbortSignal,
 * aborted on CANCEL), cancelReason, progress(n), log(text) (a line of the job's
 * log, sent with DONE: BullMQ's job.log)}. Throw JobError(code, message)
 * to choose the error code; any other throw ends the job with 'bot_failed'.
 * Events: 'connect' (n), 'job' (job), 'done' (body), 'nack' (code, message).
 */
class Worker extends EventEmitter {
  constructor(opts) {
    super();
    opts = checkOptions('new Worker', opts, ['types', 'handler', 'credit', 'endpoint', 'name', 'heartbeatMs',
      'liveness', 'stopGraceMs', 'maxResultBytes', 'curve', 'log']);
    for (const [k, kind] of [['heartbeatMs', 'ms'], ['liveness', 'int'], ['stopGraceMs', 'number'],
      ['maxResultBytes', 'int'], ['name', 'string']]) checkType('new Worker', k, opts[k], kind);
    if (opts.log !== undefined && opts.log !== false && typeof opts.log !== 'function') {
      throw new TypeError(`new Worker: log must be a function (level, message) or false, got ${show(opts.log)}`);
    }
    const types = typeof opts.types === 'string' ? [opts.types] : (opts.types || []);
    if (!types.length) throw new TypeError('a worker needs at least one bot type');
    for (const t of types) {
      if (typeof t !== 'string' || !BOT_TYPE_RE.test(t)) throw new TypeError(`bad bot type ${JSON.stringify(t)}: 1-32 characters of [a-z0-9_-]`);
    }
    if (typeof opts.handler !== 'function') throw new TypeError('handler must be a function');
    const credit = opts.credit === undefined ? 1 : opts.credit;
    if (!Number.isInteger(credit) || credit < 0) throw new TypeError('credit must be an integer >= 0');
    this.types = types;
    this.handler = opts.handler;
    this.credit = credit;
    this.endpoint = opts.endpoint || defaultEndpoint();
    this._eps = new Endpoints(this.endpoint);
    this._switching = null;             // timer of a move to another broker
    this._replacedCount = 0;            // replaced in a row (DISCONNECT replaced)
    this._replacedAt = 0;               // performance.now() of the last
    this.name = opts.name == null ? `${os.hostname()}-${process.pid}-node` : opts.name;
    if (typeof this.name !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(this.name)) {
      throw new TypeError(`worker name ${show(this.name)}: 1 to 128 printable ASCII characters without spaces`);
    }
    this.error = null;                  // the broker refused READY: the BotmeshError done rejects with
    this.heartbeatMs = opts.heartbeatMs || envInt('HEARTBEAT_INTERVAL_MS', 1000, 10, 3600000);
    this.liveness = opts.liveness || envInt('HEARTBEAT_LIVENESS', 3, 1, 1000);
    this.maxResultBytes = opts.maxResultBytes || MAX_PAYLOAD_BYTES;
    this.stopGraceMs = opts.stopGraceMs === undefined ? 10000 : opts.stopGraceMs;
    this.curve = opts.curve;
    // One line per event, as the Python worker logs them: to stderr unless
    // log is a function (level, message) or false (silent).
    this._logFn = opts.log === undefined ? stderrLog : opts.log;
    this._answered = false;             // the broker answered on the current socket
    this.jobs = new Map();
    this.connects = 0;
    this.jobsDone = 0;
    this.donesSentAgain = 0;            // kept DONEs sent again after a reconnect
    this.jobsAnsweredAgain = 0;         // JOBs answered with a kept DONE (handler not run)
    // Recent DONEs, to send again after READY on a new socket (the broker may
    // have missed them: it restarted, or the old socket closed with them
    // queued): {at (when sent), body, size}, oldest first, at most
    // DONE_KEEP_MAX of at most DONE_KEEP_BYTES (the bodies' msgpack).
    // One ages only while a broker connection is up, from when it was sent or
    // the last READY on a new socket, whichever is later, and goes after 4 x
    // heartbeat x liveness of that: a broker away for long still gets the
    // DONEs of the runs that ended meanwhile. The completed ones are found by
    // job id: a JOB for a job completed here is answered with its DONE
    // instead of running the handler again.
    this._kept = [];
    this._keptHead = 0;                 // _kept[0.._keptHead) are dropped
    this._keptCompleted = new Map();    // jobId -> its completed entry in _kept
    this._linkUp = true;                // a socket to a broker is open (not between two)
    this._upSince = performance.now();  // the last READY on a new socket
    this._heard = -Infinity;            // when the broker last sent anything
    this._keepMax = DONE_KEEP_MAX;
    this._keepBytes = DONE_KEEP_BYTES;
    this._keptBytes = 0;                // the msgpack bytes of the bodies kept
    this._outbox = [];
    this._sock = null;
    this._flushing = false;
    this._stopping = null;
    this._stopped = false;
    this._timer = null;
    this.done = new Promise((resolve, reject) => { this._resolveDone = resolve; this._rejectDone = reject; });
  }

  get running() { return this.jobs.size; }

  /** Connect and serve; returns this (await worker.done for the end). */
  start() {
    this._connect();
    const tick = Math.max(5, Math.floor(this.heartbeatMs / 4));
    this._timer = setInterval(() => this._tick(), tick);
    return this;
  }

  /** Change the credit (sends READY again). */
  setCredit(n) {
    this.credit = n;
    if (!this._stopping) this._queue(W.READY, this._readyBody());
  }

  /**
   * Graceful stop: credit 0, let running jobs finish (up to graceMs),
   * RELEASE the rest, DISCONNECT. Resolves when done.
   */
  stop({ graceMs } = {}) {
    if (this._stopped) return this.done;
    if (!this._stopping) {
      const grace = graceMs === undefined ? this.stopGraceMs : graceMs;
      this._stopping = { until: nowMs() + grace };
      this.credit = 0;
      this._queue(W.READY, this._readyBody());
      this._log('info', `stopping (credit 0, ${this.jobs.size} jobs running)`);
      this._checkStop();
    }
    return this.done;
  }

  _readyBody(running = false) {
    const body = { name: this.name, types: this.types, credit: this.credit, pid: process.pid };
    // READY on a new socket lists the jobs we run: a broker that took over
    // (or restarted) adopts them instead of running them again.
    if (running && this.jobs.size > 0) body.running = [...this.jobs.keys()].slice(0, 10000);
    return body;
  }

  _log(level, message) {
    if (this._logFn) this._logFn(level, `botmesh worker ${this.name}: ${message}`);
  }

  _connect() {
    if (this._sock) this._sock.close();
    // immediate: queue only on a live connection; the rest waits in our outbox
    // (and survives a reconnect) instead of in a dead pipe.
    const sock = new zmq.Dealer(socketOptions(this.curve, { immediate: true }));
    sock.connect(this._eps.current);
    this._sock = sock;
    // With several brokers, a leader that dies (the kernel closes its
    // connections) is left at once for the next one, not after
    // HEARTBEAT_LIVENESS silent intervals; a host that vanishes closes
    // nothing, and heartbeats remain the net under this.
    if (this._eps.size > 1) {
      sock.events.on('disconnect', () => {
        if (sock !== this._sock || this._stopped) return;
        this._log('warning', `the broker at ${this._eps.current} closed the connection; moving on`);
        this.emit('closed', this._eps.current);
        this._switch(undefined, true);
      });
    }
    this.connects += 1;
    this._answered = false;
    this._registered = false;           // the broker sent something but NACK/DISCONNECT on this socket
    this._pruneKept(performance.now());   // what aged on the connection just closed
    this._linkUp = true;
    this._upSince = performance.now();
    if (this.connects > 1) this._log('info', `sent READY again to ${this._eps.current}; waiting for the broker`);
    // READY first on every new socket (HEARTBEATs queued for the old one are
    // stale), then the recent DONEs the broker may have missed, oldest first
    // (one it already has is answered NACK not_owner), then what still waits.
    const pending = this._outbox.filter(([c]) => c !== W.READY && c !== W.HEARTBEAT);
    const waiting = new Set(pending.filter(([c]) => c === W.DONE).map(([, b]) => b));
    const again = [];
    for (let i = this._keptHead; i < this._kept.length; i++) {
      const { body } = this._kept[i];
      if (!waiting.has(body)) again.push([W.DONE, body]);
    }
    this.donesSentAgain += again.length;
    this._outbox = [[W.READY, this._readyBody(true)]].concat(again, pending);
    this._lastRecv = nowMs();
    this._lastSend = nowMs();
    this._readLoop(sock);
    this._kick();
    this.emit('connect', this.connects);
  }

  async _readLoop(sock) {
    try {
      for await (const frames of sock) {
        if (sock !== this._sock) return;
        this._lastRecv = nowMs();
        this._heard = performance.now();
        if (!this._answered) {
          this._answered = true;
          this._log('info', `connected to ${this._eps.current} (the broker answered)`);
        }
        const msg = decode(frames, WORKER_HEADER);
        if (!msg) { this._onMalformed(frames); continue; }
        this._onMessage(msg[0], msg[1]);
        if (sock !== this._sock) return;          // reconnected (DISCONNECT)
      }
    } catch (e) {
      // closed under the iterator
    }
  }

  /** On to another broker (a standby answered, or ours went silent), after the backoff. */
  _switch(leader, silent = false) {
    if (this._switching || this._stopped) return;
    const wait = this._eps.next(leader, silent);
    this.emit('switch', this._eps.current, wait);
    this._connectIn(wait);
  }

  /** A new socket and READY after wait ms; no kept DONE ages meanwhile.
   *  Replaced (replacedBy: the DISCONNECT's `by`) and told to stop
   *  meanwhile: no new socket (_retire). */
  _connectIn(wait, replacedBy = false) {
    this._pruneKept(performance.now());
    this._linkUp = false;
    this._switching = setTimeout(() => {
      this._switching = null;
      if (this._stopped) return;
      if (replacedBy !== false && this._stopping) this._retire(replacedBy);
      else this._connect();
    }, wait);
  }

  /** DISCONNECT replaced while stopping: another process holds the name
   *  now. Registering again would replace it and queue its jobs again, for
   *  a worker about to exit: nothing more is sent, the worker is done. */
  _retire(by) {
    const who = typeof by === 'string' && by ? by : 'the broker does not say which process';
    this._log('warning', `the broker replaced this worker's connection while it stops: another process `
      + `registered with the same name ${this.name} (${who}); not registering again (the broker queued this `
      + `worker's ${this.jobs.size} running jobs again; their outcomes cannot be sent)`);
    const held = [...this.jobs.values()];
    this.jobs.clear();                  // no DONE: the broker has them back
    for (const job of held) job._abort.abort('replaced');
    this._outbox = [];
    this._close(0);
  }

  /** The end: no more timers, the socket closed (after linger ms for what it holds). */
  _close(linger, error) {
    this._stopped = true;
    clearInterval(this._timer);
    clearTimeout(this._switching);
    const sock = this._sock;
    this._sock = null;
    if (sock) {
      try { sock.linger = linger; } catch (e) { /* closed already */ }
      sock.close();
    }
    if (error) this._rejectDone(error);
    else this._resolveDone();
  }

  /** Another live process took our name: how long to wait before
   *  registering again; one error a streak (the cause, the fix). */
  _replacedWait(by) {
    const now = performance.now();
    if (!this._replacedAt || now - this._replacedAt > REPLACED_QUIET_MS) this._replacedCount = 0;
    this._replacedCount += 1;
    this._replacedAt = now;
    const full = Math.min(REPLACED_MAX_MS, REPLACED_FIRST_MS * 2 ** Math.min(this._replacedCount - 1, 16));
    const wait = Math.round(full / 2 + Math.random() * (full / 2));
    const who = typeof by === 'string' && by ? by : 'the broker does not say which process';
    if (this._replacedCount === 1) {
      this._log('error', `the broker replaced this worker's connection: another worker registered `
        + `with the same name ${this.name} (${who}); give each worker a distinct name. Registering `
        + `again in ${wait} ms, waiting longer each time while this goes on (up to ${REPLACED_MAX_MS / 1000} s)`);
    } else {
      this._log('debug', `replaced again by ${who} (${this._replacedCount} times in a row); `
        + `registering again in ${wait} ms`);
    }
    return wait;
  }

  _onMessage(cmd, body) {
    if (cmd !== W.NACK) this._eps.served();
    if (cmd !== W.NACK && cmd !== W.DISCONNECT) this._registered = true;
    else if (cmd === W.NACK && body.code === 'bad_request' && !this._registered && !this._stopped) {
      // Our READY refused: sending it again would be refused again.
      this.error = new BotmeshError('bad_request', `the broker refused this worker's READY: ${body.message}`);
      this._log('error', `${this.error.message}; the worker ends`);
      this._close(0, this.error);
      return;
    }
    switch (cmd) {
      case W.JOB: this._onJob(body); break;
      case W.CANCEL: this._onCancel(body); break;
      case W.DISCONNECT:
        // Waiting to connect again (a backoff): nothing to do, the wait goes on.
        if (this._switching || this._stopped) break;
        if (body.reason === 'replaced') {
          if (this._stopping) { this._retire(body.by); break; }
          // The old socket is done with: nothing more is read from it or sent on it.
          this._sock.close();
          this._sock = null;
          this._connectIn(this._replacedWait(body.by), body.by);
          break;
        }
        if (body.reason === 'shutting_down') {
          // The leader stops (SIGTERM): on to the next broker now, as from one
          // that went silent (its standby is about to lead); alone, after an
          // interval.  Running jobs go in the READY.
          this._log('info', `the broker at ${this._eps.current} is shutting down; moving on`);
          if (this._eps.size > 1) this._switch(undefined, true);
          else this._connectIn(this.heartbeatMs);
          break;
        }
        this._log('info', `broker sent DISCONNECT (${body.reason}), reconnecting`);
        this._connect();
        break;
      case W.NACK:
        if (body.code === 'not_leader') {
          this._log('info', `a standby answered at ${this._eps.current}; moving to the leader`);
          this._switch(body.leader);
        } else {
          if (body.code !== 'not_owner') this._log('warning', `NACK ${body.code}: ${body.message}`);
          this.emit('nack', body.code, body.message);
        }
        break;
      case W.HEARTBEAT:
      default:
        break;
    }
  }

  _onCancel(body) {
    const reason = body.reason || 'cancelled';
    const job = this.jobs.get(body.jobId);
    if (job) {
      job.cancelReason = reason;
      job._abort.abort(reason);
      this._log('info', `job ${job.id} cancelled by the broker (${reason})`);
      return;
    }
    const kept = this._keptCompleted.get(body.jobId);
    if (kept) {
      // Our DONE left before the CANCEL crossed it: the broker did not take
      // it, so it is neither sent again nor answers a later JOB.
      this._keptCompleted.delete(body.jobId);
      const i = this._kept.indexOf(kept, this._keptHead);
      if (i >= 0) {
        this._kept.splice(i, 1);
        this._keptBytes -= kept.size;
      }
      this._log('warning', `job ${body.jobId}: result discarded: CANCEL from the broker (${reason}) `
        + 'for the run we completed');
    }
  }

  /** A message that does not decode. A JOB among them is answered DONE
   *  ok:false bad_request (else its slot here and there stays taken). */
  _onMalformed(frames) {
    const id = frames.length === 3 && WORKER_HEADER.equals(frames[0]) && frames[1].length === 1
      && frames[1][0] === W.JOB ? jobIdOf(frames[2]) : null;
    if (!id) {
      this._log('warning', `ignoring a malformed message (${frames.length} frames)`);
      return;
    }
    this._log('warning', `job ${id}: its JOB does not decode as msgpack: failed bad_request`);
    const now = nowMs();
    this._queue(W.DONE, {
      jobId: id, ok: false, startedAt: now, finishedAt: now,
      error: { code: 'bad_request', message: 'the worker cannot decode the job\'s message (msgpack)' },
    });
  }

  _onJob(body) {
    const id = body.jobId;
    if (typeof id !== 'string' || !id) return;
    const running = this.jobs.get(id);
    if (running) {
      // The broker gave us back a job we still run (after a reconnect): the
      // running handler's DONE answers for this attempt (else the broker would
      // take it for an earlier run and keep the slot of this one taken).
      if (Number.isInteger(body.attempt)) running._doneAttempt = body.attempt;
      return;
    }
    // A job completed here moments ago: the broker lost our DONE (it
    // restarted, or took us for dead) and dispatched it again. Our DONE
    // answers for this attempt too; the handler does not run twice.
    const kept = this._keptCompleted.get(id);
    if (kept) {
      const again = { ...kept.body, attempt: body.attempt === undefined ? 1 : body.attempt };
      this.jobsAnsweredAgain += 1;
      this.emit('answered', again);
      this._queue(W.DONE, again);
      return;
    }
    if (this._stopping || this.jobs.size >= this.credit) {
      this.emit('released', id);
      this._queue(W.RELEASE, { jobId: id });
      return;
    }
    const abort = new AbortController();
    const job = {
      id,
      botType: body.botType,
      payload: body.payload === undefined ? null : body.payload,
      attempt: body.attempt === undefined ? 1 : body.attempt,
      timeoutMs: body.timeoutMs,
      deadline: body.deadline,
      signal: abort.signal,
      cancelReason: null,
      _abort: abort,
      _doneAttempt: body.attempt === undefined ? 1 : body.attempt,   // the attempt its DONE ends
      progress: (n) => {
        if (typeof n !== 'number' || Number.isNaN(n)) {
          throw new TypeError(`progress must be a number from 0 to 100, got ${show(n)}`);
        }
        if (this.jobs.get(id) !== job) return;
        this._queue(W.PROGRESS, { jobId: id, progress: Math.max(0, Math.min(100, Math.trunc(n))) });
      },
      _log: null,
      _logLines: 0,
      // A line of the job's log (BullMQ's job.log): its last JOB_LOG_MAX_BYTES
      // go with the run's DONE, whatever its outcome. Returns the number of
      // lines logged so far (BullMQ's), as GET /job/{id}/logs counts them: a
      // text with newlines is a line each.
      log: (text) => {
        if (typeof text !== 'string') throw new TypeError(`log takes a string, got ${show(text)}`);
        job._log = logAppend(job._log, text);
        job._logLines += text.split('\n').length;
        return job._logLines;
      },
    };
    this.jobs.set(id, job);
    this.emit('job', job);
    this._runJob(job);
  }

  async _runJob(job) {
    const done = { jobId: job.id, startedAt: nowMs(), attempt: job.attempt };
    let error = null;
    let result;
    try {
      result = await this.handler(job.payload, job);
      if (result === undefined) result = null;
    } catch (e) {
      if (e instanceof JobError) error = { code: String(e.code), message: String(e.message).slice(-4000) };
      else error = { code: 'bot_failed', message: String((e && e.stack) ? `${e.name}: ${e.message}` : e).slice(-4000) };
    }
    if (job.cancelReason) {
      // The broker stopped this run (timeout, cancel): a result the handler
      // returned anyway is not the job's, and is not kept.
      result = undefined;
      error = stoppedError(job.cancelReason);
    }
    if (!error) {
      try {
        const size = msgpack.encode(toWire(result), { useBigInt64: true }).length;
        if (size > this.maxResultBytes) {
          error = { code: 'bad_output', message: `result is ${size} bytes encoded, the limit is ${this.maxResultBytes}` };
        }
      } catch (e) {
        error = { code: 'bad_output', message: `result cannot be encoded as msgpack: ${e.message}` };
      }
    }
    if (error) { done.ok = false; done.error = error; } else { done.ok = true; done.result = result; }
    done.finishedAt = nowMs();
    if (job._log && job._log.length) done.log = job._log.toString('utf8');
    if (this.jobs.get(job.id) === job) this.jobs.delete(job.id);
    else return;                                   // released at stop: the broker has it back
    done.attempt = job._doneAttempt;               // the broker's latest JOB for it
    this.jobsDone += 1;
    this._keepDone(done, performance.now());
    this._queue(W.DONE, done);
    this.emit('done', done);
    this._checkStop();
  }

  _keepDone(body, now) {
    let size;
    try {
      size = pack(body).length;
    } catch (e) {
      return;                           // not kept: a replay is best effort
    }
    if (size > this._keepBytes) return;
    while (this._kept.length > this._keptHead && this._keptBytes + size > this._keepBytes) {
      this._dropKept(`more than ${this._keepBytes} bytes kept`);
    }
    const entry = { at: now, body, size };
    this._kept.push(entry);
    this._keptBytes += size;
    if (body.ok === true) this._keptCompleted.set(body.jobId, entry);
    while (this._kept.length - this._keptHead > this._keepMax) this._dropKept(`more than ${this._keepMax} kept`);
    this._pruneKept(now);
  }

  /** When a kept DONE was last sent: at its run's end, or again after the last READY on a new socket. */
  _lastSent(entry) {
    return Math.max(entry.at, this._upSince);
  }

  /** Forget the oldest kept DONE; a warning names its job when no live broker got it. */
  _dropKept(why) {
    const entry = this._kept[this._keptHead];
    this._kept[this._keptHead++] = undefined;
    this._keptBytes -= entry.size;
    if (this._keptCompleted.get(entry.body.jobId) === entry) this._keptCompleted.delete(entry.body.jobId);
    if (!(this._linkUp && this._heard > this._lastSent(entry))) {
      this._log('warning', `job ${entry.body.jobId}: its DONE is dropped (${why}) before a broker confirmed it: `
        + 'the job may run again');
    }
    if (this._keptHead >= 1024 && this._keptHead * 2 >= this._kept.length) {
      this._kept = this._kept.slice(this._keptHead);
      this._keptHead = 0;
    }
  }

  /**
   * While a broker connection is up, forget the DONEs last sent more than the
   * time a broker holds a lost worker's jobs (or those it recovered from
   * Redis) ago: past that, sending them again could not help. Between
   * connections none ages.
   */
  _pruneKept(now) {
    if (!this._linkUp) return;
    // Twice a broker's hold (2 x heartbeat x liveness) of a lost worker's jobs:
    // the JOB it sends after the hold must still find the DONE.
    const horizon = now - 2 * 2 * this.heartbeatMs * this.liveness;
    while (this._keptHead < this._kept.length && this._lastSent(this._kept[this._keptHead]) < horizon) {
      this._dropKept('too old');
    }
  }

  _queue(cmd, body) {
    if (this._stopped) return;
    if (cmd === W.PROGRESS && this._outbox.length > 1000) return;
    this._outbox.push([cmd, body]);
    this._kick();
  }

  _kick() {
    if (this._flushing || !this._sock) return;
    this._flushing = true;
    const sock = this._sock;
    (async () => {
      try {
        while (this._outbox.length && sock === this._sock) {
          const item = this._outbox[0];
          await sock.send([WORKER_HEADER, Buffer.from([item[0]]), pack(item[1])]);
          const i = this._outbox.indexOf(item);
          if (i >= 0) this._outbox.splice(i, 1);
          this._lastSend = nowMs();
        }
      } catch (e) {
        // socket closed while waiting to send: the new one takes over
      } finally {
        this._flushing = false;
        if (this._outbox.length && this._sock && sock !== this._sock) this._kick();
        if (this._flushWaiter && !this._outbox.length) this._flushWaiter();
      }
    })();
  }

  _tick() {
    if (this._stopped) return;
    const now = nowMs();
    if (this._switching) return;
    if (now - this._lastRecv > this.heartbeatMs * this.liveness) {
      const silent = ((now - this._lastRecv) / 1000).toFixed(1);
      if (this._answered) this._log('warning', `broker at ${this._eps.current} silent for ${silent}s, reconnecting`);
      else {
        this._log('warning', `no answer from the broker at ${this._eps.current} for ${silent}s `
          + '(is it running there?); trying again');
      }
      this.emit('reconnect', now - this._lastRecv);
      if (this._eps.size > 1) this._switch(undefined, true);
      else this._connect();
      return;
    }
    if (!this._outbox.length && now - this._lastSend >= this.heartbeatMs) {
      this._pruneKept(performance.now());
      this._queue(W.HEARTBEAT, {});
    }
    this._checkStop();
  }

  _checkStop() {
    if (!this._stopping || this._stopped || this._stopping.finishing) return;
    if (this.jobs.size && nowMs() < this._stopping.until) return;
    this._stopping.finishing = true;
    const held = [...this.jobs.values()];
    this.jobs.clear();                   // their outcome is not sent: the broker has them back
    for (const job of held) {
      this._outbox.push([W.RELEASE, { jobId: job.id }]);
      job._abort.abort('released');      // the handler is told (job.signal)
    }
    this._outbox.push([W.DISCONNECT, { reason: 'shutdown' }]);
    this._kick();
    const flushed = new Promise((r) => { this._flushWaiter = r; if (!this._outbox.length) r(); });
    // linger lets the last messages reach the wire after close
    Promise.race([flushed, delay(1000)]).then(() => this._close(1000));
  }
}

/**
 * The DONE error of a run the broker stopped with CANCEL (timeout, cancelled,
 * duplicate, ...): what the handler returned does not count, and the job's
 * next dispatch runs the handler again. The code is 'cancelled' only for a
 * CANCEL 'cancelled' (a broker ends the job cancelled on it), 'timeout' for a
 * timeout, and 'stopped' for any other reason (the broker had given the job to
 * another worker, or did not know it): no one cancelled the job, so a broker
 * that takes this DONE counts a failed run.
 */
function stoppedError(reason) {
  const code = reason === 'timeout' || reason === 'cancelled' ? reason : 'stopped';
  return { code, message: `stopped by the broker (${reason})` };
}

function stderrLog(level, message) {
  if (level === 'debug') return;        // a log function of the caller's sees them
  process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} ${message}\n`);
}

function envInt(name, dflt, lo, hi) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  if (!/^-?\d+$/.test(raw)) throw new RangeError(`${name} must be an integer, got ${JSON.stringify(raw)}`);
  const v = Number(raw);
  if (v < lo || v > hi) throw new RangeError(`${name} must be in ${lo}..${hi}, got ${v}`);
  return v;
}

module.exports = {
  Client, Worker, JobError,
  BotmeshError, Rejected, FlowRejected, BrokerTimeout, WaitTimeout, JobFailed, ProtocolError,
  TERMINAL_STATES, FLOW_MAX_DEPTH, MAX_DEPENDS, CLIENT_COMMANDS: C, WORKER_COMMANDS: W, defaultEndpoint, Endpoints,
  _codec: { pack, unpackMap, toWire, fromWire, decode, jobIdOf },
};
