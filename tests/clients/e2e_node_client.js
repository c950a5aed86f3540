'use strict';
/*  e2e_node_client.js ENDPOINT DEAD_ENDPOINT - the Node client against a real
    broker (a Python worker serves 'pywork'): results, REJECTED codes as
    rejected promises, and a dead broker as a bounded broker_timeout.
    Prints one line per check; exits 1 on the first failure.  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const [endpoint, dead] = process.argv.slice(2);
function check(cond, what, detail) {
  if (!cond) { console.log(`FAILED: ${what} ${JSON.stringify(detail)}`); process.exit(1); }
  console.log(`ok: ${what}`);
}
async function rejection(p) { try { await p; } catch (e) { return e; } return null; }

(async () => {
  const c = new bm.Client({ endpoint, timeoutMs: 5000 });
  const payload = { s: 'héllo', n: 1.5, i: -7, big: 2 ** 40, nested: [null, true, { k: 'v' }] };
  const id = await c.submit('pywork', payload, { notify: true, priority: 3, maxAttempts: 2, timeoutMs: 20000 });
  const rec = await c.wait(id, { timeoutMs: 20000 });
  check(rec.state === 'completed' && rec.priority === 3 && rec.maxAttempts === 2 && rec.timeoutMs === 20000,
    'node client: job completed with its options', rec);
  check(JSON.stringify(rec.result.echo) === JSON.stringify(payload), 'node client: payload round-trips through a Python worker', rec.result.echo);
  check(typeof rec.createdAt === 'number' && rec.finishedAt >= rec.createdAt, 'node client: ms timestamps are Numbers', rec.createdAt);
  check((await c.run('pywork', { x: 1 })).echo.x === 1, 'node client: run() resolves the result');
  const first = await c.submitFull('pywork', { k: 1 }, { idempotencyKey: 'node-key-1' });
  await c.wait(first.jobId, { timeoutMs: 20000 });
  const t1 = Date.now();
  const dup = await c.submitFull('pywork', { k: 1 }, { idempotencyKey: 'node-key-1', notify: true });
  const drec = await c.wait(dup.jobId, { timeoutMs: 20000 });
  check(!first.duplicate && dup.duplicate && dup.jobId === first.jobId && drec.state === 'completed' && Date.now() - t1 < 1500,
    'node client: idempotencyKey gives the same job with duplicate; waiting on it does not hang on a push', [first, dup, Date.now() - t1]);
  const f = await rejection(c.run('pywork', { fail: true }));
  check(f instanceof bm.JobFailed && f.code === 'bot_failed' && /asked to fail/.test(f.message), 'node client: a failed job rejects JobFailed bot_failed', f && f.message);
  const many = await c.submitMany([{ botType: 'pywork', payload: { m: 1 } }, { botType: 'nosuchtype' },
    { botType: 'pywork', priority: -1 }, { botType: 'pywork', payload: { m: 2 }, notify: true }]);
  check(many.length === 4 && typeof many[0].jobId === 'string' && many[1] instanceof bm.Rejected
    && many[1].code === 'unknown_bot_type' && many[2].code === 'bad_request' && /priority/.test(many[2].message)
    && typeof many[3].jobId === 'string',
  'node client: submitMany gives one outcome per job in order, refusals returned as Rejected', many);
  const mrec = await c.wait(many[3].jobId, { timeoutMs: 20000 });
  check(mrec.state === 'completed' && mrec.result.echo.m === 2, 'node client: a job of submitMany completes with its payload', mrec);
  const large = await c.submitMany([0, 1, 2, 3].map((i) => ({ botType: 'pywork', payload: { blob: 'z'.repeat(700000), i } })));
  check(large.every((o) => typeof o.jobId === 'string'), 'node client: 4 jobs of 700 KB accepted (split within the frame size)', large.map((o) => o.code));
  let e = await rejection(c.submitMany([]));
  check(e instanceof bm.Rejected && e.code === 'bad_request', 'node client: submitMany([]) rejects bad_request', e && e.code);
  e = await rejection(c.submit('nosuchtype', {}));
  check(e instanceof bm.Rejected && e.code === 'unknown_bot_type' && e.message.length > 0, 'node client: unknown_bot_type rejects with code and message', e && [e.code, e.message]);
  e = await rejection(c.submit('pywork', {}, { priority: -1 }));
  check(e && e.code === 'bad_request' && /priority/.test(e.message), 'node client: bad priority rejects bad_request naming the field', e && [e.code, e.message]);
  e = await rejection(c.submit('Bad Type!', {}));
  check(e && e.code === 'bad_request', 'node client: a malformed botType rejects bad_request', e && [e.code, e.message]);
  e = await rejection(c.status('no-such-job'));
  check(e && e.code === 'not_found', 'node client: STATUS of an unknown job rejects not_found', e && e.code);
  const byKey = await c.status({ key: 'node-key-1' });
  check(byKey.jobId === first.jobId, 'node client: status({ key }) answers the job submitted with that idempotencyKey', byKey);
  e = await rejection(c.status({ key: 'no-such-key' }));
  check(e && e.code === 'not_found', 'node client: status({ key }) of an unknown key rejects not_found', e && e.code);
  e = await rejection(c.cancel(id));
  check(e && e.code === 'conflict', 'node client: CANCEL of a completed job rejects conflict', e && e.code);
  const st = await c.stats();
  check(st.types.pywork && st.types.pywork.completed >= 2, 'node client: stats', st.types.pywork);
  check((await c.list({ botType: 'pywork', limit: 2 })).length === 2, 'node client: list with limit');
  check(typeof (await c.ping()).uptimeMs === 'number', 'node client: ping');
  check(/# (HELP|TYPE)/.test(await c.metrics()), 'node client: metrics text');
  c.close();

  const d = new bm.Client({ endpoint: dead, timeoutMs: 700 });
  const t0 = Date.now();
  e = await rejection(d.submit('pywork', {}));
  const el = Date.now() - t0;
  check(e instanceof bm.BrokerTimeout && e.code === 'broker_timeout' && e.message.includes(dead) && el < 3000,
    `node client: a dead broker rejects broker_timeout in ${el} ms: ${e && e.message}`, e && e.message);
  d.close();
  console.log('NODE CLIENT PASS');
  process.exit(0);
})().catch((err) => { console.log(`FAILED: ${err.stack || err}`); process.exit(1); });
