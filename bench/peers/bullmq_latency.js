'use strict';
//  bullmq_latency.js - BullMQ at light load: one job at a time, submit to
//  result as a client sees it (Queue.add, then Job.waitUntilFinished on
//  QueueEvents), with a no-op worker in another process.
//
//    node bullmq_latency.js --redis PORT [--jobs 2000] [--warmup 100]
//
//  Prints: RESULT jobs=N p50_us=.. p99_us=.. max_us=..
const { fork } = require ('child_process');
const { Queue, Worker, QueueEvents } = require ('bullmq');
const c = require ('./common');

const opt = c.args ({ redis: 6379, jobs: 2000, warmup: 100, concurrency: 1, queue: 'latency', role: 'client' });

async function worker () {
  process.on ('disconnect', () => process.exit (1));     //  The parent is gone
  const w = new Worker (opt.queue, async () => ({ ok: true }), {
    connection: c.connection (opt.redis), concurrency: opt.concurrency });
  w.on ('error', e => console.error ('worker error: ' + e.message));
  process.on ('message', async m => {
    if (m === 'stop') { await w.close (); process.exit (0); }
  });
  await w.waitUntilReady ();
  process.send ({ ready: true });
}

async function client () {
  const conn = c.connection (opt.redis);
  const queue = new Queue (opt.queue, { connection: conn });
  const events = new QueueEvents (opt.queue, { connection: conn });
  await queue.waitUntilReady ();
  await events.waitUntilReady ();
  const kid = fork (__filename, process.argv.slice (2).concat (['--role', 'worker']));
  await new Promise (r => kid.on ('message', m => { if (m.ready) r (); }));
  const lat = [];
  for (let i = 0; i < opt.warmup + opt.jobs; i++) {
    const t0 = process.hrtime.bigint ();
    const job = await queue.add ('python', c.payload (i));
    await job.waitUntilFinished (events, 10000);
    const us = Number (process.hrtime.bigint () - t0) / 1000;
    if (i >= opt.warmup) lat.push (us);
  }
  kid.send ('stop');
  await new Promise (r => kid.on ('exit', r));
  await events.close ();
  await queue.close ();
  lat.sort ((a, b) => a - b);
  c.result ({ jobs: lat.length, p50_us: Math.round (c.pct (lat, 50)),
              p99_us: Math.round (c.pct (lat, 99)), max_us: Math.round (lat [lat.length - 1]) });
}

(opt.role === 'worker' ? worker () : client ()).catch (e => { console.error (e); process.exit (1); });
