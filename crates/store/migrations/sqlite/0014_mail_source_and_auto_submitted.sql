-- E-mail: a message sent by a machine (auto-reply, out-of-office, list mail) is marked and
-- never answered automatically; the raw source of a received mail is kept (encrypted, in the
-- blob store) for agents to download.
ALTER TABLE messages ADD COLUMN auto_submitted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN raw_blob_id TEXT;
