// @ts-check
/**
 * What the client has seen, kept across reconnects: the session's resume token and last
 * event `offset` (native session resume), the last `inboxId` (the inbox cursor, sent as
 * `since` when a resume is not possible) and each room's last message id (the room's
 * `since`), with the recent ids that let it drop the copies a recovery may send twice.
 */

import { ChunkSeqs, RecentIds, isHistoryId } from './dedup.js';

/** How many recent ids are kept per stream (the inbox, each room) and jobs for chunks. */
export const RECENT_IDS = 1000;

/**
 * @typedef {object} ConnectParams
 * @property {true | string} [resume] `true` to ask for a resumable session, or the token
 * @property {number} [offset] the last offset seen, with a token
 * @property {string} [since] the inbox cursor
 */

export class Position {
  /** @type {string | null} the session's resume token, once the hub gave one */
  resumeToken = null;
  /** The offset of the last event seen in the session of `resumeToken` (0: none). */
  offset = 0;
  /** @type {string | null} the last `inboxId` seen */
  inbox = null;
  /** @type {Map<string, string>} room -> the last message id seen there */
  rooms = new Map();
  #inboxIds = new RecentIds(RECENT_IDS);
  /** @type {Map<string, RecentIds>} */
  #roomIds = new Map();
  #chunks = new ChunkSeqs(RECENT_IDS);

  /**
   * What to ask when connecting: resume the session when there is one, a resumable session
   * otherwise (`resume`), and the inbox cursor either way (the hub uses it when it cannot
   * resume).
   * @param {boolean} resume whether to use session resume at all
   * @returns {ConnectParams}
   */
  connectParams(resume) {
    /** @type {ConnectParams} */
    const params = {};
    if (resume) {
      if (this.resumeToken) {
        params.resume = this.resumeToken;
        params.offset = this.offset;
      } else {
        params.resume = true;
      }
    }
    if (this.inbox) params.since = this.inbox;
    return params;
  }

  /**
   * Takes in a `connected` frame; returns whether the session was resumed. A new session
   * (another token, or none) starts its offsets again.
   * @param {{resume?: string, resumed?: boolean}} frame
   * @returns {boolean}
   */
  connected(frame) {
    const resumed = frame.resumed === true && frame.resume === this.resumeToken;
    if (!resumed) this.offset = 0;
    this.resumeToken = typeof frame.resume === 'string' ? frame.resume : null;
    return resumed;
  }

  /**
   * Takes in an event frame's `offset`; `false` when it is not after the last one seen (a
   * copy of an event already delivered).
   * @param {unknown} offset
   * @returns {boolean}
   */
  acceptOffset(offset) {
    if (typeof offset !== 'number' || !this.resumeToken) return true;
    if (offset <= this.offset) return false;
    this.offset = offset;
    return true;
  }

  /**
   * Takes in a notification; `false` when its `inboxId` was seen already.
   * @param {{inboxId?: unknown}} data
   * @returns {boolean}
   */
  acceptNotification(data) {
    if (!isHistoryId(data.inboxId)) return true;
    if (!this.#inboxIds.add(data.inboxId)) return false;
    this.inbox = data.inboxId;
    return true;
  }

  /**
   * Takes in a chat message of `room`; `false` when its history `id` was seen already.
   * @param {string} room
   * @param {{id?: unknown}} data
   * @returns {boolean}
   */
  acceptChat(room, data) {
    if (!isHistoryId(data.id)) return true;
    let ids = this.#roomIds.get(room);
    if (!ids) this.#roomIds.set(room, (ids = new RecentIds(RECENT_IDS)));
    if (!ids.add(data.id)) return false;
    this.rooms.set(room, data.id);
    return true;
  }

  /**
   * Takes in an `ai-chunk` (a merged one carries chunks `from`..`seq`): `'new'` to apply,
   * `'seen'` when all of it was seen already, `'partial'` when some of a merged one was (see
   * {@link ChunkSeqs#take}).
   * @param {{jobId?: unknown, seq?: unknown, from?: unknown}} data
   * @returns {'new' | 'seen' | 'partial'}
   */
  acceptChunk(data) {
    const { jobId, seq, from } = data;
    if (typeof seq !== 'number' || (typeof jobId !== 'string' && typeof jobId !== 'number')) return 'new';
    return this.#chunks.take(jobId, typeof from === 'number' ? from : seq, seq);
  }

  /**
   * The last chunk seq seen of a job (0: none).
   * @param {string | number} jobId
   * @returns {number}
   */
  chunkSeq(jobId) {
    return this.#chunks.last(jobId);
  }

  /**
   * The `since` for re-joining `room`: the last message id seen there.
   * @param {string} room
   * @returns {string | undefined}
   */
  roomSince(room) {
    return this.rooms.get(room);
  }

  /**
   * Forgets a room the app left (a later join starts from its recent history again).
   * @param {string} room
   */
  forgetRoom(room) {
    this.rooms.delete(room);
    this.#roomIds.delete(room);
  }
}
