// The admin dashboard in headless Chromium (Debian's, driven by puppeteer-core
// from bindings/wasm/tools) against the real sacred-server binary: a wrong
// password shows its message, the right one logs in, the numbers move while
// WebSocket clients (Node's WebSocket, the JSON protocol) publish, a kicked
// client disappears and its socket gets 3503, a broadcast reaches a
// subscriber, and a client named like markup stays text. Writes a screenshot.
//
//   node --experimental-websocket sacred-server/tests/dashboard/run.mjs [path/to/sacred-server]
//
// Every wait is bounded, and so is the whole run.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { createInterface } from "node:readline";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = resolve(here, "../../..");
const RUN_LIMIT_MS = 120_000;
const WAIT_MS = 15_000;
const PASSWORD = "dashboard test password";
const XSS_NAME = "<img src=x onerror=window.__xss=1>";
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, "target");
const binary = process.argv[2] ?? join(targetDir, "debug/sacred-server");
const screenshot = process.env.DASHBOARD_SCREENSHOT ?? join(root, "target/dashboard.png");

if (typeof WebSocket === "undefined") {
  console.error("this Node has no global WebSocket: run with node --experimental-websocket (Node 20-21)");
  process.exit(2);
}
const tools = createRequire(join(root, "bindings/wasm/tools/package.json"));
const puppeteerModule = await import(pathToFileURL(tools.resolve("puppeteer-core")).href);
const puppeteer = puppeteerModule.default ?? puppeteerModule;

const cleanups = [];
async function cleanup(code) {
  for (const step of cleanups.reverse()) {
    try { await step(); } catch (_) { /* going down anyway */ }
  }
  process.exit(code);
}
const limit = setTimeout(() => { console.error(`the dashboard test did not end within ${RUN_LIMIT_MS} ms`); cleanup(1); }, RUN_LIMIT_MS);

function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function startServer() {
  const dir = mkdtempSync(join(tmpdir(), "sacred-dashboard-"));
  const hashFile = join(dir, "admin.hash");
  writeFileSync(hashFile, execFileSync(binary, ["admin-password"], { input: `${PASSWORD}\n` }));
  // No per-connection message rate, so the load can run at its pace.
  const config = join(dir, "sacred.toml");
  writeFileSync(config, "[hub]\nmessages_per_minute = 0\nconnections_per_minute = 0\n");
  const server = spawn(binary, ["--bind", "127.0.0.1:0", "--log-format", "json", "--config", config,
    "--admin-password-file", hashFile], { stdio: ["ignore", "pipe", "inherit"] });
  cleanups.push(() => server.kill("SIGKILL"));
  return within(WAIT_MS, new Promise((resolvePromise, reject) => {
    createInterface({ input: server.stdout }).on("line", (line) => {
      let entry;
      try { entry = JSON.parse(line); } catch (_) { return; }
      const address = entry.fields?.address;
      if (address && String(entry.fields?.message ?? "").startsWith("sacred-server listening")) resolvePromise(address);
    });
    server.once("exit", (code) => reject(new Error(`sacred-server exited with ${code}`)));
  }), "sacred-server listens");
}

// A client speaking the JSON protocol: connect, answer pings, keep
// publications and the close code.
function client(address, name, subscribe) {
  return within(WAIT_MS, new Promise((resolvePromise, reject) => {
    const socket = new WebSocket(`ws://${address}/ws`, ["sacred.v1.json"]);
    const peer = { name, socket, id: null, publications: [], closed: null, nextId: 1 };
    peer.send = (message) => socket.send(JSON.stringify({ id: ++peer.nextId, ...message }));
    socket.onopen = () => socket.send(JSON.stringify({ id: 1, connect: { client: { name, kind: "agent", runtime: "node" } } }));
    socket.onerror = () => reject(new Error(`${name}: WebSocket error`));
    socket.onclose = (event) => { peer.closed = event.code; };
    socket.onmessage = (event) => {
      const data = JSON.parse(event.data);
      for (const message of Array.isArray(data) ? data : [data]) {
        if (message.id === 1 && message.connect) {
          peer.id = message.connect.client;
          for (const channel of subscribe) peer.send({ subscribe: { channel } });
          resolvePromise(peer);
        } else if (message.id === 1 && message.error) {
          reject(new Error(`${name}: connect refused: ${JSON.stringify(message.error)}`));
        } else if (message.ping) {
          peer.send({ pong: {} });
        } else if (message.publication) {
          peer.publications.push(message.publication);
        }
      }
    };
  }), `${name} connects`);
}

async function waitFor(what, condition, ms = WAIT_MS) {
  const started = Date.now();
  while (Date.now() - started < ms) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out: ${what}`);
}

const results = [];
async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push({ name, ok: true });
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}: ${err?.stack ?? err}`);
  }
}

const address = await startServer();
const base = `http://${address}`;
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
cleanups.push(() => browser.close());
const page = await browser.newPage();
await page.setViewport({ width: 1280, height: 900 });
const dialogs = [];
page.on("dialog", async (dialog) => { dialogs.push(dialog.message()); await dialog.dismiss(); });
page.on("pageerror", (err) => console.log(`  page error: ${err.message}`));
const violations = [];
page.on("console", (message) => {
  if (message.text().includes("Content Security Policy")) violations.push(message.text());
});
const text = (selector) => page.$eval(selector, (node) => node.textContent);
const number = async (selector) => Number(await text(selector));

let load = null;
let peers = {};

await check("the login page; a wrong password shows its message", async () => {
  await page.goto(`${base}/admin/`, { waitUntil: "domcontentloaded", timeout: WAIT_MS });
  await page.waitForSelector("body[data-ready=yes]", { timeout: WAIT_MS });
  await page.waitForSelector("#login-view:not([hidden])", { timeout: WAIT_MS });
  await page.type("#password", "not the password");
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.getElementById("login-error").textContent === "wrong password", { timeout: WAIT_MS });
  if (await page.$("#live-view:not([hidden])")) throw new Error("the live view shows after a wrong password");
});

await check("the right password logs in and names this node", async () => {
  await page.type("#password", PASSWORD);
  await page.click("#login-form button[type=submit]");
  await page.waitForSelector("body[data-state=live]", { timeout: WAIT_MS });
  const node = await text("#node");
  if (!node.includes(address) || !node.includes("this node")) throw new Error(`node line: ${node}`);
  const cookies = await page.cookies();
  const session = cookies.find((c) => c.name === "sacred_admin");
  if (!session?.httpOnly || session.sameSite !== "Strict" || session.path !== "/admin") {
    throw new Error(`session cookie: ${JSON.stringify(session)}`);
  }
  if (await page.evaluate(() => document.cookie.includes("sacred_admin"))) throw new Error("the cookie is readable by script");
});

await check("live numbers move while a load runs", async () => {
  peers.listener = await client(address, "listener", ["news", "load"]);
  peers.kick = await client(address, "kick-me", []);
  peers.xss = await client(address, XSS_NAME, ["news", "load"]);
  peers.loader = await client(address, "loader", []);
  // Bounded: at most 1500 publications, 10 to 50 a second (a ramp, so the
  // chart has a shape), stopped below.
  let sent = 0;
  let tick = 0;
  load = setInterval(() => {
    if (sent >= 1500) return clearInterval(load);
    tick++;
    const burst = 1 + Math.floor((tick % 250) / 50);
    for (let i = 0; i < burst; i++) peers.loader.send({ publish: { channel: "load", data: { n: sent++ } } });
  }, 100);
  await page.waitForFunction(() => document.getElementById("connections").textContent === "4", { timeout: WAIT_MS });
  await waitFor("messages in and out per second above zero", async () =>
    (await number("#rate-in")) > 0 && (await number("#rate-out")) > 0);
  // Ten seconds of load in the server's samples, for the chart in the screenshot.
  await waitFor("ten seconds of load sampled", async () => page.evaluate(async () =>
    (await (await fetch("/admin/api/stats")).json()).samples.filter((s) => s.published > 0).length >= 10), 25_000);
  await waitFor("the chart draws the samples", async () =>
    (await page.$eval("#line-in", (line) => line.getAttribute("points").split(" ").length)) >= 10);
  await waitFor("the load channel listed with its subscribers", async () =>
    page.$$eval("#channels tr", (rows) => rows.some((row) => row.textContent.startsWith("load2"))));
});

await check("a client named like markup stays text", async () => {
  await page.waitForFunction((name) => [...document.querySelectorAll("#clients td")].some((td) => td.textContent === name),
    { timeout: WAIT_MS }, XSS_NAME);
  const injected = await page.evaluate(() => ({
    xss: window.__xss,
    images: document.querySelectorAll("img").length,
  }));
  if (injected.xss !== undefined || injected.images !== 0) throw new Error(`markup ran: ${JSON.stringify(injected)}`);
  if (dialogs.length) throw new Error(`dialogs: ${dialogs}`);
  if (violations.length) throw new Error(`CSP violations: ${violations}`);
  // The presence of a channel, chosen from its row.
  await page.$$eval("#channels tr", (rows) => rows.find((row) => row.textContent.startsWith("news")).querySelector("button").click());
  await page.waitForFunction((name) => document.getElementById("presence").textContent.includes(name), { timeout: WAIT_MS }, XSS_NAME);
  mkdirSync(dirname(screenshot), { recursive: true });
  await page.screenshot({ path: screenshot, fullPage: true });
});

await check("a kicked client disappears and its socket gets 3503", async () => {
  await page.$eval(`#clients tr[data-client="${peers.kick.id}"] button`, (button) => button.click());
  await waitFor("the kicked socket closes", () => peers.kick.closed !== null);
  if (peers.kick.closed !== 3503) throw new Error(`close code ${peers.kick.closed}`);
  await page.waitForFunction((id) => !document.querySelector(`#clients tr[data-client="${id}"]`), { timeout: WAIT_MS }, peers.kick.id);
});

await check("a broadcast reaches a subscribed client", async () => {
  await page.$eval("#broadcast-channel", (input) => { input.value = "news"; });
  await page.$eval("#broadcast-data", (input) => { input.value = '{"text": "from the dashboard"}'; });
  await page.$eval("#broadcast-form", (form) => form.requestSubmit());
  await waitFor("the listener receives it", () =>
    peers.listener.publications.some((p) => p.channel === "news" && p.data?.text === "from the dashboard"));
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("Done: broadcast"), { timeout: WAIT_MS });
});

await check("the numbers fall back once the load stops; logout returns to the login", async () => {
  clearInterval(load);
  await waitFor("messages in per second back to zero", async () => (await number("#rate-in")) === 0);
  await page.click("#logout");
  await page.waitForSelector("#login-view:not([hidden])", { timeout: WAIT_MS });
  const after = await page.evaluate(async () => (await fetch("/admin/api/stats")).status);
  // No cookie any more: refused like an unsigned call (400), never served.
  if (after !== 400 && after !== 401) throw new Error(`stats after logout: ${after}`);
});

for (const peer of Object.values(peers)) peer.socket.close();
const failed = results.filter((r) => !r.ok).length;
console.log(`dashboard: ${results.length - failed} passed, ${failed} failed`);
clearTimeout(limit);
await cleanup(failed ? 1 : 0);
