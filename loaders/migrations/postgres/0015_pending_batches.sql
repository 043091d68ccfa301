-- mobiflux warehouse, version 15 (PostgreSQL): a load appends its hourly rollup rows to
-- `*_pending` as one row per partner, each column but `partner` an array of the rows' values
-- (`first_period` the earliest period), instead of one row per key: a GBFS poll of 250
-- vehicles added about 60 fleet rows (vehicle type × area) and one per station, each a heap
-- tuple and a WAL record when inserted and again when the fold deleted it. `*_pending_rows`
-- is the view of their rows, one per key as before: each hourly view reads it in place of
-- the old table (the same columns, so the views on them stay); the fold unnests the rows it
-- deletes the same way (`fold_sql`). Rows pending when this migration runs are folded first.
DO $$
DECLARE
    t text;
    keys text[];
    sums text[];
    key_list text;
    f_keys text;
    p_keys text;
    same_key text;
    f_sums text;
    p_sums text;
    both_sums text;
    adds text;
    arrays text;
    unnested text;
    names text;
    g record;
BEGIN
    FOREACH t IN ARRAY ARRAY['fleet_availability_hourly', 'fleet_snapshots_hourly',
                             'station_occupancy_hourly', 'station_occupancy_partner_hourly'] LOOP
        -- The key: the primary key's columns; the sums: the other columns (migration 13).
        SELECT array_agg(a.attname::text ORDER BY k.n) INTO keys
        FROM pg_index x
        CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
        WHERE x.indrelid = (t || '_folded')::regclass AND x.indisprimary;
        SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO sums
        FROM pg_attribute a
        WHERE a.attrelid = (t || '_folded')::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid = 'double precision'::regtype;
        SELECT string_agg(quote_ident(x), ', ' ORDER BY n),
               string_agg('f.' || quote_ident(x), ', ' ORDER BY n),
               string_agg('p.' || quote_ident(x), ', ' ORDER BY n),
               string_agg(format('p.%1$I = f.%1$I', x), ' AND ' ORDER BY n)
            INTO key_list, f_keys, p_keys, same_key
        FROM unnest(keys) WITH ORDINALITY AS u(x, n);
        SELECT string_agg('f.' || quote_ident(x), ', ' ORDER BY n),
               string_agg(format('sum(%1$I) AS %1$I', x), ', ' ORDER BY n),
               string_agg(format('coalesce(f.%1$I, 0) + p.%1$I AS %1$I', x), ', ' ORDER BY n),
               string_agg(format('%1$I = %2$I.%1$I + EXCLUDED.%1$I', x, t || '_folded'), ', ' ORDER BY n)
            INTO f_sums, p_sums, both_sums, adds
        FROM unnest(sums) WITH ORDINALITY AS u(x, n);

        -- What is pending now, folded (the fold of the scheduler, `fold_sql`).
        EXECUTE format(
            'WITH moved AS (DELETE FROM %1$I RETURNING *) '
            'INSERT INTO %2$I (%3$s, %4$s) SELECT %3$s, %5$s FROM moved GROUP BY %3$s '
            'ON CONFLICT (%3$s) DO UPDATE SET %6$s',
            t || '_pending', t || '_folded', key_list,
            (SELECT string_agg(quote_ident(x), ', ') FROM unnest(sums) AS x),
            (SELECT string_agg(format('sum(%1$I)', x), ', ') FROM unnest(sums) AS x), adds);

        -- The new pending table: `partner`, `first_period`, then every other column of the
        -- folded table as an array, in its order.
        SELECT string_agg(format('%I %s[] NOT NULL', a.attname, format_type(a.atttypid, a.atttypmod)),
                          ', ' ORDER BY a.attnum),
               string_agg(format('b.%I', a.attname), ', ' ORDER BY a.attnum),
               string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum)
            INTO arrays, unnested, names
        FROM pg_attribute a
        WHERE a.attrelid = (t || '_folded')::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attname <> 'partner';
        EXECUTE format(
            'CREATE TABLE %I (partner text NOT NULL, first_period timestamptz NOT NULL, %s)',
            t || '_batches', arrays);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t || '_batches');
        EXECUTE format(
            'CREATE POLICY territory ON %I FOR SELECT USING (partner IN (SELECT partner FROM pipelines))',
            t || '_batches');
        EXECUTE format(
            'CREATE VIEW %I WITH (security_invoker = true) AS '
            'SELECT b.partner, u.* FROM %I b CROSS JOIN LATERAL unnest(%s) AS u(%s)',
            t || '_pending_rows', t || '_batches', unnested, names);

        -- The hourly view as migration 13 made it, on the pending rows; where its pending
        -- rows start, from the batches' `first_period`.
        EXECUTE format(
            'CREATE OR REPLACE VIEW %1$I WITH (security_invoker = true) AS '
            'SELECT %4$s, %5$s FROM %2$I f '
            'WHERE f.period < (SELECT coalesce(min(first_period), ''infinity'') FROM %11$I) '
            'UNION ALL '
            'SELECT %4$s, %5$s FROM %2$I f '
            'WHERE f.period >= (SELECT coalesce(min(first_period), ''infinity'') FROM %11$I) '
            'AND NOT EXISTS (SELECT 1 FROM %3$I p WHERE %6$s) '
            'UNION ALL '
            'SELECT %7$s, %8$s FROM (SELECT %9$s, %10$s FROM %3$I GROUP BY %9$s) p '
            'LEFT JOIN LATERAL (SELECT %5$s FROM %2$I f WHERE %6$s LIMIT 1) f ON true',
            t, t || '_folded', t || '_pending_rows', f_keys, f_sums, same_key, p_keys, both_sums,
            key_list, p_sums, t || '_batches');

        -- Whoever could read the old pending rows reads the new ones.
        FOR g IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) AS a
                 WHERE c.oid = (t || '_pending')::regclass AND a.privilege_type = 'SELECT'
                   AND a.grantee <> c.relowner LOOP
            EXECUTE format('GRANT SELECT ON %I, %I TO %s', t || '_batches', t || '_pending_rows',
                CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
        END LOOP;
        EXECUTE format('DROP TABLE %I', t || '_pending');
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t || '_batches', t || '_pending');
    END LOOP;
END $$;
