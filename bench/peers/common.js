'use strict';
//  common.js - shared by the BullMQ peers: arguments, the payload, the
//  Redis connection.  Every script prints its figures on one line that
//  starts with "RESULT" and holds key=value pairs (bench/run.sh reads it).

function args (defaults) {
  const out = Object.assign ({}, defaults);
  const argv = process.argv.slice (2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv [i];
    if (a === '--help' || a === '-h') {
      console.log ('flags: ' + Object.keys (defaults).map (k => '--' + k + ' (' + defaults [k] + ')').join (' '));
      process.exit (0);
    }
    if (!a.startsWith ('--') || !(a.slice (2) in defaults) || i + 1 >= argv.length) {
      console.error ('bad argument: ' + a + '; flags: ' + Object.keys (defaults).join (', '));
      process.exit (2);
    }
    const key = a.slice (2);
    const v = argv [++i];
    if (typeof defaults [key] === 'number') {
      const n = Number (v);
      if (!Number.isFinite (n) || n < 0) { console.error ('--' + key + ': not a number: ' + v); process.exit (2); }
      out [key] = n;
    } else if (typeof defaults [key] === 'boolean')
      out [key] = v === 'true' || v === '1' || v === 'yes';
    else
      out [key] = v;
  }
  return out;
}

//  The payload every case uses: a JSON object of ~100 bytes (as text).
//  bench/bm_bench.c builds the same object (bm_bench_payload).
function payload (seq) {
  return { task: 'data_analysis', dataset: 'sales_2024', seq: seq,
           pad: 'abcdefghijklmnopqrstuvwxyz0123456' };
}

function connection (port) {
  return { host: '127.0.0.1', port: port, maxRetriesPerRequest: null };
}

function result (fields) {
  console.log ('RESULT ' + Object.keys (fields).map (k => k + '=' + fields [k]).join (' '));
}

//  Percentile of a sorted array (nearest rank).
function pct (sorted, p) {
  if (!sorted.length) return 0;
  const i = Math.min (sorted.length - 1, Math.max (0, Math.ceil (p / 100 * sorted.length) - 1));
  return sorted [i];
}

module.exports = { args, payload, connection, result, pct };
