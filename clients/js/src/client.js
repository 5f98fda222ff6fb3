// @ts-check
/**
 * The client: one WebSocket to a hub's `/ws` at a time, kept up by itself. It reconnects
 * with backoff (`backoff.js`) through the states of `state.js`, resumes its session or falls
 * back to `since` with what `position.js` remembers, re-joins its rooms and topics, refreshes
 * its token before it expires (`token.js`), and hands every event to the app once and in
 * order.
 */

import { backoffDelay } from './backoff.js';
import { Emitter } from './emitter.js';
import { Position } from './position.js';
import { afterClose, nextState } from './state.js';
import { refreshDelay, tokenExpiry, tokenFresh } from './token.js';

/** @typedef {import('./relay-hub.js').ClientOptions} ClientOptions */
/** @typedef {import('./relay-hub.js').Joined} Joined */
/** @typedef {import('./relay-hub.js').State} State */
/** @typedef {import('./relay-hub.js').RoomToken} RoomToken */
/** @typedef {Record<string, any>} Frame */

/** The defaults of every option that has one. */
export const DEFAULTS = Object.freeze({
  minReconnectDelay: 500,
  maxReconnectDelay: 20_000,
  connectTimeout: 10_000,
  requestTimeout: 10_000,
  pingInterval: 25_000,
  resume: true,
});

/** Frame types that answer a request; every other frame type is an event. */
const REPLIES = new Set([
  'connected', 'joined', 'left', 'subscribed', 'unsubscribed', 'pong', 'token-refreshed', 'error',
  'inbox-page',
]);

/** An error from the hub (`code` is its error code) or from the client itself. */
export class HubError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{frame?: Frame, room?: string, request?: Frame}} [context]
   */
  constructor(code, message, context = {}) {
    super(message);
    this.name = 'HubError';
    /** The hub's error code (`forbidden`, `not_in_room`, ...) or the client's (`disconnected`, `timeout`, `token_error`). */
    this.code = code;
    /** The error frame, when the hub sent one. */
    this.frame = context.frame;
    /** The room it concerns, for joins. */
    this.room = context.room;
    /** The request it answers, when there was one. */
    this.request = context.request;
  }
}

/**
 * @typedef {object} RoomEntry
 * @property {RoomToken} [token]
 * @property {Joined | null} info the last `joined`, `null` until the first
 * @property {number} attempt failed joins in a row (`unavailable`)
 * @property {{resolve: (j: Joined) => void, reject: (e: HubError) => void}[]} waiters
 */

/** @typedef {{resolve: (f: Frame) => void, reject: (e: HubError) => void, timer: any, frame: Frame}} Pending */

export class RelayHub extends Emitter {
  /** @type {URL[]} */
  #urls;
  #urlIndex = 0;
  /** @type {ClientOptions & {[K in keyof typeof DEFAULTS]: (typeof DEFAULTS)[K] extends boolean ? boolean : number}} */
  #options;
  /** @type {State} */
  #state = 'disconnected';
  /** @type {WebSocket | null} */
  #ws = null;
  /** Attempts since the last `connected`. */
  #attempt = 0;
  /** Bumped when the app disconnects: work of an older run stops where it stands. */
  #run = 0;
  /** @type {Map<string, any>} */
  #timers = new Map();
  /** Jobs being watched: their live chunks, held until the answer is in. @type {Map<string, Frame[]>} */
  #watching = new Map();
  #position = new Position();
  /** @type {Map<string, RoomEntry>} rooms the app wants to be in */
  #rooms = new Map();
  /** Rooms left while disconnected: a resumed session may bring them back. */
  #leftAway = new Set();
  /** @type {Map<string, {resolve: () => void, reject: (e: HubError) => void}[]>} topic -> waiters */
  #topics = new Map();
  /** @type {Map<number, Pending>} */
  #pending = new Map();
  #nextId = 1;
  /** @type {string | null} */
  #token = null;
  /** @type {number | null} */
  #tokenExpiry = null;
  #tokenRefused = false;
  #refreshAttempt = 0;
  /** @type {string | null} */
  #sessionId = null;
  /** @type {string | number | null} */
  #userId = null;
  /** @type {number | null} */
  #unread = null;

  /**
   * @param {string | string[]} url the hub's `/ws` URL (`ws:`, `wss:`, `http(s):` or, in a
   *   page, relative such as `/ws`), or several: a failed attempt moves on to the next
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    super();
    const list = Array.isArray(url) ? url : [url];
    if (!list.length) throw new TypeError('RelayHub: give at least one URL');
    this.#urls = list.map(toWebSocketUrl);
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.#options = { ...DEFAULTS, ...given };
    if (options.token) this.#setToken(options.token);
  }

  /** The connection state: `disconnected`, `connecting` or `connected`. */
  get state() {
    return this.#state;
  }

  /** The current session's id (`connected.sessionId`), `null` before the first. */
  get sessionId() {
    return this.#sessionId;
  }

  /** The user id as the hub reported it in `connected`, `null` before. */
  get userId() {
    return this.#userId;
  }

  /**
   * The user's unread notifications, from `connected` and every `inbox-state` since (every
   * session of the user agrees); `null` before the first or when the hub could not say.
   */
  get unread() {
    return this.#unread;
  }

  /** The rooms the client is in or joining, in the order they were joined. */
  get rooms() {
    return [...this.#rooms.keys()];
  }

  /** Starts connecting (and keeps the client connected until `disconnect()`). */
  connect() {
    if (this.#state !== 'disconnected') return;
    this.#attempt = 0;
    this.#transition('connect');
    this.emit('connecting', { attempt: 0, delay: 0, reason: 'connect' });
    this.#open();
  }

  /**
   * Closes the connection (a goodbye: the hub forgets the session, no resume) and stays
   * disconnected. Rooms and topics are kept: `connect()` joins them again.
   */
  disconnect() {
    if (this.#state === 'disconnected') return;
    this.#run += 1;
    const ws = this.#ws;
    this.#detach('client disconnect');
    this.#clearTimer('retry');
    if (ws) closeQuietly(ws, 1000, 'client disconnect');
    this.#stop(1000, 'client disconnect');
  }

  /**
   * Joins `room` (now, or once connected) and keeps it joined across reconnects. Resolves
   * with the `joined` info; rejects with the hub's error (`forbidden`, `invalid_room`, ...),
   * and the room is then dropped.
   * @param {string} room
   * @param {{token?: RoomToken}} [options] `token`: a room token (or a function that returns
   *   one), sent with every join of this room
   * @returns {Promise<Joined>}
   */
  joinRoom(room, options = {}) {
    return new Promise((resolve, reject) => {
      let entry = this.#rooms.get(room);
      if (entry && options.token !== undefined) entry.token = options.token;
      if (entry?.info && this.#state === 'connected') return resolve(entry.info);
      if (!entry) {
        entry = { token: options.token, info: null, attempt: 0, waiters: [] };
        this.#rooms.set(room, entry);
        this.#leftAway.delete(room);
        if (this.#state === 'connected') this.#join(room);
      }
      entry.waiters.push({ resolve, reject });
    });
  }

  /**
   * Leaves `room`: no more events from it, and it is not joined again.
   * @param {string} room
   * @returns {Promise<void>}
   */
  async leaveRoom(room) {
    const entry = this.#rooms.get(room);
    if (!entry) return;
    this.#rooms.delete(room);
    this.#position.forgetRoom(room);
    for (const w of entry.waiters) w.reject(new HubError('left', `left ${room}`, { room }));
    try {
      await this.request({ type: 'leave-room', room });
    } catch (err) {
      const code = err instanceof HubError ? err.code : '';
      if (code === 'disconnected' || code === 'timeout') this.#leftAway.add(room);
      else if (code !== 'not_in_room') throw err;
    }
  }

  /**
   * Sends a chat message to a joined room. The hub answers only refusals (`not_in_room`,
   * `too_large`, ...), as an `error` event; the message itself comes back as a
   * `chat-message` event to every member, the sender included.
   * @param {string} room
   * @param {string} message
   * @throws {HubError} `disconnected` when the client is not connected
   */
  sendMessage(room, message) {
    this.#sendRequestFrame({ type: 'chat-message', room, message });
  }

  /**
   * Marks notifications read: `{ids: [inboxId, ...]}` or `{upTo: inboxId}` (every one up to
   * it). When that changes anything, every session of the user, this one included, gets an
   * `inbox-state` event with the new count; refusals come as `error` events.
   * @param {{ids: string[]} | {upTo: string}} marks
   * @throws {HubError} `disconnected` when the client is not connected
   */
  markRead(marks) {
    const { ids, upTo } = /** @type {{ids?: string[], upTo?: string}} */ (marks);
    this.#sendRequestFrame(ids !== undefined ? { type: 'mark-read', ids } : { type: 'mark-read', upTo });
  }

  /**
   * A page of the user's inbox, newest first (older than `before` when given; `limit` 1-100,
   * default 20): `{items: [{data, read}], unread, more}`.
   * @param {{before?: string, limit?: number}} [options]
   * @returns {Promise<{items: {data: Record<string, unknown>, read: boolean}[], unread: number, more: boolean}>}
   */
  async inboxPage(options = {}) {
    /** @type {Frame} */
    const frame = { type: 'inbox-page' };
    if (options.before !== undefined) frame.before = options.before;
    if (options.limit !== undefined) frame.limit = options.limit;
    const reply = await this.request(frame);
    if (typeof reply.unread === 'number') this.#unread = reply.unread;
    return /** @type {any} */ ({ items: reply.items, unread: reply.unread, more: reply.more });
  }

  /**
   * Subscribes to a topic (`cache`, `analytics`), now or once connected, and again after
   * every reconnect. Resolves once the hub confirmed.
   * @param {string} topic
   * @returns {Promise<void>}
   */
  subscribe(topic) {
    return new Promise((resolve, reject) => {
      const waiters = this.#topics.get(topic);
      if (waiters) return void waiters.push({ resolve, reject });
      this.#topics.set(topic, [{ resolve, reject }]);
      if (this.#state === 'connected') this.#subscribeNow(topic);
    });
  }

  /**
   * Unsubscribes from a topic.
   * @param {string} topic
   * @returns {Promise<void>}
   */
  async unsubscribe(topic) {
    if (!this.#topics.delete(topic) || this.#state !== 'connected') return;
    await this.request({ type: 'unsubscribe', topic });
  }

  /**
   * Asks for the text one of the user's jobs streamed so far (after the last chunk seen):
   * its kept chunks come as `ai-chunk` events, then the job's live chunks, each once and in
   * order (live ones are held while the answer is on its way). Resolves with the
   * `job-watched` reply (`{jobId, state, seq, chunks}`). Call it after a reload or for a
   * second tab, for a job that may still stream.
   * @param {string | number} jobId
   * @returns {Promise<Frame>}
   */
  async watchJob(jobId) {
    const key = String(jobId);
    this.#watching.set(key, []);
    try {
      const after = this.#position.chunkSeq(jobId);
      const reply = await this.request({ type: 'watch-job', jobId, after });
      const chunks = Array.isArray(reply.chunks) ? reply.chunks : [];
      for (const c of chunks) {
        const data = { jobId, seq: c.seq, delta: c.delta };
        this.#deliver({ type: 'ai-chunk', data }, data);
      }
      return reply;
    } finally {
      const held = this.#watching.get(key) ?? [];
      this.#watching.delete(key);
      for (const frame of held) this.#deliver(frame, frame.data);
    }
  }

  /**
   * Cancels one of the user's jobs; resolves with the `job-cancel` reply (`status`:
   * `cancelled`, or `finished` when it had ended). The `ai-result` with `status:
   * "cancelled"` comes as an event.
   * @param {string | number} jobId
   * @returns {Promise<Frame>}
   */
  cancelJob(jobId) {
    return this.request({ type: 'cancel-job', jobId });
  }

  /**
   * Sends any request frame (an `id` is added) and resolves with the reply frame, or rejects
   * with a `HubError`: the hub's error, `disconnected` when not connected or when the
   * connection drops first, `timeout` after `requestTimeout`. For frames this library has no
   * method for yet.
   * @param {Frame} frame
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Frame>}
   */
  request(frame, options = {}) {
    return new Promise((resolve, reject) => {
      const ws = this.#ws;
      if (!ws || this.#state !== 'connected') {
        return reject(new HubError('disconnected', 'not connected', { request: frame }));
      }
      this.#requestOn(ws, frame, options.timeout ?? this.#options.requestTimeout, resolve, reject);
    });
  }

  // ---- connecting ----------------------------------------------------------------------------

  /** One connection attempt. */
  async #open() {
    const run = this.#run;
    /** @type {string | null} */
    let token;
    try {
      token = await this.#currentToken();
    } catch (err) {
      if (run !== this.#run) return;
      const message = `getToken failed: ${err instanceof Error ? err.message : String(err)}`;
      this.emit('error', new HubError('token_error', message));
      return this.#retry(1006, message);
    }
    if (run !== this.#run || this.#state !== 'connecting') return;
    const params = this.#position.connectParams(this.#options.resume);
    const url = new URL(this.#urls[this.#urlIndex].href);
    if (!token) {
      if (this.#options.userId !== undefined) url.searchParams.set('userId', String(this.#options.userId));
      if (this.#options.name) url.searchParams.set('name', this.#options.name);
      for (const [key, value] of Object.entries(params)) url.searchParams.set(key, String(value));
    }
    /** @type {WebSocket} */
    let ws;
    try {
      const WS = this.#options.WebSocket ?? globalThis.WebSocket;
      ws = new WS(url.href);
    } catch (err) {
      this.emit('error', new HubError('connect_error', String(err)));
      return this.#retry(1006, 'could not open a WebSocket');
    }
    this.#ws = ws;
    this.#setTimer('connect', this.#options.connectTimeout, () => this.#drop(ws, 'connect timeout'));
    ws.onopen = () => {
      if (token && ws === this.#ws) ws.send(JSON.stringify({ type: 'auth', token, ...params }));
    };
    ws.onmessage = (ev) => this.#onMessage(ws, ev.data);
    ws.onclose = (ev) => this.#onClose(ws, ev.code, ev.reason);
  }

  /**
   * The token to present: the fixed `token`, or the one `getToken` gave while it is fresh
   * and was not refused, or a new one from `getToken`. `null` in dev mode.
   * @returns {Promise<string | null>}
   */
  async #currentToken() {
    const { getToken } = this.#options;
    if (!getToken) return this.#token;
    if (this.#token && !this.#tokenRefused && tokenFresh(this.#tokenExpiry, Date.now())) return this.#token;
    const token = await getToken();
    if (typeof token !== 'string' || !token) throw new Error('it returned no token');
    this.#setToken(token);
    return token;
  }

  /** @param {string} token */
  #setToken(token) {
    this.#token = token;
    this.#tokenExpiry = tokenExpiry(token);
    this.#tokenRefused = false;
  }

  /**
   * Schedules the next attempt after a failure or a drop (`code`, `reason`).
   * @param {number} code
   * @param {string} reason
   */
  #retry(code, reason) {
    const delay = backoffDelay(this.#attempt, {
      minDelay: this.#options.minReconnectDelay,
      maxDelay: this.#options.maxReconnectDelay,
    });
    this.#attempt += 1;
    this.emit('connecting', { attempt: this.#attempt, delay, code, reason });
    this.#setTimer('retry', delay, () => this.#open());
  }

  // ---- the live connection -------------------------------------------------------------------

  /**
   * @param {WebSocket} ws
   * @param {unknown} data
   */
  #onMessage(ws, data) {
    if (ws !== this.#ws) return;
    /** @type {Frame} */
    let frame;
    try {
      frame = JSON.parse(String(data));
    } catch {
      return this.emit('error', new HubError('bad_frame', `the hub sent a frame that is not JSON: ${String(data).slice(0, 80)}`));
    }
    if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') return;
    if (frame.type === 'connected') return this.#onConnected(ws, frame);
    const pending = typeof frame.id === 'number' ? this.#pending.get(frame.id) : undefined;
    if (pending) return this.#settle(frame.id, frame);
    if (frame.type === 'error') {
      if (frame.code === 'unauthorized' && this.#state === 'connecting') this.#tokenRefused = true;
      return this.emit('error', new HubError(frame.code, frame.message, { frame }));
    }
    if (REPLIES.has(frame.type)) return;
    this.#onEvent(frame);
  }

  /**
   * @param {WebSocket} ws
   * @param {Frame} frame
   */
  #onConnected(ws, frame) {
    if (this.#state !== 'connecting') return;
    this.#clearTimer('connect');
    const resumed = this.#position.connected(frame);
    this.#sessionId = frame.sessionId;
    this.#userId = frame.userId;
    this.#unread = typeof frame.unread === 'number' ? frame.unread : null;
    this.#attempt = 0;
    this.#transition('open');
    this.#scheduleRefresh();
    this.#schedulePing(ws);
    if (resumed) {
      for (const room of this.#leftAway) this.request({ type: 'leave-room', room }).catch(() => {});
    }
    this.#leftAway.clear();
    // Every room again, resumed or not: a resumed session is back in its rooms, but the
    // presence changes it missed are not replayed, and `joined` brings the member list.
    for (const room of this.#rooms.keys()) this.#join(room);
    for (const topic of this.#topics.keys()) this.#subscribeNow(topic);
    this.emit('connected', {
      sessionId: frame.sessionId,
      userId: frame.userId,
      resumed,
      recovered: frame.recovered,
      unread: this.#unread,
      url: this.#urls[this.#urlIndex].href,
    });
  }

  /** @param {Frame} frame */
  #onEvent(frame) {
    if (!this.#position.acceptOffset(frame.offset)) return;
    const data = 'data' in frame ? frame.data : withoutEnvelope(frame);
    const held = frame.type === 'ai-chunk' && data && typeof data === 'object'
      ? this.#watching.get(String(data.jobId)) : undefined;
    if (held) return void held.push(frame);
    this.#deliver(frame, data);
  }

  /**
   * Emits an event frame unless it repeats one seen.
   * @param {Frame} frame
   * @param {any} data
   */
  #deliver(frame, data) {
    const position = this.#position;
    switch (frame.type) {
      case 'notification':
        if (data && typeof data === 'object' && !position.acceptNotification(data)) return;
        break;
      case 'chat-message': {
        const room = data && typeof data === 'object' ? data.roomId : undefined;
        if (typeof room === 'string' && (!this.#rooms.has(room) || !position.acceptChat(room, data))) return;
        break;
      }
      case 'presence':
        if (!this.#rooms.has(frame.room)) return;
        break;
      case 'ai-chunk': {
        if (!data || typeof data !== 'object') break;
        const taken = position.acceptChunk(data);
        // A merged chunk that overlaps what was seen cannot be split: the text after the last
        // chunk seen is asked for instead (its live chunks are held meanwhile).
        if (taken === 'partial') this.#catchUp(data.jobId);
        if (taken !== 'new') return;
        break;
      }
      case 'inbox-state':
        if (data && typeof data.unread === 'number') this.#unread = data.unread;
        break;
    }
    this.emit(frame.type, data, frame);
  }

  /**
   * Asks for a job's text after the last chunk seen (a merged chunk overlapped it), unless
   * that is being asked already.
   * @param {string | number} jobId
   */
  #catchUp(jobId) {
    if (this.#watching.has(String(jobId))) return;
    this.watchJob(jobId).catch((err) => {
      if (err.code !== 'timeout' && err.code !== 'disconnected') this.emit('error', err);
    });
  }

  /**
   * Sends a `join-room` for `room` (with the last message id seen there as `since`).
   * @param {string} room
   */
  async #join(room) {
    const ws = this.#ws;
    const entry = this.#rooms.get(room);
    if (!ws || !entry) return;
    /** @type {Frame} */
    const frame = { type: 'join-room', room };
    const since = this.#position.roomSince(room);
    if (since) frame.since = since;
    try {
      if (entry.token !== undefined) {
        frame.token = typeof entry.token === 'function' ? await entry.token() : entry.token;
      }
      const reply = await this.request(frame);
      if (this.#rooms.get(room) === entry) this.#onJoined(room, entry, reply);
    } catch (err) {
      if (ws !== this.#ws || this.#rooms.get(room) !== entry) return; // rejoined at the next connect
      const error = err instanceof HubError ? err : new HubError('token_error', String(err), { room });
      if (error.code === 'unavailable' || error.code === 'timeout') {
        const delay = backoffDelay(entry.attempt++, {
          minDelay: this.#options.minReconnectDelay,
          maxDelay: this.#options.maxReconnectDelay,
        });
        return void setTimeout(() => { if (ws === this.#ws) this.#join(room); }, delay);
      }
      this.#rooms.delete(room);
      this.#position.forgetRoom(room);
      error.room = room;
      for (const w of entry.waiters) w.reject(error);
      this.emit('error', error);
    }
  }

  /**
   * @param {string} room
   * @param {RoomEntry} entry
   * @param {Frame} reply
   */
  #onJoined(room, entry, reply) {
    // In a resumable session `joined` takes an offset like an event: the room's place moves
    // with it, so a resume must start after it or that room's history comes again.
    this.#position.acceptOffset(reply.offset);
    const history = Array.isArray(reply.history) ? reply.history : [];
    const fresh = history.filter((m) => this.#position.acceptChat(room, m));
    const members = Array.isArray(reply.members) ? reply.members : [];
    /** @type {Joined} */
    const info = {
      room,
      members,
      memberCount: typeof reply.memberCount === 'number' ? reply.memberCount : members.length,
      recovered: reply.recovered,
      missed: fresh.length,
      rejoin: entry.info !== null,
    };
    entry.info = info;
    entry.attempt = 0;
    this.emit('joined', info);
    for (const message of fresh) this.emit('chat-message', message, { type: 'chat-message', data: message });
    const waiters = entry.waiters.splice(0);
    for (const w of waiters) w.resolve(info);
  }

  /** @param {string} topic */
  #subscribeNow(topic) {
    this.request({ type: 'subscribe', topic }).then(
      () => {
        for (const w of this.#topics.get(topic)?.splice(0) ?? []) w.resolve();
      },
      (err) => {
        if (!(err instanceof HubError) || err.code === 'disconnected' || err.code === 'timeout') return;
        const waiters = this.#topics.get(topic) ?? [];
        this.#topics.delete(topic);
        for (const w of waiters) w.reject(err);
        this.emit('error', err);
      },
    );
  }

  /**
   * Sends a frame with an `id`; the hub's refusal of it becomes an `error` event.
   * @param {Frame} frame
   */
  #sendRequestFrame(frame) {
    const ws = this.#ws;
    if (!ws || this.#state !== 'connected') throw new HubError('disconnected', 'not connected', { request: frame });
    this.#requestOn(ws, frame, this.#options.requestTimeout, () => {}, (err) => {
      if (err.code !== 'timeout' && err.code !== 'disconnected') this.emit('error', err);
    });
  }

  /**
   * @param {WebSocket} ws
   * @param {Frame} frame
   * @param {number} timeout
   * @param {(f: Frame) => void} resolve
   * @param {(e: HubError) => void} reject
   */
  #requestOn(ws, frame, timeout, resolve, reject) {
    const id = this.#nextId++;
    const sent = { ...frame, id };
    const timer = setTimeout(() => {
      if (this.#pending.delete(id)) reject(new HubError('timeout', `no answer to ${frame.type} within ${timeout} ms`, { request: sent }));
    }, timeout);
    this.#pending.set(id, { resolve, reject, timer, frame: sent });
    ws.send(JSON.stringify(sent));
  }

  /**
   * @param {number} id
   * @param {Frame} frame
   */
  #settle(id, frame) {
    const pending = this.#pending.get(id);
    if (!pending) return;
    this.#pending.delete(id);
    clearTimeout(pending.timer);
    if (frame.type !== 'error') return pending.resolve(frame);
    const room = typeof pending.frame.room === 'string' ? pending.frame.room : undefined;
    pending.reject(new HubError(frame.code, frame.message, { frame, room, request: pending.frame }));
  }

  // ---- tokens and liveness -------------------------------------------------------------------

  #scheduleRefresh() {
    this.#clearTimer('refresh');
    if (!this.#options.getToken || this.#tokenExpiry === null || this.#state !== 'connected') return;
    this.#setTimer('refresh', refreshDelay(this.#tokenExpiry, Date.now()), () => this.#refresh());
  }

  /** Gets a fresh token from `getToken` and sends it on the live session (`auth`). */
  async #refresh() {
    const ws = this.#ws;
    const getToken = this.#options.getToken;
    if (!ws || !getToken) return;
    try {
      const token = await getToken();
      if (ws !== this.#ws) return;
      if (typeof token !== 'string' || !token) throw new Error('it returned no token');
      this.#setToken(token);
      const reply = await this.request({ type: 'auth', token });
      this.#refreshAttempt = 0;
      this.emit('token-refreshed', { expiresAt: reply.expiresAt });
      this.#scheduleRefresh();
    } catch (err) {
      if (ws !== this.#ws) return;
      const error = err instanceof HubError ? err
        : new HubError('token_error', `getToken failed: ${err instanceof Error ? err.message : String(err)}`);
      if (error.code === 'unauthorized' || error.code === 'forbidden') this.#tokenRefused = true;
      this.emit('error', error);
      // Ask again: the hub closes the session (4002) only when the old token runs out.
      const delay = backoffDelay(this.#refreshAttempt++, {
        minDelay: this.#options.minReconnectDelay,
        maxDelay: this.#options.maxReconnectDelay,
      });
      this.#setTimer('refresh', Math.max(delay, this.#options.minReconnectDelay), () => this.#refresh());
    }
  }

  /**
   * Pings the hub every `pingInterval`; a ping without its pong within `requestTimeout` means
   * the connection is dead though no close came (a network that went away silently).
   * @param {WebSocket} ws
   */
  #schedulePing(ws) {
    if (!this.#options.pingInterval) return;
    this.#setTimer('ping', this.#options.pingInterval, () => {
      this.request({ type: 'ping' }).then(
        () => this.#schedulePing(ws),
        (err) => { if (err.code === 'timeout') this.#drop(ws, 'no pong'); },
      );
    });
  }

  // ---- ending --------------------------------------------------------------------------------

  /**
   * @param {WebSocket} ws
   * @param {number} code
   * @param {string} reason
   */
  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return;
    const wasConnected = this.#state === 'connected';
    this.#detach(reason || `closed (${code})`);
    const action = afterClose(code, Boolean(this.#options.getToken));
    if (action === 'stop') return this.#stop(code, reason);
    if (action === 'refresh') this.#tokenRefused = true;
    if (!wasConnected) this.#urlIndex = (this.#urlIndex + 1) % this.#urls.length;
    this.#transition('drop');
    this.#retry(code, reason);
  }

  /**
   * Gives up on a connection the client judged dead (no `connected` in time, no pong): as if
   * it had dropped (1006).
   * @param {WebSocket} ws
   * @param {string} reason
   */
  #drop(ws, reason) {
    if (ws !== this.#ws) return;
    closeQuietly(ws, 4000, reason);
    this.#onClose(ws, 1006, reason);
  }

  /**
   * Forgets the current WebSocket: its timers, and its pending requests (rejected as
   * `disconnected`).
   * @param {string} reason
   */
  #detach(reason) {
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = null;
    for (const name of ['connect', 'ping', 'refresh']) this.#clearTimer(name);
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) {
      clearTimeout(p.timer);
      p.reject(new HubError('disconnected', `connection lost: ${reason}`, { request: p.frame }));
    }
  }

  /**
   * Ends in `disconnected`; waiting joins and subscriptions are rejected (the rooms and topics
   * are kept for a later `connect()`).
   * @param {number} code
   * @param {string} reason
   */
  #stop(code, reason) {
    this.#transition('close');
    const error = new HubError('disconnected', `disconnected: ${reason || code}`);
    for (const entry of this.#rooms.values()) for (const w of entry.waiters.splice(0)) w.reject(error);
    for (const waiters of this.#topics.values()) for (const w of waiters.splice(0)) w.reject(error);
    this.emit('disconnected', { code, reason });
  }

  /** @param {import('./state.js').Transition} transition */
  #transition(transition) {
    const from = this.#state;
    const to = nextState(from, transition);
    if (!to || to === from) return;
    this.#state = to;
    this.emit('state', { from, to });
  }

  /**
   * @param {string} name
   * @param {number} delay
   * @param {() => void} fn
   */
  #setTimer(name, delay, fn) {
    this.#clearTimer(name);
    this.#timers.set(name, setTimeout(() => {
      this.#timers.delete(name);
      fn();
    }, delay));
  }

  /** @param {string} name */
  #clearTimer(name) {
    clearTimeout(this.#timers.get(name));
    this.#timers.delete(name);
  }
}

/**
 * A `ws:`/`wss:` URL from what the app gave (`http(s):` and, in a page, relative URLs too).
 * @param {string} url
 * @returns {URL}
 */
function toWebSocketUrl(url) {
  const base = typeof location === 'undefined' ? undefined : location.href;
  const parsed = new URL(url, base);
  if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
  else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
    throw new TypeError(`RelayHub: not a WebSocket URL: ${url}`);
  }
  return parsed;
}

/**
 * An event frame without `type` and `offset` (for events like `presence` that carry their
 * fields at the top level instead of in `data`).
 * @param {Frame} frame
 * @returns {Frame}
 */
function withoutEnvelope(frame) {
  const { type: _type, offset: _offset, ...rest } = frame;
  return rest;
}

/**
 * @param {WebSocket} ws
 * @param {number} code
 * @param {string} reason
 */
function closeQuietly(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch {
    // Already closing or closed: nothing left to end.
  }
}
