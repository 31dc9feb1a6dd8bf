'use strict';
// WBSalesHub back end: the JSON API and the built front end (frontend/dist) on one port.
require('dotenv').config({ quiet: true });

const path = require('node:path');
const express = require('express');
const helmet = require('helmet');
const compression = require('compression');
const cors = require('cors');
const morgan = require('morgan');
const winston = require('winston');
const { nanoid } = require('nanoid');
const { z } = require('zod');
const pkg = require('./package.json');

const HUB = 'wbsaleshub';

if (!process.env.PORT) {
  console.error(`${HUB}: PORT is not set; start it as PORT=<port> node server.js`);
  process.exit(1);
}
const env = z
  .object({
    PORT: z.coerce.number().int().min(1).max(65535),
    // The image sets NODE_ENV=production and publishes the port from the container, so listen on
    // all of the container's interfaces there; anywhere else only on loopback unless HOST says so.
    HOST: z.string().min(1).default(process.env.NODE_ENV === 'production' ? '0.0.0.0' : '127.0.0.1'),
    LOG_LEVEL: z.enum(['error', 'warn', 'info', 'http', 'debug']).default('info'),
  })
  .safeParse(process.env);
if (!env.success) {
  console.error(`${HUB}: bad environment: ${env.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  process.exit(1);
}
const { PORT, HOST, LOG_LEVEL } = env.data;

const logger = winston.createLogger({
  level: LOG_LEVEL,
  defaultMeta: { hub: HUB },
  format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
  transports: [new winston.transports.Console()],
});
const dist = path.join(__dirname, 'frontend', 'dist');

const Lead = z.object({
  company: z.string().min(1).max(200),
  contact: z.string().email(),
  value: z.number().nonnegative().default(0),
});
const leads = [];

const app = express();
app.disable('x-powered-by');
app.use(helmet());
app.use(compression());
app.use(cors({ origin: false }));
app.use(express.json({ limit: '100kb' }));
app.use(
  morgan('tiny', {
    skip: (req) => req.url === '/health',
    stream: { write: (line) => logger.http(line.trim()) },
  }),
);

app.get('/health', (req, res) => {
  res.json({ status: 'ok', hub: HUB, version: pkg.version });
});

app.get('/api/leads', (req, res) => res.json({ leads }));
app.post('/api/leads', (req, res) => {
  const parsed = Lead.safeParse(req.body);
  if (!parsed.success) return res.status(400).json({ error: parsed.error.issues });
  const lead = { id: nanoid(), ...parsed.data };
  leads.push(lead);
  res.status(201).json(lead);
});

app.use(express.static(dist, { maxAge: '1h', index: 'index.html' }));
// Client-side routes: any other GET gets the app's index.html.
app.use((req, res, next) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') return next();
  res.sendFile(path.join(dist, 'index.html'), (err) => err && next());
});

const server = app.listen(PORT, HOST, () => {
  logger.info(`${HUB} ${pkg.version} listening on ${HOST}:${PORT}`);
});
server.on('error', (err) => {
  logger.error(`${HUB}: cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
