-- Idempotency keys per sending client (scope), with a fingerprint of the message.
CREATE TABLE inbound_keys_scoped (
    channel TEXT NOT NULL, scope TEXT NOT NULL, idem_key TEXT NOT NULL, fingerprint TEXT,
    message_id INTEGER NOT NULL, case_id INTEGER NOT NULL, customer_id INTEGER NOT NULL, event_id INTEGER NOT NULL,
    PRIMARY KEY (channel, scope, idem_key));
INSERT INTO inbound_keys_scoped (channel, scope, idem_key, message_id, case_id, customer_id, event_id)
    SELECT channel, '', idem_key, message_id, case_id, customer_id, event_id FROM inbound_keys;
DROP TABLE inbound_keys;
ALTER TABLE inbound_keys_scoped RENAME TO inbound_keys;
