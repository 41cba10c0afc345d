// The browser benchmark of docs/benchmarks.md: publications per second one
// page receives, for @sacred/client (WebAssembly) against a plain-JavaScript
// WebSocket page reading the same stream from the same server, in one run
// (the package with either codec; the plain page speaks JSON).
//
//   scripts/wasm-package.sh && node benches/browser.mjs     # 3 rounds, median
//
// Needs release builds of sacred-server and client-bench (it builds them) and
// Debian's chromium. Each measurement gets a fresh server on core 0 with the
// Rust publisher (client-bench publish: COUNT publications of 200 bytes, 256
// in flight); Chromium runs on core 1. The page's main-thread time per
// publication comes from the DevTools protocol (TaskDuration).

import { execFileSync, spawn } from "node:child_process";
import { writeFile, chmod, mkdtemp } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir, cpus } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { serveStatic } from "../bindings/wasm/tests/static.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = resolve(here, "..");
const COUNT = Number(process.env.COUNT ?? 200_000);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const PINNED = cpus().length >= 2;
const bin = (name) => join(root, "target/release", name);
const onCore = (core, args) => (PINNED ? ["taskset", "-c", String(core), ...args] : args);
const tools = createRequire(join(root, "bindings/wasm/tools/package.json"));
const puppeteerModule = await import(pathToFileURL(tools.resolve("puppeteer-core")).href);
const puppeteer = puppeteerModule.default ?? puppeteerModule;

function startServer() {
  const [command, ...args] = onCore(0, [bin("sacred-server"), "--bind", "127.0.0.1:0", "--log-format", "json", "--allowed-origin", "*",
    // The load comes from one address: the per-address and per-connection limits are off.
    "--connections-per-minute", "0", "--messages-per-minute", "0", "--max-connections", "0"]);
  const server = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error("sacred-server did not start within 20 s")), 20_000);
    const lines = createInterface({ input: server.stdout });
    lines.on("line", (line) => {
      const found = /"address":"([^"]+)"/.exec(line);
      if (!found) return;
      clearTimeout(timer);
      lines.removeAllListeners("line");
      server.stdout.resume();
      resolvePromise({ server, url: `ws://${found[1]}/ws` });
    });
  });
}

function publish(url) {
  const [command, ...args] = onCore(0, [bin("client-bench"), "publish", "--url", url, "--channel", "bench", "--count", String(COUNT)]);
  const publisher = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  publisher.stdout.on("data", (chunk) => { out += chunk; });
  return new Promise((resolvePromise, reject) => {
    publisher.once("exit", (code) => (code === 0 ? resolvePromise(JSON.parse(out)) : reject(new Error(`publisher exited with ${code}`))));
  });
}

function serve() {
  return serveStatic({ "/pkg/": join(root, "target/wasm-package"), "/": join(here, "browser") });
}

async function measure(browser, port, page_kind) {
  const [kind, codec = "json"] = page_kind.split("-");
  const { server, url } = await startServer();
  const page = await browser.newPage();
  try {
    page.on("pageerror", (err) => console.error(`  page error: ${err.message}`));
    await page.goto(`http://127.0.0.1:${port}/bench.html?kind=${kind}&codec=${codec}&count=${COUNT}&hub=${encodeURIComponent(url)}`);
    await page.waitForFunction(() => window.__subscribed, { timeout: 20_000 });
    const before = await page.metrics();
    const published = await publish(url);
    const result = await page.waitForFunction(() => window.__result, { timeout: 120_000, polling: 100 }).then((h) => h.jsonValue());
    const after = await page.metrics();
    result.main_thread_us = ((after.TaskDuration - before.TaskDuration) * 1e6) / result.received;
    result.published_per_s = published.per_s;
    return result;
  } finally {
    await page.close();
    server.kill();
  }
}

const median = (values) => values.slice().sort((a, b) => a - b)[Math.floor(values.length / 2)];

execFileSync("cargo", ["build", "--release", "--locked", "-q", "-p", "sacred-server", "-p", "sacred-benches",
  "--bin", "sacred-server", "--bin", "client-bench"], { cwd: root, stdio: "inherit" });
const chromium = execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"]).toString().trim();
// Chromium on core 1, away from the server and the publisher.
const wrapper = join(await mkdtemp(join(tmpdir(), "sacred-bench-")), "chromium");
await writeFile(wrapper, `#!/bin/sh\nexec ${PINNED ? "taskset -c 1 " : ""}${chromium} "$@"\n`);
await chmod(wrapper, 0o755);
const browser = await puppeteer.launch({
  executablePath: wrapper,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-renderer-backgrounding", "--disable-background-timer-throttling"],
});
const http = await serve();
const runs = { "wasm-json": [], "wasm-msgpack": [], websocket: [] };
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const kind of Object.keys(runs)) {
      const result = await measure(browser, http.address().port, kind);
      runs[kind].push(result);
      console.error(`round ${round} ${kind}: ${JSON.stringify(result)}`);
    }
  }
} finally {
  await browser.close();
  http.close();
}
const names = {
  "wasm-json": "@sacred/client (WebAssembly), JSON",
  "wasm-msgpack": "@sacred/client (WebAssembly), MessagePack",
  websocket: "plain JavaScript WebSocket + JSON.parse",
};
const base = median(runs.websocket.map((r) => r.per_s));
const baseCpu = median(runs.websocket.map((r) => r.main_thread_us));
console.log(`Publications received per second by one page (${COUNT} of 200 bytes, median of ${ROUNDS}):\n`);
console.log("| page | received/s | vs plain WebSocket | the publisher meanwhile | main-thread time per publication | vs plain WebSocket |");
console.log("|---|--:|--:|--:|--:|--:|");
for (const [kind, list] of Object.entries(runs)) {
  const rate = median(list.map((r) => r.per_s));
  const cpu = median(list.map((r) => r.main_thread_us));
  console.log(`| ${names[kind]} | ${(rate / 1e3).toFixed(0)} k | ${(rate / base).toFixed(2)}x | ${(median(list.map((r) => r.published_per_s)) / 1e3).toFixed(0)} k/s | ${cpu.toFixed(2)} µs | ${(cpu / baseCpu).toFixed(2)}x |`);
}
