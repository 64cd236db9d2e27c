-- Each room's messages as a chain, instead of a (room, seq) index over every
-- message. With many rooms busy at once, the rows of one batch land in as
-- many leaves of such an index, so every commit wrote about one 4 KiB page
-- per message. Now a message points at its room's previous one (`prev`, a
-- rowid); `message_tails` holds each room's newest message, keyed by the
-- rowid of the room's first one, so that the rooms that are busy now (whose
-- first messages are recent) share the last few of its pages; and only every
-- 64th message of a room (seq 1, 65, 129, ...) is in an index, which reads
-- use to start a walk near where they want to be. See src/store/sqlite_chains.rs.
ALTER TABLE messages ADD COLUMN prev INTEGER;

UPDATE messages SET prev = p.prev
FROM (SELECT rowid AS r, LAG(rowid) OVER (PARTITION BY room ORDER BY seq) AS prev FROM messages) p
WHERE messages.rowid = p.r;

CREATE TABLE message_tails (
    first    INTEGER PRIMARY KEY,  -- rowid of the room's message with seq 1
    last     INTEGER NOT NULL,     -- rowid of its newest message
    last_seq INTEGER NOT NULL
);

INSERT INTO message_tails (first, last, last_seq)
SELECT f.rowid, m.rowid, m.seq
FROM messages f JOIN messages m ON m.room = f.room
WHERE f.seq = 1 AND m.seq = (SELECT MAX(seq) FROM messages x WHERE x.room = f.room);

CREATE UNIQUE INDEX messages_every_64th ON messages (room, seq) WHERE seq % 64 = 1;

DROP INDEX messages_by_room;
