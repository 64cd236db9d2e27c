//! How SQLite finds a room's messages: each room's messages are a chain.
//!
//! The messages table is kept in arrival order (its rowid), so a batch of
//! messages from many rooms appends to its last pages. A `(room, seq)` index
//! over every message would put each busy room's newest entries in a leaf of
//! their own, and every commit would write about one 4 KiB index page per
//! message: at 1,000 busy rooms that was five times the bytes of the rows
//! themselves (117 against 20 MB/s at 20,000 messages/s). Instead:
//!
//! - every message names its room's previous one (`prev`, a rowid);
//! - `message_tails` holds each room's newest message and `seq`, keyed by the
//!   rowid of the room's first message. Rooms busy now began recently, so
//!   their rows share the last few pages of that table, and a commit writes
//!   those few pages however many rooms it touches;
//! - only every 64th message of a room (seq 1, 65, 129, …) is in an index,
//!   `messages_every_64th`. A commit touches it for one message in 64, and a
//!   read uses it to find a room's first message (and so its tail), and to
//!   start a walk at most 63 steps above where it wants to be.
//!
//! A read walks the chain backwards from its start, one rowid lookup a step,
//! in a recursive query: the messages after a `seq`, up to a limit, cost the
//! limit plus at most 63 steps; the newest messages of a room, their number.
//! The store's one writer assigns the rowids and keeps each room's tail in
//! memory (see `RoomMemory` in `sqlite.rs`), so it can chain a batch's rows
//! before it inserts them.

use super::rows::message_columns;

/// `FROM … WHERE …` of the tail of the room named by the SQL expression
/// `$room` (`t.first`, `t.last`, `t.last_seq`), no row when the room has no
/// message. The room's first message is found through the index of every
/// 64th message, which holds it (seq 1); the condition must be the index's
/// own for SQLite to use it.
macro_rules! tail_from {
    ($room:literal) => {
        concat!(
            "FROM messages f JOIN message_tails t ON t.first = f.rowid WHERE f.room = ",
            $room,
            " AND f.seq % 64 = 1 AND f.seq = 1"
        )
    };
}
pub(crate) use tail_from;

/// `tail(first, last, last_seq)`: the tail of room `?1`.
macro_rules! tail {
    () => {
        concat!("tail(first, last, last_seq) AS (SELECT t.first, t.last, t.last_seq ", tail_from!("?1"), ")")
    };
}

/// The tail of room `?1`: its first message's rowid, its newest message's
/// rowid and `seq`.
pub(crate) const TAIL: &str = concat!("WITH ", tail!(), " SELECT first, last, last_seq FROM tail");

/// `walk(r, s, p)`: rowid, seq and prev of the messages of room `?1` from
/// seq `bound.hi` down to seq `?2 + 1`. The walk starts at the first indexed
/// message at or above `hi` (seq 64k + 1), or at the tail when there is none.
macro_rules! walk_after {
    () => {
        concat!(
            "WITH RECURSIVE ",
            tail!(),
            ",
            bound(hi) AS (SELECT MIN(last_seq, ?2 + ?3) FROM tail),
            start(r) AS (SELECT COALESCE(
                (SELECT m.rowid FROM messages m, bound
                 WHERE m.room = ?1 AND m.seq % 64 = 1 AND m.seq = ((bound.hi + 62) / 64) * 64 + 1),
                (SELECT last FROM tail))),
            walk(r, s, p) AS (
                SELECT m.rowid, m.seq, m.prev FROM messages m, start WHERE m.rowid = start.r
                UNION ALL
                SELECT m.rowid, m.seq, m.prev FROM walk w JOIN messages m ON m.rowid = w.p WHERE w.s > ?2 + 1)"
        )
    };
}

/// Up to `?3` messages of room `?1` after seq `?2`, in order.
pub(crate) const MESSAGES_AFTER: &str = concat!(
    walk_after!(),
    " SELECT ",
    message_columns!(),
    " FROM walk CROSS JOIN messages m ON m.rowid = walk.r, bound WHERE walk.s > ?2 AND walk.s <= bound.hi ORDER BY walk.s"
);

/// The message of room `?1` with seq `?2 + 1` (bind `?3` = 1): `seq`, `id`,
/// `at`, `sender_id` and `client_id`.
pub(crate) const MESSAGE_AT: &str = concat!(
    walk_after!(),
    " SELECT m.seq, m.id, m.at, m.sender_id, m.client_id
      FROM walk CROSS JOIN messages m ON m.rowid = walk.r, bound WHERE walk.s = ?2 + 1 AND walk.s <= bound.hi"
);

/// The last `?2` messages of room `?1`, in order.
pub(crate) const LAST_MESSAGES: &str = concat!(
    "WITH RECURSIVE ",
    tail!(),
    ",
    walk(r, s, p) AS (
        SELECT m.rowid, m.seq, m.prev FROM messages m, tail WHERE m.rowid = tail.last
        UNION ALL
        SELECT m.rowid, m.seq, m.prev FROM walk w JOIN messages m ON m.rowid = w.p, tail
        WHERE w.s > tail.last_seq - ?2 + 1)
    SELECT ",
    message_columns!(),
    " FROM walk CROSS JOIN messages m ON m.rowid = walk.r, tail WHERE walk.s > tail.last_seq - ?2 ORDER BY walk.s"
);

/// `walk(r, p)`: every message of room `?1`, newest first.
macro_rules! walk_all {
    () => {
        concat!(
            "WITH RECURSIVE ",
            tail!(),
            ",
            walk(r, p) AS (
                SELECT m.rowid, m.prev FROM messages m, tail WHERE m.rowid = tail.last
                UNION ALL
                SELECT m.rowid, m.prev FROM walk w JOIN messages m ON m.rowid = w.p)"
        )
    };
}

/// The `seq`, `sender_id` and `client_id` of every message of room `?1`.
pub(crate) const SENDERS: &str =
    concat!(walk_all!(), " SELECT m.seq, m.sender_id, m.client_id FROM walk CROSS JOIN messages m ON m.rowid = walk.r");

/// The message of sender `?2` with client id `?3` in room `?1`, if stored:
/// `seq`, `id` and `at`.
pub(crate) const SENT: &str = concat!(
    walk_all!(),
    " SELECT m.seq, m.id, m.at FROM walk CROSS JOIN messages m ON m.rowid = walk.r
      WHERE m.sender_id = ?2 AND m.client_id = ?3 LIMIT 1"
);

/// After a batch's inserts: the tail of every room with a message after
/// rowid `?` (the last rowid before the batch). Within a room rowid and seq
/// grow together, so the two maxima are one row's. The batch is grouped by
/// room first, so each room's first message is looked up once.
///
/// `OR ROLLBACK`, as for the inserts: a failure rolls the whole transaction
/// back, so SQLite keeps no statement journal for it.
pub(crate) const SET_TAILS: &str = "INSERT OR ROLLBACK INTO message_tails (first, last, last_seq)
    SELECT f.rowid, n.last, n.last_seq
    FROM (SELECT room, MAX(rowid) AS last, MAX(seq) AS last_seq FROM messages WHERE rowid > ? GROUP BY room) n
    CROSS JOIN messages f ON f.room = n.room AND f.seq % 64 = 1 AND f.seq = 1
    WHERE true
    ON CONFLICT (first) DO UPDATE SET last = excluded.last, last_seq = excluded.last_seq";
