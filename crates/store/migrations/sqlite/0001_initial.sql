CREATE TABLE customers (
    id INTEGER PRIMARY KEY, name TEXT, language TEXT, merged_into INTEGER,
    search_text TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), kind TEXT NOT NULL,
    address TEXT NOT NULL, created_at INTEGER NOT NULL, UNIQUE (kind, address));
CREATE INDEX identities_customer ON identities(customer_id);
CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at INTEGER NOT NULL);
CREATE TABLE users (
    id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL, role TEXT NOT NULL,
    password_hash TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), subject TEXT,
    status TEXT NOT NULL, priority TEXT NOT NULL, assignee_id INTEGER, team_id INTEGER,
    tags TEXT NOT NULL DEFAULT '[]', channel TEXT NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, first_response_at INTEGER, resolved_at INTEGER,
    last_message_at INTEGER, last_event_id INTEGER NOT NULL DEFAULT 0);
CREATE INDEX cases_customer ON cases(customer_id, status);
CREATE INDEX cases_updated ON cases(updated_at, id);
CREATE INDEX cases_status_updated ON cases(status, updated_at, id);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL REFERENCES cases(id), customer_id INTEGER NOT NULL,
    direction TEXT NOT NULL, internal INTEGER NOT NULL DEFAULT 0, channel TEXT NOT NULL, subject TEXT,
    text TEXT NOT NULL, html TEXT, attachments TEXT NOT NULL DEFAULT '[]', provider_message_id TEXT,
    author_id INTEGER, delivery_state TEXT, delivery_error TEXT, created_at INTEGER NOT NULL);
CREATE INDEX messages_case ON messages(case_id, id);
CREATE INDEX messages_customer ON messages(customer_id);
CREATE VIRTUAL TABLE messages_fts USING fts5(subject, text, content='messages', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2');
CREATE VIRTUAL TABLE customers_fts USING fts5(search_text, tokenize='unicode61 remove_diacritics 2');
CREATE TABLE inbound_keys (
    channel TEXT NOT NULL, idem_key TEXT NOT NULL, message_id INTEGER NOT NULL, case_id INTEGER NOT NULL,
    customer_id INTEGER NOT NULL, event_id INTEGER NOT NULL, PRIMARY KEY (channel, idem_key));
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, case_id INTEGER, customer_id INTEGER,
    payload TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE INDEX events_case ON events(case_id, id);
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, queue TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    run_at INTEGER NOT NULL, locked_until INTEGER, locked_by TEXT, last_error TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX jobs_due ON jobs(status, run_at);
