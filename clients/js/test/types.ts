// Compiled (never run) by `tsc -p .` in `npm test`: the published types accept what an app
// writes, and refuse what it must not.
import { RelayHub, HubError, EVENTS, DEFAULTS, STATES, backoffDelay } from '../src/relay-hub.js';
import type { AiChunk, ChatMessage, Joined, Notification, State } from '../src/relay-hub.js';

const hub = new RelayHub('/ws', { getToken: async () => 'jwt', resume: true, pingInterval: 0 });
new RelayHub(['ws://a:8080/ws', 'ws://b:8080/ws'], { userId: 123, name: 'Alice' });

hub.on('notification', (n: Notification, frame) => console.log(n.title, n.inboxId, frame.offset));
hub.on('chat-message', (m) => { const text: string = m.message; const room: string = m.roomId; void text; void room; });
hub.on('presence', (p) => { const e: 'join' | 'leave' = p.event; void e; });
hub.on('ai-result', (r) => { if (r.status === 'success') console.log(r.result); });
hub.on('ai-chunk', (c: AiChunk) => { const s: number = c.seq; const d: string = c.delta; void s; void d; });
hub.on('job-state', (j) => console.log(j.jobId, j.state));
hub.on('state', ({ from, to }) => { const s: State = to; void from; void s; });
hub.on('connecting', (c) => console.log(c.attempt, c.delay, c.code));
hub.on('connected', (c) => { const resumed: boolean = c.resumed; void resumed; });
hub.on('disconnected', (d) => console.log(d.code, d.reason));
hub.on('error', (e: HubError) => console.log(e.code, e.room));
hub.on('inbox-state', (data: { unread: number }) => console.log(data.unread)); // any other event frame
const off = hub.on('joined', (j: Joined) => console.log(j.members.length, j.recovered, j.missed));
off();

async function use(): Promise<void> {
  hub.connect();
  const joined: Joined = await hub.joinRoom('room-123', { token: () => Promise.resolve('room-jwt') });
  void joined;
  hub.sendMessage('room-123', 'Hello!');
  await hub.subscribe('analytics');
  const reply = await hub.request({ type: 'cancel-job', jobId: 'j1' });
  console.log(reply.type, hub.state, hub.sessionId, hub.userId, hub.rooms);
  await hub.leaveRoom('room-123');
  hub.disconnect();
}
void use;

const first: ChatMessage | undefined = undefined;
void first;
const delay: number = backoffDelay(3, { minDelay: DEFAULTS.minReconnectDelay, maxDelay: DEFAULTS.maxReconnectDelay });
void delay;
void EVENTS;
void STATES;

// @ts-expect-error: the URL is required
new RelayHub();
// @ts-expect-error: options are checked
new RelayHub('/ws', { reconnectDelay: 5 });
// @ts-expect-error: a notification has no `delta`
hub.on('notification', (n) => n.delta.length);
// @ts-expect-error: chat messages need a string
hub.sendMessage('room-123', 42);
// @ts-expect-error: the state is read-only
hub.state = 'connected';
