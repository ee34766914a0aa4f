//! One response's write to the Redis store, and the writes a stopping server left
//! unfinished, made again as the process ends.
//!
//! A write is made by the store's PUT script, which may run twice for one response
//! (a try whose answer was lost, then the next; a write cut short as the server stopped,
//! then made again at exit) and still counts it once in the store's books.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::response_store::{renewed_at_most, StoreLimits, StoredResponse};
use super::response_store_redis::{books, DELETED_PREFIX, ENTRY_PREFIX, UNDER_WAY_PREFIX};
use super::unfinished_writes::{Ticket, UnfinishedWrites};
use crate::limits::{RedisCalled, RedisLink, QUIET_AFTER_LOSS};

/// A response to be written, with all its write needs. Never printed: it holds the
/// conversation.
pub struct ResponseWrite {
    /// The response's id.
    pub id: String,
    /// What is kept under it.
    pub stored: StoredResponse,
    /// The store's bounds as the write found them.
    pub limits: StoreLimits,
}

impl ResponseWrite {
    /// One try, by the PUT `script` over `link`.
    pub async fn try_once(&self, link: &RedisLink, script: &Script) -> RedisCalled<i64> {
        let mut conn = match link.connection().await {
            Ok(conn) => conn,
            Err(e) => return RedisCalled::Unsent(e),
        };
        let size = self.stored.size();
        let mut call = script.prepare_invoke();
        books(&mut call, &self.id);
        call.arg(ENTRY_PREFIX)
            .arg(
                u64::try_from(self.limits.ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(self.limits.max_entries)
            .arg(self.limits.max_bytes)
            .arg(&self.id)
            .arg(size)
            .arg(&*self.stored.owner)
            .arg(&self.stored.response[..])
            .arg(&self.stored.input_items[..])
            .arg(self.stored.previous.as_deref().unwrap_or(""))
            .arg(UNDER_WAY_PREFIX)
            .arg(DELETED_PREFIX)
            .arg(renewed_at_most(&self.limits));
        let sent = call.invoke_async::<i64>(&mut conn);
        link.called(sent, "a response's write", patience_for(size))
            .await
    }
}

/// How many call times a write of `size` bytes may take: a large conversation's
/// write is not cut at a small read's time.
pub fn patience_for(size: usize) -> u32 {
    1 + u32::try_from(size / (1 << 20)).unwrap_or(u32::MAX).min(15)
}

/// Makes the writes `unfinished` holds, smallest first (a large conversation's write,
/// given more time, does not keep the others from theirs), again and again a moment
/// apart while Redis takes none, until each is written or refused (Redis will not run
/// it: tried again, it would be refused again; counted in `refused`). Each one written
/// or refused is finished; those left are what was not tried to the end. Bound it with
/// a timeout: while Redis takes nothing, it never ends.
pub async fn write_again(
    unfinished: &UnfinishedWrites<ResponseWrite>,
    link: &RedisLink,
    script: &Script,
    refused: &Cell<usize>,
) {
    let mut left: Vec<(Ticket, Arc<ResponseWrite>)> = unfinished.unfinished();
    left.sort_by_key(|(_, write)| write.stored.size());
    while !left.is_empty() {
        let mut again = Vec::new();
        for (ticket, write) in left {
            match write.try_once(link, script).await {
                RedisCalled::Done(_) => unfinished.finish(ticket),
                RedisCalled::Refused(_) => {
                    unfinished.finish(ticket);
                    refused.set(refused.get() + 1);
                }
                RedisCalled::Unsent(_) | RedisCalled::NotMade(_) | RedisCalled::InDoubt(_) => {
                    again.push((ticket, write));
                }
            }
        }
        if !again.is_empty() {
            // The link asks Redis nothing for this long after a call went unanswered.
            tokio::time::sleep(QUIET_AFTER_LOSS).await;
        }
        left = again;
    }
}

/// [`write_again`] as the process ends, its server's runtimes gone: on a runtime of
/// its own and a connection made anew, within `bound`. What is left unwritten is said
/// once, by its count alone.
pub fn write_out_at_exit(
    unfinished: &UnfinishedWrites<ResponseWrite>,
    link: &RedisLink,
    script: &Script,
    bound: Duration,
) {
    let waiting = unfinished.len();
    if waiting == 0 {
        return;
    }
    let refused = Cell::new(0);
    link.run_at_exit(bound, write_again(unfinished, link, script, &refused));
    let (unwritten, refused) = (unfinished.len(), refused.get());
    let written = waiting.saturating_sub(unwritten + refused);
    if written > 0 {
        log::info!("Responses API answers written to Redis at exit: {written}");
    }
    if unwritten > 0 {
        log::warn!(
            "Responses API answers not written to Redis at exit within {bound:?}: {unwritten}; \
             they cannot be continued or read"
        );
    }
    if refused > 0 {
        log::warn!(
            "Responses API answers Redis refused to store at exit: {refused}; they cannot be \
             continued or read"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_write_is_given_time_in_proportion_capped() {
        assert_eq!(patience_for(10_000), 1);
        assert_eq!(patience_for(3 << 20), 4);
        assert_eq!(patience_for(usize::MAX), 16);
    }
}
