// chat.js - a first page: joins a room with its recent history, then polls
// /get/msg every 2 seconds with the cursor it was given (the tutorial's
// short polling), and sends with /send/msg. Texts are rendered as text.
'use strict';

(function () {
  const params = new URLSearchParams(location.search);
  const room = params.get('room') || location.hash.slice(1) || 'lobby';
  const list = document.getElementById('messages');
  const statusEl = document.getElementById('status');
  const form = document.getElementById('send-form');
  const userInput = document.getElementById('user');
  const textInput = document.getElementById('text');
  let cursor = null;   // max_index of the last answer; null before joining

  document.getElementById('room-name').textContent = '#' + room;
  userInput.value = localStorage.getItem('chat.user') || '';
  userInput.addEventListener('change', () => localStorage.setItem('chat.user', userInput.value));

  function show(msg) {
    const li = document.createElement('li');
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = new Date(msg.ts).toLocaleTimeString();
    const user = document.createElement('span');
    user.className = 'user';
    user.textContent = msg.user || 'anonymous';
    li.append(meta, user, document.createTextNode(msg.text));
    const main = list.parentElement;
    const atBottom = main.scrollHeight - main.scrollTop - main.clientHeight < 40;
    list.append(li);
    if (atBottom) main.scrollTop = main.scrollHeight;
  }

  async function poll() {
    const q = cursor === null ? 'tail=50' : 'index=' + cursor;
    try {
      const r = await fetch('/get/msg?room=' + encodeURIComponent(room) + '&' + q, { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const doc = await r.json();
      doc.messages.forEach(show);
      cursor = doc.max_index;
      statusEl.textContent = 'connected (polling)';
      if (doc.more) return setTimeout(poll, 0);
    } catch (e) {
      statusEl.textContent = 'offline, retrying…';
    }
    setTimeout(poll, 2000);
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = textInput.value;
    if (!text) return;
    const body = { text, user: userInput.value, room,
                   cid: Date.now().toString(36) + Math.random().toString(36).slice(2, 8) };
    try {
      const r = await fetch('/send/msg', { method: 'POST', headers: { 'Content-Type': 'application/json' },
                                           body: JSON.stringify(body) });
      const doc = await r.json();
      if (!r.ok) throw new Error(doc.error || 'HTTP ' + r.status);
      textInput.value = '';
    } catch (e) {
      statusEl.textContent = 'not sent: ' + e.message;
    }
  });

  poll();
})();
