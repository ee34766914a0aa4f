//! The records of whose a natively served response is ([`super::native_owner`]) in
//! Redis (`responses.store: redis`): one key per response id, its value the record as
//! JSON, expiring with `responses.native_owner_ttl`, so that every replica lets the
//! same caller alone reach it.

use super::native_owner::{NativeOwner, NativeOwnerSettings};
use super::response_store::StoreUnavailable;
use crate::limits::RedisLink;

/// How a record's key starts; the response id follows.
pub(super) const NATIVE_OWNER_PREFIX: &str = "aurora:resps:native:";

fn key(id: &str) -> String {
    format!("{NATIVE_OWNER_PREFIX}{id}")
}

fn unavailable(e: crate::limits::StoreError) -> StoreUnavailable {
    StoreUnavailable(e.0)
}

/// Writes `record` for `id`, to expire after `settings.ttl`.
pub(super) async fn write(
    link: &RedisLink,
    id: &str,
    record: &NativeOwner,
    settings: &NativeOwnerSettings,
) -> Result<(), StoreUnavailable> {
    let value = serde_json::to_string(record)
        .map_err(|e| StoreUnavailable(format!("a response's owner could not be written: {e}")))?;
    let ttl_ms = u64::try_from(settings.ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut set = redis::cmd("SET");
    set.arg(key(id)).arg(value).arg("PX").arg(ttl_ms);
    let mut conn = link.connection().await.map_err(unavailable)?;
    link.within(
        set.query_async::<()>(&mut conn),
        "a response's owner's write",
        1,
    )
    .await
    .map_err(unavailable)
}

/// The record of `id`, if there is one; one that cannot be read counts as none of
/// this gateway's (never written by it).
pub(super) async fn read(
    link: &RedisLink,
    id: &str,
) -> Result<Option<NativeOwner>, StoreUnavailable> {
    let mut get = redis::cmd("GET");
    get.arg(key(id));
    let mut conn = link.connection().await.map_err(unavailable)?;
    let value: Option<String> = link
        .within(get.query_async(&mut conn), "a response's owner's read", 1)
        .await
        .map_err(unavailable)?;
    Ok(value.and_then(|value| serde_json::from_str(&value).ok()))
}

/// Forgets the record of `id`.
pub(super) async fn forget(link: &RedisLink, id: &str) -> Result<(), StoreUnavailable> {
    let mut del = redis::cmd("DEL");
    del.arg(key(id));
    let mut conn = link.connection().await.map_err(unavailable)?;
    link.within(
        del.query_async::<()>(&mut conn),
        "a response's owner's removal",
        1,
    )
    .await
    .map_err(unavailable)
}
