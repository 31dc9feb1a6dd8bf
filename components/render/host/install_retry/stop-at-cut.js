// workhub's install retry (retry.sh): preloaded (node --require) into the `npm ci` of a try. At the
// first tarball download cut short it says so (with ECONNRESET, a network fault for both retries,
// the install's and the build runner's) and ends npm at once, instead of letting npm extract every
// other package first and then remove them all.
//
// npm has no setting for it: npm tries again a request that fails before its response, never a
// body cut short (pacote's isRetriableError takes EINTEGRITY, Z_DATA_ERROR, ENOENT and EISDIR;
// make-fetch-happen's retry ends once the headers are in), and arborist's unpack is
// promise-all-reject-late. So it watches node's own http responses.
//
// It acts only in npm's own process (npm's lifecycle scripts get the NODE_OPTIONS they had), only
// for `npm ci`, which starts from an empty node_modules each try (`npm install` would trust a
// half-extracted folder), and only on the body of a GET of a tarball.
//
// It travels inside a single-quoted shell word on one line: no single quote, and every statement
// ends with `;` or a brace (comment lines like these are dropped).
const wrFs = require("fs");
if (/npm-cli\.js$/.test(wrFs.realpathSync(process.argv[1] || "/"))
    && process.argv.slice(2).some(word => ["ci", "clean-install", "ic", "install-clean"].includes(word))) {
  process.env.NODE_OPTIONS = process.env.WR_NODE_OPTIONS || "";
  const http = require("http"), emit = http.IncomingMessage.prototype.emit;
  http.IncomingMessage.prototype.emit = function (name, ...rest) {
    const req = this.req;
    if ((name === "aborted" || (name === "error" && rest[0] && rest[0].code === "ECONNRESET")) && req
        && req.method === "GET" && /\/-\/[^/?]+\.tgz(\?|$)/.test(req.path || "")) {
      wrFs.writeSync(2, `workhub: the download of ${req.path} was cut short (ECONNRESET); npm does not fetch a cut download again, so this try stops here\n`);
      process.removeAllListeners("exit");
      process.exit(1);
    }
    return emit.call(this, name, ...rest);
  };
}
