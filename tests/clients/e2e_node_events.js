'use strict';
/*  e2e_node_events.js ENDPOINT - the Node client's events() against a real
    broker with a worker of 'pywork' (test_e2e_py_events.py): a job's
    waiting, active, completed in seq order; a bad filter rejects
    bad_request; return() unsubscribes, and so does the client's close();
    a wall clock stepped back (Date.now
    frozen) does not stop renewal; lastEventId is the last event's id and
    events({since}) yields the job that ran after it first; return() of an
    iterator whose next() waits for an event that does not come ends it at
    once; for await's break unsubscribes; an iterator dropped while its
    next() waits unsubscribes once garbage collected.  Prints one line per check; exits 1
    on the first failure.  */
const path = require('path');
const v8 = require('v8');
const vm = require('vm');
const ROOT = process.env.BOTMESH_ROOT || path.resolve(__dirname, '..', '..');
const bm = require(path.join(ROOT, 'clients', 'node', 'botmesh.js'));

const [endpoint] = process.argv.slice(2);
function check(cond, what, detail) {
  if (!cond) { console.log(`FAILED: ${what} ${JSON.stringify(detail, (k, v) => (typeof v === 'bigint' ? String(v) : v))}`); process.exit(1); }
  console.log(`ok: ${what}`);
}

async function gauge(c) {
  const line = (await c.metrics()).split('\n').find((l) => l.startsWith('broker_event_subscriptions '));
  return line ? Number(line.split(' ')[1]) : null;
}

async function until(fn, ms, what) {
  const deadline = performance.now() + ms;
  for (;;) {
    if (await fn()) return;
    if (performance.now() > deadline) { console.log(`FAILED: timed out waiting for ${what}`); process.exit(1); }
    await new Promise((r) => { setTimeout(r, 50); });
  }
}

function within(promise, ms) {
  return Promise.race([promise, new Promise((r) => { setTimeout(() => r('timed out'), ms); })]);
}

//  The items of it up to job's completed.
async function toCompleted(it, job) {
  const got = [];
  for (;;) {
    const { value } = await within(it.next(), 20000).then((r) => (r === 'timed out' ? { value: null } : r));
    check(value, `an event of ${job} within 20 s`, got);
    got.push(value);
    if (value.jobId === job && value.event === 'completed') return got;
  }
}

(async () => {
  const c = new bm.Client({ endpoint, timeoutMs: 5000 });
  let err = null;
  try { await c.events({ events: ['nope'] }).next(); } catch (e) { err = e; }
  check(err && err.code === 'bad_request' && /events/.test(err.message), 'a bad filter rejects bad_request', err && err.code);

  const before = await gauge(c);
  const it = c.events({ botTypes: ['pywork'] })[Symbol.asyncIterator]();
  let next = it.next();
  await until(async () => (await gauge(c)) === before + 1, 10000, 'the subscription');
  const job = await c.submit('pywork', { echo: 'node' });
  const mine = [];
  const deadline = Date.now() + 20000;
  for (;;) {
    const { value } = await next;           // the first was asked for before the submit
    if (value.jobId === job) mine.push(value);
    if (value.jobId === job && value.event === 'completed') break;
    check(Date.now() < deadline, 'events within 20 s', mine);
    next = it.next();
  }
  check(JSON.stringify(mine.map((ev) => ev.event)) === JSON.stringify(['waiting', 'active', 'completed']),
        'waiting, active, completed', mine.map((ev) => ev.event));
  const seqs = mine.map((ev) => Number(ev.seq));
  check(seqs.every((s, i) => i === 0 || s > seqs[i - 1]), 'in seq order', seqs);
  await it.return();
  await until(async () => (await gauge(c)) === before, 10000, 'return() to unsubscribe');
  check(true, 'return() unsubscribes');

  //  Renewal runs on a monotonic clock: with the wall clock frozen (as if
  //  stepped back) a subscription of ttlMs 1000 outlives three TTLs.
  const wallNow = Date.now;
  const frozen = Date.now();
  Date.now = () => frozen;
  const it2 = c.events({ botTypes: ['pywork'], ttlMs: 1000 })[Symbol.asyncIterator]();
  const next2 = it2.next();
  await until(async () => (await gauge(c)) === before + 1, 10000, 'the 1 s subscription');
  const watchUntil = performance.now() + 3000;
  while (performance.now() < watchUntil) {
    const now = await gauge(c);
    check(now === before + 1 || performance.now() >= watchUntil, 'the 1 s subscription lives on with the wall clock frozen', { now, before });
    await new Promise((r) => { setTimeout(r, 100); });
  }
  const job2 = await c.submit('pywork', { echo: 'frozen' });
  const got = await Promise.race([next2, new Promise((r) => { setTimeout(() => r(null), 10000); })]);
  check(got && got.value && got.value.jobId === job2, 'an event after three TTLs with the wall clock frozen', got && got.value);
  Date.now = wallNow;
  await it2.return();
  await until(async () => (await gauge(c)) === before, 10000, 'return() of the 1 s subscription');

  //  close() of the client ends its events() loops and unsubscribes at
  //  once (not at the TTL's end, 30 s): one waiting for an event, one whose
  //  consumer never asks for the next.
  const closing = new bm.Client({ endpoint, timeoutMs: 5000 });
  const waiting = closing.events({ botTypes: ['pywork'] })[Symbol.asyncIterator]();
  const pending = waiting.next();
  const idle = closing.events({ botTypes: ['pywork'] })[Symbol.asyncIterator]();
  const idleFirst = idle.next();
  await until(async () => (await gauge(c)) === before + 2, 10000, 'the two subscriptions of the client to close');
  await c.submit('pywork', { echo: 'closing' });
  await Promise.all([pending, idleFirst]);       // both loops hold an event, suspended
  closing.close();
  await until(async () => (await gauge(c)) === before, 3000, "close() to unsubscribe the client's events() loops");
  check(true, "close() unsubscribes the client's events() loops");
  const end = await Promise.race([waiting.next(), new Promise((r) => { setTimeout(() => r(null), 3000); })]);
  check(end && end.done === true, 'a loop of a closed client ends', end);
  //  Resuming: lastEventId, events({since}); return() while a next() waits
  //  for an event; for await's break.
  const rit = c.events({ botTypes: ['pywork'] });
  const firstItem = rit.next();
  await until(async () => (await gauge(c)) === before + 1, 10000, 'the subscription');
  const a = await c.submit('pywork', { echo: 'a' });
  const ofA = [(await firstItem).value, ...(await toCompleted(rit, a))].filter((ev) => ev.jobId === a);
  check(rit.lastEventId === ofA[ofA.length - 1].id, 'lastEventId is the last event\'s id', [rit.lastEventId, ofA]);
  const saved = rit.lastEventId;
  await rit.return();
  await until(async () => (await gauge(c)) === before, 10000, 'return() to unsubscribe');

  const b = await c.submit('pywork', { echo: 'b' });
  await c.wait(b, { timeoutMs: 20000 });
  const resumed = c.events({ botTypes: ['pywork'], since: saved });
  const items = await toCompleted(resumed, b);
  check(JSON.stringify(items.map((ev) => [ev.jobId, ev.event]))
        === JSON.stringify([[b, 'waiting'], [b, 'active'], [b, 'completed']]),
        'events({since}): the job that ran after it, first, no reset', items);
  await resumed.return();

  // An iterator waiting in next() for events that do not come: return() ends it now.
  const idleIt = c.events({ botTypes: ['nobody'] });
  const idleNext = idleIt.next();
  await until(async () => (await gauge(c)) === before + 1, 10000, 'the idle subscription');
  const ended = await within(idleIt.return(), 3000);
  check(ended !== 'timed out' && ended.done === true, 'return() while next() waits ends it within 3 s', ended);
  const idleDone = await within(idleNext, 3000);
  check(idleDone !== 'timed out' && idleDone.done === true, 'the waiting next() is done too', idleDone);
  await until(async () => (await gauge(c)) === before, 3000, 'the idle subscription to end');

  const looping = (async () => {
    for await (const ev of c.events({ botTypes: ['pywork'] })) {
      if (ev.event) break;
    }
  })();
  await until(async () => (await gauge(c)) === before + 1, 10000, 'the for-await subscription');
  await c.submit('pywork', { echo: 'loop' });
  check(await within(looping, 20000) !== 'timed out', 'the for await loop breaks at an event');
  await until(async () => (await gauge(c)) === before, 10000, 'break to unsubscribe');
  check(true, 'for await\'s break unsubscribes');

  //  An iterator dropped while its next() waits: released once collected.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  (() => { c.events({ botTypes: ['nobody'] }).next(); })();
  await until(async () => (await gauge(c)) === before + 1, 10000, 'the dropped iterator\'s subscription');
  await until(async () => { gc(); return (await gauge(c)) === before; }, 10000,
              'a dropped iterator to unsubscribe once garbage collected');
  check(true, 'a dropped iterator unsubscribes once garbage collected');
  c.close();
  console.log('NODE EVENTS PASS');
})().catch((e) => { console.log(`FAILED: ${e.stack}`); process.exit(1); });
