'use strict';
// WBSalesHub back end: the JSON API and the built front end (frontend/dist) on one port.
require('dotenv').config({ quiet: true });

const crypto = require('node:crypto');
const fs = require('node:fs');
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
const SECRET = 'LEADS_API_TOKEN';

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
    // Where the hub is reachable (set per stack); unset (or empty) when run locally.
    PUBLIC_URL: z.preprocess(
      (v) => (v === '' ? undefined : v),
      z.string().url().regex(/^https?:\/\//i, 'must be an http(s) URL').optional(),
    ),
    // The hub's named volume, kept across deploys.
    DATA_DIR: z.string().min(1).default('/app/data'),
  })
  .safeParse(process.env);
if (!env.success) {
  console.error(`${HUB}: bad environment: ${env.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  process.exit(1);
}
const { PORT, HOST, LOG_LEVEL, PUBLIC_URL } = env.data;
const DATA_DIR = path.resolve(env.data.DATA_DIR);

const logger = winston.createLogger({
  level: LOG_LEVEL,
  defaultMeta: { hub: HUB },
  format: winston.format.combine(winston.format.timestamp(), winston.format.json()),
  transports: [new winston.transports.Console()],
});
const dist = path.join(__dirname, 'frontend', 'dist');

const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex');

// A secret comes as NAME in the environment or, when its value has line breaks (a PEM key), in the
// file that NAME_FILE names (/run/secrets/NAME). Read once at start and kept byte for byte (no
// trimming): { value, bytes, source: 'env' | 'file' }, or undefined when neither is set.
function readSecret(name) {
  const value = process.env[name];
  if (value) return { value, bytes: Buffer.from(value, 'utf8'), source: 'env' };
  const file = process.env[`${name}_FILE`];
  if (!file) return undefined;
  const bytes = fs.readFileSync(file);
  return { value: bytes.toString('utf8'), bytes, source: 'file' };
}
let secret;
try {
  secret = readSecret(SECRET);
} catch (err) {
  logger.error(`${HUB}: cannot read ${SECRET}_FILE: ${err.message}`);
  process.exit(1);
}
if (!secret) logger.warn(`${HUB}: ${SECRET} is not set (nor ${SECRET}_FILE); running without it`);

// Whether the hub can write to DATA_DIR: it creates and removes a probe file there. The hub starts
// either way; saving then fails until the directory is writable.
function dataDirProblem(dir) {
  const probe = path.join(dir, `.probe-${crypto.randomUUID()}`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
    return undefined;
  } catch (err) {
    return err.message;
  }
}
const dataProblem = dataDirProblem(DATA_DIR);
if (dataProblem) logger.warn(`${HUB}: DATA_DIR ${DATA_DIR} is not writable (${dataProblem}); saving will fail`);
else logger.info(`${HUB}: DATA_DIR ${DATA_DIR} is writable`);

// A JSON list kept in a file in DATA_DIR (a missing file is an empty list). During a deploy the old
// and the new container both mount the volume, so every read comes from the file and every append
// rereads it just before writing; the write goes to a temporary file that is then renamed over the
// list, so a crash never leaves half a file.
function jsonList(name) {
  const file = path.join(DATA_DIR, name);
  function read() {
    let text;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if (err.code === 'ENOENT') return [];
      throw err;
    }
    const items = JSON.parse(text);
    if (!Array.isArray(items)) throw new Error(`${file} does not hold a JSON list`);
    return items;
  }
  function append(item) {
    const items = read();
    items.push(item);
    const tmp = `${file}.${crypto.randomUUID()}.tmp`;
    try {
      const fd = fs.openSync(tmp, 'w');
      try {
        fs.writeFileSync(fd, `${JSON.stringify(items, null, 2)}\n`);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    return item;
  }
  return { file, read, append };
}

const Lead = z.object({
  company: z.string().min(1).max(200),
  contact: z.string().email(),
  value: z.number().nonnegative().default(0),
});
const leads = jsonList('leads.json');
try {
  logger.info(`${HUB}: ${leads.file} holds ${leads.read().length} item(s)`);
} catch (err) {
  logger.error(`${HUB}: cannot load ${leads.file}: ${err.message}`);
}

// Probes (health checks, the deploy's tests): no request log line.
function isProbe(url) {
  const pathname = url.split('?', 1)[0];
  return pathname === '/health' || pathname === '/slow' || pathname.startsWith('/debug/');
}
const SlowQuery = z.object({
  ms: z
    .string()
    .regex(/^\d{1,5}$/, 'ms must be a whole number of milliseconds, 0 to 30000')
    .default('3000')
    .transform(Number)
    .refine((ms) => ms <= 30000, 'ms must be a whole number of milliseconds, 0 to 30000'),
});

const app = express();
app.disable('x-powered-by');
// Requests arrive through the hub's proxy (and often an outer web server): trust their forwarding headers.
app.set('trust proxy', 'loopback, uniquelocal');
app.use(helmet());
app.use(compression());
app.use(cors({ origin: false }));
app.use(
  morgan('tiny', {
    skip: (req) => isProbe(req.originalUrl || req.url),
    stream: { write: (line) => logger.http(line.trim()) },
  }),
);
app.use(express.json({ limit: '100kb' }));

app.get('/health', (req, res) => {
  res.json({ status: 'ok', hub: HUB, version: pkg.version });
});

// Answers after ms milliseconds, so a test can keep a request in flight while a deploy switches.
app.get('/slow', (req, res) => {
  const q = SlowQuery.safeParse(req.query);
  if (!q.success) return res.status(400).json({ error: q.error.issues });
  setTimeout(() => res.json({ slept: q.data.ms }), q.data.ms);
});

// The settings and secret the hub runs with: digests only, never a secret's value.
app.get('/debug/digests', (req, res) => {
  res.json({
    hub: HUB,
    settings: { LOG_LEVEL, PUBLIC_URL: PUBLIC_URL ?? null },
    secrets: {
      [SECRET]: secret ? { sha256: sha256(secret.bytes), bytes: secret.bytes.length, source: secret.source } : null,
    },
  });
});

// The files directly in DATA_DIR, with their size and digest.
app.get('/debug/data', (req, res) => {
  const files = {};
  let dirents = [];
  try {
    dirents = fs.readdirSync(DATA_DIR, { withFileTypes: true });
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  for (const dirent of dirents.filter((d) => d.isFile()).sort((a, b) => a.name.localeCompare(b.name))) {
    let content;
    try {
      content = fs.readFileSync(path.join(DATA_DIR, dirent.name));
    } catch (err) {
      if (err.code === 'ENOENT') continue; // renamed or removed since the listing
      throw err;
    }
    files[dirent.name] = { bytes: content.length, sha256: sha256(content) };
  }
  res.json({ dir: DATA_DIR, files });
});

const api = express.Router();
api.get('/leads', (req, res) => res.json({ leads: leads.read() }));
api.post('/leads', (req, res) => {
  const parsed = Lead.safeParse(req.body);
  if (!parsed.success) return res.status(400).json({ error: parsed.error.issues });
  const lead = leads.append({ id: nanoid(), time: new Date().toISOString(), ...parsed.data });
  res.status(201).json(lead);
});
app.use('/api', api);

app.use(express.static(dist, { maxAge: '1h', index: 'index.html' }));
// Client-side routes: any other GET gets the app's index.html.
app.use((req, res, next) => {
  if (req.method !== 'GET' && req.method !== 'HEAD') return next();
  res.sendFile(path.join(dist, 'index.html'), (err) => err && next());
});
// Errors as JSON: a client's (a body that is not JSON) with its status; any other is logged.
app.use((err, req, res, next) => {
  const status = err.status >= 400 && err.status < 500 ? err.status : 500;
  if (status === 500) logger.error(`${HUB}: ${req.method} ${req.originalUrl}: ${err.stack || err}`);
  if (res.headersSent) return next(err);
  res.status(status).json({ error: status === 500 ? 'internal error' : err.message });
});

const server = app.listen(PORT, HOST, () => {
  logger.info(`${HUB} ${pkg.version} listening on ${HOST}:${PORT}${PUBLIC_URL ? `, public at ${PUBLIC_URL}` : ''}`);
});
server.on('error', (err) => {
  logger.error(`${HUB}: cannot listen on ${HOST}:${PORT}: ${err.message}`);
  process.exit(1);
});
// On SIGTERM (a deploy moved traffic to the new container) stop taking connections, finish the
// requests in flight, then exit.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    logger.info(`${HUB}: ${signal}: finishing the requests in flight, then exiting`);
    server.close(() => process.exit(0));
  });
}
