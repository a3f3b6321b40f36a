-- Status reports that arrived before the send that they are about was recorded (a provider can
-- call back before the delivery job has committed the provider's message id). They are applied
-- when that id is recorded; kept at most a week.
CREATE TABLE delivery_reports_pending (
    channel TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    received_at BIGINT NOT NULL);
CREATE INDEX delivery_reports_pending_id ON delivery_reports_pending(channel, provider_message_id);
CREATE INDEX delivery_reports_pending_age ON delivery_reports_pending(received_at);
