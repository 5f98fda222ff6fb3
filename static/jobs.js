// The AI job form: enqueues a streamed job for the signed-in user (`POST /api/dev/jobs`, dev
// mode); its answer streams in as `ai-chunk` events, the Stop button cancels it, and a reload
// mid-stream picks the text up again (`watchJob`); the result comes as an `ai-result` event
// (logged in app.js).
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
        body: JSON.stringify({ type: 'llama_inference', userId: userId(), payload: { text, stream: true } }),
      });
      const body = await res.json();
      if (res.ok) follow(body.id);
      if (res.ok && body.workerLive === false) {
        logEvent(`job ${body.id} queued; no worker is running now (start \`relay-hub worker\`)`, false, 'job');
      } else if (res.ok) logEvent(`job ${body.id} queued`, false, 'job');
      else logEvent(`job refused: ${body.error ? body.error.message : res.status}`, true, 'job');
    } catch (err) {
      logEvent(`job not sent: ${err}`, true, 'job');
    }
  };
}

const KEY = 'relay-hub-demo-job';
let current = null;
/** The text each job streamed to this page (its chunks may come before the POST's reply). */
const texts = new Map();

/** Shows the answer of job `id` from now on (and after a reload). */
function follow(id) {
  current = id;
  sessionStorage.setItem(KEY, id);
  $('job-answer').textContent = texts.get(id) ?? '';
  $('job-answer').hidden = false;
  $('job-stop').hidden = false;
}

/** Streams the followed job's answer on the page; `client` is the page's RelayHub. */
export function setupJobStream(client) {
  $('job-stop').onclick = () => {
    if (current !== null) client.cancelJob(current).catch((err) => logEvent(`stop: ${err.message}`, true, 'job'));
  };
  client.on('ai-chunk', (c) => {
    const id = String(c.jobId);
    texts.set(id, (texts.get(id) ?? '') + c.delta);
    if (id === current) $('job-answer').textContent = texts.get(id);
  });
  client.on('job-state', (s) => {
    // a retry streams its answer from the start again
    if (s.state !== 'running' || s.attempt <= 1) return;
    texts.set(String(s.jobId), '');
    if (String(s.jobId) === current) $('job-answer').textContent = '';
  });
  client.on('ai-result', (r) => {
    if (String(r.jobId) !== current) return;
    $('job-stop').hidden = true;
    sessionStorage.removeItem(KEY);
  });
  client.on('connected', () => {
    const id = sessionStorage.getItem(KEY);
    if (id === null || id === current) return;
    follow(id); // a reload mid-stream: the text so far, then the live chunks
    client.watchJob(id).then((reply) => {
      if (reply.state !== 'queued' && reply.state !== 'running') {
        $('job-stop').hidden = true;
        sessionStorage.removeItem(KEY);
      }
    }, () => {});
  });
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
