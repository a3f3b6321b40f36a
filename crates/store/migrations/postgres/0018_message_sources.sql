-- The raw sources of received mails small enough to keep in the database, sealed with the
-- blob store's key (the same format as a stored object, under messages.raw_blob_id): written
-- in the message's own transaction, so a mail costs one durable write, not a file and its
-- fsyncs. Larger sources stay in the blob store.
CREATE TABLE message_sources (
    message_id BIGINT PRIMARY KEY REFERENCES messages (id),
    sealed BYTEA NOT NULL
);
