# Run once by the image's entrypoint when the volume is first created, after
# the schema and seed (it sources this file). The workers log in as `surge`:
# a role that may read the items table and nothing else. The superuser
# `postgres` is for operators only.
surge_password="$(cat "${SURGE_DB_PASSWORD_FILE:-/run/secrets/postgres/SURGE_DB_PASSWORD}")"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v surge_password="$surge_password" <<'SQL'
CREATE ROLE surge LOGIN PASSWORD :'surge_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT 200;
REVOKE ALL ON DATABASE surge FROM PUBLIC;
GRANT CONNECT ON DATABASE surge TO surge;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO surge;
GRANT SELECT ON items TO surge;
SQL
unset surge_password
