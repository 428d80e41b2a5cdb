/* Shared by the browser tests (chat.test.js, federated.test.js): the
 * check/report counters, a parleyd process with a config of the test's
 * own, one-shot HTTP requests, headless Chromium with the watchers every
 * page gets, and the readers and actions of the chat page (server/www).
 *
 * Each test is its own node process, so the counters here are its own.
 */
'use strict';

const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const net = require('net');
const path = require('path');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.ARTIFACTS || '/tmp/parley-browser-artifacts';
const WWW = path.resolve(process.env.PARLEY_WWW || path.join(ROOT, 'server', 'www'));
const WAIT_MS = 10000; // default bound of one wait in the page

/* ------------------------------------------------------------ reporting */

let passed = 0, failed = 0;

function check(cond, what, detail) {
  if (cond) {
    passed++;
    console.log('ok ' + (passed + failed) + ' - ' + what);
  } else {
    failed++;
    console.log('not ok ' + (passed + failed) + ' - ' + what + (detail !== undefined ? ': ' + detail : ''));
  }
  return !!cond;
}

function note(text) { console.log('# ' + text); }

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

/* Runs main() bounded by timeoutS seconds, then prints "N passed, N
 * failed" and exits (1 when anything failed). onEnd(failed) runs first
 * (not on a timeout). */
function run(main, timeoutS, onEnd) {
  const timer = setTimeout(() => {
    check(false, 'the test finished within ' + timeoutS + ' s');
    console.log(passed + ' passed, ' + failed + ' failed');
    process.exit(1);
  }, timeoutS * 1000);
  main().catch((e) => check(false, 'the test ran', e && e.stack ? e.stack : String(e))).then(() => {
    clearTimeout(timer);
    if (onEnd) onEnd(failed);
    console.log(passed + ' passed, ' + failed + ' failed');
    process.exit(failed ? 1 : 0);
  });
}

/* ------------------------------------------------------------ the hub */

function findParleyd() {
  if (process.env.PARLEYD) return path.resolve(process.env.PARLEYD);
  for (const b of ['build-web', 'build', 'build-it', 'build-asan']) {
    const p = path.join(ROOT, b, 'server', 'parleyd');
    if (fs.existsSync(p)) return p;
  }
  throw new Error('parleyd not found: set PARLEYD=/path/to/parleyd');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/* One HTTP request on a connection of its own (no keep-alive reuse, which
 * races with the server closing an idle connection). Resolves
 * {status, headers, text}. */
function httpRequest(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, timeout: 5000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout: ' + method + ' ' + url)));
    req.on('error', reject);
    req.end(body);
  });
}

function sha256(s) { return crypto.createHash('sha256').update(s).digest('hex'); }

/* A parleyd on 127.0.0.1:port with the given config (listen is set here),
 * written to configPath; its output is appended to logPath. */
class Hub {
  constructor({ port, config, configPath, logPath, name }) {
    this.port = port;
    this.name = name || config.node;
    this.bin = findParleyd();
    this.configPath = configPath;
    this.logPath = logPath;
    this.proc = null;
    this.config = Object.assign({}, config, { listen: { host: '127.0.0.1', port } });
    fs.writeFileSync(this.configPath, JSON.stringify(this.config, null, 2));
  }

  get base() { return 'http://127.0.0.1:' + this.port; }

  async start(readyMs = 10000) {
    const log = fs.openSync(this.logPath, 'a');
    this.proc = spawn(this.bin, ['-c', this.configPath], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.exit = new Promise((resolve) => this.proc.on('exit', (code, sig) => resolve({ code, sig })));
    const deadline = Date.now() + readyMs;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(this.name + ': parleyd exited with ' + this.proc.exitCode + ' (see ' + this.logPath + ')');
      try {
        const r = await httpRequest(this.base + '/healthz');
        if (r.status === 200) return;
      } catch (e) { /* not yet */ }
      await sleep(50);
    }
    throw new Error(this.name + ': parleyd not ready after ' + readyMs / 1000 + ' s');
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return null;
    this.proc.kill('SIGTERM');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 10000);
    const r = await this.exit;
    clearTimeout(t);
    return r;
  }

  kill() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGKILL');
  }

  async healthz() {
    const r = await httpRequest(this.base + '/healthz');
    return JSON.parse(r.text);
  }

  async publish(token, topic, body) {
    const r = await httpRequest(this.base + '/v1/publish', {
      method: 'POST',
      headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
      body: JSON.stringify({ topic, body }),
    });
    let j = {};
    try { j = JSON.parse(r.text); } catch (e) { j = { text: r.text }; }
    if (r.status !== 200 || typeof j.mid !== 'string') {
      throw new Error(this.name + ': POST /v1/publish answered ' + r.status + ' ' + JSON.stringify(j));
    }
    return j.mid;
  }

  /* GET /v1/history?topic=T&last=N: the messages, oldest first. */
  async history(token, topic, last) {
    const r = await httpRequest(this.base + '/v1/history?topic=' + encodeURIComponent(topic) + '&last=' + last, {
      headers: { authorization: 'Bearer ' + token },
    });
    if (r.status !== 200) throw new Error(this.name + ': GET /v1/history answered ' + r.status + ' ' + r.text);
    const j = JSON.parse(r.text);
    return Array.isArray(j) ? j : j.messages;
  }
}

/* ------------------------------------------------------------ the browser */

function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/* A new context and page; anything odd it does is pushed to problems
 * (uncaught errors, CSP violations, HTTP errors, requests or WebSockets to
 * a host for which hostOk(url) is false). */
async function newPage(browser, name, viewport, hostOk, problems) {
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1, serviceWorkers: 'block' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => problems.push(name + ': uncaught ' + e.message));
  page.on('console', (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(name + ': ' + m.text());
  });
  page.on('request', (r) => { if (!hostOk(r.url())) problems.push(name + ': request to ' + r.url()); });
  page.on('response', (r) => { if (r.status() >= 400) problems.push(name + ': ' + r.status() + ' for ' + r.url()); });
  page.on('websocket', (ws) => { if (!hostOk(ws.url())) problems.push(name + ': websocket to ' + ws.url()); });
  return { ctx, page };
}

/* hostOk for newPage: only the hub at base (and data:/about:). */
function onlyHost(base) {
  const host = new URL(base).host;
  return (u) => {
    try {
      const x = new URL(u);
      return x.host === host || x.protocol === 'data:' || x.protocol === 'about:';
    } catch (e) { return false; }
  };
}

/* ------------------------------------------------------------ the page */

/* Messages shown in the page's visible channel, oldest first. */
function shown(page) {
  return page.evaluate(() => Array.from(
    document.querySelectorAll('#panels .panel:not([hidden]) li.msg')).map((li) => ({
    mid: li.dataset.mid,
    from: li.querySelector('.from').textContent,
    origin: li.querySelector('.origin').textContent,
    time: li.querySelector('time') ? li.querySelector('time').textContent : '',
    datetime: li.querySelector('time') ? li.querySelector('time').dateTime : '',
    text: li.querySelector('.body').textContent,
    remote: li.classList.contains('remote'),
  })));
}

async function waitFor(page, what, fn, arg, timeout) {
  try {
    await page.waitForFunction(fn, arg, { timeout: timeout || WAIT_MS, polling: 50 });
    return true;
  } catch (e) {
    return false;
  }
}

function waitText(page, text, timeout) {
  return waitFor(page, 'message ' + text, (t) => Array.from(
    document.querySelectorAll('#panels .panel:not([hidden]) li.msg .body')).some((b) => b.textContent === t),
  text, timeout);
}

function waitConn(page, st, timeout) {
  return waitFor(page, 'connection ' + st, (s) => document.getElementById('conn').dataset.state === s, st, timeout);
}

function presence(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('#presence-list .who')).map((e) => e.textContent));
}

function waitPresence(page, who, present, timeout) {
  return waitFor(page, 'presence', ([w, p]) => {
    const list = Array.from(document.querySelectorAll('#presence-list .who')).map((e) => e.textContent);
    return p ? w.every((x) => list.includes(x)) : w.every((x) => !list.includes(x));
  }, [who, present], timeout);
}

async function signIn(page, token, who) {
  await page.fill('#token-input', token);
  await page.press('#token-input', 'Enter');
  return waitFor(page, 'signed in', (w) => document.getElementById('whoami').textContent === 'Signed in as ' + w, who);
}

async function join(page, topic) {
  await page.fill('#join-input', topic);
  await page.press('#join-input', 'Enter');
}

async function say(page, text) {
  await page.fill('#composer-text', text);
  await page.press('#composer-text', 'Enter');
}

function noDuplicates(list) {
  const mids = list.map((m) => m.mid);
  return new Set(mids).size === mids.length;
}

function count(list, text) { return list.filter((m) => m.text === text).length; }

module.exports = {
  ROOT, CHROMIUM, ARTIFACTS, WWW, WAIT_MS,
  check, note, sleep, run,
  findParleyd, freePort, httpRequest, sha256, Hub,
  launchBrowser, newPage, onlyHost,
  shown, waitFor, waitText, waitConn, presence, waitPresence, signIn, join, say, noDuplicates, count,
};
