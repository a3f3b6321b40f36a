-- How far a poller has read a source (an IMAP folder's UIDVALIDITY and last UID), kept
-- across restarts so that nothing is imported twice.
CREATE TABLE channel_cursors (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
