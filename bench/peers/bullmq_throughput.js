'use strict';
//  bullmq_throughput.js - BullMQ, the seed's queue, doing the work of the
//  botmesh throughput case: N jobs with ~100-byte JSON payloads added with
//  addBulk in batches, no-op workers in separate processes, jobs/s from
//  the first add to the last completion.
//
//    node bullmq_throughput.js --redis PORT [--jobs 50000] [--batch 1000]
//         [--concurrency 50] [--workers 1] [--inflight 1] [--removeOnComplete false]
//
//  Prints: RESULT jobs=N seconds=S rate=R
const { fork } = require ('child_process');
const { performance } = require ('perf_hooks');
const { Queue, Worker } = require ('bullmq');
const c = require ('./common');

const opt = c.args ({ redis: 6379, jobs: 50000, batch: 1000, concurrency: 50, workers: 1,
                      inflight: 1, removeOnComplete: false, queue: 'bench', role: 'producer' });
const now = () => performance.timeOrigin + performance.now ();

async function worker () {
  process.on ('disconnect', () => process.exit (1));     //  The parent is gone
  let done = 0, last = 0;
  const w = new Worker (opt.queue, async () => ({ ok: true }), {
    connection: c.connection (opt.redis), concurrency: opt.concurrency, autorun: false });
  w.on ('completed', () => { done++; last = now (); });
  w.on ('error', e => console.error ('worker error: ' + e.message));
  const report = setInterval (() => process.send ({ done, last }), 20);
  process.on ('message', async m => {
    if (m === 'stop') {
      clearInterval (report);
      await w.close ();
      process.send ({ done, last, closed: true }, () => process.exit (0));
    }
  });
  await w.waitUntilReady ();
  w.run ();
  process.send ({ ready: true });
}

async function producer () {
  const queue = new Queue (opt.queue, { connection: c.connection (opt.redis) });
  await queue.waitUntilReady ();
  const jobOpts = opt.removeOnComplete ? { removeOnComplete: true } : {};
  const kids = [];
  const done = [], last = [];
  let ready = 0;
  let finish;
  const finished = new Promise (r => { finish = r; });
  for (let i = 0; i < opt.workers; i++) {
    const k = fork (__filename, process.argv.slice (2).concat (['--role', 'worker']));
    done.push (0); last.push (0);
    k.on ('message', m => {
      if (m.ready) ready++;
      if (m.done !== undefined) {
        done [i] = m.done; last [i] = m.last;
        if (done.reduce ((a, b) => a + b, 0) >= opt.jobs) finish ();
      }
    });
    kids.push (k);
  }
  while (ready < opt.workers) await new Promise (r => setTimeout (r, 10));

  const t0 = now ();
  let seq = 0;
  const batches = [];
  while (seq < opt.jobs) {
    const n = Math.min (opt.batch, opt.jobs - seq);
    const jobs = [];
    for (let j = 0; j < n; j++, seq++)
      jobs.push ({ name: 'python', data: c.payload (seq), opts: jobOpts });
    batches.push (queue.addBulk (jobs));
    if (batches.length >= opt.inflight) await batches.shift ();
  }
  await Promise.all (batches);
  const tAdded = now ();
  await finished;
  const t1 = Math.max (...last);
  for (const k of kids) k.send ('stop');
  await Promise.all (kids.map (k => new Promise (r => k.on ('exit', r))));
  await queue.close ();
  const secs = (t1 - t0) / 1000;
  c.result ({ jobs: opt.jobs, seconds: secs.toFixed (3), rate: Math.round (opt.jobs / secs),
              add_seconds: ((tAdded - t0) / 1000).toFixed (3) });
}

(opt.role === 'worker' ? worker () : producer ()).catch (e => { console.error (e); process.exit (1); });
