-- Audit logs: append-only record of security- and money-relevant actions.
CREATE TABLE audit_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor_id    bigint      REFERENCES users (id) ON DELETE SET NULL,
    actor_type  varchar(16) NOT NULL DEFAULT 'user',
    action      varchar(64) NOT NULL,
    entity_type varchar(64) NOT NULL,
    entity_id   bigint,
    ip_address  inet,
    user_agent  text,
    changes     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT audit_logs_actor_type_check CHECK (actor_type IN ('user', 'admin', 'system', 'api_key'))
);

CREATE INDEX idx_audit_logs_entity ON audit_logs (entity_type, entity_id, created_at DESC);
CREATE INDEX idx_audit_logs_actor ON audit_logs (actor_id, created_at DESC) WHERE actor_id IS NOT NULL;

CREATE FUNCTION audit_logs_forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER trg_audit_logs_append_only
    BEFORE UPDATE OR DELETE ON audit_logs
    FOR EACH ROW EXECUTE FUNCTION audit_logs_forbid_change();
