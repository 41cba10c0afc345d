// A static file server on 127.0.0.1:0 for pages driven in Chromium: `mounts`
// maps URL prefixes to directories, the first prefix that matches wins (list
// the longer ones first).
// Used by the browser suite (run.mjs) and the browser benchmark.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".ts": "text/plain" };

/** Serves `mounts` ({"/pkg/": dir, "/": dir}); resolves with the listening server. */
export function serveStatic(mounts) {
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, "http://x").pathname);
    const [prefix, dir] = Object.entries(mounts).find(([p]) => path.startsWith(p));
    const file = normalize(join(dir, path.slice(prefix.length)));
    try {
      const body = await readFile(file);
      response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      response.end(body);
    } catch {
      response.writeHead(404).end();
    }
  });
  return new Promise((resolvePromise) => server.listen(0, "127.0.0.1", () => resolvePromise(server)));
}
