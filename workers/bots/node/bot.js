#!/usr/bin/env node
// bot.js - the example Node.js bot: process_api.
//
// Reads the job's payload (JSON) on stdin, transforms a list of records and
// writes the result (JSON) on stdout.  No dependencies.
//
// Payload (all optional):
//   action    "process_api" (the only action; anything else fails)
//   records   a list of records (objects) to transform; without it, records
//             are generated deterministically from `endpoint`
//   endpoint  e.g. "/users" (default "/items"): names the generated records
//   count     how many records to generate, 1..100000 (default 10)
//   sleepMs   sleep that long first (for tests), at most 3600000
//   fail      true or a message: exit 1 with the message on stderr (a
//             failure that is retried)
//   tempFile  true: write the result's summary to a temporary file in the
//             job's temporary directory (os.tmpdir()) and remove it; the
//             result names it (tempFile) and the job's home (homeDir)
//
// Bad input (a payload that is not JSON, an unknown action, a field out of
// range, the {"payload", "dependencies"} wrapper a job submitted with
// "dependencyResults": true gets, which this bot does not read) exits 78, the "permanent failure, do not retry" status, with a line
// on stderr that names the problem; in pool mode the answer is
// {"exit": 78, "error": ...} and the process carries on with the next job.
//
// The transformation: keys to camelCase, strings trimmed, e-mail addresses
// lower-cased, and a short SHA-1 checksum of each record's canonical JSON;
// plus a summary (count, fields seen, numeric totals).
//
// Progress: lines "PROGRESS <0-100>" on the fd named by BOT_PROGRESS_FD (the
// worker sets it to 3); without it, or if that fd is closed, no progress.
//
// `node bot.js --pool` runs in pool mode (docs/bots.md): it stays up and
// reads one job frame per line on stdin, {"job", "env", "payload"}, and
// answers {"result": ..., "job": ID} or {"exit": N, "error": ..., "job": ID}
// on stdout (ID: the frame's "job"), after {"ready": true} once loaded.  The job's variables (BOT_JOB_ID, ...) come
// in the frame's env; they are in process.env while the job runs, so that
// os.tmpdir() and os.homedir() give a sandboxed job's own directory (its
// TMPDIR and HOME, docs/bots.md), and the process's own come back after.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

// A job that fails: its message is what a spawned bot writes on stderr,
// its code the exit status.
const EX_CONFIG = 78;  // sysexits.h: a permanent failure, never retried

class BotFailure extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

function fail(message) {
  throw new BotFailure(String(message).replace(/\n$/, ''), 1);
}

// The payload is wrong: fail for good (exit 78), naming the problem.
function badInput(message) {
  throw new BotFailure(`bad input: ${message}`, EX_CONFIG);
}

// A thrown value as a job failure: [exit status, message].
function failureOf(e) {
  if (e instanceof BotFailure) return [e.code, e.message];
  return [1, e && e.stack ? e.stack : String(e)];
}

let progressFd = null;
if (/^\d+$/.test(process.env.BOT_PROGRESS_FD || '')) {
  const fd = Number(process.env.BOT_PROGRESS_FD);
  try {
    fs.fstatSync(fd);
    progressFd = fd;
  } catch (e) {
    progressFd = null;
  }
}

function progress(value) {
  if (progressFd === null) return;
  try {
    fs.writeSync(progressFd, `PROGRESS ${Math.max(0, Math.min(100, Math.round(value)))}\n`);
  } catch (e) {
    progressFd = null;  // closed under us: carry on without
  }
}

function camel(key) {
  return String(key)
    .trim()
    .replace(/[-_\s]+(.)?/g, (m, c) => (c ? c.toUpperCase() : ''))
    .replace(/^[A-Z]/, (c) => c.toLowerCase());
}

function canonical(value) {
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
  if (value && typeof value === 'object') {
    return '{' + Object.keys(value).sort()
      .map((k) => JSON.stringify(k) + ':' + canonical(value[k])).join(',') + '}';
  }
  return JSON.stringify(value);
}

function transform(record) {
  if (!record || typeof record !== 'object' || Array.isArray(record)) record = { value: record };
  const out = {};
  for (const [key, value] of Object.entries(record)) {
    const name = camel(key);
    let v = value;
    if (typeof v === 'string') {
      v = v.trim();
      if (/email/i.test(name)) v = v.toLowerCase();
    }
    out[name] = v;
  }
  out.checksum = crypto.createHash('sha1').update(canonical(out)).digest('hex').slice(0, 12);
  return out;
}

// Deterministic records for an endpoint: seeded by its name.
function generate(endpoint, count) {
  const names = ['Ada', 'Grace', 'Linus', 'Margaret', 'Ken', 'Barbara', 'Dennis', 'Frances'];
  const records = [];
  for (let i = 0; i < count; i++) {
    const h = crypto.createHash('sha256').update(`${endpoint}#${i}`).digest();
    const name = names[h[0] % names.length];
    records.push({
      id: i + 1,
      'user_name': ` ${name} `,
      'Email-Address': `${name.toUpperCase()}.${h.readUInt16BE(1)}@Example.COM`,
      'score_value': h.readUInt16BE(3) % 1000,
      'is_active': (h[5] & 1) === 1,
    });
  }
  return records;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// The payload a job submitted with dependencyResults gets: exactly
// {"payload": <what was submitted>, "dependencies": {<jobId>: <result>}}.
function isDependencyWrapper(payload) {
  const keys = Object.keys(payload);
  return keys.length === 2 && 'payload' in payload && payload.dependencies !== null
    && typeof payload.dependencies === 'object' && !Array.isArray(payload.dependencies);
}

// One job: its result, or a BotFailure.  The job's variables are in
// process.env while it runs (in pool mode: jobEnv).
async function run(payload) {
  const startedAt = Date.now();
  if (isDependencyWrapper(payload)) {
    badInput('the payload is the {"payload", "dependencies"} wrapper of a job submitted with '
      + '"dependencyResults": true, and this bot (process_api) does not read dependency results: '
      + 'submit it with "dependencyResults": false');
    return;
  }
  progress(0);
  if (payload.fail) {
    fail(typeof payload.fail === 'string' ? payload.fail : 'failing as asked (payload.fail)');
    return;
  }
  const action = payload.action === undefined ? 'process_api' : payload.action;
  if (action !== 'process_api') {
    badInput(`unknown action ${JSON.stringify(action)} (this bot does process_api)`);
    return;
  }
  const sleepMs = payload.sleepMs === undefined ? 0 : payload.sleepMs;
  if (typeof sleepMs !== 'number' || !(sleepMs >= 0 && sleepMs <= 3600000)) {
    badInput('sleepMs must be a number from 0 to 3600000');
    return;
  }
  let records = payload.records;
  const endpoint = typeof payload.endpoint === 'string' ? payload.endpoint : '/items';
  if (records === undefined) {
    const count = payload.count === undefined ? 10 : payload.count;
    if (!Number.isInteger(count) || count < 1 || count > 100000) {
      badInput('count must be an integer from 1 to 100000');
      return;
    }
    records = generate(endpoint, count);
  }
  if (!Array.isArray(records)) {
    badInput('records must be a list');
    return;
  }
  const steps = 5;
  for (let i = 0; i < steps; i++) {
    if (sleepMs) await sleep(sleepMs / steps);
    progress(10 * (i + 1));
  }
  const out = [];
  const fields = new Set();
  const totals = {};
  records.forEach((record, i) => {
    const t = transform(record);
    out.push(t);
    for (const [k, v] of Object.entries(t)) {
      fields.add(k);
      if (typeof v === 'number' && Number.isFinite(v)) totals[k] = (totals[k] || 0) + v;
    }
    if (records.length >= 10 && i % Math.floor(records.length / 10) === 0) {
      progress(50 + Math.floor((50 * i) / records.length));
    }
  });
  progress(100);
  const summary = { count: out.length, fields: [...fields].sort(), totals };
  let tempFile;
  if (payload.tempFile === true) {
    // os.tmpdir() reads TMPDIR now: the job's own directory when it has one.
    tempFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bot-')), 'summary.json');
    fs.writeFileSync(tempFile, JSON.stringify(summary));
    fs.rmSync(path.dirname(tempFile), { recursive: true, force: true });
  }
  const result = {
    bot: 'node',
    action: 'process_api',
    endpoint,
    summary,
    records: out,
    jobId: process.env.BOT_JOB_ID || null,
    attempt: Number(process.env.BOT_ATTEMPT || 1),
    pid: process.pid,
    startedAt,
    finishedAt: Date.now(),
  };
  if (tempFile !== undefined) Object.assign(result, { tempFile, homeDir: os.homedir() });
  return result;
}

function parsePayload(text) {
  const payload = text.trim() ? JSON.parse(text) : {};
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) return { value: payload };
  return payload;
}

function spawnMode() {
  let input = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => { input += chunk; });
  process.stdin.on('error', () => {});
  process.stdin.on('end', () => {
    let payload;
    try {
      payload = parsePayload(input);
    } catch (e) {
      process.stderr.write(`bad input: payload is not JSON: ${e.message.replace(/\s+/g, ' ')}\n`,
                           () => process.exit(EX_CONFIG));
      return;
    }
    run(payload).then(
      (result) => process.stdout.write(JSON.stringify(result) + '\n'),
      (e) => {
        const [code, text] = failureOf(e);
        process.stderr.write(text + '\n', () => process.exit(code));
      });
  });
}

// Put a job's variables in process.env (one job runs at a time); returns
// what puts the process's own back.
function jobEnv(vars) {
  const saved = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = Object.prototype.hasOwnProperty.call(process.env, k) ? process.env[k] : undefined;
    process.env[k] = String(v);
  }
  return () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

function poolMode() {
  const send = (frame) => fs.writeSync(1, JSON.stringify(frame) + '\n');
  const readline = require('readline');
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  const queue = [];
  let busy = false;
  async function next() {
    if (busy || !queue.length) return;
    busy = true;
    const line = queue.shift();
    let frame;
    try {
      frame = JSON.parse(line);
    } catch (e) {
      process.stderr.write(`a frame that is not JSON: ${e.message}\n`, () => process.exit(2));
      return;
    }
    const restore = jobEnv(frame.env || {});
    try {
      // As in spawn mode, where the payload is the JSON text on stdin.
      let payload = frame.payload === undefined ? null : frame.payload;
      if (!payload || typeof payload !== 'object' || Array.isArray(payload)) payload = { value: payload };
      // Each answer names its job (the frame's "job"): never taken for another's.
      send({ result: await run(payload), job: frame.job });
    } catch (e) {
      const [code, text] = failureOf(e);
      send({ exit: code, error: text, job: frame.job });
    } finally {
      restore();
    }
    busy = false;
    next();
  }
  lines.on('line', (line) => {
    if (!line.trim()) return;
    queue.push(line);
    next();
  });
  lines.on('close', () => process.exit(0));
  send({ ready: true, pid: process.pid });
}

if (process.argv.includes('--pool')) poolMode();
else spawnMode();
