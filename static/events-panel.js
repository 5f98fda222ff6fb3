// The Events panel: one line per notification, job or error, newest first.
import { $, el } from './dom.js';

const MAX_LINES = 50;

/** Adds a line tagged in plain text (`notification`, `job`, `error`, `info`). */
export function logEvent(text, isError, kind) {
  const li = el('li', isError ? 'error' : '');
  li.append(el('span', 'tag', kind || (isError ? 'error' : 'info')), document.createTextNode(text));
  const list = $('events');
  list.prepend(li);
  while (list.children.length > MAX_LINES) list.lastChild.remove();
}
