-- Run in PostgreSQL before postgres.slt; __PG_SCHEMA__ is a fresh schema.
CREATE TABLE __PG_SCHEMA__.zones (code text PRIMARY KEY, name text NOT NULL, borough text, since date);
INSERT INTO __PG_SCHEMA__.zones VALUES
  ('JFK', 'Kennedy', 'Queens', '1948-07-01'),
  ('LGA', 'LaGuardia', 'Queens', '1939-10-15'),
  ('EWR', 'Newark', NULL, NULL);
CREATE TABLE __PG_SCHEMA__.zone_fares (zone text, trips int8, fares numeric(12,2));
