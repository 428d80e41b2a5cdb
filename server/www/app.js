/* parley web chat: plain JavaScript, no build step, no external resources.
 *
 * Speaks parley.v1 (docs/protocol.md) over one WebSocket to the hub that
 * served this page (ws(s)://<this host>/ws), or to the hub named by the
 * query parameter ?hub=ws://HOST:PORT/ws (development).
 *
 * - Channels are topics (or patterns) the user joined; the list is kept in
 *   sessionStorage, so a reload rejoins them.
 * - Joining subscribes with "last" (recent backlog); after a reconnect each
 *   channel resubscribes with "since" = the cursor of the last message it
 *   showed, so nothing is missed; messages are also deduplicated by mid.
 *   When the hub answers history_gap (it no longer has everything since
 *   that cursor, e.g. a standalone hub restarted), the channel says so and
 *   resubscribes with "last".
 * - The token is sent with the "auth" op (never in the URL) and kept in
 *   sessionStorage, keyed by the hub URL, so it is never offered to another
 *   hub.
 * - The page publishes a message body as a JSON string. It shows a string
 *   body as text, an object body's "text" string member as text, and any
 *   other body as its JSON.
 * - Message data is only ever put into the page with textContent.
 */
'use strict';

(function () {
  const BACKLOG = 50;            // messages asked for when joining
  const MAX_SHOWN = 500;         // messages kept in a channel's list
  const PING_EVERY_MS = 20000;   // heartbeat while connected
  const PONG_WITHIN_MS = 10000;  // a connection silent that long is dead
  const CONNECT_WITHIN_MS = 10000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;

  /* ------------------------------------------------------------ setup */

  const $ = (id) => document.getElementById(id);
  const el = {
    nodeName: $('node-name'), conn: $('conn'), connText: $('conn-text'), connWhen: $('conn-when'),
    reconnectNow: $('reconnect-now'), whoami: $('whoami'),
    signinForm: $('signin-form'), tokenInput: $('token-input'), signout: $('signout'),
    banner: $('banner'), channelList: $('channel-list'), joinForm: $('join-form'),
    joinInput: $('join-input'), joinError: $('join-error'), roomTitle: $('room-title'),
    leave: $('leave'), presence: $('presence'), presenceList: $('presence-list'),
    presenceCount: $('presence-count'), panels: $('panels'), emptyHint: $('empty-hint'),
    composer: $('composer'), composerText: $('composer-text'), composerLabel: $('composer-label'),
    send: $('send'), feedback: $('composer-feedback'),
  };

  function hubUrl() {
    const q = new URLSearchParams(location.search).get('hub');
    if (q && /^wss?:\/\/[^\s]+$/i.test(q)) return q;
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  }

  const HUB = hubUrl();
  const TOKEN_KEY = 'parley.token ' + HUB;
  const CHANNELS_KEY = 'parley.channels ' + HUB;

  function store(key, value) {
    try {
      if (value === null) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, value);
    } catch (e) { /* storage disabled: the session just isn't kept */ }
  }
  function load(key) {
    try { return sessionStorage.getItem(key); } catch (e) { return null; }
  }

  const state = {
    node: null,          // this hub's node name, once known
    user: null,          // "user@node" when signed in
    token: load(TOKEN_KEY),
    ws: null,
    conn: 'idle',        // idle | connecting | open | waiting | offline
    attempt: 0,
    retryTimer: null, retryAt: 0, countdownTimer: null,
    connectTimer: null, pingTimer: null, pongTimer: null,
    nextId: 1,
    pending: new Map(),  // request id -> {kind, topic, text}
    channels: new Map(), // filter -> channel
    active: null,        // filter of the shown channel
  };

  /* ------------------------------------------------------------ topics */

  function utf8Length(s) { return new TextEncoder().encode(s).length; }

  /* Returns null when f is a valid topic (or a pattern, if allowed), else
   * the reason. Mirrors DESIGN.md "Words". */
  function topicProblem(f) {
    const n = utf8Length(f);
    if (n < 1 || n > 255) return 'A channel name has 1 to 255 bytes.';
    if (/[\u0000-\u001f\u007f-\u009f]/.test(f)) return 'A channel name has no control characters.';
    const segs = f.split('/');
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s === '') return 'A channel name has no empty segment (no leading, trailing or double "/").';
      if (s === '+') continue;
      if (s === '#') {
        if (i !== segs.length - 1) return '"#" may only be the last segment.';
        continue;
      }
      if (s.includes('+') || s.includes('#')) return '"+" and "#" stand alone as a whole segment.';
    }
    return null;
  }

  function isPattern(f) { return f.split('/').some((s) => s === '+' || s === '#'); }

  function matches(filter, topic) {
    const f = filter.split('/'), t = topic.split('/');
    for (let i = 0; i < f.length; i++) {
      if (f[i] === '#') return true;
      if (i >= t.length) return false;
      if (f[i] !== '+' && f[i] !== t[i]) return false;
    }
    return f.length === t.length;
  }

  /* ------------------------------------------------------------ formatting */

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
  });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });

  function formatTime(ts) {
    const d = new Date(ts);
    if (isNaN(d.getTime())) return { short: '?', full: 'unknown time', iso: '' };
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return { short: (sameDay ? timeFmt : dateTimeFmt).format(d), full: fullFmt.format(d), iso: d.toISOString() };
  }

  function bodyText(body) {
    if (typeof body === 'string') return { text: body, json: false };
    if (body && typeof body === 'object' && !Array.isArray(body) && typeof body.text === 'string') {
      return { text: body.text, json: false };
    }
    let s;
    try { s = JSON.stringify(body, null, 2); } catch (e) { s = String(body); }
    return { text: s === undefined ? '' : s, json: true };
  }

  function nodeOf(identity) {
    const at = typeof identity === 'string' ? identity.lastIndexOf('@') : -1;
    return at >= 0 ? identity.slice(at + 1) : null;
  }

  function make(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /* ------------------------------------------------------------ channels */

  function saveChannels() {
    store(CHANNELS_KEY, JSON.stringify(Array.from(state.channels.keys())));
  }

  function addChannel(filter, activate) {
    let ch = state.channels.get(filter);
    if (!ch) {
      ch = {
        filter, pattern: isPattern(filter),
        cursor: null, mids: new Set(), shown: 0, unread: 0,
        status: 'new',           // new | subscribing | live | forbidden | failed
        presence: new Set(), presenceKnown: false, presenceFresh: false,
      };
      const panel = make('section', 'panel');
      panel.id = 'panel-' + state.channels.size + '-' + Date.now().toString(36);
      panel.setAttribute('aria-label', 'Messages in ' + filter);
      panel.hidden = true;
      const list = make('ol', 'messages');
      list.setAttribute('role', 'log');
      list.setAttribute('aria-live', 'polite');
      list.setAttribute('aria-relevant', 'additions');
      list.setAttribute('aria-label', 'Messages in ' + filter);
      list.tabIndex = 0;
      const loading = make('li', 'notice', 'Loading recent messages…');
      list.appendChild(loading);
      ch.loading = loading;
      const more = make('button', 'jump', 'New messages below ↓');
      more.type = 'button';
      more.hidden = true;
      more.addEventListener('click', () => { list.scrollTop = list.scrollHeight; more.hidden = true; });
      ch.stuck = true; // showing the newest message: keep it in view
      list.addEventListener('scroll', () => {
        ch.stuck = nearBottom(list);
        if (ch.stuck) more.hidden = true;
      });
      if (window.ResizeObserver) {
        // A banner or the keyboard of a phone changes the list's height.
        new ResizeObserver(() => { if (ch.stuck) list.scrollTop = list.scrollHeight; }).observe(list);
      }
      panel.append(list, more);
      el.panels.appendChild(panel);
      ch.panel = panel; ch.list = list; ch.more = more;

      const li = make('li');
      const btn = make('button', 'channel');
      btn.type = 'button';
      btn.dataset.filter = filter;
      const name = make('span', 'channel-name', filter);
      const badge = make('span', 'unread');
      badge.hidden = true;
      btn.append(name, badge);
      btn.addEventListener('click', () => activate_(filter, true));
      btn.addEventListener('keydown', channelKeys);
      li.appendChild(btn);
      el.channelList.appendChild(li);
      ch.button = btn; ch.badge = badge; ch.item = li;

      state.channels.set(filter, ch);
      saveChannels();
      if (state.conn === 'open') subscribe(ch);
    }
    if (activate) activate_(filter, false);
    return ch;
  }

  /* Arrow keys move between channel buttons. */
  function channelKeys(ev) {
    if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp' && ev.key !== 'ArrowLeft' && ev.key !== 'ArrowRight') return;
    const btns = Array.from(el.channelList.querySelectorAll('button.channel'));
    const i = btns.indexOf(ev.currentTarget);
    const step = ev.key === 'ArrowDown' || ev.key === 'ArrowRight' ? 1 : -1;
    const next = btns[(i + step + btns.length) % btns.length];
    if (next) { next.focus(); ev.preventDefault(); }
  }

  function activate_(filter, focusComposer) {
    const ch = state.channels.get(filter);
    if (!ch) return;
    state.active = filter;
    for (const c of state.channels.values()) {
      const on = c === ch;
      c.panel.hidden = !on;
      if (on) c.button.setAttribute('aria-current', 'true');
      else c.button.removeAttribute('aria-current');
    }
    ch.unread = 0;
    renderUnread(ch);
    el.emptyHint.hidden = true;
    el.roomTitle.textContent = filter;
    el.leave.hidden = false;
    el.leave.setAttribute('aria-label', 'Leave ' + filter);
    clearFeedback();
    renderPresence();
    renderComposer();
    ch.stuck = true;
    ch.list.scrollTop = ch.list.scrollHeight;
    if (focusComposer && !el.composerText.disabled) el.composerText.focus();
  }

  function removeChannel(filter) {
    const ch = state.channels.get(filter);
    if (!ch) return;
    if (state.conn === 'open' && ch.status !== 'forbidden' && ch.status !== 'failed') {
      request({ op: 'unsub', topic: filter }, { kind: 'unsub', topic: filter });
    }
    ch.panel.remove();
    ch.item.remove();
    state.channels.delete(filter);
    saveChannels();
    if (state.active === filter) {
      state.active = null;
      const next = state.channels.keys().next();
      if (!next.done) {
        activate_(next.value, false);
      } else {
        el.roomTitle.textContent = 'No channel joined';
        el.leave.hidden = true;
        el.emptyHint.hidden = false;
        renderPresence();
        renderComposer();
      }
    }
    const first = el.channelList.querySelector('button.channel');
    (first || el.joinInput).focus();
  }

  function renderUnread(ch) {
    ch.badge.hidden = ch.unread === 0;
    ch.badge.textContent = ch.unread > 99 ? '99+' : String(ch.unread);
    ch.button.setAttribute('aria-label',
      ch.filter + (ch.unread ? ', ' + ch.unread + ' unread' : '') +
      (ch.status === 'forbidden' ? ', not allowed' : ''));
    let total = 0;
    for (const c of state.channels.values()) total += c.unread;
    document.title = (total ? '(' + total + ') ' : '') + 'parley' + (state.node ? ' — ' + state.node : '');
  }

  function nearBottom(list) {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 60;
  }

  function appendItem(ch, li) {
    const list = ch.list;
    const stick = ch.panel.hidden || ch.stuck;
    if (ch.loading && ch.loading.parentNode) ch.loading.remove();
    list.appendChild(li);
    while (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
    if (stick) list.scrollTop = list.scrollHeight;
    else ch.more.hidden = false;
  }

  function notice(ch, text, kind) {
    const li = make('li', 'notice' + (kind ? ' ' + kind : ''), text);
    appendItem(ch, li);
    return li;
  }

  /* ------------------------------------------------------------ messages */

  function decorateOrigin(li) {
    const origin = li.dataset.origin;
    const remote = !!state.node && origin !== state.node;
    li.classList.toggle('remote', remote);
    const tag = li.querySelector('.origin');
    tag.textContent = remote ? 'from ' + origin : origin;
    tag.title = remote ? 'Federated: accepted by another node, ' + origin : 'Accepted by this hub\'s node, ' + origin;
    li.querySelector('.origin-sr').textContent = remote ? ', federated from another node, ' : ', node ';
  }

  function renderMessage(ch, m) {
    const li = make('li', 'msg');
    li.dataset.mid = m.mid;
    li.dataset.origin = String(m.origin);
    if (state.user && m.from === state.user) li.classList.add('mine');

    const meta = make('p', 'meta');
    meta.appendChild(make('span', 'from', String(m.from)));
    meta.appendChild(make('span', 'sr-only origin-sr'));
    meta.appendChild(make('span', 'origin'));
    if (ch.pattern) {
      const t = make('span', 'topic', String(m.topic));
      t.title = 'Topic';
      meta.appendChild(t);
    }
    const t = formatTime(m.ts);
    const time = make('time', 'ts', t.short);
    if (t.iso) time.dateTime = t.iso;
    time.title = t.full;
    meta.appendChild(make('span', 'sr-only', ', at '));
    meta.appendChild(time);

    const b = bodyText(m.body);
    const body = make(b.json ? 'pre' : 'p', 'body' + (b.json ? ' json' : ''), b.text);

    li.append(meta, body);
    decorateOrigin(li);
    return li;
  }

  function onMsg(m) {
    if (typeof m.topic !== 'string' || typeof m.mid !== 'string') return;
    for (const ch of state.channels.values()) {
      if (ch.status === 'forbidden' || !matches(ch.filter, m.topic)) continue;
      if (typeof m.cursor === 'string') ch.cursor = m.cursor;
      if (ch.mids.has(m.mid)) continue;
      ch.mids.add(m.mid);
      if (ch.mids.size > 4 * MAX_SHOWN) {
        // Forget the oldest ids (Sets iterate in insertion order).
        const it = ch.mids.values();
        for (let i = 0; i < MAX_SHOWN; i++) ch.mids.delete(it.next().value);
      }
      appendItem(ch, renderMessage(ch, m));
      ch.shown++;
      if (state.active !== ch.filter) { ch.unread++; renderUnread(ch); }
    }
  }

  /* ------------------------------------------------------------ presence */

  function onPresence(p) {
    const ch = state.channels.get(p.topic);
    if (!ch) return;
    const joined = Array.isArray(p.joined) ? p.joined.filter((x) => typeof x === 'string') : [];
    const left = Array.isArray(p.left) ? p.left.filter((x) => typeof x === 'string') : [];
    if (ch.presenceFresh) {
      // The first presence frame after our sub's ok lists everyone present.
      ch.presence = new Set(joined);
      ch.presenceFresh = false;
    } else {
      for (const j of joined) ch.presence.add(j);
    }
    for (const l of left) ch.presence.delete(l);
    ch.presenceKnown = true;
    if (state.active === ch.filter) renderPresence();
  }

  function myIdentity() {
    if (state.user) return state.user;
    return state.node ? 'anonymous@' + state.node : null;
  }

  function renderPresence() {
    const ch = state.active ? state.channels.get(state.active) : null;
    el.presenceList.textContent = '';
    if (!ch || !ch.presenceKnown) {
      el.presence.hidden = true;
      return;
    }
    el.presence.hidden = false;
    const me = myIdentity();
    const who = Array.from(ch.presence).sort((a, b) => a.localeCompare(b));
    for (const w of who) {
      const li = make('li', 'person');
      li.appendChild(make('span', 'who', w));
      if (w === me) {
        li.classList.add('me');
        li.appendChild(make('span', 'you', ' (you)'));
      }
      if (state.node && nodeOf(w) !== state.node) li.classList.add('remote');
      el.presenceList.appendChild(li);
    }
    const live = state.conn === 'open';
    el.presence.classList.toggle('stale', !live);
    el.presenceCount.textContent = '(' + who.length + (live ? '' : ', as of last connection') + ')';
  }

  /* ------------------------------------------------------------ composer */

  function renderComposer() {
    const ch = state.active ? state.channels.get(state.active) : null;
    const can = !!ch && !ch.pattern && ch.status !== 'forbidden';
    el.composerText.disabled = !can;
    el.send.disabled = !can;
    if (!ch) {
      el.composerLabel.textContent = 'Message';
      el.composerText.placeholder = 'Join a channel to write';
    } else if (ch.pattern) {
      el.composerLabel.textContent = 'Message';
      el.composerText.placeholder = 'A pattern is read-only: join a single topic to post';
    } else {
      el.composerLabel.textContent = 'Message to ' + ch.filter;
      el.composerText.placeholder = 'Message ' + ch.filter + (state.user ? '' : ' (anonymous)') + '…';
    }
  }

  function showFeedback(text, kind) {
    el.feedback.textContent = text;
    el.feedback.dataset.kind = kind || 'error';
    el.feedback.hidden = false;
  }
  function clearFeedback() {
    el.feedback.hidden = true;
    el.feedback.textContent = '';
    delete el.feedback.dataset.kind;
  }

  function sendMessage() {
    const ch = state.active ? state.channels.get(state.active) : null;
    const text = el.composerText.value;
    if (!ch || ch.pattern || text.trim() === '') return;
    if (state.conn !== 'open') {
      showFeedback('Not connected to the hub: your message was not sent. It is kept here; send it again once connected.', 'error');
      return;
    }
    clearFeedback();
    request({ op: 'pub', topic: ch.filter, body: text }, { kind: 'pub', topic: ch.filter, text });
    el.composerText.value = '';
  }

  function restoreText(p) {
    if (state.active === p.topic && el.composerText.value === '') el.composerText.value = p.text;
  }

  function pubFailed(p, e) {
    restoreText(p);
    const reason = e.reason ? ' (' + e.reason + ')' : '';
    let text;
    switch (e.code) {
      case 'forbidden':
        text = state.user
          ? 'Not allowed: ' + state.user + ' may not post in ' + p.topic + reason + '.'
          : 'Not allowed: anonymous visitors may not post in ' + p.topic + '. Sign in with a token that may post here.';
        break;
      case 'rate_limited':
        text = 'Slow down: you are sending too fast and the hub is rate limiting you. Wait a moment, then send again.';
        break;
      case 'too_large':
        text = 'The message is too large for this hub' + reason + '. Shorten it and send again.';
        break;
      case 'unavailable':
        text = 'The hub cannot store messages right now' + reason + '. Try again shortly.';
        break;
      default:
        text = 'Not sent: ' + (e.reason || e.code || 'error') + '.';
    }
    if (state.active !== p.topic) text = p.topic + ': ' + text;
    showFeedback(text, e.code === 'rate_limited' ? 'warn' : 'error');
  }

  /* ------------------------------------------------------------ identity */

  function renderIdentity() {
    el.whoami.textContent = '';
    if (state.user) el.whoami.append(make('span', 'whoami-label', 'Signed in as '), make('span', 'whoami-user', state.user));
    else el.whoami.textContent = 'Anonymous';
    el.whoami.classList.toggle('signed', !!state.user);
    el.signinForm.hidden = !!state.user;
    el.signout.hidden = !state.user;
    for (const ch of state.channels.values()) {
      for (const li of ch.list.querySelectorAll('li.msg')) {
        // Only a message's own text decides; cheap enough for MAX_SHOWN.
        const from = li.querySelector('.from').textContent;
        li.classList.toggle('mine', !!state.user && from === state.user);
      }
    }
    renderPresence();
    renderComposer();
  }

  function setNode(node) {
    if (!node || state.node === node) return;
    state.node = node;
    el.nodeName.textContent = node;
    for (const ch of state.channels.values()) {
      for (const li of ch.list.querySelectorAll('li.msg')) decorateOrigin(li);
      renderUnread(ch);
    }
    renderPresence();
  }

  function learnNode() {
    // /healthz names the node; same origin when the hub serves the page.
    let url;
    try {
      url = new URL(HUB);
      url.protocol = url.protocol === 'wss:' ? 'https:' : 'http:';
      url.pathname = '/healthz';
      url.search = '';
    } catch (e) { return; }
    fetch(url.href, { cache: 'no-store', credentials: 'omit' })
      .then((r) => r.json())
      .then((j) => { if (j && typeof j.node === 'string') setNode(j.node); })
      .catch(() => { /* learnt from auth or presence instead */ });
  }

  function signIn(token) {
    state.token = token;
    if (state.conn === 'open') request({ op: 'auth', token }, { kind: 'auth' });
    else if (state.conn !== 'connecting') connectNow();
  }

  function signOut() {
    state.token = null;
    state.user = null;
    store(TOKEN_KEY, null);
    renderIdentity();
    clearFeedback();
    // A connection cannot go back to anonymous: start a new one.
    dropConnection('Signed out');
    connectNow();
    el.tokenInput.focus();
  }

  /* ------------------------------------------------------------ connection */

  /* The words go to a live region only when they change; the countdown
   * (`when`) is shown but not announced every second. */
  function setConn(s, text, when) {
    state.conn = s;
    el.conn.dataset.state = s;
    if (el.connText.textContent !== text) el.connText.textContent = text;
    el.connWhen.textContent = when || '';
    el.reconnectNow.hidden = !(s === 'waiting' || s === 'offline');
    renderPresence();
  }

  function showBanner(text) {
    el.banner.textContent = text;
    el.banner.hidden = !text;
  }

  function request(frame, meta) {
    const id = state.nextId++;
    frame.id = id;
    state.pending.set(id, meta);
    try {
      state.ws.send(JSON.stringify(frame));
    } catch (e) {
      state.pending.delete(id);
      return 0;
    }
    return id;
  }

  function subscribe(ch) {
    if (ch.status === 'forbidden') return;
    const frame = { op: 'sub', topic: ch.filter };
    if (ch.cursor) frame.since = ch.cursor;
    else frame.last = BACKLOG;
    ch.status = 'subscribing';
    request(frame, { kind: 'sub', topic: ch.filter, since: ch.cursor });
  }

  function clearTimers() {
    clearTimeout(state.retryTimer); state.retryTimer = null;
    clearInterval(state.countdownTimer); state.countdownTimer = null;
    clearTimeout(state.connectTimer); state.connectTimer = null;
    clearInterval(state.pingTimer); state.pingTimer = null;
    clearTimeout(state.pongTimer); state.pongTimer = null;
  }

  function connectNow() {
    clearTimers();
    if (state.ws) dropConnection(null);
    setConn('connecting', state.attempt ? 'Reconnecting…' : 'Connecting…');
    let ws;
    try {
      ws = new WebSocket(HUB, 'parley.v1');
    } catch (e) {
      showBanner('Cannot connect to ' + HUB + ': ' + e.message);
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.connectTimer = setTimeout(() => {
      if (state.ws === ws && ws.readyState !== WebSocket.OPEN) {
        dropConnection(null);
        scheduleReconnect();
      }
    }, CONNECT_WITHIN_MS);
    ws.onopen = () => { if (state.ws === ws) onOpen(); };
    ws.onmessage = (ev) => { if (state.ws === ws) onFrame(ev.data); };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      dropConnection(closeReason(ev));
      scheduleReconnect();
    };
    ws.onerror = () => { /* a close event follows */ };
  }

  function closeReason(ev) {
    switch (ev.code) {
      case 1001: return 'The hub is restarting.';
      case 1008: return 'The hub closed the connection' + (ev.reason ? ': ' + ev.reason : ' (policy)') + '.';
      case 1009: return 'The hub closed the connection: a message was too large.';
      default: return null;
    }
  }

  function onOpen() {
    clearTimeout(state.connectTimer); state.connectTimer = null;
    state.attempt = 0;
    setConn('open', 'Connected');
    showBanner('');
    learnNode();
    if (state.token) request({ op: 'auth', token: state.token }, { kind: 'auth' });
    for (const ch of state.channels.values()) {
      ch.presenceKnown = false;
      subscribe(ch);
    }
    if (state.active) renderPresence();
    state.pingTimer = setInterval(heartbeat, PING_EVERY_MS);
  }

  /* Pings the hub; a connection that does not answer within `within` ms
   * is taken for dead (a dropped network often leaves a socket that
   * neither errors nor closes). */
  function heartbeat(within) {
    if (state.conn !== 'open') return;
    const ws = state.ws;
    const ms = typeof within === 'number' ? within : PONG_WITHIN_MS;
    if (state.pongTimer) {
      if (ms >= PONG_WITHIN_MS) return;
      clearTimeout(state.pongTimer);
    } else {
      request({ op: 'ping' }, { kind: 'ping' });
    }
    state.pongTimer = setTimeout(() => {
      if (state.ws !== ws) return;
      dropConnection('The connection stopped answering.');
      scheduleReconnect();
    }, ms);
  }

  /* Forgets the current socket (its late events are ignored), settles the
   * requests it carried, and marks channels for resubscription. */
  function dropConnection(why) {
    const ws = state.ws;
    state.ws = null;
    clearTimers();
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (e) { /* already closed */ }
    }
    for (const [, p] of state.pending) {
      if (p.kind === 'pub') {
        restoreText(p);
        showFeedback('The connection dropped before the hub confirmed your message to ' + p.topic +
          '; it may not have been sent. Check the channel once reconnected.', 'warn');
      }
    }
    state.pending.clear();
    for (const ch of state.channels.values()) {
      if (ch.status === 'live' || ch.status === 'subscribing') ch.status = 'new';
      ch.presenceFresh = false;
    }
    if (why) showBanner(why);
  }

  /* Retries with exponential backoff and jitter; going back online, or
   * back to the tab, retries at once. The browser's "offline" only changes
   * the words: a hub on this machine may still be reachable. */
  function scheduleReconnect() {
    clearTimers();
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, state.attempt));
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    state.attempt++;
    state.retryAt = Date.now() + delay;
    const tick = () => {
      const s = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      const when = s > 0 ? ' in ' + s + ' s' : '…';
      if (navigator.onLine) setConn('waiting', 'Disconnected — reconnecting', when);
      else setConn('offline', 'Offline — no network; retrying', when);
    };
    tick();
    state.countdownTimer = setInterval(tick, 1000);
    state.retryTimer = setTimeout(connectNow, delay);
  }

  /* ------------------------------------------------------------ frames */

  function onFrame(data) {
    let f;
    try { f = JSON.parse(data); } catch (e) { return; }
    if (!f || typeof f !== 'object') return;
    const p = f.id !== undefined ? state.pending.get(f.id) : undefined;
    if (p && f.op !== 'msg' && f.op !== 'presence') state.pending.delete(f.id);
    switch (f.op) {
      case 'msg': onMsg(f); break;
      case 'presence': onPresence(f); break;
      case 'pong':
        clearTimeout(state.pongTimer); state.pongTimer = null;
        break;
      case 'ok': onOk(f, p); break;
      case 'error': onError(f, p); break;
      default: break;
    }
  }

  function onOk(f, p) {
    if (!p) return;
    if (p.kind === 'auth') {
      state.user = typeof f.user === 'string' ? f.user : null;
      if (state.token) store(TOKEN_KEY, state.token);
      setNode(nodeOf(state.user));
      el.tokenInput.value = '';
      showBanner('');
      renderIdentity();
      clearFeedback();
    } else if (p.kind === 'sub') {
      const ch = state.channels.get(p.topic);
      if (!ch) return;
      ch.status = 'live';
      ch.presenceFresh = true;
      if (ch.loading && ch.loading.parentNode) {
        ch.loading.remove();
        if (ch.shown === 0) notice(ch, 'No messages yet in ' + ch.filter + '.', 'quiet');
      }
      renderUnread(ch);
      if (state.active === ch.filter) renderComposer();
    }
  }

  function onError(f, p) {
    const code = typeof f.code === 'string' ? f.code : 'error';
    const reason = typeof f.reason === 'string' ? f.reason : '';
    if (p && p.kind === 'auth') {
      state.token = null;
      store(TOKEN_KEY, null);
      renderIdentity();
      showBanner(code === 'unauthorized'
        ? 'Sign-in failed: the hub does not know this token. You are still ' + (state.user || 'anonymous') + '.'
        : 'Sign-in failed: ' + (reason || code) + '.');
      el.tokenInput.focus();
      return;
    }
    if (p && p.kind === 'pub') { pubFailed(p, { code, reason }); return; }
    if (p && p.kind === 'sub') { subFailed(state.channels.get(p.topic), p, code, reason); return; }
    if (p) return; // ping, unsub
    const ch = typeof f.topic === 'string' ? state.channels.get(f.topic) : null;
    if (ch) { subFailed(ch, null, code, reason); return; }
    showBanner('The hub reported an error: ' + (reason || code) + '.');
  }

  function subFailed(ch, p, code, reason) {
    if (!ch) return;
    if (ch.loading && ch.loading.parentNode) ch.loading.remove();
    if (code === 'history_gap' || (code === 'bad_request' && p && p.since)) {
      // history_gap: the hub no longer has everything since our cursor.
      // bad_request on a resume: the hub does not know our cursor at all
      // (e.g. it was replaced). Either way: say so, and take the latest.
      notice(ch, 'Some messages may be missing here: the hub no longer has everything since the last message shown' +
        ' (for example, it restarted). Showing the most recent messages from now on.', 'gap');
      ch.cursor = null;
      if (state.conn === 'open') subscribe(ch);
      return;
    }
    if (code === 'forbidden') {
      ch.status = 'forbidden';
      notice(ch, 'You may not read ' + ch.filter + (state.user ? ' as ' + state.user : ' without signing in') +
        (reason ? ' (' + reason + ')' : '') + '.', 'error');
    } else {
      ch.status = 'failed';
      notice(ch, 'Could not join ' + ch.filter + ': ' + (reason || code) + '.', 'error');
    }
    renderUnread(ch);
    if (state.active === ch.filter) renderComposer();
  }

  /* ------------------------------------------------------------ events */

  el.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = el.joinInput.value.trim();
    const problem = topicProblem(f);
    if (problem) {
      el.joinError.textContent = problem;
      el.joinError.hidden = false;
      el.joinInput.setAttribute('aria-invalid', 'true');
      el.joinInput.focus();
      return;
    }
    el.joinError.hidden = true;
    el.joinInput.removeAttribute('aria-invalid');
    el.joinInput.value = '';
    const ch = addChannel(f, true);
    // A forbidden channel joined again gets another try.
    if (ch.status === 'forbidden' || ch.status === 'failed') {
      ch.status = 'new';
      if (state.conn === 'open') subscribe(ch);
    }
    if (!el.composerText.disabled) el.composerText.focus();
  });

  el.leave.addEventListener('click', () => { if (state.active) removeChannel(state.active); });

  el.composer.addEventListener('submit', (ev) => { ev.preventDefault(); sendMessage(); });
  el.composerText.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      sendMessage();
    }
  });
  el.composerText.addEventListener('input', () => {
    if (el.feedback.dataset.kind !== 'error') clearFeedback();
  });

  el.signinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = el.tokenInput.value.trim();
    if (t) signIn(t);
  });
  el.signout.addEventListener('click', signOut);
  el.reconnectNow.addEventListener('click', () => { state.attempt = 0; connectNow(); });

  window.addEventListener('offline', () => {
    // Is the hub still there? A dead socket is found within seconds.
    if (state.conn === 'open') heartbeat(3000);
  });
  window.addEventListener('online', () => {
    if (state.conn !== 'open' && state.conn !== 'connecting') { state.attempt = 0; connectNow(); }
  });
  document.addEventListener('visibilitychange', () => {
    // Coming back to the tab: don't wait out a long backoff.
    if (!document.hidden && state.conn === 'waiting' && state.retryAt - Date.now() > 2000) {
      connectNow();
    }
  });

  /* ------------------------------------------------------------ start */

  let saved = [];
  try { saved = JSON.parse(load(CHANNELS_KEY) || '[]'); } catch (e) { saved = []; }
  if (Array.isArray(saved)) {
    for (const f of saved) if (typeof f === 'string' && !topicProblem(f)) addChannel(f, false);
  }
  const first = state.channels.keys().next();
  if (!first.done) activate_(first.value, false);
  renderIdentity();
  renderComposer();
  connectNow();
})();
