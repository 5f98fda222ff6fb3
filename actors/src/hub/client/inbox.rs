//! The user's inbox as a session asks for it (`docs/protocol.md#read-state`): `mark-read`
//! (every session of the user learns the change from the `inbox-state` the inbox's Redis
//! function publishes), `inbox-page`, and the unread count `connected` carries.

use super::*;

use hub_wire::protocol::Marks;

impl ClientCore {
    /// The unread count for `connected`; `None` (logged, counted) when Redis could not say.
    pub(super) fn unread_of(&self, read: Option<Result<u64, HubError>>) -> Option<u64> {
        match read? {
            Ok(unread) => Some(unread),
            Err(e) => {
                self.env.metrics.inbox_errors.inc();
                warn!(
                    "session {:x}: the unread count could not be read: {e}",
                    self.id
                );
                None
            }
        }
    }

    /// `mark-read`: marks the notifications read in Redis, which tells every session.
    pub(super) fn mark_read(&mut self, marks: Marks, id: Option<Value>, io: &mut impl ClientIo) {
        let (inbox, user) = (self.env.inbox.clone(), self.user().to_owned());
        self.busy.get_or_insert_default();
        io.spawn(Step::new(async move {
            let result = inbox.mark_read(&user, &marks).await;
            Resumed(Outcome::Marked { id, result })
        }));
    }

    /// `inbox-page`: a page of the user's inbox, newest first, with read flags.
    pub(super) fn inbox_page(
        &mut self,
        before: Option<MessageId>,
        limit: usize,
        id: Option<Value>,
        io: &mut impl ClientIo,
    ) {
        let (inbox, user) = (self.env.inbox.clone(), self.user().to_owned());
        self.busy.get_or_insert_default();
        io.spawn(Step::new(async move {
            let result = inbox.page(&user, before, limit).await;
            Resumed(Outcome::Paged { id, result })
        }));
    }

    /// A `mark-read` is done: acknowledged (Socket.IO), or refused when Redis failed.
    pub(super) fn marked(
        &mut self,
        id: Option<Value>,
        result: Result<u64, HubError>,
        io: &mut impl ClientIo,
    ) {
        match result {
            Ok(unread) => io.reply(Reply::Marked { unread }, id),
            Err(e) => self.inbox_failed("marked read", e, id, io),
        }
    }

    /// An `inbox-page` is read: answered, or refused when Redis failed.
    pub(super) fn paged(
        &mut self,
        id: Option<Value>,
        result: Result<InboxPage, HubError>,
        io: &mut impl ClientIo,
    ) {
        match result {
            Ok(page) => io.reply(Reply::InboxPage(page), id),
            Err(e) => self.inbox_failed("read", e, id, io),
        }
    }

    fn inbox_failed(&mut self, what: &str, e: HubError, id: Option<Value>, io: &mut impl ClientIo) {
        self.env.metrics.inbox_errors.inc();
        warn!("session {:x}: the inbox could not be {what}: {e}", self.id);
        let message = format!("the inbox could not be {what}; try again");
        self.env.metrics.client_error(ErrorCode::Unavailable);
        io.error(error_with_id(ErrorCode::Unavailable, message, id));
    }
}
