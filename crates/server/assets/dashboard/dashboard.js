// The dashboard page: the server's `$sys.stats`, through the fanout client
// library, every second. Tiles show the latest figures, charts the last five
// minutes, tables the totals by reason. Every figure is written to its
// <output> twice: formatted as text, and raw in `data-value` (the browser
// test compares those with /metrics).
import { Client } from './client/index.js';
import { TimeSeries, drawChart } from './charts.js';

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = 'fanout-dashboard-token';
const number = new Intl.NumberFormat('en');
const fmtCount = (v) => (v === undefined ? '–' : number.format(v));
const fmtRate = (v) =>
  v === undefined || !Number.isFinite(v) ? '–' : v < 10 ? v.toFixed(1) : number.format(Math.round(v));
const fmtMs = (v) => (v === undefined || !Number.isFinite(v) ? '–' : `${number.format(Math.round(v))} ms`);

const series = {
  connections: new TimeSeries(),
  'publish-rate': new TimeSeries(),
  'delivery-rate': new TimeSeries(),
  'drop-rate': new TimeSeries(),
  latency: new TimeSeries(),
};
const chartFormat = { connections: fmtCount, 'publish-rate': fmtRate, 'delivery-rate': fmtRate, 'drop-rate': fmtRate, latency: fmtMs };
let previous; // the last sample: counters and their time, for the rates
let samples = 0;

function show(id, value, fmt = fmtCount) {
  const el = $(id);
  if (!el) return;
  el.textContent = fmt(value);
  el.dataset.value = value === undefined ? '' : String(value);
}

function status(state, text) {
  const el = $('status');
  el.dataset.state = state;
  el.textContent = text;
}

function problem(text) {
  const el = $('problem');
  el.hidden = !text;
  el.textContent = text ?? '';
}

const dropsOf = (s) => (s.dropped ? s.dropped.full + s.dropped.high_water + s.dropped.evicted : 0);

/** One `$sys.stats` sample, published at `ts` (server clock, ms). */
function update(s, ts) {
  samples++;
  const latency = Date.now() - ts;
  $('engine').textContent = `engine: ${s.engine}`;
  show('connections', s.connections);
  show('subscriptions', s.subscriptions);
  show('topics', s.topics);
  show('published', s.published);
  show('delivered', s.delivered);
  show('accepted', s.connections_accepted);
  show('lag-notices', s.lag_notices);
  show('lagged-messages', s.lagged_messages);
  show('repaired-messages', s.repaired_messages);
  show('conflated-messages', s.conflated_messages);
  show('displaced', s.displaced);
  for (const r of ['full', 'high_water', 'evicted']) show(`dropped-${r}`, s.dropped?.[r]);
  for (const r of ['slow_consumer', 'kicked']) show(`evicted-${r}`, s.evicted?.[r]);
  for (const r of ['slow_consumer', 'write_timeout']) show(`closed-${r}`, s.connections_closed?.[r]);
  show('latency', latency, fmtMs);
  let rates;
  if (previous && ts > previous.ts && s.published >= previous.published) {
    const dt = (ts - previous.ts) / 1000;
    rates = {
      publish: (s.published - previous.published) / dt,
      delivery: (s.delivered - previous.delivered) / dt,
      drop: (dropsOf(s) - dropsOf(previous)) / dt,
    };
  }
  previous = { ts, published: s.published, delivered: s.delivered, dropped: s.dropped };
  show('publish-rate', rates?.publish, fmtRate);
  show('delivery-rate', rates?.delivery, fmtRate);
  series.connections.push(ts, s.connections);
  series.latency.push(ts, latency);
  if (rates) {
    series['publish-rate'].push(ts, rates.publish);
    series['delivery-rate'].push(ts, rates.delivery);
    series['drop-rate'].push(ts, rates.drop);
  }
  for (const [id, ser] of Object.entries(series)) drawChart($(`chart-${id}`), ser, { fmt: chartFormat[id] });
  const main = document.querySelector('main');
  main.dataset.samples = String(samples);
  main.dataset.ts = String(ts);
  $('updated').textContent = `Last update ${new Date(ts).toLocaleTimeString()}.`;
}

function start(config, token) {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${config.ws_path}`;
  const client = new Client(url, token ? { token } : {});
  client.on('state', (s) => status(s, s === 'connected' ? 'live' : s));
  client.on('disconnected', (e) => problem(`disconnected (${e.code}${e.reason ? ` ${e.reason}` : ''}); again in ${Math.round(e.reconnectIn / 100) / 10} s`));
  client.on('connected', () => problem(''));
  client.on('closed', (e) => {
    if (e.code === 4002) {
      sessionStorage.removeItem(TOKEN_KEY);
      problem('The token expired: paste a new one.');
      $('token-form').hidden = false;
    } else if (e.code !== 1000) {
      problem(`closed by the server (${e.code} ${e.reason})`);
    }
  });
  const sub = client.subscribe(config.stats_topic);
  sub.on('publication', (p) => update(p.data, p.ts));
  sub.on('error', ({ error }) => {
    status('refused', 'refused');
    problem(`Not allowed to read ${config.stats_topic}: ${error.message}`);
    if (config.tokens) $('token-form').hidden = false;
  });
  client.connect();
  return client;
}

const config = await (await fetch('config.json', { cache: 'no-cache' })).json();
$('interval').textContent = `${config.stats_interval_ms / 1000} s`;
if (config.stats_interval_ms === 0) problem('This server publishes no $sys.stats (--stats-interval 0s).');
// A token may come in the fragment (#token=...), which browsers do not send to servers.
const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
if (fromHash) {
  sessionStorage.setItem(TOKEN_KEY, fromHash);
  history.replaceState(null, '', location.pathname);
}
let client;
const form = $('token-form');
form.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('token').value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  form.hidden = true;
  client?.close();
  client = start(config, t);
});
const saved = sessionStorage.getItem(TOKEN_KEY) ?? undefined;
if (config.tokens && !saved) {
  status('disconnected', 'token needed');
  form.hidden = false;
} else {
  client = start(config, config.tokens ? saved : undefined);
}
