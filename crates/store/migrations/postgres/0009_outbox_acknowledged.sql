-- Alert notifications (SPEC §5): an acknowledgement is told to webhooks, so the outbox takes
-- 'acknowledged' rows too. Kept parallel to ../sqlite/0009_outbox_acknowledged.sql.
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_event_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_event_check
    CHECK (event IN ('raised', 'cleared', 'acknowledged', 'reminder', 'test'));
