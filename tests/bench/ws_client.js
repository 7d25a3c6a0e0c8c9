// ws_client.js - the WebSocket load client of the benchmarks (Node + ws).
//
//   node ws_client.js URL SOCKETS EXPECT TIMEOUT_S [raw]
//
// Frames are message objects (their "text" is read), or with `raw` the text
// itself (as Nchan sends what was published).
// Opens SOCKETS connections to URL (a few hundred at a time), prints
// "ready" once all are open, then collects EXPECT messages on each. A message
// text is "<index> <wall time of its send request, in s>". At the end (all
// received, or TIMEOUT_S after ready) it prints one JSON line: deliveries,
// lost, duplicated, sockets out of order, its CPU seconds since ready (cpu_s), latency median/p90/p99/max in ms
// (and every latency, with LAT=1 in the environment).
'use strict';
const WebSocket = require('ws');
const { performance } = require('perf_hooks');

const [url, nSockets, expect, timeoutS] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const raw = process.argv[6] === 'raw';
const lat = [];
let lost = 0, dup = 0, outOfOrder = 0, open = 0, done = 0, closedEarly = 0, cpu0 = null;
const socks = [];

function finish() {
  for (const s of socks) {
    const seen = s.seen;
    const uniq = new Set(seen);
    lost += expect - uniq.size;
    dup += seen.length - uniq.size;
    for (let i = 1; i < seen.length; i++) if (seen[i] <= seen[i - 1]) { outOfOrder++; break; }
  }
  lat.sort((a, b) => a - b);
  const pct = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.round(p / 100 * (lat.length - 1)))] : null;
  const cpu = process.cpuUsage(cpu0);
  const line = JSON.stringify({ deliveries: lat.length, lost, dup, outOfOrder, closedEarly,
    cpu_s: (cpu.user + cpu.system) / 1e6,
    p50: pct(50), p90: pct(90), p99: pct(99), max: lat.length ? lat[lat.length - 1] : null,
    lat: process.env.LAT ? lat : undefined });
  for (const s of socks) s.ws.terminate();
  // A pipe is written asynchronously: exit once the line is out.
  process.stdout.write(line + '\n', () => process.exit(0));
}

function openOne() {
  const s = { seen: [], ws: new WebSocket(url, { perMessageDeflate: false }) };
  socks.push(s);
  s.ws.on('open', () => {
    if (++open === nSockets) {
      console.log('ready');
      cpu0 = process.cpuUsage();
      setTimeout(finish, timeoutS * 1000);
    }
  });
  s.ws.on('message', (data) => {
    const now = (performance.timeOrigin + performance.now()) / 1000;
    const text = raw ? data.toString() : JSON.parse(data).text;
    const sp = text.indexOf(' ');
    s.seen.push(+text.slice(0, sp));
    lat.push((now - +text.slice(sp + 1)) * 1000);
    if (s.seen.length === expect && ++done === nSockets) finish();
  });
  s.ws.on('close', () => { if (s.seen.length < expect) closedEarly++; });
  s.ws.on('error', (e) => { console.error('socket error: ' + e.message); });
}

let started = 0;
(function batch() {
  for (let i = 0; i < 200 && started < nSockets; i++, started++) openOne();
  if (started < nSockets) setTimeout(batch, 20);
})();
