-- mobiflux warehouse, version 13 (PostgreSQL): loads append their hourly rollup rows to a
-- `*_pending` table, with no key and no index, instead of adding each to its hourly row
-- (`INSERT … ON CONFLICT DO UPDATE`: an index probe, a row lock and a new row version per
-- key per load, the same row rewritten by every poll of the hour). `Warehouse::fold_rollups`
-- (the scheduler every 5 minutes, `mobiflux run` as it ends) moves them into the
-- `*_folded` table, summed per key, in one statement per table. Each hourly rollup keeps its
-- name as a view of both, summed per key, so the statistics and the closing of days read
-- the same figures before and after a fold. Daily tables are unchanged.
-- The policies and grants of the hourly tables move with them to `*_folded`; the pending
-- tables get the same policy, and whoever could read a table reads its view and its
-- pending rows. The views reading the hourly tables are recreated on the new views, with
-- their grants.
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
    v record;
    g record;
BEGIN
    -- The views reading the hourly tables, and who may read them: recreated on the new views.
    CREATE TEMP TABLE mobiflux_hourly_views ON COMMIT DROP AS
        SELECT c.relname::text AS name, pg_get_viewdef(c.oid) AS def, c.relacl AS acl,
               c.relowner AS owner
        FROM pg_class c
        WHERE c.relkind = 'v' AND c.oid IN (
            SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
            WHERE d.refobjid IN ('fleet_availability_hourly'::regclass,
                                 'fleet_snapshots_hourly'::regclass,
                                 'station_occupancy_hourly'::regclass,
                                 'station_occupancy_partner_hourly'::regclass));
    FOR v IN SELECT name FROM mobiflux_hourly_views LOOP
        EXECUTE format('DROP VIEW %I', v.name);
    END LOOP;

    FOREACH t IN ARRAY ARRAY['fleet_availability_hourly', 'fleet_snapshots_hourly',
                             'station_occupancy_hourly', 'station_occupancy_partner_hourly'] LOOP
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t, t || '_folded');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', t || '_pending', t || '_folded');
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t || '_pending');
        EXECUTE format(
            'CREATE POLICY territory ON %I FOR SELECT USING (partner IN (SELECT partner FROM pipelines))',
            t || '_pending');
        -- The key: the primary key's columns; the sums: the other columns.
        SELECT array_agg(a.attname::text ORDER BY k.n) INTO keys
        FROM pg_index x
        CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
        JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
        WHERE x.indrelid = (t || '_folded')::regclass AND x.indisprimary;
        SELECT array_agg(a.attname::text ORDER BY a.attnum) INTO sums
        FROM pg_attribute a
        WHERE a.attrelid = (t || '_folded')::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid = 'double precision'::regtype;
        -- Three parts, so that a read of the view aggregates the pending rows only:
        -- folded rows of hours before the earliest pending row, as they are; folded rows
        -- from that hour on without pending rows (checked per key); pending rows summed
        -- per key, plus their folded row if any (looked up by the primary key: `LIMIT 1`
        -- keeps the subquery a lookup rather than a join over every folded row). A filter on
        -- the key (a period, a partner) reaches every part.
        SELECT string_agg(quote_ident(x), ', ' ORDER BY n),
               string_agg('f.' || quote_ident(x), ', ' ORDER BY n),
               string_agg('p.' || quote_ident(x), ', ' ORDER BY n),
               string_agg(format('p.%1$I = f.%1$I', x), ' AND ' ORDER BY n)
            INTO key_list, f_keys, p_keys, same_key
        FROM unnest(keys) WITH ORDINALITY AS u(x, n);
        SELECT string_agg('f.' || quote_ident(x), ', ' ORDER BY n),
               string_agg(format('sum(%1$I) AS %1$I', x), ', ' ORDER BY n),
               string_agg(format('coalesce(f.%1$I, 0) + p.%1$I AS %1$I', x), ', ' ORDER BY n)
            INTO f_sums, p_sums, both_sums
        FROM unnest(sums) WITH ORDINALITY AS u(x, n);
        EXECUTE format(
            'CREATE VIEW %1$I WITH (security_invoker = true) AS '
            'SELECT %4$s, %5$s FROM %2$I f '
            'WHERE f.period < (SELECT coalesce(min(period), ''infinity'') FROM %3$I) '
            'UNION ALL '
            'SELECT %4$s, %5$s FROM %2$I f '
            'WHERE f.period >= (SELECT coalesce(min(period), ''infinity'') FROM %3$I) '
            'AND NOT EXISTS (SELECT 1 FROM %3$I p WHERE %6$s) '
            'UNION ALL '
            'SELECT %7$s, %8$s FROM (SELECT %9$s, %10$s FROM %3$I GROUP BY %9$s) p '
            'LEFT JOIN LATERAL (SELECT %5$s FROM %2$I f WHERE %6$s LIMIT 1) f ON true',
            t, t || '_folded', t || '_pending', f_keys, f_sums, same_key, p_keys, both_sums,
            key_list, p_sums);
        -- Whoever could read the table reads the view and the pending rows.
        FOR g IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) AS a
                 WHERE c.oid = (t || '_folded')::regclass AND a.privilege_type = 'SELECT'
                   AND a.grantee <> c.relowner LOOP
            EXECUTE format('GRANT SELECT ON %I, %I TO %s', t, t || '_pending',
                CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
        END LOOP;
    END LOOP;

    FOR v IN SELECT name, def, acl, owner FROM mobiflux_hourly_views ORDER BY name LOOP
        EXECUTE format('CREATE VIEW %I WITH (security_invoker = true) AS %s', v.name,
            regexp_replace(v.def, ';\s*$', ''));
        FOR g IN SELECT DISTINCT a.grantee FROM aclexplode(v.acl) AS a
                 WHERE a.privilege_type = 'SELECT' AND a.grantee <> v.owner LOOP
            EXECUTE format('GRANT SELECT ON %I TO %s', v.name,
                CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END);
        END LOOP;
    END LOOP;
END $$;
