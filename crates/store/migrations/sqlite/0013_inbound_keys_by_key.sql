-- An answer names the message it answers by its provider id (e-mail: In-Reply-To,
-- References); finding the case of a received message by that id, whoever's key it was.
CREATE INDEX inbound_keys_by_key ON inbound_keys(channel, idem_key);
