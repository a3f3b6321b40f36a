-- Further recipients of an outbound message (e-mail `Cc`), a JSON list of addresses.
ALTER TABLE messages ADD COLUMN cc TEXT NOT NULL DEFAULT '[]';
