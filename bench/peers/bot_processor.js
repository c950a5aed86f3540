// bot_processor.js - a BullMQ sandboxed processor that runs the function of
// the Node bot (workers/bots/node/bot.js) on a job's data.
//
// The bot's code is loaded from its own file, without its spawn and pool
// drivers, and its run(payload, env) is called: the same work, in a process
// BullMQ reuses.
'use strict';
const fs = require('fs');
const path = require('path');
const vm = require('vm');

const file = path.join(__dirname, '..', '..', 'workers', 'bots', 'node', 'bot.js');
let source = fs.readFileSync(file, 'utf8').replace(/^#!.*\n/, '');
source = source.slice(0, source.indexOf('function spawnMode()'));

let output = '';
const fakeProcess = {
  env: {},
  pid: process.pid,
  exit: () => {},
  stdout: { write: (text) => { output += text; return true; } },
  stderr: { write: (text, cb) => { output = 'ERROR ' + text; if (cb) cb(); return true; } },
};
const context = vm.createContext({ require, process: fakeProcess, console, setTimeout, Date,
                                   Promise, JSON, Math, Object, Array, Number, String, Set });
vm.runInContext(source + '\n;globalThis.__run = run;', context, { filename: file });

module.exports = async function (job) {
  output = '';
  const result = await context.__run(job.data, {});
  if (output.startsWith('ERROR ')) throw new Error(output.slice(6));
  return result;
};
