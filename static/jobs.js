// The AI job form: enqueues a job for the signed-in user (`POST /api/dev/jobs`, dev mode);
// its result comes back as an `ai-result` event (handled in app.js).
import { $ } from './dom.js';
import { logEvent } from './events-panel.js';

/** Wires the form; `userId()` is the user as the hub knows it (`null` before connecting). */
export function setupJobForm(userId) {
  $('job-form').onsubmit = async (e) => {
    e.preventDefault();
    const text = $('job-text').value.trim();
    if (!text || userId() === null) return;
    try {
      const res = await fetch('/api/dev/jobs', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'llama_inference', userId: userId(), payload: { text } }),
      });
      const body = await res.json();
      if (res.ok && body.workerLive === false) {
        logEvent(`job ${body.id} queued; no worker is running now (start \`relay-hub worker\`)`, false, 'job');
      } else if (res.ok) logEvent(`job ${body.id} queued`, false, 'job');
      else logEvent(`job refused: ${body.error ? body.error.message : res.status}`, true, 'job');
    } catch (err) {
      logEvent(`job not sent: ${err}`, true, 'job');
    }
  };
}

/** A job result in a few words. */
export function summarize(result) {
  if (result && typeof result === 'object') {
    const parts = [];
    if ('words' in result) parts.push(`${result.words} words`);
    if ('sentences' in result) parts.push(`${result.sentences} sentences`);
    if (Array.isArray(result.keywords)) parts.push(`keywords: ${result.keywords.join(', ')}`);
    if (parts.length) return parts.join(' · ');
  }
  return JSON.stringify(result);
}
