-- surge: the table read jobs query. Keep in sync with k8s/base/postgres (a test compares them).
CREATE TABLE IF NOT EXISTS items (
    id          bigint      PRIMARY KEY,
    name        text        NOT NULL,
    price_cents integer     NOT NULL CHECK (price_cents >= 0),
    stock       integer     NOT NULL CHECK (stock >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
