// The chat view: rooms (with unread counts), the active room's messages and members. It only
// renders what the client delivers: `joined`, `chat-message` (each once, in order, missed ones
// included after a reconnect) and `presence`.
import { $, el } from './dom.js';

const MAX_MESSAGES = 500; // per room, in the page

export class ChatView {
  constructor({ onSelect, onLeave }) {
    this.rooms = new Map(); // room -> {messages, members, count, unread, joined, arrived}
    this.active = null;
    this.userId = null;
    this.live = false;
    this.onSelect = onSelect;
    this.onLeave = onLeave;
    /** Every `joined` the page got, for tests and the curious. */
    this.joins = [];
  }

  /** A room the user asked to join (shown as "Joining…" until `joined`). */
  addRoom(name) {
    if (!this.rooms.has(name)) {
      this.rooms.set(name, { messages: [], members: new Map(), count: 0, unread: 0, joined: false, arrived: 0 });
    }
    this.select(name);
  }

  removeRoom(name) {
    this.rooms.delete(name);
    if (this.active === name) this.active = this.rooms.keys().next().value || null;
    this.render();
  }

  clear() {
    this.rooms.clear();
    this.active = null;
    this.render();
  }

  select(name) {
    this.active = name;
    const r = this.rooms.get(name);
    if (r) r.unread = 0;
    this.render();
  }

  /** The connection is up (`true`) or not; every room waits for its next `joined`. */
  setLive(live, userId) {
    this.live = live;
    if (userId !== undefined) this.userId = userId;
    for (const r of this.rooms.values()) {
      if (!live) r.joined = false;
      r.arrived = 0;
    }
    this.updateComposer();
  }

  onJoined(info) {
    const r = this.rooms.get(info.room);
    if (!r) return;
    this.joins.push({ room: info.room, rejoin: info.rejoin, recovered: info.recovered, missed: info.missed });
    // Missed messages came before this `joined` (a resumed session) or follow it (`since`).
    const recovered = r.arrived + info.missed;
    if (info.rejoin && info.recovered === false) {
      this.push(r, { kind: 'system', text: 'Some messages were missed: more than the history keeps.' });
      this.notice(`Missed more messages in ${info.room} than the history keeps; showing what it still has.`);
    } else if (info.rejoin && recovered) {
      this.notice(`Recovered ${recovered} missed message${recovered === 1 ? '' : 's'} in ${info.room}.`);
    }
    r.members = new Map(info.members.map((m) => [String(m.userId), m.username]));
    r.count = Math.max(info.memberCount, r.members.size);
    r.joined = true;
    if (!this.active) this.active = info.room;
    this.render();
  }

  onMessage(m) {
    const r = this.rooms.get(m.roomId);
    if (!r) return;
    if (!r.joined) r.arrived += 1;
    this.push(r, { kind: 'chat', ...m });
    if (this.active !== m.roomId) {
      r.unread += 1;
      this.renderRooms();
    }
  }

  onPresence(p) {
    const r = this.rooms.get(p.room);
    if (!r) return;
    const id = String(p.userId);
    const joining = p.event === 'join';
    const changed = r.members.has(id) !== joining;
    if (joining) r.members.set(id, p.username);
    else r.members.delete(id);
    if (changed) {
      r.count = Math.max(r.members.size, r.count + (joining ? 1 : -1));
      if (id !== String(this.userId)) this.push(r, { kind: 'system', text: `${p.username} ${joining ? 'joined' : 'left'}` });
    }
    if (p.room === this.active) this.renderMembers();
  }

  /** Adds a message to room `r` (and to the screen when it is the active room). */
  push(r, m) {
    r.messages.push(m);
    while (r.messages.length > MAX_MESSAGES) r.messages.shift();
    if (r === this.rooms.get(this.active)) this.appendMessage(m);
  }

  // ---- rendering ----------------------------------------------------------------------------

  render() {
    this.renderRooms();
    const r = this.active && this.rooms.get(this.active);
    $('room-title').textContent = this.active ? `# ${this.active}` : 'No room yet';
    const msgs = $('messages');
    msgs.replaceChildren();
    if (!r) msgs.append(el('li', 'empty', 'Join a room to start chatting.'));
    else if (!r.messages.length) msgs.append(el('li', 'empty', r.joined ? 'No messages yet. Say hello!' : 'Joining…'));
    for (const m of r ? r.messages : []) this.appendMessage(m, true);
    msgs.scrollTop = msgs.scrollHeight;
    this.renderMembers();
    this.updateComposer();
  }

  renderRooms() {
    const list = $('room-list');
    list.replaceChildren();
    for (const [name, r] of this.rooms) {
      const li = el('li', name === this.active ? 'active' : '');
      li.dataset.room = name;
      const label = el('button', 'room-name', name);
      label.type = 'button';
      label.onclick = () => this.onSelect(name);
      li.append(label);
      if (r.unread) li.append(el('span', 'unread', String(r.unread)));
      const leave = el('button', 'leave', '×');
      leave.type = 'button';
      leave.title = `Leave ${name}`;
      leave.setAttribute('aria-label', `Leave ${name}`);
      leave.onclick = () => this.onLeave(name);
      li.append(leave);
      list.append(li);
    }
  }

  appendMessage(m, bulk) {
    const msgs = $('messages');
    const empty = msgs.querySelector('.empty');
    if (empty) empty.remove();
    const atBottom = msgs.scrollHeight - msgs.scrollTop - msgs.clientHeight < 40;
    let li;
    if (m.kind === 'system') {
      li = el('li', 'system', m.text);
    } else {
      const mine = this.userId !== null && String(m.userId) === String(this.userId);
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

  renderMembers() {
    const ul = $('members');
    ul.replaceChildren();
    const r = this.active && this.rooms.get(this.active);
    $('members-room').textContent = r ? `(${r.count})` : '';
    $('member-count').textContent = r ? `${r.count} online` : '';
    const entries = r ? [...r.members].sort((a, b) => a[1].localeCompare(b[1])) : [];
    for (const [id, name] of entries) {
      const li = el('li', '', name);
      li.dataset.userId = id;
      if (name !== id) li.append(el('span', 'muted', ` #${id}`));
      if (id === String(this.userId)) li.append(el('span', 'you', 'you'));
      ul.append(li);
    }
  }

  updateComposer() {
    const r = this.active && this.rooms.get(this.active);
    const live = this.live && r && r.joined;
    $('message-input').disabled = !live;
    $('send').disabled = !live;
    $('message-input').placeholder = live ? `Message ${this.active}`
      : this.active ? 'Waiting for the connection…' : 'Join a room first';
  }

  notice(text) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { n.hidden = true; }, 8000);
  }
}
