// Counts the requests in verdaccio's JSON log (written by scripts/registry.sh) from a byte offset on.
// Usage: node registry-stats.js <log> [offset]   -> JSON on stdout
//
// verdaccio 6.8 at level "http" writes, per request it receives, one line
//   {"level":30,"sub":"in","req":{"method":"GET","url":"/ms/-/ms-2.1.3.tgz",...},"msg":"... requested 'GET /ms/-/ms-2.1.3.tgz'"}
// plus status lines (level 25, often twice for one request, so they are not counted), and per
// call it makes to its upstream one line
//   {"level":30,"method":"GET","uri":"<upstream>/ms/-/ms-2.1.3.tgz","msg":"making request: ..."}
"use strict";
const fs = require("fs");

const [logPath, sinceArg = "0"] = process.argv.slice(2);
const since = Number(sinceArg);
if (!logPath || !Number.isInteger(since) || since < 0) {
  console.error("usage: node registry-stats.js <log> [offset]");
  process.exit(2);
}
const size = fs.statSync(logPath).size;
if (since > size) {
  console.error(`registry: error: offset ${since} is past the end of the log (${size} bytes); was the log replaced?`);
  process.exit(1);
}
const buf = Buffer.alloc(size - since);
const fd = fs.openSync(logPath, "r");
fs.readSync(fd, buf, 0, buf.length, since);
fs.closeSync(fd);
// Only whole lines: a line still being written is left for the next reader.
const end = buf.lastIndexOf(0x0a) + 1;
const text = buf.subarray(0, end).toString("utf8");

// "/@types%2fnode/-/node-20.1.0.tgz" -> "@types/node"; null if not a tarball path.
function tarballPackage(url) {
  const path = url.split("?")[0];
  const i = path.indexOf("/-/");
  if (i < 0 || !path.endsWith(".tgz")) return null;
  try {
    return decodeURIComponent(path.slice(0, i)).replace(/^\/+/, "");
  } catch {
    return path.slice(1, i);
  }
}

const out = {
  since,
  until: since + end,
  requests: 0,
  tarballs: 0,
  tarballsByPackage: {},
  metadata: 0,
  other: 0,
  uplink: { requests: 0, tarballs: 0 },
};
for (const line of text.split("\n")) {
  if (!line.startsWith("{")) continue;
  let e;
  try {
    e = JSON.parse(line);
  } catch {
    continue;
  }
  if (e.sub === "in" && e.req && typeof e.req.url === "string") {
    out.requests++;
    const pkg = e.req.method === "GET" ? tarballPackage(e.req.url) : null;
    if (pkg !== null) {
      out.tarballs++;
      out.tarballsByPackage[pkg] = (out.tarballsByPackage[pkg] || 0) + 1;
    } else if (e.req.method === "GET" && !e.req.url.startsWith("/-/")) {
      out.metadata++;
    } else {
      out.other++;
    }
  } else if (typeof e.uri === "string" && typeof e.msg === "string" && e.msg.startsWith("making request")) {
    out.uplink.requests++;
    if (tarballPackage(new URL(e.uri).pathname) !== null) out.uplink.tarballs++;
  }
}
out.tarballsByPackage = Object.fromEntries(Object.entries(out.tarballsByPackage).sort(([a], [b]) => (a < b ? -1 : 1)));
console.log(JSON.stringify(out, null, 2));
