// lp_client.js - the long-poll load client of the benchmarks (Node, no packages).
//
//   node lp_client.js URL SUBSCRIBERS EXPECT TIMEOUT_S [nchan]
//
// URL is .../get/msg?room=R: each subscriber re-polls with
//   &index=<max_index of its last answer>&wait=30 and reads "messages".
// With `nchan`, URL is an Nchan long-poll location: each subscriber re-polls
//   with If-Modified-Since / If-None-Match from its last answer (one message
//   an answer, as Nchan sends them).
// A message text is "<index> <wall time of its send request, in s>". Prints
// "ready" once every subscriber has its first request out, then collects
// EXPECT messages on each. At the end (all received, or TIMEOUT_S after
// ready) it prints one JSON line: deliveries, lost, duplicated, subscribers
// out of order, requests made, errors, its CPU seconds since ready (cpu_s), latency median/p90/p99/max in ms
// (and every latency, with LAT=1 in the environment).
'use strict';
const http = require('http');
const { performance } = require('perf_hooks');

const [url, nSubs, expect, timeoutS] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const mode = process.argv[6] === 'nchan' ? 'nchan' : 'chat';
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const lat = [];
const subs = [];
let done = 0, requests = 0, errors = 0, finished = false, cpu0 = null;

const wallNow = () => (performance.timeOrigin + performance.now()) / 1000;

function finish() {
  if (finished) return;
  finished = true;
  let lost = 0, dup = 0, outOfOrder = 0;
  for (const s of subs) {
    const uniq = new Set(s.seen);
    lost += expect - uniq.size;
    dup += s.seen.length - uniq.size;
    for (let i = 1; i < s.seen.length; i++) if (s.seen[i] <= s.seen[i - 1]) { outOfOrder++; break; }
  }
  lat.sort((a, b) => a - b);
  const pct = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.round(p / 100 * (lat.length - 1)))] : null;
  const cpu = process.cpuUsage(cpu0);
  const line = JSON.stringify({ deliveries: lat.length, lost, dup, outOfOrder, requests, errors,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    p50: pct(50), p90: pct(90), p99: pct(99), max: lat.length ? lat[lat.length - 1] : null,
    lat: process.env.LAT ? lat : undefined });
  // A pipe is written asynchronously: exit once the line is out.
  process.stdout.write(line + '\n', () => process.exit(0));
}

function record(s, text, now) {
  const sp = text.indexOf(' ');
  s.seen.push(+text.slice(0, sp));
  lat.push((now - +text.slice(sp + 1)) * 1000);
}

function poll(s) {
  if (finished || s.seen.length >= expect) return;
  const headers = {};
  let target = url;
  if (mode === 'chat') {
    target += `&index=${s.cursor}&wait=30`;
  } else if (s.lastModified) {
    headers['If-Modified-Since'] = s.lastModified;
    headers['If-None-Match'] = s.etag;
  }
  requests++;
  const req = http.get(target, { agent, headers }, (res) => {
    const chunks = [];
    res.on('data', (c) => chunks.push(c));
    res.on('end', () => {
      const now = wallNow();
      const body = Buffer.concat(chunks).toString();
      if (mode === 'chat' && res.statusCode === 200) {
        const doc = JSON.parse(body);
        for (const m of doc.messages) record(s, m.text, now);
        s.cursor = doc.max_index;
      } else if (mode === 'nchan' && res.statusCode === 200) {
        record(s, body, now);
        s.lastModified = res.headers['last-modified'];
        s.etag = res.headers.etag;
      } else if (res.statusCode !== 304 && res.statusCode !== 408) {
        errors++;
      }
      if (s.seen.length >= expect) {
        if (++done === nSubs) finish();
        return;
      }
      setImmediate(() => poll(s));
    });
  });
  req.on('error', () => { errors++; setTimeout(() => poll(s), 100); });
}

for (let i = 0; i < nSubs; i++) {
  const s = { seen: [], cursor: 0, lastModified: null, etag: null };
  subs.push(s);
}
let started = 0;
(function batch() {
  for (let i = 0; i < 100 && started < nSubs; i++, started++) poll(subs[started]);
  if (started < nSubs) return setTimeout(batch, 10);
  console.log('ready');
  cpu0 = process.cpuUsage();
  setTimeout(finish, timeoutS * 1000);
})();
