// The connection state in the header: connecting, connected, reconnecting with a countdown,
// offline (the user's choice) or disconnected; and the "Go offline" toggle.
import { $ } from './dom.js';

let countdown = null;

/** Shows `state` (a CSS class and `data-state`) with an optional text. */
export function setStatus(state, detail) {
  clearInterval(countdown);
  const s = $('status');
  s.textContent = detail || state;
  s.className = 'status ' + state;
  s.dataset.state = state;
}

/** Follows `client`'s state; `offline()` tells whether the user chose to be offline. */
export function followConnection(client, offline) {
  client.on('connecting', ({ attempt, delay }) => {
    if (!attempt) return setStatus('connecting');
    const at = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      $('status').textContent = left ? `reconnecting in ${left}s` : `reconnecting (attempt ${attempt})`;
    };
    setStatus('reconnecting');
    tick();
    countdown = setInterval(tick, 500);
  });
  client.on('connected', () => setStatus('connected'));
  client.on('disconnected', () => setStatus(offline() ? 'offline' : 'disconnected'));
}

/** Shows or hides the offline toggle, labelled for the current choice. */
export function showOfflineToggle(visible, offline) {
  const toggle = $('offline-toggle');
  toggle.hidden = !visible;
  toggle.textContent = offline ? 'Go online' : 'Go offline';
}
