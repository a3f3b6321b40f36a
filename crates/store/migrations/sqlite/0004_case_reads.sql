CREATE TABLE case_reads (
    user_id INTEGER NOT NULL, case_id INTEGER NOT NULL, seen_event_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, case_id));
