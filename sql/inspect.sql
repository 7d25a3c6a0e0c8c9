-- inspect.sql: ready queries for an operator, run with
--     sqlite3 -header -column var/chat.db < sql/inspect.sql
-- or, on PostgreSQL (several nodes, SPEC section 9),
--     psql "postgresql:///chat?host=..." -f sql/inspect.sql
-- or one at a time by pasting into `sqlite3 var/chat.db` or psql.
-- The same text runs in both: "user" is quoted (in PostgreSQL, unquoted
-- user is the connected role), and sql/schema-pg.sql gives PostgreSQL the
-- two SQLite date functions used here.

-- The 20 latest messages, newest first, with readable UTC times (line
-- breaks of the text shown as spaces: the string in replace() is one).
SELECT id, room, "user",
       strftime('%Y-%m-%d %H:%M:%f', ts / 1000.0, 'unixepoch') AS time_utc,
       substr(replace(text, '
', ' '), 1, 60) AS text
  FROM messages ORDER BY id DESC LIMIT 20;

-- Messages per room, with the latest id (a client's cursor) and time.
SELECT room, count(*) AS messages, max(id) AS latest_id,
       strftime('%Y-%m-%d %H:%M:%S', max(ts) / 1000, 'unixepoch') AS latest_utc
  FROM messages GROUP BY room ORDER BY messages DESC;

-- Messages per minute over the last hour, all rooms together.
SELECT strftime('%Y-%m-%d %H:%M', ts / 1000, 'unixepoch') AS minute_utc,
       count(*) AS messages
  FROM messages
 WHERE ts >= CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS BIGINT) - 3600000
 GROUP BY minute_utc ORDER BY minute_utc;
