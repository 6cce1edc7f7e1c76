-- The notifier's deliveries become leases instead of row locks held across the POST, and carry
-- the task's tenant and the receiver's host (for the per-tenant and per-host send bounds).
--
-- A sender claims a due delivery in one short transaction: it sets lease_token, counts the
-- attempt (attempt = attempts started, including the one in flight) and pushes
-- next_attempt_at_ms to the lease's expiry. It then POSTs with no transaction open, and records
-- the outcome in a second short transaction that only applies while it still holds the lease
-- (WHERE lease_token = its token). A sender that dies mid-POST never records: the row falls due
-- again when the lease expires, and another sender delivers it (at least once).

ALTER TABLE webhook_subscriptions ADD COLUMN tenant text NOT NULL DEFAULT 'default';

ALTER TABLE pending_webhooks ADD COLUMN tenant text NOT NULL DEFAULT 'default';
ALTER TABLE pending_webhooks ADD COLUMN receiver text NOT NULL DEFAULT '';
ALTER TABLE pending_webhooks ADD COLUMN lease_token text;
UPDATE pending_webhooks
   SET receiver = btrim(lower(coalesce(
       substring(url from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:@\[]+|\[[^]]*\])'), '')), '[]');

-- Attempts shown to the submitter: scoped by tenant like every other read.
ALTER TABLE webhook_deliveries ADD COLUMN tenant text NOT NULL DEFAULT 'default';

-- Outcomes are shown to the submitter and must not describe the internal network: attempts
-- recorded before this migration kept the exception text (addresses, errno); make them generic
-- as the notifier now writes them (the detail goes to its log only).
UPDATE webhook_deliveries
   SET error = CASE WHEN error ~ '^HTTP [0-9]{3}$' THEN error
                    WHEN error LIKE 'timeout%' THEN 'timed out'
                    ELSE 'connection failed' END
 WHERE error IS NOT NULL;
