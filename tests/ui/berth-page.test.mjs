// berth's status page (`GET /`) in real headless Chromium: Debian's
// `chromium` package driven by playwright-core, no browser download.
//
//   node --test berth-page.test.mjs                  (BERTH_BIN=path/to/berth)
//   node berth-page.test.mjs --screenshots           also writes docs/berth-status-{phone,laptop}.png
//
// cargo runs it from sidecar/tests/ui_page.rs with BERTH_BIN set. The page
// is loaded from loopback (error detail shown) and, when this machine has a
// non-loopback address, through that address too: a genuinely remote peer,
// which must see only the kind of each failure.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const BERTH = process.env.BERTH_BIN || path.join(root, "target/debug/berth");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOTS = process.argv.includes("--screenshots") || !!process.env.BERTH_UI_SCREENSHOTS;
const SHOTS_DIR = process.env.BERTH_UI_SCREENSHOTS_DIR || path.join(root, "docs");
const INTERVAL_MS = 1000; // every check below
const REFRESH_MS = 2000; // the page's own refresh
const HOSTILE = "<img src=x onerror=alert(1)>";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** An IPv4 address of this machine that is not loopback, if any. */
function remoteAddress() {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list || []) {
      if (a.family === "IPv4" && !a.internal) return a.address;
    }
  }
  return null;
}

let dir, berth, port, base, browser, log = "";
const problems = []; // console errors, page errors, dialogs: none allowed
const remoteIp = remoteAddress();

async function startBerth() {
  for (let attempt = 0; attempt < 3; attempt++) {
    port = await freePort();
    const closed = await freePort(); // nothing listens there: the optional "cache" check is down
    const listen = remoteIp ? `0.0.0.0:${port}` : `127.0.0.1:${port}`;
    const config = `listen: "${listen}"
checks:
  - {name: app, type: http, url: "http://127.0.0.1:${port}/api/v1/health/live", interval: 1s, timeout: 500ms}
  - {name: heartbeat, type: file, path: "${dir}/heartbeat", maxAge: 30s, interval: 1s, timeout: 500ms, failureThreshold: 1}
  - {name: app-port, type: tcp, address: "127.0.0.1:${port}", interval: 1s, timeout: 500ms}
  - {name: cache, type: tcp, address: "127.0.0.1:${closed}", critical: false, interval: 1s, timeout: 500ms}
  - {name: uploads, type: file, path: "${dir}/${HOSTILE}", critical: false, interval: 1s, timeout: 500ms}
startup:
  waitFor: [heartbeat]
groups:
  serving: [app, app-port, heartbeat]
  extras: [cache, uploads]
`;
    fs.writeFileSync(path.join(dir, "berth.yaml"), config);
    log = "";
    const env = { ...process.env, BERTH_LOG: "info" };
    delete env.BERTH_LISTEN;
    berth = spawn(BERTH, ["serve", "--config", path.join(dir, "berth.yaml")], { env, stdio: ["ignore", "pipe", "pipe"] });
    berth.stdout.on("data", (d) => (log += d));
    berth.stderr.on("data", (d) => (log += d));
    base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      if (berth.exitCode !== null) break;
      try {
        // Another process may have taken the port in between: make sure
        // the answer comes from this berth.
        const body = await (await fetch(`${base}/api/v1/health/`)).json();
        if (berth.exitCode === null && body.checks?.some((c) => c.name === "uploads")) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    berth.kill("SIGKILL");
    if (!/in use/.test(log)) throw new Error(`berth did not listen:\n${log}`);
  }
  throw new Error("no free port for berth");
}

function watch(page, label) {
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`${label} console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${label} page error: ${e.message}`));
  page.on("dialog", (d) => {
    problems.push(`${label} dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });
}

async function openPage(url, viewport, label) {
  const page = await browser.newPage({ viewport, colorScheme: "light" });
  watch(page, label);
  const resp = await page.goto(url);
  assert.equal(resp.status(), 200);
  return { page, resp };
}

const card = (page, name) => page.locator(`.check[data-check="${name}"]`);

async function waitStatus(page, name, status, timeout) {
  await page.waitForSelector(`.check[data-check="${name}"][data-status="${status}"]`, { timeout });
}

async function nextUpdate(page) {
  const n = Number(await page.evaluate(() => document.body.dataset.updates || 0));
  await page.waitForFunction((n) => Number(document.body.dataset.updates || 0) > n, n, { timeout: REFRESH_MS * 3 });
}

before(async () => {
  assert.ok(fs.existsSync(BERTH), `no berth binary at ${BERTH} (set BERTH_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `no ${CHROMIUM}: install Debian's chromium (tools/setup.sh does)`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "berth-ui-"));
  fs.writeFileSync(path.join(dir, "heartbeat"), "beat\n");
  await startBerth();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container has no user namespaces for Chromium's sandbox.
    args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
  });
});

after(async () => {
  await browser?.close();
  // Its drain is tested elsewhere; here it only has to go away.
  if (berth && berth.exitCode === null) berth.kill("SIGKILL");
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("the page is served with a strict policy and renders the live state", async () => {
  const { page, resp } = await openPage(`${base}/`, { width: 1366, height: 900 }, "loopback");
  const h = resp.headers();
  assert.match(h["content-type"], /^text\/html/);
  assert.equal(h["x-content-type-options"], "nosniff");
  assert.equal(h["cache-control"], "no-store");
  const csp = h["content-security-policy"];
  assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/]+=*'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe/);

  await waitStatus(page, "heartbeat", "up", 10_000);
  await waitStatus(page, "app", "up", 10_000);
  await waitStatus(page, "cache", "down", 10_000);
  assert.equal(await page.locator("#overall").textContent(), "degraded");
  assert.equal(await page.locator("#started").textContent(), "started");
  assert.equal(await page.locator("#ready").textContent(), "ready");
  assert.equal(await page.locator("#draining").textContent(), "no");
  const hb = card(page, "heartbeat");
  assert.equal(await hb.locator(".type").textContent(), "file");
  assert.equal(await hb.locator(".crit").textContent(), "critical");
  assert.match(await hb.locator(".latency").textContent(), /ms$/);
  assert.equal(await card(page, "cache").locator(".crit").textContent(), "optional");
  // Groups with their members, each member coloured by its check.
  await page.waitForSelector('.group[data-group="serving"][data-status="up"]');
  await page.waitForSelector('.group[data-group="extras"] li[data-status="down"]');
  assert.deepEqual(
    await page.locator('.group[data-group="serving"] li').allTextContents(),
    ["app", "app-port", "heartbeat"],
  );
  await page.close();
});

test("the history strip grows with every result", async () => {
  const { page } = await openPage(`${base}/`, { width: 1366, height: 900 }, "loopback");
  await waitStatus(page, "heartbeat", "up", 10_000);
  const strip = card(page, "heartbeat").locator(".strip");
  const first = Number(await strip.getAttribute("data-count"));
  await nextUpdate(page);
  await nextUpdate(page);
  const later = Number(await strip.getAttribute("data-count"));
  assert.ok(later > first, `strip did not grow: ${first} -> ${later}`);
  assert.equal(await strip.locator('.bar[data-ok="true"]').count(), Math.min(later, 60));
  assert.equal(await strip.locator(".bar").count(), 60);
  await page.close();
});

test("error text that looks like HTML is shown as text", async () => {
  const { page } = await openPage(`${base}/`, { width: 1366, height: 900 }, "loopback");
  await waitStatus(page, "uploads", "down", 10_000);
  const uploads = card(page, "uploads");
  const text = await uploads.locator(".errtext").textContent();
  assert.ok(text.includes(HOSTILE), `error detail should carry the path as text: ${text}`);
  assert.equal(await uploads.locator(".error").getAttribute("data-detail"), "true");
  assert.equal(await page.locator("main img").count(), 0, "an <img> was created from error text");
  assert.equal(await page.locator("#detail-note").isHidden(), true);
  await page.close();
});

test("a check going down turns red within its interval, and back", async () => {
  const { page } = await openPage(`${base}/`, { width: 1366, height: 900 }, "loopback");
  await waitStatus(page, "heartbeat", "up", 10_000);
  const dot = card(page, "heartbeat").locator(".dot");
  const green = await dot.evaluate((e) => getComputedStyle(e).backgroundColor);
  const t0 = Date.now();
  fs.unlinkSync(path.join(dir, "heartbeat"));
  // One check interval for berth to notice (failureThreshold 1), one page
  // refresh to show it, and slack for a loaded 2-core machine.
  await waitStatus(page, "heartbeat", "down", INTERVAL_MS + REFRESH_MS + 2000);
  const took = Date.now() - t0;
  const red = await dot.evaluate((e) => getComputedStyle(e).backgroundColor);
  assert.notEqual(red, green);
  assert.equal(red, "rgb(207, 34, 46)", "the dot of a down check is red");
  assert.equal(await page.locator("#overall").textContent(), "unhealthy");
  assert.equal(await page.locator("#ready").textContent(), "not ready");
  await page.waitForSelector('.check[data-check="heartbeat"] .bar[data-ok="false"]');
  assert.match(await card(page, "heartbeat").locator(".errtext").textContent(), /heartbeat/);
  await page.waitForSelector('.group[data-group="serving"][data-status="down"]');
  console.log(`# heartbeat shown down ${took} ms after its file was deleted`);

  fs.writeFileSync(path.join(dir, "heartbeat"), "beat\n");
  await waitStatus(page, "heartbeat", "up", INTERVAL_MS + REFRESH_MS + 2000);
  assert.equal(await page.locator("#overall").textContent(), "degraded");
  await page.close();
});

test("a remote peer sees the kind of each failure, never its detail", async (t) => {
  if (!remoteIp) {
    t.skip("this machine has no non-loopback IPv4 address");
    return;
  }
  const { page } = await openPage(`http://${remoteIp}:${port}/`, { width: 1366, height: 900 }, "remote");
  await waitStatus(page, "uploads", "down", 10_000);
  const uploads = card(page, "uploads");
  await page.waitForSelector('.check[data-check="uploads"] .error[data-detail="false"]');
  const text = await uploads.locator(".errtext").textContent();
  assert.ok(!text.includes("onerror") && !text.includes(dir), `detail leaked to a remote peer: ${text}`);
  assert.match(text, /^[a-z_]+$/, `only a kind: ${text}`);
  assert.equal(await uploads.locator(".error .mk").textContent(), "error kind");
  assert.equal(await page.locator("#detail-note").isVisible(), true);
  await page.close();
});

test("screenshots at phone and laptop widths (--screenshots)", { skip: !SCREENSHOTS }, async () => {
  // Some history with a failure in it makes the strips worth looking at.
  fs.unlinkSync(path.join(dir, "heartbeat"));
  await sleep(3 * INTERVAL_MS);
  fs.writeFileSync(path.join(dir, "heartbeat"), "beat\n");
  await sleep(8 * INTERVAL_MS);
  fs.mkdirSync(SHOTS_DIR, { recursive: true });
  for (const [name, viewport, fullPage] of [
    ["laptop", { width: 1366, height: 900 }, false],
    ["phone", { width: 390, height: 844 }, true],
  ]) {
    const { page } = await openPage(`${base}/`, viewport, name);
    await waitStatus(page, "heartbeat", "up", 10_000);
    await nextUpdate(page);
    const file = path.join(SHOTS_DIR, `berth-status-${name}.png`);
    await page.screenshot({ path: file, fullPage });
    console.log(`# wrote ${file}`);
    await page.close();
  }
});

test("no console errors, page errors or dialogs on any page", () => {
  assert.deepEqual(problems, []);
});
