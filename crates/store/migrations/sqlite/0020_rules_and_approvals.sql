-- Rules of the digital assistant: conditions on an analysed inbound message → actions, in
-- order (position), each enabled or not. Conditions and actions are JSON (kontor_core::Rule).
CREATE TABLE rules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    enabled INTEGER NOT NULL,
    conditions TEXT NOT NULL,
    actions TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
-- Replies held until a second staff user approves them (four-eyes).
CREATE TABLE approvals (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL UNIQUE REFERENCES messages (id) ON DELETE CASCADE,
    case_id INTEGER NOT NULL,
    author_id INTEGER,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by INTEGER,
    comment TEXT,
    created_at INTEGER NOT NULL,
    decided_at INTEGER
);
CREATE INDEX approvals_status ON approvals (status, id);
-- A rule asked for four-eyes approval of every reply in this case (the rule's name).
ALTER TABLE cases ADD COLUMN approval_rule TEXT;
-- Something in the case needs attention (a negative message on a public channel).
ALTER TABLE cases ADD COLUMN alert TEXT;
