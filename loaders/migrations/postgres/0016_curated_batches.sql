-- mobiflux warehouse, version 16 (PostgreSQL): feed runs write the curated Parquet zone in
-- batches, a file per table, day and partner for many polls (`loaders/src/curated.rs`,
-- `Batch`), instead of files of their own. A run loaded into a batch carries the batch's
-- key in `curated_batch`, written in the load's transaction; the key is cleared once the
-- batch's files are uploaded. A key left behind longer than a batch lives (its daemon
-- killed) is a batch to write again from its runs' raw payloads, under the same names.
ALTER TABLE etl_runs ADD COLUMN curated_batch text COLLATE "C";
CREATE INDEX etl_runs_curated_batch ON etl_runs (curated_batch) WHERE curated_batch IS NOT NULL;
