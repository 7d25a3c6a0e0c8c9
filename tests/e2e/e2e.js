// e2e.js - the chat page in headless Chromium (Debian's), driven by
// playwright-core, against a running stack.
//
//   node e2e.js BASE DB STACK_DIR BIN_DIR ARTIFACTS REFUSED_BASE
//
// REFUSED_BASE is a second stack whose chat-ws refuses the page's Origin.
// Prints "PASS name" / "FAIL name: detail" lines (counted by tests/lib.sh).
// Every wait is bounded.
'use strict';
const { chromium } = require('playwright-core');
const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const path = require('path');

const [base, db, stackDir, binDir, artifacts, refusedBase] = process.argv.slice(2);
const T = 10000;
const problems = [];   // script errors seen on any page

function report(ok, name, detail) {
  console.log((ok ? 'PASS ' : 'FAIL ') + name + (ok ? '' : ': ' + String(detail).slice(0, 300)));
}

async function check(name, fn) {
  try {
    const r = await fn();
    report(r !== false, name, 'condition false');
  } catch (e) {
    report(false, name, e.message.split('\n')[0]);
  }
}

async function openPage(browser, query, viewport, at) {
  const page = await browser.newPage({ viewport: viewport || { width: 1280, height: 800 } });
  page.dialogs = 0;
  page.on('dialog', (d) => { page.dialogs++; d.dismiss(); });
  page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
  page.on('console', (m) => {
    // The browser itself logs refused connections (a stopped chat-ws, a 503
    // while down) as errors; those are the network, not the page's script.
    if (m.type() === 'error' && !/Failed to load resource|WebSocket connection to/.test(m.text()))
      problems.push('console: ' + m.text());
  });
  await page.goto((at || base) + '/' + query);
  await page.waitForSelector('#status[data-state="connected"]', { timeout: T });
  return page;
}

// Waits until cond() holds (polled every 100 ms); false when it never does.
async function until(cond, timeout) {
  const end = Date.now() + (timeout || T);
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

// Counts the page's WebSocket attempts and its plain GETs of /ws.
function countWs(page) {
  const n = { sockets: 0, gets: 0 };
  page.on('websocket', () => n.sockets++);
  page.on('request', (r) => { if (new URL(r.url()).pathname === '/ws') n.gets++; });
  return n;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

// Waits until the page shows a stored message with exactly this text.
async function sees(page, text, timeout) {
  await page.waitForFunction((t) => [...document.querySelectorAll('#messages li[data-id] .text')]
    .some((p) => p.textContent === t), text, { timeout: timeout || T });
  return true;
}

async function texts(page) {
  return page.$$eval('#messages li[data-id] .text', (ps) => ps.map((p) => p.textContent));
}

async function ids(page) {
  return page.$$eval('#messages li[data-id]', (lis) => lis.map((li) => +li.dataset.id));
}

function unique(list) {
  return new Set(list).size === list.length;
}

function increasing(list) {
  return list.every((v, i) => i === 0 || v > list[i - 1]);
}

function sendHttp(text, room, at) {
  execFileSync('curl', ['-sf', '--data-urlencode', 'text=' + text, '-d', 'room=' + room, (at || base) + '/send/msg']);
}

async function main() {
  fs.mkdirSync(artifacts, { recursive: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const room = 'e2e' + Date.now();
    sendHttp('before anyone joined', room);

    // WebSocket and long-polling exchange messages both ways
    const a = await openPage(browser, `?room=${room}&transport=ws`);
    const b = await openPage(browser, `?room=${room}&transport=longpoll`);
    await check('ws page says WebSocket', async () => /WebSocket/.test(await a.textContent('#transport')));
    await check('long-poll page says long-polling', async () => /long-polling/.test(await b.textContent('#transport')));
    await check('join shows the recent history', () => sees(a, 'before anyone joined'));
    await a.fill('#user', 'alice');
    await a.dispatchEvent('#user', 'change');
    await say(a, 'from ws to longpoll');
    await check('ws -> long-poll', () => sees(b, 'from ws to longpoll'));
    await say(b, 'from longpoll to ws');
    await check('long-poll -> ws', () => sees(a, 'from longpoll to ws'));
    await check('the nickname is shown with the message', async () =>
      (await b.$$eval('#messages li[data-id]', (lis) => lis.map((li) => li.querySelector('.user').textContent)))
        .includes('alice'));

    // long-polling and polling
    const c = await openPage(browser, `#${room}`.replace('#', '?transport=poll#'));
    await check('the room is taken from /#room', async () => (await c.textContent('#room-name')) === '#' + room);
    await check('poll page says polling', async () => /polling/.test(await c.textContent('#transport')) &&
      !/long/.test(await c.textContent('#transport')));
    await say(b, 'from longpoll to poll');
    await check('long-poll -> poll', () => sees(c, 'from longpoll to poll'));
    await say(c, 'from poll to longpoll');
    await check('poll -> long-poll', () => sees(b, 'from poll to longpoll'));
    await check('poll -> ws', () => sees(a, 'from poll to longpoll'));

    // server-sent events: the page on transport=sse with the other transports
    const s = await openPage(browser, `?room=${room}&transport=sse`);
    await check('sse page says server-sent events', async () => /server-sent events/.test(await s.textContent('#transport')));
    await check('sse page shows the recent history', () => sees(s, 'from poll to longpoll'));
    await say(a, 'from ws to sse');
    await check('ws -> sse', () => sees(s, 'from ws to sse'));
    await say(s, 'from sse to the others');
    await check('sse -> long-poll', () => sees(b, 'from sse to the others'));
    await check('sse -> ws', () => sees(a, 'from sse to the others'));
    await check('sse -> poll', () => sees(c, 'from sse to the others'));

    // a row written with the sqlite3 CLI appears everywhere
    execFileSync('sqlite3', [db, `insert into messages(room, user, text) values('${room}', 'ops', 'written with sqlite3')`]);
    await check('sqlite3 row on the ws page', () => sees(a, 'written with sqlite3'));
    await check('sqlite3 row on the long-poll page', () => sees(b, 'written with sqlite3'));
    await check('sqlite3 row on the poll page', () => sees(c, 'written with sqlite3'));
    await check('sqlite3 row on the sse page', () => sees(s, 'written with sqlite3'));

    // a text that looks like HTML is text
    const evil = '<img src=x onerror=alert(1)>';
    await say(a, evil);
    await check('markup shows as text', () => sees(b, evil));
    await check('markup shows as text over sse', () => sees(s, evil));
    await check('no element was made from it', async () =>
      (await a.$$('#messages img')).length === 0 && (await b.$$('#messages img')).length === 0 &&
      (await s.$$('#messages img')).length === 0);
    await check('no script ran from it', async () => a.dialogs === 0 && b.dialogs === 0 && s.dialogs === 0);

    // a reload resumes without duplicates; the nickname is remembered
    await a.reload();
    await a.waitForSelector('#status[data-state="connected"]', { timeout: T });
    await say(b, 'after the reload');
    await check('the reloaded page gets new messages', () => sees(a, 'after the reload'));
    await check('the reloaded page shows no message twice', async () => unique(await ids(a)) && unique(await texts(a)));
    await check('the nickname is kept in localStorage', async () => (await a.inputValue('#user')) === 'alice');
    await s.reload();
    await s.waitForSelector('#status[data-state="connected"]', { timeout: T });
    await say(b, 'after the sse reload');
    await check('the reloaded sse page gets new messages', () => sees(s, 'after the sse reload'));
    await check('the reloaded sse page shows no message twice', async () => unique(await ids(s)) && unique(await texts(s)));

    // every page shows the same messages in the same order
    await check('all pages agree, in id order', async () => {
      await sees(c, 'after the sse reload');
      await sees(a, 'after the sse reload');
      const [ia, ib, ic, is] = [await ids(a), await ids(b), await ids(c), await ids(s)];
      return increasing(ia) && increasing(ib) && increasing(ic) && increasing(is) &&
        JSON.stringify(ib.slice(-ia.length)) === JSON.stringify(ia) &&
        JSON.stringify(ib.slice(-is.length)) === JSON.stringify(is);
    });
    await Promise.all([b.close(), c.close(), s.close()]);

    // chat-ws stops and comes back: the auto page falls back or reconnects and loses nothing
    const d = await openPage(browser, `?room=${room}`);
    await check('auto uses WebSocket when it works', async () => /WebSocket/.test(await d.textContent('#transport')));
    const e = await openPage(browser, `?room=${room}&transport=ws`);
    const eWs = countWs(e);
    const wsPidFile = path.join(stackDir, 'chat-ws.pid');
    const wsSock = path.join(stackDir, 'ws.sock');   // nginx's upstream (conf/stack.sh)
    process.kill(+fs.readFileSync(wsPidFile, 'utf8'), 'SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 3; i++) sendHttp('while chat-ws is down ' + i, room);
    await check('messages sent while chat-ws is down arrive', () => sees(d, 'while chat-ws is down 2', 20000));
    await check('auto fell back to long-polling', async () => /long-polling/.test(await d.textContent('#transport')));
    // nginx answers 503 while chat-ws is down: the ws page keeps trying
    await check('a ws page retries while chat-ws is down (503: retry)', async () => {
      if (!await until(() => eWs.sockets >= 3, 20000)) throw new Error(`${eWs.sockets} attempts`);
      return eWs.gets >= 1 && (await e.getAttribute('#status', 'data-state')) !== 'refused';
    });
    const log = fs.openSync(path.join(stackDir, 'logs', 'chat-ws.log'), 'a');
    const ws = spawn(path.join(binDir, 'chat-ws'), ['--db', db, '--listen', wsSock],
                     { stdio: ['ignore', log, log], detached: true });
    fs.writeFileSync(wsPidFile, String(ws.pid));
    ws.unref();
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < 3; i++) sendHttp('after chat-ws is back ' + i, room);
    await check('messages after chat-ws is back arrive', () => sees(d, 'after chat-ws is back 2', 20000));
    await check('the retrying ws page connects again and gets them', async () =>
      await sees(e, 'after chat-ws is back 2', 30000) && /WebSocket/.test(await e.textContent('#transport')));
    await check('the ws page lost nothing either', async () => {
      const t = await texts(e);
      return [0, 1, 2].every((i) => t.filter((x) => x === 'while chat-ws is down ' + i).length === 1) &&
        unique(await ids(e)) && increasing(await ids(e));
    });
    await e.close();
    await check('nothing lost or repeated across the outage', async () => {
      const t = await texts(d);
      const want = [0, 1, 2].map((i) => 'while chat-ws is down ' + i).concat([0, 1, 2].map((i) => 'after chat-ws is back ' + i));
      return want.every((w) => t.filter((x) => x === w).length === 1) && unique(await ids(d)) && increasing(await ids(d));
    });

    // kill -9 of chat-ws under a page on server-sent events and under a
    // plain EventSource (Chromium's own): nginx answers its retry stream
    // meanwhile, so both come back by themselves and lose nothing
    {
      const sp = await openPage(browser, `?room=${room}&transport=sse`);
      const raw = await browser.newPage();
      raw.on('pageerror', (err) => problems.push('pageerror: ' + err.message));
      await raw.goto(base + '/favicon.svg');
      const start = JSON.parse(execFileSync('curl', ['-sf', `${base}/get/msg?room=${room}&tail=1`])).max_index;
      await raw.evaluate((url) => {
        window.got = []; window.readys = []; window.errors = 0;
        const es = new EventSource(url);
        es.addEventListener('ready', (e) => window.readys.push([+e.lastEventId, JSON.parse(e.data)]));
        es.onmessage = (e) => window.got.push(JSON.parse(e.data).id);
        es.addEventListener('error', () => { window.errors++; });
        window.es = es;
      }, `/events?room=${room}&index=${start - 1}`);
      await check('a plain EventSource gets the ready event', () =>
        until(() => raw.evaluate(() => window.readys.length === 1)));
      await check('whose id is the index given, with the room\'s latest', async () => {
        const [[id, data]] = await raw.evaluate(() => window.readys);
        return id === start - 1 && data.max_index === start && data.room === room;
      });
      await check('then the replay after it', () => until(() => raw.evaluate((st) => window.got[0] === st, start)));
      sendHttp('before the kill', room);
      await check('both get a message before the kill', async () =>
        await sees(sp, 'before the kill') && until(() => raw.evaluate(() => window.got.length === 2)));
      const wsPid = +fs.readFileSync(wsPidFile, 'utf8');
      process.kill(wsPid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 300));
      for (let i = 0; i < 3; i++) sendHttp('while killed ' + i, room);
      await new Promise((r) => setTimeout(r, 3000));
      await check('while chat-ws is down the EventSource keeps retrying (nginx\'s retry stream)', async () =>
        (await raw.evaluate(() => window.es.readyState)) !== 2 && (await raw.evaluate(() => window.errors)) >= 1);
      await check('and so does the page', async () => (await sp.getAttribute('#status', 'data-state')) !== 'refused');
      const ws2 = spawn(path.join(binDir, 'chat-ws'), ['--db', db, '--listen', wsSock],
                        { stdio: ['ignore', log, log], detached: true });
      fs.writeFileSync(wsPidFile, String(ws2.pid));
      ws2.unref();
      for (let i = 0; i < 3; i++) sendHttp('after the restart ' + i, room);
      await check('the page on sse resumes after kill -9', () => sees(sp, 'after the restart 2', 30000));
      const want = execFileSync('sqlite3', [db, `select id from messages where room='${room}' and id >= ${start} order by id`])
        .toString().trim().split('\n').map(Number);
      await check('the plain EventSource resumes after kill -9 with Last-Event-ID', () =>
        until(() => raw.evaluate((n) => window.got.length >= n, want.length), 30000));
      await check('it lost nothing and got nothing twice', async () => {
        const got = await raw.evaluate(() => window.got);
        if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`got ${got.join(',')} want ${want.join(',')}`);
        return (await raw.evaluate(() => window.readys.length)) >= 2;
      });
      await check('the page lost nothing either', async () => {
        const t = await texts(sp);
        return [0, 1, 2].every((i) => t.filter((x) => x === 'while killed ' + i).length === 1 &&
                                      t.filter((x) => x === 'after the restart ' + i).length === 1) &&
          unique(await ids(sp)) && increasing(await ids(sp));
      });
      await check('and says server-sent events again', async () =>
        /server-sent events/.test(await sp.textContent('#transport')) &&
        (await sp.getAttribute('#status', 'data-state')) === 'connected');
      await Promise.all([sp.close(), raw.close()]);
    }

    await d.screenshot({ path: path.join(artifacts, 'desktop.png') });

    // a socket the server refuses for good (chat-ws's Origin allow-list
    // leaves this page out): the page asks the URL why, says it, and stops
    {
      const p = await browser.newPage();
      p.on('pageerror', (err) => problems.push('pageerror: ' + err.message));
      const n = countWs(p);
      await p.goto(refusedBase + `/?room=${room}&transport=ws`);
      await check('a refused WebSocket: the page says refused', async () => {
        await p.waitForSelector('#status[data-state="refused"]', { timeout: T });
        return true;
      });
      await check('and why, from the JSON error', async () => /Origin is not allowed/.test(await p.textContent('#status')));
      await p.waitForTimeout(4000);
      await check('and does not retry', () => {
        if (n.sockets !== 1 || n.gets !== 1) throw new Error(`${n.sockets} sockets, ${n.gets} GETs of /ws`);
        return true;
      });
      await p.close();
      const q = await openPage(browser, `?room=${room}`, undefined, refusedBase);
      await check('auto on the refusing server falls back to server-sent events and says why', async () => {
        const t = await q.textContent('#transport');
        return /server-sent events/.test(t) && /WebSocket refused: .*Origin/.test(t);
      });
      await check('and still exchanges messages', async () => {
        sendHttp('seen despite the refused socket', room, refusedBase);
        return sees(q, 'seen despite the refused socket');
      });
      await q.close();
    }

    // a send that cannot be stored is marked, with a retry
    await say(d, 'é'.repeat(3000));   // 3,000 characters, 6,000 bytes: over 4096 bytes
    await check('a refused send is marked with a retry button', async () => {
      await d.waitForSelector('#messages li.failed button.retry', { timeout: T });
      return true;
    });

    // the phone-sized screenshot (the desktop one was taken above)
    const phone = await openPage(browser, `?room=${room}&transport=longpoll`, { width: 390, height: 844 });
    await phone.screenshot({ path: path.join(artifacts, 'phone.png') });
    await check('screenshots saved', () => fs.existsSync(path.join(artifacts, 'desktop.png')) &&
      fs.existsSync(path.join(artifacts, 'phone.png')));
    await check('no script error on any page', () => {
      if (problems.length) throw new Error(problems.join(' | '));
      return true;
    });
  } finally {
    await browser.close();
  }
}

main().catch((e) => { report(false, 'the browser suite ran to its end', e.stack); process.exitCode = 0; });
