'use strict';
/*  e2e_node_options.js ENDPOINT - the Node client's job options and control
    calls against a real broker and Redis (a Python worker serves 'pywork',
    a second bot type 'pyhold' has no worker): attempts and backoff, delayMs,
    runAt, promote, remove, pause/resume, clean, and schedules (add, list,
    remove).  Prints one line per check; exits 1 on the first failure.  */
const path = require('path');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const [endpoint] = process.argv.slice(2);
function check(cond, what, detail) {
  if (!cond) { console.log(`FAILED: ${what} ${JSON.stringify(detail)}`); process.exit(1); }
  console.log(`ok: ${what}`);
}
async function rejection(p) { try { await p; } catch (e) { return e; } return null; }
async function until(fn, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) check(false, `timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

(async () => {
  const c = new bm.Client({ endpoint, timeoutMs: 5000 });

  // attempts + fixed backoff: three runs, each error recorded, no run before its backoff.
  const failing = await c.submit('pywork', { fail: true }, { attempts: 3, backoff: { type: 'fixed', delayMs: 300 } });
  let rec = await c.wait(failing, { timeoutMs: 30000, pollMs: 100 });
  check(rec.state === 'failed' && rec.attempts === 3 && rec.runAttempts === 3,
    'node client: attempts 3 -> failed after exactly 3 runs', rec);
  check(Array.isArray(rec.attemptErrors) && rec.attemptErrors.length === 3
    && rec.attemptErrors.every((e, i) => e.attempt === i + 1 && /asked to fail/.test(e.message)),
  'node client: attemptErrors lists each run\'s error in order', rec.attemptErrors);
  check(rec.finishedAt - rec.createdAt >= 600, 'node client: two fixed backoffs of 300 ms lie between the runs',
    rec.finishedAt - rec.createdAt);
  const once = await c.submit('pywork', { fail: true }, { attempts: 1 });
  rec = await c.wait(once, { timeoutMs: 20000, pollMs: 100 });
  check(rec.state === 'failed' && rec.attempts === 1, 'node client: attempts 1 -> one run, no retry', rec);

  // delayMs: delayed, never started before its due time.
  const d = await c.submitFull('pywork', { d: 1 }, { delayMs: 700 });
  rec = await c.status(d.jobId);
  check(d.delayed && rec.state === 'delayed' && typeof rec.runAt === 'number',
    'node client: delayMs -> ACCEPTED delayed, record delayed with runAt', [d, rec]);
  rec = await c.wait(d.jobId, { timeoutMs: 20000, pollMs: 100 });
  check(rec.state === 'completed' && rec.startedAt >= rec.createdAt + 700,
    'node client: a delayed job starts no earlier than its delay', rec);
  // runAt: ms since the epoch (the broker's clock is this machine's).
  const runAt = Date.now() + 600;
  const r = await c.submit('pywork', { d: 2 }, { runAt });
  rec = await c.wait(r, { timeoutMs: 20000, pollMs: 100 });
  check(rec.state === 'completed' && rec.startedAt >= runAt, 'node client: runAt honoured', [runAt, rec.startedAt]);
  // Bad options are bad_request naming the field.
  for (const [opts, field] of [[{ backoff: { type: 'linear', delayMs: 5 } }, 'backoff'], [{ attempts: 0 }, 'attempts'],
    [{ delayMs: 366 * 86400000 }, 'delayMs'], [{ runAt: Date.now() - 3600000 }, 'runAt']]) {
    const e = await rejection(c.submit('pywork', {}, opts));
    check(e instanceof bm.Rejected && e.code === 'bad_request' && e.message.includes(field),
      `node client: bad ${field} rejects bad_request naming it`, e && [e.code, e.message]);
  }
  // submitMany marks a delayed item delayed, as submit does.
  const many = await c.submitMany([{ botType: 'pyhold', delayMs: 60000 }, { botType: 'pyhold' }]);
  check(many[0].delayed === true && many[1].delayed === false, 'node client: submitMany gives delayed per item', many);

  // promote: a job due in a minute runs now; remove: a delayed job is gone.
  const later = await c.submit('pywork', { p: 1 }, { delayMs: 60000 });
  const promoted = await c.promote(later);
  check(promoted.jobId === later && promoted.state !== 'delayed', 'node client: promote answers the job, due now', promoted);
  rec = await c.wait(later, { timeoutMs: 20000, pollMs: 100 });
  check(rec.state === 'completed', 'node client: the promoted job ran at once', rec);
  let e = await rejection(c.promote(later));
  check(e && e.code === 'conflict', 'node client: promote of a job not delayed rejects conflict', e && e.code);
  await c.remove(many[0].jobId);
  e = await rejection(c.status(many[0].jobId));
  check(e && e.code === 'not_found', 'node client: remove deletes a delayed job (STATUS not_found)', e && e.code);

  // pause holds a job; resume releases it; clean removes the finished ones.
  let q = await c.pause('pywork');
  check(q.paused === true && q.botType === 'pywork', 'node client: pause', q);
  const held = await c.submit('pywork', { h: 1 });
  const st = await c.stats();
  check(st.types.pywork.paused === true && (await c.status(held)).state === 'queued',
    'node client: a paused type holds its job queued, stats says paused', st.types.pywork);
  q = await c.resume('pywork');
  check(q.paused === false, 'node client: resume', q);
  rec = await c.wait(held, { timeoutMs: 20000, pollMs: 100 });
  check(rec.state === 'completed', 'node client: the held job runs after resume', rec);
  // run() past its waitMs: the wait timeout says where the job is (queued: no pyhold worker).
  e = await rejection(c.run('pyhold', {}, { waitMs: 300 }));
  check(e && e.code === 'wait_timeout' && /\(state: queued\)/.test(e.message) && e.job.state === 'queued',
    'node client: run() past waitMs rejects wait_timeout naming the job\'s last known state', e && e.message);
  q = await c.drain('pyhold');
  check(q.removed === 2, 'node client: drain removes the queued pyhold jobs', q);
  q = await c.clean('pywork', 'failed', 0);
  check(q.removed === 2, 'node client: clean failed removes the two failed jobs', q);
  e = await rejection(c.status(failing));
  check(e && e.code === 'not_found', 'node client: a cleaned job is gone', e && e.code);
  e = await rejection(c.clean('pywork', 'running', 0));
  check(e && e.code === 'bad_request' && /state/.test(e.message), 'node client: clean of a wrong state rejects naming state',
    e && [e.code, e.message]);
  // retryJobs: the failed jobs run again (this one fails its first run only).
  const again = await c.submit('pywork', { failFirstRun: true }, { attempts: 1 });
  rec = await c.wait(again, { timeoutMs: 20000, pollMs: 100 });
  check(rec.state === 'failed', 'node client: a job failing its first run fails', rec);
  q = await c.retryJobs('pywork', { limit: 5 });
  check(q.botType === 'pywork' && q.retried === 1 && q.more === false, 'node client: retryJobs runs the failed job again', q);
  rec = await c.wait(again, { timeoutMs: 20000, pollMs: 100 });
  check(rec.state === 'completed', 'node client: the retried job completes', rec);
  e = await rejection(c.retryJobs('pywork', { limit: 0 }));
  check(e && e.code === 'bad_request' && /limit/.test(e.message), 'node client: retryJobs with limit 0 rejects naming limit',
    e && [e.code, e.message]);
  e = await rejection(c.retryJobs('pywork', { count: 5 }));
  check(e instanceof TypeError && /'limit'/.test(e.message), 'node client: retryJobs names limit for BullMQ\'s count',
    e && e.message);

  // Schedules: every 300 ms, limit 3 -> exactly 3 runs with ids <key>@<due ms>.
  const s = await c.addSchedule({ key: 'node-every', botType: 'pywork', payload: { s: 1 }, everyMs: 300, limit: 3 });
  check(s.key === 'node-every' && s.everyMs === 300 && s.limit === 3 && typeof s.nextAt === 'number',
    'node client: addSchedule answers the schedule with its nextAt', s);
  const ended = await until(async () => (await c.schedules()).find((x) => x.key === 'node-every' && x.ended), 15000,
    'the schedule to make its 3 runs');
  check(ended.runs === 3, 'node client: schedules() lists it ended after 3 runs', ended);
  // The schedule counts a run when it submits it; the run's job is listed
  // once it is durable (a moment later on a loaded machine).
  const runs = await until(async () => {
    const found = (await c.list({ botType: 'pywork', limit: 100 })).filter((j) => j.jobId.startsWith('node-every@'));
    return found.length >= 3 ? found : null;
  }, 10000, 'the 3 run jobs to be listed');
  const dues = runs.map((j) => Number(j.jobId.split('@')[1])).sort((a, b) => a - b);
  check(dues.length === 3 && dues[1] - dues[0] === 300 && dues[2] - dues[1] === 300,
    'node client: 3 run jobs <key>@<due ms>, 300 ms apart', dues);
  for (const j of runs) {
    rec = await c.wait(j.jobId, { timeoutMs: 20000, pollMs: 100 });
    check(rec.state === 'completed' && rec.result.echo.s === 1, `node client: run ${j.jobId} completed with the payload`, rec);
  }
  const cron = await c.addSchedule({ key: 'node-cron', botType: 'pywork', payload: {}, cron: '0 9 * * MON', tz: 'Europe/Paris' });
  check(cron.cron === '0 9 * * MON' && cron.nextAt > Date.now() && new Date(cron.nextAt).getUTCMinutes() === 0,
    'node client: a cron schedule in a zone gets its next due time', cron);
  e = await rejection(c.addSchedule({ key: 'node-bad', botType: 'pywork', cron: '61 * * * *' }));
  check(e && e.code === 'bad_request' && /cron/.test(e.message), 'node client: a bad cron rejects naming cron', e && [e.code, e.message]);
  // removeSchedule resolves undefined (nothing to return), as remove and redeliver do.
  check(await c.removeSchedule('node-cron') === undefined, 'node client: removeSchedule resolves (undefined)');
  await c.removeSchedule('node-every');
  check((await c.schedules()).every((x) => !x.key.startsWith('node-')), 'node client: removeSchedule removes them');
  e = await rejection(c.removeSchedule('node-cron'));
  check(e && e.code === 'not_found', 'node client: removeSchedule of an unknown key rejects not_found', e && e.code);

  c.close();
  console.log('NODE OPTIONS PASS');
  process.exit(0);
})().catch((err) => { console.log(`FAILED: ${err && err.stack}`); process.exit(1); });
