-- Delivery reports find an outbound message by its channel and the provider's id. Partial, so
-- inbound messages (most of the rows, each with its provider's id) cost the index nothing.
CREATE INDEX messages_outbound_provider_id ON messages(channel, provider_message_id)
    WHERE direction = 'out' AND provider_message_id IS NOT NULL;
