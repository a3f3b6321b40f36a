-- Idempotency keys per sending client (scope), with a fingerprint of the message.
ALTER TABLE inbound_keys ADD COLUMN scope TEXT NOT NULL DEFAULT '', ADD COLUMN fingerprint TEXT;
ALTER TABLE inbound_keys ALTER COLUMN scope DROP DEFAULT;
ALTER TABLE inbound_keys DROP CONSTRAINT inbound_keys_pkey;
ALTER TABLE inbound_keys ADD PRIMARY KEY (channel, scope, idem_key);
