'use strict';
//  bullmq_drain.js - no-op BullMQ workers draining the gateway's queues
//  while wrk runs.  Stop it with SIGTERM; it prints how many jobs it ran.
//
//    node bullmq_drain.js --redis PORT [--concurrency 50] [--queues bots-python]
const { Worker } = require ('bullmq');
const c = require ('./common');

const opt = c.args ({ redis: 6379, concurrency: 50, queues: 'bots-python' });
let done = 0;
const workers = opt.queues.split (',').map (q => {
  const w = new Worker (q, async () => ({ ok: true }), {
    connection: c.connection (opt.redis), concurrency: opt.concurrency });
  w.on ('completed', () => done++);
  w.on ('error', e => console.error ('worker error: ' + e.message));
  return w;
});
const stop = async () => {
  await Promise.all (workers.map (w => w.close ()));
  c.result ({ drained: done });
  process.exit (0);
};
process.on ('SIGTERM', stop);
process.on ('SIGINT', stop);
Promise.all (workers.map (w => w.waitUntilReady ())).then (() => console.log ('ready'));
