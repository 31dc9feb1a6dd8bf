'use strict';
// WBHubManager back end: the JSON API and the built front end (frontend/dist) on one port.
require('dotenv').config({ quiet: true });

const path = require('node:path');
const express = require('express');
const helmet = require('helmet');
const compression = require('compression');
const cors = require('cors');
const cookieParser = require('cookie-parser');
const { rateLimit } = require('express-rate-limit');
const pino = require('pino');
const pinoHttp = require('pino-http');
const { z } = require('zod');
const pkg = require('./package.json');

const HUB = 'wbhubmanager';

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
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  })
  .safeParse(process.env);
if (!env.success) {
  console.error(`${HUB}: bad environment: ${env.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  process.exit(1);
}
const { PORT, HOST, LOG_LEVEL } = env.data;

const logger = pino({ level: LOG_LEVEL, base: { hub: HUB } });
const dist = path.join(__dirname, 'frontend', 'dist');

const hubs = [
  { id: 'wbsaleshub', title: 'Sales', path: '/sales/' },
  { id: 'wbfinhub', title: 'Finance', path: '/finance/' },
];

const app = express();
app.disable('x-powered-by');
app.use(helmet());
app.use(compression());
app.use(cors({ origin: false }));
app.use(cookieParser());
app.use(
  pinoHttp({
    logger,
    autoLogging: { ignore: (req) => req.url === '/health' },
    serializers: {
      req: (req) => ({ method: req.method, url: req.url }),
      res: (res) => ({ statusCode: res.statusCode }),
    },
  }),
);

app.get('/health', (req, res) => {
  res.json({ status: 'ok', hub: HUB, version: pkg.version });
});

const api = express.Router();
api.use(rateLimit({ windowMs: 60_000, limit: 300, standardHeaders: 'draft-8', legacyHeaders: false }));
api.get('/hubs', (req, res) => res.json({ hubs }));
app.use('/api', api);

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
  logger.fatal(`${HUB}: cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
