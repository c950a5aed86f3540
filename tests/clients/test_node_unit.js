'use strict';
/*  Unit tests of clients/node/botmesh.js against a scripted fake ROUTER:
    bytes on the wire (docs/protocol.md sections 2, 4, 5), error mapping,
    RESULT push and STATUS polling, 64-bit integers, and the worker's life
    (READY, JOB -> DONE, PROGRESS, errors, heartbeats, reconnect, credit,
    CANCEL, graceful stop).  Run: sh run_node.sh test_node_unit.js  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));
const zmq = require(path.join(ROOT, 'clients', 'node', 'node_modules', 'zeromq'));
const msgpack = require(path.join(ROOT, 'clients', 'node', 'node_modules', '@msgpack', 'msgpack'));

const BIG_TS = 1764360000000;
const CH = Buffer.from('BMC01');
const WH = Buffer.from('BMW01');

function log(...a) { console.log(new Date().toISOString().slice(11, 19), ...a); }
function check(cond, what, ...detail) {
  if (!cond) {
    const d = detail.map((x) => { try { return JSON.stringify(x, (k, v) => (typeof v === 'bigint' ? `${v}n` : v)); } catch (e) { return String(x); } });
    throw new Error(`FAILED: ${what} ${d.join(' ').slice(0, 2000)}`);
  }
  log('ok:', what);
}
const delay = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`FAILED: timed out waiting for ${what}`);
    await delay(10);
  }
}
async function rejects(p) {
  try { await p; } catch (e) { return e; }
  throw new Error('FAILED: expected a rejection');
}

const pack = (o) => Buffer.from(msgpack.encode(o, { useBigInt64: true }));
const unpack = (b) => msgpack.decode(b, { useBigInt64: true });

class FakeBroker {
  constructor(responder, header = CH, curveSecretKey) {
    this.responder = responder;
    this.header = header;
    this.messages = [];
    this.router = new zmq.Router(curveSecretKey ? { linger: 0, curveServer: true, curveSecretKey } : { linger: 0 });
  }
  async bind() {
    await this.router.bind('tcp://127.0.0.1:*');
    this.endpoint = this.router.lastEndpoint;
    this._loop();
    return this;
  }
  async _loop() {
    try {
      for await (const [ident, ...frames] of this.router) {
        let body = null;
        try { body = unpack(frames[2]); } catch (e) { /* malformed */ }
        const m = { ident, frames, header: frames[0], cmd: frames[1] && frames[1][0], body, at: Date.now() };
        this.messages.push(m);
        const out = this.responder ? this.responder(this, m) || [] : [];
        for (const o of out) await this.send(ident, ...o);
      }
    } catch (e) { /* closed */ }
  }
  send(ident, ...parts) {
    let frames;
    if (parts.length === 1) frames = parts[0];
    else frames = [this.header, Buffer.from([parts[0]]), pack(parts[1])];
    return this.router.send([ident, ...frames]);
  }
  got(cmd) { return this.messages.filter((m) => cmd === undefined || m.cmd === cmd); }
  waitFor(pred, ms = 5000, what = 'a message') { return waitUntil(() => this.messages.find(pred), ms, what); }
  close() { this.router.close(); }
}

const tests = {};

tests.clientEncodingAndErrors = async () => {
  const fb = await new FakeBroker((b, m) => {
    const req = m.body.req;
    if (m.cmd === 0x01 && m.body.botType === 'nope') return [[0x82, { req, code: 'unknown_bot_type', message: 'no bot type nope' }]];
    if (m.cmd === 0x01 && m.body.botType === 'noreq') return [[0x82, { code: 'bad_frame', message: 'body is not a map' }]];
    if (m.cmd === 0x01) {
      return [[0x83, { req: req + 1000 }], [[CH, Buffer.from([0x83])]], [[CH, Buffer.from([0x83]), Buffer.from([0xc1])]],
        [0x81, { req, jobId: 'j-1', duplicate: m.body.botType === 'dup' }]];
    }
    if (m.cmd === 0x02 && m.body.jobId === 'missing') return [[0x82, { req, code: 'not_found', message: 'no job' }]];
    if (m.cmd === 0x02 || m.cmd === 0x03) return [[0x83, { req, job: { jobId: m.body.jobId, state: 'cancelled', createdAt: BigInt(BIG_TS), huge: 2n ** 60n } }]];
    if (m.cmd === 0x05) return [[0x81, { req, jobId: m.body.jobId }]];
    if (m.cmd === 0x06) return [[0x82, { req, code: 'conflict', message: 'no webhook' }]];
    if (m.cmd === 0x04) return [[0x83, { req, types: {}, workers: [], totals: {}, redis: true, uptimeMs: 5 }]];
    if (m.cmd === 0x07) return [[0x83, { req, jobs: [{ jobId: 'a' }] }]];
    if (m.cmd === 0x08) return [[0x83, { req, redis: false, uptimeMs: BigInt(BIG_TS) }]];
    if (m.cmd === 0x09) return [[0x83, { req, text: '# HELP x\n' }]];
    return [];
  }).bind();
  const c = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 3000 });
  try {
    const id = await c.submit('python', { task: 'x', n: [1, 2.5, null, true], ts: BIG_TS }, {
      webhookUrl: 'http://h/x', priority: 7, idempotencyKey: 'k-1', timeoutMs: 5000, maxAttempts: 4, notify: true,
      attempts: 3, backoff: { type: 'fixed', delayMs: 500 }, delayMs: 1500,
    });
    check(id === 'j-1', 'submit resolves the jobId');
    const m = fb.got(0x01)[0];
    check(m.frames.length === 3 && CH.equals(m.frames[0]) && m.frames[1].length === 1 && m.frames[1][0] === 1,
      'SUBMIT is 3 frames: BMC01, 0x01, body');
    const keys = Object.keys(m.body).sort().join(',');
    check(keys === 'attempts,backoff,botType,delayMs,idempotencyKey,maxAttempts,notify,payload,priority,req,timeoutMs,webhookUrl',
      'SUBMIT body carries every option under its protocol name', keys);
    check(m.body.priority === 7 && m.body.notify === true && m.body.webhookUrl === 'http://h/x' && m.body.timeoutMs === 5000,
      'option values', m.body);
    check(m.body.attempts === 3 && m.body.backoff.type === 'fixed' && m.body.backoff.delayMs === 500 && m.body.delayMs === 1500,
      'retry and delay options (attempts, backoff, delayMs) under their protocol names', m.body);
    // the 64-bit integer went out as uint64 (0xcf), not float64 (0xcb)
    check(m.frames[2].includes(Buffer.from([0xcf, 0, 0, 0x01, 0x9a, 0xcc, 0x0d, 0x12, 0])),
      'a safe integer beyond 32 bits is sent as uint64, not as a float');
    check(typeof m.body.payload.ts === 'bigint' && Number(m.body.payload.ts) === BIG_TS && m.body.payload.n[1] === 2.5,
      'payload values round-trip', m.body.payload);
    const full = await c.submitFull('dup', null);
    check(full.duplicate === true && fb.got(0x01)[1].body.payload === null
      && Object.keys(fb.got(0x01)[1].body).sort().join(',') === 'botType,payload,req', 'defaults are left out; duplicate flag', full);
    // BullMQ's backoff forms: a number is a fixed delay; delay and a jitter fraction.
    await c.submit('python', 1, { attempts: 2, backoff: 1000 });
    await c.submit('python', 1, { backoff: { type: 'exponential', delay: 1000, jitter: 0.2 } });
    const [b3, b4] = fb.got(0x01).slice(2, 4).map((x) => x.body.backoff);
    check(JSON.stringify(b3) === '{"type":"fixed","delayMs":1000}', 'backoff: 1000 is sent as a fixed delay of 1000 ms', b3);
    check(b4.type === 'exponential' && b4.delayMs === 1000 && b4.jitter === 0.2 && !('delay' in b4),
      "BullMQ's delay is sent as delayMs, the jitter fraction as it is", b4);
    check((await rejects(Promise.resolve().then(() => c.submit('python', 1, { backoff: 1.5 })))) instanceof TypeError,
      'backoff: 1.5 is a TypeError (an object or an integer)');
    for (const bad of [-3, 86400001]) {
      const err = await rejects(Promise.resolve().then(() => c.submit('python', 1, { backoff: bad })));
      check(err instanceof RangeError && /backoff/.test(err.message) && err.message.includes(String(bad)),
        `backoff: ${bad} is a RangeError naming backoff`, err && err.message);
    }
    check(fb.got(0x01).length === 4, 'nothing was sent for a bad backoff', fb.got(0x01).length);
    // A mistake the client catches before sending rejects with .code bad_request, as the
    // broker's refusal of it would (limit 0 goes to the broker: bad_request there).
    for (const [what, call] of [
      ['retryJobs limit 2.5', () => c.retryJobs('python', { limit: 2.5 })],
      ['retryJobs unknown option', () => c.retryJobs('python', { State: 'cancelled' })],
      ['submit backoff -3', () => c.submit('python', 1, { backoff: -3 })],
      ['status({ key: 1 })', () => c.status({ key: 1 })]]) {
      const err = await rejects(Promise.resolve().then(call));
      check(err && err.code === 'bad_request', `${what} rejects with .code bad_request`, err && [err.code, err.message]);
    }
    let e = await rejects(c.submit('nope', {}));
    check(e instanceof bm.Rejected && e instanceof bm.BotmeshError && e.code === 'unknown_bot_type' && e.message === 'no bot type nope',
      'REJECTED rejects with code and message', e.code, e.message);
    e = await rejects(c.submit('noreq', {}));
    check(e.code === 'bad_frame', 'a REJECTED without req answers the only request in flight');
    e = await rejects(c.status('missing'));
    check(e.code === 'not_found', 'STATUS not_found rejects');
    const rec = await c.status('x');
    check(rec.createdAt === BIG_TS && typeof rec.createdAt === 'number' && rec.huge === 2n ** 60n,
      '64-bit integers: safe ones as Number, bigger as BigInt', String(rec.huge));
    check((await c.cancel('x')).state === 'cancelled', 'cancel');
    check((await c.retry('x')) === 'x', 'retry');
    e = await rejects(c.redeliver('x'));
    check(e.code === 'conflict', 'redeliver conflict rejects');
    check((await c.stats()).uptimeMs === 5, 'stats');
    check((await c.list({ state: 'failed', botType: 'python', limit: 3 }))[0].jobId === 'a', 'list');
    const lm = fb.got(0x07)[0].body;
    check(lm.state === 'failed' && lm.botType === 'python' && lm.limit === 3, 'LIST body', lm);
    const ping = await c.ping();
    check(ping.uptimeMs === BIG_TS && !('req' in ping), 'ping answers the reply without the protocol\'s req', ping);
    check(!('req' in await c.stats()), 'so does stats');
    e = await rejects(c.redeliver('x'));
    check(!('req' in e.body), 'and a Rejected\'s body', e.body);
    check((await c.metrics()).startsWith('# HELP'), 'metrics');
    // several requests in flight at once, matched by req
    const many = await Promise.all([c.status('a'), c.status('b'), c.stats(), c.status('c')]);
    check(many[0].jobId === 'a' && many[1].jobId === 'b' && many[3].jobId === 'c', 'concurrent requests are matched by req');
    const cmds = [...new Set(fb.got().map((x) => x.cmd))].sort((a, b) => a - b).join(',');
    check(cmds === '1,2,3,4,5,6,7,8,9', 'every client command byte was used', cmds);
  } finally {
    c.close();
    fb.close();
  }
};

tests.clientWait = async () => {
  let polls = 0;
  const fb = await new FakeBroker((b, m) => {
    const req = m.body.req;
    if (m.cmd === 0x01) {
      const id = m.body.botType === 'fail' ? 'fail-1' : (m.body.notify ? 'push-1' : 'poll-1');
      const out = [[0x81, { req, jobId: id, duplicate: false }]];
      if (id === 'push-1') out.push([0x84, { jobId: id, job: { jobId: id, state: 'completed', result: { v: 1 } } }]);
      if (id === 'fail-1') out.push([0x84, { jobId: id, job: { jobId: id, state: 'failed', error: { code: 'bot_failed', message: 'exit 3' } } }]);
      return out;
    }
    if (m.cmd === 0x02 && m.body.jobId === 'poll-1') {
      polls += 1;
      return [[0x83, { req, job: { jobId: 'poll-1', state: polls >= 3 ? 'completed' : 'running', result: 42 } }]];
    }
    if (m.cmd === 0x02) return [[0x83, { req, job: { jobId: m.body.jobId, state: 'running' } }]];
    return [];
  }).bind();
  const c = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 3000 });
  try {
    const id = await c.submit('python', {}, { notify: true });
    let t0 = Date.now();
    let rec = await c.wait(id, { timeoutMs: 10000 });
    check(rec.result.v === 1 && Date.now() - t0 < 1000 && fb.got(0x02).length === 0, 'wait resolves from the RESULT push, no STATUS');
    const id2 = await c.submit('python', {});
    rec = await c.wait(id2, { timeoutMs: 10000, pollMs: 50 });
    check(rec.state === 'completed' && polls === 3, 'wait falls back to STATUS polling', polls);
    t0 = Date.now();
    const e = await rejects(c.wait('stuck', { timeoutMs: 500, pollMs: 100 }));
    const el = Date.now() - t0;
    check(e instanceof bm.WaitTimeout && e.code === 'wait_timeout' && e.job.state === 'running' && el >= 400 && el < 2000,
      'wait is bounded: WaitTimeout with the last record', el);
    const e2 = await rejects(c.run('fail', {}));
    check(e2 instanceof bm.JobFailed && e2.code === 'bot_failed' && e2.job.jobId === 'fail-1', 'run() rejects JobFailed with the job error code');
  } finally {
    c.close();
    fb.close();
  }
};

tests.clientDeadBroker = async () => {
  const srv = require('net').createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  const ep = `tcp://127.0.0.1:${port}`;
  const c = new bm.Client({ endpoint: ep, timeoutMs: 500 });
  try {
    let t0 = Date.now();
    const e = await rejects(c.submit('python', {}));
    const el = Date.now() - t0;
    check(e instanceof bm.BrokerTimeout && e.code === 'broker_timeout' && e.message.includes(ep) && el >= 400 && el < 2000,
      'a dead broker rejects with broker_timeout naming the endpoint, in bounded time', e.message, el);
    check(e.message.includes('BROKER_CLIENT_ENDPOINT') && e.message.includes('{endpoint}'),
      'the timeout says how to change the endpoint', e.message);
    t0 = Date.now();
    const e2 = await rejects(c.wait('some-job', { timeoutMs: 1000, pollMs: 100 }));
    check(e2.code === 'broker_timeout' && Date.now() - t0 < 3000, 'wait() on a dead broker is bounded too', e2.message);
  } finally {
    c.close();
  }
};

// BROKER_CLIENT_ENDPOINT, which the README says to export, is a Client's
// default; it comes before BROKER_ENDPOINT; an explicit endpoint wins.
tests.clientEndpointFromEnv = async () => {
  const fb = await new FakeBroker((b, m) => (m.cmd === 0x01 ? [[0x81, { req: m.body.req, jobId: 'job-env' }]] : [])).bind();
  const saved = { c: process.env.BROKER_CLIENT_ENDPOINT, b: process.env.BROKER_ENDPOINT };
  const dead = 'tcp://127.0.0.1:1';
  const restore = (k, v) => { if (v === undefined) delete process.env[k]; else process.env[k] = v; };
  try {
    process.env.BROKER_CLIENT_ENDPOINT = fb.endpoint;
    process.env.BROKER_ENDPOINT = dead;
    let c = new bm.Client({ timeoutMs: 2000 });
    try {
      check(c.endpoint === fb.endpoint, 'new Client() reads BROKER_CLIENT_ENDPOINT before BROKER_ENDPOINT', c.endpoint);
      const id = await c.submit('python', 1);
      check(String(id) === 'job-env', 'and submits there', id);
    } finally { c.close(); }
    c = new bm.Client({ endpoint: dead, timeoutMs: 2000 });
    check(c.endpoint === dead, 'an explicit endpoint wins over BROKER_CLIENT_ENDPOINT', c.endpoint);
    c.close();
    process.env.BROKER_CLIENT_ENDPOINT = `tcp://*:${fb.endpoint.split(':').pop()}`;
    c = new bm.Client({ timeoutMs: 2000 });
    check(c.endpoint === fb.endpoint, 'a bind address in it reads as 127.0.0.1', c.endpoint);
    c.close();
    delete process.env.BROKER_CLIENT_ENDPOINT;
    c = new bm.Client({ timeoutMs: 2000 });
    check(c.endpoint === dead, 'without it, BROKER_ENDPOINT', c.endpoint);
    c.close();
  } finally {
    restore('BROKER_CLIENT_ENDPOINT', saved.c);
    restore('BROKER_ENDPOINT', saved.b);
    fb.close();
  }
};

// A fake broker for workers: HEARTBEAT every worker peer every 100 ms (on a
// timer, as the broker does) while fb.heartbeats is true.
async function workerBroker() {
  const fb = await new FakeBroker(null, WH).bind();
  fb.heartbeats = true;
  fb.peers = new Set();
  const orig = fb.responder;
  fb.responder = (b, m) => { if (WH.equals(m.header)) b.peers.add(m.ident.toString('hex')); return orig ? orig(b, m) : []; };
  fb.hbTimer = setInterval(() => {
    if (!fb.heartbeats) return;
    for (const id of fb.peers) fb.send(Buffer.from(id, 'hex'), 0x05, {}).catch(() => {});
  }, 100);
  const close = fb.close.bind(fb);
  fb.close = () => { clearInterval(fb.hbTimer); close(); };
  return fb;
}

tests.workerJobs = async () => {
  const fb = await workerBroker();
  const seen = [];
  const w = new bm.Worker({
    // liveness 50 (5 s): a stall of this process under load must not read as a silent broker.
    types: ['pywork', 'other'], credit: 2, endpoint: fb.endpoint, name: 'w-node', heartbeatMs: 100, liveness: 50, maxResultBytes: 1000,
    handler: async (payload, job) => {
      seen.push(job);
      if (payload === 'boom') throw new Error('it broke');
      if (payload === 'custom') throw new bm.JobError('spawn_failed', 'no such file');
      if (payload === 'huge') return 'x'.repeat(2000);
      if (payload === 'cyclic') { const o = {}; o.o = o; return o; }
      job.progress(50);
      await delay(10);
      return { echo: payload, big: BIG_TS };
    },
  }).start();
  try {
    const ready = await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY');
    check(WH.equals(ready.frames[0]) && ready.frames.length === 3, 'READY: header BMW01, 3 frames');
    check(ready.body.name === 'w-node' && ready.body.types.join() === 'pywork,other' && ready.body.credit === 2 && ready.body.pid === process.pid,
      'READY body', ready.body);
    const job = (id, payload) => fb.send(ready.ident, 0x02, { jobId: id, botType: 'pywork', payload, attempt: 2, timeoutMs: 300000, deadline: BigInt(BIG_TS) });
    const done = (id) => fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === id, 3000, `DONE ${id}`);
    await job('j1', { a: [1, 2] });
    let d = await done('j1');
    check(d.body.ok === true && d.body.result.echo.a[1] === 2 && Number(d.body.result.big) === BIG_TS, 'DONE ok with the result', d.body);
    check(Number(d.body.startedAt) > 1.6e12 && Number(d.body.finishedAt) >= Number(d.body.startedAt), 'DONE carries ms timestamps');
    const p = fb.got(0x03);
    check(p.length === 1 && p[0].body.jobId === 'j1' && p[0].body.progress === 50, 'PROGRESS {jobId, progress}');
    check(seen[0].attempt === 2 && seen[0].deadline === BIG_TS && seen[0].botType === 'pywork', 'the handler sees attempt, deadline as Number');
    await job('j2', 'boom');
    d = await done('j2');
    check(d.body.ok === false && d.body.error.code === 'bot_failed' && d.body.error.message.includes('it broke') && !('result' in d.body),
      'a throwing handler gives DONE ok:false {code, message}', d.body);
    await job('j3', 'custom');
    d = await done('j3');
    check(d.body.error.code === 'spawn_failed' && d.body.error.message === 'no such file', 'JobError chooses the code');
    await job('j4', 'huge');
    check((await done('j4')).body.error.code === 'bad_output', 'a result over the limit is bad_output');
    await job('j5', 'cyclic');
    check((await done('j5')).body.error.code === 'bad_output', 'an unencodable result is bad_output');
    w.setCredit(5);
    const r5 = await fb.waitFor((m) => m.cmd === 0x01 && m.body.credit === 5, 3000, 'READY credit 5');
    check(r5.ident.equals(ready.ident) && r5.body.types.join() === 'pywork,other', 'setCredit sends READY again, same socket');
    const n0 = fb.got(0x05).length;
    await waitUntil(() => fb.got(0x05).length >= n0 + 3, 3000, '3 heartbeats');
    check(w.connects === 1, 'one socket while the broker answers heartbeats');
  } finally {
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

// job.log(text): the lines go with DONE as its log, the tail of at most
// 16,384 bytes cut at a character's start (as the C worker's), whatever the
// outcome; none when nothing was logged; a log that is no string throws;
// each returns the number of lines logged so far.
tests.workerJobLog = async () => {
  const fb = await workerBroker();
  const w = new bm.Worker({
    types: ['pywork'], credit: 1, endpoint: fb.endpoint, name: 'w-node-log', heartbeatMs: 100, liveness: 50,
    handler: async (payload, job) => {
      if (payload === 'bad') {
        try { job.log(42); } catch (e) { return e instanceof TypeError ? 'refused' : 'other'; }
        return 'taken';
      }
      if (payload.counts) return payload.counts.map((text) => job.log(text));
      for (let i = 0; i < (payload.many || 0); i++) job.log(`line ${String(i).padStart(4, '0')} ${'\u00e9'.repeat(20)}`);
      for (const line of payload.lines || []) job.log(line);
      if (payload.fail) throw new Error('failed after logging');
      return 1;
    },
  }).start();
  try {
    const ready = await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY');
    const run = async (id, payload) => {
      await fb.send(ready.ident, 0x02, { jobId: id, botType: 'pywork', payload, attempt: 1 });
      return (await fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === id, 3000, `DONE ${id}`)).body;
    };
    let d = await run('l1', { lines: ['one', 'two \u2713'] });
    check(d.ok === true && d.log === 'one\ntwo \u2713\n', 'DONE log: the lines logged', d);
    d = await run('l2', { lines: ['before the failure'], fail: true });
    check(d.ok === false && d.log === 'before the failure\n', "a failed run's DONE has its log too", d);
    d = await run('l3', {});
    check(d.ok === true && !('log' in d), 'nothing logged: DONE without log', d);
    d = await run('l4', { many: 1000 });
    const size = Buffer.byteLength(d.log, 'utf8');
    check(size >= 16384 - 4 && size <= 16384 && d.log.endsWith(`line 0999 ${'\u00e9'.repeat(20)}\n`) && !d.log.includes('\ufffd'),
      'a long log: its tail, at most 16,384 bytes, cut at a character', size);
    d = await run('l5', 'bad');
    check(d.result === 'refused', 'job.log of a number throws TypeError', d);
    // What each log() returns: the lines logged so far, as GET /job/{id}/logs
    // counts them (a text with a newline is two lines; before, it counted
    // the calls: [1, 2, 3]).
    d = await run('l6', { counts: ['n1', 'n2\nn3', ''] });
    check(JSON.stringify(d.result) === JSON.stringify([1, 3, 4]) && d.log === 'n1\nn2\nn3\n\n',
      'job.log returns the number of lines logged so far, not of calls', d);
  } finally {
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

tests.workerCreditCancelStop = async () => {
  const fb = await workerBroker();
  const sawCancel = [];
  const js = (o) => JSON.stringify(o);
  let release;
  const gate = new Promise((r) => { release = r; });
  const started = [];
  const w = new bm.Worker({
    types: 'pywork', credit: 2, endpoint: fb.endpoint, heartbeatMs: 100,
    handler: async (payload, job) => {
      started.push(job.id);
      if (payload === 'wait-cancel') {
        await new Promise((r) => job.signal.addEventListener('abort', r));
        sawCancel.push([job.signal.aborted, job.cancelReason]);
        return { returned: 'anyway' };
      }
      await gate;
      return 'finished';
    },
  }).start();
  try {
    const ident = (await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY')).ident;
    for (const [id, p] of [['c1', 'wait-cancel'], ['c2', 'x'], ['c3', 'x']]) {
      await fb.send(ident, 0x02, { jobId: id, botType: 'pywork', payload: p, attempt: 1 });
    }
    const r = await fb.waitFor((m) => m.cmd === 0x08, 3000, 'RELEASE');
    check(r.body.jobId === 'c3', 'a JOB beyond the credit is RELEASEd');
    await fb.send(ident, 0x07, { jobId: 'c1', reason: 'timeout' });
    const d = await fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === 'c1', 3000, 'DONE c1');
    check(js(sawCancel) === js([[true, 'timeout']]), 'CANCEL aborts job.signal', sawCancel);
    check(d.body.ok === false && d.body.result === undefined
      && js(d.body.error) === js({ code: 'timeout', message: 'stopped by the broker (timeout)' }),
    'the stopped run ends failed with timeout, whatever its handler returned', d.body);
    await fb.send(ident, 0x02, { jobId: 'c2', botType: 'pywork', payload: 'x', attempt: 2 });
    for (const id of ['c4', 'c5']) await fb.send(ident, 0x02, { jobId: id, botType: 'pywork', payload: 'x', attempt: 1 });
    await fb.waitFor((m) => m.cmd === 0x08 && m.body.jobId === 'c5', 3000, 'RELEASE c5');
    check(started.filter((x) => x === 'c2').length === 1 && w.running === 2, 'a JOB already running here is not run twice', started);
    const stopped = w.stop({ graceMs: 5000 });
    const r0 = await fb.waitFor((m) => m.cmd === 0x01 && m.body.credit === 0, 3000, 'READY credit 0');
    check(r0.body.types.join() === 'pywork', 'credit 0 READY keeps the types');
    release();
    await stopped;
    await fb.waitFor((m) => m.cmd === 0x06, 3000, 'DISCONNECT');
    const order = fb.got().filter((m) => [0x04, 0x06, 0x08].includes(m.cmd)).map((m) => m.cmd);
    check(order.slice(-3).join() === '4,4,6', 'stop: DONE of the running jobs, then DISCONNECT', order);
  } finally {
    release();
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

tests.codecValuesSent = async () => {
  const { toWire, pack } = bm._codec;
  const back = (v) => unpack(pack({ v })).v;
  check(JSON.stringify(back(new Map([['a', 1], [2, 'b']]))) === '{"2":"b","a":1}', 'a Map goes as a map',
    back(new Map([['a', 1]])));
  const bytes = back(new Float64Array([1.5]));
  check(bytes instanceof Uint8Array && bytes.length === 8 && Buffer.from(bytes).readDoubleLE(0) === 1.5,
    'a typed array goes as bin, its bytes', bytes);
  check(Buffer.from(back(new Uint8Array([7, 8]).buffer)).equals(Buffer.from([7, 8])), 'an ArrayBuffer goes as bin');
  for (const [what, v, says] of [['a Set', new Set([1]), 'Set'], ['a Map with an object key', new Map([[{}, 1]]), 'object key'],
    ['a lone surrogate', 'a\ud800b', 'lone surrogate']]) {
    let e = null;
    try { toWire({ v }); } catch (err) { e = err; }
    check(e instanceof TypeError && e.message.includes(says), `${what} is refused (TypeError naming it)`, e && e.message);
  }
  let e = null;
  try { pack({ s: 'a\ud800b' }); } catch (err) { e = err; }
  check(e instanceof TypeError, 'pack refuses a lone surrogate with a TypeError', e && e.message);
};

tests.workerStopGraceReleases = async () => {
  const fb = await workerBroker();
  let seen = null;
  const w = new bm.Worker({ types: ['pywork'], endpoint: fb.endpoint, heartbeatMs: 100, handler: (p, job) => { seen = job; return new Promise(() => {}); } }).start();
  try {
    const ident = (await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY')).ident;
    await fb.send(ident, 0x02, { jobId: 'g1', botType: 'pywork', payload: null, attempt: 1 });
    await waitUntil(() => w.running === 1, 3000, 'job to run');
    const t0 = Date.now();
    await w.stop({ graceMs: 300 });
    check(Date.now() - t0 < 2500, 'stop is bounded by the grace period');
    check(seen.signal.aborted && seen.signal.reason === 'released', 'the released job\'s signal is aborted (released)',
      seen.signal.reason);
    await fb.waitFor((m) => m.cmd === 0x06, 3000, 'DISCONNECT');
    const order = fb.got().filter((m) => [0x06, 0x08].includes(m.cmd)).map((m) => [m.cmd, m.body]);
    check(order.length === 2 && order[0][0] === 0x08 && order[0][1].jobId === 'g1' && order[1][0] === 0x06,
      'after the grace: RELEASE, then DISCONNECT', order);
  } finally {
    fb.close();
  }
};

tests.workerReconnects = async () => {
  const fb = await workerBroker();
  fb.heartbeats = false;                      // a silent broker: liveness runs out
  let release;
  const gate = new Promise((r) => { release = r; });
  const w = new bm.Worker({ types: ['pywork'], endpoint: fb.endpoint, heartbeatMs: 100, liveness: 3, handler: async () => { await gate; return 'late'; } }).start();
  try {
    const first = await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY');
    await fb.send(first.ident, 0x02, { jobId: 'r1', botType: 'pywork', payload: null, attempt: 1 });
    const second = await fb.waitFor((m) => m.cmd === 0x01 && !m.ident.equals(first.ident), 3000, 'READY on a new socket');
    const el = second.at - first.at;
    check(el > 250 && el < 1500, 'silence for liveness x interval (300 ms) -> new DEALER + READY', el);
    check(first.body.running === undefined && JSON.stringify(second.body.running) === '["r1"]',
      'the READY on a new socket lists the job still running', second.body);
    fb.heartbeats = true;
    await fb.send(second.ident, 0x06, { reason: 'unknown worker' });
    const third = await fb.waitFor((m) => m.cmd === 0x01 && !m.ident.equals(first.ident) && !m.ident.equals(second.ident), 3000, 'READY after DISCONNECT');
    check(third.at - second.at < 500, 'DISCONNECT -> new socket and READY at once', third.at - second.at);
    release();
    const d = await fb.waitFor((m) => m.cmd === 0x04, 3000, 'DONE after reconnect');
    check(d.ident.equals(third.ident) && d.body.result === 'late', 'DONE of a job from before the reconnect goes on the new socket');
    const n = w.connects;
    await fb.send(third.ident, [WH, Buffer.from([0x02]), Buffer.from([0xc1])]);
    await fb.send(third.ident, [Buffer.from('XXXXX'), Buffer.from([0x02]), pack({})]);
    await fb.send(third.ident, [WH, Buffer.from([0x02, 0x02]), pack({ jobId: 'two' })]);
    await fb.send(third.ident, [WH, Buffer.from([0x02]), Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])]);
    await fb.send(third.ident, 0x02, { payload: 'no id' });
    await fb.send(third.ident, 0x02, { jobId: 'after', payload: null });
    await fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === 'after', 3000, 'DONE after');
    check(w.connects === n && fb.got(0x04).map((m) => m.body.jobId).join() === 'r1,after', 'malformed messages are ignored');
  } finally {
    release();
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

// Recent DONEs are sent again after READY on a new socket (oldest first, at
// most 1,000, those of the last 4 x heartbeat x liveness); a JOB for a job
// completed here is answered with its DONE, attempt set to the JOB's, and the
// handler does not run again; a failed job runs again.
// A CANCEL that crosses the DONE of a completed run: the broker did not take
// that result, so it does not answer the job's next JOB (the handler runs again).
tests.workerCancelAfterDone = async () => {
  const runs = {};
  const fb = await workerBroker();
  const w = new bm.Worker({
    types: ['pywork'], credit: 1, endpoint: fb.endpoint, heartbeatMs: 100, liveness: 50, log: false,
    handler: async (payload, job) => {
      runs[job.id] = (runs[job.id] || 0) + 1;
      return { run: runs[job.id], attempt: job.attempt };
    },
  }).start();
  try {
    const ready = await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY');
    const job = { jobId: 'x1', botType: 'pywork', payload: {}, timeoutMs: 10000 };
    await fb.send(ready.ident, 0x02, { ...job, attempt: 1 });
    const d1 = await fb.waitFor((m) => m.cmd === 0x04 && m.body.attempt === 1, 3000, 'DONE x1#1');
    check(d1.body.ok === true, "x1's first run completed", d1.body);
    await fb.send(ready.ident, 0x07, { jobId: 'x1', reason: 'timeout' });
    await fb.send(ready.ident, 0x02, { ...job, attempt: 2 });
    const d2 = await fb.waitFor((m) => m.cmd === 0x04 && m.body.attempt === 2, 3000, 'DONE x1#2');
    check(d2.body.ok === true && d2.body.result.run === 2 && d2.body.result.attempt === 2 && runs.x1 === 2,
      'after a CANCEL for the run it completed, the worker runs the handler again for attempt 2', d2.body, runs);
    check(w.jobsAnsweredAgain === 0, 'no JOB answered with the discarded DONE', w.jobsAnsweredAgain);
  } finally {
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

tests.workerCancelReasons = async () => {
  // A run stopped by CANCEL ends with DONE code 'cancelled' only for a CANCEL
  // 'cancelled', 'timeout' for 'timeout', 'stopped' for any other reason (no
  // one cancelled the job: a broker that takes the DONE counts a failed run).
  const fb = await workerBroker();
  const w = new bm.Worker({
    types: 'pywork', credit: 1, endpoint: fb.endpoint, heartbeatMs: 100,
    handler: async (payload, job) => {
      await new Promise((r) => job.signal.addEventListener('abort', r));
      return { returned: 'anyway' };
    },
  }).start();
  try {
    const ident = (await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY')).ident;
    for (const [reason, code] of [['cancelled', 'cancelled'], ['timeout', 'timeout'], ['unknown', 'stopped'],
      ['finished', 'stopped'], ['duplicate', 'stopped'], ['not_owner', 'stopped']]) {
      const id = `r-${reason}`;
      await fb.send(ident, 0x02, { jobId: id, botType: 'pywork', payload: {}, attempt: 1, timeoutMs: 10000 });
      await waitUntil(() => w.running === 1, 3000, `${id} to start`);
      await fb.send(ident, 0x07, { jobId: id, reason });
      const d = await fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === id, 3000, `DONE ${id}`);
      check(d.body.ok === false && d.body.result === undefined && d.body.error.code === code
        && d.body.error.message === `stopped by the broker (${reason})`, `CANCEL ${reason} -> DONE code ${code}`, d.body);
      await waitUntil(() => w.running === 0, 3000, `${id} to end`);
    }
  } finally {
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

tests.workerKeepsDonesBounds = async () => {
  // The kept DONEs are bounded as botmesh-worker's: by count (so the 1,200
  // DONEs of a burst are all sent again after a reconnect) and by bytes (the
  // bodies' msgpack, the oldest dropped first).
  const reconnect = async (fb) => {
    const seen = fb.got(0x01).map((m) => m.ident.toString('hex'));
    await fb.send(fb.got(0x01).slice(-1)[0].ident, 0x06, { reason: 'unknown worker' });
    return fb.waitFor((m) => m.cmd === 0x01 && !seen.includes(m.ident.toString('hex')), 5000, 'READY on a new socket');
  };
  const fb = await workerBroker();
  // liveness 100: a window of 40 s, so that only the bounds drop DONEs here
  const w = new bm.Worker({
    types: ['pywork'], credit: 100, endpoint: fb.endpoint, heartbeatMs: 100, liveness: 100,
    handler: async (payload) => ({ pad: 'x'.repeat(payload.pad || 0) }),
  }).start();
  try {
    const ready = await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY');
    const n = 1200;
    for (let i = 0; i < n; i += 100) {
      for (let j = i; j < i + 100; j++) {
        await fb.send(ready.ident, 0x02, { jobId: `b${j}`, botType: 'pywork', payload: {}, attempt: 1, timeoutMs: 10000 });
      }
      await fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === `b${i + 99}`, 10000, `DONE b${i + 99}`);
    }
    const again = await reconnect(fb);
    const on = (ident) => fb.got(0x04).filter((m) => m.ident.equals(ident)).map((m) => m.body.jobId);
    await waitUntil(() => on(again.ident).length >= n, 10000, `the ${n} DONEs sent again`);
    const sent = new Set(on(again.ident));
    check(sent.size === n && [...Array(n).keys()].every((j) => sent.has(`b${j}`)),
      `all ${n} DONEs of the burst are sent again`, sent.size);
    // The bytes bound: room for about three DONEs of ~1,000 bytes.
    w._keepBytes = 3500;
    for (const id of ['p1', 'p2', 'p3', 'p4']) {
      await fb.send(again.ident, 0x02, { jobId: id, botType: 'pywork', payload: { pad: 1000 }, attempt: 1, timeoutMs: 10000 });
      await fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === id, 3000, `DONE ${id}`);
    }
    const third = await reconnect(fb);
    await fb.waitFor((m) => m.cmd === 0x04 && m.ident.equals(third.ident) && m.body.jobId === 'p4', 5000, 'p4 sent again');
    check(on(third.ident).join() === 'p2,p3,p4', 'past the bytes bound the oldest DONEs are dropped', on(third.ident));
  } finally {
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

tests.workerKeepsDones = async () => {
  const runs = {};
  let open;
  const gate = new Promise((r) => { open = r; });
  const handler = async (payload, job) => {
    runs[job.id] = (runs[job.id] || 0) + 1;
    if (payload.gate) await gate;
    if (payload.fail) throw new bm.JobError('bot_failed', 'asked to fail');
    return { ran: job.id, attempt: job.attempt };
  };
  const doneOf = (fb, id, attempt, ident) => fb.waitFor((m) => m.cmd === 0x04 && m.body.jobId === id
    && m.body.attempt === attempt && (!ident || m.ident.equals(ident)), 5000, `DONE of ${id} attempt ${attempt}`);
  const sentOn = (fb, ident) => fb.got(0x04).filter((m) => m.ident.equals(ident)).map((m) => `${m.body.jobId}#${m.body.attempt}`).join();
  const reconnect = async (fb) => {
    const seen = fb.got(0x01).map((m) => m.ident.toString('hex'));
    await fb.send(fb.got(0x01).slice(-1)[0].ident, 0x06, { reason: 'unknown worker' });
    return fb.waitFor((m) => m.cmd === 0x01 && !seen.includes(m.ident.toString('hex')), 5000, 'READY on a new socket');
  };
  const job = { botType: 'pywork', timeoutMs: 10000 };
  const js = (o) => JSON.stringify(o, (k, v) => (typeof v === 'bigint' ? v.toString() : v));

  let fb = await workerBroker();
  // liveness 50: a window of 10 s, so that only the cap drops DONEs here
  let w = new bm.Worker({ types: ['pywork'], credit: 2, endpoint: fb.endpoint, heartbeatMs: 100, liveness: 50, handler });
  check(w._keepMax === 100000 && w._keepBytes === 64 * 1024 * 1024,
    'at most 100,000 DONEs of at most 64 MiB kept, as botmesh-worker', w._keepMax, w._keepBytes);
  w._keepMax = 3;
  w.start();
  try {
    const ready = await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY');
    await fb.send(ready.ident, 0x02, { ...job, jobId: 'k1', payload: {}, attempt: 1 });
    const k1 = await doneOf(fb, 'k1', 1);
    check(k1.body.ok === true && k1.body.result.ran === 'k1' && k1.body.result.attempt === 1, 'k1 completed', k1.body);
    await fb.send(ready.ident, 0x02, { ...job, jobId: 'k1', payload: {}, attempt: 2 });
    const k1b = await doneOf(fb, 'k1', 2);
    check(runs.k1 === 1 && js({ ...k1b.body, attempt: 1 }) === js(k1.body) && w.jobsAnsweredAgain === 1,
      'a JOB for a job completed here is answered with its DONE, attempt set to the JOB\'s; the handler does not run again',
      runs, k1b.body, k1.body);
    await fb.send(ready.ident, 0x02, { ...job, jobId: 'f1', payload: { fail: true }, attempt: 1 });
    await doneOf(fb, 'f1', 1);
    await fb.send(ready.ident, 0x02, { ...job, jobId: 'f1', payload: { fail: true }, attempt: 2 });
    const f1b = await doneOf(fb, 'f1', 2);
    check(runs.f1 === 2 && f1b.body.ok === false, 'a job that failed here runs again', runs, f1b.body);
    // Kept now: k1#1, f1#1, f1#2 (the DONE answering a JOB again is not kept).
    const again = await reconnect(fb);
    await doneOf(fb, 'f1', 2, again.ident);
    check(sentOn(fb, again.ident) === 'k1#1,f1#1,f1#2',
      'after READY on a new socket the kept DONEs are sent again, oldest first', sentOn(fb, again.ident));
    // A fourth DONE: the cap (3 here) drops the oldest, k1's, which no longer answers a JOB.
    await fb.send(again.ident, 0x02, { ...job, jobId: 'c1', payload: {}, attempt: 1 });
    await doneOf(fb, 'c1', 1, again.ident);
    await fb.send(again.ident, 0x02, { ...job, jobId: 'k1', payload: {}, attempt: 3 });
    await doneOf(fb, 'k1', 3, again.ident);
    check(runs.k1 === 2, 'past the cap a completed job\'s DONE is forgotten: the handler runs', runs);
    const third = await reconnect(fb);
    await doneOf(fb, 'k1', 3, third.ident);
    check(sentOn(fb, third.ident) === 'f1#2,c1#1,k1#3', 'at most the cap of DONEs are kept', sentOn(fb, third.ident));
  } finally {
    await w.stop({ graceMs: 0 });
    fb.close();
  }

  // The window: 2 x (heartbeat 100 ms x liveness 2 x 2) = 800 ms.
  fb = await workerBroker();
  for (const k of Object.keys(runs)) delete runs[k];
  w = new bm.Worker({ types: ['pywork'], credit: 1, endpoint: fb.endpoint, heartbeatMs: 100, liveness: 2, handler }).start();
  try {
    const ready = await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY');
    await fb.send(ready.ident, 0x02, { ...job, jobId: 'old', payload: {}, attempt: 1 });
    const old = await doneOf(fb, 'old', 1);
    await waitUntil(() => Date.now() - old.at > 1000, 3000, 'the window of the DONE to pass');
    const again = await reconnect(fb);
    await fb.send(again.ident, 0x02, { ...job, jobId: 'old', payload: {}, attempt: 2 });
    await doneOf(fb, 'old', 2, again.ident);
    check(sentOn(fb, again.ident) === 'old#2' && runs.old === 2,
      'a DONE older than 4 x heartbeat x liveness is not sent again nor answers a JOB', sentOn(fb, again.ident), runs);
    // A JOB again for a job still running: its DONE ends that newer attempt.
    await fb.send(again.ident, 0x02, { ...job, jobId: 'slow', payload: { gate: 1 }, attempt: 1 });
    await waitUntil(() => runs.slow === 1, 5000, 'the slow handler to start');
    await fb.send(again.ident, 0x02, { ...job, jobId: 'slow', payload: { gate: 1 }, attempt: 2 });
    await waitUntil(() => w.jobs.get('slow') && w.jobs.get('slow')._doneAttempt === 2, 5000, 'the JOB of attempt 2 to be read');
    open();
    const d = await doneOf(fb, 'slow', 2, again.ident);
    check(runs.slow === 1 && d.body.result.attempt === 1 && fb.got(0x04).filter((m) => m.body.jobId === 'slow').length === 1,
      'a JOB again for a job still running: one run, its DONE carries the newer attempt', d.body, runs);
  } finally {
    await w.stop({ graceMs: 0 });
    fb.close();
  }
};

tests.curve = async () => {
  const server = zmq.curveKeyPair();
  const client = zmq.curveKeyPair();
  const fb = await new FakeBroker((b, m) => {
    if (CH.equals(m.header) && m.cmd === 0x08) return [[0x83, { req: m.body.req, redis: true, uptimeMs: 1 }]];
    if (WH.equals(m.header) && m.cmd === 0x01) return [[0x02, { jobId: 'cj', botType: 'pywork', payload: 3, attempt: 1 }]];
    return [];
  }, CH, server.secretKey).bind();
  const curve = { serverKey: server.publicKey, publicKey: client.publicKey, secretKey: client.secretKey };
  try {
    const c = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 3000, curve });
    check((await c.ping()).uptimeMs === 1, 'the client talks to a CURVE server with its keys');
    c.close();
    fb.header = WH;
    const w = new bm.Worker({ types: 'pywork', endpoint: fb.endpoint, curve, heartbeatMs: 100, handler: (p) => p * 2 }).start();
    const d = await fb.waitFor((m) => m.cmd === 0x04, 3000, 'DONE over CURVE');
    check(d.body.result === 6, 'the worker runs a job over CURVE');
    await w.stop({ graceMs: 0 });
    fb.header = CH;
    const bad = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 500, curve: Object.assign({}, curve, { serverKey: zmq.curveKeyPair().publicKey }) });
    const e = await rejects(bad.ping());
    check(e.code === 'broker_timeout', 'a wrong server key ends in broker_timeout, not a hang');
    bad.close();
  } finally {
    fb.close();
  }
};

tests.workerBadConfig = async () => {
  let e;
  try { new bm.Worker({ types: ['Bad Type'], handler: () => null }); } catch (x) { e = x; }
  check(e && /Bad Type/.test(e.message), 'a bad bot type is refused');
  for (const name of ['has space', '', 'x'.repeat(129), 'caf\u00e9', 7]) {
    e = null;
    try { new bm.Worker({ types: ['pywork'], name, handler: () => null }); } catch (x) { e = x; }
    check(e instanceof TypeError && /name/.test(e.message), `the worker name ${JSON.stringify(name)} is refused up front`,
      e && e.message);
  }
};

// READY refused (NACK bad_request before the broker sent anything else): fatal, not a loop.
tests.workerReadyRefused = async () => {
  const fb = await workerBroker();
  fb.heartbeats = false;
  const lines = [];
  const w = new bm.Worker({ types: ['pywork'], endpoint: fb.endpoint, heartbeatMs: 50, liveness: 2,
    handler: () => null, log: (level, m) => lines.push(`${level} ${m}`) }).start();
  try {
    const ident = (await fb.waitFor((m) => m.cmd === 0x01, 3000, 'READY')).ident;
    await fb.send(ident, 0x09, { code: 'bad_request', message: 'name must be 1-128 printable characters' });
    const e = await rejects(w.done);
    check(e instanceof bm.BotmeshError && e.code === 'bad_request' && /refused this worker's READY: name must/.test(e.message),
      'worker.done rejects with the broker\'s reason', e.message);
    check(lines.some((l) => /^error .*refused this worker's READY/.test(l)), 'one error line says so', lines);
    await delay(300);                     // three heartbeat windows: a looping worker would READY again
    check(fb.got().filter((m) => m.cmd === 0x01).length === 1, 'READY was sent once');
  } finally {
    fb.close();
  }
};

// A silent leader, then the standby about to lead: asked every 100 ms, as the C peers do.
// A renewal answered shutting_down (the broker stopping), not_leader (a
// standby), store_unavailable or not at all is a lost subscription: a reset
// and a new one, never a rejection out of the loop.
tests.clientEventsResubscribe = async () => {
  const codes = ['shutting_down', 'not_leader', 'store_unavailable', null];
  const subs = [];
  const fb = await new FakeBroker((b, m) => {
    const req = m.body.req;
    if (m.cmd === 0x10) return [[0x83, { req }]];
    if (m.cmd !== 0x0f) return [];
    let sid = m.body.subscription;
    if (sid === undefined) {
      subs.push(`s${subs.length + 1}`);
      sid = subs[subs.length - 1];
      return [[0x83, { req, subscription: sid, seq: 0 }],
        [0x87, { subscription: sid, seq: 1, event: 'waiting', jobId: `j-${sid}` }]];
    }
    const n = subs.indexOf(sid);
    if (n >= codes.length) return [[0x83, { req, subscription: sid, seq: 1 }]];
    if (codes[n] === null) return [];          // silence: a broker gone
    return [[0x82, { req, code: codes[n], message: `lost: ${codes[n]}` }]];
  }).bind();
  const c = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 1000 });
  try {
    const it = c.events({ ttlMs: 600 });       // renewals every 200 ms
    const got = [];
    while (got.length < 2 * codes.length + 1) {
      let r;
      try { r = await it.next(); } catch (e) { throw new Error(`FAILED: events() threw ${e} after ${JSON.stringify(got)}`); }
      const ev = r.value;
      got.push(ev.jobId ? `${ev.event} ${ev.jobId}` : ev.event);
    }
    const want = [];
    for (let i = 1; i <= codes.length + 1; i++) {
      if (i > 1) want.push('reset');
      want.push(`waiting j-s${i}`);
    }
    check(JSON.stringify(got) === JSON.stringify(want), "each lost subscription: a reset, then the new one's events", got);
    await it.return();
    const un = fb.got(0x10).map((m) => m.body.subscription);
    check(JSON.stringify(un) === JSON.stringify([`s${codes.length + 1}`]), 'return() unsubscribes the live one', un);
  } finally {
    c.close();
    fb.close();
  }
};

// A fake broker's ACCEPTED_MANY items for flow(): one job per idempotencyKey
// (made maps each key to its job id), or the refusal refusals gives for the
// job's payload.
function flowOutcomes(made, jobs, refusals = {}) {
  return jobs.map((job) => {
    if (refusals[job.payload]) return refusals[job.payload];
    const duplicate = made[job.idempotencyKey] !== undefined;
    if (!duplicate) made[job.idempotencyKey] = `j${Object.keys(made).length}`;
    return { jobId: made[job.idempotencyKey], duplicate };
  });
}

// flow(): leaves first, each height in SUBMIT_MANY messages, parents naming their children's
// ids, keys derived from the flow key; a refused node rejects FlowRejected with
// the flow key and the jobs made; a tree too deep is refused before anything is sent.
tests.clientFlow = async () => {
  const made = {};
  const fb = await new FakeBroker((b, m) => {
    if (m.cmd !== 0x0A) return [];
    return [[0x85, { req: m.body.req, jobs: flowOutcomes(made, m.body.jobs, { refuse: { code: 'bad_request', message: 'no' } }) }]];
  }).bind();
  const c = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 3000 });
  try {
    const out = await c.flow({ botType: 'dep', payload: 'top', dependsOn: ['x'], children: [
      { botType: 'dep', payload: 'a', children: [{ botType: 'dep', payload: 'a0' }] },
      { botType: 'dep', payload: 'b', idempotencyKey: 'own' }] });
    const sent = fb.got(0x0A).map((m) => m.body.jobs);
    check(JSON.stringify(sent.map((level) => level.map((j) => j.payload))) === '[["a0","b"],["a"],["top"]]',
      'one SUBMIT_MANY a height here, leaves first', sent);
    const key = out.flowKey;
    check(key.startsWith('flow-') && sent[2][0].idempotencyKey === key && sent[1][0].idempotencyKey === `${key}/0`
      && sent[0][0].idempotencyKey === `${key}/0.0` && sent[0][1].idempotencyKey === 'own',
      'keys: the flow\'s, <flowKey>/<path>, a node\'s own', sent);
    const [a0, b, a] = [made[`${key}/0.0`], made.own, made[`${key}/0`]];
    check(JSON.stringify(sent[1][0].dependsOn) === JSON.stringify([a0])
      && JSON.stringify(sent[2][0].dependsOn) === JSON.stringify(['x', a, b])
      && sent[2][0].dependencyResults === true && sent[0][0].dependsOn === undefined,
      'a parent depends on its own ids then its children\'s, reading their results', sent);
    check(out.jobId === made[key] && out.children[0].children[0].jobId === a0 && out.children[1].children === undefined,
      'the answer mirrors the tree', out);
    const e = await rejects(c.flow({ botType: 'dep', payload: 1, children: [{ botType: 'dep', payload: 2 },
      { botType: 'dep', payload: 3, children: [{ botType: 'dep', payload: 'refuse' }] }] }));
    check(e instanceof bm.FlowRejected && e instanceof bm.Rejected && e.code === 'bad_request'
      && e.message.includes('children[1].children[0]') && e.message.includes(e.flowKey)
      && JSON.stringify(e.created) === JSON.stringify({ 0: made[`${e.flowKey}/0`] }),
      'a refused node: FlowRejected naming it, the flow key and the job made', e);
    check(e.retryable === false && e.message.includes('correct the refused node') && !e.message.includes('to complete it'),
      'a refusal for what the node says: not promised to pass on a retry', e.message);
    const n = fb.got(0x0A).length;
    let deep = { botType: 'dep', payload: 0 };
    for (let i = 0; i < bm.FLOW_MAX_DEPTH; i++) deep = { botType: 'dep', payload: 0, children: [deep] };
    const d = await rejects(c.flow(deep));
    check(d instanceof RangeError && d.message.includes('deeper than 32') && d.code === 'invalid_flow'
      && fb.got(0x0A).length === n, 'a tree too deep: RangeError invalid_flow, nothing sent', d);
    const t = await rejects(c.flow({ botType: 'dep', payload: 1, children: [{ botType: 'dep', payload: 2 }, { payload: 3 }] }));
    check(t instanceof TypeError && t.message.includes('children[1]') && fb.got(0x0A).length === n,
      'a node without a botType: TypeError naming it, nothing sent', t);
  } finally {
    c.close();
    fb.close();
  }
};

// flow() checks the whole tree with POST /flows' limits, codes and words
// before it sends anything: children and dependsOn past 100 at any node, more
// than MAX_BATCH nodes (counted before they are walked), two nodes with one
// key, a bad key. Each would otherwise be refused only at its parent's height,
// after the leaves were made.
tests.clientFlowChecks = async () => {
  const fb = await new FakeBroker((b, m) => (m.cmd === 0x0A
    ? [[0x85, { req: m.body.req, jobs: m.body.jobs.map((j) => ({ jobId: `j-${j.idempotencyKey}` })) }]] : [])).bind();
  const c = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 3000 });
  const leaf = (n, more = {}) => Object.assign({ botType: 'dep', payload: n }, more);
  const range = (k, f) => Array.from({ length: k }, (_, i) => f(i));
  try {
    let comb = leaf('leaf');
    for (let i = 0; i < 30; i++) comb = leaf(i, { children: [comb].concat(range(99, () => leaf(0))) });
    const cases = [
      ['101 children at children[0]', leaf(0, { children: [leaf(1, { children: range(101, leaf) })] }),
        'invalid_dependencies', 'children[0]: 101 children and 0 dependsOn: a job waits for at most 100 jobs'],
      ['99 children and 2 dependsOn at the top', leaf(0, { dependsOn: ['a', 'b'], children: range(99, leaf) }),
        'invalid_dependencies', '99 children and 2 dependsOn: a job waits for at most 100 jobs'],
      ['1001 nodes', leaf(0, { children: range(10, (i) => leaf(i, { children: range(99, leaf) })) }),
        'too_many_jobs', 'the flow holds more than 1000 jobs; at most 1000 go in one request (MAX_BATCH)'],
      ['31 levels of 100 children walked down the first', comb, 'too_many_jobs', 'more than 1000 jobs'],
      ['a node\'s own key equal to another\'s derived one',
        leaf(0, { idempotencyKey: 'k', children: [leaf(1, { idempotencyKey: 'k/1' }), leaf(2)] }),
        'invalid_idempotency_key', 'children[1]: its idempotency key "k/1" is also the key of children[0]'],
      ['two siblings with one key',
        leaf(0, { children: [leaf(1, { idempotencyKey: 'same' }), leaf(2, { idempotencyKey: 'same' })] }),
        'invalid_idempotency_key', 'children[1]: its idempotency key "same" is also the key of children[0]: each job of a flow needs its own'],
      ['a child\'s key equal to the flow\'s',
        leaf(0, { idempotencyKey: 'f', children: [leaf(1, { children: [leaf(2, { idempotencyKey: 'f' })] })] }),
        'invalid_idempotency_key', 'children[0].children[0]: its idempotency key "f" is also the key of the top node'],
      ['a key with a space in the middle',
        leaf(0, { children: [leaf(1, { children: [leaf(2)], idempotencyKey: 'a b' })] }),
        'invalid_idempotency_key', 'children[0]: idempotencyKey must be 1 to 128 printable ASCII'],
    ];
    for (const [what, tree, code, words] of cases) {
      const e = await rejects(c.flow(tree));
      check(e instanceof RangeError && e.code === code && e.message.includes(words) && fb.got(0x0A).length === 0,
        `${what}: RangeError ${code}, nothing sent`, e.message, e.code);
    }
    const t = await rejects(c.flow(leaf(0, { children: [leaf(1, { children: [7] })] })));
    check(t instanceof TypeError && t.code === 'invalid_body' && t.message.startsWith('children[0].children[0]: ')
      && fb.got(0x0A).length === 0, 'a node that is no object: TypeError invalid_body', t.message);
    const out = await c.flow(leaf(0, { dependsOn: ['a'], children: range(99, leaf) }));
    check(out.children.length === 99 && fb.got(0x0A).length === 2, '99 children and 1 dependsOn: 100, sent', out);
  } finally {
    c.close();
    fb.close();
  }
};

// An error of a later height's submitMany (no answer in time, the whole
// message refused) carries the flow key, the jobs made and whether the same
// call can complete it; the same call with that key resumes on the same jobs.
// A node refused for a reason that passes (queue_full) promises completion.
tests.clientFlowHalfway = async () => {
  const made = {};
  const silent = { top: 1 };            // answers left to withhold, by payload
  const fb = await new FakeBroker((b, m) => {
    if (m.cmd !== 0x0A) return [];
    const payloads = m.body.jobs.map((j) => j.payload);
    for (const p of payloads) {
      if (silent[p]) { silent[p] -= 1; return []; }
    }
    if (payloads.includes('unstored')) {
      return [[0x82, { req: m.body.req, code: 'store_unavailable', message: 'job storage is unavailable; retry later' }]];
    }
    const full = { code: 'queue_full', message: 'the queue of this bot type is full; retry later' };
    return [[0x85, { req: m.body.req, jobs: flowOutcomes(made, m.body.jobs, { full }) }]];
  }).bind();
  const c = new bm.Client({ endpoint: fb.endpoint, timeoutMs: 3000 });
  try {
    const tree = { botType: 'dep', payload: 'top', children: [{ botType: 'dep', payload: 'a' }, { botType: 'dep', payload: 'b' }] };
    const e = await rejects(c.flow(tree, { requestTimeoutMs: 500 }));
    const key = e.flowKey;
    check(e instanceof bm.BrokerTimeout && typeof key === 'string' && key.startsWith('flow-')
      && JSON.stringify(e.created) === JSON.stringify({ 0: made[`${key}/0`], 1: made[`${key}/1`] })
      && e.retryable === true && e.message.includes(key)
      && e.message.includes('2 of the flow\'s 3 jobs were created') && e.message.includes('to complete it'),
      'no answer for the top\'s height: BrokerTimeout with the flow key and the 2 jobs made', e.message, e.created);
    const n = Object.keys(made).length;
    const out = await c.flow(Object.assign({}, tree, { idempotencyKey: key }));
    check(out.flowKey === key && JSON.stringify(out.children.map((k) => k.jobId)) === JSON.stringify([e.created[0], e.created[1]])
      && Object.keys(made).length === n + 1,
      'the same call with that key: the same children, and the top made', out);
    const w = await rejects(c.flow({ botType: 'dep', payload: 'p', children: [{ botType: 'dep', payload: 'unstored' }] }));
    check(w instanceof bm.Rejected && w.code === 'store_unavailable' && JSON.stringify(w.created) === '{}'
      && w.retryable === true && w.message.includes(w.flowKey) && w.message.includes('to complete it'),
      'a submitMany refused whole: Rejected with the flow key, retryable', w.message);
    const f = await rejects(c.flow({ botType: 'dep', payload: 'full', children: [{ botType: 'dep', payload: 'c' }] }));
    check(f instanceof bm.FlowRejected && f.code === 'queue_full' && f.retryable === true
      && f.message.includes('the top node: ') && f.message.includes('to complete it') && Object.keys(f.created).length === 1,
      'the top refused queue_full: FlowRejected, retryable, the same call completes it', f.message);
  } finally {
    c.close();
    fb.close();
  }
};

tests.endpointsFollowTheLeader = async () => {
  const eps = new bm.Endpoints('tcp://a:1,tcp://b:2');
  check(eps.current === 'tcp://a:1', 'the first endpoint first');
  check(eps.next(undefined, true) === 100 && eps.current === 'tcp://b:2', 'a silent leader: the next one, 100 ms');
  const waits = [];
  for (let i = 0; i < 40; i++) waits.push(eps.next('tcp://a:1'));
  check(eps.current === 'tcp://b:2' && waits.every((w) => w === 100),
    'the standby that still names the silent leader is asked again every 100 ms', waits);
  check(eps.next('tcp://a:1') === 200 && eps.current === 'tcp://b:2',
    'after the quick tries, the usual backoff (it holds its lease after all)');
  check(eps.next('tcp://a:1') === 400 && eps.current === 'tcp://a:1', 'and the leader it names may be asked again');
  eps.served();
  check(eps.next('tcp://b:2') === 100 && eps.current === 'tcp://b:2', 'a named leader; served resets');
};

(async () => {
  try {
    for (const [name, fn] of Object.entries(tests)) {
      log('==', name);
      await fn();
    }
  } catch (e) {
    console.log(e.stack || String(e));
    process.exit(1);
  }
  console.log('PASS');
  process.exit(0);
})();
