// A tiny TCP balancer for the browser tests: forwards every connection to a hub, and can kill
// them at the socket (a TCP reset to both sides, no close frame) and hold new ones back.
import net from 'node:net';

/**
 * Listens on 127.0.0.1:`port` (0: any) and forwards to 127.0.0.1:`target`.
 * @returns {Promise<{port: number, open: () => number, cut: () => number, hold: () => void, release: () => void, close: () => void}>}
 */
export async function startBalancer(target, port = 0) {
  const pairs = new Set();
  let held = null;

  function forward(client) {
    const upstream = net.connect(target, '127.0.0.1');
    const pair = { client, upstream, websocket: false };
    pairs.add(pair);
    // The page's assets come over kept-alive HTTP connections through here too; a connection
    // whose first request asks for a WebSocket upgrade is the hub session.
    client.once('data', (chunk) => {
      pair.websocket = /\r\nupgrade:\s*websocket/i.test(chunk.toString('latin1'));
    });
    const end = () => {
      if (!pairs.delete(pair)) return;
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    if (held) held.push(client);
    else forward(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    /** Connections open through it. */
    open: () => pairs.size,
    /**
     * Resets every open connection on both sides (RST, no FIN, no close frame).
     * @returns {number} how many of them were WebSocket connections
     */
    cut() {
      let n = 0;
      for (const pair of [...pairs]) {
        if (pair.websocket) n += 1;
        pairs.delete(pair);
        pair.client.resetAndDestroy();
        pair.upstream.resetAndDestroy();
      }
      return n;
    },
    /** New connections wait (accepted, nothing forwarded) until `release()`. */
    hold() { held = held || []; },
    release() {
      const waiting = held || [];
      held = null;
      for (const client of waiting) if (!client.destroyed) forward(client);
    },
    close() {
      this.cut();
      server.close();
    },
  };
}
