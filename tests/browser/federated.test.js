#!/usr/bin/env node
/* The web chat page (server/www) across two federated parleyd nodes, in
 * real headless Chromium: alice on a.example's page, carol on b.example's.
 *
 *   PARLEYD=build/server/parleyd node tests/browser/federated.test.js
 *
 * Both nodes run on loopback ports with certificates made at test time by
 * deploy/gen-certs.sh in a temporary directory, federated both ways on
 * forum/#; each serves the page itself (GET /).
 *
 * Environment:
 *   PARLEYD           the parleyd binary (default: as chat.test.js)
 *   PARLEY_SOURCE_DIR the source tree, for deploy/gen-certs.sh (default:
 *                     two levels up)
 *   PARLEY_WWW        the web root the hubs serve (default: server/www)
 *   CHROMIUM          the browser (default /usr/bin/chromium)
 *   ARTIFACTS         screenshots and the hubs' logs go to
 *                     $ARTIFACTS/federated (default
 *                     /tmp/parley-browser-artifacts/federated)
 *   TEST_TIMEOUT_S    bound of the whole run (default 200)
 *
 * Prints one line per check and closes with "N passed, N failed"; exits 1
 * when anything failed.
 */
'use strict';

const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const {
  ROOT, ARTIFACTS, WWW, check, note, sleep, run, freePort, httpRequest, sha256, Hub, launchBrowser, newPage,
  onlyHost, shown, waitFor, waitText, waitConn, waitPresence, signIn, join, say, noDuplicates, count,
} = require('./lib');

const SOURCE_DIR = path.resolve(process.env.PARLEY_SOURCE_DIR || ROOT);
const GEN_CERTS = path.join(SOURCE_DIR, 'deploy', 'gen-certs.sh');
const OUT = path.join(ARTIFACTS, 'federated');
const TEST_TIMEOUT_S = Number(process.env.TEST_TIMEOUT_S || 200);
const NODE_A = 'a.example', NODE_B = 'b.example';
const TOPIC = 'forum/federation';
const TOKENS = { alice: 'alice-token-on-a', carol: 'carol-token-on-b' };
const ALICE = 'alice@' + NODE_A, CAROL = 'carol@' + NODE_B;
const LINK_UP_MS = 20000;

/* The config of one node: its user (token), its federation port, and the
 * other node as its one peer, both ways on forum/#. */
function nodeConfig({ node, user, fedPort, peer, peerFedPort, certs, dir }) {
  return {
    node,
    log_level: 'info',
    history: { length: 1000 },
    http: { root: WWW },
    auth: {
      anonymous: { subscribe: ['forum/#'], publish: [] },
      tokens: [{ user, token_sha256: sha256(TOKENS[user]), subscribe: ['#'], publish: ['forum/#'] }],
    },
    federation: {
      listen: { host: '127.0.0.1', port: fedPort },
      ca: path.join(certs, 'ca.pem'),
      cert: path.join(certs, node + '.pem'),
      key: path.join(certs, node + '.key'),
      state_file: path.join(dir, node + '-fed-state.json'),
      // Quick pings and redials, so that a restart heals within seconds.
      ping_interval_ms: 1000,
      dead_after_ms: 5000,
      backoff_min_ms: 50,
      backoff_max_ms: 1000,
      peers: [{
        name: peer, url: 'wss://127.0.0.1:' + peerFedPort + '/fed',
        export: ['forum/#'], import: ['forum/#'],
      }],
    },
  };
}

/* The state of hub's link with peer in GET /healthz (null: none). */
async function peerState(hub, peer) {
  try {
    const h = await hub.healthz();
    const p = ((h.federation || {}).peers || []).find((x) => x && x.name === peer);
    return p ? p.state : null;
  } catch (e) {
    return 'unreachable (' + e.message + ')';
  }
}

async function waitPeer(hub, peer, want, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let st;
  while (Date.now() < deadline) {
    st = await peerState(hub, peer);
    if (st === want) return { ok: true, st };
    await sleep(50);
  }
  return { ok: false, st };
}

/* Polls until pred() is true (bounded); returns the last value. */
async function until(fn, pred, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let v;
  for (;;) {
    try { v = await fn(); } catch (e) { v = undefined; }
    if (pred(v) || Date.now() >= deadline) return v;
    await sleep(100);
  }
}

/* Who the presence list shows, and whether each is marked remote. */
function presenceMarks(page) {
  return page.evaluate(() => Array.from(document.querySelectorAll('#presence-list li.person')).map((li) => ({
    who: li.querySelector('.who').textContent, remote: li.classList.contains('remote'),
  })));
}

/* The origin tag of the shown message with this text: text, title, and
 * the screen-reader words before it. */
function originTag(page, text) {
  return page.evaluate((t) => {
    const li = Array.from(document.querySelectorAll('#panels .panel:not([hidden]) li.msg'))
      .find((x) => x.querySelector('.body').textContent === t);
    if (!li) return null;
    return {
      text: li.querySelector('.origin').textContent,
      title: li.querySelector('.origin').title,
      sr: li.querySelector('.origin-sr').textContent,
      remote: li.classList.contains('remote'),
    };
  }, text);
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  for (const f of fs.readdirSync(OUT)) if (/\.(png|log)$/.test(f)) fs.rmSync(path.join(OUT, f));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-browser-fed-'));
  const certs = path.join(dir, 'certs');
  const hubs = [];
  let browser = null;
  const cleanup = () => { for (const h of hubs) h.kill(); };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup(); process.exit(1); });

  try {
    // ---- certificates, made now by deploy/gen-certs.sh.
    const gen = execFileSync('bash', [GEN_CERTS, certs, NODE_A, NODE_B], { timeout: 60000, stdio: ['ignore', 'pipe', 'pipe'] });
    note(gen.toString().trim().split('\n').join(' | '));
    check(['ca.pem', NODE_A + '.pem', NODE_A + '.key', NODE_B + '.pem', NODE_B + '.key']
      .every((f) => fs.existsSync(path.join(certs, f))), 'gen-certs.sh made a CA and certificates for ' + NODE_A + ' and ' + NODE_B);

    // ---- two nodes, each the other's peer.
    const [portA, portB, fedA, fedB] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const A = new Hub({
      port: portA, name: NODE_A,
      config: nodeConfig({ node: NODE_A, user: 'alice', fedPort: fedA, peer: NODE_B, peerFedPort: fedB, certs, dir }),
      configPath: path.join(dir, NODE_A + '.json'), logPath: path.join(OUT, 'parleyd-' + NODE_A + '.log'),
    });
    const B = new Hub({
      port: portB, name: NODE_B,
      config: nodeConfig({ node: NODE_B, user: 'carol', fedPort: fedB, peer: NODE_A, peerFedPort: fedA, certs, dir }),
      configPath: path.join(dir, NODE_B + '.json'), logPath: path.join(OUT, 'parleyd-' + NODE_B + '.log'),
    });
    hubs.push(A, B);
    note('parleyd ' + A.bin + '; ' + NODE_A + ' on ' + portA + ' (federation ' + fedA + '), ' +
      NODE_B + ' on ' + portB + ' (federation ' + fedB + '); web root ' + WWW + '; artifacts ' + OUT);
    await A.start();
    await B.start();
    for (const [h, peer] of [[A, NODE_B], [B, NODE_A]]) {
      const r = await waitPeer(h, peer, 'up', LINK_UP_MS);
      check(r.ok, h.name + ': /healthz shows the link with ' + peer + ' up', r.st);
    }
    for (const h of [A, B]) {
      const r = await httpRequest(h.base + '/');
      check(r.status === 200 && /text\/html/.test(r.headers['content-type'] || '') && r.text.includes('app.js'),
        h.name + ': serves the chat page at GET /', r.status);
    }

    // ---- a backlog published on A before anyone is on a page.
    const backlog = ['Welcome to the federated forum', 'Agenda from A: item <1> & item "2"'];
    const backlogMids = [];
    for (const b of backlog) backlogMids.push(await A.publish(TOKENS.alice, TOPIC, b));
    const histB = await until(() => B.history(TOKENS.carol, TOPIC, 50),
      (l) => Array.isArray(l) && backlogMids.every((m) => l.some((x) => x.mid === m)), 10000);
    check(Array.isArray(histB) && backlogMids.every((m) => histB.filter((x) => x.mid === m).length === 1),
      NODE_B + ': the backlog published on ' + NODE_A + ' is in its history once (GET /v1/history)',
      JSON.stringify(histB && histB.map((x) => x.mid)));

    // ---- the browser: alice at desktop width on A, carol at phone width on B.
    browser = await launchBrowser();
    note('browser ' + browser.version());
    const problems = [];
    const PA = await newPage(browser, 'alice', { width: 1280, height: 800 }, onlyHost(A.base), problems);
    const PB = await newPage(browser, 'carol', { width: 390, height: 844 }, onlyHost(B.base), problems);
    const alice = PA.page, carol = PB.page;

    // Every msg frame carol's page receives, to count them by mid.
    const carolFrames = [];
    carol.on('websocket', (ws) => ws.on('framereceived', (f) => {
      try {
        const m = JSON.parse(f.payload);
        if (m && m.op === 'msg') carolFrames.push({ mid: m.mid, body: m.body, at: Date.now() });
      } catch (e) { /* not JSON */ }
    }));

    for (const [p, h, token, who] of [[alice, A, TOKENS.alice, ALICE], [carol, B, TOKENS.carol, CAROL]]) {
      const name = who.split('@')[0];
      await p.goto(h.base + '/');
      check(await waitConn(p, 'open'), name + ': the page on ' + h.name + ' connects');
      check(await waitFor(p, 'node', (n) => document.getElementById('node-name').textContent === n, h.name),
        name + ': the page names its node, ' + h.name);
      check(await signIn(p, token, who), name + ': signs in with her token on ' + h.name + ' as ' + who);
      await join(p, TOPIC);
      check(await waitText(p, backlog[1]), name + ': joining ' + TOPIC + ' shows the backlog published on ' + NODE_A);
    }
    let am = await shown(alice);
    check(am.length === 2 && am.every((m, i) => m.text === backlog[i] && m.from === ALICE && m.origin === NODE_A && !m.remote),
      'alice (A): the backlog is in order, from ' + ALICE + ', of this node, not marked federated', JSON.stringify(am));
    let cm = await shown(carol);
    check(cm.length === 2 && cm.every((m, i) => m.text === backlog[i] && m.mid === backlogMids[i]),
      'carol (B): the backlog from A is in order, each message once', JSON.stringify(cm.map((m) => m.text)));
    check(cm.every((m) => m.remote && m.from === ALICE && m.origin === 'from ' + NODE_A),
      'carol (B): the backlog is marked as federated, "from ' + NODE_A + '", sender ' + ALICE,
      JSON.stringify(cm.map((m) => [m.from, m.origin, m.remote])));

    // ---- presence: both users on each page (presence is federated between
    // direct peers); the other node's user is marked.
    for (const [name, p, other] of [['alice', alice, CAROL], ['carol', carol, ALICE]]) {
      check(await waitPresence(p, [ALICE, CAROL], true), name + ': presence lists ' + ALICE + ' and ' + CAROL,
        JSON.stringify(await presenceMarks(p)));
      const marks = await presenceMarks(p);
      check(marks.length === 2 && marks.every((x) => x.remote === (x.who === other)),
        name + ': in presence, only ' + other + ' (another node) is marked remote', JSON.stringify(marks));
    }

    // ---- messages both ways.
    const fromA = 'Hello B, this is alice on A';
    await say(alice, fromA);
    check(await waitText(carol, fromA), 'carol (B) sees alice\'s message live');
    check(await waitText(alice, fromA), 'alice (A) sees her own message');
    let tag = await originTag(carol, fromA);
    check(tag && tag.remote && tag.text === 'from ' + NODE_A && /federated/i.test(tag.title) && /federated/i.test(tag.sr),
      'carol (B): alice\'s message is marked as federated from ' + NODE_A + ' (visibly and for screen readers)', JSON.stringify(tag));
    tag = await originTag(alice, fromA);
    check(tag && !tag.remote && tag.text === NODE_A, 'alice (A): her own message is not marked', JSON.stringify(tag));

    const fromB = 'Hi A, carol on B here';
    await carol.focus('#composer-text');
    await carol.keyboard.type(fromB);
    await carol.keyboard.press('Enter');
    check(await waitText(alice, fromB), 'alice (A) sees carol\'s message live');
    check(await waitText(carol, fromB), 'carol (B) sees her own message');
    tag = await originTag(alice, fromB);
    check(tag && tag.remote && tag.text === 'from ' + NODE_B && /federated/i.test(tag.title),
      'alice (A): carol\'s message is marked as federated from ' + NODE_B, JSON.stringify(tag));
    tag = await originTag(carol, fromB);
    check(tag && !tag.remote && tag.text === NODE_B, 'carol (B): her own message is not marked', JSON.stringify(tag));
    am = await shown(alice);
    const amB = am.find((m) => m.text === fromB);
    check(amB && amB.from === CAROL, 'alice (A): carol\'s message shows ' + CAROL + ' as its sender', JSON.stringify(amB));

    // ---- hostile text from B is shown as text on A.
    const evil = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b>bold</b> & <i>"q"</i>';
    await say(carol, evil);
    check(await waitText(alice, evil), 'alice (A) sees the <script>/HTML message from B as plain text');
    check(await waitText(carol, evil), 'carol (B) sees it as plain text too');
    for (const [name, p] of [['alice', alice], ['carol', carol]]) {
      const r = await p.evaluate(() => ({
        pwned: window.__pwned,
        tags: document.querySelectorAll('#panels script, #panels img, #panels b, #panels i').length,
      }));
      check(r.pwned === undefined && r.tags === 0, name + ': no script ran and no element was made from message text', JSON.stringify(r));
    }
    tag = await originTag(alice, evil);
    check(tag && tag.remote && tag.text === 'from ' + NODE_B, 'alice (A): the hostile message is marked as from ' + NODE_B, JSON.stringify(tag));

    // ---- layout, and screenshots at desktop and phone widths.
    await sleep(200);
    for (const [name, p, w] of [['alice', alice, 1280], ['carol', carol, 390]]) {
      const sw = await p.evaluate(() => document.documentElement.scrollWidth);
      check(sw <= w, name + ': nothing overflows the ' + w + ' px width', sw);
    }
    await alice.screenshot({ path: path.join(OUT, 'desktop-alice-a.png') });
    await carol.screenshot({ path: path.join(OUT, 'phone-carol-b.png') });
    await alice.setViewportSize({ width: 390, height: 844 });
    await carol.setViewportSize({ width: 1280, height: 800 });
    await sleep(200);
    for (const [name, p, w] of [['alice', alice, 390], ['carol', carol, 1280]]) {
      const sw = await p.evaluate(() => document.documentElement.scrollWidth);
      check(sw <= w, name + ': nothing overflows the ' + w + ' px width either', sw);
    }
    await alice.screenshot({ path: path.join(OUT, 'phone-alice-a.png') });
    await carol.screenshot({ path: path.join(OUT, 'desktop-carol-b.png') });
    await alice.setViewportSize({ width: 1280, height: 800 });
    await carol.setViewportSize({ width: 390, height: 844 });

    // ---- node B restarts: SIGTERM, then the same config and state file.
    const beforeB = await shown(carol);
    const ex = await B.stop();
    check(ex && ex.code === 0, NODE_B + ': parleyd exits 0 on SIGTERM', JSON.stringify(ex));
    check(await waitFor(carol, 'down', () => document.getElementById('conn').dataset.state !== 'open'),
      'carol (B): the page shows its hub is gone');
    const downText = await carol.textContent('#conn-text');
    check(/reconnect/i.test(downText), 'carol (B): the state says it is reconnecting', downText);
    const stA = await peerState(A, NODE_B);
    note(NODE_A + ': link with ' + NODE_B + ' now ' + stA);
    check(await waitPresence(alice, [CAROL], false), 'alice (A): ' + CAROL + ' leaves the presence list when ' + NODE_B + ' goes away',
      JSON.stringify(await presenceMarks(alice)));
    check((await alice.evaluate(() => document.getElementById('conn').dataset.state)) === 'open',
      'alice (A): her own connection stays open meanwhile');
    const whileDown = 'Sent on A while B was down';
    const whileDownMid = await A.publish(TOKENS.alice, TOPIC, whileDown);
    check(await waitText(alice, whileDown), 'alice (A) sees the message published while ' + NODE_B + ' is down');
    await carol.screenshot({ path: path.join(OUT, 'phone-carol-b-hub-down.png') });

    fs.appendFileSync(B.logPath, '---- federated.test.js: restart ----\n');
    await B.start();
    for (const [h, peer] of [[A, NODE_B], [B, NODE_A]]) {
      const r = await waitPeer(h, peer, 'up', LINK_UP_MS);
      check(r.ok, h.name + ': /healthz shows the link with ' + peer + ' up again after the restart', r.st);
    }
    check(await waitConn(carol, 'open', 20000), 'carol (B): the page reconnects by itself after ' + NODE_B + ' restarts');
    check((await carol.textContent('#whoami')) === 'Signed in as ' + CAROL, 'carol (B): still signed in after the restart');
    check(await waitPresence(carol, [ALICE, CAROL], true, 15000), 'carol (B): presence is rebuilt with both users',
      JSON.stringify(await presenceMarks(carol)));
    check(await waitPresence(alice, [CAROL], true, 15000), 'alice (A): ' + CAROL + ' is back in the presence list',
      JSON.stringify(await presenceMarks(alice)));
    check(await waitText(carol, whileDown, 15000), 'carol (B): the message published on A while B was down appears after the restart');
    // B kept no history across the restart (it is in memory), so the
    // page's resume from its last cursor is answered history_gap: it says
    // so, once, and takes the latest.
    check(await waitFor(carol, 'gap', () => document.querySelectorAll('#panels li.notice.gap').length === 1),
      'carol (B): the channel says messages may be missing (history_gap from the restarted ' + NODE_B + '), once',
      await carol.evaluate(() => document.querySelectorAll('#panels li.notice.gap').length));

    const after = 'Published on A after B restarted';
    const framesBefore = carolFrames.length;
    const afterMid = await A.publish(TOKENS.alice, TOPIC, after);
    check(await waitText(carol, after), 'carol (B): a message published on A after the restart appears');
    check(await waitText(alice, after), 'alice (A) sees it too');
    await say(carol, 'carol is back on B');
    check(await waitText(alice, 'carol is back on B'), 'alice (A) sees carol\'s message after the restart');
    check(await waitText(carol, 'carol is back on B'), 'carol (B) sees her own message after the restart');
    await sleep(1500); // time for any late duplicate to show up

    cm = await shown(carol);
    check(count(cm, after) === 1, 'carol (B): the message published after the restart is shown once', count(cm, after));
    const sent = carolFrames.slice(framesBefore).filter((f) => f.mid === afterMid).length;
    check(sent === 1, 'carol (B): the hub sent it to the page once (msg frames on the WebSocket)', sent);
    check(noDuplicates(cm) && count(cm, whileDown) === 1 && [...backlog, fromA, fromB, evil].every((t) => count(cm, t) === 1),
      'carol (B): nothing is shown twice after the restart', JSON.stringify(cm.map((m) => m.text)));
    check(cm.length >= beforeB.length + 3, 'carol (B): the earlier messages are still shown, the new ones added',
      cm.length + ' vs ' + beforeB.length + ' before');
    check(cm.filter((m) => m.from === ALICE).every((m) => m.remote && m.origin === 'from ' + NODE_A),
      'carol (B): after the restart, alice\'s messages are still marked as from ' + NODE_A);
    const histB2 = await B.history(TOKENS.carol, TOPIC, 1000);
    check(histB2.filter((x) => x.mid === afterMid).length === 1 && histB2.filter((x) => x.mid === whileDownMid).length === 1,
      NODE_B + ': its history holds each of the two messages once', JSON.stringify(histB2.map((x) => x.body)));
    check(noDuplicates(histB2) && !histB2.some((x) => backlogMids.includes(x.mid)),
      NODE_B + ': after the restart it asked ' + NODE_A + ' only for what it missed (state file): nothing it had was imported again',
      JSON.stringify(histB2.map((x) => x.body)));
    am = await shown(alice);
    check(noDuplicates(am) && count(am, after) === 1 && count(am, 'carol is back on B') === 1 &&
      [...backlog, fromA, fromB, evil, whileDown].every((t) => count(am, t) === 1),
    'alice (A): nothing is shown twice', JSON.stringify(am.map((m) => m.text)));
    check(await alice.evaluate(() => document.querySelectorAll('#panels li.notice.gap').length === 0),
      'alice (A): no gap notice (her hub did not restart)');

    await alice.screenshot({ path: path.join(OUT, 'desktop-alice-a-after-restart.png') });
    await carol.screenshot({ path: path.join(OUT, 'phone-carol-b-after-restart.png') });

    check(problems.length === 0, 'no uncaught error, CSP violation, failed request or request outside the page\'s own hub',
      problems.join(' | '));
  } catch (e) {
    check(false, 'the scenario ran to its end', e && e.stack ? e.stack : String(e));
  } finally {
    if (browser) await browser.close().catch(() => {});
    for (const h of hubs) {
      const ex = await h.stop().catch(() => null);
      if (ex && ex.code !== 0) check(false, h.name + ': parleyd exits 0 at the end', JSON.stringify(ex));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
  for (const n of [NODE_A, NODE_B]) {
    // Not a check: a peer's orderly shutdown is logged as fed_refused
    // "decode error" on the other side (reported as a hub issue).
    let log = '';
    try { log = fs.readFileSync(path.join(OUT, 'parleyd-' + n + '.log'), 'utf8'); } catch (e) { /* none */ }
    const refused = log.split('\n').filter((l) => /event=fed_refused/.test(l));
    if (refused.length) note(n + ' logged ' + refused.length + ' fed_refused: ' + refused.join(' | '));
  }
  note('screenshots and the hubs\' logs in ' + OUT);
}

run(main, TEST_TIMEOUT_S, (failed) => {
  if (failed) note('the hubs\' logs: ' + path.join(OUT, 'parleyd-' + NODE_A + '.log') + ', ' + path.join(OUT, 'parleyd-' + NODE_B + '.log'));
});
