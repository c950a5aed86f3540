'use strict';
/*  nodeworker.js - a botmesh worker in Node.js for the end-to-end tests.

      sh run_node.sh nodeworker.js --types nodework --credit 2 --name node-1 [--endpoint EP]

    Each job: payload {sleepMs, fail, progress} -> result {worker, start, end
    (ms, wall clock), attempt, run, echo}.  The sleep ends early on a CANCEL
    (job.signal), and the handler then returns as usual; sleepFirstRun: true
    sleeps only in the first run of the job here; log: [lines] logs each line
    (job.log), logMany: N logs N lines "line NNNN ééé...", before the rest; run counts the runs of the
    job in this worker (1, 2, ...).  SIGTERM: graceful stop.  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const { Worker, JobError } = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const args = { types: 'nodework', credit: '1', name: `node-${process.pid}`, endpoint: undefined };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); });
});

const runs = new Map();
const w = new Worker({
  types: args.types.split(','),
  credit: Number(args.credit),
  name: args.name,
  endpoint: args.endpoint,
  handler: async (payload, job) => {
    const p = payload && typeof payload === 'object' && !Array.isArray(payload) ? payload : { value: payload };
    const start = Date.now();
    const run = (runs.get(job.id) || 0) + 1;
    runs.set(job.id, run);
    console.log(`START ${job.id} attempt ${job.attempt} run ${run}`);
    for (const line of p.log || []) job.log(line);
    for (let i = 0; i < (p.logMany || 0); i += 1) job.log(`line ${String(i).padStart(4, '0')} ${'\u00e9'.repeat(20)}`);
    if (p.progress) job.progress(50);
    if (p.sleepMs && (run === 1 || !p.sleepFirstRun)) await sleep(p.sleepMs, job.signal);
    if (p.fail) throw new JobError('bot_failed', `asked to fail by ${args.name}`);
    const end = Date.now();
    console.log(`END ${job.id}`);
    return { worker: args.name, start, end, attempt: job.attempt, run, echo: p };
  },
});
w.on('connect', (n) => console.log(`nodeworker ${args.name} connected (${n})`));
w.on('answered', (d) => console.log(`ANSWERED ${d.jobId} attempt ${d.attempt}`));
w.on('released', (id) => console.log(`RELEASED ${id}`));
w.on('closed', (ep) => console.log(`nodeworker ${args.name}: the broker closed the connection (${ep})`));
w.start();
console.log(`nodeworker ${args.name} serving ${args.types} with credit ${args.credit}`);
const stop = () => w.stop().then(() => { console.log(`nodeworker ${args.name} stopped`); process.exit(0); });
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
