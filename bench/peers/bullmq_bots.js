// bullmq_bots.js - BullMQ sandboxed processors running the Node bot's work,
// for `./botmesh bench --only bots`.
//
//   node bullmq_bots.js --redis PORT --jobs N [--concurrency 2] [--warmup 10]
//
// One Worker with a processor file (bot_processor.js: the function of
// workers/bots/node/bot.js, loaded from that file), concurrency 2: BullMQ
// runs it in child processes it reuses.  N jobs with the benchmark's payload
// are added, and the time until the last one completed is measured.
// Prints "RESULT jobs=N seconds=S rate=R failed=F".
'use strict';
const path = require('path');
const { Queue, Worker, QueueEvents } = require('bullmq');

const args = process.argv.slice(2);
function opt(name, def) {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : def;
}
const port = Number(opt('redis', 6379));
const jobs = Number(opt('jobs', 100));
const concurrency = Number(opt('concurrency', 2));
const warmup = Number(opt('warmup', 10));
const connection = { host: '127.0.0.1', port };

async function main() {
  const name = 'bots-' + process.pid;
  const queue = new Queue(name, { connection });
  const events = new QueueEvents(name, { connection });
  await events.waitUntilReady();
  let done = 0, failed = 0, target = warmup, resolve = null;
  const worker = new Worker(name, path.join(__dirname, 'bot_processor.js'),
                            { connection, concurrency, useWorkerThreads: false });
  worker.on('completed', () => { done++; if (done + failed >= target && resolve) resolve(); });
  worker.on('failed', (job, err) => {
    failed++;
    if (failed === 1) console.error('failed:', err && err.message);
    if (done + failed >= target && resolve) resolve();
  });
  const payload = { count: 10 };
  const run = async (count) => {
    const finished = new Promise((r) => { resolve = r; });
    await queue.addBulk(Array.from({ length: count }, () => ({ name: 'process_api', data: payload,
      opts: { removeOnComplete: true, removeOnFail: true } })));
    await finished;
  };
  await run(warmup);                    // child processes started and warm
  done = 0; failed = 0; target = jobs;
  const t0 = process.hrtime.bigint();
  await run(jobs);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`RESULT jobs=${jobs} seconds=${seconds.toFixed(3)} rate=${(jobs / seconds).toFixed(1)} failed=${failed}`);
  await worker.close();
  await events.close();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  process.exit(0);
}

main().catch((e) => { console.error(e); process.exit(1); });
