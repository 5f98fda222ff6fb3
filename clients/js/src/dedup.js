// @ts-check
/**
 * De-duplication by exact id, as the hub does it: only ids of the history form
 * (`"<ms>-<seq>"`, a Redis stream entry id) count; any other id a service put into a payload
 * is delivered as it is and never used to drop or order anything.
 */

/** A history id: `"<ms>-<seq>"`. */
const HISTORY_ID = /^\d{1,20}-\d{1,20}$/;

/**
 * Whether `id` is a history id (an `inboxId` or a chat message's `id` from the hub).
 * @param {unknown} id
 * @returns {id is string}
 */
export function isHistoryId(id) {
  return typeof id === 'string' && HISTORY_ID.test(id);
}

/** The last `capacity` ids seen, oldest forgotten first. */
export class RecentIds {
  /** @type {Set<string>} */
  #ids = new Set();
  #capacity;

  /** @param {number} capacity */
  constructor(capacity) {
    this.#capacity = capacity;
  }

  /**
   * Records `id`; `false` when it was already seen (a duplicate).
   * @param {string} id
   * @returns {boolean}
   */
  add(id) {
    if (this.#ids.has(id)) return false;
    this.#ids.add(id);
    if (this.#ids.size > this.#capacity) {
      const oldest = this.#ids.values().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
    return true;
  }

  /** @param {string} id */
  has(id) {
    return this.#ids.has(id);
  }

  get size() {
    return this.#ids.size;
  }
}

/** Per job, the last `seq` of its `ai-chunk` events seen; at most `capacity` jobs. */
export class ChunkSeqs {
  /** @type {Map<string, number>} */
  #last = new Map();
  #capacity;

  /** @param {number} capacity */
  constructor(capacity) {
    this.#capacity = capacity;
  }

  /**
   * The last seq seen of `jobId` (0: none).
   * @param {string | number} jobId
   * @returns {number}
   */
  last(jobId) {
    return this.#last.get(String(jobId)) ?? 0;
  }

  /**
   * Records chunk `seq` of `jobId`; `false` when that chunk (or a later one) was seen.
   * @param {string | number} jobId
   * @param {number} seq
   * @returns {boolean}
   */
  add(jobId, seq) {
    return this.take(jobId, seq, seq) === 'new';
  }

  /**
   * Takes in chunks `from`..`seq` of `jobId`: one chunk (`from` = `seq`), or several the hub
   * merged into one frame for a client that was behind. Chunks of one job arrive in `seq`
   * order, so anything not after the last seen is a repeat. `'new'`: none was seen (`seq` is
   * now the last); `'seen'`: all were; `'partial'`: some were, and which part of the merged
   * text is new cannot be told (nothing is recorded: fetch the text after `last` instead).
   * @param {string | number} jobId
   * @param {number} from
   * @param {number} seq
   * @returns {'new' | 'seen' | 'partial'}
   */
  take(jobId, from, seq) {
    const key = String(jobId);
    const last = this.#last.get(key) ?? 0;
    if (seq <= last) return 'seen';
    if (from <= last) return 'partial';
    this.#last.delete(key); // re-inserted last: the map's order is "least recently used first"
    this.#last.set(key, seq);
    if (this.#last.size > this.#capacity) {
      const oldest = this.#last.keys().next().value;
      if (oldest !== undefined) this.#last.delete(oldest);
    }
    return 'new';
  }
}
