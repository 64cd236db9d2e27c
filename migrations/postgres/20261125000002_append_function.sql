-- The writer's hot path in one statement: a batch of new messages, numbered
-- and stored. The consultation rows of the batch's rooms are locked first,
-- in id order, so that two nodes' batches never wait on each other in a
-- cycle. A resend (same room, sender and client_id, stored before or earlier
-- in this batch) gets its original's seq, id and at back, with
-- o_duplicate = true, and takes no number. One row per input, by o_ord.
-- PL/pgSQL keeps the plans of its statements, so a batch costs no planning.
CREATE FUNCTION telehub_append(
    p_room TEXT[],
    p_sender_id TEXT[],
    p_sender_name TEXT[],
    p_sender_role TEXT[],
    p_client_id TEXT[],
    p_kind TEXT[],
    p_text TEXT[],
    p_id TEXT[],
    p_at TEXT
) RETURNS TABLE (o_ord INT, o_seq BIGINT, o_id TEXT, o_at TEXT, o_duplicate BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    i INT;
    next_seq BIGINT;
    found_seq BIGINT;
    found_id TEXT;
    found_at TEXT;
BEGIN
    PERFORM 1 FROM consultations c WHERE c.id = ANY (p_room) ORDER BY c.id FOR UPDATE;
    FOR i IN 1 .. coalesce(array_length(p_room, 1), 0) LOOP
        IF p_client_id[i] IS NOT NULL THEN
            SELECT m.seq, m.id, m.at INTO found_seq, found_id, found_at FROM messages m
            WHERE m.room = p_room[i] AND m.sender_id = p_sender_id[i] AND m.client_id = p_client_id[i];
            IF FOUND THEN
                o_ord := i; o_seq := found_seq; o_id := found_id; o_at := found_at; o_duplicate := TRUE;
                RETURN NEXT;
                CONTINUE;
            END IF;
        END IF;
        UPDATE consultations c SET last_seq = c.last_seq + 1 WHERE c.id = p_room[i] RETURNING c.last_seq INTO next_seq;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no consultation %', p_room[i];
        END IF;
        INSERT INTO messages (room, seq, id, sender_id, sender_name, sender_role, client_id, kind, text, at)
        VALUES (p_room[i], next_seq, p_id[i], p_sender_id[i], p_sender_name[i], p_sender_role[i], p_client_id[i],
                p_kind[i], p_text[i], p_at);
        o_ord := i; o_seq := next_seq; o_id := p_id[i]; o_at := p_at; o_duplicate := FALSE;
        RETURN NEXT;
    END LOOP;
END;
$$;
