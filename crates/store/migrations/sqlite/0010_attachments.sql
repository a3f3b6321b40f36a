-- Attachments with their bytes in the encrypted blob store (blob_id), or links (url) that are
-- never fetched. message_id is set in the transaction that stores the message.
CREATE TABLE attachments (
    id INTEGER PRIMARY KEY,
    message_id BIGINT NOT NULL REFERENCES messages(id),
    blob_id TEXT,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT,
    url TEXT,
    created_at BIGINT NOT NULL);
CREATE INDEX attachments_message ON attachments(message_id);
CREATE INDEX attachments_blob ON attachments(blob_id) WHERE blob_id IS NOT NULL;
