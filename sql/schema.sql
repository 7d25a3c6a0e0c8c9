-- schema.sql: the one schema of the chat system (SPEC section 6).
--
-- chat-fcgi and chat-ws apply this file when they open a database that has
-- no tables yet; an operator can also apply it by hand:
--     sqlite3 var/chat.db < sql/schema.sql
-- The database runs in WAL mode, so readers (the programs, the sqlite3 CLI)
-- never block the writer.

PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS messages (
    -- Cursor of every client: strictly increasing, never reused
    -- (AUTOINCREMENT keeps ids of deleted rows retired).
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Room name, [A-Za-z0-9_.-]{1,64}; 'lobby' unless the client chose one.
    room TEXT NOT NULL,
    -- Display name the sender chose, at most 64 bytes; '' when anonymous.
    user TEXT NOT NULL DEFAULT '',
    -- The message, 1 to 4096 bytes of UTF-8 without control characters
    -- other than tab and newline.
    text TEXT NOT NULL,
    -- When the row was stored, in milliseconds since the Unix epoch; the
    -- default lets a bare `insert into messages(room,text)` work.
    ts   INTEGER NOT NULL
         DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)),
    -- Client message id, [A-Za-z0-9_.-]{1,64}, or NULL: a send repeated with
    -- the same cid in the same room stores nothing new.
    cid  TEXT
);

-- Every read is "messages of a room after an id".
CREATE INDEX IF NOT EXISTS messages_room_id ON messages(room, id);
-- Idempotent sends: one row per (room, cid). Partial: a row without a cid
-- (most sends) adds no entry, one B-tree insert and one page a commit less
-- (version 2 indexed every row; applying this file replaces that index).
DROP INDEX IF EXISTS messages_room_cid;
CREATE UNIQUE INDEX messages_room_cid ON messages(room, cid) WHERE cid IS NOT NULL;

-- Retention (off unless chat-fcgi is given --retain-age or --retain-per-room)
-- records here, per room, the largest id it deleted, so that a client whose
-- cursor is older learns that it missed messages ("pruned": true).
CREATE TABLE IF NOT EXISTS pruned (
    -- Room name, as in messages.room.
    room  TEXT PRIMARY KEY,
    -- Largest id retention deleted from the room; cursors below it missed some.
    upto  INTEGER NOT NULL
);

-- Schema version, checked at start: a newer database is refused, an older
-- one is brought up to date by applying this file again (applying it twice
-- changes nothing more than applying it once). Version 3 made the (room, cid)
-- index partial.
PRAGMA user_version = 3;
