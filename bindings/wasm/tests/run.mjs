// The browser suite: the built package (target/wasm-package) loaded by a page
// in headless Chromium (Debian's, driven by puppeteer-core, which downloads
// nothing), talking to the workspace's test hub (target/debug/browser-hub).
//
//   node bindings/wasm/tests/run.mjs
//
// The page (suite.html + suite.js) runs every test and reports to this
// process; each test is bounded, and so is the whole run.

import { spawn, execFileSync } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

import { build as buildExamples } from "../../../examples/browser/build.mjs";
import { serveStatic } from "./static.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = resolve(here, "../../..");
const RUN_LIMIT_MS = 180_000;
// puppeteer-core is installed with the package's tools (bindings/wasm/tools).
const tools = createRequire(join(root, "bindings/wasm/tools/package.json"));
const puppeteerModule = await import(pathToFileURL(tools.resolve("puppeteer-core")).href);
const puppeteer = puppeteerModule.default ?? puppeteerModule;

function startHub() {
  const hub = spawn(join(root, "target/debug/browser-hub"), [], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error("browser-hub printed no URL within 20 s")), 20_000);
    createInterface({ input: hub.stdout }).once("line", (line) => {
      clearTimeout(timer);
      resolvePromise({ hub, url: line.trim() });
    });
    hub.once("exit", (code) => reject(new Error(`browser-hub exited with ${code}`)));
  });
}

function serve() {
  return serveStatic({ "/pkg/": join(root, "target/wasm-package"), "/": here });
}

// examples/browser/chat.html, served next to the package as its comments say:
// two pages chat through the hub.
async function chatExample(port) {
  const started = Date.now();
  const name = "examples/browser/chat.html: two pages chat";
  try {
    const open = async (who) => {
      const page = await browser.newPage();
      page.on("console", (message) => console.log(`  ${who}: ${message.text()}`));
      page.on("pageerror", (err) => console.log(`  ${who} error: ${err.message}`));
      await page.goto(`http://127.0.0.1:${port}/pkg/chat.html?hub=${encodeURIComponent(url)}&name=${who}`, { waitUntil: "domcontentloaded", timeout: 20_000 });
      await page.waitForSelector("body[data-ready=yes]", { timeout: 20_000 });
      return page;
    };
    const ada = await open("ada");
    const bob = await open("bob");
    // The page's own form, submitted as a user would (typing needs a focused tab).
    await ada.evaluate(() => {
      document.getElementById("text").value = "hello bob";
      document.getElementById("form").requestSubmit();
    });
    await bob.waitForFunction(() => document.getElementById("log").textContent.includes("ada: hello bob"), { timeout: 10_000 });
    await ada.waitForFunction(() => document.getElementById("who").textContent.includes("bob"), { timeout: 10_000 });
    await ada.close();
    await bob.close();
    return { name, ok: true, ms: Date.now() - started };
  } catch (err) {
    return { name, ok: false, error: String(err?.stack ?? err), ms: Date.now() - started };
  }
}

// examples/browser/{react,vue}: bundled by esbuild, rendered in StrictMode
// (React) with two components sharing one channel; publishing through the
// page's form shows up in both; unmounting one keeps the other's feed.
async function frameworkExample(port, framework) {
  const started = Date.now();
  const name = `examples/browser/${framework}: renders a live feed`;
  try {
    const page = await browser.newPage();
    page.on("console", (message) => console.log(`  ${framework}: ${message.text()}`));
    page.on("pageerror", (err) => console.log(`  ${framework} error: ${err.message}`));
    await page.goto(`http://127.0.0.1:${port}/pkg/example-${framework}.html?hub=${encodeURIComponent(url)}&channel=${framework}`, { waitUntil: "domcontentloaded", timeout: 20_000 });
    await page.waitForSelector("main[data-state=connected]", { timeout: 20_000 });
    await page.waitForFunction(() => document.getElementById("subscription")?.textContent === "subscribed", { timeout: 10_000 });
    const say = (text) => page.evaluate((value) => {
      const input = document.getElementById("text");
      // As typing would: the framework hears the input event.
      Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(input, value);
      input.dispatchEvent(new Event("input", { bubbles: true }));
    }, text).then(() => page.waitForFunction((value) => document.getElementById("text").value === value, { timeout: 10_000 }, text))
      .then(() => page.evaluate(() => document.getElementById("form").requestSubmit()));
    await say("first");
    await page.waitForFunction(() => document.getElementById("feed").textContent === "first" && document.getElementById("count").textContent === "1", { timeout: 10_000 });
    await page.evaluate(() => document.getElementById("show").click());
    await page.waitForFunction(() => document.getElementById("feed") === null, { timeout: 10_000 });
    await say("second");
    await page.waitForFunction(() => document.getElementById("count").textContent === "2", { timeout: 10_000 });
    await page.close();
    return { name, ok: true, ms: Date.now() - started };
  } catch (err) {
    return { name, ok: false, error: String(err?.stack ?? err), ms: Date.now() - started };
  }
}

// The README's browser snippet, as written, in a page the real sacred-server
// serves beside the package (--client-dir).
async function readmeExample() {
  const started = Date.now();
  const name = "README.md: the browser snippet, served by sacred-server --client-dir";
  let server;
  try {
    const readme = await readFile(join(root, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Use it from a browser page"));
    const snippet = /```html\n([\s\S]*?)```/.exec(section)?.[1];
    if (!snippet) throw new Error("no html block in the README's browser section");
    await writeFile(join(root, "target/wasm-package/hello.html"), snippet);
    server = spawn(join(root, "target/debug/sacred-server"), ["--bind", "127.0.0.1:0", "--log-format", "json", "--client-dir", join(root, "target/wasm-package")], { stdio: ["ignore", "pipe", "inherit"] });
    const address = await new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error("sacred-server printed no address within 20 s")), 20_000);
      const lines = createInterface({ input: server.stdout });
      lines.on("line", (line) => {
        const found = /"address":"([^"]+)"/.exec(line);
        if (found) { clearTimeout(timer); resolvePromise(found[1]); }
      });
      server.once("exit", (code) => reject(new Error(`sacred-server exited with ${code}`)));
    });
    const page = await browser.newPage();
    page.on("pageerror", (err) => console.log(`  hello error: ${err.message}`));
    await page.goto(`http://${address}/client/v0.1.0/hello.html`, { timeout: 20_000 });
    await page.waitForFunction(() => document.body?.textContent.includes("page: hello"), { timeout: 10_000 });
    await page.close();
    return { name, ok: true, ms: Date.now() - started };
  } catch (err) {
    return { name, ok: false, error: String(err?.stack ?? err), ms: Date.now() - started };
  } finally {
    // Its drain logs a line or two: wait, so they find the pipe still open.
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise((resolvePromise) => server.once("exit", resolvePromise));
      server.kill();
      await exited;
    }
  }
}

const chromium = execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"]).toString().trim();
const { hub, url } = await startHub();
const server = await serve();
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failed = 1;
const limit = setTimeout(() => { console.error(`the browser suite did not end within ${RUN_LIMIT_MS} ms`); cleanup(1); }, RUN_LIMIT_MS);
async function cleanup(code) {
  clearTimeout(limit);
  await browser.close().catch(() => {});
  server.close();
  hub.kill();
  process.exit(code);
}
try {
  const page = await browser.newPage();
  page.on("console", (message) => console.log(`  page: ${message.text()}`));
  page.on("pageerror", (err) => console.log(`  page error: ${err.message}`));
  const address = server.address();
  await page.goto(`http://127.0.0.1:${address.port}/suite.html?hub=${encodeURIComponent(url)}`);
  const results = await page.waitForFunction(() => window.__results, { timeout: RUN_LIMIT_MS - 10_000 }).then((h) => h.jsonValue());
  await buildExamples();
  results.push(await chatExample(address.port));
  for (const framework of ["react", "vue"]) results.push(await frameworkExample(address.port, framework));
  results.push(await readmeExample());
  for (const { name, ok, error, ms } of results) console.log(`${ok ? "ok  " : "FAIL"} ${name} (${ms} ms)${ok ? "" : `\n     ${error}`}`);
  const bad = results.filter((r) => !r.ok).length;
  console.log(`browser package: ${results.length - bad} passed, ${bad} failed`);
  failed = bad ? 1 : 0;
} catch (err) {
  console.error(err);
}
await cleanup(failed);
