CREATE TABLE case_reads (
    user_id BIGINT NOT NULL, case_id BIGINT NOT NULL, seen_event_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, case_id));
