#!/usr/bin/env bash
# Generates a series of nightly plain-format pg_dump files from a real
# PostgreSQL: a shop database (~150 MB of dump at SCALE=1, ~200 MB at SCALE=1.35) that changes a
# little every night: new orders, shipped orders, edited customers, deleted
# old orders, then VACUUM, the way a production database drifts.
#
#   benches/gen-dumps.sh OUTDIR [NIGHTS=6] [SCALE=1]
#
# LAYOUT=compact packs the tables once after loading (VACUUM FULL), so new
# rows are appended; the default leaves the free space a bulk load leaves
# in every page, so new rows land all over the table (both happen in real
# databases, and they dedup very differently).
#
# Writes OUTDIR/night-01.sql ... night-NN.sql. Starts its own cluster in a
# temporary directory (socket only, no TCP) and stops it at the end. As
# root it runs the server as the `postgres` user (initdb refuses root).
set -euo pipefail

OUT=${1:?usage: gen-dumps.sh OUTDIR [NIGHTS] [SCALE]}
NIGHTS=${2:-6}
SCALE=${3:-1}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/initdb" ] || { echo "PostgreSQL not found (apt-get install postgresql)" >&2; exit 1; }
DIR=$(mktemp -d /tmp/cairn-gen-XXXXXX)
RUN=()
if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; RUN=(runuser -u postgres --); fi
PORT=$((20000 + RANDOM % 20000))
cleanup() { "${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
"${RUN[@]}" "$BIN/initdb" -D "$DIR/data" --auth=trust -U postgres --no-sync -E UTF8 --locale=C >/dev/null
"${RUN[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c max_wal_size=4GB" start >/dev/null
PSQL=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE shop"

n() { awk -v s="$SCALE" -v x="$1" 'BEGIN { printf "%d", s * x }'; }
CUSTOMERS=$(n 200000); PRODUCTS=$(n 5000); ORDERS=$(n 700000); EVENTS=$(n 300000)

echo "loading shop database (scale $SCALE)..." >&2
"${PSQL[@]}" -d shop <<SQL
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL,
  city text, created_at timestamptz NOT NULL);
CREATE TABLE products (id serial PRIMARY KEY, name text NOT NULL, description text, price numeric(10,2));
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),
  created_at timestamptz NOT NULL, status text NOT NULL, total numeric(12,2), shipping_address text);
CREATE TABLE order_items (order_id bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
  product_id int NOT NULL REFERENCES products(id), qty int NOT NULL, price numeric(10,2));
CREATE INDEX order_items_order_id ON order_items (order_id);
CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, kind text NOT NULL, payload jsonb);
INSERT INTO customers (name, email, city, created_at)
  SELECT 'Customer ' || g, 'customer' || g || '@example.org',
         (ARRAY['Oslo','Lyon','Porto','Graz','Turku','Ghent','Cork','Brno'])[1 + g % 8],
         timestamptz '2020-01-01' + g * interval '7 minutes'
  FROM generate_series(1, $CUSTOMERS) g;
INSERT INTO products (name, description, price)
  SELECT 'Product ' || g, repeat(md5(g::text), 3), (g % 500) + 0.99 FROM generate_series(1, $PRODUCTS) g;
INSERT INTO orders (customer_id, created_at, status, total, shipping_address)
  SELECT 1 + (g::bigint * 7919) % $CUSTOMERS, timestamptz '2021-01-01' + g * interval '2 minutes',
         (ARRAY['delivered','delivered','delivered','cancelled'])[1 + g % 4], (g % 9973) / 3.0,
         g || ' Long Street, ' || md5((g * 31)::text)
  FROM generate_series(1, $ORDERS) g;
INSERT INTO order_items (order_id, product_id, qty, price)
  SELECT o, 1 + (o::bigint * k) % $PRODUCTS, 1 + (o + k) % 4, ((o::bigint * k) % 500) + 0.99
  FROM generate_series(1, $ORDERS) o, generate_series(1, 2) k;
INSERT INTO events (at, kind, payload)
  SELECT timestamptz '2021-01-01' + g * interval '5 minutes', (ARRAY['login','view','cart','pay'])[1 + g % 4],
         jsonb_build_object('session', md5(g::text), 'ip', '10.0.' || (g % 256) || '.' || (g % 199))
  FROM generate_series(1, $EVENTS) g;
VACUUM ANALYZE;
SQL
if [ "${LAYOUT:-}" = compact ]; then "${PSQL[@]}" -d shop -c "VACUUM FULL ANALYZE"; fi

for night in $(seq 1 "$NIGHTS"); do
  if [ "$night" -gt 1 ]; then
    # About 60k changed rows a night at SCALE=1, skewed the way OLTP
    # databases are: most writes touch recent rows, a few touch old ones.
    "${PSQL[@]}" -d shop <<SQL
WITH new AS (
  INSERT INTO orders (customer_id, created_at, status, total, shipping_address)
  SELECT 1 + (g::bigint * 104729 + $night) % $CUSTOMERS, now(), 'open', (g % 977) / 3.0,
         g || ' New Road, ' || md5((g + $night * 1000003)::text)
  FROM generate_series(1, $(n 8000)) g RETURNING id)
INSERT INTO order_items (order_id, product_id, qty, price)
  SELECT id, 1 + (id * 13) % $PRODUCTS, 1 + id % 3, 9.99 FROM new;
-- yesterday's shipped orders are delivered, older open ones ship
UPDATE orders SET status = 'delivered' WHERE status = 'shipped';
UPDATE orders SET status = 'shipped' WHERE status = 'open' AND id < (SELECT max(id) - $(n 2000) FROM orders);
-- a few corrections to old orders, a few customers move
UPDATE orders SET total = total + 1
  WHERE id IN (SELECT id FROM orders ORDER BY random() LIMIT $(n 500));
UPDATE customers SET email = 'moved' || id || '.' || $night || '@example.net', city = 'Bergen'
  WHERE id IN (SELECT id FROM customers ORDER BY random() LIMIT $(n 2000));
-- the oldest orders are archived away
DELETE FROM orders WHERE id IN (SELECT id FROM orders ORDER BY id LIMIT $(n 2000));
INSERT INTO events (at, kind, payload)
  SELECT now(), 'view', jsonb_build_object('session', md5((g * $night)::text)) FROM generate_series(1, $(n 15000)) g;
SQL
    "${PSQL[@]}" -d shop -c "VACUUM ANALYZE"
  fi
  f=$(printf "%s/night-%02d.sql" "$OUT" "$night")
  "$BIN/pg_dump" -h "$DIR" -p "$PORT" -U postgres -d shop -f "$f"
  echo "$f $(stat -c %s "$f") bytes" >&2
done
