//! Faults injected for tests (the `test-util` feature, which only the
//! tests turn on): a room or queue made to panic, as a bug in it would.

use actix::dev::ToEnvelope;
use actix::prelude::*;

/// Makes the actor that gets it panic.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Crash;

/// Makes the actor at `addr` panic and returns once it is gone.
pub(crate) async fn crash<A>(addr: Addr<A>, what: &str)
where
    A: Actor + Handler<Crash>,
    A::Context: ToEnvelope<A, Crash>,
{
    // The reply is lost with the panic, which unwinds the actor's task; the
    // mailbox goes with the task a moment later.
    let _ = addr.send(Crash).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while addr.connected() {
        assert!(std::time::Instant::now() < deadline, "{what} did not stop after its panic");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
