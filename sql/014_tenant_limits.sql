-- 014_tenant_limits: placeholder, filled by the tenant work (claim_limited returns the
-- tenant and can key a per-key limit by it).
SELECT 1;
