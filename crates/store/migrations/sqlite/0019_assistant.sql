-- The digital assistant. Each inbound message's analysis (language, intent, entities,
-- sentiment; the whole of it as JSON in `data`, the fields rules filter on beside it), written
-- by the analysis job after ingest, never in the ingest transaction.
CREATE TABLE message_analysis (
    message_id INTEGER PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    intent TEXT NOT NULL,
    intent_confidence REAL NOT NULL,
    intent_source TEXT NOT NULL,
    sentiment TEXT NOT NULL,
    language TEXT,
    data TEXT NOT NULL,
    analysed_at INTEGER NOT NULL
);
-- A case's intent: its first inbound message's, until an agent sets it (source 'agent').
ALTER TABLE cases ADD COLUMN intent TEXT;
ALTER TABLE cases ADD COLUMN intent_source TEXT;
-- An answer the assistant sent by itself (marked in the timeline; rate-limited per customer).
ALTER TABLE messages ADD COLUMN automatic INTEGER NOT NULL DEFAULT 0;
-- Intents agents set or corrected: training examples for the next model.
CREATE TABLE assist_examples (
    id INTEGER PRIMARY KEY,
    message_id INTEGER UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    user_id INTEGER,
    created_at INTEGER NOT NULL
);
-- Models trained here (the seed set plus the agents' examples); the newest is used.
CREATE TABLE assist_models (
    id INTEGER PRIMARY KEY,
    model BLOB NOT NULL,
    examples INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
-- Automation level per intent: off, suggest (the answer goes into the composer) or auto
-- (it is sent), with the canned response that answers it.
CREATE TABLE assist_intents (
    intent TEXT PRIMARY KEY,
    level TEXT NOT NULL,
    canned_id INTEGER REFERENCES canned_responses (id) ON DELETE SET NULL,
    updated_at INTEGER NOT NULL
);
-- Finding the one analysis job quickly.
CREATE INDEX jobs_kind_status ON jobs (kind, status);
