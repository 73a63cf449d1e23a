-- surge: 100 000 deterministic rows, inserted once (re-running changes nothing).
INSERT INTO items (id, name, price_cents, stock, updated_at)
SELECT g,
       'item-' || g,
       (g * 7919) % 100000,
       (g * 31) % 500,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, 100000) AS g
ON CONFLICT (id) DO NOTHING;
ANALYZE items;
