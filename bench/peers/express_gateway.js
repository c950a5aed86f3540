'use strict';
//  express_gateway.js - a minimal Express + BullMQ gateway equivalent to the
//  seed's POST /invoke: parse the JSON body, check it, add a job to the bot
//  type's BullMQ queue, answer 202 with the job id.  Stop it with SIGTERM.
//
//    node express_gateway.js --redis PORT --port HTTP_PORT
//
//  Prints "listening PORT" when it accepts connections.
const express = require ('express');
const { Queue } = require ('bullmq');
const c = require ('./common');

const opt = c.args ({ redis: 6379, port: 3000 });
const TYPES = ['python', 'node', 'java'];
const queues = {};
for (const t of TYPES)
  queues [t] = new Queue ('bots-' + t, { connection: c.connection (opt.redis) });

const app = express ();
app.use (express.json ({ limit: '1mb' }));
app.post ('/invoke', async (req, res) => {
  const b = req.body;
  if (!b || typeof b !== 'object' || !TYPES.includes (b.botType))
    return res.status (400).json ({ error: 'botType must be one of ' + TYPES.join (', ') });
  if (b.webhookUrl !== undefined && (typeof b.webhookUrl !== 'string' || !/^https?:\/\//.test (b.webhookUrl)))
    return res.status (400).json ({ error: 'webhookUrl must be an http(s) URL' });
  const priority = b.priority === undefined ? 0 : Number (b.priority);
  if (!Number.isInteger (priority) || priority < 0 || priority > 2097152)
    return res.status (400).json ({ error: 'priority must be an integer 0..2097152' });
  try {
    const job = await queues [b.botType].add (b.botType,
      { botType: b.botType, payload: b.payload === undefined ? null : b.payload, webhookUrl: b.webhookUrl },
      priority ? { priority } : {});
    res.status (202).json ({ jobId: job.id, botType: b.botType, status: 'queued' });
  } catch (e) {
    res.status (503).json ({ error: e.message });
  }
});

(async () => {
  await Promise.all (Object.values (queues).map (q => q.waitUntilReady ()));
  const server = app.listen (opt.port, '127.0.0.1', () => console.log ('listening ' + server.address ().port));
  server.keepAliveTimeout = 60000;
  const stop = async () => {
    server.close ();
    await Promise.all (Object.values (queues).map (q => q.close ()));
    process.exit (0);
  };
  process.on ('SIGTERM', stop);
  process.on ('SIGINT', stop);
}) ().catch (e => { console.error (e); process.exit (1); });
