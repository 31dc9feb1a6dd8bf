// workhub's install retry (retry.sh): run after a try that failed from the network, as
//   node -e "$wr_fill_js" NPM TRIES ARGS...
// (NPM: the npm on the PATH; ARGS: the install's npm words). It loads npm's config as that npm
// command would, reads the lockfile it installs, and asks pacote (as npm ci does, so with npm's
// cache keys: a package already there is read, not fetched) for each package that fits this
// platform and is not omitted, 16 at a time, each tried again on its own up to TRIES times. The
// next try finds them all in the cache. Its exit code is not used: what it could not fetch, the
// next try fetches.
//
// npm has no command for it: `npm cache add` takes package specs, not a lockfile with its
// platform and omit rules, and tries no download again on its own.
//
// It travels inside a single-quoted shell word on one line: no single quote, and every statement
// ends with `;` or a brace (comment lines like these are dropped).
const fs = require("fs"), path = require("path");
const [npmBin, tries, ...args] = process.argv.slice(1);
const npmRoot = path.dirname(path.dirname(fs.realpathSync(npmBin)));
const need = name => require(path.join(npmRoot, "node_modules", name));
(async () => {
  process.argv = [process.execPath, path.join(npmRoot, "bin", "npm-cli.js"), ...args];
  const Npm = require(path.join(npmRoot, "lib", "npm.js"));
  const npm = new Npm();
  await npm.load();
  const opts = npm.flatOptions, pacote = need("pacote"), checks = need("npm-install-checks");
  const lock = ["npm-shrinkwrap.json", "package-lock.json"].map(f => path.join(npm.localPrefix, f)).find(f => fs.existsSync(f));
  const omit = new Set(opts.omit || []);
  const fits = p => { try { checks.checkPlatform({ os: p.os, cpu: p.cpu, libc: p.libc }); return true; } catch { return false; } };
  const wanted = Object.entries(JSON.parse(fs.readFileSync(lock, "utf8")).packages || {}).filter(([at, p]) => at && !p.link
    && !p.inBundle && p.integrity && p.version && !["dev", "optional", "peer"].some(kind => p[kind] && omit.has(kind)) && fits(p)
    && (!p.resolved || /^https?:\/\/\S*\/-\/\S*\.tgz$/.test(p.resolved)));
  const all = wanted.map(([at, p]) => [p.name || at.slice(at.lastIndexOf("node_modules/") + 13), p]);
  let again = 0, failed = 0, next = 0;
  const fetchOne = async ([name, p]) => {
    for (let n = 1; ; n++) {
      try {
        await pacote.tarball.stream(p.resolved ? `${name}@${p.resolved}` : `${name}@${p.version}`, s => { s.resume(); return s.promise(); },
          { ...opts, integrity: p.integrity, resolved: p.resolved });
        return;
      } catch (e) {
        if (n >= Number(tries)) { failed++; console.log(`workhub: could not fetch ${name}@${p.version} (${e.code || e.message}) in ${n} tries`); return; }
        again++;
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, async () => { while (next < all.length) { await fetchOne(all[next++]); } }));
  console.log(`workhub: ${all.length - failed} of the ${all.length} packages of ${path.relative(process.cwd(), lock)} are in the npm cache (${again} downloads tried again)`);
  process.exit(failed ? 1 : 0);
})().catch(e => { console.log(`workhub: could not fill the npm cache (${e.message}); the next try fetches what is missing`); process.exit(2); });
