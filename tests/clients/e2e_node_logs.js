'use strict';
/*  e2e_node_logs.js ENDPOINT LOGGED_ID QUIET_ID - the Node client's logs()
    against a real broker: LOGGED_ID's bot wrote "step one", "" and "step
    three" on stderr, QUIET_ID's nothing (test_e2e_logs.py).  Prints one
    line per check; exits 1 on the first failure.  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const [endpoint, logged, quiet] = process.argv.slice(2);
function check(cond, what, detail) {
  if (!cond) { console.log(`FAILED: ${what} ${JSON.stringify(detail)}`); process.exit(1); }
  console.log(`ok: ${what}`);
}

(async () => {
  const c = new bm.Client({ endpoint, timeoutMs: 5000 });
  let r = await c.logs(logged);
  check(JSON.stringify(r) === JSON.stringify({ jobId: logged, logs: ['step one', '', 'step three'], count: 3 }),
        'logs(jobId): its stderr lines, BullMQ-shaped', r);
  r = await c.logs({ key: 'node-logged' });
  check(r.jobId === logged && r.count === 3, 'logs({ key }): the same job', r);
  r = await c.logs(quiet);
  check(r.count === 0 && r.logs.length === 0, 'logs(jobId) of a bot that wrote nothing: no lines', r);
  let err = null;
  try { await c.logs('no-such-job'); } catch (e) { err = e; }
  check(err && err.code === 'not_found', 'logs of an unknown job: not_found', err && err.code);
  c.close();
  console.log('NODE LOGS PASS');
})().catch((e) => { console.log(`FAILED: ${e.stack}`); process.exit(1); });
