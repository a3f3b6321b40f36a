CREATE TABLE sessions (
    id TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), csrf TEXT NOT NULL,
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE INDEX sessions_user ON sessions(user_id);
ALTER TABLE users ADD COLUMN language TEXT;
CREATE TABLE team_members (
    team_id INTEGER NOT NULL REFERENCES teams(id), user_id INTEGER NOT NULL REFERENCES users(id),
    PRIMARY KEY (team_id, user_id));
CREATE TABLE canned_responses (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, shortcut TEXT, body TEXT NOT NULL, language TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
ALTER TABLE cases ADD COLUMN merged_into INTEGER;
