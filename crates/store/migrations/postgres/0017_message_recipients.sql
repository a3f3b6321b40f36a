-- Whom a received mail named as its recipients (`To`), a JSON list of addresses; `cc`
-- now also holds a received mail's `Cc`.
ALTER TABLE messages ADD COLUMN recipients TEXT NOT NULL DEFAULT '[]';
