//! Real PostgreSQL: nightly pg_dumps backed up through `--command` and
//! through stdin, every snapshot restored byte-identical, and a failing
//! pg_dump that never becomes a snapshot.

#![allow(clippy::unwrap_used)]

mod common;

use common::pg::Postgres;
use common::{assert_code, snapshot_id, stderr, Env};
use serde_json::Value;

const SCHEMA: &str = "
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text, city text);
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id),
                     total numeric(10,2), status text, note text);
INSERT INTO customers (name, email, city)
  SELECT 'customer ' || g, 'c' || g || '@example.com', (ARRAY['Oslo','Lyon','Porto','Graz'])[1 + g % 4]
  FROM generate_series(1, 20000) g;
INSERT INTO orders (customer_id, total, status, note)
  SELECT 1 + (g % 20000), (g % 1000) / 7.0, CASE WHEN g % 3 = 0 THEN 'shipped' ELSE 'open' END, md5(g::text)
  FROM generate_series(1, 60000) g;";

/// A night of business: recent orders ship, new orders arrive, a few old
/// ones are deleted, then VACUUM moves rows around as it does in real life.
fn night(pg: &Postgres, n: u32) {
    pg.psql(
        "shop",
        &format!(
            "UPDATE orders SET status = 'shipped', total = total + 1
               WHERE id > (SELECT max(id) - 2000 FROM orders) AND id % 5 = {m};
             INSERT INTO orders (customer_id, total, status, note)
               SELECT 1 + (g % 20000), g / 3.0, 'open', md5((g * {n})::text) FROM generate_series(1, 500) g;
             DELETE FROM orders WHERE id % 1009 = {n};
             UPDATE customers SET city = 'Bergen' WHERE id % 2003 = {n};",
            m = n % 5
        ),
    );
    pg.psql("shop", "VACUUM orders");
}

fn data_added(env: &Env, id: &str) -> u64 {
    env.snapshots()
        .iter()
        .find(|s| s["id"] == Value::String(id.to_string()))
        .map(|s| s["summary"]["data_added"].as_u64().unwrap())
        .unwrap()
}

#[test]
fn nightly_pg_dumps_restore_byte_identical() {
    let Some(pg) = Postgres::start() else { return };
    pg.createdb("shop");
    pg.psql("shop", SCHEMA);
    let env = Env::init();
    // pg_dump writes a random `\restrict` key into every plain dump
    // (CVE-2025-8714 fix), so two dumps of the same state differ: keep a
    // copy of what the command streamed to compare restores against.
    let copy = env.path("night.sql");
    let command = format!(
        "{} -f {} && cat {}",
        pg.pg_dump_command("shop"),
        copy.display(),
        copy.display()
    );
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for n in 0..4u32 {
        if n > 0 {
            night(&pg, n);
        }
        let args = [
            "--json",
            "backup",
            "--command",
            &command,
            "--stdin-filename",
            "shop.sql",
            "--tag",
            "cmd",
        ];
        let out = env.run(&args);
        assert_code(&out, 0, &args);
        let from_command = snapshot_id(&out);
        let dump = std::fs::read(&copy).unwrap();
        let text = String::from_utf8_lossy(&dump);
        assert!(
            text.contains("-- PostgreSQL database dump complete"),
            "truncated dump"
        );
        expected.push((from_command, dump.clone()));
        let from_stdin =
            env.backup_stdin(&dump, &["--stdin-filename", "shop.sql", "--tag", "stdin"]);
        // The same dump again stores (almost) nothing new, yet is a full snapshot.
        assert!(
            data_added(&env, &from_stdin) < 64 * 1024,
            "stdin duplicate was not deduplicated"
        );
        expected.push((from_stdin, dump));
    }
    assert_eq!(env.snapshots().len(), 8);

    // Every night restores byte-identical, by full ID and by prefix.
    for (id, dump) in &expected {
        let target = env.path(&format!("restore-{}", &id[..8]));
        env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
        assert_eq!(
            &std::fs::read(target.join("shop.sql")).unwrap(),
            dump,
            "restore of {id}"
        );
        assert_eq!(&env.dump(&id[..10], "shop.sql"), dump, "dump of {id}");
    }

    // The newest dump, restored and loaded, gives back the same database.
    let newest = env.path("newest.sql");
    std::fs::write(&newest, env.dump("latest", "shop.sql")).unwrap();
    pg.createdb("shop_restored");
    pg.load("shop_restored", &newest);
    let q = "SELECT count(*), sum(total), string_agg(status, '' ORDER BY id) = string_agg(status, '' ORDER BY id) FROM orders";
    assert_eq!(pg.psql("shop", q), pg.psql("shop_restored", q));
    let q2 = "SELECT md5(string_agg(id || name || city, ',' ORDER BY id)) FROM customers";
    assert_eq!(pg.psql("shop", q2), pg.psql("shop_restored", q2));
}

#[test]
fn failed_pg_dump_never_becomes_a_snapshot() {
    let Some(pg) = Postgres::start() else { return };
    let env = Env::init();
    let args = [
        "backup",
        "--command",
        &pg.pg_dump_command("no_such_db"),
        "--stdin-filename",
        "x.sql",
    ];
    let out = env.run(&args);
    assert_code(&out, 21, &args);
    let err = stderr(&out);
    assert!(
        err.contains("no_such_db"),
        "pg_dump's own error is shown: {err}"
    );
    assert!(err.contains("no snapshot was written"), "{err}");
    assert!(env.snapshots().is_empty());
}
