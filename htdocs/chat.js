// chat.js - the chat page: joins a room with its recent history, then follows
// it over WebSocket, server-sent events, long-polling or polling, and sends
// over HTTP. ?transport=ws|sse|longpoll|poll picks one; auto (the default)
// tries WebSocket, then server-sent events, then long-polling.
//
// Never lose or repeat a message:
//   - the cursor is the last message id shown; every transport resumes from
//     it (after a network drop, a server restart or a switch of transport),
//     and a message whose id was shown already is dropped;
//   - every send carries a cid and is retried with the same cid, so a retry
//     after a timeout stores the message once; the server's answer carries
//     the message's id, which ties the pending line to the stored message.
// A WebSocket that fails tells the page nothing (close code 1006): the page
// then asks the same URL with a plain GET. A 4xx (a bad URL, a foreign
// Origin) will not pass by retrying: the page stops and says why; a 503 or
// no answer is passing trouble: it backs off and tries again. An
// EventSource reconnects by itself, from its last id (Last-Event-ID), as
// long as the server answers with an event stream (a full or unreachable
// server answers one holding `event: error`); one that gives up for good is
// asked why the same way, and made again from the cursor, with back-off.
// Texts are always rendered as text (textContent), never as HTML.
'use strict';

(function () {
  const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
  const POLL_MS = 2000;          // the tutorial's polling interval
  const WAIT_S = 25;             // long-poll hold; below common proxy timeouts
  const WS_RETRY_MS = 30000;     // auto: how often to try WebSocket again
  const SEND_TRIES = 4;

  const params = new URLSearchParams(location.search);
  const room = pickRoom();
  const wanted = ['poll', 'longpoll', 'ws', 'sse', 'auto'].includes(params.get('transport'))
    ? params.get('transport') : 'auto';

  const main = document.querySelector('main');
  const list = document.getElementById('messages');
  const statusEl = document.getElementById('status');
  const transportEl = document.getElementById('transport');
  const form = document.getElementById('send-form');
  const userInput = document.getElementById('user');
  const textInput = document.getElementById('text');

  let cursor = null;             // last id shown; null until joined
  const shown = new Set();       // ids on the page
  const pendingById = new Map(); // id -> pending <li> whose send was acknowledged
  let current = null;            // the running transport: {name, stop()}
  let failures = 0;              // consecutive failures, for backoff and status
  let wsRefused = null;          // auto: why the server refuses sockets for good, or null

  function pickRoom() {
    let r = params.get('room');
    if (!r) {
      try { r = decodeURIComponent(location.hash.slice(1)); } catch (e) { r = ''; }
    }
    return ROOM_RE.test(r) ? r : 'lobby';
  }

  // ---- status ----

  function setStatus(state, name, why) {
    statusEl.dataset.state = state;
    statusEl.textContent = why ? state + ': ' + why : state;
    transportEl.textContent = (name ? 'via ' + label(name) : '') +
      (name && name !== 'ws' && wsRefused ? ' (WebSocket refused: ' + wsRefused + ')' : '');
    document.body.dataset.transport = name || '';
  }
  function label(name) {
    return { ws: 'WebSocket', sse: 'server-sent events', longpoll: 'long-polling', poll: 'polling' }[name] || name;
  }
  function ok(name) {
    failures = 0;
    setStatus('connected', name);
  }
  function trouble(name) {
    failures++;
    setStatus(navigator.onLine === false || failures >= 4 ? 'offline' : 'reconnecting', name);
  }
  // Backoff with jitter: 0.5 s doubling to 30 s, each delay between 50% and 100%.
  function backoff() {
    const base = Math.min(30000, 500 * Math.pow(2, Math.max(0, failures - 1)));
    return base * (0.5 + Math.random() / 2);
  }

  // ---- messages ----

  function timeOf(ts) {
    const d = new Date(ts);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function line(user, text, ts) {
    const li = document.createElement('li');
    const head = document.createElement('div');
    head.className = 'head';
    const who = document.createElement('span');
    who.className = 'user';
    who.textContent = user || 'anonymous';
    const when = document.createElement('time');
    when.className = 'time';
    if (ts) {
      when.dateTime = new Date(ts).toISOString();
      when.textContent = timeOf(ts);
    }
    head.append(who, when);
    const body = document.createElement('p');
    body.className = 'text';
    body.textContent = text;
    li.append(head, body);
    return li;
  }

  function atBottom() {
    return main.scrollHeight - main.scrollTop - main.clientHeight < 60;
  }

  function append(li) {
    const stick = atBottom();
    // Pending sends stay last, below every stored message.
    const firstPending = list.querySelector('li.pending');
    if (li.classList.contains('pending') || !firstPending) list.append(li);
    else list.insertBefore(li, firstPending);
    if (stick) main.scrollTop = main.scrollHeight;
  }

  // Shows stored messages in id order; anything at or below the cursor was shown.
  function receive(msgs) {
    for (const m of msgs) {
      if (typeof m.id !== 'number' || shown.has(m.id) || (cursor !== null && m.id <= cursor)) continue;
      shown.add(m.id);
      cursor = m.id;
      const li = line(m.user, m.text, m.ts);
      li.dataset.id = m.id;
      const pending = pendingById.get(m.id);
      if (pending) {
        pendingById.delete(m.id);
        pending.remove();
        li.classList.add('mine');
      }
      append(li);
    }
  }

  // The database was replaced (ids went back): start over from its latest id.
  function resync(maxIndex) {
    cursor = maxIndex;
    shown.clear();
  }

  // ---- transports ----

  function getUrl(query) {
    return '/get/msg?room=' + encodeURIComponent(room) + '&' + query;
  }

  // A GET that gives up after timeoutMs (a dead connection must not hang the loop).
  async function getJson(url, signal, timeoutMs) {
    const ctl = new AbortController();
    const abort = () => ctl.abort();
    if (signal) signal.addEventListener('abort', abort);
    const timer = setTimeout(abort, timeoutMs || 15000);
    try {
      const r = await fetch(url, { cache: 'no-store', signal: ctl.signal });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      return await r.json();
    } finally {
      clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', abort);
    }
  }

  // Polling and long-polling: one loop, with or without wait.
  function httpLoop(name, wait) {
    const ctl = new AbortController();
    let stopped = false, timer = null;
    async function step() {
      if (stopped) return;
      let delay;
      // A long-poll held by the server is a working connection.
      const held = wait ? setTimeout(() => { if (!stopped) ok(name); }, 1000) : null;
      try {
        const doc = await getJson(getUrl('index=' + cursor + (wait ? '&wait=' + WAIT_S : '')), ctl.signal,
                                  (WAIT_S + 10) * 1000)
          .finally(() => clearTimeout(held));
        if (stopped) return;
        // A cursor ahead of the room (a replaced database): resync to its latest id.
        if (doc.messages.length === 0 && doc.max_index < cursor) resync(doc.max_index);
        receive(doc.messages);
        ok(name);
        delay = doc.more ? 0 : (wait ? 0 : POLL_MS);
      } catch (e) {
        if (stopped) return;
        trouble(name);
        delay = backoff();
      }
      timer = setTimeout(step, delay);
    }
    step();
    return { name, stop() { stopped = true; clearTimeout(timer); ctl.abort(); } };
  }

  // The socket's path and query; a probe asks for live messages only.
  function wsPath(live) {
    return '/ws?room=' + encodeURIComponent(room) + (live ? '' : '&index=' + cursor);
  }
  function wsUrl(live) {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + location.host + wsPath(live);
  }

  // After a socket failed to open: why, when the server refuses the URL for
  // good (a 4xx other than 426 Upgrade Required and 429), else null.
  async function wsRefusal(live) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    try {
      const r = await fetch(wsPath(live), { cache: 'no-store', signal: ctl.signal });
      if (r.status < 400 || r.status >= 500 || r.status === 426 || r.status === 429) return null;
      let why = 'HTTP ' + r.status;
      try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
      return why;
    } catch (e) {
      return null;                // no answer: passing trouble
    } finally {
      clearTimeout(timer);
    }
  }

  // WebSocket; onFail(opened, refused) is called once when it fails or
  // closes (refused: why the server refuses it for good, or null).
  function wsLoop(onFail) {
    let stopped = false, opened = false, timer = null;
    const sock = new WebSocket(wsUrl(false));
    const give = async () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      const refused = opened ? null : await wsRefusal(false);
      onFail(opened, refused);
    };
    // A proxy that swallows the upgrade never opens nor fails: give up after a while.
    timer = setTimeout(() => { if (!opened) { try { sock.close(); } catch (e) { /* closing */ } give(); } }, 8000);
    sock.onopen = () => { opened = true; clearTimeout(timer); ok('ws'); };
    sock.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m && typeof m.id === 'number' && typeof m.text === 'string') receive([m]);
    };
    sock.onerror = () => { /* onclose follows */ };
    sock.onclose = () => give();
    return { name: 'ws', stop() { stopped = true; clearTimeout(timer); sock.close(); } };
  }

  // Server-sent events. The browser reconnects by itself with Last-Event-ID
  // (the last id it saw: a message's, or the ready event's); onFail(opened,
  // refused) is called once when the EventSource is closed for good, or did
  // not open in time, or (auto) the server said `event: error` before ready.
  function sseUrl() {
    return '/events?room=' + encodeURIComponent(room) + '&index=' + cursor;
  }
  function sseLoop(onFail) {
    let stopped = false, opened = false, timer = null;
    const url = sseUrl();
    const es = new EventSource(url);
    const give = async () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      es.close();
      onFail(opened, await sseRefusal(url));
    };
    // A proxy that holds the stream without passing anything: give up after a while.
    const arm = () => { clearTimeout(timer); timer = setTimeout(() => { if (!opened) give(); }, 8000); };
    arm();
    es.addEventListener('ready', (ev) => {
      // Its id is where the stream starts: below the cursor, the database was replaced.
      const from = Number(ev.lastEventId);
      if (cursor !== null && Number.isSafeInteger(from) && from < cursor) resync(from);
      opened = true;
      clearTimeout(timer);
      ok('sse');
    });
    es.onmessage = (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m && typeof m.id === 'number' && typeof m.text === 'string') receive([m]);
    };
    es.addEventListener('error', (ev) => {
      if (stopped) return;
      if (es.readyState === EventSource.CLOSED) {
        give();                   // not an event stream: the browser gave up
        return;
      }
      if (ev.data !== undefined) {
        // The server's own `event: error` (full, stopping, unreachable): the
        // stream ends and the browser comes back later. Auto, not open (yet,
        // or again since a drop), tries the next transport instead.
        if (wanted === 'auto' && !opened) give();
        return;
      }
      // The stream dropped: the browser reconnects by itself. Until its next
      // ready it is not open, as a WebSocket that must reconnect.
      if (opened) {
        opened = false;
        trouble('sse');
        arm();
      }
    });
    return { name: 'sse', stop() { stopped = true; clearTimeout(timer); es.close(); } };
  }

  // After an EventSource gave up: why, when the server refuses the URL for
  // good (a 4xx other than 429), else null. Only the answer's head is read.
  async function sseRefusal(url) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    try {
      const r = await fetch(url, { cache: 'no-store', signal: ctl.signal });
      if (r.status < 400 || r.status >= 500 || r.status === 429) return null;
      let why = 'HTTP ' + r.status;
      try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
      return why;
    } catch (e) {
      return null;                // no answer: passing trouble
    } finally {
      clearTimeout(timer);
      ctl.abort();                // a 200 is a stream: do not keep it
    }
  }

  // Before a socket resumes from the cursor: was the database replaced?
  async function checkCursor() {
    try {
      const doc = await getJson(getUrl('index=' + cursor + '&limit=1'));
      if (doc.messages.length === 0 && doc.max_index < cursor) resync(doc.max_index);
    } catch (e) { /* the socket will tell */ }
  }

  async function start(name) {
    if (current) current.stop();
    current = null;
    if (name === 'ws') await checkCursor();
    if (current) return;          // another start won the race
    if (name === 'poll') current = httpLoop('poll', false);
    else if (name === 'longpoll') current = httpLoop('longpoll', true);
    else if (name === 'sse') {
      const loop = sseLoop((opened, refused) => {
        if (current !== loop) return;   // another start replaced it meanwhile
        if (refused && wanted !== 'auto') {
          current = null;
          setStatus('refused', 'sse', refused);
          return;
        }
        trouble('sse');
        if (wanted === 'auto' && !opened) {
          // Streams do not get through either: long-poll (and try WebSocket later).
          start('longpoll');
          if (!wsRefused) scheduleWsProbe();
        } else {
          setTimeout(() => { if (current === loop) start('sse'); }, backoff());
        }
      });
      current = loop;
    } else {
      const loop = wsLoop((opened, refused) => {
        if (current !== loop) return;   // another start replaced it meanwhile
        if (refused && wanted !== 'auto') {
          // Retrying will not help: stop, and say why.
          current = null;
          setStatus('refused', 'ws', refused);
          return;
        }
        trouble('ws');
        if (wanted === 'auto' && !opened) {
          // WebSocket does not get through here: server-sent events (then
          // long-polling), and try again later unless the server refuses it
          // for good.
          wsRefused = refused;
          start('sse');
          if (!refused) scheduleWsProbe();
        } else {
          setTimeout(() => { if (current === loop) start('ws'); }, backoff());
        }
      });
      current = loop;
    }
  }

  // auto: while on another transport, try a WebSocket now and then; switch
  // when it opens, give up when the server refuses it for good.
  let probeTimer = null;
  function scheduleWsProbe() {
    clearTimeout(probeTimer);
    probeTimer = setTimeout(() => {
      if (!current || current.name === 'ws') return;
      // Live only: the probe needs no replay; it only asks whether sockets get through.
      const probe = new WebSocket(wsUrl(true));
      let settled = false;
      const retry = async () => {
        if (settled) return;
        settled = true;
        try { probe.close(); } catch (e) { /* closing */ }
        wsRefused = await wsRefusal(true);
        if (!wsRefused) scheduleWsProbe();
      };
      const timer = setTimeout(retry, 8000);
      probe.onopen = () => { settled = true; clearTimeout(timer); probe.close(); start('ws'); };
      probe.onerror = () => { clearTimeout(timer); retry(); };
    }, WS_RETRY_MS);
  }

  // ---- sending ----

  function newCid() {
    const rnd = crypto.getRandomValues(new Uint32Array(2));
    return Date.now().toString(36) + '-' + rnd[0].toString(36) + rnd[1].toString(36);
  }

  function markFailed(li, why, retry) {
    li.classList.add('failed');
    const note = li.querySelector('.note') || document.createElement('span');
    note.className = 'note';
    note.textContent = 'not sent: ' + why + ' ';
    if (retry) {
      const btn = document.createElement('button');
      btn.type = 'button';
      btn.className = 'retry';
      btn.textContent = 'Retry';
      btn.addEventListener('click', () => { note.remove(); li.classList.remove('failed'); retry(); });
      note.append(btn);
    }
    li.querySelector('.head').append(note);
  }

  function send(text, user) {
    const body = JSON.stringify({ text, user, room, cid: newCid() });
    const li = line(user, text, null);
    li.classList.add('pending');
    append(li);
    main.scrollTop = main.scrollHeight;
    (async function attempt() {
      for (let i = 0; ; i++) {
        let r = null, doc = null;
        try {
          const ctl = new AbortController();
          const t = setTimeout(() => ctl.abort(), 10000);
          r = await fetch('/send/msg', { method: 'POST', body, signal: ctl.signal,
                                         headers: { 'Content-Type': 'application/json' } });
          clearTimeout(t);
          doc = await r.json();
        } catch (e) {
          r = null;
        }
        if (r && r.ok && doc && typeof doc.id === 'number') {
          li.classList.remove('failed');
          const note = li.querySelector('.note');
          if (note) note.remove();
          if (shown.has(doc.id)) {                      // already arrived
            li.remove();
            const stored = list.querySelector('li[data-id="' + doc.id + '"]');
            if (stored) stored.classList.add('mine');
          } else {
            pendingById.set(doc.id, li);                // replaced when it arrives
          }
          return;
        }
        if (r && r.status >= 400 && r.status < 500 && r.status !== 429) {
          markFailed(li, (doc && doc.error) || 'HTTP ' + r.status, attempt);
          return;
        }
        // No answer: after a few tries say so, but keep trying with the same
        // cid (a send the server did store comes back as a duplicate).
        if (i === SEND_TRIES - 1) markFailed(li, 'the server did not answer, still trying', null);
        await new Promise((res) => setTimeout(res, Math.min(30000, 500 * Math.pow(2, i)) * (0.5 + Math.random() / 2)));
      }
    })();
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = textInput.value;
    if (!text.trim()) return;
    textInput.value = '';
    send(text, userInput.value.trim());
    textInput.focus();
  });
  // Enter sends; Shift+Enter makes a new line.
  textInput.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });

  userInput.value = localStorage.getItem('chat.user') || '';
  userInput.addEventListener('change', () => localStorage.setItem('chat.user', userInput.value.trim()));
  document.getElementById('room-name').textContent = '#' + room;
  document.title = '#' + room + ' · chat';
  window.addEventListener('hashchange', () => { if (pickRoom() !== room) location.reload(); });
  // After a sleep or a network change the old connection may be dead without
  // knowing it: start the transport again (it resumes from the cursor).
  function revive() { if (current && cursor !== null) start(current.name); }
  window.addEventListener('online', revive);
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') revive(); });

  // ---- join ----

  (async function join() {
    setStatus('connecting', wanted === 'auto' ? 'ws' : wanted);
    try {
      const doc = await getJson(getUrl('tail=50'));
      receive(doc.messages);
      cursor = doc.max_index;
    } catch (e) {
      trouble(wanted === 'auto' ? 'ws' : wanted);
      setTimeout(join, backoff());
      return;
    }
    start(wanted === 'auto' ? 'ws' : wanted);
  })();
})();
