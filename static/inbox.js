// The notification centre: a bell with the user's unread count and the inbox, kept in step
// with every other session of the user (other tabs, other devices) through `inbox-state`
// (docs/protocol.md#read-state). Clicking a notification marks it read; "Mark all read"
// marks everything up to the newest.
import { $, el } from './dom.js';

/** `a < b` for inbox ids `<ms>-<seq>`. */
function before(a, b) {
  const [am, as] = a.split('-').map(Number);
  const [bm, bs] = b.split('-').map(Number);
  return am < bm || (am === bm && as < bs);
}

export class InboxView {
  /** @param {{markRead: (marks: object) => void}} actions */
  constructor(actions) {
    this.actions = actions;
    /** inboxId -> {data, read}, shown newest first. */
    this.items = new Map();
    $('bell').onclick = () => {
      $('inbox').hidden = !$('inbox').hidden;
      $('bell').setAttribute('aria-expanded', String(!$('inbox').hidden));
    };
    $('mark-all').onclick = () => {
      const newest = this.sorted()[0];
      if (newest) this.actions.markRead({ upTo: newest[0] });
    };
  }

  /** The user's count: the badge. */
  setUnread(unread) {
    const badge = $('unread');
    badge.textContent = unread > 99 ? '99+' : String(unread ?? 0);
    badge.dataset.count = String(unread ?? 0);
    badge.hidden = !unread;
    $('bell').title = `${unread ?? 0} unread`;
  }

  /** A page from the hub (after connecting): the list starts over from it. */
  load(page) {
    this.items.clear();
    for (const { data, read } of page.items) {
      if (data.inboxId) this.items.set(data.inboxId, { data, read });
    }
    this.setUnread(page.unread);
    this.render();
  }

  /** A notification pushed live: new and unread. */
  add(n) {
    if (!n.inboxId) return;
    this.items.set(n.inboxId, { data: n, read: false });
    this.render();
  }

  /** An `inbox-state` from any session of the user. */
  apply(state) {
    for (const id of state.read ?? []) {
      const item = this.items.get(id);
      if (item) item.read = true;
    }
    if (state.upTo) {
      for (const [id, item] of this.items) {
        if (!before(state.upTo, id)) item.read = true;
      }
    }
    for (const id of state.removed ?? []) this.items.delete(id);
    this.setUnread(state.unread);
    this.render();
  }

  sorted() {
    return [...this.items].sort(([a], [b]) => (before(a, b) ? 1 : -1));
  }

  render() {
    const list = $('inbox-list');
    list.replaceChildren();
    for (const [id, { data, read }] of this.sorted()) {
      const li = el('li', read ? 'read' : 'unread');
      li.dataset.inboxId = id;
      li.append(el('strong', '', data.title ?? ''), el('span', '', data.message ?? ''));
      li.onclick = () => !read && this.actions.markRead({ ids: [id] });
      list.append(li);
    }
    if (!this.items.size) list.append(el('li', 'empty', 'No notifications.'));
  }
}
