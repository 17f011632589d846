-- Hyperswitch webhook log: every payment event received, kept for idempotency and replay.
CREATE TABLE hyperswitch_webhook_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        varchar(255) NOT NULL UNIQUE,
    event_type      varchar(64)  NOT NULL,
    merchant_id     varchar(64),
    payment_id      varchar(255),
    payload         jsonb        NOT NULL,
    signature_valid boolean      NOT NULL,
    status          varchar(16)  NOT NULL DEFAULT 'received',
    error_message   text,
    received_at     timestamptz  NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    CONSTRAINT hyperswitch_webhook_log_status_check CHECK (status IN ('received', 'processed', 'ignored', 'failed')),
    CONSTRAINT hyperswitch_webhook_log_processed_check CHECK (status = 'received' OR processed_at IS NOT NULL)
);

CREATE INDEX idx_hyperswitch_webhook_log_payment_id ON hyperswitch_webhook_log (payment_id) WHERE payment_id IS NOT NULL;
CREATE INDEX idx_hyperswitch_webhook_log_unprocessed ON hyperswitch_webhook_log (received_at) WHERE status IN ('received', 'failed');
