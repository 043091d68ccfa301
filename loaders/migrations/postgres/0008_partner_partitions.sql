-- mobiflux warehouse, version 8 (PostgreSQL): the reference tables fed by big published
-- files (`charge_points`: the national IRVE file; `parking_facilities`: BNLS and municipal
-- exports) are partitioned by partner. A partner's first load writes a table of its own
-- without an index, builds the primary key in one sorted pass and attaches the table as
-- the partner's partition, all in the load's transaction (loaders/src/postgres.rs): a
-- million rows in random key order no longer go one by one into a B-tree.
-- Existing rows move to their partner's partition; the views reading these tables are
-- recreated as they were. Analyst roles granted before this migration need
-- `mobiflux grant-analyst` again (the tables are new).

-- The partition of a partner in a table: the same name in this migration and in the loader.
CREATE FUNCTION mobiflux_partner_partition(tbl text, partner text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    AS $$ SELECT tbl || '_x' || left(encode(sha256(convert_to(partner, 'UTF8')), 'hex'), 12) $$;

DO $$
DECLARE
    t text;
    k text;
    p text;
    v record;
BEGIN
    CREATE TEMP TABLE mobiflux_saved_views ON COMMIT DROP AS
        SELECT DISTINCT c.relname::text AS name, pg_get_viewdef(c.oid) AS def
        FROM pg_depend d
        JOIN pg_rewrite r ON r.oid = d.objid
        JOIN pg_class c ON c.oid = r.ev_class
        WHERE d.refobjid IN ('charge_points'::regclass, 'parking_facilities'::regclass)
          AND c.relkind = 'v';
    FOR v IN SELECT name FROM mobiflux_saved_views LOOP
        EXECUTE format('DROP VIEW %I', v.name);
    END LOOP;

    FOR t, k IN SELECT * FROM (VALUES
        ('charge_points', 'partner, charge_point_id'),
        ('parking_facilities', 'partner, facility_id')) AS x(t, k)
    LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_unpartitioned');
        EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I',
            t || '_unpartitioned', t || '_pkey', t || '_unpartitioned_pkey');
        EXECUTE format(
            'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS, PRIMARY KEY (%s)) PARTITION BY LIST (partner)',
            t, t || '_unpartitioned', k);
        FOR p IN EXECUTE format('SELECT DISTINCT partner FROM %I', t || '_unpartitioned') LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES IN (%L)',
                mobiflux_partner_partition(t, p), t, p);
        END LOOP;
        EXECUTE format('INSERT INTO %I SELECT * FROM %I', t, t || '_unpartitioned');
        EXECUTE format('DROP TABLE %I', t || '_unpartitioned');
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY territory ON %I FOR SELECT USING (partner IN (SELECT partner FROM pipelines))',
            t);
    END LOOP;

    FOR v IN SELECT name, def FROM mobiflux_saved_views ORDER BY name LOOP
        EXECUTE format('CREATE VIEW %I WITH (security_invoker = true) AS %s', v.name,
            regexp_replace(v.def, ';\s*$', ''));
    END LOOP;
END $$;
