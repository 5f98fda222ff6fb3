// relay-hub chat demo: plain JS, no build step. Speaks the native protocol on /ws.
//
// Recovery: every chat message carries its history `id`. The page remembers the last id per
// room; after a reconnect it re-joins with `since` = that id and the hub answers with exactly
// the missed messages (or `recovered: false` when the gap is longer than the history, and the
// page reloads the room from the history it got). Messages are also de-duplicated by id.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  const MAX_MESSAGES = 500;      // per room, in the page
  const JOIN_RETRY_MS = 1500;    // after an `unavailable` join error

  const state = {
    ws: null,
    identity: null,          // {userId, name, token}
    userId: null,            // as the hub reports it in `connected`
    wanted: false,           // the user wants to be connected (signed in)
    offline: false,          // the user chose "Go offline"
    attempt: 0,              // reconnect attempts since the last success
    reconnectTimer: null,
    countdownTimer: null,
    retryAt: 0,
    rooms: new Map(),        // room -> Room
    active: null,
    nextId: 1,
    pendingJoins: new Map(), // frame id -> room
    status: 'disconnected',
  };

  // What tests (and the curious) can read: every `joined` the page got.
  const stats = { joins: [], connects: 0 };

  function newRoom() {
    return { messages: [], ids: new Set(), lastId: null, members: new Map(), count: 0, unread: 0, joined: false };
  }

  // ---- connection ---------------------------------------------------------------------------

  function setStatus(s, detail) {
    state.status = s;
    const el = $('status');
    el.textContent = detail || s;
    el.className = 'status ' + s;
    el.dataset.state = s;
    const toggle = $('offline-toggle');
    toggle.hidden = !state.wanted;
    toggle.textContent = state.offline ? 'Go online' : 'Go offline';
    updateComposer();
  }

  function updateComposer() {
    const r = state.active && state.rooms.get(state.active);
    const live = state.status === 'connected' && r && r.joined;
    $('message-input').disabled = !live;
    $('send').disabled = !live;
    $('message-input').placeholder = live ? `Message ${state.active}`
      : state.active ? 'Waiting for the connection…' : 'Join a room first';
  }

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams();
    if (state.identity.token) q.set('token', state.identity.token);
    else {
      q.set('userId', state.identity.userId);
      if (state.identity.name) q.set('name', state.identity.name);
    }
    return `${proto}//${location.host}/ws?${q}`;
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    if (!state.wanted || state.offline) return;
    setStatus(state.attempt ? 'reconnecting' : 'connecting',
      state.attempt ? `reconnecting (attempt ${state.attempt})` : 'connecting');
    const ws = new WebSocket(wsUrl());
    state.ws = ws;
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (state.ws !== ws) return;
      state.ws = null;
      for (const r of state.rooms.values()) r.joined = false;
      state.pendingJoins.clear();
      if (ev.code === 4001) {
        event(`Authentication failed (${ev.reason || 'invalid token'})`, true);
        state.wanted = false;
      }
      if (!state.wanted) { setStatus('disconnected'); return; }
      if (state.offline) { setStatus('offline'); return; }
      scheduleReconnect();
    };
  }

  // Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... up to 10 s.
  function scheduleReconnect() {
    state.attempt += 1;
    const base = Math.min(10000, 500 * 2 ** (state.attempt - 1));
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    state.retryAt = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
      setStatus('reconnecting', `reconnecting in ${left}s`);
    };
    tick();
    state.countdownTimer = setInterval(tick, 500);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  function joinRoom(name) {
    const r = state.rooms.get(name);
    if (!r) return;
    const id = state.nextId++;
    const frame = { type: 'join-room', room: name, id };
    if (r.lastId) frame.since = r.lastId;
    if (send(frame)) state.pendingJoins.set(id, name);
  }

  // ---- frames -------------------------------------------------------------------------------

  function onFrame(f) {
    switch (f.type) {
      case 'connected':
        clearInterval(state.countdownTimer);
        state.attempt = 0;
        state.userId = f.userId;
        stats.connects += 1;
        $('whoami').textContent = state.identity.name || String(f.userId);
        $('whoami').hidden = false;
        setStatus('connected');
        for (const room of state.rooms.keys()) joinRoom(room);
        break;
      case 'joined': onJoined(f); break;
      case 'left': break;
      case 'chat-message': onChat(f.data); break;
      case 'presence': onPresence(f); break;
      case 'notification':
        event(`${f.data.title}: ${f.data.message}`, false, 'notification');
        toast(f.data.title, f.data.message);
        break;
      case 'ai-result':
        if (f.data.status === 'success') {
          event(`job ${f.data.jobId} done: ${summarize(f.data.result)}`, false, 'job');
          toast('Job done', summarize(f.data.result));
        } else {
          event(`job ${f.data.jobId} failed: ${f.data.error}`, true, 'job');
          toast('Job failed', f.data.error, true);
        }
        break;
      case 'error': onError(f); break;
    }
  }

  function onError(f) {
    const room = f.id !== undefined && state.pendingJoins.get(f.id);
    if (room) {
      state.pendingJoins.delete(f.id);
      if (f.code === 'unavailable') {
        event(`could not join ${room} yet (${f.message}); retrying`, true);
        setTimeout(() => { if (state.rooms.has(room) && !state.rooms.get(room).joined) joinRoom(room); }, JOIN_RETRY_MS);
        return;
      }
      state.rooms.delete(room);
      if (state.active === room) state.active = state.rooms.keys().next().value || null;
      render();
    }
    event(`${f.code}: ${f.message}`, true);
  }

  function summarize(result) {
    if (result && typeof result === 'object') {
      const parts = [];
      if ('words' in result) parts.push(`${result.words} words`);
      if ('sentences' in result) parts.push(`${result.sentences} sentences`);
      if (Array.isArray(result.keywords)) parts.push(`keywords: ${result.keywords.join(', ')}`);
      if (parts.length) return parts.join(' · ');
    }
    return JSON.stringify(result);
  }

  function onJoined(f) {
    if (f.id !== undefined) state.pendingJoins.delete(f.id);
    const r = state.rooms.get(f.room);
    if (!r) return; // left meanwhile
    const history = f.history || [];
    const resumed = r.lastId !== null && f.recovered !== undefined;
    stats.joins.push({ room: f.room, since: resumed ? r.lastId : null, recovered: f.recovered, history: history.length });
    if (!resumed || f.recovered === false) {
      // A fresh join, or a gap longer than the history: show what the history holds now.
      r.messages = [];
      r.ids.clear();
      r.lastId = null;
    }
    let added = 0;
    for (const m of history) if (addMessage(r, m)) added += 1;
    if (resumed && f.recovered === false) {
      notice(`Missed more messages in ${f.room} than the history keeps; reloaded the latest ${history.length}.`);
    } else if (resumed && added) {
      notice(`Recovered ${added} missed message${added === 1 ? '' : 's'} in ${f.room}.`);
    }
    r.members = new Map((f.members || []).map((m) => [String(m.userId), m.username]));
    r.count = Math.max(f.memberCount || 0, r.members.size);
    r.joined = true;
    if (!state.active) state.active = f.room;
    render();
  }

  function addMessage(r, m) {
    if (m.id) {
      if (r.ids.has(m.id)) return false;
      r.ids.add(m.id);
      r.lastId = m.id;
    }
    r.messages.push({ kind: 'chat', ...m });
    while (r.messages.length > MAX_MESSAGES) r.messages.shift();
    return true;
  }

  function onChat(m) {
    const r = state.rooms.get(m.roomId);
    if (!r || !addMessage(r, m)) return;
    if (state.active !== m.roomId) r.unread += 1;
    if (state.active === m.roomId) appendMessage(r.messages[r.messages.length - 1]);
    else renderRooms();
  }

  function onPresence(f) {
    const r = state.rooms.get(f.room);
    if (!r) return;
    const id = String(f.userId);
    const known = r.members.has(id);
    if (f.event === 'join') r.members.set(id, f.username);
    else r.members.delete(id);
    if (known !== (f.event === 'join')) r.count = Math.max(r.members.size, r.count + (f.event === 'join' ? 1 : -1));
    if (known !== (f.event === 'join') && id !== String(state.userId)) {
      r.messages.push({ kind: 'system', text: `${f.username} ${f.event === 'join' ? 'joined' : 'left'}`, timestamp: Date.now() });
      if (f.room === state.active) appendMessage(r.messages[r.messages.length - 1]);
    }
    if (f.room === state.active) renderMembers();
  }

  // ---- rendering ----------------------------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function render() {
    renderRooms();
    const r = state.active && state.rooms.get(state.active);
    $('room-title').textContent = state.active ? `# ${state.active}` : 'No room yet';
    const msgs = $('messages');
    msgs.replaceChildren();
    if (!r) msgs.append(el('li', 'empty', 'Join a room to start chatting.'));
    else if (!r.messages.length) msgs.append(el('li', 'empty', r.joined ? 'No messages yet. Say hello!' : 'Joining…'));
    for (const m of r ? r.messages : []) appendMessage(m, true);
    msgs.scrollTop = msgs.scrollHeight;
    renderMembers();
    updateComposer();
  }

  function renderRooms() {
    const list = $('room-list');
    list.replaceChildren();
    for (const [name, r] of state.rooms) {
      const li = el('li', name === state.active ? 'active' : '');
      li.dataset.room = name;
      const label = el('button', 'room-name', name);
      label.type = 'button';
      label.onclick = () => { state.active = name; r.unread = 0; render(); };
      li.append(label);
      if (r.unread) li.append(el('span', 'unread', String(r.unread)));
      const leave = el('button', 'leave', '×');
      leave.type = 'button';
      leave.title = `Leave ${name}`;
      leave.setAttribute('aria-label', `Leave ${name}`);
      leave.onclick = () => leaveRoom(name);
      li.append(leave);
      list.append(li);
    }
  }

  function appendMessage(m, bulk) {
    const msgs = $('messages');
    const empty = msgs.querySelector('.empty');
    if (empty) empty.remove();
    const atBottom = msgs.scrollHeight - msgs.scrollTop - msgs.clientHeight < 40;
    let li;
    if (m.kind === 'system') {
      li = el('li', 'system', m.text);
    } else {
      const mine = state.userId !== null && String(m.userId) === String(state.userId);
      li = el('li', mine ? 'msg mine' : 'msg');
      if (m.id) li.dataset.id = m.id;
      const meta = el('div', 'meta');
      meta.append(el('span', 'who', m.username));
      const when = new Date(m.timestamp);
      meta.append(el('time', 'when', isNaN(when) ? '' : when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
      li.append(meta, el('div', 'text', m.message));
    }
    msgs.append(li);
    if (!bulk && atBottom) msgs.scrollTop = msgs.scrollHeight;
  }

  function renderMembers() {
    const ul = $('members');
    ul.replaceChildren();
    const r = state.active && state.rooms.get(state.active);
    $('members-room').textContent = r ? `(${r.count})` : '';
    $('member-count').textContent = r ? `${r.count} online` : '';
    const entries = r ? [...r.members].sort((a, b) => a[1].localeCompare(b[1])) : [];
    for (const [id, name] of entries) {
      const li = el('li', '', name);
      li.dataset.userId = id;
      if (name !== id) li.append(el('span', 'muted', ` #${id}`));
      if (id === String(state.userId)) li.append(el('span', 'you', 'you'));
      ul.append(li);
    }
  }

  /** Adds a line to the Events panel, tagged in plain text (`notification`, `job`, `error`). */
  function event(text, isError, kind) {
    const li = el('li', isError ? 'error' : '');
    li.append(el('span', 'tag', kind || (isError ? 'error' : 'info')), document.createTextNode(text));
    $('events').prepend(li);
    while ($('events').children.length > 50) $('events').lastChild.remove();
  }

  const TOAST_MS = 6000;
  /** A toast at the top of the screen (the Events panel is below the fold on a phone). */
  function toast(title, message, isError) {
    const t = el('div', isError ? 'toast error' : 'toast');
    t.setAttribute('role', 'status');
    t.append(el('strong', '', title || ''), el('span', '', message || ''));
    const close = el('button', 'toast-close', 'Dismiss');
    close.type = 'button';
    close.onclick = () => t.remove();
    t.append(close);
    const box = $('toasts');
    box.prepend(t);
    while (box.children.length > 3) box.lastChild.remove();
    setTimeout(() => t.remove(), TOAST_MS);
  }

  let noticeTimer = null;
  function notice(text) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 8000);
  }

  // ---- actions ------------------------------------------------------------------------------

  function leaveRoom(name) {
    send({ type: 'leave-room', room: name });
    state.rooms.delete(name);
    if (state.active === name) state.active = state.rooms.keys().next().value || null;
    render();
  }

  function goOffline(offline) {
    state.offline = offline;
    if (offline) {
      clearTimeout(state.reconnectTimer);
      clearInterval(state.countdownTimer);
      const ws = state.ws;
      if (ws) ws.close(1000, 'going offline'); else setStatus('offline');
    } else {
      state.attempt = 0;
      connect();
    }
  }

  $('login-form').onsubmit = (e) => {
    e.preventDefault();
    state.identity = {
      userId: $('user-id').value.trim(),
      name: $('user-name').value.trim(),
      token: $('token').value.trim(),
    };
    localStorage.setItem('relay-hub-identity', JSON.stringify({ userId: state.identity.userId, name: state.identity.name }));
    state.wanted = true;
    state.offline = false;
    $('login').hidden = true;
    $('app').hidden = false;
    connect();
  };

  $('disconnect').onclick = () => {
    state.wanted = false;
    state.offline = false;
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    if (state.ws) state.ws.close(1000);
    state.rooms.clear();
    state.active = null;
    $('whoami').hidden = true;
    $('login').hidden = false;
    $('app').hidden = true;
    setStatus('disconnected');
    render();
  };

  $('offline-toggle').onclick = () => goOffline(!state.offline);

  $('join-form').onsubmit = (e) => {
    e.preventDefault();
    const name = $('room-input').value.trim();
    if (!name) return;
    if (!state.rooms.has(name)) {
      state.rooms.set(name, newRoom());
      joinRoom(name);
    }
    state.active = name;
    state.rooms.get(name).unread = 0;
    $('room-input').value = '';
    render();
  };

  $('chat-form').onsubmit = (e) => {
    e.preventDefault();
    const text = $('message-input').value;
    if (!text.trim() || !state.active) return;
    if (send({ type: 'chat-message', room: state.active, message: text })) {
      $('message-input').value = '';
    } else {
      event('Not connected: message not sent', true);
    }
  };

  $('job-form').onsubmit = async (e) => {
    e.preventDefault();
    const text = $('job-text').value.trim();
    if (!text || state.userId === null) return;
    try {
      const res = await fetch('/api/dev/jobs', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'llama_inference', userId: state.userId, payload: { text } }),
      });
      const body = await res.json();
      if (res.ok) event(`job ${body.id} queued`, false, 'job');
      else event(`job refused: ${body.error ? body.error.message : res.status}`, true, 'job');
    } catch (err) {
      event(`job not sent: ${err}`, true, 'job');
    }
  };

  // Prefill from the query string (?userId=&name=&room=&autoconnect=1) or the last session.
  const saved = JSON.parse(localStorage.getItem('relay-hub-identity') || 'null');
  $('user-id').value = params.get('userId') || (saved && saved.userId) || String(1 + Math.floor(Math.random() * 1000));
  $('user-name').value = params.get('name') || (saved && saved.name) || '';
  $('token').value = params.get('token') || '';
  if (params.get('autoconnect')) {
    $('login-form').requestSubmit();
    const room = params.get('room');
    if (room) { $('room-input').value = room; $('join-form').requestSubmit(); }
  }

  // For tests and the curious.
  window.hub = { state, stats, send, connect, goOffline };
})();
