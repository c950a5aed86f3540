'use strict';
/*  e2e_node_usage.js ENDPOINT - the Node client as clients/README.md shows it,
    against a real broker and Redis (a Python worker serves 'pywork'): list()
    positional and as an object, state filters checked as GET /jobs checks
    them, BullMQ's backoff {type, delay}, unknown or wrong-typed options
    refused with a TypeError naming them, a malformed endpoint named, and
    job.progress() refusing what is not a number (a Node worker here serves
    'nodeuse').  Prints one line per check; exits 1 on the first failure.  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const [endpoint, invalidStateMessage] = process.argv.slice(2);
function check(cond, what, detail) {
  if (!cond) { console.log(`FAILED: ${what} ${JSON.stringify(detail)}`); process.exit(1); }
  console.log(`ok: ${what}`);
}
async function rejection(p) { try { await p; } catch (e) { return e; } return null; }
function thrown(fn) { try { fn(); } catch (e) { return e; } return null; }

(async () => {
  const c = new bm.Client({ endpoint, timeoutMs: 5000 });

  // Three completed jobs, one failed (fixed backoff given as BullMQ writes it).
  for (let i = 0; i < 3; i++) {
    const rec = await c.wait(await c.submit('pywork', { i }, { notify: true }), { timeoutMs: 30000, pollMs: 100 });
    check(rec.state === 'completed', `job ${i} completed`, rec);
  }
  const t0 = Date.now();
  const failing = await c.submit('pywork', { fail: true }, { attempts: 2, backoff: { type: 'fixed', delay: 400 } });
  const failed = await c.wait(failing, { timeoutMs: 30000, pollMs: 100 });
  check(failed.state === 'failed' && failed.attempts === 2 && failed.finishedAt - failed.createdAt >= 400,
    'backoff {type: fixed, delay: 400} (BullMQ) accepted: 2 runs, 400 ms apart at least',
    [failed.state, failed.attempts, failed.finishedAt - failed.createdAt, Date.now() - t0]);
  let e = await rejection(c.submit('pywork', {}, { backoff: { type: 'fixed', delay: 1, delayMs: 1 } }));
  check(e instanceof bm.Rejected && e.code === 'bad_request' && /backoff\.delay and backoff\.delayMs/.test(e.message),
    'backoff with both delay and delayMs rejects bad_request naming both', e && [e.code, e.message]);

  // list() positional, as the README's table shows it, and as an object.
  let jobs = await c.list('completed');
  check(jobs.length >= 3 && jobs.every((j) => j.state === 'completed'), "list('completed') filters on the state",
    jobs.map((j) => j.state));
  jobs = await c.list('completed', 'pywork', 2);
  check(jobs.length === 2 && jobs.every((j) => j.state === 'completed' && j.botType === 'pywork'),
    "list('completed', 'pywork', 2): two completed pywork jobs", jobs);
  jobs = await c.list('failed', 'pywork', 10, 3000);
  check(jobs.length >= 1 && jobs[0].jobId === failing && jobs.every((j) => j.state === 'failed'),
    'list(state, botType, limit, timeoutMs): newest failed first', jobs);
  jobs = await c.list({ state: 'completed', botType: 'pywork', limit: 1 });
  check(jobs.length === 1 && jobs[0].state === 'completed', 'list({state, botType, limit}) still works', jobs);
  jobs = await c.list({ state: 'failed' }, 3000);
  check(jobs.length >= 1 && jobs.every((j) => j.state === 'failed'), 'list(filter, timeoutMs) still works', jobs);
  jobs = await c.list();
  check(jobs.length >= 4, 'list() lists every state', jobs.length);
  jobs = await c.list('wait');
  check(Array.isArray(jobs) && jobs.every((j) => j.state === 'queued'), "list('wait') reads BullMQ's name as queued", jobs);
  for (const bad of ['bogus', 'Completed']) {
    e = await rejection(c.list(bad));
    check(e instanceof bm.Rejected && e.code === 'invalid_state' && e.message === invalidStateMessage,
      `list('${bad}') rejects invalid_state with GET /jobs' message`, e && [e.code, e.message]);
  }
  e = await rejection(c.list({ state: 'bogus' }));
  check(e && e.code === 'invalid_state', "list({state: 'bogus'}) rejects invalid_state", e && e.code);
  // list({webhook}): no webhook manager runs here, so a finished job's webhook stays pending.
  const hooked = await c.submit('pywork', { hook: 1 }, { webhookUrl: 'http://127.0.0.1:9/hook', notify: true });
  check((await c.wait(hooked, { timeoutMs: 30000, pollMs: 100 })).state === 'completed',
    'the job with a webhook completed');
  jobs = await c.list({ webhook: 'pending' });
  check(jobs.length === 1 && jobs[0].jobId === hooked, "list({webhook: 'pending'}): the job with a webhook only", jobs);
  jobs = await c.list({ webhook: 'pending', state: 'completed', botType: 'pywork' }, 3000);
  check(jobs.length === 1 && jobs[0].jobId === hooked, 'list({webhook, state, botType}, timeoutMs)', jobs);
  jobs = await c.list({ webhook: 'failed' });
  check(jobs.length === 0, "list({webhook: 'failed'}): none", jobs);
  for (const bad of ['Pending', 'gaveup']) {
    e = await rejection(c.list({ webhook: bad }));
    check(e instanceof bm.Rejected && e.code === 'invalid_webhook'
      && e.message.includes('pending, retrying, delivered, failed'),
      `list({webhook: '${bad}'}) rejects invalid_webhook naming the states`, e && [e.code, e.message]);
  }
  e = await rejection(c.list({ webhook: 3 }));
  check(e instanceof TypeError && /webhook/.test(e.message), 'list({webhook: 3}): a TypeError naming webhook',
    e && e.message);
  // A wrong-typed argument is a TypeError naming it, never "NaN ms".
  for (const [call, name] of [[() => c.list('completed', 'pywork', '2'), 'limit'],
    [() => c.list('completed', 7), 'botType'], [() => c.list('completed', 'pywork', 2, 'soon'), 'timeoutMs'],
    [() => c.list({ state: 'completed' }, 'nodereport'), 'timeoutMs'], [() => c.status(failing, 'x'), 'timeoutMs'],
    [() => c.wait(failing, { timeoutMs: '5' }), 'timeoutMs']]) {
    const t = Date.now();
    e = await rejection(call());
    check(e instanceof TypeError && e.message.includes(name) && !/NaN/.test(e.message) && Date.now() - t < 1000,
      `a wrong-typed ${name} rejects at once with a TypeError naming it`, e && e.message);
  }
  e = await rejection(c.list({ state: 'completed', bot_type: 'pywork' }));
  check(e instanceof TypeError && /bot_type/.test(e.message) && /botType/.test(e.message),
    'list: bot_type names botType', e && e.message);

  // Unknown options: a TypeError naming them, and the name here for a known mistake.
  for (const [call, re] of [
    [() => c.submitFull('pywork', {}, { delay: 5000 }), /unknown option 'delay'.*'delayMs'/],
    [() => c.submitFull('pywork', {}, { jobId: 'x' }), /unknown option 'jobId'.*'idempotencyKey'/],
    [() => c.submit('pywork', {}, { removeOnComplete: true }), /unknown option 'removeOnComplete'/],
    [() => c.submit('pywork', {}, { timeout: 5 }), /unknown option 'timeout'.*'requestTimeoutMs'/],
    [() => c.submit('pywork', {}, 5), /options must be an object/],
    [() => c.submit('pywork', {}, { priority: '1' }), /priority must be an integer/],
    [() => c.submitMany([{ botType: 'pywork', delay: 1 }]), /jobs\[0\].*unknown option 'delay'.*'delayMs'/],
    [() => c.run('pywork', {}, { timeout: 5 }), /unknown option 'timeout'.*'waitMs'/],
    [() => c.wait(failing, { timeout: 5 }), /unknown option 'timeout'.*'timeoutMs'/],
    [() => c.addSchedule({ key: 'k', botType: 'pywork', every: 1000 }), /unknown option 'every'.*'everyMs'/],
    [() => c.clean('pywork', 'failed', '1h'), /olderThanMs must be a number/],
  ]) {
    e = await rejection(call());
    check(e instanceof TypeError && re.test(e.message), `rejects TypeError ${re}`, e && e.message);
  }
  check((await c.list('delayed')).length === 0, 'nothing refused was submitted (no delayed job)');
  check((await c.schedules()).length === 0, 'no schedule was added by a refused addSchedule');
  e = thrown(() => new bm.Client({ endpoint, timeout: 5 }));
  check(e instanceof TypeError && /'timeout'.*'timeoutMs' \(milliseconds\)/.test(e.message),
    'new Client({timeout}) throws naming timeoutMs', e && e.message);
  e = thrown(() => new bm.Client({ endpoint, timeoutMs: '5000' }));
  check(e instanceof TypeError && /timeoutMs/.test(e.message), 'new Client({timeoutMs: string}) throws', e && e.message);
  e = thrown(() => new bm.Worker({ types: ['nodeuse'], handler: () => 1, endpoint, concurrency: 2 }));
  check(e instanceof TypeError && /unknown option 'concurrency'/.test(e.message), 'new Worker: unknown option named',
    e && e.message);

  // A malformed endpoint: named, with the form expected.
  for (const bad of ['localhost:15755', 'tcp://localhost', 'tcp:/127.0.0.1:5555']) {
    e = thrown(() => new bm.Client({ endpoint: bad }));
    check(e instanceof TypeError && e.message.includes(JSON.stringify(bad)) && e.message.includes('tcp://host:port'),
      `endpoint ${bad} throws naming it and tcp://host:port`, e && e.message);
  }

  // progress() refuses what is not a number; a number is recorded.
  const seen = [];
  let release;
  const gate = new Promise((r) => { release = r; });
  const w = new bm.Worker({
    types: ['nodeuse'], endpoint, log: (level, message) => seen.push(`${level} ${message}`),
    handler: async (payload, job) => {
      const err = thrown(() => job.progress({ pct: 50 }));
      job.progress(40);
      await gate;
      return { refused: err instanceof TypeError && /progress must be a number/.test(err.message) };
    },
  }).start();
  const deadline = Date.now() + 30000;
  while (!(await c.stats()).workers.some((x) => x.name === w.name) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const useId = await c.submit('nodeuse', {}, { notify: true });
  let st = await c.status(useId);
  while (st.progress !== 40 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    st = await c.status(useId);
  }
  check(st.progress === 40, 'job.progress(40) is recorded while the job runs', st);
  release();
  const done = await c.wait(useId, { timeoutMs: 30000 });
  check(done.state === 'completed' && done.result.refused === true,
    'job.progress({...}) throws a TypeError in the handler', done);
  check(seen.some((l) => /^info .*connected to tcp:.*\(the broker answered\)/.test(l)),
    'the Node worker logs "connected" through its log option once the broker answered', seen);
  await w.stop({ graceMs: 1000 });

  c.close();
  console.log('NODE USAGE PASS');
  process.exit(0);
})().catch((err) => { console.log(`FAILED: ${err && err.stack}`); process.exit(1); });
