'use strict';
/*  e2e_node_ha.js ENDPOINTS - the Node client with a list of brokers (one a
    standby, or dead): a job submitted through the list completes.  Prints
    one line per check; exits 1 on the first failure.  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const [endpoints] = process.argv.slice(2);
function check(cond, what, detail) {
  if (!cond) { console.log(`FAILED: ${what} ${JSON.stringify(detail)}`); process.exit(1); }
  console.log(`ok: ${what}`);
}

(async () => {
  const c = new bm.Client({ endpoint: endpoints, timeoutMs: 8000 });
  const id = await c.submit('nodework', { n: 1 }, { idempotencyKey: `node-ha-${Date.now()}` });
  const rec = await c.wait(id, { timeoutMs: 30000 });
  check(rec.state === 'completed', 'node client: a job submitted through the broker list completed', rec);
  c.close();
  process.exit(0);
})().catch((e) => { console.log(`FAILED: ${e.stack || e}`); process.exit(1); });
