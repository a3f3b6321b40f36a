-- Delivery reports find an outbound message by its channel and the provider's id.
CREATE INDEX messages_provider_id ON messages(channel, provider_message_id) WHERE provider_message_id IS NOT NULL;
