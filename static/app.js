// relay-hub chat demo: plain JS, no build step. Speaks the native protocol on /ws.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  const state = {
    ws: null,
    identity: null,          // {userId, name, token}
    userId: null,            // as the hub reports it
    wanted: false,           // the user wants to be connected
    attempt: 0,
    reconnectTimer: null,
    rooms: new Map(),        // room -> {messages: [], seen: Set, lastId, members: Map, unread}
    active: null,
    nextId: 1,
  };

  // ---- connection ---------------------------------------------------------------------------

  function setStatus(s) {
    const el = $('status');
    el.textContent = s;
    el.className = 'status ' + s;
    const live = s === 'connected';
    $('message-input').disabled = !live || !state.active;
    $('send').disabled = !live || !state.active;
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
    setStatus(state.attempt ? 'reconnecting' : 'connecting');
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
      if (ev.code === 4001) {
        event(`Authentication failed (${ev.reason || 'invalid token'})`, true);
        state.wanted = false;
      }
      if (!state.wanted) { setStatus('disconnected'); return; }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    state.attempt += 1;
    const base = Math.min(10000, 500 * 2 ** (state.attempt - 1));
    const delay = base / 2 + Math.random() * base / 2;
    setStatus('reconnecting');
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function send(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  // ---- frames -------------------------------------------------------------------------------

  function onFrame(f) {
    switch (f.type) {
      case 'connected':
        state.attempt = 0;
        state.userId = f.userId;
        setStatus('connected');
        for (const [room, r] of state.rooms) {
          const frame = { type: 'join-room', room };
          if (r.lastId) frame.since = r.lastId;
          send(frame);
        }
        break;
      case 'joined': onJoined(f); break;
      case 'left': break;
      case 'chat-message': onChat(f.data); break;
      case 'presence': onPresence(f); break;
      case 'notification':
        event(`🔔 ${f.data.title}: ${f.data.message}`);
        break;
      case 'ai-result':
        if (f.data.status === 'success') {
          event(`🤖 job ${f.data.jobId} done: ${summarize(f.data.result)}`);
        } else {
          event(`🤖 job ${f.data.jobId} failed: ${f.data.error}`, true);
        }
        break;
      case 'error':
        event(`⚠ ${f.code}: ${f.message}`, true);
        break;
    }
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

  function room(name) {
    if (!state.rooms.has(name)) {
      state.rooms.set(name, { messages: [], seen: new Set(), lastId: null, members: new Map(), unread: 0 });
    }
    return state.rooms.get(name);
  }

  function onJoined(f) {
    const r = room(f.room);
    if (f.recovered === false) {
      r.messages = [];
      r.seen.clear();
      notice(`Missed more messages in ${f.room} than the history holds; showing the latest.`);
    }
    for (const m of f.history || []) addMessage(r, m);
    r.members = new Map((f.members || []).map((m) => [String(m.userId), m.username]));
    if (!state.active) state.active = f.room;
    render();
  }

  function addMessage(r, m) {
    if (m.id) {
      if (r.seen.has(m.id)) return false;
      r.seen.add(m.id);
      r.lastId = m.id;
    }
    r.messages.push(m);
    if (r.messages.length > 500) r.messages.shift();
    return true;
  }

  function onChat(m) {
    const r = room(m.roomId);
    if (!addMessage(r, m)) return;
    if (state.active !== m.roomId) r.unread += 1;
    render();
  }

  function onPresence(f) {
    const r = room(f.room);
    if (f.event === 'join') r.members.set(String(f.userId), f.username);
    else r.members.delete(String(f.userId));
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
    const list = $('room-list');
    list.replaceChildren();
    for (const [name, r] of state.rooms) {
      const li = el('li', name === state.active ? 'active' : '', '');
      li.append(el('span', '', name));
      if (r.unread) li.append(el('span', 'unread', String(r.unread)));
      const leave = el('button', 'leave', '×');
      leave.title = 'Leave';
      leave.onclick = (e) => { e.stopPropagation(); leaveRoom(name); };
      li.append(leave);
      li.onclick = () => { state.active = name; r.unread = 0; render(); };
      list.append(li);
    }
    $('room-title').textContent = state.active || 'No room';
    const msgs = $('messages');
    msgs.replaceChildren();
    const r = state.active && state.rooms.get(state.active);
    for (const m of r ? r.messages : []) {
      const li = el('li');
      li.append(el('span', 'who', m.username));
      li.append(document.createTextNode(m.message));
      li.append(el('span', 'when', new Date(m.timestamp).toLocaleTimeString()));
      msgs.append(li);
    }
    msgs.scrollTop = msgs.scrollHeight;
    renderMembers();
    setStatus($('status').textContent);
  }

  function renderMembers() {
    const ul = $('members');
    ul.replaceChildren();
    const r = state.active && state.rooms.get(state.active);
    for (const [id, name] of r ? r.members : []) ul.append(el('li', '', name === id ? name : `${name} (${id})`));
  }

  function event(text, isError) {
    const li = el('li', isError ? 'error' : '', text);
    $('events').prepend(li);
    while ($('events').children.length > 50) $('events').lastChild.remove();
  }

  function notice(text) {
    const n = $('recovery');
    n.textContent = text;
    n.hidden = false;
    setTimeout(() => { n.hidden = true; }, 8000);
  }

  // ---- actions ------------------------------------------------------------------------------

  function leaveRoom(name) {
    send({ type: 'leave-room', room: name });
    state.rooms.delete(name);
    if (state.active === name) state.active = state.rooms.keys().next().value || null;
    render();
  }

  $('login-form').onsubmit = (e) => {
    e.preventDefault();
    state.identity = {
      userId: $('user-id').value.trim(),
      name: $('user-name').value.trim(),
      token: $('token').value.trim(),
    };
    localStorage.setItem('relay-hub-identity', JSON.stringify(state.identity));
    state.wanted = true;
    $('login').hidden = true;
    $('app').hidden = false;
    connect();
  };

  $('disconnect').onclick = () => {
    state.wanted = false;
    clearTimeout(state.reconnectTimer);
    if (state.ws) state.ws.close(1000);
    $('login').hidden = false;
    $('app').hidden = true;
  };

  $('join-form').onsubmit = (e) => {
    e.preventDefault();
    const name = $('room-input').value.trim();
    if (!name) return;
    room(name);
    state.active = name;
    send({ type: 'join-room', room: name, id: state.nextId++ });
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
      if (res.ok) event(`⏳ job ${body.id} queued`);
      else event(`⚠ job refused: ${body.error ? body.error.message : res.status}`, true);
    } catch (err) {
      event(`⚠ job not sent: ${err}`, true);
    }
  };

  // Prefill from the query string (?userId=&name=&autoconnect=1) or the last session.
  const saved = JSON.parse(localStorage.getItem('relay-hub-identity') || 'null');
  $('user-id').value = params.get('userId') || (saved && saved.userId) || String(1 + Math.floor(Math.random() * 1000));
  $('user-name').value = params.get('name') || (saved && saved.name) || '';
  $('token').value = params.get('token') || '';
  if (params.get('autoconnect')) $('login-form').requestSubmit();

  // For tests and the curious.
  window.hub = { state, send, connect };
})();
