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
//   fail      true or a message: exit 1 with the message on stderr
//
// The transformation: keys to camelCase, strings trimmed, e-mail addresses
// lower-cased, and a short SHA-1 checksum of each record's canonical JSON;
// plus a summary (count, fields seen, numeric totals).
//
// Progress: lines "PROGRESS <0-100>" on the fd named by BOT_PROGRESS_FD (the
// worker sets it to 3); without it, or if that fd is closed, no progress.
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const startedAt = Date.now();

function fail(message) {
  process.stderr.write(String(message).replace(/\n$/, '') + '\n', () => process.exit(1));
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

async function run(payload) {
  progress(0);
  if (payload.fail) {
    fail(typeof payload.fail === 'string' ? payload.fail : 'failing as asked (payload.fail)');
    return;
  }
  const action = payload.action === undefined ? 'process_api' : payload.action;
  if (action !== 'process_api') {
    fail(`unknown action ${JSON.stringify(action)} (this bot does process_api)`);
    return;
  }
  const sleepMs = payload.sleepMs === undefined ? 0 : payload.sleepMs;
  if (typeof sleepMs !== 'number' || !(sleepMs >= 0 && sleepMs <= 3600000)) {
    fail('sleepMs must be a number from 0 to 3600000');
    return;
  }
  let records = payload.records;
  const endpoint = typeof payload.endpoint === 'string' ? payload.endpoint : '/items';
  if (records === undefined) {
    const count = payload.count === undefined ? 10 : payload.count;
    if (!Number.isInteger(count) || count < 1 || count > 100000) {
      fail('count must be an integer from 1 to 100000');
      return;
    }
    records = generate(endpoint, count);
  }
  if (!Array.isArray(records)) {
    fail('records must be a list');
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
  const result = {
    bot: 'node',
    action: 'process_api',
    endpoint,
    summary: { count: out.length, fields: [...fields].sort(), totals },
    records: out,
    jobId: process.env.BOT_JOB_ID || null,
    attempt: Number(process.env.BOT_ATTEMPT || 1),
    pid: process.pid,
    startedAt,
    finishedAt: Date.now(),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('error', () => {});
process.stdin.on('end', () => {
  let payload;
  try {
    payload = input.trim() ? JSON.parse(input) : {};
  } catch (e) {
    fail(`payload is not JSON: ${e.message}`);
    return;
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) payload = { value: payload };
  run(payload).catch((e) => fail(e && e.stack ? e.stack : String(e)));
});
