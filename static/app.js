// relay-hub chat demo: plain ES modules, no build step. The protocol is the browser client's
// business (`/client/relay-hub.js`, docs/client.md): it reconnects, resumes the session (or
// re-joins every room with `since`), refreshes nothing here (a pasted JWT is fixed), and
// delivers each message once and in order. This file wires it to the page's parts:
// chat.js (rooms, messages, members), inbox.js (the bell and the notifications), status.js
// (header), toasts.js, events-panel.js, jobs.js.
import { RelayHub } from '/client/relay-hub.js';
import { ChatView } from './chat.js';
import { $ } from './dom.js';
import { logEvent } from './events-panel.js';
import { InboxView } from './inbox.js';
import { setupJobForm, setupJobStream, summarize } from './jobs.js';
import { followConnection, setStatus, showOfflineToggle } from './status.js';
import { toast } from './toasts.js';

const params = new URLSearchParams(location.search);
let client = null;   // the RelayHub while signed in
let offline = false; // the user chose "Go offline"
const stats = { connects: 0 };

const inbox = new InboxView({
  markRead: (marks) => {
    try {
      client?.markRead(marks);
    } catch {
      logEvent('Not connected: not marked read', true);
    }
  },
});

const chat = new ChatView({
  onSelect: (room) => chat.select(room),
  onLeave: (room) => {
    client?.leaveRoom(room).catch((err) => logEvent(`${err.code}: ${err.message}`, true));
    chat.removeRoom(room);
  },
});

/** Connects as `identity` ({userId, name} in dev mode, or {token}). */
function signIn(identity) {
  const options = identity.token ? { token: identity.token } : { userId: identity.userId, name: identity.name };
  client = new RelayHub('/ws', options);
  followConnection(client, () => offline);
  client.on('state', ({ to }) => {
    if (to !== 'connected') chat.setLive(false);
    showOfflineToggle(true, offline);
  });
  client.on('connected', ({ userId, unread }) => {
    stats.connects += 1;
    $('bell').hidden = false;
    inbox.setUnread(unread);
    // The list from the inbox: what was read or removed meanwhile, on any device, shows.
    client.inboxPage({ limit: 20 }).then((page) => inbox.load(page), (err) => logEvent(`inbox: ${err.message}`, true));
    chat.setLive(true, userId);
    $('whoami').textContent = identity.name || String(userId);
    $('whoami').hidden = false;
  });
  client.on('disconnected', ({ code, reason }) => {
    if (code === 4001 || code === 4002) logEvent(`Authentication failed (${reason || 'invalid token'})`, true);
  });
  client.on('joined', (info) => chat.onJoined(info));
  client.on('chat-message', (m) => chat.onMessage(m));
  client.on('presence', (p) => chat.onPresence(p));
  client.on('inbox-state', (state) => inbox.apply(state));
  client.on('notification', (n) => {
    inbox.add(n);
    logEvent(`${n.title}: ${n.message}`, false, 'notification');
    toast(n.title, n.message);
  });
  setupJobStream(client);
  client.on('ai-result', (r) => {
    if (r.status === 'cancelled') {
      logEvent(`job ${r.jobId} stopped`, false, 'job');
    } else if (r.status === 'success') {
      logEvent(`job ${r.jobId} done: ${summarize(r.result)}`, false, 'job');
      toast('Job done', summarize(r.result));
    } else {
      logEvent(`job ${r.jobId} failed: ${r.error}`, true, 'job');
      toast('Job failed', r.error, true);
    }
  });
  client.on('error', (err) => {
    if (err.room) chat.removeRoom(err.room);
    logEvent(`${err.code}: ${err.message}`, true);
  });
  client.connect();
}

function joinRoom(name) {
  chat.addRoom(name);
  // A refusal also comes as an `error` event (handled above).
  client.joinRoom(name).catch(() => {});
}

$('login-form').onsubmit = (e) => {
  e.preventDefault();
  const identity = {
    userId: $('user-id').value.trim(),
    name: $('user-name').value.trim(),
    token: $('token').value.trim(),
  };
  localStorage.setItem('relay-hub-identity', JSON.stringify({ userId: identity.userId, name: identity.name }));
  offline = false;
  $('login').hidden = true;
  $('app').hidden = false;
  signIn(identity);
};

$('disconnect').onclick = () => {
  client?.disconnect();
  client = null;
  offline = false;
  chat.clear();
  $('whoami').hidden = true;
  $('bell').hidden = true;
  $('inbox').hidden = true;
  $('login').hidden = false;
  $('app').hidden = true;
  showOfflineToggle(false, false);
  setStatus('disconnected');
};

$('offline-toggle').onclick = () => {
  offline = !offline;
  if (offline) client?.disconnect();
  else client?.connect();
  showOfflineToggle(true, offline);
};

$('join-form').onsubmit = (e) => {
  e.preventDefault();
  const name = $('room-input').value.trim();
  if (!name) return;
  joinRoom(name);
  $('room-input').value = '';
};

$('chat-form').onsubmit = (e) => {
  e.preventDefault();
  const text = $('message-input').value;
  if (!text.trim() || !chat.active) return;
  try {
    client.sendMessage(chat.active, text);
    $('message-input').value = '';
  } catch {
    logEvent('Not connected: message not sent', true);
  }
};

setupJobForm(() => client?.userId ?? null);

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
window.demo = { get client() { return client; }, chat, inbox, stats };
