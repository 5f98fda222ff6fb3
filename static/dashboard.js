// relay-hub live analytics dashboard: plain JS, no build step, charts drawn on <canvas>.
// Subscribes to topic `analytics` with the browser client and polls /health for the instance
// figures.
import { RelayHub } from '/client/relay-hub.js';

(() => {
  const $ = (id) => document.getElementById(id);
  const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2',
    '#db2777', '#65a30d', '#ea580c', '#4b5563'];
  const HISTORY = 180;           // snapshots kept for the time-based charts (~3 min)
  const HEALTH_EVERY_MS = 2000;

  const state = {
    client: null,               // the RelayHub
    colors: new Map(),          // model -> colour, stable for the page's life
    snapshots: [],              // {t, data}
    health: [],                 // {t, connections, rooms, users}
    latest: null,
  };

  // ---- formatting -----------------------------------------------------------------------------

  const fmt = (n, digits = 0) => (n == null || Number.isNaN(n)) ? '–'
    : Number(n).toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  const money = (n) => n == null ? '–' : Number(n).toLocaleString(undefined,
    { minimumFractionDigits: 2, maximumFractionDigits: n < 1 ? 4 : 2 });
  function duration(s) {
    if (s == null) return '–';
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    return `${m}m ${Math.floor(s % 60)}s`;
  }
  function colorOf(model) {
    if (!state.colors.has(model)) state.colors.set(model, PALETTE[state.colors.size % PALETTE.length]);
    return state.colors.get(model);
  }

  // ---- connection (the browser client: reconnects, re-subscribes by itself) --------------------

  function setStatus(s) {
    const el = $('status');
    el.textContent = s;
    el.className = 'status ' + s;
  }

  function connect() {
    if (state.client) state.client.disconnect();
    $('connect-error').textContent = '';
    const token = $('token').value.trim();
    const client = new RelayHub('/ws', token ? { token } : { userId: $('user-id').value.trim() || 'dashboard' });
    state.client = client;
    client.on('connecting', ({ attempt }) => setStatus(attempt ? 'reconnecting' : 'connecting'));
    client.on('connected', () => setStatus('connected'));
    client.on('disconnected', ({ code }) => {
      setStatus('disconnected');
      if (code === 4001 || code === 4002) $('connect-error').textContent = 'Authentication failed: check the token.';
    });
    client.on('analytics', onSnapshot);
    client.subscribe('analytics').catch((err) => {
      if (err.code === 'forbidden') {
        $('connect-error').textContent =
          'The hub refused the analytics topic: in JWT mode the token needs "role":"admin".';
      }
    });
    client.connect();
  }

  // ---- data -----------------------------------------------------------------------------------

  function onSnapshot(data) {
    state.latest = data;
    state.snapshots.push({ t: data.generatedAt || Date.now(), data });
    if (state.snapshots.length > HISTORY) state.snapshots.shift();
    const models = Object.keys(data.models || {}).sort();
    models.forEach(colorOf);
    updateModelSelect(models);
    renderTiles(data);
    renderTables(data, models);
    drawAll();
  }

  async function pollHealth() {
    try {
      const res = await fetch('/health', { cache: 'no-store' });
      const h = await res.json();
      const ok = h.status === 'ok';
      setTile('health', ok ? 'ok' : 'degraded', ok ? 'ok' : 'bad');
      setTile('connections', fmt(h.websocket.connections));
      setTile('users', fmt(h.websocket.users));
      setTile('rooms', fmt(h.websocket.rooms));
      const redisOk = h.redis.connected && h.redis.delivering !== false;
      const redisText = !h.redis.connected ? 'down' : (h.redis.delivering === false ? 'stalled' : 'up');
      setTile('redis', redisText, redisOk ? 'ok' : 'bad');
      setTile('canary', h.redis.canaryRoundTripMs == null ? '–' : `${fmt(h.redis.canaryRoundTripMs, 1)} ms`);
      setTile('instance', h.instanceId);
      setTile('uptime', duration(h.uptimeSeconds));
      state.health.push({ t: Date.now(), ...h.websocket });
      if (state.health.length > HISTORY) state.health.shift();
      drawConnections();
    } catch {
      setTile('health', 'unreachable', 'bad');
    }
  }

  function setTile(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    el.classList.remove('ok', 'bad');
    if (cls) el.classList.add(cls);
  }

  function renderTiles(d) {
    setTile('eps', fmt(d.lastMinute.eventsPerSecond, 2));
    setTile('qps', fmt(d.lastMinute.aiQueriesPerSecond, 2));
    setTile('queries-total', fmt(d.totals.aiQueries));
    setTile('tokens-minute', fmt(d.lastMinute.tokens));
    setTile('cost-total', money(d.totals.cost));
    setTile('cost-minute', money(d.lastMinute.cost));
  }

  function cell(text) {
    const td = document.createElement('td');
    td.textContent = text;
    return td;
  }

  function renderTables(d, models) {
    const body = $('models').tBodies[0];
    body.replaceChildren(...models.map((name) => {
      const m = d.models[name];
      const tr = document.createElement('tr');
      const first = cell(name);
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = colorOf(name);
      first.prepend(sw);
      const lat = m.latencyMs || {};
      tr.append(first, cell(fmt(m.queries)), cell(fmt(m.lastMinute.queriesPerSecond, 2)),
        cell(fmt(m.tokens)), cell(money(m.cost)), cell(fmt(lat.p50, 1)), cell(fmt(lat.p90, 1)),
        cell(fmt(lat.p99, 1)));
      return tr;
    }));
    const events = Object.entries(d.events || {}).sort((a, b) => b[1].total - a[1].total);
    $('events').tBodies[0].replaceChildren(...events.map(([name, e]) => {
      const tr = document.createElement('tr');
      tr.append(cell(name), cell(fmt(e.total)), cell(fmt(e.lastMinute)), cell(fmt(e.perSecond, 2)));
      return tr;
    }));
  }

  /** Fills the latency chart's model picker; until a model reports, it says so (disabled). */
  function updateModelSelect(models) {
    const sel = $('latency-model');
    const current = sel.value;
    const have = sel.disabled ? [] : Array.from(sel.options).map((o) => o.value);
    if (have.join('\n') === models.join('\n') && (models.length || sel.options.length)) return;
    sel.disabled = !models.length;
    sel.replaceChildren(...(models.length ? models.map((m) => new Option(m, m))
      : [new Option('no models yet', '')]));
    if (models.includes(current)) sel.value = current;
  }

  // ---- charts ---------------------------------------------------------------------------------

  /** Sizes a canvas for its CSS width and the device pixel ratio; returns its 2D context. */
  function prepare(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = Number(canvas.getAttribute('height'));
    if (canvas.width !== Math.round(w * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
      canvas.style.height = `${h}px`;
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  /** A "nice" upper bound and tick step for values up to `max`. */
  function niceScale(max) {
    if (!(max > 0)) return { top: 1, step: 0.25 };
    const raw = max / 4;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw);
    return { top: Math.ceil(max / step) * step, step };
  }

  /**
   * Draws lines: series = [{name, color, points: [[x, y], ...], dash?}], x in [x0, x1].
   * xLabel(x) formats x ticks, yFormat(y) formats y ticks.
   */
  function lineChart(canvas, { series, x0, x1, xLabel, yFormat, empty }) {
    const { ctx, w, h } = prepare(canvas);
    const ys = series.flatMap((s) => s.points.map((p) => p[1]));
    const { top, step } = niceScale(Math.max(0, ...ys));
    ctx.font = '11px system-ui, sans-serif';
    const labelWidth = Math.max(...[0, step, top].map((y) => ctx.measureText(yFormat(y)).width));
    const pad = { l: Math.ceil(labelWidth) + 12, r: 14, t: 10, b: 40 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    const X = (x) => pad.l + (x1 === x0 ? 0 : (x - x0) / (x1 - x0)) * pw;
    const Y = (y) => pad.t + ph - (y / top) * ph;
    ctx.lineWidth = 1;
    // grid and y ticks
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let y = 0; y <= top + step / 2; y += step) {
      ctx.strokeStyle = '#eef0f3';
      ctx.beginPath(); ctx.moveTo(pad.l, Y(y)); ctx.lineTo(w - pad.r, Y(y)); ctx.stroke();
      ctx.fillStyle = '#6b7280';
      ctx.fillText(yFormat(y), pad.l - 6, Y(y));
    }
    // x ticks: as many as fit without overlapping (at most 5), each label kept inside the chart
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    const widest = Math.max(...[x0, x1].map((x) => ctx.measureText(xLabel(x)).width));
    const intervals = Math.max(1, Math.min(4, Math.floor(pw / (widest + 16))));
    const boxes = [];
    for (let i = 0; i <= intervals; i++) {
      const x = x0 + (x1 - x0) * i / intervals;
      const text = xLabel(x);
      const tw = ctx.measureText(text).width;
      const left = Math.min(Math.max(X(x) - tw / 2, 0), w - tw);
      ctx.fillText(text, left, pad.t + ph + 5);
      boxes.push([Math.round(left), Math.round(left + tw)]);
    }
    canvas.dataset.xLabels = JSON.stringify(boxes); // for the browser test: no overlaps
    ctx.strokeStyle = '#9ca3af';
    ctx.beginPath(); ctx.moveTo(pad.l, pad.t); ctx.lineTo(pad.l, pad.t + ph);
    ctx.lineTo(w - pad.r, pad.t + ph); ctx.stroke();
    if (!series.some((s) => s.points.length)) {
      ctx.fillStyle = '#9ca3af';
      ctx.textBaseline = 'middle';
      ctx.fillText(empty || 'no data yet', pad.l + pw / 2, pad.t + ph / 2);
      return;
    }
    // lines (a lone point is drawn as a dot)
    for (const s of series) {
      ctx.strokeStyle = ctx.fillStyle = s.color;
      ctx.lineWidth = 2;
      ctx.setLineDash(s.dash || []);
      ctx.beginPath();
      s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
      ctx.stroke();
      if (s.points.length === 1) {
        const [[x, y]] = s.points;
        ctx.beginPath(); ctx.arc(X(x), Y(y), 3, 0, 2 * Math.PI); ctx.fill();
      }
    }
    ctx.setLineDash([]);
    // legend
    let lx = pad.l;
    ctx.textAlign = 'left';
    ctx.textBaseline = 'middle';
    const ly = h - 9;
    for (const s of series) {
      const label = s.name.length > 24 ? s.name.slice(0, 23) + '…' : s.name;
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.setLineDash(s.dash || []);
      ctx.beginPath(); ctx.moveTo(lx, ly); ctx.lineTo(lx + 16, ly); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = '#374151';
      ctx.fillText(label, lx + 20, ly);
      lx += 30 + ctx.measureText(label).width;
      if (lx > w - 60) break;
    }
  }

  const clock = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  /** From the first snapshot kept (at least 30 s back) to the latest. */
  const timeRange = () => {
    const t1 = state.latest ? state.latest.generatedAt : Date.now();
    const first = state.snapshots.length ? state.snapshots[0].t : t1;
    return [Math.min(first, t1 - 30000), t1];
  };

  function drawQps() {
    const d = state.latest;
    const series = d ? Object.keys(d.models).sort().map((name) => {
      // The last bucket is the second in progress: leave it out rather than show a dip.
      const s = (d.models[name].queriesPerSecondSeries || []).slice(0, -1);
      return { name, color: colorOf(name), points: s.map((v, i) => [i - s.length, v]) };
    }) : [];
    lineChart($('chart-qps'), {
      series, x0: -59, x1: -1,
      xLabel: (x) => `${Math.round(x)} s`,
      yFormat: (y) => fmt(y, 2),
      empty: 'no AI queries yet',
    });
  }

  function drawLatency() {
    const model = $('latency-model').value;
    const [x0, x1] = timeRange();
    const pick = (q) => state.snapshots
      .filter((s) => s.data.models[model] && s.data.models[model].lastMinute.latencyMs.count)
      .map((s) => [s.t, s.data.models[model].lastMinute.latencyMs[q]]);
    const color = model ? colorOf(model) : '#2563eb';
    lineChart($('chart-latency'), {
      series: model ? [
        { name: 'p50', color, points: pick('p50') },
        { name: 'p90', color, points: pick('p90'), dash: [6, 3] },
        { name: 'p99', color, points: pick('p99'), dash: [2, 3] },
      ] : [],
      x0, x1, xLabel: clock, yFormat: (y) => `${fmt(y, 1)} ms`,
      empty: 'no latencies yet',
    });
  }

  function drawCost() {
    const [x0, x1] = timeRange();
    const models = state.latest ? Object.keys(state.latest.models).sort() : [];
    const series = models.map((name) => ({
      name, color: colorOf(name),
      points: state.snapshots.filter((s) => s.data.models[name]).map((s) => [s.t, s.data.models[name].cost]),
    }));
    lineChart($('chart-cost'), {
      series, x0, x1, xLabel: clock, yFormat: (y) => money(y), empty: 'no cost reported yet',
    });
  }

  function drawConnections() {
    const t1 = Date.now();
    const x0 = Math.min(state.health.length ? state.health[0].t : t1, t1 - 30000);
    lineChart($('chart-conns'), {
      series: [
        { name: 'connections', color: '#2563eb', points: state.health.map((p) => [p.t, p.connections]) },
        { name: 'users', color: '#16a34a', points: state.health.map((p) => [p.t, p.users]) },
        { name: 'rooms', color: '#d97706', points: state.health.map((p) => [p.t, p.rooms]) },
      ],
      x0, x1: t1, xLabel: clock, yFormat: (y) => fmt(y, 2),
    });
  }

  function drawAll() {
    drawQps();
    drawLatency();
    drawCost();
  }

  // ---- start ----------------------------------------------------------------------------------

  $('connect-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('relay-hub-dashboard-token', $('token').value.trim());
    connect();
  });
  $('latency-model').addEventListener('change', drawLatency);
  addEventListener('resize', () => { drawAll(); drawConnections(); });

  const params = new URLSearchParams(location.search);
  if (params.get('userId')) $('user-id').value = params.get('userId');
  $('token').value = params.get('token') || sessionStorage.getItem('relay-hub-dashboard-token') || '';
  drawAll();
  pollHealth();
  setInterval(pollHealth, HEALTH_EVERY_MS);
  // Connect at once: dev mode needs no token, and a saved token is reused.
  connect();
})();
