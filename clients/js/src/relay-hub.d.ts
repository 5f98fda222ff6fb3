/**
 * Types of relay-hub's browser client (`relay-hub.js`). Payload shapes follow
 * `docs/protocol.md`; every option and event is described in `docs/client.md`.
 */

/** The connection state. */
export type State = 'disconnected' | 'connecting' | 'connected';

/** Every state, in the order a connection goes through them. */
export declare const STATES: readonly State[];

/** A user id as the hub writes it: canonical integers are numbers, all others strings. */
export type UserId = string | number;

/** A room token, or a function that gives one (called at every join of the room). */
export type RoomToken = string | (() => string | Promise<string>);

/** Options of `new RelayHub(url, options)`. */
export interface ClientOptions {
  /** A fixed JWT. Without `getToken` it cannot be renewed: when it is refused or expires, the client stops. */
  token?: string;
  /** Called for a token before connecting, before the current one expires, and after the hub refused one. */
  getToken?: () => string | Promise<string>;
  /** Dev mode (`HUB_AUTH=dev`) only: the user id sent as `?userId=` when there is no token. */
  userId?: UserId;
  /** Dev mode only: the display name sent as `&name=`. */
  name?: string;
  /** Use native session resume (default `true`); `false` re-joins with `since` only. */
  resume?: boolean;
  /** The backoff's first cap in ms (default 500): attempt n waits a random time in [0, min(max, min * 2^n)). */
  minReconnectDelay?: number;
  /** The backoff's largest cap in ms (default 20000). */
  maxReconnectDelay?: number;
  /** How long an attempt may take until `connected`, in ms (default 10000). */
  connectTimeout?: number;
  /** How long a request (join, subscribe, ping, ...) may wait for its answer, in ms (default 10000). */
  requestTimeout?: number;
  /** Ping the hub every so many ms (default 25000; 0 turns it off); no pong within `requestTimeout` counts as a dropped connection. */
  pingInterval?: number;
  /** The WebSocket class to use (default `globalThis.WebSocket`), e.g. the `ws` package in Node. */
  WebSocket?: typeof WebSocket;
}

/** The defaults of the options that have one. */
export declare const DEFAULTS: Readonly<{
  minReconnectDelay: number;
  maxReconnectDelay: number;
  connectTimeout: number;
  requestTimeout: number;
  pingInterval: number;
  resume: boolean;
}>;

/** A notification (`docs/protocol.md`, Notification); `inboxId` when it went through the inbox. */
export interface Notification {
  inboxId?: string;
  userId: UserId;
  type: string;
  title: string;
  message: string;
  data?: unknown;
  timestamp?: number;
  [key: string]: unknown;
}

/** An AI job's result (`docs/protocol.md`, AIResult). */
export interface AiResult {
  jobId: string | number;
  userId: UserId;
  status: 'success' | 'error' | 'cancelled' | (string & {});
  result?: unknown;
  error?: string;
  processingTime?: number;
  [key: string]: unknown;
}

/** A chat message (`docs/protocol.md`, ChatMessage); `id` when it went through the room's history. */
export interface ChatMessage {
  id?: string;
  roomId: string;
  userId: UserId;
  username: string;
  message: string;
  timestamp: number;
  [key: string]: unknown;
}

/** A user's first session anywhere joined a room the client is in, or their last one left it. */
export interface Presence {
  room: string;
  event: 'join' | 'leave';
  userId: UserId;
  username: string;
}

/**
 * A piece of an AI job's streamed answer: `seq` counts from 1 per job. To a client that was
 * behind, the hub merges a job's chunks: `from` is then the first merged chunk's `seq`, `seq`
 * the last one's, and `delta` their text in order (absent: one chunk).
 */
export interface AiChunk {
  jobId: string | number;
  seq: number;
  delta: string;
  from?: number;
  [key: string]: unknown;
}

/** The `inbox-state` event: the user's unread count changed (on any of its sessions, any instance). */
export interface InboxState {
  /** Unread notifications now (the whole count). */
  unread: number;
  /** Marked read one by one. */
  read?: string[];
  /** Every notification up to this inbox id was marked read. */
  upTo?: string;
  /** No longer in the inbox: deleted, or replaced through a `collapseKey`. */
  removed?: string[];
  /** A low-priority notification kept in the inbox but not pushed (over the user's cap). */
  held?: string;
}

/** A page of the inbox (`inboxPage()`), newest first. */
export interface InboxPage {
  items: { data: Notification; read: boolean }[];
  /** The user's unread count. */
  unread: number;
  /** Older notifications follow: ask again with `before` the last item's `inboxId`. */
  more: boolean;
}

/** An AI job's state as it changes (`queued`, `running`, retries, ...). */
export interface JobState {
  jobId: string | number;
  state: string;
  [key: string]: unknown;
}

/** A cache invalidation (topic `cache`). */
export interface CacheInvalidate {
  pattern: string;
  reason?: string;
  timestamp?: number;
  [key: string]: unknown;
}

/** A room member. */
export interface Member {
  userId: UserId;
  username: string;
}

/** What a join of a room brought. */
export interface Joined {
  room: string;
  /** The members now (at most `HUB_ROOM_PRESENCE_LIMIT`). */
  members: Member[];
  memberCount: number;
  /** Only for a join with `since`: `false` when more was missed than the history keeps (a gap before `missed`). */
  recovered?: boolean;
  /** How many messages of the reply's history the client had not delivered yet; they follow as `chat-message` events. */
  missed: number;
  /** `true` for the joins the client makes by itself after a reconnect. */
  rejoin: boolean;
}

/** The `connected` event. */
export interface Connected {
  sessionId: string;
  userId: UserId;
  /** The session was resumed: nothing was missed, and what was is delivered next. */
  resumed: boolean;
  /** With an inbox cursor (`since`): whether every notification since is still in the inbox. */
  recovered?: boolean;
  /** The user's unread notifications (`null` when the hub could not say). */
  unread: number | null;
  /** The URL of the hub it connected to. */
  url: string;
}

/** The `connecting` event: an attempt starts now (`delay` 0) or after `delay` ms. */
export interface Connecting {
  attempt: number;
  delay: number;
  /** The close code that led here (1006: the connection dropped without a close). */
  code?: number;
  reason: string;
}

/** The `disconnected` event: the client stopped (the app disconnected, or the hub ended it). */
export interface Disconnected {
  code: number;
  reason: string;
}

/** A frame as the hub sent it. */
export type Frame = { type: string; offset?: number; [key: string]: unknown };

/** An event's handler: the payload (`data`, or the frame's fields) and the frame as sent. */
export type EventHandler<T> = (payload: T, frame: Frame) => void;

/** Every event the client emits by that name, and its payload. */
export interface ClientEvents {
  state: (change: { from: State; to: State }) => void;
  connecting: (info: Connecting) => void;
  connected: (info: Connected) => void;
  disconnected: (info: Disconnected) => void;
  error: (error: HubError) => void;
  joined: (info: Joined) => void;
  'token-refreshed': (info: { expiresAt: number }) => void;
  notification: EventHandler<Notification>;
  'inbox-state': EventHandler<InboxState>;
  'ai-result': EventHandler<AiResult>;
  'chat-message': EventHandler<ChatMessage>;
  presence: EventHandler<Presence>;
  'ai-chunk': EventHandler<AiChunk>;
  'job-state': EventHandler<JobState>;
  'cache-invalidate': EventHandler<CacheInvalidate>;
  analytics: EventHandler<Record<string, unknown>>;
}

/** Every event named in `ClientEvents`. */
export declare const EVENTS: readonly (keyof ClientEvents)[];

/** An error from the hub (`code` is its error code) or from the client. */
export declare class HubError extends Error {
  constructor(code: string, message: string, context?: { frame?: Frame; room?: string; request?: Frame });
  /** The hub's error code (`forbidden`, `not_in_room`, ...) or the client's (`disconnected`, `timeout`, `token_error`, `connect_error`, `bad_frame`, `left`). */
  code: string;
  frame?: Frame;
  room?: string;
  request?: Frame;
}

/** The client. */
export declare class RelayHub {
  constructor(url: string | string[], options?: ClientOptions);
  readonly state: State;
  readonly sessionId: string | null;
  readonly userId: UserId | null;
  readonly unread: number | null;
  readonly rooms: string[];
  on<E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]): () => void;
  on(event: string, handler: EventHandler<any>): () => void;
  once<E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]): () => void;
  once(event: string, handler: EventHandler<any>): () => void;
  off<E extends keyof ClientEvents>(event: E, handler?: ClientEvents[E]): void;
  off(event: string, handler?: EventHandler<any>): void;
  connect(): void;
  disconnect(): void;
  joinRoom(room: string, options?: { token?: RoomToken }): Promise<Joined>;
  leaveRoom(room: string): Promise<void>;
  sendMessage(room: string, message: string): void;
  markRead(marks: { ids: string[] } | { upTo: string }): void;
  inboxPage(options?: { before?: string; limit?: number }): Promise<InboxPage>;
  subscribe(topic: 'cache' | 'analytics' | (string & {})): Promise<void>;
  unsubscribe(topic: string): Promise<void>;
  watchJob(jobId: string | number): Promise<Frame>;
  cancelJob(jobId: string | number): Promise<Frame>;
  request(frame: { type: string; [key: string]: unknown }, options?: { timeout?: number }): Promise<Frame>;
}

/** The delay before reconnect attempt `attempt`: random in [0, min(maxDelay, minDelay * 2^attempt)). */
export declare function backoffDelay(
  attempt: number,
  bounds: { minDelay: number; maxDelay: number },
  random?: () => number,
): number;
