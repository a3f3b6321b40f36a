-- Recorded phone calls keep their length.
ALTER TABLE messages ADD COLUMN duration_seconds BIGINT;
