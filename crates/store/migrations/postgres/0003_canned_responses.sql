CREATE UNIQUE INDEX canned_responses_shortcut ON canned_responses(shortcut);
CREATE INDEX team_members_user ON team_members(user_id);
