//! Asking an actor that may stop between the lookup and the request.
//!
//! Rooms and queues stop when they have been idle; a caller that looked one
//! up just before finds its mailbox closed. The registry then hands out a
//! fresh actor, so the request is simply made again.

use std::future::Future;

use actix::dev::ToEnvelope;
use actix::prelude::*;

use crate::Refusal;

/// How often a caller tries an actor that stopped under its feet.
const ATTEMPTS: usize = 5;

/// Sends `make()` to the actor `open` finds, looking it up afresh while the
/// one found has stopped. Returns the address that answered, with its
/// answer; `gone` is the refusal when no actor answers.
pub(crate) async fn ask_fresh<A, M, F, Fut>(
    open: F,
    make: impl Fn() -> M,
    gone: fn() -> Refusal,
) -> Result<(Addr<A>, M::Result), Refusal>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Addr<A>, Refusal>>,
{
    for _ in 0..ATTEMPTS {
        let addr = open().await?;
        match addr.send(make()).await {
            Ok(result) => return Ok((addr, result)),
            Err(MailboxError::Closed) => tokio::task::yield_now().await,
            Err(MailboxError::Timeout) => return Err(gone()),
        }
    }
    Err(gone())
}
