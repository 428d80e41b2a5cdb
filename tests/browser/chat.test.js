#!/usr/bin/env node
/* The web chat page (server/www) in real headless Chromium against a real
 * parleyd, which serves the page itself (GET /).
 *
 *   PARLEYD=build/server/parleyd node tests/browser/chat.test.js
 *
 * Environment:
 *   PARLEYD    the parleyd binary (default: the first of build-web, build,
 *              build-it, build-asan under the repository that has one)
 *   PARLEY_WWW the web root the hub serves (default: server/www of this tree)
 *   CHROMIUM   the browser (default /usr/bin/chromium, Debian's package)
 *   ARTIFACTS  where screenshots and the hub's log go
 *              (default /tmp/parley-browser-artifacts)
 *
 * Prints one line per check and closes with "N passed, N failed"; exits 1
 * when anything failed. The whole run is bounded (TEST_TIMEOUT_S, 180 s).
 */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const {
  ARTIFACTS, WWW, check, note, sleep, run, freePort, httpRequest, sha256, Hub, launchBrowser, newPage: openPage,
  shown, waitFor, waitText, waitConn, waitPresence, signIn, join, say, noDuplicates, count,
} = require('./lib');

const NODE = 'test.example';
const TOPIC = 'forum/test';
const TEST_TIMEOUT_S = Number(process.env.TEST_TIMEOUT_S || 180);
const TOKENS = { alice: 'alice-secret-token', carol: 'carol-secret-token' };
const ALICE = 'alice@' + NODE, CAROL = 'carol@' + NODE, ANON = 'anonymous@' + NODE;
const REMOTE = 'bogota.example';

/* The hub's config: node test.example, tokens for alice and carol. */
function hubConfig() {
  const user = (name) => ({
    user: name, token_sha256: sha256(TOKENS[name]),
    subscribe: ['#'], publish: ['forum/#'],
  });
  return {
    node: NODE,
    log_level: 'info',
    history: { length: 1000 },
    http: { root: WWW },
    auth: {
      anonymous: { subscribe: ['forum/#'], publish: [] },
      tokens: [user('alice'), user('carol')],
    },
    limits: {
      max_frame_bytes: 65536, max_subscriptions: 256, max_queue_bytes: 4194304,
      // Low per-connection rate so the page's rate-limit feedback can be
      // seen; the HTTP publishes of the test are few and spaced.
      publish_per_second: 4, publish_burst: 8, token_publish_per_second: 1000,
      max_connections: 256, max_errors: 1000,
    },
  };
}

/* ------------------------------------------------------------ the scenario */

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) if (/\.(png|log)$/.test(f)) fs.rmSync(path.join(ARTIFACTS, f));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'parley-browser-'));
  const hub = new Hub({
    port: await freePort(), config: hubConfig(),
    configPath: path.join(dir, 'parleyd.json'), logPath: path.join(ARTIFACTS, 'parleyd.log'),
  });
  note('parleyd ' + hub.bin + ' on port ' + hub.port + ', web root ' + WWW + ', artifacts ' + ARTIFACTS);
  let browser = null;
  const cleanup = () => { hub.kill(); };
  process.on('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { cleanup(); process.exit(1); });

  try {
    await hub.start();
    const page0 = await httpRequest(hub.base + '/');
    check(page0.status === 200 && /text\/html/.test(page0.headers['content-type'] || '') &&
      page0.text.includes('app.js'), 'the hub serves the chat page at GET /', page0.status);
    for (const f of ['app.js', 'style.css', 'favicon.svg']) {
      const r = await httpRequest(hub.base + '/' + f);
      check(r.status === 200, 'the hub serves /' + f, r.status);
    }

    // Backlog, published before anyone is on the page.
    const backlog = ['Welcome to the forum', 'Agenda: item <1> & item "2"'];
    for (const b of backlog) await hub.publish(TOKENS.alice, TOPIC, b);
    await hub.publish(TOKENS.alice, TOPIC, { kind: 'update', value: 3 });

    browser = await launchBrowser();
    note('browser ' + browser.version());

    const problems = []; // uncaught errors, CSP violations, requests elsewhere
    const hostOk = (u) => {
      try {
        const x = new URL(u);
        return x.host === '127.0.0.1:' + hub.port || x.protocol === 'data:' || x.protocol === 'about:';
      } catch (e) { return false; }
    };
    const newPage = (name, viewport) => openPage(browser, name, viewport, hostOk, problems);

    const A = await newPage('alice', { width: 1280, height: 800 });
    const C = await newPage('carol', { width: 390, height: 844 });
    const N = await newPage('anonymous', { width: 1280, height: 800 });
    const alice = A.page, carol = C.page, anon = N.page;

    // The anonymous page's WebSocket goes through a transparent proxy in
    // the test, which can add a message as if it came from another node
    // (a real federation needs two hubs and certificates; the hub's part of
    // it is tested elsewhere).
    let anonWs = null, lastCursor = null;
    await anon.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      anonWs = ws;
      server.onMessage((m) => {
        try { const f = JSON.parse(m); if (f.op === 'msg') lastCursor = f.cursor; } catch (e) { /* */ }
        ws.send(m);
      });
      ws.onMessage((m) => server.send(m));
    });

    // ---- alice: loads the page, signs in, joins, sees the backlog.
    await alice.goto(hub.base + '/');
    check(await waitConn(alice, 'open'), 'alice: the page connects to the hub (connection state "open")');
    check((await alice.textContent('#conn-text')) === 'Connected', 'alice: the connection state says Connected');
    check(await waitFor(alice, 'node', (n) => document.getElementById('node-name').textContent === n, NODE),
      'alice: the page names this hub\'s node');
    check(await signIn(alice, TOKENS.alice, ALICE), 'alice: signs in with her token');
    check(await alice.evaluate(() => Object.keys(sessionStorage).some((k) => k.startsWith('parley.token'))),
      'alice: the token is kept in sessionStorage');
    await join(alice, TOPIC);
    check(await waitText(alice, backlog[1]), 'alice: joining shows the backlog');
    let am = await shown(alice);
    check(am.length === 3 && am[0].text === backlog[0] && am[1].text === backlog[1],
      'alice: the backlog is in order, the HTML-like text shown as it is', JSON.stringify(am.map((m) => m.text)));
    check(am[2] && am[2].text.includes('"kind": "update"'), 'alice: a non-text body is shown as JSON', am[2] && am[2].text);
    check(am.every((m) => m.from === ALICE && m.origin === NODE && !m.remote),
      'alice: each message shows its sender user@node and its node, not marked as federated');
    check(am.every((m) => /\d/.test(m.time) && Math.abs(Date.parse(m.datetime) - Date.now()) < 120000),
      'alice: each message shows its time', JSON.stringify(am.map((m) => m.time + ' ' + m.datetime)));
    check(await alice.evaluate(() => {
      const l = document.querySelector('#panels .panel:not([hidden]) ol.messages');
      return l.getAttribute('role') === 'log' && l.getAttribute('aria-live') === 'polite';
    }), 'alice: the message list is an aria-live log');
    check(await waitPresence(alice, [ALICE], true), 'alice: presence lists herself');

    // ---- carol, at phone width, with the keyboard alone.
    await carol.goto(hub.base + '/');
    check(await waitConn(carol, 'open'), 'carol: the page connects');
    await carol.keyboard.press('Tab'); // skip link
    let reached = false;
    for (let i = 0; i < 12 && !reached; i++) {
      reached = await carol.evaluate(() => document.activeElement && document.activeElement.id === 'token-input');
      if (!reached) await carol.keyboard.press('Tab');
    }
    check(reached, 'carol: the token field is reached with Tab');
    await carol.keyboard.type(TOKENS.carol);
    await carol.keyboard.press('Enter');
    check(await waitFor(carol, 'signed in', (w) => document.getElementById('whoami').textContent === 'Signed in as ' + w, CAROL),
      'carol: signs in with the keyboard');
    reached = false;
    for (let i = 0; i < 12 && !reached; i++) {
      await carol.keyboard.press('Tab');
      reached = await carol.evaluate(() => document.activeElement && document.activeElement.id === 'join-input');
    }
    check(reached, 'carol: the join field is reached with Tab');
    await carol.keyboard.type(TOPIC);
    await carol.keyboard.press('Enter');
    check(await waitText(carol, backlog[1]), 'carol: joining shows the backlog');
    check(await carol.evaluate(() => document.activeElement && document.activeElement.id === 'composer-text'),
      'carol: after joining, the focus is in the message box');
    check(await waitPresence(carol, [ALICE, CAROL], true), 'carol: presence lists alice and carol');
    check(await waitPresence(alice, [ALICE, CAROL], true), 'alice: presence now lists carol too');

    // ---- messages both ways.
    await say(alice, 'Hello from alice');
    check(await waitText(carol, 'Hello from alice'), 'carol sees alice\'s message live');
    check(await waitText(alice, 'Hello from alice'), 'alice sees her own message');
    check((await alice.inputValue('#composer-text')) === '', 'alice: the message box is emptied once sent');
    await carol.keyboard.type('Hi alice, carol here');
    await carol.keyboard.press('Enter');
    check(await waitText(alice, 'Hi alice, carol here'), 'alice sees carol\'s message (typed with the keyboard alone)');
    // Alice's page seeing it says nothing of carol's own page: her echo may come later.
    check(await waitText(carol, 'Hi alice, carol here'), 'carol sees her own message');
    let cm = await shown(carol);
    const fromCarol = cm.find((m) => m.text === 'Hi alice, carol here');
    check(fromCarol && fromCarol.from === CAROL && fromCarol.origin === NODE, 'carol\'s message shows carol@node and the node');

    // ---- hostile text is shown as text.
    const evil = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b>bold</b> & <i>"q"</i>';
    await say(alice, evil);
    check(await waitText(carol, evil), 'carol sees the <script>/HTML message as plain text');
    check(await waitText(alice, evil), 'alice sees the <script>/HTML message as plain text');
    for (const [name, p] of [['alice', alice], ['carol', carol]]) {
      const r = await p.evaluate(() => ({
        pwned: window.__pwned,
        tags: document.querySelectorAll('#panels script, #panels img, #panels b, #panels i').length,
      }));
      check(r.pwned === undefined && r.tags === 0, name + ': no script ran and no element was made from message text', JSON.stringify(r));
    }

    // ---- anonymous: reads, cannot post, sees a clear error.
    await anon.goto(hub.base + '/');
    check(await waitConn(anon, 'open'), 'anonymous: the page connects');
    check((await anon.textContent('#whoami')) === 'Anonymous', 'anonymous: the page says Anonymous');
    await join(anon, TOPIC);
    check(await waitText(anon, 'Hi alice, carol here'), 'anonymous: may read the channel, backlog included');
    await say(anon, 'anonymous wants to talk');
    check(await waitFor(anon, 'forbidden', () => {
      const f = document.getElementById('composer-feedback');
      return !f.hidden && /not allowed/i.test(f.textContent) && /sign in/i.test(f.textContent);
    }), 'anonymous: posting shows a visible "not allowed, sign in" error');
    check(await anon.isVisible('#composer-feedback'), 'anonymous: the error is visible');
    check(await anon.getAttribute('#composer-feedback', 'role') === 'alert', 'anonymous: the error is announced (role=alert)');
    check((await anon.inputValue('#composer-text')) === 'anonymous wants to talk', 'anonymous: the refused text stays in the box');
    check(await waitPresence(alice, [ANON], true), 'alice: presence lists the anonymous reader');

    // A message from another node (origin != this hub's node) is marked.
    anonWs.send(JSON.stringify({
      op: 'msg', topic: TOPIC, mid: 'remote-' + Date.now().toString(36), origin: REMOTE,
      from: 'dana@' + REMOTE, ts: Date.now(), cursor: lastCursor, body: 'Greetings from Bogota',
    }));
    check(await waitText(anon, 'Greetings from Bogota'), 'anonymous: a message from another node is shown');
    const nm = await shown(anon);
    const remote = nm.find((m) => m.text === 'Greetings from Bogota');
    check(remote && remote.remote && remote.origin.includes(REMOTE) && remote.from === 'dana@' + REMOTE,
      'a message from another node is visibly marked with its node', JSON.stringify(remote));
    check(nm.filter((m) => m.remote).length === 1, 'messages of this node are not marked as federated');

    // ---- rate limited: carol sends a burst.
    await carol.evaluate(() => {
      const t = document.getElementById('composer-text');
      const f = document.getElementById('composer');
      for (let i = 0; i < 16; i++) { t.value = 'burst ' + i; f.requestSubmit(); }
    });
    check(await waitFor(carol, 'rate limited', () => {
      const f = document.getElementById('composer-feedback');
      return !f.hidden && /rate limit/i.test(f.textContent);
    }), 'carol: a burst over the rate limit shows a visible "rate limited" message');
    await sleep(300);

    // ---- layout and labels.
    for (const [name, p, w] of [['alice', alice, 1280], ['carol', carol, 390]]) {
      const r = await p.evaluate(() => ({
        width: document.documentElement.scrollWidth,
        unlabelled: Array.from(document.querySelectorAll('input, textarea')).filter((e) => !e.labels || e.labels.length === 0).map((e) => e.id),
      }));
      check(r.width <= w, name + ': nothing overflows the ' + w + ' px width', r.width);
      check(r.unlabelled.length === 0, name + ': every input has a label', r.unlabelled.join(','));
    }
    await alice.screenshot({ path: path.join(ARTIFACTS, 'desktop-alice.png') });
    await carol.screenshot({ path: path.join(ARTIFACTS, 'phone-carol.png') });
    await anon.screenshot({ path: path.join(ARTIFACTS, 'desktop-anonymous.png') });
    await anon.setViewportSize({ width: 390, height: 844 });
    await sleep(100);
    check(await anon.evaluate(() => document.documentElement.scrollWidth) <= 390,
      'anonymous: nothing overflows the 390 px width (sign-in form shown)');
    await anon.screenshot({ path: path.join(ARTIFACTS, 'phone-anonymous.png') });
    await anon.setViewportSize({ width: 1280, height: 800 });

    // ---- a network drop: carol goes offline, misses a message, comes back.
    await C.ctx.setOffline(true);
    check(await waitFor(carol, 'offline', () => document.getElementById('conn').dataset.state !== 'open'),
      'carol: going offline shows the connection as down');
    const offText = await carol.textContent('#conn-text');
    check(/offline|reconnect/i.test(offText), 'carol: the state says so in words', offText);
    await sleep(300);
    await hub.publish(TOKENS.alice, TOPIC, 'While carol was offline');
    check(await waitText(alice, 'While carol was offline'), 'alice sees the message sent while carol is offline');
    await C.ctx.setOffline(false);
    check(await waitConn(carol, 'open'), 'carol: back online, the page reconnects by itself');
    check(await waitText(carol, 'While carol was offline'), 'carol: the missed message appears after reconnecting');
    cm = await shown(carol);
    check(noDuplicates(cm) && count(cm, 'Hello from alice') === 1 && count(cm, 'While carol was offline') === 1,
      'carol: resuming from the last message seen shows nothing twice');
    check(await carol.evaluate(() => document.querySelectorAll('#panels li.notice.gap').length === 0),
      'carol: no gap is reported when the hub still had everything');
    check(await waitPresence(carol, [ALICE, CAROL], true), 'carol: presence is back after reconnecting');

    // ---- the hub restarts.
    const beforeA = (await shown(alice)).length;
    const ex = await hub.stop();
    check(ex && ex.code === 0, 'parleyd exits 0 on SIGTERM', JSON.stringify(ex));
    check(await waitFor(alice, 'down', () => document.getElementById('conn').dataset.state !== 'open'),
      'alice: the connection state shows the hub is gone');
    const downText = await alice.textContent('#conn-text');
    check(/reconnect/i.test(downText), 'alice: the state says it is reconnecting', downText);
    await alice.screenshot({ path: path.join(ARTIFACTS, 'desktop-alice-hub-down.png') });
    await sleep(500);
    await hub.start();
    for (const [name, p] of [['alice', alice], ['carol', carol], ['anonymous', anon]]) {
      check(await waitConn(p, 'open', 20000), name + ': reconnects by itself after the hub restarts');
    }
    check(await waitFor(alice, 'gap', () => document.querySelectorAll('#panels li.notice.gap').length === 1),
      'alice: the channel says messages may be missing (history_gap from the restarted hub)');
    check((await alice.textContent('#whoami')) === 'Signed in as ' + ALICE, 'alice: still signed in after the restart');
    check(await waitPresence(alice, [ALICE, CAROL, ANON], true), 'alice: presence is rebuilt after the restart');
    await hub.publish(TOKENS.alice, TOPIC, 'After the restart');
    for (const [name, p] of [['alice', alice], ['carol', carol], ['anonymous', anon]]) {
      check(await waitText(p, 'After the restart'), name + ': sees a message published after the restart');
    }
    await say(carol, 'carol is back');
    check(await waitText(alice, 'carol is back'), 'alice sees carol\'s message after the restart');
    await sleep(300);
    for (const [name, p] of [['alice', alice], ['carol', carol], ['anonymous', anon]]) {
      const l = await shown(p);
      check(noDuplicates(l) && count(l, 'After the restart') === 1 && count(l, 'Hello from alice') === 1 &&
        count(l, backlog[0]) === 1, name + ': nothing shown twice after the restart', l.length);
    }
    am = await shown(alice);
    check(am.length === beforeA + 2, 'alice: exactly the two new messages were added', am.length + ' vs ' + beforeA);

    // ---- a reload keeps the session: signed in, channel rejoined.
    await carol.reload();
    check(await waitFor(carol, 'signed in', (w) => document.getElementById('whoami').textContent === 'Signed in as ' + w, CAROL),
      'carol: after a reload she is still signed in (sessionStorage)');
    check(await waitText(carol, 'carol is back'), 'carol: after a reload the channel is rejoined with its backlog');

    // ---- signing out.
    await alice.click('#signout');
    check(await waitFor(alice, 'anon', () => document.getElementById('whoami').textContent === 'Anonymous'),
      'alice: signing out makes her anonymous');
    check(await alice.evaluate(() => !Object.keys(sessionStorage).some((k) => k.startsWith('parley.token'))),
      'alice: signing out forgets the token');
    check(await waitConn(alice, 'open'), 'alice: still connected (anonymously) after signing out');
    check(await waitPresence(carol, [ALICE], false), 'carol: alice has left the presence list');
    await signIn(alice, TOKENS.alice, ALICE);
    check(await waitPresence(carol, [ALICE], true), 'carol: alice is back in the presence list after signing in again');

    // ---- several channels: a pattern, unread counts, leaving; bad input.
    await join(alice, 'forum//x');
    check(await waitFor(alice, 'join error', () => {
      const e = document.getElementById('join-error');
      return !e.hidden && /empty segment/.test(e.textContent);
    }), 'alice: an invalid channel name is refused with a visible reason');
    await join(alice, 'forum/#');
    check(await waitText(alice, 'carol is back'), 'alice: a pattern channel shows the backlog of its topics');
    const pat = await alice.evaluate(() => ({
      title: document.getElementById('room-title').textContent,
      topics: Array.from(document.querySelectorAll('#panels .panel:not([hidden]) li.msg .topic')).map((e) => e.textContent),
      disabled: document.getElementById('composer-text').disabled,
      channels: Array.from(document.querySelectorAll('#channel-list button.channel')).map((b) => b.dataset.filter),
    }));
    check(pat.title === 'forum/#' && pat.topics.length > 0 && pat.topics.every((t) => t === TOPIC),
      'alice: the pattern channel is shown, each message with its topic', JSON.stringify(pat));
    check(pat.disabled, 'alice: the message box is disabled in a pattern channel (nowhere to post)');
    check(JSON.stringify(pat.channels) === JSON.stringify([TOPIC, 'forum/#']), 'alice: both channels are listed', pat.channels);
    await alice.click('#channel-list button.channel[data-filter="' + TOPIC + '"]');
    await say(carol, 'For both channels');
    check(await waitText(alice, 'For both channels'), 'alice: back in ' + TOPIC + ', carol\'s new message shows');
    check(await waitFor(alice, 'unread', () => {
      const b = document.querySelector('#channel-list button.channel[data-filter="forum/#"] .unread');
      return b && !b.hidden && b.textContent === '1';
    }), 'alice: the pattern channel counts it as 1 unread');
    check((await alice.getAttribute('#channel-list button.channel[data-filter="forum/#"]', 'aria-label')) === 'forum/#, 1 unread',
      'alice: the unread count is in the channel button\'s label');
    await join(anon, 'private/room');
    check(await waitFor(anon, 'forbidden sub', () => Array.from(
      document.querySelectorAll('#panels .panel:not([hidden]) li.notice.error')).some((n) => /may not read/.test(n.textContent))),
    'anonymous: joining a channel it may not read says so in the channel');
    await anon.click('#leave');
    check(await anon.evaluate(() => document.querySelectorAll('#channel-list button.channel').length === 1 &&
      document.getElementById('room-title').textContent === 'forum/test'), 'anonymous: leaving a channel removes it');

    await alice.screenshot({ path: path.join(ARTIFACTS, 'desktop-alice-after-restart.png') });
    await carol.screenshot({ path: path.join(ARTIFACTS, 'phone-carol-after-restart.png') });
    await anon.emulateMedia({ colorScheme: 'dark' });
    await anon.screenshot({ path: path.join(ARTIFACTS, 'desktop-anonymous-dark.png') });

    check(problems.length === 0, 'no uncaught error, CSP violation, failed request or request outside the hub', problems.join(' | '));
  } catch (e) {
    check(false, 'the scenario ran to its end', e && e.stack ? e.stack : String(e));
    if (/REFUSED/i.test(String(e))) {
      // Was the hub still there? (pid alive, port listening)
      note('hub pid ' + (hub.proc && hub.proc.pid) + ' exit ' + (hub.proc && hub.proc.exitCode) +
        ' signal ' + (hub.proc && hub.proc.signalCode));
      try {
        note(require('child_process').execFileSync('ss', ['-ltnp', 'sport = :' + hub.port]).toString().trim());
      } catch (e2) { /* no ss */ }
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
    const ex = await hub.stop().catch(() => null);
    if (ex && ex.code !== 0) check(false, 'parleyd exits 0 at the end', JSON.stringify(ex));
    fs.rmSync(dir, { recursive: true, force: true });
  }
  note('screenshots and hub log in ' + ARTIFACTS);
}

run(main, TEST_TIMEOUT_S, (failed) => {
  if (failed) note('the hub\'s log: ' + path.join(ARTIFACTS, 'parleyd.log'));
});
