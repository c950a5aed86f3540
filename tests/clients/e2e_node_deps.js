'use strict';
/*  e2e_node_deps.js ENDPOINT - the Node client's dependsOn against a real
    broker and Redis whose worker runs depbot.py for type 'dep' (its result
    is what it was given): two jobs, then a third with their results;
    the Python name depends_on is a TypeError naming dependsOn, BullMQ's ignoreDependencyOnFailure and
    failParentOnFailure TypeErrors naming the onDependencyFailure value; a bad dependsOn is a TypeError before
    anything is sent, an unknown id the broker's bad_request naming
    dependsOn[0].  Prints one line per check; exits 1 on the first failure.  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const [endpoint] = process.argv.slice(2);
function check(cond, what, detail) {
  if (!cond) { console.log(`FAILED: ${what} ${JSON.stringify(detail)}`); process.exit(1); }
  console.log(`ok: ${what}`);
}
async function rejection(p) { try { await p; } catch (e) { return e; } return null; }

(async () => {
  const c = new bm.Client({ endpoint, timeoutMs: 5000 });
  const a = await c.submit('dep', { n: 'a', sleepMs: 300 });
  const b = await c.submit('dep', { n: 'b', sleepMs: 500 });
  const r = await c.submitFull('dep', { n: 'c' }, { dependsOn: [a, b], dependencyResults: true });
  check(r.waitingChildren === true, 'submitFull says waitingChildren', r);
  const rec = await c.wait(r.jobId, { timeoutMs: 30000 });
  const ra = await c.status(a);
  const rb = await c.status(b);
  check(rec.state === 'completed'
        && JSON.stringify(rec.result.got) === JSON.stringify({ payload: { n: 'c' },
          dependencies: { [a]: ra.result, [b]: rb.result } }),
        'C got its payload and both results', rec);
  const d = await c.submit('dep', 1, { dependsOn: [a], onDependencyFailure: 'ignore' });
  check((await c.wait(d, { timeoutMs: 30000 })).state === 'completed', 'onDependencyFailure ignore', d);
  const e0 = await rejection(c.submit('dep', 1, { depends_on: [a] }));
  check(e0 instanceof TypeError && /dependsOn/.test(e0.message), 'depends_on: a TypeError naming dependsOn',
        String(e0));
  for (const [bull, ours] of [['ignoreDependencyOnFailure', "onDependencyFailure: 'ignore'"],
                              ['failParentOnFailure', "onDependencyFailure: 'fail'"]]) {
    const e = await rejection(c.submit('dep', 1, { dependsOn: [a], [bull]: true }));
    check(e instanceof TypeError && e.message.includes(ours), `${bull}: a TypeError naming ${ours}`, String(e));
  }
  const e1 = await rejection(c.submit('dep', 1, { dependsOn: a }));
  check(e1 instanceof TypeError && /dependsOn/.test(e1.message), 'dependsOn not an array: TypeError', String(e1));
  const e2 = await rejection(c.submit('dep', 1, { dependsOn: ['no-such-job'] }));
  check(e2 && e2.code === 'bad_request' && /dependsOn\[0\]/.test(e2.message),
        'an unknown id: bad_request naming dependsOn[0]', e2 && e2.message);
  c.close();
  console.log('NODE DEPS PASS');
})().catch((e) => { console.log(`FAILED: ${e.stack}`); process.exit(1); });
