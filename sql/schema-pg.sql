-- schema-pg.sql: the schema of the chat system on PostgreSQL (SPEC section 9),
-- for several nodes that share one database. Same tables and columns as
-- sql/schema.sql, so that sql/inspect.sql runs in psql as in sqlite3.
--
-- chat-fcgi and chat-ws apply this file when they open a database whose
-- schema is missing or older (in one transaction, under an advisory lock,
-- so that nodes starting together apply it once); an operator can also
-- apply it by hand:
--     psql postgresql:///chat?host=... -1 -v ON_ERROR_STOP=1 -f sql/schema-pg.sql
-- Every statement is idempotent: applying it again changes nothing, and
-- applying a newer version of this file upgrades in place.

CREATE TABLE IF NOT EXISTS messages (
    -- Cursor of every client: strictly increasing, never reused, and in
    -- commit order across every node (set by messages_next_id below from
    -- messages_id_seq; a value given in an INSERT is replaced).
    id    bigint PRIMARY KEY,
    -- Room name, [A-Za-z0-9_.-]{1,64}; 'lobby' unless the client chose one.
    room  text NOT NULL,
    -- Display name the sender chose, at most 64 bytes; '' when anonymous.
    -- Quoted everywhere: unquoted, user is the connected role.
    "user" text NOT NULL DEFAULT '',
    -- The message, 1 to 4096 bytes of UTF-8 without control characters
    -- other than tab and newline.
    text  text NOT NULL,
    -- When the row was stored, in milliseconds since the Unix epoch, by
    -- the database's clock (one clock for every node); the default lets a
    -- bare `insert into messages(room,text)` work.
    ts    bigint NOT NULL
          DEFAULT (round(extract(epoch FROM clock_timestamp()) * 1000))::bigint,
    -- Client message id, [A-Za-z0-9_.-]{1,64}, or NULL: a send repeated with
    -- the same cid in the same room, through any node, stores nothing new.
    cid   text
);

-- Every read is "messages of a room after an id".
CREATE INDEX IF NOT EXISTS messages_room_id ON messages (room, id);
-- Idempotent sends: one row per (room, cid); rows without a cid never clash.
CREATE UNIQUE INDEX IF NOT EXISTS messages_room_cid ON messages (room, cid);

-- Retention (off unless chat-fcgi is given --retain-age or --retain-per-room)
-- records here, per room, the largest id it deleted, so that a client whose
-- cursor is older learns that it missed messages ("pruned": true).
CREATE TABLE IF NOT EXISTS pruned (
    -- Room name, as in messages.room.
    room  text PRIMARY KEY,
    -- Largest id retention deleted from the room; cursors below it missed some.
    upto  bigint NOT NULL
);

-- Ids in commit order. A sequence alone hands out ids when a row is
-- inserted, not when it commits: transaction 1 takes 100, transaction 2
-- takes 101 and commits first, and a reader that moved to 101 never sees
-- 100. So every insert first takes the counter's lock, an advisory lock
-- held to the end of the transaction (key 7243582), and only then the next
-- value of the sequence: a second writer waits until the first has
-- committed, so ids are handed out in commit order, by every node and by
-- psql alike. Group commit makes it one wait per batch of messages. A
-- value that a rolled-back insert took is skipped, never reused.
CREATE SEQUENCE IF NOT EXISTS messages_id_seq AS bigint OWNED BY messages.id;

-- The sequence set past every id handed out, and the trigger's function
-- replaced, in one transaction even when this file is applied statement by
-- statement, with inserts held off meanwhile (the table lock): so no insert
-- takes an id of the sequence before it is set, nor one of the counter it
-- replaces. That is version 1's message_ids, a row every insert took for
-- update and incremented, so that a bulk insert rewrote one row as often
-- as it had rows. One cached value at a time (CACHE 1): sessions that each
-- cached a range would hand out ids out of commit order.
DO $upgrade$
DECLARE
    upto bigint;
BEGIN
    LOCK TABLE messages IN SHARE ROW EXCLUSIVE MODE;
    SELECT greatest(coalesce(max(id), 0),
                    (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
                       FROM messages_id_seq))
      INTO upto FROM messages;
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('message_ids')) = 'r' THEN
        EXECUTE 'SELECT greatest($1, coalesce(max(last), 0)) FROM message_ids' INTO upto USING upto;
        DROP TABLE message_ids;
    END IF;
    IF upto > 0 THEN
        PERFORM setval('messages_id_seq', upto);
    END IF;
    ALTER SEQUENCE messages_id_seq CACHE 1 NO CYCLE;
    CREATE OR REPLACE FUNCTION messages_next_id() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
        PERFORM pg_advisory_xact_lock(7243582);
        NEW.id := nextval('messages_id_seq');
        RETURN NEW;
    END
    $fn$;
    -- What a node of version 1 reads once a second, so that it keeps
    -- working through a rolling upgrade: the last id handed out (one row,
    -- read-only).
    CREATE OR REPLACE VIEW message_ids AS
        SELECT true AS one, CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS last
          FROM messages_id_seq;
END
$upgrade$;
CREATE OR REPLACE TRIGGER messages_next_id BEFORE INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_next_id();

-- Wake-ups: after a statement that stored rows, a notice on channel 'chat'
-- to every listening process (one connection each), delivered when the
-- transaction commits. It is a signal only (empty payload, so that the
-- notices of one transaction merge into one); the rows are always read by
-- cursor. A row inserted by hand with psql wakes every node the same way.
CREATE OR REPLACE FUNCTION messages_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM added) THEN
        PERFORM pg_notify('chat', '');
    END IF;
    RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER messages_notify AFTER INSERT ON messages
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION messages_notify();

-- So that sql/inspect.sql runs unchanged in psql: the two SQLite date
-- functions it uses, for the forms it uses (strftime of unix seconds
-- with %Y %m %d %H %M %S %f, julianday('now')).
CREATE OR REPLACE FUNCTION strftime(format text, seconds numeric, modifier text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(to_timestamp(seconds) AT TIME ZONE 'UTC',
                   replace(replace(replace(replace(replace(replace(replace(
                       format, '%f', 'SS.MS'), '%S', 'SS'), '%M', 'MI'), '%H', 'HH24'),
                       '%d', 'DD'), '%m', 'MM'), '%Y', 'YYYY'))
     WHERE modifier = 'unixepoch'
$$;
CREATE OR REPLACE FUNCTION julianday(moment text) RETURNS double precision
LANGUAGE sql STABLE AS $$
    SELECT extract(epoch FROM moment::timestamptz)::double precision / 86400 + 2440587.5
$$;

-- Schema version, checked at start: a newer database is refused, an older
-- one is brought up to date by applying this file again.
CREATE TABLE IF NOT EXISTS schema_version (
    -- Always true: the table holds one row.
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    -- The version of this file last applied.
    version  integer NOT NULL
);
INSERT INTO schema_version (version) VALUES (2)
    ON CONFLICT (one) DO UPDATE SET version = greatest(schema_version.version, excluded.version);
