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

    // a row written with the sqlite3 CLI appears everywhere
    execFileSync('sqlite3', [db, `insert into messages(room, user, text) values('${room}', 'ops', 'written with sqlite3')`]);
    await check('sqlite3 row on the ws page', () => sees(a, 'written with sqlite3'));
    await check('sqlite3 row on the long-poll page', () => sees(b, 'written with sqlite3'));
    await check('sqlite3 row on the poll page', () => sees(c, 'written with sqlite3'));

    // a text that looks like HTML is text
    const evil = '<img src=x onerror=alert(1)>';
    await say(a, evil);
    await check('markup shows as text', () => sees(b, evil));
    await check('no element was made from it', async () =>
      (await a.$$('#messages img')).length === 0 && (await b.$$('#messages img')).length === 0);
    await check('no script ran from it', async () => a.dialogs === 0 && b.dialogs === 0);

    // a reload resumes without duplicates; the nickname is remembered
    await a.reload();
    await a.waitForSelector('#status[data-state="connected"]', { timeout: T });
    await say(b, 'after the reload');
    await check('the reloaded page gets new messages', () => sees(a, 'after the reload'));
    await check('the reloaded page shows no message twice', async () => unique(await ids(a)) && unique(await texts(a)));
    await check('the nickname is kept in localStorage', async () => (await a.inputValue('#user')) === 'alice');

    // every page shows the same messages in the same order
    await check('all pages agree, in id order', async () => {
      await sees(c, 'after the reload');
      const [ia, ib, ic] = [await ids(a), await ids(b), await ids(c)];
      return increasing(ia) && increasing(ib) && increasing(ic) &&
        JSON.stringify(ib.slice(-ia.length)) === JSON.stringify(ia);
    });
    await Promise.all([b.close(), c.close()]);

    // chat-ws stops and comes back: the auto page falls back or reconnects and loses nothing
    const d = await openPage(browser, `?room=${room}`);
    await check('auto uses WebSocket when it works', async () => /WebSocket/.test(await d.textContent('#transport')));
    const e = await openPage(browser, `?room=${room}&transport=ws`);
    const eWs = countWs(e);
    const wsPidFile = path.join(stackDir, 'chat-ws.pid');
    const conf = fs.readFileSync(path.join(stackDir, 'nginx', 'nginx.conf'), 'utf8');
    const wsPort = conf.match(/server 127\.0\.0\.1:(\d+);/)[1];
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
    const ws = spawn(path.join(binDir, 'chat-ws'), ['--db', db, '--listen', '127.0.0.1:' + wsPort],
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
      await check('auto on the refusing server long-polls and says why', async () => {
        const t = await q.textContent('#transport');
        return /long-polling/.test(t) && /WebSocket refused: .*Origin/.test(t);
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
