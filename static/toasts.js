// Toasts at the top of the screen (the Events panel is below the fold on a phone).
import { $, el } from './dom.js';

const TOAST_MS = 6000;
const MAX_TOASTS = 3;

/** Shows a toast for a few seconds. */
export function toast(title, message, isError) {
  const t = el('div', isError ? 'toast error' : 'toast');
  t.setAttribute('role', 'status');
  t.append(el('strong', '', title || ''), el('span', '', message || ''));
  const close = el('button', 'toast-close', 'Dismiss');
  close.type = 'button';
  close.onclick = () => t.remove();
  t.append(close);
  const box = $('toasts');
  box.prepend(t);
  while (box.children.length > MAX_TOASTS) box.lastChild.remove();
  setTimeout(() => t.remove(), TOAST_MS);
}
