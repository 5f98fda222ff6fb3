// @ts-check
/** A small event emitter: `on` returns a function that removes the handler again. */

/** @typedef {(...args: any[]) => void} Handler */

export class Emitter {
  /** @type {Map<string, Set<Handler>>} */
  #handlers = new Map();

  /**
   * Calls `handler` for every `event` from now on.
   * @param {string} event
   * @param {Handler} handler
   * @returns {() => void} removes the handler
   */
  on(event, handler) {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler);
    return () => this.off(event, handler);
  }

  /**
   * Calls `handler` for the next `event` only.
   * @param {string} event
   * @param {Handler} handler
   * @returns {() => void} removes the handler
   */
  once(event, handler) {
    /** @type {Handler} */
    const wrapped = (...args) => {
      this.off(event, wrapped);
      handler(...args);
    };
    return this.on(event, wrapped);
  }

  /**
   * Removes `handler` (or every handler of `event` when none is given).
   * @param {string} event
   * @param {Handler} [handler]
   */
  off(event, handler) {
    if (!handler) this.#handlers.delete(event);
    else this.#handlers.get(event)?.delete(handler);
  }

  /**
   * Calls every handler of `event`. A handler that throws does not stop the others nor the
   * client: its error is thrown again from a microtask, so it still reaches the console.
   * @param {string} event
   * @param {...any} args
   */
  emit(event, ...args) {
    const set = this.#handlers.get(event);
    if (!set) return;
    for (const handler of [...set]) {
      try {
        handler(...args);
      } catch (err) {
        queueMicrotask(() => { throw err; });
      }
    }
  }
}
